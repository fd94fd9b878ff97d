//! The binary bodies of the replication protocol.
//!
//! - chunk ids (`missing`, both ways): 32-byte BLAKE3 ids, back to back.
//! - chunk frames (`chunks`): per chunk, id (32) | codec (u8) | raw length (u32 LE) |
//!   stored length (u32 LE) | the stored (compressed) bytes, as the source keeps them.
//! - an object (`object`): JSON length (u32 LE) | the `ObjectRecord` as JSON | the
//!   manifest of its parts not staged before (`part`), their chunk references in
//!   order (`meta::records` encoding); the record's chunk counts (one per part for
//!   a multipart object) split it, and the replica checks that they add up
//!   (`meta::replicated`). An inline body travels in the record.
//! - a staged part (`part`): its manifest (`meta::records` encoding).

use bytes::{Buf, Bytes};

use crate::meta::{ChunkId, ChunkRef, Codec, ObjectRecord, decode_manifest, encode_manifest};

/// Most ids in one `missing` request.
pub const MAX_IDS: usize = 65_536;
/// A `chunks` body is flushed once it holds this many bytes.
pub const BATCH_BYTES: usize = 8 << 20;
/// Largest body a replica accepts on any endpoint.
pub const MAX_BODY: usize = 64 << 20;

pub fn encode_ids(ids: &[ChunkId]) -> Vec<u8> {
    ids.concat()
}

pub fn decode_ids(b: &[u8]) -> Result<Vec<ChunkId>, String> {
    if !b.len().is_multiple_of(32) || b.len() / 32 > MAX_IDS {
        return Err(format!("{} bytes are not a list of chunk ids", b.len()));
    }
    Ok(b.chunks_exact(32)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(c);
            id
        })
        .collect())
}

/// One chunk as stored.
pub struct ChunkFrame {
    pub id: ChunkId,
    pub codec: Codec,
    pub raw_len: u32,
    pub stored: Bytes,
}

pub fn push_frame(out: &mut Vec<u8>, f: &ChunkFrame) {
    out.extend_from_slice(&f.id);
    out.push(f.codec as u8);
    out.extend_from_slice(&f.raw_len.to_le_bytes());
    out.extend_from_slice(&(f.stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&f.stored);
}

pub fn decode_frames(mut b: Bytes) -> Result<Vec<ChunkFrame>, String> {
    let mut out = Vec::new();
    while b.has_remaining() {
        if b.remaining() < 41 {
            return Err("a chunk frame is cut short".into());
        }
        let mut id = [0u8; 32];
        b.copy_to_slice(&mut id);
        let codec = match b.get_u8() {
            0 => Codec::Raw,
            1 => Codec::Zstd,
            other => return Err(format!("unknown codec {other}")),
        };
        let raw_len = b.get_u32_le();
        let stored_len = b.get_u32_le() as usize;
        // The raw length sizes the buffer a chunk is decompressed into: no chunk of
        // ours is larger, and a raw chunk is stored as it is.
        if raw_len > crate::config::MAX_CHUNK
            || stored_len > crate::config::MAX_CHUNK as usize
            || (codec == Codec::Raw && stored_len != raw_len as usize)
        {
            return Err(format!(
                "a chunk frame claims {raw_len} raw and {stored_len} stored bytes, beyond what a chunk can be"
            ));
        }
        if b.remaining() < stored_len {
            return Err("a chunk frame is cut short".into());
        }
        out.push(ChunkFrame {
            id,
            codec,
            raw_len,
            stored: b.split_to(stored_len),
        });
    }
    Ok(out)
}

pub fn encode_object(rec: &ObjectRecord, manifest: &[ChunkRef]) -> Result<Vec<u8>, String> {
    let json = serde_json::to_vec(rec).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(4 + json.len() + manifest.len() * 36);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&encode_manifest(manifest));
    Ok(out)
}

pub fn decode_object(b: &[u8]) -> Result<(ObjectRecord, Vec<ChunkRef>), String> {
    let (len, rest) = b.split_at_checked(4).ok_or("an object body is cut short")?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (json, manifest) = rest
        .split_at_checked(len)
        .ok_or("an object body is cut short")?;
    let rec: ObjectRecord =
        serde_json::from_slice(json).map_err(|e| format!("object record: {e}"))?;
    let manifest = decode_manifest(manifest).map_err(|e| e.to_string())?;
    Ok((rec, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer's frame sizes the buffer its chunk is decompressed into: a frame
    /// claiming more than any chunk can be (4 GiB from one frame, before) is refused
    /// before anything is allocated, and so is a raw frame whose lengths disagree.
    #[test]
    fn hostile_frame_lengths_are_refused() {
        let frame = |codec, raw_len, stored: usize| {
            let mut body = Vec::new();
            push_frame(
                &mut body,
                &ChunkFrame {
                    id: [7; 32],
                    codec,
                    raw_len,
                    stored: Bytes::from(vec![0u8; stored]),
                },
            );
            decode_frames(Bytes::from(body))
        };
        let err = frame(Codec::Zstd, u32::MAX, 10).err().unwrap();
        assert!(err.contains("beyond what a chunk can be"), "{err}");
        assert!(frame(Codec::Zstd, crate::config::MAX_CHUNK + 1, 10).is_err());
        assert!(frame(Codec::Raw, 11, 10).is_err());
        assert!(frame(Codec::Raw, 10, 10).is_ok());
        assert!(frame(Codec::Zstd, crate::config::MAX_CHUNK, 10).is_ok());
    }

    #[test]
    fn frames_and_objects_round_trip_and_truncation_is_refused() {
        let mut body = Vec::new();
        for (i, len) in [(1u8, 5usize), (2, 0), (3, 70_000)] {
            push_frame(
                &mut body,
                &ChunkFrame {
                    id: [i; 32],
                    codec: Codec::Zstd,
                    raw_len: 9,
                    stored: Bytes::from(vec![i; len]),
                },
            );
        }
        let frames = decode_frames(Bytes::from(body.clone())).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2].stored.len(), 70_000);
        assert_eq!(frames[0].id, [1; 32]);
        body.pop();
        assert!(decode_frames(Bytes::from(body)).is_err());

        let mut rec = ObjectRecord::delete_marker(5);
        rec.data = crate::meta::ObjectData::Chunked {
            manifest: 9,
            chunks: 1,
        };
        let refs = vec![ChunkRef {
            id: [7; 32],
            len: 3,
        }];
        let enc = encode_object(&rec, &refs).unwrap();
        assert_eq!(decode_object(&enc).unwrap(), (rec.clone(), refs.clone()));
        assert!(decode_object(&enc[..10]).is_err());
        assert!(decode_ids(&[0u8; 33]).is_err());
    }
}

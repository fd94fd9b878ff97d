//! `chunk_codec` owns how a chunk's bytes are stored and read back: zstd when a
//! chunk shrinks, raw bytes when it does not (large chunks are probed first, so
//! data that is already compressed or encrypted costs little), and the decoding that
//! checks a stored payload against its length and its BLAKE3 id. The write path
//! encodes through it; the read path, the cleaner, verify, repair and the replica's
//! receiver decode through it (what a segment holds is first opened by
//! `segments`, when the store seals).

use bytes::Bytes;

use crate::meta::{ChunkId, ChunkLocation, Codec};
use crate::segments::SegmentStore;

/// Bytes sampled at the start and the middle of a large chunk before compressing it.
const PROBE: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[error("zstd: {0}")]
pub struct CodecError(std::io::Error);

/// One stream's compressor at one zstd level (made on first use) and its buffer.
pub struct ChunkEncoder {
    level: i32,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
}

impl ChunkEncoder {
    pub fn new(level: i32) -> ChunkEncoder {
        ChunkEncoder {
            level,
            compressor: None,
            scratch: Vec::new(),
        }
    }

    /// How `data` is stored: its zstd frame when that is smaller, else `data` itself.
    pub fn encode<'a>(&'a mut self, data: &'a [u8]) -> Result<(Codec, &'a [u8]), CodecError> {
        let compressor = match &mut self.compressor {
            Some(c) => c,
            None => self
                .compressor
                .insert(zstd::bulk::Compressor::new(self.level).map_err(CodecError)?),
        };
        let worth_trying = looks_compressible(compressor, data, &mut self.scratch);
        self.scratch.clear();
        self.scratch
            .reserve(zstd::zstd_safe::compress_bound(data.len()));
        let compressed = worth_trying
            && compressor
                .compress_to_buffer(data, &mut self.scratch)
                .is_ok()
            && self.scratch.len() < data.len();
        Ok(if compressed {
            (Codec::Zstd, &self.scratch[..])
        } else {
            (Codec::Raw, data)
        })
    }
}

/// Whether a chunk is worth compressing: small chunks always are tried; for large
/// ones, two samples must shrink by at least 2%. Saves most of zstd's cost on data
/// that is already compressed or encrypted, as backup streams often are.
fn looks_compressible(
    c: &mut zstd::bulk::Compressor<'static>,
    data: &[u8],
    scratch: &mut Vec<u8>,
) -> bool {
    if data.len() < 4 * PROBE {
        return true;
    }
    let mid = data.len() / 2;
    [&data[..PROBE], &data[mid..mid + PROBE]]
        .iter()
        .any(|sample| {
            scratch.clear();
            // compress_to_buffer writes into spare capacity only.
            scratch.reserve(zstd::zstd_safe::compress_bound(PROBE));
            c.compress_to_buffer(sample, scratch).is_ok() && scratch.len() < PROBE * 98 / 100
        })
}

/// A chunk's raw bytes from what its segment holds at its location: opened (when the
/// store seals), decoded and checked as `decode_chunk` does.
pub fn decode_stored(
    segments: &SegmentStore,
    id: &ChunkId,
    loc: &ChunkLocation,
    stored: Bytes,
) -> Result<Bytes, String> {
    let payload = segments
        .open_payload(loc.segment, id, stored)
        .map_err(|e| e.to_string())?;
    decode_chunk(id, loc, payload).inspect_err(|_| segments.forget_cached(loc.segment))
}

/// A chunk's raw bytes from its stored payload, checked against its length and its
/// BLAKE3 id; the error says what was wrong.
pub fn decode_chunk(id: &ChunkId, loc: &ChunkLocation, stored: Bytes) -> Result<Bytes, String> {
    let raw = match loc.codec {
        Codec::Raw => stored,
        Codec::Zstd => Bytes::from(
            zstd::bulk::decompress(&stored, loc.raw_len as usize)
                .map_err(|e| format!("zstd: {e}"))?,
        ),
    };
    if raw.len() != loc.raw_len as usize {
        return Err(format!("length {} instead of {}", raw.len(), loc.raw_len));
    }
    if blake3::hash(&raw).as_bytes() != id {
        return Err("BLAKE3 mismatch".into());
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(codec: Codec, stored: &[u8], raw_len: usize) -> ChunkLocation {
        ChunkLocation {
            segment: 0,
            offset: 0,
            stored_len: stored.len() as u32,
            raw_len: raw_len as u32,
            codec,
        }
    }

    #[test]
    fn text_is_compressed_and_noise_is_kept_raw_and_both_decode() {
        let text = b"full backup of /var/lib/postgres, block 42\n".repeat(2000);
        let mut noise = vec![0u8; 64 * 1024];
        blake3::Hasher::new()
            .update(b"noise")
            .finalize_xof()
            .fill(&mut noise);
        let mut enc = ChunkEncoder::new(3);
        for (data, want) in [(&text[..], Codec::Zstd), (&noise[..], Codec::Raw)] {
            let (codec, stored) = enc.encode(data).unwrap();
            assert_eq!(codec, want);
            let stored = Bytes::copy_from_slice(stored);
            let id = *blake3::hash(data).as_bytes();
            let loc = location(codec, &stored, data.len());
            assert_eq!(decode_chunk(&id, &loc, stored).unwrap(), data);
        }
    }

    #[test]
    fn a_flipped_byte_or_a_wrong_length_is_refused() {
        let data = b"chunk".repeat(100);
        let id = *blake3::hash(&data).as_bytes();
        let mut flipped = data.clone();
        flipped[7] ^= 1;
        let loc = location(Codec::Raw, &flipped, data.len());
        assert_eq!(
            decode_chunk(&id, &loc, Bytes::from(flipped)).unwrap_err(),
            "BLAKE3 mismatch"
        );
        let short = location(Codec::Raw, &data[1..], data.len());
        assert!(decode_chunk(&id, &short, Bytes::copy_from_slice(&data[1..])).is_err());
    }
}

//! `segments::format` owns the bytes of one segment: building it and checking it.
//!
//! ```text
//! header   "HOARDSG1" | format u32 LE | key check [4]
//! payloads chunk payloads back to back (zstd frame or raw bytes; sealed: each
//!          nonce | ciphertext | tag)
//! trailer  N x (chunk id 32 | offset u32 | stored_len u32 | raw_len u32 | codec u8)
//!          (sealed: the whole entry block as nonce | ciphertext | tag)
//! footer   N u32 | first 16 bytes of BLAKE3(trailer) | "HOARDEND"
//! ```
//! Format 1 is plain (key check zero); format 2 is sealed (`seal`). The trailer lets a
//! segment be checked and re-indexed on its own; the footer's digest covers the
//! trailer as stored, so its structure is checked before any key is tried. An entry's
//! `offset` and `stored_len` name the payload as stored (sealed, when it is).

use bytes::Bytes;

use super::SegmentError;
use super::seal::{SEAL_OVERHEAD, SegmentKey};
use crate::meta::{ChunkId, Codec};

const HEADER_LEN: usize = 16;
const MAGIC: &[u8; 8] = b"HOARDSG1";
const END_MAGIC: &[u8; 8] = b"HOARDEND";
const FORMAT_PLAIN: u32 = 1;
const FORMAT_SEALED: u32 = 2;
const ENTRY_LEN: usize = 45;
const FOOTER_LEN: usize = 4 + 16 + 8;

/// One chunk as listed in a segment's trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailerEntry {
    pub id: ChunkId,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
}

/// Accumulates one segment's chunks in memory until it is sealed.
pub struct SegmentBuilder {
    buf: Vec<u8>,
    entries: Vec<TrailerEntry>,
    key: Option<SegmentKey>,
}

impl SegmentBuilder {
    /// A builder that seals every payload and the trailer when `key` is given.
    pub fn new(capacity: usize, key: Option<SegmentKey>) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(MAGIC);
        let (format, check) = match &key {
            Some(k) => (FORMAT_SEALED, k.check()),
            None => (FORMAT_PLAIN, [0; 4]),
        };
        buf.extend_from_slice(&format.to_le_bytes());
        buf.extend_from_slice(&check);
        SegmentBuilder {
            buf,
            entries: Vec::new(),
            key,
        }
    }

    /// Appends one chunk's payload (sealed, when the builder seals).
    pub fn push(
        &mut self,
        id: ChunkId,
        raw_len: u32,
        codec: Codec,
        payload: &[u8],
    ) -> TrailerEntry {
        let start = self.buf.len();
        match &self.key {
            Some(k) => k.seal_chunk(&id, &mut self.buf, payload),
            None => self.buf.extend_from_slice(payload),
        }
        let entry = TrailerEntry {
            id,
            offset: start as u32,
            stored_len: (self.buf.len() - start) as u32,
            raw_len,
            codec,
        };
        self.entries.push(entry);
        entry
    }

    /// Bytes so far (header and payloads).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the trailer and the footer; returns the segment bytes and its entries.
    pub fn finish(mut self) -> (Bytes, Vec<TrailerEntry>) {
        let start = self.buf.len();
        let mut trailer = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            trailer.extend_from_slice(&e.id);
            trailer.extend_from_slice(&e.offset.to_le_bytes());
            trailer.extend_from_slice(&e.stored_len.to_le_bytes());
            trailer.extend_from_slice(&e.raw_len.to_le_bytes());
            trailer.push(e.codec as u8);
        }
        match &self.key {
            Some(k) => k.seal_trailer(&mut self.buf, &trailer),
            None => self.buf.extend_from_slice(&trailer),
        }
        let digest = blake3::hash(&self.buf[start..]);
        self.buf
            .extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&digest.as_bytes()[..16]);
        self.buf.extend_from_slice(END_MAGIC);
        (Bytes::from(self.buf), self.entries)
    }
}

/// Parses and checks a whole segment's header and trailer, opening a sealed trailer
/// with `key`.
pub fn parse_trailer(
    segment: u64,
    data: &[u8],
    key: Option<&SegmentKey>,
) -> Result<Vec<TrailerEntry>, SegmentError> {
    let corrupt = |reason: &str| SegmentError::Corrupt {
        segment,
        reason: reason.to_owned(),
    };
    if data.len() < HEADER_LEN + FOOTER_LEN || &data[..8] != MAGIC {
        return Err(corrupt("bad header"));
    }
    let format = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    let sealed_by = [data[12], data[13], data[14], data[15]];
    let key = match (format, key) {
        (FORMAT_PLAIN, _) => None,
        (FORMAT_SEALED, Some(k)) if k.check() == sealed_by => Some(k),
        (FORMAT_SEALED, k) => {
            return Err(SegmentError::WrongKey {
                found: hex::encode(sealed_by),
                expected: k.map_or_else(|| "none".into(), |k| hex::encode(k.check())),
            });
        }
        _ => return Err(corrupt("unknown format version")),
    };
    let footer = &data[data.len() - FOOTER_LEN..];
    if &footer[20..28] != END_MAGIC {
        return Err(corrupt("bad trailer magic"));
    }
    let n = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]) as usize;
    let trailer_len = n
        .checked_mul(ENTRY_LEN)
        .map(|l| l + if key.is_some() { SEAL_OVERHEAD } else { 0 })
        .ok_or_else(|| corrupt("entry count overflows"))?;
    let end = data.len() - FOOTER_LEN;
    let start = end
        .checked_sub(trailer_len)
        .filter(|s| *s >= HEADER_LEN)
        .ok_or_else(|| corrupt("entry count too large"))?;
    let stored = &data[start..end];
    if blake3::hash(stored).as_bytes()[..16] != footer[4..20] {
        return Err(corrupt("trailer checksum mismatch"));
    }
    let opened;
    let trailer = match key {
        Some(k) => {
            opened = k
                .open_trailer(stored)
                .ok_or_else(|| corrupt("the sealed trailer does not open"))?;
            &opened[..]
        }
        None => stored,
    };
    let mut out = Vec::with_capacity(n);
    for e in trailer.chunks_exact(ENTRY_LEN) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[..32]);
        let u = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let codec = match e[44] {
            0 => Codec::Raw,
            1 => Codec::Zstd,
            _ => return Err(corrupt("unknown codec")),
        };
        let entry = TrailerEntry {
            id,
            offset: u(32),
            stored_len: u(36),
            raw_len: u(40),
            codec,
        };
        if (entry.offset as usize) < HEADER_LEN
            || entry.offset as usize + entry.stored_len as usize > start
        {
            return Err(corrupt("entry outside payload area"));
        }
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_chunks(key: Option<SegmentKey>) -> (Bytes, Vec<TrailerEntry>) {
        let mut b = SegmentBuilder::new(0, key);
        b.push([1; 32], 5, Codec::Raw, b"hello");
        b.push([2; 32], 100, Codec::Zstd, b"xyz");
        b.finish()
    }

    #[test]
    fn trailer_round_trips_and_detects_damage() {
        let (data, entries) = two_chunks(None);
        assert_eq!(&data[entries[0].offset as usize..][..5], b"hello");
        assert_eq!(parse_trailer(1, &data, None).unwrap(), entries);
        let mut bad = data.to_vec();
        let n = bad.len();
        bad[n - 30] ^= 1;
        assert!(parse_trailer(1, &bad, None).is_err());
        assert!(parse_trailer(1, &data[..20], None).is_err());
    }

    #[test]
    fn a_sealed_segment_shows_no_ids_or_payloads_and_names_a_wrong_key() {
        let key = SegmentKey::new([9; 32]);
        let (data, entries) = two_chunks(Some(key.clone()));
        assert!(!data.windows(5).any(|w| w == b"hello"));
        assert!(!data.windows(32).any(|w| w == [1; 32] || w == [2; 32]));
        assert_eq!(parse_trailer(1, &data, Some(&key)).unwrap(), entries);
        let e = entries[0];
        let sealed = &data[e.offset as usize..][..e.stored_len as usize];
        assert_eq!(&key.open_chunk(&e.id, sealed).unwrap()[..], b"hello");

        let other = SegmentKey::new([10; 32]);
        for wrong in [Some(&other), None] {
            match parse_trailer(1, &data, wrong) {
                Err(SegmentError::WrongKey { found, .. }) => {
                    assert_eq!(found, hex::encode(key.check()))
                }
                r => panic!("{r:?}"),
            }
        }
        let mut bad = data.to_vec();
        let n = bad.len();
        bad[n - 30] ^= 1;
        assert!(matches!(
            parse_trailer(1, &bad, Some(&key)),
            Err(SegmentError::Corrupt { .. })
        ));
    }
}

//! `segments::seal` owns encryption at rest: how a chunk payload and a segment
//! trailer are sealed with AES-256-GCM, and the key check that tells a wrong key from
//! damaged bytes.
//!
//! Keys: one 32-byte data key (derived by `secrets` from the secrets key) is never
//! used directly. Each chunk payload is sealed under its own key, the keyed BLAKE3 of
//! the chunk id under the data key, so a key seals only the few copies of one chunk
//! (a dedup miss, a compaction) and a random 96-bit nonce can never repeat under it;
//! a payload moved to another chunk's place does not open. Trailers are sealed under
//! one trailer key, also derived, with a random nonce each (about 256 per GiB).
//!
//! A sealed value is `nonce (12) | ciphertext | tag (16)`: 28 bytes more than the
//! plaintext. The key check is the first 4 bytes of a third derived value; a sealed
//! segment's header carries it, so a reader with another key says "wrong key", not
//! "corrupt".

use bytes::Bytes;
use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};

use crate::meta::ChunkId;

pub(super) const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const TAG_LEN: usize = 16;

/// The keys a sealing store writes and reads with.
#[derive(Clone)]
pub struct SegmentKey {
    data_key: [u8; 32],
    trailer: std::sync::Arc<LessSafeKey>,
    check: [u8; 4],
}

impl SegmentKey {
    pub fn new(data_key: [u8; 32]) -> SegmentKey {
        let derived = |label: &[u8]| *blake3::keyed_hash(&data_key, label).as_bytes();
        let check = derived(b"hoard segment key check");
        SegmentKey {
            data_key,
            trailer: std::sync::Arc::new(aes_key(&derived(b"hoard segment trailer key"))),
            check: [check[0], check[1], check[2], check[3]],
        }
    }

    /// Four bytes that identify the key without revealing it.
    pub fn check(&self) -> [u8; 4] {
        self.check
    }

    fn chunk_key(&self, id: &ChunkId) -> LessSafeKey {
        aes_key(blake3::keyed_hash(&self.data_key, id).as_bytes())
    }

    /// Appends `plain` sealed under the chunk's key to `buf`.
    pub fn seal_chunk(&self, id: &ChunkId, buf: &mut Vec<u8>, plain: &[u8]) {
        seal_onto(&self.chunk_key(id), buf, plain);
    }

    /// Appends `plain` sealed under the trailer key to `buf`.
    pub fn seal_trailer(&self, buf: &mut Vec<u8>, plain: &[u8]) {
        seal_onto(&self.trailer, buf, plain);
    }

    /// The payload inside a sealed chunk; `None` when it does not open (changed
    /// bytes, another chunk's payload, another key).
    pub fn open_chunk(&self, id: &ChunkId, sealed: &[u8]) -> Option<Bytes> {
        open(&self.chunk_key(id), sealed).map(Bytes::from)
    }

    pub fn open_trailer(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        open(&self.trailer, sealed)
    }
}

fn aes_key(bytes: &[u8; 32]) -> LessSafeKey {
    // AES-256 takes any 32 bytes; the length is fixed by the type.
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!("32-byte key")),
    )
}

/// nonce | ciphertext | tag appended to `buf`, with `plain` copied once.
fn seal_onto(key: &LessSafeKey, buf: &mut Vec<u8>, plain: &[u8]) {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    buf.extend_from_slice(&nonce);
    let start = buf.len();
    buf.extend_from_slice(plain);
    let tag: Tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut buf[start..],
        )
        // ring refuses only inputs longer than GCM allows (64 GiB).
        .unwrap_or_else(|_| unreachable!("a sealed value is far below GCM's limit"));
    buf.extend_from_slice(tag.as_ref());
}

fn open(key: &LessSafeKey, sealed: &[u8]) -> Option<Vec<u8>> {
    let nonce = Nonce::try_assume_unique_for_key(sealed.get(..NONCE_LEN)?).ok()?;
    let mut buf = sealed[NONCE_LEN..].to_vec();
    let plain_len = key.open_in_place(nonce, Aad::empty(), &mut buf).ok()?.len();
    buf.truncate(plain_len);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_chunk_opens_only_as_itself_under_its_key() {
        let key = SegmentKey::new([7; 32]);
        let mut buf = b"head".to_vec();
        key.seal_chunk(&[1; 32], &mut buf, b"the payload of chunk one");
        assert_eq!(&buf[..4], b"head");
        let sealed = &buf[4..];
        assert_eq!(sealed.len(), 24 + SEAL_OVERHEAD);
        assert!(!sealed.windows(7).any(|w| w == b"payload"));
        assert_eq!(
            &key.open_chunk(&[1; 32], sealed).unwrap()[..],
            b"the payload of chunk one"
        );
        // Another chunk's place, another key, one changed bit: refused.
        assert!(key.open_chunk(&[2; 32], sealed).is_none());
        let other = SegmentKey::new([8; 32]);
        assert!(other.open_chunk(&[1; 32], sealed).is_none());
        assert_ne!(other.check(), key.check());
        let mut flipped = sealed.to_vec();
        flipped[20] ^= 1;
        assert!(key.open_chunk(&[1; 32], &flipped).is_none());
        // Sealing the same bytes twice gives different ciphertexts (fresh nonces).
        let mut again = b"head".to_vec();
        key.seal_chunk(&[1; 32], &mut again, b"the payload of chunk one");
        assert_ne!(&again[4..], sealed);
    }
}

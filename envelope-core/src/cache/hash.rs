//! The cache's hashing: a fast keyed hash for its maps (why it is safe is
//! said at [`MulRot`]) and the decrypt side's hash of a key list.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::key::EncryptedDataKey;

/// The decrypt side's hash of a key list: its wrapped keys alone (each a
/// fresh ciphertext tells entries apart; equality still compares everything).
pub(super) fn wrapped_hash(seed: u64, edks: &[EncryptedDataKey]) -> u64 {
    let mut h = MulRot(seed);
    for edk in edks {
        h.write(edk.wrapped());
    }
    h.finish()
}

/// The cache's hash: multiply-rotate over 8-byte words, seeded per cache.
/// SipHash, the std default, was a fifth of a cached 64-byte decryption and a
/// third of the front door's cost on a cached encryption. A weaker hash is
/// acceptable here: the seed is secret and random, a table holds at most the
/// cache's capacity (so the worst case is one probe over that many entries),
/// the decrypt side stores only key lists that unwrapped and matched a
/// commitment, and encryption contexts come from the application.
pub(super) struct MulRot(u64);

const MUL: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for MulRot {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(MUL);
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(tail) ^ bytes.len() as u64).wrapping_mul(MUL);
    }

    fn finish(&self) -> u64 {
        // The product's high bits are its best mixed; the table indexes by the low ones.
        self.0.rotate_left(26)
    }
}

/// Builds [`MulRot`] hashers with the cache's seed.
#[derive(Clone, Copy)]
pub(super) struct Seeded(pub(super) u64);

impl BuildHasher for Seeded {
    type Hasher = MulRot;

    fn build_hasher(&self) -> MulRot {
        MulRot(self.0)
    }
}

/// Passes a precomputed `u64` hash through, for the decrypt side's buckets.
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A random seed: std's `RandomState` keys come from the OS once per thread
/// and vary per instance.
pub(super) fn seed() -> u64 {
    RandomState::new().hash_one(0u8)
}

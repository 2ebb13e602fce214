//! Suite 0x0001: the key schedule, the commitment and the frame cipher
//! (docs/format.md §5).

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::aead::{Gcm, NONCE_LEN, TAG_LEN};
use crate::error::{Error, FormatError};
use crate::key::DataKey;

/// Length of the message id.
pub const MESSAGE_ID_LEN: usize = 32;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;

/// The algorithm suites this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// AES-256-GCM, HKDF-SHA-256 key derivation, 256-bit key commitment.
    Aes256GcmHkdfSha256Committing,
}

impl Suite {
    /// The suite id on the wire.
    pub fn id(self) -> u16 {
        match self {
            Self::Aes256GcmHkdfSha256Committing => 0x0001,
        }
    }

    /// The suite with wire id `id`.
    ///
    /// # Errors
    /// [`FormatError::UnknownSuite`] (MUST 3.1).
    pub fn from_id(id: u16) -> Result<Self, FormatError> {
        match id {
            0x0001 => Ok(Self::Aes256GcmHkdfSha256Committing),
            other => Err(FormatError::UnknownSuite(other)),
        }
    }

    /// A short name for people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes256GcmHkdfSha256Committing => "AES-256-GCM, HKDF-SHA-256, committing",
        }
    }
}

/// The keys one message uses: the body cipher and the commitment.
pub(crate) struct MessageKeys {
    cipher: Gcm,
    commitment: [u8; COMMITMENT_LEN],
}

impl MessageKeys {
    /// Derives the body key and the commitment (MUST 5.1), on the build's
    /// default AES-GCM backend.
    pub(crate) fn derive(suite: Suite, data_key: &DataKey, message_id: &[u8; MESSAGE_ID_LEN]) -> Self {
        let (body_key, commitment) = key_schedule(suite, data_key, message_id);
        Self { cipher: Gcm::new(&body_key), commitment }
    }

    /// The commitment to store in a new header.
    pub(crate) fn commitment(&self) -> [u8; COMMITMENT_LEN] {
        self.commitment
    }

    /// Constant-time comparison with a header's commitment (MUST 5.2).
    pub(crate) fn check_commitment(&self, stored: &[u8; COMMITMENT_LEN]) -> Result<(), Error> {
        commitments_match(&self.commitment, stored)
    }

    /// The body cipher, for a single-shot body sealed or opened with [`with_frame_aad`].
    pub(crate) fn cipher(&self) -> &Gcm {
        &self.cipher
    }

    /// Binds the keys to a header core, ready to seal or open frames.
    pub(crate) fn frame_cipher(self, header_core: &[u8]) -> FrameCipher {
        FrameCipher { cipher: self.cipher, aad: FrameAad::new(header_core) }
    }
}

/// The key schedule of §5: HKDF-SHA-256 with the message id as salt, two
/// 32-byte outputs (body key, commitment).
///
/// HKDF is written out on the SHA-256 compression function because every
/// input is shorter than one block: that is ten compressions a message (four
/// for the extract, two for the PRK's pads, two per expand), the least the
/// construction allows, without the generic hashing layers' buffering and
/// copies. The compressions that do not depend on each other (the two pads
/// of a key, the two expands) are issued side by side, so the processor
/// overlaps them: the chain is six compressions long, not ten.
fn key_schedule(
    suite: Suite,
    data_key: &DataKey,
    message_id: &[u8; MESSAGE_ID_LEN],
) -> (Zeroizing<[u8; 32]>, [u8; COMMITMENT_LEN]) {
    let suite_id = suite.id().to_be_bytes();
    let mut s = Schedule::extract(data_key, message_id);
    // HKDF-Expand of one block: HMAC(PRK, info || 0x01), for both outputs at once.
    s.mac([&[b"rekey v1 body key", &suite_id, &[1]], &[b"rekey v1 commitment", &suite_id, &[1]]]);
    // The commitment is public: it is written into the header.
    (Zeroizing::new(s.digests[0]), s.digests[1])
}

/// Checks `data_key` against a stored commitment (MUST 5.2) without
/// deriving the body key or building a cipher: what re-wraps and proofs
/// need, where no body is opened.
pub(crate) fn check_commitment_only(
    suite: Suite,
    data_key: &DataKey,
    message_id: &[u8; MESSAGE_ID_LEN],
    stored: &[u8; COMMITMENT_LEN],
) -> Result<(), Error> {
    let mut s = Schedule::extract(data_key, message_id);
    s.mac([&[b"rekey v1 commitment", &suite.id().to_be_bytes(), &[1]]]);
    commitments_match(&s.digests[0], stored)
}

/// Compares two commitments in constant time: the differences of all
/// bytes folded into one word, then one constant-time test of that word
/// (`subtle`'s byte-slice comparison pays an optimisation barrier per byte).
fn commitments_match(derived: &[u8; COMMITMENT_LEN], stored: &[u8; COMMITMENT_LEN]) -> Result<(), Error> {
    let difference = derived
        .chunks_exact(8)
        .zip(stored.chunks_exact(8))
        .map(|(a, b)| {
            u64::from_ne_bytes(a.try_into().expect("8 bytes")) ^ u64::from_ne_bytes(b.try_into().expect("8 bytes"))
        })
        .fold(0, |acc, d| acc | d);
    if bool::from(difference.ct_eq(&0)) { Ok(()) } else { Err(Error::Authentication) }
}

const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const BLOCK: usize = 64;
/// The longest message one padded block holds: 64 bytes less the 0x80 and the 8-byte length.
const MAX_ONE_BLOCK: usize = BLOCK - 9;

/// HMAC-SHA-256 with 32-byte keys over messages of one block, and its
/// scratch space: every state and block is wiped in bulk when dropped.
struct Schedule {
    /// The states after the current key's inner and outer pads.
    inner: [u32; 8],
    outer: [u32; 8],
    /// Two independent chains in flight, their blocks, and the MACs they ended with.
    states: [[u32; 8]; 2],
    blocks: [[u8; BLOCK]; 2],
    digests: [[u8; 32]; 2],
}

impl Drop for Schedule {
    fn drop(&mut self) {
        // Slices of plain integers are wiped with one bulk fill; arrays
        // would be wiped one volatile element at a time.
        self.inner.as_mut_slice().zeroize();
        self.outer.as_mut_slice().zeroize();
        self.states.as_flattened_mut().zeroize();
        self.blocks.as_flattened_mut().zeroize();
        self.digests.as_flattened_mut().zeroize();
    }
}

impl Schedule {
    /// HKDF-Extract with the message id as salt, leaving the PRK as the HMAC key.
    fn extract(data_key: &DataKey, message_id: &[u8; MESSAGE_ID_LEN]) -> Self {
        let mut s = Self::new();
        s.set_key(message_id);
        s.mac([&[data_key.expose_secret()]]);
        // The PRK is the next key.
        let mut prk = s.digests[0];
        s.set_key(&prk);
        prk.as_mut_slice().zeroize();
        s
    }

    fn new() -> Self {
        Self { inner: SHA256_IV, outer: SHA256_IV, states: [[0; 8]; 2], blocks: [[0; BLOCK]; 2], digests: [[0; 32]; 2] }
    }

    /// Sets the HMAC key (two compressions, independent of each other).
    fn set_key(&mut self, key: &[u8; 32]) {
        let [inner_pad, outer_pad] = &mut self.blocks;
        for ((i, o), k) in inner_pad.iter_mut().zip(outer_pad.iter_mut()).zip(key) {
            (*i, *o) = (k ^ 0x36, k ^ 0x5c);
        }
        inner_pad[32..].fill(0x36);
        outer_pad[32..].fill(0x5c);
        self.inner = SHA256_IV;
        self.outer = SHA256_IV;
        compress(&mut self.inner, inner_pad);
        compress(&mut self.outer, outer_pad);
    }

    /// Leaves in `digests` the HMAC of each message (the concatenation of
    /// its parts, at most 55 bytes: constants or 32-byte values) under the
    /// current key: two compressions each, the inner ones side by side, then
    /// the outer ones.
    fn mac<const N: usize>(&mut self, messages: [&[&[u8]]; N]) {
        const { assert!(N <= 2, "two chains at a time") };
        for (i, parts) in messages.iter().enumerate() {
            let len = pad_block(&mut self.blocks[i], parts);
            finish_block(&mut self.blocks[i], len);
            self.states[i] = self.inner;
        }
        for i in 0..N {
            compress(&mut self.states[i], &self.blocks[i]);
        }
        for i in 0..N {
            let block = &mut self.blocks[i];
            block.fill(0);
            write_digest(&self.states[i], &mut block[..32]);
            finish_block(block, 32);
            self.states[i] = self.outer;
        }
        for i in 0..N {
            compress(&mut self.states[i], &self.blocks[i]);
            write_digest(&self.states[i], &mut self.digests[i]);
        }
    }
}

fn compress(state: &mut [u32; 8], block: &[u8; BLOCK]) {
    sha2::block_api::compress256(state, std::slice::from_ref(block));
}

/// Zeroes `block` and writes the concatenated `parts` at its start; returns their length.
fn pad_block(block: &mut [u8; BLOCK], parts: &[&[u8]]) -> usize {
    block.fill(0);
    let mut len = 0;
    for part in parts {
        block[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    len
}

/// Adds SHA-256's padding after the `len` message bytes at the start of
/// `block`, for a message that follows one absorbed block (a pad).
fn finish_block(block: &mut [u8; BLOCK], len: usize) {
    assert!(len <= MAX_ONE_BLOCK, "HMAC input longer than one block");
    block[len] = 0x80;
    let bits = ((BLOCK + len) as u64) * 8;
    block[BLOCK - 8..].copy_from_slice(&bits.to_be_bytes());
}

fn write_digest(state: &[u32; 8], out: &mut [u8]) {
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
}

/// The associated data of one frame: the header core followed by five bytes
/// of frame position, rewritten per frame (MUST 5.4).
#[derive(Clone)]
pub(crate) struct FrameAad(Vec<u8>);

impl FrameAad {
    pub(crate) fn new(header_core: &[u8]) -> Self {
        let mut aad = Vec::with_capacity(header_core.len() + 5);
        aad.extend_from_slice(header_core);
        aad.extend_from_slice(&[0; 5]);
        Self(aad)
    }

    /// Writes the frame position into the AAD and returns the nonce.
    fn position(&mut self, sequence: u32, is_final: bool) -> [u8; NONCE_LEN] {
        let position = position(sequence, is_final);
        let tail = self.0.len() - 5;
        self.0[tail..].copy_from_slice(&position);
        nonce(position)
    }

    /// Encrypts frame `sequence` in place and returns its tag.
    pub(crate) fn seal(
        &mut self,
        cipher: &Gcm,
        sequence: u32,
        is_final: bool,
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        let nonce = self.position(sequence, is_final);
        cipher.seal_in_place(&nonce, &self.0, buf)
    }

    /// Decrypts frame `sequence` in place; on failure the buffer is zeroed.
    pub(crate) fn open(
        &mut self,
        cipher: &Gcm,
        sequence: u32,
        is_final: bool,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        let nonce = self.position(sequence, is_final);
        cipher.open_in_place(&nonce, &self.0, buf, tag)
    }
}

fn position(sequence: u32, is_final: bool) -> [u8; 5] {
    let mut position = [0u8; 5];
    position[..4].copy_from_slice(&sequence.to_be_bytes());
    position[4] = u8::from(is_final);
    position
}

/// Seven zero bytes, the sequence number, the final flag.
fn nonce(position: [u8; 5]) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[7..].copy_from_slice(&position);
    nonce
}

/// Runs `f` with the nonce and AAD of a single-shot body (frame 0, final),
/// building the AAD on the stack when the header core is small, as a
/// record's is, so sealing a record allocates nothing but its output.
pub(crate) fn with_single_shot_aad<R>(header_core: &[u8], f: impl FnOnce(&[u8; NONCE_LEN], &[u8]) -> R) -> R {
    const STACK: usize = 512;
    let position = position(0, true);
    let len = header_core.len() + position.len();
    if len <= STACK {
        let mut aad = [0u8; STACK];
        aad[..header_core.len()].copy_from_slice(header_core);
        aad[header_core.len()..len].copy_from_slice(&position);
        f(&nonce(position), &aad[..len])
    } else {
        let aad = FrameAad::new(header_core);
        let mut aad = aad.0;
        let tail = aad.len() - 5;
        aad[tail..].copy_from_slice(&position);
        f(&nonce(position), &aad)
    }
}

/// Seals and opens the frames of one message (MUST 5.4, 5.5): the body
/// cipher and the frame AAD.
pub(crate) struct FrameCipher {
    cipher: Gcm,
    aad: FrameAad,
}

impl FrameCipher {
    /// Decrypts frame `sequence` in place; on failure the buffer is zeroed.
    pub(crate) fn open(
        &mut self,
        sequence: u32,
        is_final: bool,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        self.aad.open(&self.cipher, sequence, is_final, buf, tag)
    }

    /// The shared cipher and a copy of the AAD, for a worker thread that
    /// seals or opens frames of this message.
    pub(crate) fn parts(&self) -> (&Gcm, &FrameAad) {
        (&self.cipher, &self.aad)
    }
}

#[cfg(test)]
mod tests {
    use hkdf::Hkdf;
    use proptest::prelude::*;
    use sha2::Sha256;

    use super::*;

    proptest! {
        /// The hand-written schedule is HKDF-SHA-256 as the `hkdf` crate computes it.
        #[test]
        fn key_schedule_is_hkdf(key in any::<[u8; 32]>(), message_id in any::<[u8; 32]>()) {
            let suite = Suite::Aes256GcmHkdfSha256Committing;
            let (body_key, commitment) = key_schedule(suite, &DataKey::from_bytes(key), &message_id);
            let hk = Hkdf::<Sha256>::new(Some(&message_id), &key);
            let (mut expected_body, mut expected_commitment) = ([0u8; 32], [0u8; 32]);
            hk.expand_multi_info(&[b"rekey v1 body key", &[0, 1]], &mut expected_body).expect("32 bytes");
            hk.expand_multi_info(&[b"rekey v1 commitment", &[0, 1]], &mut expected_commitment).expect("32 bytes");
            prop_assert_eq!(*body_key, expected_body);
            prop_assert_eq!(commitment, expected_commitment);
        }
    }

    /// RFC 4231 test case 2 has a 4-byte key; HMAC pads short keys with
    /// zeros, so the same key zero-extended to 32 bytes gives the same MAC.
    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mut s = Schedule::new();
        s.set_key(&key);
        s.mac([&[b"what do ya want ", b"for nothing?"]]);
        assert_eq!(hex::encode(s.digests[0]), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}

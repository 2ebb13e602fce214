//! Suite 0x0001: the key schedule, the commitment and the frame cipher
//! (docs/format.md §5).

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

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
        if bool::from(self.commitment.ct_eq(stored)) { Ok(()) } else { Err(Error::Authentication) }
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
/// copies. Every intermediate value lives in one [`Schedule`], wiped once.
fn key_schedule(
    suite: Suite,
    data_key: &DataKey,
    message_id: &[u8; MESSAGE_ID_LEN],
) -> (Zeroizing<[u8; 32]>, [u8; COMMITMENT_LEN]) {
    let suite_id = suite.id().to_be_bytes();
    let mut s = Schedule::extract(data_key, message_id);
    let mut body_key = Zeroizing::new([0u8; 32]);
    s.mac(&[b"rekey v1 body key", &suite_id, &[1]]);
    body_key.copy_from_slice(&s.digest);
    // The commitment is public: it is written into the header.
    s.mac(&[b"rekey v1 commitment", &suite_id, &[1]]);
    (body_key, s.digest)
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
    s.mac(&[b"rekey v1 commitment", &suite.id().to_be_bytes(), &[1]]);
    if bool::from(s.digest.ct_eq(stored)) { Ok(()) } else { Err(Error::Authentication) }
}

const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const BLOCK: usize = 64;
/// The longest message one padded block holds: 64 bytes less the 0x80 and the 8-byte length.
const MAX_ONE_BLOCK: usize = BLOCK - 9;

/// HMAC-SHA-256 with 32-byte keys over messages of one block, and its
/// scratch space: zeroized when dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
struct Schedule {
    /// The states after the key's inner and outer pads.
    inner: [u32; 8],
    outer: [u32; 8],
    state: [u32; 8],
    block: [u8; BLOCK],
    /// The last MAC computed.
    digest: [u8; 32],
}

impl Default for Schedule {
    fn default() -> Self {
        Self { inner: [0; 8], outer: [0; 8], state: [0; 8], block: [0; BLOCK], digest: [0; 32] }
    }
}

impl Schedule {
    /// HKDF-Extract with the message id as salt, leaving the PRK as the HMAC key.
    fn extract(data_key: &DataKey, message_id: &[u8; MESSAGE_ID_LEN]) -> Self {
        let mut s = Self::default();
        s.block[..32].copy_from_slice(message_id);
        s.key_from_block();
        s.mac(&[data_key.expose_secret()]);
        // The PRK is the next key.
        s.block[..32].copy_from_slice(&s.digest);
        s.key_from_block();
        s
    }

    /// Sets the HMAC key from the first 32 bytes of `block` (two compressions).
    fn key_from_block(&mut self) {
        self.block[32..].fill(0);
        self.block.iter_mut().for_each(|b| *b ^= 0x36);
        self.inner = SHA256_IV;
        sha2::block_api::compress256(&mut self.inner, std::slice::from_ref(&self.block));
        self.block.iter_mut().for_each(|b| *b ^= 0x36 ^ 0x5c);
        self.outer = SHA256_IV;
        sha2::block_api::compress256(&mut self.outer, std::slice::from_ref(&self.block));
    }

    /// Leaves HMAC(key, concatenated `parts`) in `digest` (two compressions).
    /// The parts are at most 55 bytes in all: every caller passes constants
    /// or 32-byte values.
    fn mac(&mut self, parts: &[&[u8]]) {
        self.block = [0; BLOCK];
        let mut len = 0;
        for part in parts {
            self.block[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        self.state = self.inner;
        self.final_block(len);
        self.block = [0; BLOCK];
        self.block[..32].copy_from_slice(&self.digest);
        self.state = self.outer;
        self.final_block(32);
    }

    /// Pads the `len` message bytes at the start of `block` and hashes them
    /// from a state that has absorbed one block (a pad), into `digest`.
    fn final_block(&mut self, len: usize) {
        assert!(len <= MAX_ONE_BLOCK, "HMAC input longer than one block");
        self.block[len] = 0x80;
        // The pad block plus the message, in bits.
        let bits = ((BLOCK + len) as u64) * 8;
        self.block[BLOCK - 8..].copy_from_slice(&bits.to_be_bytes());
        sha2::block_api::compress256(&mut self.state, std::slice::from_ref(&self.block));
        for (chunk, word) in self.digest.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
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
        let mut s = Schedule::default();
        s.block[..32].copy_from_slice(&key);
        s.key_from_block();
        s.mac(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex::encode(s.digest), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}

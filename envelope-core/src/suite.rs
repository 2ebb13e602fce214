//! Suite 0x0001: the key schedule, the commitment and the frame cipher
//! (docs/format.md §5).

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

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
    commitment: Zeroizing<[u8; COMMITMENT_LEN]>,
}

impl MessageKeys {
    /// Derives the body key and the commitment (MUST 5.1).
    pub(crate) fn derive(suite: Suite, data_key: &DataKey, message_id: &[u8; MESSAGE_ID_LEN]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(message_id), data_key.expose_secret());
        let mut body_key = Zeroizing::new([0u8; 32]);
        let mut commitment = Zeroizing::new([0u8; COMMITMENT_LEN]);
        let suite_id = suite.id().to_be_bytes();
        // 32 bytes is far below HKDF-SHA-256's 8160-byte output limit.
        hk.expand_multi_info(&[b"rekey v1 body key", &suite_id], body_key.as_mut())
            .expect("32-byte HKDF output is always valid");
        hk.expand_multi_info(&[b"rekey v1 commitment", &suite_id], commitment.as_mut())
            .expect("32-byte HKDF output is always valid");
        Self { cipher: Gcm::new(&body_key), commitment }
    }

    /// The commitment to store in a new header.
    pub(crate) fn commitment(&self) -> [u8; COMMITMENT_LEN] {
        *self.commitment
    }

    /// Constant-time comparison with a header's commitment (MUST 5.2).
    pub(crate) fn check_commitment(&self, stored: &[u8; COMMITMENT_LEN]) -> Result<(), Error> {
        if bool::from(self.commitment.ct_eq(stored)) { Ok(()) } else { Err(Error::Authentication) }
    }

    /// Binds the keys to a header core, ready to seal or open frames.
    pub(crate) fn frame_cipher(self, header_core: &[u8]) -> FrameCipher {
        let mut aad = Vec::with_capacity(header_core.len() + 5);
        aad.extend_from_slice(header_core);
        aad.extend_from_slice(&[0; 5]);
        FrameCipher { cipher: self.cipher, aad }
    }
}

/// Seals and opens the frames of one message (MUST 5.4, 5.5).
pub(crate) struct FrameCipher {
    cipher: Gcm,
    /// The header core followed by five bytes of frame position, rewritten per frame.
    aad: Vec<u8>,
}

impl FrameCipher {
    /// Encrypts frame `sequence` in place and returns its tag.
    pub(crate) fn seal(&mut self, sequence: u32, is_final: bool, buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        let nonce = self.position(sequence, is_final);
        self.cipher.seal_in_place(&nonce, &self.aad, buf)
    }

    /// Decrypts frame `sequence` in place; on failure the buffer is zeroed.
    pub(crate) fn open(
        &mut self,
        sequence: u32,
        is_final: bool,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        let nonce = self.position(sequence, is_final);
        self.cipher.open_in_place(&nonce, &self.aad, buf, tag)
    }

    /// Writes the frame position into the AAD and returns the nonce:
    /// seven zero bytes, the sequence number, the final flag.
    fn position(&mut self, sequence: u32, is_final: bool) -> [u8; NONCE_LEN] {
        let mut position = [0u8; 5];
        position[..4].copy_from_slice(&sequence.to_be_bytes());
        position[4] = u8::from(is_final);
        let tail = self.aad.len() - 5;
        self.aad[tail..].copy_from_slice(&position);
        let mut nonce = [0u8; NONCE_LEN];
        nonce[7..].copy_from_slice(&position);
        nonce
    }
}

//! Data keys: a message's plaintext data key, and its wrapped copies.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::FormatError;

/// A message's plaintext data key (16, 24 or 32 bytes by suite), as the
/// caller's keyring unwrapped it. Zeroized on drop; no `Debug`, `Clone`
/// or `Display`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PlaintextDataKey {
    pub(super) bytes: [u8; 32],
    pub(super) len: usize,
}

impl PlaintextDataKey {
    /// Copies a key of 16, 24 or 32 bytes; the caller wipes its own copy.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] for any other length (the bytes are not echoed).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, FormatError> {
        if ![16, 24, 32].contains(&bytes.len()) {
            return Err(FormatError::Invalid("data key length (16, 24 or 32 bytes)"));
        }
        let mut key = Self { bytes: [0; 32], len: bytes.len() };
        key.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(key)
    }

    /// The key bytes, for a key-wrapping call.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl From<crate::DataKey> for PlaintextDataKey {
    fn from(key: crate::DataKey) -> Self {
        Self { bytes: *key.expose_secret(), len: 32 }
    }
}

/// One wrapped (encrypted) data key of a message header, borrowed from it.
///
/// The crate's [`EncryptedDataKey`](crate::EncryptedDataKey) does not fit:
/// the SDK's provider info is bytes (the raw AES keyring puts a binary IV
/// in it), not a UTF-8 key id, and its fields may be up to 65,535 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrappedKeyRef<'a> {
    provider_id: &'a str,
    provider_info: &'a [u8],
    ciphertext: &'a [u8],
}

impl<'a> WrappedKeyRef<'a> {
    pub(crate) fn new(provider_id: &'a str, provider_info: &'a [u8], ciphertext: &'a [u8]) -> Self {
        Self { provider_id, provider_info, ciphertext }
    }

    /// The keyring family, such as `aws-kms` or a raw keyring's namespace.
    pub fn provider_id(&self) -> &'a str {
        self.provider_id
    }

    /// The provider's information: a KMS key ARN, or for raw AES the key
    /// name, tag length, IV length and IV.
    pub fn provider_info(&self) -> &'a [u8] {
        self.provider_info
    }

    /// The wrapped key.
    pub fn ciphertext(&self) -> &'a [u8] {
        self.ciphertext
    }

    /// An owned copy.
    pub fn to_owned(&self) -> WrappedKey {
        WrappedKey {
            provider_id: self.provider_id.to_owned(),
            provider_info: self.provider_info.to_vec(),
            ciphertext: self.ciphertext.to_vec(),
        }
    }
}

/// A wrapped data key to write into a message: what the caller's keyring
/// produced. Each field must be at most 65,535 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey {
    /// The keyring family (`aws-kms`, a raw keyring's namespace).
    pub provider_id: String,
    /// The provider's information (a KMS key ARN, raw AES's name and IV).
    pub provider_info: Vec<u8>,
    /// The wrapped key.
    pub ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// A borrowed view.
    pub fn as_ref(&self) -> WrappedKeyRef<'_> {
        WrappedKeyRef::new(&self.provider_id, &self.provider_info, &self.ciphertext)
    }
}

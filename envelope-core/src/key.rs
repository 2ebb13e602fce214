//! Data keys and their wrapped forms.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::codec::{Reader, put_vec16};
use crate::error::{Error, FormatError};

/// Length of a data key in bytes.
pub const DATA_KEY_LEN: usize = 32;
/// Longest provider id (MUST 5.2).
pub const MAX_PROVIDER_ID_LEN: usize = 64;
/// Longest key id; an AWS KMS ARN is at most 2048 (MUST 5.2).
pub const MAX_KEY_ID_LEN: usize = 2048;
/// Longest wrapped key; KMS ciphertext blobs are at most 6144 (MUST 5.2).
pub const MAX_WRAPPED_KEY_LEN: usize = 6144;

/// A 256-bit data key in plaintext.
///
/// Its `Debug` prints `DataKey(<redacted>)`; it has no `Display`, `Clone` or
/// serialisation; it is compared in constant time and zeroized when dropped. The only way to read its
/// bytes is [`DataKey::expose_secret`], whose name marks every place that does.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; DATA_KEY_LEN]);

impl DataKey {
    /// A fresh random key from the operating system.
    ///
    /// # Errors
    /// [`Error::Io`] when the system random source fails.
    pub fn generate() -> Result<Self, Error> {
        let mut key = Self([0; DATA_KEY_LEN]);
        crate::random::fill(&mut key.0)?;
        Ok(key)
    }

    /// Takes ownership of key bytes produced elsewhere (a KMS response, an
    /// unwrap). The caller zeroizes its own copy.
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Copies a slice that must be exactly 32 bytes long.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] for any other length; the bytes are not echoed.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut key = Self([0; DATA_KEY_LEN]);
        if bytes.len() != DATA_KEY_LEN {
            return Err(FormatError::Invalid("data key length (must be 32 bytes)"));
        }
        key.0.copy_from_slice(bytes);
        Ok(key)
    }

    /// The key bytes, for a cipher or a key-wrapping call.
    pub fn expose_secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }

    /// Duplicates the key into a new zeroizing value. Deliberately not `Clone`.
    pub fn duplicate(&self) -> Self {
        Self(self.0)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl PartialEq for DataKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for DataKey {}

/// A data key wrapped by one keyring: who wrapped it, under which key, and
/// the ciphertext. All of it is safe to log and store.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EncryptedDataKey {
    provider_id: String,
    key_id: String,
    wrapped: Vec<u8>,
}

impl EncryptedDataKey {
    /// A wrapped key, checked against the limits of MUST 5.2.
    ///
    /// # Errors
    /// [`FormatError::TooLong`] or [`FormatError::Invalid`] when a field
    /// breaks a limit or the provider id is empty.
    pub fn new(
        provider_id: impl Into<String>,
        key_id: impl Into<String>,
        wrapped: Vec<u8>,
    ) -> Result<Self, FormatError> {
        let edk = Self { provider_id: provider_id.into(), key_id: key_id.into(), wrapped };
        edk.check()?;
        Ok(edk)
    }

    fn check(&self) -> Result<(), FormatError> {
        let limits = [
            ("provider id", self.provider_id.len(), MAX_PROVIDER_ID_LEN),
            ("key id", self.key_id.len(), MAX_KEY_ID_LEN),
            ("wrapped key", self.wrapped.len(), MAX_WRAPPED_KEY_LEN),
        ];
        for (field, len, max) in limits {
            if len > max {
                return Err(FormatError::TooLong { field, len, max });
            }
        }
        if self.provider_id.is_empty() {
            return Err(FormatError::Invalid("provider id (empty)"));
        }
        Ok(())
    }

    /// The keyring family that wrote it, such as `aws-kms` or `rekey-local`.
    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }

    /// The wrapping key's id within the provider (a KMS key ARN, a local `name/vN`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The wrapped key bytes (ciphertext).
    pub fn wrapped(&self) -> &[u8] {
        &self.wrapped
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_vec16(out, self.provider_id.as_bytes());
        put_vec16(out, self.key_id.as_bytes());
        put_vec16(out, &self.wrapped);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let (provider_id, key_id, wrapped) = Self::read_parts(r)?;
        Self::new(provider_id, key_id, wrapped.to_vec())
    }

    /// Reads one encoded wrapped key, checking every rule, without copying it out.
    pub(crate) fn read_parts<'a>(r: &mut Reader<'a>) -> Result<(&'a str, &'a str, &'a [u8]), FormatError> {
        let provider = r.vec16("provider id", MAX_PROVIDER_ID_LEN)?;
        let key_id = r.vec16("key id", MAX_KEY_ID_LEN)?;
        let wrapped = r.vec16("wrapped key", MAX_WRAPPED_KEY_LEN)?;
        let provider_id = std::str::from_utf8(provider).map_err(|_| FormatError::NotUtf8("provider id"))?;
        let key_id = std::str::from_utf8(key_id).map_err(|_| FormatError::NotUtf8("key id"))?;
        if provider_id.is_empty() {
            return Err(FormatError::Invalid("provider id (empty)"));
        }
        Ok((provider_id, key_id, wrapped))
    }
}

impl fmt::Debug for EncryptedDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedDataKey")
            .field("provider_id", &self.provider_id)
            .field("key_id", &self.key_id)
            .field("wrapped_len", &self.wrapped.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_key_compares_by_value() {
        let a = DataKey::from_bytes([7; 32]);
        assert!(a == DataKey::from_bytes([7; 32]));
        assert!(a != DataKey::from_bytes([8; 32]));
        assert!(DataKey::try_from_slice(&[0; 31]).is_err());
        assert_eq!(format!("{a:?}"), "DataKey(<redacted>)");
    }

    #[test]
    fn edk_limits_are_enforced() {
        assert!(EncryptedDataKey::new("", "k", vec![1]).is_err());
        assert!(EncryptedDataKey::new("p", "k".repeat(MAX_KEY_ID_LEN + 1), vec![1]).is_err());
        assert!(EncryptedDataKey::new("p", "k", vec![0; MAX_WRAPPED_KEY_LEN + 1]).is_err());
        let edk = EncryptedDataKey::new("p", "k", vec![0; 3]).expect("within limits");
        assert_eq!(format!("{edk:?}"), r#"EncryptedDataKey { provider_id: "p", key_id: "k", wrapped_len: 3 }"#);
    }
}

//! The SDKs' raw AES keyring (spec `framework/raw-aes-keyring.md`): a data
//! key wrapped with AES-GCM under a wrapping key the operator holds, the
//! serialized encryption context as associated data.
//!
//! Provider id = the key namespace. Provider info = key name ‖ tag length
//! in bits (u32, 128) ‖ IV length (u32, 12) ‖ IV. Ciphertext = encrypted
//! data key ‖ tag.

use std::fmt;

use zeroize::Zeroizing;

use crate::context::EncryptionContext;
use crate::error::{Error, FormatError, KeyringError, KeyringErrorKind};

use super::header::Header;
use super::header::serialize_context;
use super::keys::{PlaintextDataKey, WrappedKey, WrappedKeyRef};
use super::suite::{Cipher, IV_LEN, TAG_LEN};

/// The only wrapping parameters the SDKs use: 128-bit tags, 12-byte IVs.
const TAG_BITS: u32 = 128;

/// A raw AES wrapping key (128, 192 or 256 bits) and its namespace and
/// name, as configured in the SDK's `RawAESKeyring` or `RawMasterKey`
/// (provider id and key id there). Its `Debug` shows the names only.
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: Zeroizing<Vec<u8>>,
}

impl RawAesKeyring {
    /// A keyring for `wrapping_key` (16, 24 or 32 bytes), copied.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] for another key length or an empty namespace.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, wrapping_key: &[u8]) -> Result<Self, Error> {
        if ![16, 24, 32].contains(&wrapping_key.len()) {
            return Err(FormatError::Invalid("raw AES wrapping key length (16, 24 or 32 bytes)").into());
        }
        let namespace = namespace.into();
        if namespace.is_empty() {
            return Err(FormatError::Invalid("raw AES key namespace (empty)").into());
        }
        Ok(Self { namespace, name: name.into(), key: Zeroizing::new(wrapping_key.to_vec()) })
    }

    /// Unwraps the first of the header's wrapped keys that is this key's
    /// and that decrypts under the header's context.
    ///
    /// # Errors
    /// [`Error::Keyring`] of kind [`KeyringErrorKind::NoMatchingKey`] when
    /// none is, or none decrypts (wrong key, altered context).
    pub fn unwrap(&self, header: &Header<'_>) -> Result<PlaintextDataKey, Error> {
        let key_len = header.suite().data_key_len();
        let aad = header.serialized_context();
        let cipher = Cipher::new(&self.key);
        for wrapped in header.wrapped_keys() {
            let Some(iv) = self.iv_if_ours(&wrapped) else { continue };
            let Some(split) = wrapped.ciphertext().len().checked_sub(TAG_LEN) else { continue };
            if split != key_len {
                continue;
            }
            let (encrypted, tag) = wrapped.ciphertext().split_at(split);
            let mut tag_array = [0u8; TAG_LEN];
            tag_array.copy_from_slice(tag);
            let mut plain = Zeroizing::new([0u8; 32]);
            if cipher.open_to(&iv, aad, encrypted, &tag_array, &mut plain[..key_len]).is_ok() {
                return Ok(PlaintextDataKey::from_slice(&plain[..key_len])?);
            }
        }
        Err(KeyringError::new(
            KeyringErrorKind::NoMatchingKey,
            format!(
                "no wrapped key of the message unwraps with raw AES key {}/{} (another key, or the context was altered)",
                self.namespace, self.name
            ),
        )
        .into())
    }

    /// The IV of a wrapped key that names this keyring, else `None`.
    fn iv_if_ours(&self, wrapped: &WrappedKeyRef<'_>) -> Option<[u8; IV_LEN]> {
        if wrapped.provider_id() != self.namespace {
            return None;
        }
        let rest = wrapped.provider_info().strip_prefix(self.name.as_bytes())?;
        if rest.len() != 4 + 4 + IV_LEN {
            return None;
        }
        let (tag_bits, rest) = rest.split_at(4);
        let (iv_len, iv) = rest.split_at(4);
        if tag_bits != TAG_BITS.to_be_bytes() || iv_len != 12u32.to_be_bytes() {
            return None;
        }
        let mut out = [0u8; IV_LEN];
        out.copy_from_slice(iv);
        Some(out)
    }

    /// Wraps `data_key` for a message with `context` (for a signed suite,
    /// [`Encryptor::encryption_context`](super::Encryptor::encryption_context)),
    /// under a fresh random IV.
    ///
    /// # Errors
    /// [`Error::Io`] when the system random source fails; [`Error::Format`]
    /// for a context too large to serialize.
    pub fn wrap(&self, data_key: &PlaintextDataKey, context: &EncryptionContext) -> Result<WrappedKey, Error> {
        let mut iv = [0u8; IV_LEN];
        crate::random::fill(&mut iv)?;
        let mut aad = Vec::new();
        serialize_context(context.iter(), &mut aad)?;
        let key = data_key.expose_secret();
        let mut ciphertext = vec![0u8; key.len()];
        let tag = Cipher::new(&self.key).seal_to(&iv, &aad, key, &mut ciphertext)?;
        ciphertext.extend_from_slice(&tag);
        let mut provider_info = self.name.as_bytes().to_vec();
        provider_info.extend_from_slice(&TAG_BITS.to_be_bytes());
        provider_info.extend_from_slice(&12u32.to_be_bytes());
        provider_info.extend_from_slice(&iv);
        Ok(WrappedKey { provider_id: self.namespace.clone(), provider_info, ciphertext })
    }
}

impl fmt::Debug for RawAesKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAesKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

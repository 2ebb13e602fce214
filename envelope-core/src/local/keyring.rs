//! The local keyring: wraps data keys under a local key's latest version and
//! unwraps them with any version it holds.

use zeroize::Zeroizing;

use crate::aead::{Gcm, NONCE_LEN, TAG_LEN};
use crate::codec::put_vec16;
use crate::context::EncryptionContext;
use crate::error::{KeyringError, KeyringErrorKind};
use crate::key::{DATA_KEY_LEN, DataKey, EncryptedDataKey};
use crate::keyring::{Keyring, KeyringFuture, no_matching_key};

use super::key::{KeyVersion, LOCAL_PROVIDER_ID, LocalKey, WRAPPED_LEN, invalid};

/// Wraps with one local key and unwraps with an allowed set of local keys.
pub struct LocalKeyring {
    wrapping: Option<LocalKey>,
    allowed: Vec<LocalKey>,
    key_id: String,
}

impl LocalKeyring {
    /// A keyring that wraps with the newest version of `key` and unwraps with
    /// any version of it.
    pub fn new(key: LocalKey) -> Self {
        Self::with_allowed(Some(key), Vec::new())
    }

    /// A keyring that wraps with `wrapping` (if any) and may also unwrap with
    /// the keys in `allowed` (for re-wrapping from one local key to another,
    /// or decrypting with every key of a keystore).
    pub fn with_allowed(wrapping: Option<LocalKey>, allowed: Vec<LocalKey>) -> Self {
        let key_id = wrapping.as_ref().map(LocalKey::key_id).unwrap_or_default();
        Self { wrapping, allowed, key_id }
    }

    /// Makes a data key and wraps it.
    ///
    /// # Errors
    /// [`KeyringErrorKind::Unsupported`] without a wrapping key.
    pub fn generate_sync(&self, context: &EncryptionContext) -> Result<(DataKey, EncryptedDataKey), KeyringError> {
        let key = DataKey::generate().map_err(|e| KeyringError::new(KeyringErrorKind::Io, e.to_string()))?;
        let edk = self.wrap_sync(&key, context)?;
        Ok((key, edk))
    }

    /// Wraps `data_key` with the newest version of the wrapping key (MUST 8.1).
    ///
    /// # Errors
    /// [`KeyringErrorKind::Unsupported`] without a wrapping key.
    pub fn wrap_sync(&self, data_key: &DataKey, context: &EncryptionContext) -> Result<EncryptedDataKey, KeyringError> {
        let key = self.wrapping.as_ref().ok_or_else(|| {
            KeyringError::new(
                KeyringErrorKind::Unsupported,
                "this local keyring only decrypts; name a key to encrypt with",
            )
        })?;
        let version = key.versions.last().ok_or_else(|| invalid("local key has no version"))?;
        // Sized once and zeroizing: the data key sits here in clear until it
        // is sealed in place, and a failed seal must not leave it behind.
        let mut wrapped = Zeroizing::new(Vec::with_capacity(WRAPPED_LEN));
        let mut nonce = [0u8; NONCE_LEN];
        crate::random::fill(&mut nonce).map_err(|e| KeyringError::new(KeyringErrorKind::Io, e.to_string()))?;
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(data_key.expose_secret());
        let aad = wrap_aad(&self.key_id, context);
        let tag = Gcm::new(&version.secret)
            .seal_in_place(&nonce, &aad, &mut wrapped[NONCE_LEN..])
            .map_err(|_| invalid("local wrap failed"))?;
        wrapped.extend_from_slice(&tag);
        // Sealed: ciphertext from here on.
        EncryptedDataKey::new(LOCAL_PROVIDER_ID, self.key_id.clone(), wrapped.to_vec())
            .map_err(|e| invalid(e.to_string()))
    }

    /// Unwraps the first of `edks` that an allowed key opens.
    ///
    /// # Errors
    /// [`KeyringErrorKind::NoMatchingKey`] naming the envelope's key ids when
    /// none is ours; [`KeyringErrorKind::InvalidCiphertext`] when ours fail
    /// to open (wrong context or tampering).
    pub fn unwrap_sync(&self, edks: &[EncryptedDataKey], context: &EncryptionContext) -> Result<DataKey, KeyringError> {
        let mut tried = false;
        for edk in edks {
            let Some(version) = self.version_for(edk) else {
                continue;
            };
            tried = true;
            if let Some(key) = open_wrapped(version, edk, context) {
                return Ok(key);
            }
        }
        if tried {
            Err(KeyringError::new(
                KeyringErrorKind::InvalidCiphertext,
                "the local key did not unwrap the data key: wrong encryption context, or the data was altered",
            ))
        } else {
            Err(no_matching_key(edks))
        }
    }

    fn version_for(&self, edk: &EncryptedDataKey) -> Option<&KeyVersion> {
        if edk.provider_id() != LOCAL_PROVIDER_ID {
            return None;
        }
        let (name, version) = edk.key_id().rsplit_once("/v")?;
        let number: u32 = version.parse().ok()?;
        self.wrapping.iter().chain(&self.allowed).find(|k| k.name == name)?.version(number)
    }
}

fn open_wrapped(version: &KeyVersion, edk: &EncryptedDataKey, context: &EncryptionContext) -> Option<DataKey> {
    let wrapped = edk.wrapped();
    if wrapped.len() != WRAPPED_LEN {
        return None;
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&wrapped[..NONCE_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&wrapped[NONCE_LEN + DATA_KEY_LEN..]);
    let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    key.copy_from_slice(&wrapped[NONCE_LEN..NONCE_LEN + DATA_KEY_LEN]);
    let aad = wrap_aad(edk.key_id(), context);
    Gcm::new(&version.secret).open_in_place(&nonce, &aad, key.as_mut(), &tag).ok()?;
    Some(DataKey::from_bytes(*key))
}

/// The wrapping AAD of MUST 8.1.
fn wrap_aad(key_id: &str, context: &EncryptionContext) -> Vec<u8> {
    let mut aad = b"rekey-local v1".to_vec();
    put_vec16(&mut aad, key_id.as_bytes());
    context.encode(&mut aad);
    aad
}

impl Keyring for LocalKeyring {
    fn provider_id(&self) -> &str {
        LOCAL_PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn can_unwrap(&self, edk: &EncryptedDataKey) -> bool {
        self.version_for(edk).is_some()
    }

    fn needs_runtime(&self) -> bool {
        false
    }

    fn generate<'a>(&'a self, context: &'a EncryptionContext) -> KeyringFuture<'a, (DataKey, EncryptedDataKey)> {
        Box::pin(std::future::ready(self.generate_sync(context)))
    }

    fn wrap<'a>(&'a self, key: &'a DataKey, context: &'a EncryptionContext) -> KeyringFuture<'a, EncryptedDataKey> {
        Box::pin(std::future::ready(self.wrap_sync(key, context)))
    }

    fn unwrap<'a>(
        &'a self,
        edks: &'a [EncryptedDataKey],
        context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, DataKey> {
        Box::pin(std::future::ready(self.unwrap_sync(edks, context)))
    }
}

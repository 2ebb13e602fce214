//! The keyring abstraction: what the codec needs from a key provider.
//!
//! Methods return boxed futures so that one trait serves both the local
//! keyring (whose futures are ready at once) and the AWS KMS keyring (which
//! awaits network calls), and so keyrings can be mixed as `dyn Keyring`,
//! without envelope-core depending on any async runtime.

use std::future::Future;
use std::pin::Pin;

use crate::context::EncryptionContext;
use crate::error::{Error, KeyringError, KeyringErrorKind};
use crate::key::{DataKey, EncryptedDataKey};

/// The future a keyring method returns.
pub type KeyringFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KeyringError>> + Send + 'a>>;

/// A key provider: wraps, unwraps and re-wraps data keys under its key.
///
/// A keyring instance stands for one wrapping key (the one [`Keyring::key_id`]
/// names), which it uses to generate, wrap and re-wrap, and for a set of keys
/// it is allowed to unwrap with ([`Keyring::can_unwrap`]).
pub trait Keyring: Send + Sync {
    /// The provider id written into the encrypted data keys this keyring makes.
    fn provider_id(&self) -> &str;

    /// The id of the key this keyring wraps under, as written into encrypted
    /// data keys (for KMS, the key ARN).
    fn key_id(&self) -> &str;

    /// Whether this keyring would try to unwrap `edk`: the provider matches
    /// and the key is on its allow-list.
    fn can_unwrap(&self, edk: &EncryptedDataKey) -> bool;

    /// Whether this keyring's futures need an async runtime (network I/O).
    /// [`Encryptor`](crate::Encryptor)'s blocking `_sync` methods refuse to
    /// call a keyring that says so. A keyring whose futures are ready at once
    /// (the local keyring) returns `false`; the default is `true`.
    fn needs_runtime(&self) -> bool {
        true
    }

    /// Makes a fresh data key and its wrapped form under this keyring's key.
    fn generate<'a>(&'a self, context: &'a EncryptionContext) -> KeyringFuture<'a, (DataKey, EncryptedDataKey)>;

    /// Wraps an existing data key under this keyring's key.
    fn wrap<'a>(&'a self, key: &'a DataKey, context: &'a EncryptionContext) -> KeyringFuture<'a, EncryptedDataKey>;

    /// Unwraps one of `edks`, trying those it [can unwrap](Keyring::can_unwrap)
    /// in order. Fails with [`KeyringErrorKind::NoMatchingKey`] when none is its.
    fn unwrap<'a>(&'a self, edks: &'a [EncryptedDataKey], context: &'a EncryptionContext)
    -> KeyringFuture<'a, DataKey>;

    /// Unwraps one of `edks` as an AWS Encryption SDK data key, which is
    /// 16, 24 or 32 bytes by suite (the SDKs' AES-128 and AES-192 suites
    /// wrap shorter keys). The default is [`Keyring::unwrap`], 32 bytes; a
    /// keyring whose provider hands back shorter keys (AWS KMS) overrides it.
    fn unwrap_esdk<'a>(
        &'a self,
        edks: &'a [EncryptedDataKey],
        context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, crate::esdk::PlaintextDataKey> {
        Box::pin(async move { self.unwrap(edks, context).await.map(crate::esdk::PlaintextDataKey::from) })
    }

    /// Re-wraps the data key inside `edk` under this keyring's key, moving it
    /// from the `source` context to the `destination` context. Only the keyrings
    /// in `sources` may unwrap `edk`: they are the operator's allow-list.
    ///
    /// The default unwraps with `sources` and wraps under this keyring's key,
    /// returning the data key with the result so the caller can check it
    /// against an envelope's commitment. A provider that re-wraps inside itself
    /// (KMS ReEncrypt) overrides this, keeps the data key out of the process,
    /// and MUST check that the key it actually unwrapped with is one of
    /// `sources`' keys.
    fn rewrap<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        source: &'a EncryptionContext,
        destination: &'a EncryptionContext,
        sources: &'a [&'a dyn Keyring],
    ) -> KeyringFuture<'a, Rewrapped> {
        Box::pin(async move {
            let data_key = unwrap_data_key(sources, std::slice::from_ref(edk), source).await?;
            let edk = self.wrap(&data_key, destination).await?;
            Ok(Rewrapped { edk, data_key: Some(data_key) })
        })
    }
}

/// The result of [`Keyring::rewrap`]. Its `Debug` never shows the data key.
#[derive(Debug)]
pub struct Rewrapped {
    /// The data key wrapped under the destination key.
    pub edk: EncryptedDataKey,
    /// The data key, when it passed through this process (unwrap and wrap);
    /// `None` when the provider re-wrapped it without releasing it (KMS ReEncrypt).
    pub data_key: Option<DataKey>,
}

/// A data key and the wrapped copies that go into an envelope's header.
pub struct Materials {
    /// The plaintext data key.
    pub data_key: DataKey,
    /// One wrapped copy per keyring.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
}

/// Makes encryption materials: the first keyring generates the data key and
/// every other one wraps it too (a multi-keyring), so any of them can decrypt.
///
/// # Errors
/// The first keyring error, or [`KeyringErrorKind::Invalid`] when `keyrings` is empty.
pub async fn generate_materials(
    keyrings: &[&dyn Keyring],
    context: &EncryptionContext,
) -> Result<Materials, KeyringError> {
    let (generator, others) = keyrings
        .split_first()
        .ok_or_else(|| KeyringError::new(KeyringErrorKind::Invalid, "no key was given to encrypt with"))?;
    let (data_key, first) = generator.generate(context).await?;
    let mut encrypted_data_keys = vec![first];
    for keyring in others {
        encrypted_data_keys.push(keyring.wrap(&data_key, context).await?);
    }
    Ok(Materials { data_key, encrypted_data_keys })
}

/// Unwraps the data key with the first keyring that holds one of `edks`.
///
/// A keyring that fails with anything but "no matching key" or "invalid
/// ciphertext" (a network fault, say) stops the search, so an outage is not
/// reported as a wrong key.
///
/// # Errors
/// [`KeyringErrorKind::NoMatchingKey`] naming the key ids the envelope was
/// made for when no keyring can unwrap any of them; otherwise the keyring's error.
pub async fn unwrap_data_key(
    keyrings: &[&dyn Keyring],
    edks: &[EncryptedDataKey],
    context: &EncryptionContext,
) -> Result<DataKey, KeyringError> {
    let mut last_invalid = None;
    for keyring in keyrings {
        if !edks.iter().any(|edk| keyring.can_unwrap(edk)) {
            continue;
        }
        match keyring.unwrap(edks, context).await {
            Ok(key) => return Ok(key),
            Err(e) if matches!(e.kind(), KeyringErrorKind::NoMatchingKey | KeyringErrorKind::InvalidCiphertext) => {
                last_invalid = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_invalid.unwrap_or_else(|| no_matching_key(edks)))
}

/// The error for "none of my keys fits", naming the keys the envelope was made for.
pub fn no_matching_key(edks: &[EncryptedDataKey]) -> KeyringError {
    let ids: Vec<String> = edks.iter().map(|e| format!("{}:{}", e.provider_id(), e.key_id())).collect();
    KeyringError::new(
        KeyringErrorKind::NoMatchingKey,
        format!(
            "none of the allowed keys can decrypt this data; it was encrypted for {}",
            if ids.is_empty() { "no key at all".to_owned() } else { ids.join(", ") }
        ),
    )
}

/// Whether a keyring failure concerns only the one encrypted data key it
/// was given (so the next one may still work), rather than the provider as a
/// whole (an outage, throttling, a local I/O fault).
fn is_per_key_failure(kind: KeyringErrorKind) -> bool {
    matches!(
        kind,
        KeyringErrorKind::NoMatchingKey
            | KeyringErrorKind::InvalidCiphertext
            | KeyringErrorKind::KeyNotFound
            | KeyringErrorKind::AccessDenied
            | KeyringErrorKind::KeyUnusable
            | KeyringErrorKind::Invalid
    )
}

/// Unwraps the data key of an envelope, one encrypted data key at a time,
/// and returns the first data key that passes `check`.
///
/// Anyone who can wrap a key for one of the envelope's keyrings (a holder of
/// the same local key, or of a KMS key the reader allows) can plant an
/// encrypted data key holding some *other* data key in front of the real one.
/// Unwrapping it succeeds; only the envelope's key commitment shows it is the
/// wrong key. Taking the first key that unwraps would let one planted entry
/// block decryption, so this function moves on to the next encrypted data key
/// whenever `check` rejects a key. Callers pass the commitment check, e.g.
/// `&|k| envelope.verify_data_key(k).is_ok()`.
///
/// Encrypted data keys are tried in the envelope's order; each goes to the
/// keyrings that [can unwrap](Keyring::can_unwrap) it, in `keyrings` order,
/// until one unwraps it. A failure that concerns that one key (no matching
/// key, invalid ciphertext, unknown or unusable key, access denied, a
/// malformed key id) moves on; any other failure (an outage, throttling, I/O)
/// stops the search, so an outage is not reported as a wrong key.
///
/// # Errors
/// [`Error::Authentication`] when some data key unwrapped but none passed
/// `check` (one opaque error: which entries were planted is not said);
/// otherwise [`Error::Keyring`] with the last per-key failure, or
/// [`KeyringErrorKind::NoMatchingKey`] naming the envelope's keys when no
/// keyring could try any of them; or the first failure that stopped the search.
pub async fn unwrap_data_key_checked(
    keyrings: &[&dyn Keyring],
    edks: &[EncryptedDataKey],
    context: &EncryptionContext,
    check: &(dyn Fn(&DataKey) -> bool + Sync),
) -> Result<DataKey, Error> {
    let mut rejected = false;
    let mut last_failure = None;
    for edk in edks {
        for keyring in keyrings.iter().filter(|k| k.can_unwrap(edk)) {
            match keyring.unwrap(std::slice::from_ref(edk), context).await {
                Ok(key) => {
                    if check(&key) {
                        return Ok(key);
                    }
                    // `key` is dropped (and zeroized) here; one keyring's
                    // answer for this entry is enough, try the next entry.
                    rejected = true;
                    break;
                }
                Err(e) if is_per_key_failure(e.kind()) => last_failure = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
    }
    if rejected {
        return Err(Error::Authentication);
    }
    Err(last_failure.unwrap_or_else(|| no_matching_key(edks)).into())
}

/// Checks `data_key` against a header's key commitment (MUST 5.2), for a
/// caller that holds only the header, such as a
/// [`StreamDecryptor`](crate::hazmat::StreamDecryptor) before the body is read: the
/// check to give [`unwrap_data_key_checked`] there.
///
/// # Errors
/// [`Error::Authentication`] when `data_key` is not the envelope's data key.
pub fn verify_commitment(header: &crate::header::Header, data_key: &DataKey) -> Result<(), Error> {
    crate::suite::check_commitment_only(header.suite, data_key, &header.message_id, &header.commitment)
}

//! A keyset with its data keys unwrapped: seals and opens compact records.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use crate::aead::Gcm;
use crate::context::EncryptionContext;
use crate::error::{Error, KeyringError, KeyringErrorKind};
use crate::key::DataKey;
use crate::legacy::{InnerEncoding, decrypt_legacy_record};
use crate::plaintext::Plaintext;

#[cfg(any(test, feature = "internals"))]
use super::key::{KEYSET_ID_LEN, record_cipher};
use super::key::{KeyId, KeysetId, invalid};
use super::record::{self, CompactRecord};
/// A keyset with its data keys unwrapped: seals compact records under the
/// primary and opens records of any key. `Send + Sync`; share it behind an
/// `Arc`. Its `Debug` shows ids only.
pub struct KeysetHandle {
    pub(super) id: KeysetId,
    pub(super) primary: Option<KeyId>,
    pub(super) keys: Vec<HandleKey>,
    pub(super) sealed: AtomicU64,
}

pub(super) struct HandleKey {
    pub(super) id: KeyId,
    pub(super) secret: Secret,
}

pub(super) enum Secret {
    /// The record key's expanded cipher (MUST 12.11).
    Records(Gcm),
    /// The legacy data key, for CBC records.
    Legacy(DataKey),
}

impl fmt::Debug for KeysetHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeysetHandle")
            .field("id", &self.id)
            .field("primary", &self.primary)
            .field("keys", &self.keys.iter().map(|k| k.id).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KeysetHandle {
    /// The keyset's id.
    pub fn keyset_id(&self) -> KeysetId {
        self.id
    }

    /// The key new records are sealed with.
    pub fn primary(&self) -> Option<KeyId> {
        self.primary
    }

    /// Whether the keyset has key `id` for records.
    pub fn has_record_key(&self, id: KeyId) -> bool {
        self.keys.iter().any(|k| k.id == id && matches!(k.secret, Secret::Records(_)))
    }

    /// Whether the keyset has a legacy CBC key.
    pub fn has_legacy_key(&self) -> bool {
        self.keys.iter().any(|k| matches!(k.secret, Secret::Legacy(_)))
    }

    /// Records this handle has sealed, for comparing with [`MAX_RECORDS_PER_KEY`](super::MAX_RECORDS_PER_KEY)
    /// (this process only).
    pub fn records_sealed(&self) -> u64 {
        self.sealed.load(Ordering::Relaxed)
    }

    /// Seals `plaintext` as a binary compact record under the primary key,
    /// bound to `context` (give the same to open it).
    ///
    /// # Errors
    /// [`KeyringErrorKind::Invalid`] when the keyset has no primary;
    /// [`FormatError::TooLong`](crate::FormatError::TooLong) past [`MAX_COMPACT_PLAINTEXT`](super::MAX_COMPACT_PLAINTEXT).
    pub fn encrypt(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Vec<u8>, Error> {
        let (id, cipher) = self.primary_cipher()?;
        self.sealed.fetch_add(1, Ordering::Relaxed);
        record::seal(cipher, id, plaintext, context)
    }

    /// Seals many plaintexts at once under the primary key, as
    /// [`KeysetHandle::encrypt`] does each. Faster per record: the random
    /// generator's fork check (a system call, a few hundred nanoseconds on a
    /// VM) is made once for the batch instead of once per record.
    ///
    /// # Errors
    /// As [`KeysetHandle::encrypt`]; nothing is returned if any plaintext fails.
    pub fn encrypt_many(&self, plaintexts: &[&[u8]], context: &EncryptionContext) -> Result<Vec<Vec<u8>>, Error> {
        let (id, cipher) = self.primary_cipher()?;
        self.sealed.fetch_add(u64::try_from(plaintexts.len()).unwrap_or(u64::MAX), Ordering::Relaxed);
        record::seal_many(cipher, id, plaintexts, context)
    }

    /// As [`KeysetHandle::encrypt`], in the text form (standard base64, MUST 12.13).
    ///
    /// # Errors
    /// As [`KeysetHandle::encrypt`].
    pub fn encrypt_text(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<String, Error> {
        Ok(crate::text::encode_text(&self.encrypt(plaintext, context)?))
    }

    /// Opens a binary compact record.
    ///
    /// # Errors
    /// [`Error::Authentication`] for every failure past the layout: a key id
    /// this keyset lacks, a wrong key, keyset or context, altered bytes
    /// (MUST 12.14); [`Error::Format`] for a record too short or without the magic.
    pub fn decrypt(&self, record: &[u8], context: &EncryptionContext) -> Result<Plaintext, Error> {
        let record = CompactRecord::parse(record)?;
        let cipher = self
            .keys
            .iter()
            .find_map(|k| match &k.secret {
                Secret::Records(c) if k.id == record.key_id() => Some(c),
                _ => None,
            })
            .ok_or(Error::Authentication)?;
        record.open(cipher, context)
    }

    /// Opens a compact record in the text form.
    ///
    /// # Errors
    /// As [`KeysetHandle::decrypt`], and [`FormatError::BadBase64`](crate::FormatError::BadBase64).
    pub fn decrypt_text(&self, record: &str, context: &EncryptionContext) -> Result<Plaintext, Error> {
        let bytes = crate::text::decode_text(record)?;
        self.decrypt(&bytes, context)
    }

    /// Decrypts a legacy CBC record (docs/format.md §11) with the keyset's
    /// legacy key. For batch migration only: see [`crate::legacy`].
    ///
    /// # Errors
    /// [`KeyringErrorKind::NoMatchingKey`] when the keyset has no legacy key;
    /// otherwise as [`decrypt_legacy_record`].
    pub fn decrypt_legacy(&self, record: &str, inner: InnerEncoding) -> Result<Zeroizing<String>, Error> {
        let key = self
            .keys
            .iter()
            .find_map(|k| match &k.secret {
                Secret::Legacy(key) => Some(key),
                Secret::Records(_) => None,
            })
            .ok_or_else(|| {
                KeyringError::new(
                    KeyringErrorKind::NoMatchingKey,
                    "this keyset has no legacy key; add one with `rekey keyset import-legacy`",
                )
            })?;
        decrypt_legacy_record(key, record, inner)
    }

    fn primary_cipher(&self) -> Result<(KeyId, &Gcm), Error> {
        let id = self.primary.ok_or_else(|| {
            Error::from(KeyringError::new(
                KeyringErrorKind::Invalid,
                "the keyset has no primary key to encrypt with; add one with `rekey keyset rotate`",
            ))
        })?;
        self.keys
            .iter()
            .find_map(|k| match &k.secret {
                Secret::Records(c) if k.id == id => Some((id, c)),
                _ => None,
            })
            .ok_or_else(|| invalid(format!("the keyset's primary {id} is not a records key")))
    }
}

/// Seals a record with a chosen nonce: known-answer tests only.
#[cfg(test)]
pub(super) fn seal_with_nonce(
    data_key: &DataKey,
    keyset_id: [u8; KEYSET_ID_LEN],
    key_id: u32,
    nonce: &[u8; 12],
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Vec<u8>, Error> {
    let cipher = record_cipher(data_key, &KeysetId(keyset_id), KeyId(key_id));
    record::seal_with_nonce(&cipher, KeyId(key_id), nonce, plaintext, context)
}

/// Opens a record with a known data key: fuzzing only.
#[cfg(any(test, feature = "internals"))]
pub(crate) fn open_with_key(
    data_key: &DataKey,
    keyset_id: [u8; KEYSET_ID_LEN],
    record: &[u8],
    context: &EncryptionContext,
) -> Result<Plaintext, Error> {
    let record = CompactRecord::parse(record)?;
    let cipher = record_cipher(data_key, &KeysetId(keyset_id), record.key_id());
    record.open(&cipher, context)
}

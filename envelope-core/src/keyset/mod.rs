//! Keysets and compact records (docs/format.md §12): the blog's "one stored
//! data key, many records" pattern, done with authentication, key commitment
//! and rotation.
//!
//! A [`Keyset`] holds a few data keys, each with a 4-byte [`KeyId`], each
//! wrapped by one or more keyrings (KMS, local), one of them the primary.
//! [`Keyset::unwrap`] turns it into a [`KeysetHandle`] that seals short
//! compact records under the primary and opens records of any of its keys:
//!
//! ```
//! # use envelope_core::{EncryptionContext, LocalKey, LocalKeyring, Keyring};
//! # use envelope_core::keyset::Keyset;
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let waker = std::task::Waker::noop();
//! #     let mut cx = std::task::Context::from_waker(&waker);
//! #     let mut f = std::pin::pin!(f);
//! #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
//! # }
//! # let keyring = LocalKeyring::new(LocalKey::generate("app").unwrap());
//! let keyrings: [&dyn Keyring; 1] = [&keyring];
//! let keyset = block_on(Keyset::create(&keyrings))?;   // store keyset.to_text()
//! let handle = block_on(keyset.unwrap(&keyrings))?;
//! let context = EncryptionContext::from_pairs([("column", "ssn")])?;
//! let record = handle.encrypt_text(b"i want to back to home", &context)?;
//! assert!(record.len() <= 88);
//! assert_eq!(&*handle.decrypt_text(&record, &context)?, b"i want to back to home");
//! # Ok::<(), envelope_core::Error>(())
//! ```
//!
//! # Nonces and the per-key limit
//!
//! A compact record is AES-256-GCM under the key's record key with a random
//! 96-bit nonce, like a Tink keyset record. Two records under one key
//! colliding on a nonce would leak the XOR of their plaintexts and GCM's
//! authentication key, so each data key MUST seal at most
//! [`MAX_RECORDS_PER_KEY`] = 2^32 records (NIST SP 800-38D §8.3): after q
//! records the chance of any collision is below q²/2^97, 2^-33 at the limit.
//! Rotate to a new primary ([`Keyset::rotate`]) well before; a new key starts
//! a new budget, old records stay readable. [`KeysetHandle::records_sealed`]
//! counts what this process sealed; the global count is the application's
//! to keep (docs/format.md §12.7 says why longer nonces were not chosen).
//!
//! # Key commitment without record bytes
//!
//! Each key's entry carries a commitment to its data key, and every wrapped
//! copy of the key is bound to the keyset id, the key id, the key's purpose
//! and that commitment (the KMS encryption context, the local keyring's
//! AAD). Unwrapping checks the commitment. So a keyset entry yields one data
//! key or none: a wrapped key moved from another entry, another keyset or
//! another application does not unwrap under this entry's context. A record
//! is opened only with the key its keyset assigns to its key id, and keys
//! are derived per keyset, so a record is bound to its data key, keyset,
//! key id and context. The trust model (who may write a keyset file) is in
//! docs/format.md §12.8.

mod file;
mod record;
mod store;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::aead::Gcm;
use crate::context::EncryptionContext;
use crate::error::{Error, FormatError, KeyringError, KeyringErrorKind};
use crate::key::{DATA_KEY_LEN, DataKey, EncryptedDataKey};
use crate::keyring::{Keyring, unwrap_data_key_checked};
use crate::legacy::{InnerEncoding, decrypt_legacy_record};
use crate::plaintext::Plaintext;

pub use file::{KEYSET_FILE_TAG, MAX_KEYSET_FILE_LEN, MAX_KEYSET_KEYS, MAX_WRAPS_PER_KEY};
pub use record::{
    COMPACT_MAGIC, COMPACT_OVERHEAD, COMPACT_PREFIX_LEN, CompactRecord, MAX_COMPACT_PLAINTEXT,
    looks_like_compact_record,
};
pub use store::{FileKeysetStore, KeysetStore, MemoryKeysetStore, StoreFuture};

/// Records one data key may seal (MUST 12.12): 2^32, for a nonce collision
/// chance below 2^-32 with random 96-bit nonces.
pub const MAX_RECORDS_PER_KEY: u64 = 1 << 32;
/// Length of a keyset id.
pub const KEYSET_ID_LEN: usize = 16;
/// Length of a key commitment.
pub const KEY_COMMITMENT_LEN: usize = 32;

/// The encryption context keys that bind a wrapped data key to its entry (MUST 12.6).
pub const CONTEXT_KEYSET: &str = "rekey-keyset";
/// See [`CONTEXT_KEYSET`].
pub const CONTEXT_KEY_ID: &str = "rekey-keyset-key";
/// See [`CONTEXT_KEYSET`].
pub const CONTEXT_PURPOSE: &str = "rekey-keyset-purpose";
/// See [`CONTEXT_KEYSET`].
pub const CONTEXT_COMMITMENT: &str = "rekey-keyset-commitment";

/// The 4-byte id of a key within a keyset, written in every compact record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl std::str::FromStr for KeyId {
    type Err = FormatError;

    /// Eight hex digits, as [`KeyId`]'s `Display` writes them.
    fn from_str(s: &str) -> Result<Self, FormatError> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(FormatError::Invalid("key id (must be 8 lowercase hex digits)"));
        }
        u32::from_str_radix(s, 16).map(KeyId).map_err(|_| FormatError::Invalid("key id"))
    }
}

/// The random 16-byte id of a keyset; every key of the keyset is bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeysetId(pub [u8; KEYSET_ID_LEN]);

impl fmt::Display for KeysetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What a keyset key may be used for; bound into its commitment, so an
/// entry's purpose cannot be changed by editing the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyPurpose {
    /// Seals and opens compact records.
    Records,
    /// Reads legacy CBC records only (an imported blog data key); never primary.
    LegacyCbc,
}

impl KeyPurpose {
    /// The word in the keyset file and the wrapping context.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Records => "records",
            Self::LegacyCbc => "legacy-cbc",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Self::Records => 1,
            Self::LegacyCbc => 2,
        }
    }

    fn parse(word: &str) -> Option<Self> {
        match word {
            "records" => Some(Self::Records),
            "legacy-cbc" => Some(Self::LegacyCbc),
            _ => None,
        }
    }
}

/// One key of a keyset as stored: its id, purpose, commitment and wrapped
/// copies. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysetKey {
    id: KeyId,
    purpose: KeyPurpose,
    created: u64,
    commitment: [u8; KEY_COMMITMENT_LEN],
    wraps: Vec<EncryptedDataKey>,
}

impl KeysetKey {
    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// What the key is for.
    pub fn purpose(&self) -> KeyPurpose {
        self.purpose
    }

    /// When it was added, seconds since the Unix epoch.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The commitment to its data key (public).
    pub fn commitment(&self) -> &[u8; KEY_COMMITMENT_LEN] {
        &self.commitment
    }

    /// Its wrapped copies, one per keyring that wrapped it.
    pub fn wraps(&self) -> &[EncryptedDataKey] {
        &self.wraps
    }
}

/// A keyset as stored: no secret, every data key wrapped. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    id: KeysetId,
    primary: Option<KeyId>,
    keys: Vec<KeysetKey>,
}

/// What [`Keyset::rewrap`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapSummary {
    /// Keys whose wrapped copy was re-wrapped (one `Keyring::rewrap` call each).
    pub rewrapped: Vec<KeyId>,
    /// Keys that already had a copy under the destination key and none
    /// under a source key: nothing to do (a rerun).
    pub already: Vec<KeyId>,
}

impl Keyset {
    /// A new keyset with a fresh random id and one records key, the primary,
    /// wrapped by every keyring in `keyrings` (the first generates it).
    ///
    /// # Errors
    /// The first keyring error; [`Error::Io`] when the random source fails.
    pub async fn create(keyrings: &[&dyn Keyring]) -> Result<Self, Error> {
        let mut id = [0u8; KEYSET_ID_LEN];
        crate::random::fill(&mut id)?;
        let mut keyset = Self { id: KeysetId(id), primary: None, keys: Vec::new() };
        keyset.rotate(keyrings).await?;
        Ok(keyset)
    }

    /// The keyset's id.
    pub fn id(&self) -> KeysetId {
        self.id
    }

    /// The primary key, which new records are sealed with.
    pub fn primary(&self) -> Option<KeyId> {
        self.primary
    }

    /// The keys, oldest first.
    pub fn keys(&self) -> &[KeysetKey] {
        &self.keys
    }

    /// The key with id `id`.
    pub fn key(&self, id: KeyId) -> Option<&KeysetKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Adds a fresh records key wrapped by every keyring in `keyrings` and
    /// makes it the primary; older keys stay for opening their records.
    ///
    /// # Errors
    /// As [`Keyset::create`]; [`KeyringErrorKind::Invalid`] when the keyset is full.
    pub async fn rotate(&mut self, keyrings: &[&dyn Keyring]) -> Result<KeyId, Error> {
        let data_key = DataKey::generate()?;
        let id = self.add_key(&data_key, KeyPurpose::Records, keyrings).await?;
        self.primary = Some(id);
        Ok(id)
    }

    /// Makes `id`, a records key of this keyset, the primary.
    ///
    /// # Errors
    /// [`KeyringErrorKind::Invalid`] for an unknown id or a legacy key.
    pub fn set_primary(&mut self, id: KeyId) -> Result<(), Error> {
        match self.key(id) {
            Some(k) if k.purpose == KeyPurpose::Records => {
                self.primary = Some(id);
                Ok(())
            }
            Some(_) => Err(invalid(format!("key {id} reads legacy records only; it cannot be the primary"))),
            None => Err(invalid(format!("this keyset has no key {id}"))),
        }
    }

    /// Removes key `id`, which must not be the primary. Records under it
    /// become unreadable: move them first with `rekey reencrypt --keyset`.
    ///
    /// # Errors
    /// [`KeyringErrorKind::Invalid`] for an unknown id or the primary.
    pub fn remove_key(&mut self, id: KeyId) -> Result<(), Error> {
        if self.primary == Some(id) {
            return Err(invalid(format!("key {id} is the primary; rotate to a new primary before removing it")));
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.id != id);
        if self.keys.len() == before {
            return Err(invalid(format!("this keyset has no key {id}")));
        }
        Ok(())
    }

    /// Imports a legacy data key (the blog's one GenerateDataKey plaintext)
    /// as a read-only entry for legacy CBC records, wrapped anew by every
    /// keyring in `keyrings` under this entry's binding context. The caller
    /// unwraps the legacy key first (see [`Keyset::import_legacy_wrapped`]).
    ///
    /// # Errors
    /// [`KeyringErrorKind::Invalid`] when the keyset already has a legacy
    /// key (one per keyset: CBC cannot tell a wrong key) or is full; keyring errors.
    pub async fn import_legacy(&mut self, legacy_key: &DataKey, keyrings: &[&dyn Keyring]) -> Result<KeyId, Error> {
        if self.keys.iter().any(|k| k.purpose == KeyPurpose::LegacyCbc) {
            return Err(invalid(
                "this keyset already has a legacy key; CBC records cannot tell a wrong key, so a keyset holds at most one"
                    .to_owned(),
            ));
        }
        self.add_key(legacy_key, KeyPurpose::LegacyCbc, keyrings).await
    }

    /// As [`Keyset::import_legacy`], unwrapping the legacy key from `wrapped`
    /// (the stored `CiphertextBlob`, with the `context` it was made with,
    /// usually empty) with `sources`.
    ///
    /// # Errors
    /// As [`Keyset::import_legacy`], and the unwrap's errors.
    pub async fn import_legacy_wrapped(
        &mut self,
        wrapped: &EncryptedDataKey,
        context: &EncryptionContext,
        sources: &[&dyn Keyring],
        keyrings: &[&dyn Keyring],
    ) -> Result<KeyId, Error> {
        let key = crate::keyring::unwrap_data_key(sources, std::slice::from_ref(wrapped), context).await?;
        self.import_legacy(&key, keyrings).await
    }

    async fn add_key(
        &mut self,
        data_key: &DataKey,
        purpose: KeyPurpose,
        keyrings: &[&dyn Keyring],
    ) -> Result<KeyId, Error> {
        if keyrings.is_empty() {
            return Err(invalid("no key was given to wrap the keyset's data key with".to_owned()));
        }
        if self.keys.len() >= MAX_KEYSET_KEYS {
            return Err(invalid(format!("the keyset holds {MAX_KEYSET_KEYS} keys already; remove old ones first")));
        }
        let id = loop {
            let mut bytes = [0u8; 4];
            crate::random::fill(&mut bytes)?;
            let id = KeyId(u32::from_be_bytes(bytes));
            if self.key(id).is_none() {
                break id;
            }
        };
        let commitment = commitment(data_key, &self.id, id, purpose);
        let context = binding_context(&self.id, id, purpose, &commitment);
        let mut wraps = Vec::with_capacity(keyrings.len());
        for keyring in keyrings {
            wraps.push(keyring.wrap(data_key, &context).await?);
        }
        file::check_wraps(&wraps)?;
        self.keys.push(KeysetKey { id, purpose, created: now(), commitment, wraps });
        Ok(id)
    }

    /// Re-wraps every key's copy under a `sources` key to `to`'s key
    /// (`Keyring::rewrap`: KMS ReEncrypt between KMS keys, so the data keys
    /// never enter the process), one call per key, replacing that copy;
    /// other copies stay. No record changes. A key with a copy under `to`
    /// and none under a source is left alone (a rerun).
    ///
    /// When the data key does pass through (local keys), its commitment is
    /// checked before the new copy is kept. When it does not (ReEncrypt), KMS
    /// itself checks the binding context, which holds the commitment.
    ///
    /// # Errors
    /// [`KeyringErrorKind::NoMatchingKey`] naming a key with no copy that
    /// `sources` can unwrap; keyring errors; [`Error::Authentication`] when a
    /// data key does not match its commitment. On error the keyset is unchanged.
    pub async fn rewrap(&mut self, to: &dyn Keyring, sources: &[&dyn Keyring]) -> Result<RewrapSummary, Error> {
        let mut updated = self.keys.clone();
        let mut summary = RewrapSummary::default();
        for key in &mut updated {
            let source = key.wraps.iter().position(|w| sources.iter().any(|s| s.can_unwrap(w)));
            let Some(index) = source else {
                if key.wraps.iter().any(|w| w.provider_id() == to.provider_id() && w.key_id() == to.key_id()) {
                    summary.already.push(key.id);
                    continue;
                }
                return Err(KeyringError::new(
                    KeyringErrorKind::NoMatchingKey,
                    format!(
                        "keyset key {} has no copy under the source keys; it is wrapped by {}",
                        key.id,
                        describe_wraps(&key.wraps)
                    ),
                )
                .into());
            };
            let context = binding_context(&self.id, key.id, key.purpose, &key.commitment);
            let rewrapped = to.rewrap(&key.wraps[index], &context, &context, sources).await?;
            if let Some(data_key) = &rewrapped.data_key {
                check_commitment(data_key, &self.id, key)?;
            }
            key.wraps[index] = rewrapped.edk;
            // A copy made earlier under the same destination is now redundant.
            let new = key.wraps[index].clone();
            let mut seen = false;
            key.wraps.retain(|w| {
                let same = w.provider_id() == new.provider_id() && w.key_id() == new.key_id();
                let keep = !same || !seen;
                seen |= same;
                keep
            });
            summary.rewrapped.push(key.id);
        }
        self.keys = updated;
        Ok(summary)
    }

    /// Unwraps every key (one keyring call per key) and checks each against
    /// its commitment (MUST 12.5), giving a handle that seals and opens records.
    ///
    /// # Errors
    /// The keyring's error for a key none of `keyrings` can unwrap (it names
    /// the key); [`Error::Authentication`] when an unwrapped key does not match
    /// its commitment.
    pub async fn unwrap(&self, keyrings: &[&dyn Keyring]) -> Result<KeysetHandle, Error> {
        let mut keys = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            let context = binding_context(&self.id, key.id, key.purpose, &key.commitment);
            let check = |k: &DataKey| verify_commitment(k, &self.id, key).is_ok();
            let data_key =
                unwrap_data_key_checked(keyrings, &key.wraps, &context, &check).await.map_err(|e| match e {
                    Error::Keyring(k) => Error::Keyring(KeyringError::new(
                        k.kind(),
                        format!("keyset key {} could not be unwrapped: {}", key.id, k.message()),
                    )),
                    other => other,
                })?;
            let secret = match key.purpose {
                KeyPurpose::Records => Secret::Records(record_cipher(&data_key, &self.id, key.id)),
                KeyPurpose::LegacyCbc => Secret::Legacy(data_key),
            };
            keys.push(HandleKey { id: key.id, secret });
        }
        Ok(KeysetHandle { id: self.id, primary: self.primary, keys, sealed: AtomicU64::new(0) })
    }

    /// The keyset file's text (docs/format.md §12.3). Holds no secret.
    pub fn to_text(&self) -> String {
        file::encode(self)
    }

    /// Parses a keyset file (MUST 12.2 to 12.4). No keyring is called.
    ///
    /// # Errors
    /// [`FormatError::Keyset`] naming the line and what is wrong.
    pub fn from_text(text: &str) -> Result<Self, FormatError> {
        file::parse(text)
    }
}

/// A keyset with its data keys unwrapped: seals compact records under the
/// primary and opens records of any key. `Send + Sync`; share it behind an
/// `Arc`. Its `Debug` shows ids only.
pub struct KeysetHandle {
    id: KeysetId,
    primary: Option<KeyId>,
    keys: Vec<HandleKey>,
    sealed: AtomicU64,
}

struct HandleKey {
    id: KeyId,
    secret: Secret,
}

enum Secret {
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

    /// Records this handle has sealed, for comparing with [`MAX_RECORDS_PER_KEY`]
    /// (this process only).
    pub fn records_sealed(&self) -> u64 {
        self.sealed.load(Ordering::Relaxed)
    }

    /// Seals `plaintext` as a binary compact record under the primary key,
    /// bound to `context` (give the same to open it).
    ///
    /// # Errors
    /// [`KeyringErrorKind::Invalid`] when the keyset has no primary;
    /// [`FormatError::TooLong`] past [`MAX_COMPACT_PLAINTEXT`].
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
    /// As [`KeysetHandle::decrypt`], and [`FormatError::BadBase64`].
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

/// The commitment of MUST 12.5: HMAC-SHA-256 keyed with the data key.
fn commitment(data_key: &DataKey, keyset: &KeysetId, id: KeyId, purpose: KeyPurpose) -> [u8; KEY_COMMITMENT_LEN] {
    hmac(data_key, b"rekey keyset v1 commitment", keyset, id, purpose.byte())
}

fn verify_commitment(data_key: &DataKey, keyset: &KeysetId, key: &KeysetKey) -> Result<(), Error> {
    let expected = commitment(data_key, keyset, key.id, key.purpose);
    if bool::from(expected.ct_eq(&key.commitment)) { Ok(()) } else { Err(Error::Authentication) }
}

fn check_commitment(data_key: &DataKey, keyset: &KeysetId, key: &KeysetKey) -> Result<(), Error> {
    verify_commitment(data_key, keyset, key)
}

/// The record key of MUST 12.11, expanded once per key when a keyset is unwrapped.
fn record_cipher(data_key: &DataKey, keyset: &KeysetId, id: KeyId) -> Gcm {
    let key = Zeroizing::new(hmac(data_key, b"rekey keyset v1 record key", keyset, id, KeyPurpose::Records.byte()));
    Gcm::new(&key)
}

/// HMAC-SHA-256(data key, label || 0x00 || keyset id || key id || purpose).
fn hmac(data_key: &DataKey, label: &[u8], keyset: &KeysetId, id: KeyId, purpose: u8) -> [u8; 32] {
    // RFC 2104 with a 32-byte key, which needs no hashing first.
    let mut pad = Zeroizing::new([0u8; 64]);
    pad[..DATA_KEY_LEN].copy_from_slice(data_key.expose_secret());
    pad.iter_mut().for_each(|b| *b ^= 0x36);
    let mut inner = Sha256::new();
    inner.update(pad.as_ref());
    inner.update(label);
    inner.update([0u8]);
    inner.update(keyset.0);
    inner.update(id.0.to_be_bytes());
    inner.update([purpose]);
    let inner = inner.finalize();
    pad.iter_mut().for_each(|b| *b ^= 0x36 ^ 0x5c);
    let mut outer = Sha256::new();
    outer.update(pad.as_ref());
    outer.update(inner);
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer.finalize());
    out
}

/// The encryption context a key's wrapped copies are bound to (MUST 12.6).
pub fn binding_context(
    keyset: &KeysetId,
    id: KeyId,
    purpose: KeyPurpose,
    commitment: &[u8; KEY_COMMITMENT_LEN],
) -> EncryptionContext {
    let mut hex = String::with_capacity(2 * KEY_COMMITMENT_LEN);
    for b in commitment {
        hex.push_str(&format!("{b:02x}"));
    }
    EncryptionContext::from_pairs([
        (CONTEXT_KEYSET, keyset.to_string()),
        (CONTEXT_KEY_ID, id.to_string()),
        (CONTEXT_PURPOSE, purpose.as_str().to_owned()),
        (CONTEXT_COMMITMENT, hex),
    ])
    // Four fixed short pairs are within every limit.
    .unwrap_or_default()
}

impl KeysetKey {
    /// The encryption context this key's wrapped copies are bound to, for
    /// tools that re-wrap them outside [`Keyset::rewrap`].
    pub fn binding_context(&self, keyset: &KeysetId) -> EncryptionContext {
        binding_context(keyset, self.id, self.purpose, &self.commitment)
    }
}

fn describe_wraps(wraps: &[EncryptedDataKey]) -> String {
    wraps.iter().map(|w| format!("{}:{}", w.provider_id(), w.key_id())).collect::<Vec<_>>().join(", ")
}

fn invalid(message: String) -> Error {
    KeyringError::new(KeyringErrorKind::Invalid, message).into()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A keyset from known parts, for the known-answer vectors: never for
/// production (the caller chooses the key).
#[cfg(test)]
async fn keyset_with_key(
    keyset_id: [u8; KEYSET_ID_LEN],
    key_id: u32,
    created: u64,
    data_key: &DataKey,
    keyrings: &[&dyn Keyring],
) -> Result<Keyset, Error> {
    let id = KeysetId(keyset_id);
    let key_id = KeyId(key_id);
    let commitment = commitment(data_key, &id, key_id, KeyPurpose::Records);
    let context = binding_context(&id, key_id, KeyPurpose::Records, &commitment);
    let mut wraps = Vec::new();
    for keyring in keyrings {
        wraps.push(keyring.wrap(data_key, &context).await?);
    }
    Ok(Keyset {
        id,
        primary: Some(key_id),
        keys: vec![KeysetKey { id: key_id, purpose: KeyPurpose::Records, created, commitment, wraps }],
    })
}

/// Seals a record with a chosen nonce: known-answer tests only.
#[cfg(test)]
fn seal_with_nonce(
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

#[cfg(test)]
mod tests;

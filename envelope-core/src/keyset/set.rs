//! A keyset as stored: every data key wrapped, none in the clear.

use std::sync::atomic::AtomicU64;

use crate::context::EncryptionContext;
use crate::error::{Error, KeyringError, KeyringErrorKind};
use crate::key::{DataKey, EncryptedDataKey};
use crate::keyring::{Keyring, unwrap_data_key_checked};

use super::handle::{HandleKey, KeysetHandle, Secret};
use super::key::{
    KEYSET_ID_LEN, KeyId, KeyPurpose, KeysetId, KeysetKey, MAX_KEYSET_KEYS, binding_context, check_commitment,
    check_wraps, commitment, describe_wraps, invalid, now, record_cipher, verify_commitment,
};
/// A keyset as stored: no secret, every data key wrapped. See the [module docs](super).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    pub(super) id: KeysetId,
    pub(super) primary: Option<KeyId>,
    pub(super) keys: Vec<KeysetKey>,
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
        check_wraps(&wraps)?;
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
}

/// A keyset from known parts, for the known-answer vectors: never for
/// production (the caller chooses the key).
#[cfg(test)]
pub(super) async fn keyset_with_key(
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

//! Rewrap: replace an envelope's wrapped keys under a source key with one
//! under the destination; the data key and the body stay as they are.

use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Keyring};

use envelope_core::hazmat::Envelope;

use super::outcome::{ChangeKind, Outcome, Proof};
use super::reencrypt::check_envelope_copy;
use super::shared::{Shared, is_destination, label, rewrap_calls};
use super::strategy::{BoxFuture, Strategy};
use crate::engine::error::{ItemError, ItemErrorCode};
use crate::engine::format;
use crate::engine::item::Item;

/// Re-wraps envelopes under `destination`.
pub struct Rewrap {
    destination: Box<dyn Keyring>,
    /// Keyrings for `--remove`: wrapped keys they accept are dropped (with proof).
    remove: Vec<Box<dyn Keyring>>,
    /// Keep the replaced keys beside the new one (a transition period).
    add: bool,
}

impl Rewrap {
    /// Re-wraps under `destination`; `remove` names keys to drop, `add` keeps the replaced ones.
    pub fn new(destination: Box<dyn Keyring>, remove: Vec<Box<dyn Keyring>>, add: bool) -> Self {
        Self { destination, remove, add }
    }

    /// Whether a rewrap has work to do (idempotence). Skipping needs no
    /// proof: it changes nothing.
    fn needed(&self, shared: &Shared, edks: &[EncryptedDataKey]) -> Result<bool, ItemError> {
        let destination = self.destination.as_ref();
        let has_source = edks.iter().any(|e| shared.is_source(e, destination));
        let has_destination = edks.iter().any(|e| is_destination(e, destination));
        let removable = edks.iter().any(|e| self.removable(e));
        let needed = if self.add { has_source && !has_destination } else { has_source || removable };
        if !needed && !has_destination && !removable {
            return Err(ItemError::new(
                ItemErrorCode::NoSourceKey,
                format!(
                    "none of the item's wrapped keys ({}) is under a --from key",
                    edks.iter().map(|e| format!("{}:{}", e.provider_id(), e.key_id())).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok(needed)
    }

    fn removable(&self, edk: &EncryptedDataKey) -> bool {
        !is_destination(edk, self.destination.as_ref()) && self.remove.iter().any(|r| r.can_unwrap(edk))
    }

    async fn rewrap(&self, shared: &Shared, item: &[u8], row: &EncryptionContext) -> Result<Outcome, ItemError> {
        let destination = self.destination.as_ref();
        let encoding = format::encoding_of(item);
        let bytes = encoding.decode(item)?;
        let envelope = Envelope::parse(&bytes, &shared.parse).map_err(|e| {
            if format::detect(item).is_some_and(|d| d.format == format::FormatId::Esdk) {
                ItemError::input(
                    "an AWS Encryption SDK message cannot be re-wrapped in place (docs/format.md §14); \
                     re-encrypt it with `rekey reencrypt --items esdk`",
                )
            } else {
                e.into()
            }
        })?;
        let header = envelope.header();
        header.context.require(row).map_err(|e| {
            ItemError::new(ItemErrorCode::ContextMismatch, format!("{e}: the item is not bound to its row"))
        })?;
        let edks = &header.encrypted_data_keys;
        if !self.needed(shared, edks)? {
            return Ok(Outcome::Skipped);
        }
        let commits = |key: &DataKey| envelope.verify_data_key(key).is_ok();
        let mut keep: Vec<EncryptedDataKey> = edks.clone();
        // A key checked against the envelope's commitment: proof enough to drop others.
        let mut proven = false;

        // A wrapped key labelled with the destination is only a claim: when
        // it would let others go, prove it first (unwrap it, check the commitment).
        let has_destination = edks.iter().any(|e| is_destination(e, destination));
        if has_destination && !self.add {
            proven = self.prove_one(shared, edks, |e| !is_destination(e, destination), &header.context, &commits).await;
            if proven {
                keep.retain(|e| !shared.is_source(e, destination));
            }
        }
        if !(proven || self.add && has_destination)
            && let Some(source) = edks.iter().find(|e| shared.is_source(e, destination))
        {
            let rewrapped = shared.rewrap_one(source, &header.context, &header.context, destination).await?;
            if let Some(key) = &rewrapped.data_key {
                // The data key passed through here: check it is this envelope's.
                if !commits(key) {
                    return Err(ItemError::new(
                        ItemErrorCode::Authentication,
                        format!("the wrapped key under {} does not hold this item's data key", source.key_id()),
                    ));
                }
                proven = true;
            }
            if shared.verify && !proven {
                let key = shared.unwrap_one(&rewrapped.edk, &header.context, destination).await?;
                if !commits(&key) {
                    return Err(ItemError::new(
                        ItemErrorCode::VerifyFailed,
                        "the new wrapped key does not hold this item's data key",
                    ));
                }
                proven = true;
            }
            if !self.add {
                // Made from that very wrapped key: it may go. Others only with proof.
                keep.retain(|e| e != source && !(proven && shared.is_source(e, destination)));
            }
            keep.push(rewrapped.edk.clone());
        }
        if keep.iter().any(|e| self.removable(e)) {
            if !proven {
                proven = self.prove_one(shared, &keep, |e| self.removable(e), &header.context, &commits).await;
            }
            if !proven {
                return Err(ItemError::new(
                    ItemErrorCode::Unproven,
                    "refusing to remove wrapped keys: none of the remaining ones could be shown to open this item",
                ));
            }
            keep.retain(|e| !self.removable(e));
        }
        if keep.is_empty() {
            return Err(ItemError::input("removing those keys would leave the item with no wrapped key"));
        }
        let out = envelope.with_encrypted_data_keys(&keep)?;
        Ok(Outcome::Changed {
            new: encoding.encode(&out),
            kind: ChangeKind::Rewrapped,
            old_edks: Some(edks.clone()),
            job: None,
        })
    }

    /// Unwraps one of `edks` that is not `excluded` and checks it against
    /// the commitment: whether the remaining keys provably open the item.
    async fn prove_one(
        &self,
        shared: &Shared,
        edks: &[EncryptedDataKey],
        excluded: impl Fn(&EncryptedDataKey) -> bool,
        context: &EncryptionContext,
        commits: &(dyn Fn(&DataKey) -> bool + Sync),
    ) -> bool {
        let keyrings: Vec<&dyn Keyring> = std::iter::once(self.destination.as_ref()).chain(shared.sources()).collect();
        for edk in edks.iter().filter(|e| !excluded(e)) {
            for keyring in keyrings.iter().filter(|k| k.can_unwrap(edk)) {
                if let Ok(key) = shared.unwrap_one(edk, context, *keyring).await
                    && commits(&key)
                {
                    return true;
                }
            }
        }
        false
    }
}

impl Strategy for Rewrap {
    fn destination_label(&self) -> String {
        label(self.destination.as_ref())
    }

    fn destination(&self) -> Option<&dyn Keyring> {
        Some(self.destination.as_ref())
    }

    fn planned_kind(&self) -> ChangeKind {
        ChangeKind::Rewrapped
    }

    fn plan(&self, shared: &Shared, item: &[u8]) -> Result<bool, ItemError> {
        let bytes = format::encoding_of(item).decode(item)?;
        let envelope = Envelope::parse(&bytes, &shared.parse)?;
        let edks = &envelope.header().encrypted_data_keys;
        let needed = self.needed(shared, edks)?;
        if needed && let Some(source) = edks.iter().find(|e| shared.is_source(e, self.destination.as_ref())) {
            shared.note_planned(source.wrapped());
        }
        Ok(needed)
    }

    fn apply<'a>(
        &'a self,
        shared: &'a Shared,
        item: &'a [u8],
        row: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<Outcome, ItemError>> {
        Box::pin(self.rewrap(shared, item, row))
    }

    fn check_copy<'a>(
        &'a self,
        shared: &'a Shared,
        original: &'a Item,
        copy: &'a [u8],
    ) -> BoxFuture<'a, Result<Proof, ItemError>> {
        Box::pin(check_envelope_copy(shared, self.destination.as_ref(), original, copy, None, false))
    }

    fn planned_calls(&self, shared: &Shared, keys: usize, bound: &str, items: u64) -> Vec<String> {
        rewrap_calls(self.destination.as_ref(), shared, keys, bound, items)
    }
}

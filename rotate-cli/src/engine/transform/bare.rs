//! Rewrap of bare encrypted data keys (KMS ciphertext blobs, binary or
//! base64): the guide's method A, where the blob is kept beside the data.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Keyring};

use super::outcome::{ChangeKind, Outcome, Proof};
use super::shared::{Shared, label, rewrap_calls, with_row};
use super::strategy::{BoxFuture, Strategy};
use crate::engine::error::{ItemError, ItemErrorCode};
use crate::engine::format::Encoding;
use crate::engine::item::Item;

/// Re-wraps bare data keys under `destination`.
pub struct RewrapBare {
    destination: Box<dyn Keyring>,
    /// The context they were encrypted with.
    source_context: EncryptionContext,
    /// The context to encrypt them with.
    dest_context: EncryptionContext,
}

impl RewrapBare {
    /// Re-wraps blobs made under `source_context` into ones under `dest_context`.
    pub fn new(
        destination: Box<dyn Keyring>,
        source_context: EncryptionContext,
        dest_context: EncryptionContext,
    ) -> Self {
        Self { destination, source_context, dest_context }
    }

    async fn rewrap(&self, shared: &Shared, item: &[u8], row: &EncryptionContext) -> Result<Outcome, ItemError> {
        let (source_context, dest_context) = (with_row(&self.source_context, row)?, with_row(&self.dest_context, row)?);
        let (blob, encoding) = blob_of(item);
        // A bare blob names no key: try it as the blob of each source key
        // (the allow-list), and let the keyring check what KMS really used.
        let mut last = None;
        let mut rewrapped = None;
        for source in shared.sources() {
            let edk = EncryptedDataKey::new(source.provider_id(), source.key_id(), blob.clone())
                .map_err(|e| ItemError::input(e.to_string()))?;
            match shared.rewrap_one(&edk, &source_context, &dest_context, self.destination.as_ref()).await {
                Ok(r) => {
                    rewrapped = Some(r);
                    break;
                }
                Err(e) if e.code.is_transient() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        let Some(rewrapped) = rewrapped else {
            return Err(match last {
                // A bare blob names neither key nor context: the refusal is
                // the source's, and the context tried is the usual cause.
                Some(e) if e.code == ItemErrorCode::InvalidCiphertext => ItemError {
                    message: format!(
                        "no --from key opens this data key with the context {} (a wrong --source-context, or a blob \
                         under another key): {}",
                        pairs(&source_context),
                        e.message
                    ),
                    ..e
                },
                Some(e) => e,
                None => ItemError::new(ItemErrorCode::NoSourceKey, "no --from key to try"),
            });
        };
        if shared.verify {
            // A bare key has no commitment: check the new blob unwraps under the destination.
            self.destination.unwrap(std::slice::from_ref(&rewrapped.edk), &dest_context).await?;
        }
        Ok(Outcome::Changed {
            new: encoding.encode(rewrapped.edk.wrapped()),
            kind: ChangeKind::Rewrapped,
            old_edks: None,
            job: None,
        })
    }

    /// The data key of a bare wrapped key, unwrapped by one of `keyrings`.
    async fn data_key(
        shared: &Shared,
        item: &[u8],
        context: &EncryptionContext,
        keyrings: &[&dyn Keyring],
    ) -> Result<Arc<DataKey>, ItemError> {
        let (blob, _) = blob_of(item);
        let mut last = None;
        for keyring in keyrings {
            let edk = EncryptedDataKey::new(keyring.provider_id(), keyring.key_id(), blob.clone())
                .map_err(|e| ItemError::input(e.to_string()))?;
            match shared.unwrap_one(&edk, context, *keyring).await {
                Ok(key) => return Ok(key),
                Err(e) if e.code.is_transient() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ItemError::new(ItemErrorCode::NoSourceKey, "no key to try")))
    }

    async fn check(&self, shared: &Shared, original: &Item, copy: &[u8]) -> Result<Proof, ItemError> {
        let old_context = with_row(&self.source_context, &original.context)?;
        let new_context = with_row(&self.dest_context, &original.context)?;
        let old = Self::data_key(shared, &original.bytes, &old_context, &shared.sources()).await?;
        let new = Self::data_key(shared, copy, &new_context, &[self.destination.as_ref()]).await?;
        if *old == *new {
            Ok(Proof::SameDataKey)
        } else {
            Err(ItemError::new(ItemErrorCode::VerifyFailed, "the copy holds another data key"))
        }
    }
}

/// A context as the command line writes it: `k=v,k2=v2`, or `{}` when empty.
fn pairs(context: &EncryptionContext) -> String {
    if context.is_empty() {
        return "{} (none)".to_owned();
    }
    context.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A blob stored as base64 text (kept as text) or as raw bytes.
fn blob_of(item: &[u8]) -> (Vec<u8>, Encoding) {
    match std::str::from_utf8(item).ok().and_then(|t| STANDARD.decode(t.trim_ascii()).ok()) {
        Some(blob) => (blob, Encoding::text_of(item)),
        None => (item.to_vec(), Encoding::Binary),
    }
}

impl Strategy for RewrapBare {
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
        shared.note_planned(item);
        Ok(true)
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
        Box::pin(self.check(shared, original, copy))
    }

    fn planned_calls(&self, shared: &Shared, keys: usize, bound: &str, items: u64) -> Vec<String> {
        rewrap_calls(self.destination.as_ref(), shared, keys, bound, items)
    }
}

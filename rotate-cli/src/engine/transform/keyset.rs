//! Into a keyset: decrypt each item and seal it again as a compact record
//! under the keyset's primary key (docs/format.md §12). A compact record
//! does not carry its context, so every item gets the one given (with the
//! row's pairs), and an envelope whose own context differs is refused
//! rather than silently unbound.

use std::sync::Arc;

use envelope_core::hazmat::Envelope;
use envelope_core::keyset::{CompactRecord, KeyId, KeysetHandle};
use envelope_core::legacy::{InnerEncoding, decrypt_legacy_record};
use envelope_core::{DataKey, EncryptionContext, Keyring};

use super::esdk::{open_to_convert, plan_to_convert};
use super::outcome::{ChangeKind, Outcome, Proof};
use super::reencrypt::legacy_text;
use super::shared::{Shared, not_an_envelope, with_row};
use super::strategy::{BoxFuture, Strategy};
use crate::engine::error::{ItemError, ItemErrorCode};
use crate::engine::format::Encoding;
use crate::engine::format::{self, FormatId};
use crate::engine::item::Item;

/// A plaintext that is wiped when dropped.
type Opened = Box<dyn AsRef<[u8]> + Send + Sync>;

/// Re-encrypts items into compact records of a keyset.
pub struct ToKeyset {
    keyset: Arc<KeysetHandle>,
    /// The keyset's id, as reports name the destination.
    keyset_id: String,
    /// The records' context (the application gives it again to decrypt).
    context: EncryptionContext,
    /// Legacy records: a data key given on the command line (else the
    /// keyset's imported legacy key).
    legacy: Option<DataKey>,
    /// The inner encoding of legacy records.
    inner: InnerEncoding,
    /// Whether AWS Encryption SDK messages are converted too.
    esdk_messages: bool,
}

impl ToKeyset {
    /// Into `keyset` (its file's id is `keyset_id`), binding every record to `context`.
    pub fn new(
        keyset: Arc<KeysetHandle>,
        keyset_id: String,
        context: EncryptionContext,
        legacy: Option<DataKey>,
        inner: InnerEncoding,
    ) -> Self {
        Self { keyset, keyset_id, context, legacy, inner, esdk_messages: false }
    }

    /// Also converts AWS Encryption SDK messages (`rekey reencrypt --items
    /// esdk --keyset FILE`); a message's context must be the records'.
    pub fn converting_esdk_messages(mut self) -> Self {
        self.esdk_messages = true;
        self
    }

    async fn to_keyset(&self, shared: &Shared, item: &[u8], row: &EncryptionContext) -> Result<Outcome, ItemError> {
        let context = with_row(&self.context, row)?;
        let (opened, kind, record_key, encoding) = self.open(shared, item, &context).await?;
        if record_key.is_some() && record_key == self.keyset.primary() {
            return Ok(Outcome::Skipped);
        }
        let plaintext: &[u8] = (*opened).as_ref();
        let sealed = self.keyset.encrypt(plaintext, &context)?;
        if shared.verify && self.keyset.decrypt(&sealed, &context)?.as_bytes() != plaintext {
            return Err(ItemError::new(ItemErrorCode::VerifyFailed, "the new record does not decrypt to the original"));
        }
        Ok(Outcome::Changed { new: encoding.encode(&sealed), kind, old_edks: None, job: None })
    }

    /// The plaintext of an item, what it was, the key id when it is a
    /// compact record already (opened with the keyset and `context`, so one
    /// of another keyset or context is refused), and how to store the new
    /// one: an envelope the sources open (its context must be `context`),
    /// or a legacy record.
    async fn open(
        &self,
        shared: &Shared,
        item: &[u8],
        context: &EncryptionContext,
    ) -> Result<(Opened, ChangeKind, Option<KeyId>, Encoding), ItemError> {
        match format::detect(item) {
            Some(d) if d.format == FormatId::Compact => {
                let opened = self.keyset.decrypt(&d.bytes, context)?;
                let key = CompactRecord::parse(&d.bytes).ok().map(|r| r.key_id());
                Ok((Box::new(opened), ChangeKind::Reencrypted, key, d.encoding))
            }
            Some(d) if self.esdk_messages && d.format == FormatId::Esdk => {
                let converted = open_to_convert(shared, &d).await?;
                if converted.context != *context {
                    return Err(ItemError::new(
                        ItemErrorCode::ContextMismatch,
                        format!(
                            "the message's context {:?} is not the records' {:?}: a compact record keeps no context, \
                             so give it with --context (and --context-column)",
                            converted.context, context
                        ),
                    ));
                }
                Ok((Box::new(converted.plaintext), converted.kind, None, d.encoding))
            }
            Some(d) if d.format == FormatId::Envelope => {
                let envelope = Envelope::parse(&d.bytes, &shared.parse)?;
                if envelope.header().context != *context {
                    return Err(ItemError::new(
                        ItemErrorCode::ContextMismatch,
                        format!(
                            "the envelope's context {:?} is not the records' {:?}: a compact record keeps no context, \
                             so give it with --context (and --context-column)",
                            envelope.header().context,
                            context
                        ),
                    ));
                }
                let key = shared.unwrap_committed(&envelope, &shared.sources()).await?;
                Ok((Box::new(envelope.open_plaintext(&key)?), ChangeKind::Reencrypted, None, d.encoding))
            }
            _ => {
                let text = legacy_text(item)?;
                let plain = match &self.legacy {
                    Some(key) => decrypt_legacy_record(key, text, self.inner)?,
                    None if self.keyset.has_legacy_key() => self.keyset.decrypt_legacy(text, self.inner)?,
                    None => return Err(not_an_envelope()),
                };
                Ok((Box::new(plain), ChangeKind::FromLegacy, None, Encoding::text_of(item)))
            }
        }
    }

    async fn check(&self, shared: &Shared, original: &Item, copy: &[u8]) -> Result<Proof, ItemError> {
        let differs = |what: &str| ItemError::new(ItemErrorCode::VerifyFailed, format!("the copy {what}"));
        let context = with_row(&self.context, &original.context)?;
        let Some(copy) = format::detect(copy).filter(|d| d.format == FormatId::Compact) else {
            return Err(differs("is not a compact record"));
        };
        let new = self.keyset.decrypt(&copy.bytes, &context)?;
        let (old, _, _, _) = self.open(shared, &original.bytes, &context).await?;
        if (*old).as_ref() == new.as_bytes() {
            Ok(Proof::SamePlaintext)
        } else {
            Err(differs("decrypts to another plaintext"))
        }
    }
}

impl Strategy for ToKeyset {
    fn destination_label(&self) -> String {
        format!("rekey-keyset:{}", self.keyset_id)
    }

    fn destination(&self) -> Option<&dyn Keyring> {
        // The keyset seals records itself; it wraps no data key.
        None
    }

    fn planned_kind(&self) -> ChangeKind {
        ChangeKind::Reencrypted
    }

    fn plan(&self, shared: &Shared, item: &[u8]) -> Result<bool, ItemError> {
        Ok(match format::detect(item) {
            Some(d) if d.format == FormatId::Compact => {
                CompactRecord::parse(&d.bytes).ok().map(|r| r.key_id()) != self.keyset.primary()
            }
            Some(d) if self.esdk_messages && d.format == FormatId::Esdk => {
                plan_to_convert(shared, &d)?;
                true
            }
            Some(d) if d.format == FormatId::Envelope => {
                let envelope = Envelope::parse(&d.bytes, &shared.parse)?;
                if let Some(first) = envelope.header().encrypted_data_keys.first() {
                    shared.note_planned(first.wrapped());
                }
                true
            }
            _ => true,
        })
    }

    fn apply<'a>(
        &'a self,
        shared: &'a Shared,
        item: &'a [u8],
        row: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<Outcome, ItemError>> {
        Box::pin(self.to_keyset(shared, item, row))
    }

    fn apply_header<'a>(
        &'a self,
        _shared: &'a Shared,
        _header: &'a [u8],
        _row: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<Outcome, ItemError>> {
        Box::pin(std::future::ready(Err(ItemError::input(
            "a compact record is for short records, not a framed envelope of several MiB; \
             re-encrypt it with --to KEYREF instead",
        ))))
    }

    fn check_copy<'a>(
        &'a self,
        shared: &'a Shared,
        original: &'a Item,
        copy: &'a [u8],
    ) -> BoxFuture<'a, Result<Proof, ItemError>> {
        Box::pin(self.check(shared, original, copy))
    }

    fn planned_calls(&self, _shared: &Shared, _keys: usize, _bound: &str, _items: u64) -> Vec<String> {
        // The keyset's keys were unwrapped once at the start.
        Vec::new()
    }
}

//! Re-encrypt: decrypt each item (an envelope the sources open, or a
//! legacy CBC record) and seal it again under a fresh data key from the
//! destination.

use std::sync::Arc;

use envelope_core::hazmat::{BodyForm, Envelope, encrypt_stream, seal};
use envelope_core::legacy::{InnerEncoding, decrypt_legacy_record};
use envelope_core::{DataKey, EncryptionContext, Keyring};

use super::esdk::{open_to_convert, plan_to_convert};
use super::outcome::{ChangeKind, Outcome, Proof, StreamJob};
use super::shared::{
    MESSAGES_PER_DATA_KEY, Shared, calls, is_destination, is_remote, label, not_an_envelope, with_row,
};
use super::strategy::{BoxFuture, Strategy};
use crate::engine::error::{ItemError, ItemErrorCode};
use crate::engine::format::Encoding;
use crate::engine::format::{self, FormatId};
use crate::engine::item::Item;

/// Re-encrypts envelopes (and legacy records) under `destination`.
pub struct Reencrypt {
    destination: Box<dyn Keyring>,
    /// New context; `None` keeps each envelope's own (legacy records get an empty one).
    context: Option<EncryptionContext>,
    /// The legacy data key, unwrapped once, and the inner encoding.
    legacy: Option<(DataKey, InnerEncoding)>,
    /// Whether AWS Encryption SDK messages are converted into envelopes.
    esdk_messages: bool,
}

impl Reencrypt {
    /// Re-encrypts under `destination`, with `context` or each item's own;
    /// `legacy` opens legacy CBC records.
    pub fn new(
        destination: Box<dyn Keyring>,
        context: Option<EncryptionContext>,
        legacy: Option<(DataKey, InnerEncoding)>,
    ) -> Self {
        Self { destination, context, legacy, esdk_messages: false }
    }

    /// Also converts AWS Encryption SDK messages into envelopes (`rekey
    /// reencrypt --items esdk --format rekey`), keeping each message's
    /// context unless a new one is given.
    pub fn converting_esdk_messages(mut self) -> Self {
        self.esdk_messages = true;
        self
    }

    /// The item as an envelope, or as an SDK message when those are converted.
    fn detect(&self, item: &[u8]) -> Option<format::Detected> {
        format::detect(item)
            .filter(|d| d.format == FormatId::Envelope || (self.esdk_messages && d.format == FormatId::Esdk))
    }

    async fn reencrypt(&self, shared: &Shared, item: &[u8], row: &EncryptionContext) -> Result<Outcome, ItemError> {
        let destination = self.destination.as_ref();
        let context = self.context.as_ref().map(|c| with_row(c, row)).transpose()?;
        let context = context.as_ref();
        let detected = self.detect(item);
        // The plaintext, zeroized when dropped (a whole-buffer wipe for envelopes).
        let (opened, old_context, frame_len, kind, encoding): (Box<dyn AsRef<[u8]> + Send + Sync>, _, _, _, _) =
            match (detected, &self.legacy) {
                (Some(detected), _) if detected.format == FormatId::Esdk => {
                    let converted = open_to_convert(shared, &detected).await?;
                    (
                        Box::new(converted.plaintext),
                        converted.context,
                        converted.frame_len,
                        converted.kind,
                        detected.encoding,
                    )
                }
                (Some(detected), _) => {
                    let envelope = Envelope::parse(&detected.bytes, &shared.parse)?;
                    let header = envelope.header();
                    let wanted_context = context.is_none_or(|c| *c == header.context);
                    // Done only if the destination really opens it: a label is not proof.
                    if wanted_context
                        && header.encrypted_data_keys.iter().any(|e| is_destination(e, destination))
                        && shared.opens_under(&envelope, destination).await
                    {
                        return Ok(Outcome::Skipped);
                    }
                    let key = shared.unwrap_committed(&envelope, &shared.sources()).await?;
                    let frame_len = match header.body_form {
                        BodyForm::Framed { frame_len } => Some(frame_len),
                        BodyForm::SingleShot => None,
                    };
                    (
                        Box::new(envelope.open_plaintext(&key)?),
                        header.context.clone(),
                        frame_len,
                        ChangeKind::Reencrypted,
                        detected.encoding,
                    )
                }
                (None, Some((key, inner))) => (
                    Box::new(decrypt_legacy_record(key, legacy_text(item)?, *inner)?),
                    EncryptionContext::new(),
                    None,
                    ChangeKind::FromLegacy,
                    Encoding::text_of(item),
                ),
                (None, None) => return Err(not_an_envelope()),
            };
        let plaintext: &[u8] = (*opened).as_ref();
        let new_context = match context {
            Some(c) => c.clone(),
            None => with_row(&old_context, row)?,
        };
        let materials = shared.materials_for(&new_context, destination).await?;
        // The body keeps its form: framed stays framed, with the same frame length.
        let sealed = match frame_len {
            Some(frame_len) => {
                let mut out = Vec::with_capacity(plaintext.len() + 512);
                encrypt_stream(&materials, &new_context, frame_len, plaintext, &mut out)?;
                out
            }
            None => seal(&materials, &new_context, plaintext)?,
        };
        if shared.verify {
            let check = Envelope::parse(&sealed, &shared.parse)?;
            // The destination unwraps the new data key (once per distinct
            // key), and the new item, decrypted with it, is the original.
            let key = shared.unwrap_new(&check.header().encrypted_data_keys, &new_context, destination).await?;
            if check.open_plaintext(&key)?.as_bytes() != plaintext {
                return Err(ItemError::new(
                    ItemErrorCode::VerifyFailed,
                    "the new envelope does not decrypt to the original",
                ));
            }
        }
        Ok(Outcome::Changed { new: encoding.encode(&sealed), kind, old_edks: None, job: None })
    }

    /// The keys of a streamed re-encryption of an item of which only the
    /// header (of a framed envelope) was read.
    async fn plan_stream(&self, shared: &Shared, header: &[u8], row: &EncryptionContext) -> Result<Outcome, ItemError> {
        let destination = self.destination.as_ref();
        let envelope = Envelope::parse(header, &shared.parse)?;
        let old = envelope.header();
        let BodyForm::Framed { frame_len } = old.body_form else {
            return Err(ItemError::input("only framed envelopes are streamed"));
        };
        let new_context = with_row(self.context.as_ref().unwrap_or(&old.context), row)?;
        if new_context == old.context
            && old.encrypted_data_keys.iter().any(|e| is_destination(e, destination))
            && shared.opens_under(&envelope, destination).await
        {
            return Ok(Outcome::Skipped);
        }
        let data_key = shared.unwrap_committed(&envelope, &shared.sources()).await?;
        let materials = shared.materials_for(&new_context, destination).await?;
        if shared.verify {
            // The destination must really open the new data key.
            let key = shared.unwrap_new(&materials.encrypted_data_keys, &new_context, destination).await?;
            if *key != materials.data_key {
                return Err(ItemError::new(
                    ItemErrorCode::VerifyFailed,
                    "the destination does not unwrap the new data key",
                ));
            }
        }
        let job = StreamJob { data_key, materials, context: new_context, frame_len, verify: shared.verify };
        Ok(Outcome::Changed {
            new: Vec::new(),
            kind: ChangeKind::Reencrypted,
            old_edks: None,
            job: Some(Arc::new(job)),
        })
    }
}

impl Strategy for Reencrypt {
    fn destination_label(&self) -> String {
        label(self.destination.as_ref())
    }

    fn destination(&self) -> Option<&dyn Keyring> {
        Some(self.destination.as_ref())
    }

    fn planned_kind(&self) -> ChangeKind {
        ChangeKind::Reencrypted
    }

    fn plan(&self, shared: &Shared, item: &[u8]) -> Result<bool, ItemError> {
        match self.detect(item) {
            Some(detected) if detected.format == FormatId::Esdk => plan_to_convert(shared, &detected)?,
            Some(detected) => {
                let envelope = Envelope::parse(&detected.bytes, &shared.parse)?;
                if let Some(first) = envelope.header().encrypted_data_keys.first() {
                    shared.note_planned(first.wrapped());
                }
            }
            None if self.legacy.is_some() => {}
            None => return Err(not_an_envelope()),
        }
        Ok(true)
    }

    fn apply<'a>(
        &'a self,
        shared: &'a Shared,
        item: &'a [u8],
        row: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<Outcome, ItemError>> {
        Box::pin(self.reencrypt(shared, item, row))
    }

    fn apply_header<'a>(
        &'a self,
        shared: &'a Shared,
        header: &'a [u8],
        row: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<Outcome, ItemError>> {
        Box::pin(self.plan_stream(shared, header, row))
    }

    fn check_copy<'a>(
        &'a self,
        shared: &'a Shared,
        original: &'a Item,
        copy: &'a [u8],
    ) -> BoxFuture<'a, Result<Proof, ItemError>> {
        Box::pin(check_envelope_copy(
            shared,
            self.destination.as_ref(),
            original,
            copy,
            self.legacy.as_ref(),
            self.esdk_messages,
        ))
    }

    fn planned_calls(&self, shared: &Shared, keys: usize, bound: &str, items: u64) -> Vec<String> {
        let mut out = Vec::new();
        if shared.sources_remote() && self.legacy.is_none() {
            out.push(format!("{bound}{keys} unwrap {} (one per distinct data key)", calls(keys)));
        }
        if is_remote(self.destination.as_ref()) {
            out.push(format!(
                "about {} data key generations (one per {MESSAGES_PER_DATA_KEY} items and context){}",
                items.div_ceil(MESSAGES_PER_DATA_KEY).max(1),
                if shared.verify {
                    ", and as many unwraps under the destination to --verify (each new data key is brought into \
                     memory to decrypt a new item and compare it with the original)"
                } else {
                    ""
                }
            ));
        }
        out
    }
}

/// A legacy record as text.
pub(super) fn legacy_text(item: &[u8]) -> Result<&str, ItemError> {
    std::str::from_utf8(item).map_err(|_| ItemError::input("a legacy record must be base64 text"))
}

/// Checks an envelope copy (a shadow column's value) of `original`: the
/// destination opens it and it holds what the original holds. A re-wrapped
/// copy is proven without decrypting any body (same message id, commitment
/// and body bytes, and a data key the destination unwraps that passes the
/// commitment); anything else is decrypted on both sides and compared.
pub(super) async fn check_envelope_copy(
    shared: &Shared,
    destination: &dyn Keyring,
    original: &Item,
    copy: &[u8],
    legacy: Option<&(DataKey, InnerEncoding)>,
    esdk_messages: bool,
) -> Result<Proof, ItemError> {
    let differs = |what: &str| ItemError::new(ItemErrorCode::VerifyFailed, format!("the copy {what}"));
    let copy_bytes = format::encoding_of(copy).decode(copy)?;
    let copy_envelope = Envelope::parse(&copy_bytes, &shared.parse)?;
    copy_envelope.header().context.require(&original.context).map_err(|e| {
        ItemError::new(ItemErrorCode::ContextMismatch, format!("{e}: the copy is not bound to its row"))
    })?;
    let copy_key = shared.unwrap_committed(&copy_envelope, &[destination]).await?;
    if let Some(detected) = format::detect(&original.bytes).filter(|d| d.format == FormatId::Envelope) {
        let bytes = &detected.bytes;
        let envelope = Envelope::parse(bytes, &shared.parse)?;
        let (old, new) = (envelope.header(), copy_envelope.header());
        if old.message_id == new.message_id
            && old.commitment == new.commitment
            && old.body_form == new.body_form
            && body_of(bytes, &envelope) == body_of(&copy_bytes, &copy_envelope)
        {
            return if old.context == new.context {
                Ok(Proof::SameDataKey)
            } else {
                Err(differs("has another encryption context"))
            };
        }
        let key = shared.unwrap_committed(&envelope, &shared.sources()).await?;
        let same = envelope.open_plaintext(&key)?.as_bytes() == copy_envelope.open_plaintext(&copy_key)?.as_bytes();
        return if same { Ok(Proof::SamePlaintext) } else { Err(differs("decrypts to another plaintext")) };
    }
    let plaintext: Box<dyn AsRef<[u8]> + Send + Sync> = match (format::detect(&original.bytes), legacy) {
        (Some(detected), _) if esdk_messages && detected.format == FormatId::Esdk => {
            let converted = open_to_convert(shared, &detected).await?;
            if converted.context != copy_envelope.header().context {
                return Err(differs("has another encryption context"));
            }
            Box::new(converted.plaintext)
        }
        (_, Some((key, inner))) => Box::new(decrypt_legacy_record(key, legacy_text(&original.bytes)?, *inner)?),
        (_, None) => return Err(not_an_envelope()),
    };
    if (*plaintext).as_ref() == copy_envelope.open_plaintext(&copy_key)?.as_bytes() {
        Ok(Proof::SamePlaintext)
    } else {
        Err(differs("decrypts to another plaintext"))
    }
}

/// The body of a parsed envelope: its last `body_len` bytes.
fn body_of<'b>(bytes: &'b [u8], envelope: &Envelope<'_>) -> Option<&'b [u8]> {
    bytes.get(bytes.len().checked_sub(envelope.body_len())?..)
}

//! Re-encrypt AWS Encryption SDK messages (docs/format.md §14) into new SDK
//! messages under the destination KMS key: decrypt with the operator's
//! sources, then write a version-2 message on a committing suite.
//!
//! A strategy of its own rather than a branch of [`Reencrypt`](super::Reencrypt):
//! the input is opened through the SDK's reader (its wrapped keys are the
//! SDK's, its commitment check lives in `Message::decrypt`), the output is
//! written by the SDK's writer, and none of `Reencrypt`'s options (a new
//! context, legacy keys, streamed rekey envelopes) apply. They share
//! [`Shared`]: the allow-list, one unwrap per distinct wrapped key, and the
//! data key cache.
//!
//! What the new message is:
//! - suite 0x0578 when the input was signed, else 0x0478: legacy suites
//!   are lifted to key commitment ([`ChangeKind::Lifted`]), signed inputs
//!   stay signed;
//! - the same encryption context, but for `aws-crypto-public-key` (the
//!   new message carries its own signing key's);
//! - the same frame length when framed; a non-framed input becomes framed
//!   with the SDKs' default 4,096-byte frames;
//! - the data key wrapped under the destination with the new message's
//!   context as the KMS context, exactly as the SDK's KMS keyring does.
//!
//! Data keys: an unsigned output's context is the input's, so the data key
//! cache of [`Shared`] serves it (one GenerateDataKey per context and
//! 100,000 messages; each message still derives its own key from its
//! random message id and commits to it). A signed output's context holds
//! its own fresh public key, so each needs its own wrapped key: one
//! GenerateDataKey per signed message, which the dry run's forecast says.
//! The SDK's caching CMM avoids that by caching the signing key with the
//! materials, so many messages share one signing key; envelope-core's
//! writer deliberately makes a fresh signing key per message and offers no
//! way to pass one in, and the per-message cost is of the same order as
//! the P-384 signature itself (a KMS round trip is about 10 ms, spread over
//! the run's concurrency), so rekey keeps the SDK's per-message signing key.
//!
//! Messages on the AES-128 and AES-192 suites carry 16- and 24-byte data
//! keys, which rekey's `DataKey` cache does not hold: they are unwrapped
//! with [`Keyring::unwrap_esdk`] once per message, not once per distinct
//! wrapped key (the SDKs have written AES-256 by default since their first
//! versions, so such messages are few).

use std::sync::atomic::{AtomicU64, Ordering};

use envelope_core::esdk::{
    ContentType, DEFAULT_FRAME_LEN, DecryptOptions, Encryptor, Message, PlaintextDataKey, Suite, WrappedKey,
};
use envelope_core::{EncryptedDataKey, EncryptionContext, Keyring, Plaintext};

use super::outcome::{ChangeKind, Outcome, Proof};
use super::shared::{MESSAGES_PER_DATA_KEY, Shared, calls, is_destination, is_remote, label};
use super::strategy::{BoxFuture, Strategy};
use crate::engine::error::{ItemError, ItemErrorCode};
use crate::engine::format::esdk::wrapped_key_label;
use crate::engine::format::{self, Detected, FormatId};
use crate::engine::item::Item;

/// The context key of a signed message's verification key.
const PUBLIC_KEY: &str = "aws-crypto-public-key";

/// Re-encrypts AWS Encryption SDK messages into SDK messages under `destination`.
pub struct ReencryptEsdk {
    destination: Box<dyn Keyring>,
    /// Signed messages a dry run found (each costs a data key of its own).
    signed_planned: AtomicU64,
}

impl ReencryptEsdk {
    /// Re-encrypts under `destination` (a KMS key: the SDKs read no other).
    pub fn new(destination: Box<dyn Keyring>) -> Self {
        Self { destination, signed_planned: AtomicU64::new(0) }
    }

    async fn reencrypt(&self, shared: &Shared, item: &[u8], row: &EncryptionContext) -> Result<Outcome, ItemError> {
        let destination = self.destination.as_ref();
        let detected = detect_message(item)?;
        // Reading non-committing suites needs no opt-in here: they are
        // what this command moves off.
        let message = Message::parse_with(&detected.bytes, &DecryptOptions::allowing_non_committing())?;
        let context = context_without_public_key(&message)?;
        context.require(row).map_err(|e| {
            ItemError::new(ItemErrorCode::ContextMismatch, format!("{e}: the message is not bound to its row"))
        })?;
        // Done only if the destination really opens it: a label is not proof.
        if message.suite().is_committing()
            && kms_wrapped_keys(&message).iter().any(|e| is_destination(e, destination))
            && open(shared, &message, &[destination]).await.is_ok()
        {
            return Ok(Outcome::Skipped);
        }
        let plaintext = open(shared, &message, &shared.sources()).await?;
        let suite = if message.suite().is_signed() {
            Suite::Aes256GcmHkdfSha512CommitEcdsaP384
        } else {
            Suite::Aes256GcmHkdfSha512Commit
        };
        let frame_len = match message.content_type() {
            ContentType::Framed => message.frame_length(),
            _ => DEFAULT_FRAME_LEN,
        };
        let encryptor = Encryptor::new(suite, &context)?.with_frame_len(frame_len)?;
        let new_context = encryptor.encryption_context().clone();
        let (data_key, edk) = if suite.is_signed() {
            destination.generate(&new_context).await?
        } else {
            let materials = shared.materials_for(&new_context, destination).await?;
            let edk = materials.encrypted_data_keys.first().cloned().ok_or_else(|| {
                ItemError::new(ItemErrorCode::Keyring, "internal: the destination made no wrapped key")
            })?;
            (materials.data_key.duplicate(), edk)
        };
        let wrapped = WrappedKey {
            provider_id: edk.provider_id().to_owned(),
            provider_info: edk.key_id().as_bytes().to_vec(),
            ciphertext: edk.wrapped().to_vec(),
        };
        let sealed = encryptor.encrypt(&PlaintextDataKey::from(data_key), &[wrapped], plaintext.as_bytes())?;
        if shared.verify {
            // As a reader under the SDKs' strictest policy would open it, with the destination alone.
            let check = Message::parse(&sealed)?;
            // One unwrap per new data key, cached: unsigned messages share theirs.
            let key = shared.unwrap_new(&kms_wrapped_keys(&check), &kms_context(&check)?, destination).await?;
            if check.decrypt(&PlaintextDataKey::from(key.duplicate()))?.as_bytes() != plaintext.as_bytes() {
                return Err(ItemError::new(
                    ItemErrorCode::VerifyFailed,
                    "the new message does not decrypt to the original",
                ));
            }
        }
        let kind = if message.suite().is_committing() { ChangeKind::Reencrypted } else { ChangeKind::Lifted };
        if kind == ChangeKind::Lifted {
            tracing::info!("lifted from {} to {}", message.suite().name(), suite.name());
        }
        Ok(Outcome::Changed { new: detected.encoding.encode(&sealed), kind, old_edks: None, job: None })
    }

    async fn check(&self, shared: &Shared, original: &Item, copy: &[u8]) -> Result<Proof, ItemError> {
        let differs = |what: &str| ItemError::new(ItemErrorCode::VerifyFailed, format!("the copy {what}"));
        let copy = detect_message(copy)?;
        let copy = Message::parse(&copy.bytes)?;
        let old = detect_message(&original.bytes)?;
        let old = Message::parse_with(&old.bytes, &DecryptOptions::allowing_non_committing())?;
        if context_without_public_key(&copy)? != context_without_public_key(&old)? {
            return Err(differs("has another encryption context"));
        }
        let new_plain = open(shared, &copy, &[self.destination.as_ref()]).await?;
        let old_plain = open(shared, &old, &shared.sources()).await?;
        if new_plain.as_bytes() == old_plain.as_bytes() {
            Ok(Proof::SamePlaintext)
        } else {
            Err(differs("decrypts to another plaintext"))
        }
    }
}

impl Strategy for ReencryptEsdk {
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
        let detected = detect_message(item)?;
        let message = Message::parse_with(&detected.bytes, &DecryptOptions::allowing_non_committing())?;
        if let Some(first) = kms_wrapped_keys(&message).first() {
            shared.note_planned(first.wrapped());
        }
        if message.suite().is_signed() {
            self.signed_planned.fetch_add(1, Ordering::Relaxed);
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

    fn check_copy<'a>(
        &'a self,
        shared: &'a Shared,
        original: &'a Item,
        copy: &'a [u8],
    ) -> BoxFuture<'a, Result<Proof, ItemError>> {
        Box::pin(self.check(shared, original, copy))
    }

    fn planned_calls(&self, shared: &Shared, keys: usize, bound: &str, items: u64) -> Vec<String> {
        let mut out = Vec::new();
        if shared.sources_remote() {
            out.push(format!("{bound}{keys} unwrap {} (one per distinct wrapped data key)", calls(keys)));
        }
        if is_remote(self.destination.as_ref()) {
            let signed = self.signed_planned.load(Ordering::Relaxed).min(items);
            let unsigned = items - signed;
            let verify = if shared.verify { ", and as many unwraps to --verify" } else { "" };
            if unsigned > 0 {
                out.push(format!(
                    "about {} data key generations for {unsigned} unsigned messages (one per \
                     {MESSAGES_PER_DATA_KEY} messages and context){verify}",
                    unsigned.div_ceil(MESSAGES_PER_DATA_KEY)
                ));
            }
            if signed > 0 {
                out.push(format!(
                    "{signed} data key generations for {signed} signed messages (one each: every signed \
                     message's context holds its own signing key){verify}"
                ));
            }
        }
        out
    }
}

/// An SDK message opened to be converted into another format (rekey
/// envelopes, compact records): what [`Reencrypt`](super::Reencrypt) and
/// [`ToKeyset`](super::ToKeyset) seal again.
pub(super) struct Converted {
    /// The plaintext, wiped when dropped.
    pub(super) plaintext: Plaintext,
    /// The message's context without the signing key's public half, which
    /// belongs to the discarded signature.
    pub(super) context: EncryptionContext,
    /// The frame length of a framed message, kept when rekey's format takes
    /// it (else rekey's default); `None` for a non-framed one.
    pub(super) frame_len: Option<u32>,
    /// [`ChangeKind::Lifted`] from a suite without key commitment.
    pub(super) kind: ChangeKind,
}

/// Opens an SDK message (`detected`) with the operator's sources, to be
/// converted into another format. The signature is verified, and the key
/// commitment checked, before any plaintext is returned; non-committing
/// suites are read without an opt-in, since converting them is the way off.
pub(super) async fn open_to_convert(shared: &Shared, detected: &Detected) -> Result<Converted, ItemError> {
    let message = Message::parse_with(&detected.bytes, &DecryptOptions::allowing_non_committing())?;
    let context = context_without_public_key(&message)?;
    let plaintext = open(shared, &message, &shared.sources()).await?;
    let frame_len = match message.content_type() {
        ContentType::Framed => Some(message.frame_length())
            .filter(|len| envelope_core::hazmat::BodyForm::framed(*len).is_ok())
            .or(Some(envelope_core::hazmat::DEFAULT_FRAME_LEN)),
        _ => None,
    };
    let kind = if message.suite().is_committing() { ChangeKind::Reencrypted } else { ChangeKind::Lifted };
    Ok(Converted { plaintext, context, frame_len, kind })
}

/// Notes a message's first wrapped key for the dry run's forecast; refuses
/// what cannot be read.
pub(super) fn plan_to_convert(shared: &Shared, detected: &Detected) -> Result<(), ItemError> {
    let message = Message::parse_with(&detected.bytes, &DecryptOptions::allowing_non_committing())?;
    if let Some(first) = kms_wrapped_keys(&message).first() {
        shared.note_planned(first.wrapped());
    }
    Ok(())
}

/// The item as an SDK message, or why it is not one.
fn detect_message(item: &[u8]) -> Result<Detected, ItemError> {
    match format::detect(item) {
        Some(d) if d.format == FormatId::Esdk => Ok(d),
        Some(d) => Err(ItemError::input(format!("the item is a {}, not an AWS Encryption SDK message", d.format))),
        None => Err(ItemError::input("the item is not an AWS Encryption SDK message (binary or base64)")),
    }
}

/// The message's context, which is also its wrapped keys' KMS context.
fn kms_context(message: &Message<'_>) -> Result<EncryptionContext, ItemError> {
    EncryptionContext::from_pairs(message.encryption_context())
        .map_err(|e| ItemError::input(format!("the message's encryption context: {e}")))
}

/// The message's context without the signing key's public half: what the new message keeps.
fn context_without_public_key(message: &Message<'_>) -> Result<EncryptionContext, ItemError> {
    EncryptionContext::from_pairs(message.encryption_context().filter(|(k, _)| *k != PUBLIC_KEY))
        .map_err(|e| ItemError::input(format!("the message's encryption context: {e}")))
}

/// The message's AWS KMS wrapped keys, as rekey's.
fn kms_wrapped_keys(message: &Message<'_>) -> Vec<EncryptedDataKey> {
    format::esdk::kms_wrapped_keys(message.wrapped_keys())
}

/// Opens a message with `keyrings`: each KMS wrapped key one of them
/// accepts, unwrapped once per distinct key however many items share it,
/// until one decrypts. `Message::decrypt` checks the key commitment (on
/// committing suites), the header tag, the signature and every frame, so a
/// planted wrapped key holding another data key fails there and the next
/// wrapped key is tried.
async fn open(shared: &Shared, message: &Message<'_>, keyrings: &[&dyn Keyring]) -> Result<Plaintext, ItemError> {
    let context = kms_context(message)?;
    let edks = kms_wrapped_keys(message);
    let mut last = None;
    for edk in &edks {
        for keyring in keyrings.iter().filter(|k| k.can_unwrap(edk)) {
            let key = if message.suite().data_key_len() == 32 {
                shared.unwrap_one(edk, &context, *keyring).await.map(|k| PlaintextDataKey::from(k.duplicate()))
            } else {
                keyring.unwrap_esdk(std::slice::from_ref(edk), &context).await.map_err(ItemError::from)
            };
            match key {
                Ok(key) => match message.decrypt(&key) {
                    Ok(plaintext) => return Ok(plaintext),
                    Err(e) => last = Some(ItemError::from(e)),
                },
                Err(e) if e.code.is_transient() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        let labels: Vec<String> = message.wrapped_keys().map(|k| wrapped_key_label(&k)).collect();
        ItemError::new(
            ItemErrorCode::NoSourceKey,
            format!("none of the message's wrapped keys is under a key allowed here (it names {})", labels.join(", ")),
        )
    }))
}

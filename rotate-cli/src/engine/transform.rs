//! What happens to one item: the single place where both rotation paths
//! parse an item with envelope-core and either replace its wrapped keys
//! (rewrap) or decrypt and seal it again (reencrypt).
//!
//! Labels are not proof. A wrapped key's key id says which key it claims to
//! be under; nobody authenticated that claim. So:
//! - a wrapped key is re-wrapped only when a source keyring (the operator's
//!   `--from` allow-list) accepts it, and the destination keyring checks
//!   what KMS really used ([`Keyring::rewrap`]);
//! - a working wrapped key is dropped only when the item keeps a key this
//!   run made from that very wrapped key, or one checked against the
//!   envelope's key commitment;
//! - re-encryption skips an item only when the destination really opens it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use envelope_core::keyset::{CompactRecord, KeyId, KeysetHandle, looks_like_compact_record};
use envelope_core::legacy::{InnerEncoding, decrypt_legacy_record};
use envelope_core::{
    BodyForm, DataKey, EncryptedDataKey, EncryptionContext, Envelope, Keyring, KeyringError, KeyringErrorKind,
    Materials, ParseOptions, Rewrapped, decode_text, encode_text, encrypt_stream, seal,
};
use tokio::sync::OnceCell;

use super::Item;
use super::error::{ItemError, ItemErrorCode};

/// How an item was stored, so the new one is stored the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The binary form.
    Binary,
    /// Base64 text; `newline` keeps a trailing newline of a file.
    Text {
        /// The item ended with a newline.
        newline: bool,
    },
}

impl Encoding {
    /// Binary when the item starts with the magic bytes, text otherwise.
    pub fn detect(bytes: &[u8]) -> Self {
        if bytes.starts_with(&envelope_core::MAGIC) {
            Self::Binary
        } else {
            Self::Text { newline: bytes.ends_with(b"\n") }
        }
    }

    /// The envelope bytes of an item.
    ///
    /// # Errors
    /// A bad-input error for text that is not the envelope's base64.
    pub fn decode(self, bytes: &[u8]) -> Result<Vec<u8>, ItemError> {
        match self {
            Self::Binary => Ok(bytes.to_vec()),
            Self::Text { .. } => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| ItemError::input("the item is neither binary nor base64 text"))?;
                decode_text(text).map_err(|e| ItemError::input(e.to_string()))
            }
        }
    }

    /// The item bytes of an envelope.
    pub fn encode(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Binary => bytes.to_vec(),
            Self::Text { newline } => {
                let mut text = encode_text(bytes).into_bytes();
                if newline {
                    text.push(b'\n');
                }
                text
            }
        }
    }
}

/// What a transform did to an item.
#[derive(Debug)]
pub enum Outcome {
    /// Already in the wanted state; nothing to write.
    Skipped,
    /// An empty value (a NULL in an export): left alone.
    Empty,
    /// The item's replacement.
    Changed {
        /// The new item (in a dry run, the item itself).
        new: Vec<u8>,
        /// What kind of change.
        kind: ChangeKind,
        /// For a rewrap, the old key list: with the new item's unchanged
        /// header core and body it rebuilds the original (a small undo record).
        old_edks: Option<Vec<EncryptedDataKey>>,
        /// For an item too large to hold (only its header was read): the
        /// re-encryption the sink streams from the stored item.
        job: Option<Arc<StreamJob>>,
    },
}

/// A re-encryption streamed by the sink, frame by frame in constant memory:
/// the keys are resolved here (they may need KMS), the bytes move there.
pub struct StreamJob {
    /// The item's data key, checked against its commitment.
    pub data_key: Arc<DataKey>,
    /// The new data key and its wrapped copies.
    pub materials: Arc<Materials>,
    /// The new envelope's context.
    pub context: EncryptionContext,
    /// The new envelope's frame length: the old one's.
    pub frame_len: u32,
    /// Decrypt the new envelope after writing it and compare (`--verify`).
    pub verify: bool,
}

impl std::fmt::Debug for StreamJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key material: only what the job does.
        f.debug_struct("StreamJob")
            .field("context", &self.context)
            .field("frame_len", &self.frame_len)
            .finish_non_exhaustive()
    }
}

/// How a copy was shown to hold what its original holds ([`Transform::check_copy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The same body under the same data key (checked against the commitment): nothing was decrypted.
    SameDataKey,
    /// Both were decrypted, to the same plaintext.
    SamePlaintext,
}

/// What kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The wrapped keys were replaced.
    Rewrapped,
    /// Decrypted and sealed again.
    Reencrypted,
    /// A legacy CBC record, never authenticated, sealed as an envelope.
    FromLegacy,
}

/// What kind of rotation.
pub enum Mode {
    /// Replace wrapped keys under a source key with one under the destination.
    Rewrap {
        /// Keyrings for `--remove`: wrapped keys they accept are dropped (with proof).
        remove: Vec<Box<dyn Keyring>>,
        /// Keep the replaced keys beside the new one (a transition period).
        add: bool,
    },
    /// Bare encrypted data keys (KMS ciphertext blobs).
    RewrapBare {
        /// The context they were encrypted with.
        source_context: EncryptionContext,
        /// The context to encrypt them with.
        dest_context: EncryptionContext,
    },
    /// Decrypt and seal again as compact records of a keyset, under its
    /// primary key (docs/format.md §12). A compact record does not carry its
    /// context, so every item gets the one given (with the row's pairs), and
    /// an envelope whose own context differs is refused rather than
    /// silently unbound.
    ReencryptToKeyset {
        /// The keyset, unwrapped.
        keyset: Arc<KeysetHandle>,
        /// The records' context (the application gives it again to decrypt).
        context: EncryptionContext,
        /// Legacy records: a data key given on the command line (else the
        /// keyset's imported legacy key), and the inner encoding.
        legacy: Option<DataKey>,
        /// The inner encoding of legacy records.
        inner: InnerEncoding,
    },
    /// Decrypt and encrypt again under a fresh data key.
    Reencrypt {
        /// New context; `None` keeps each envelope's own (legacy records get an empty one).
        context: Option<EncryptionContext>,
        /// The legacy data key, unwrapped once, and the inner encoding.
        legacy: Option<(DataKey, InnerEncoding)>,
    },
}

/// One rotation's settings, shared by all workers.
pub struct Transform {
    mode: Mode,
    /// The key to wrap or encrypt under.
    destination: Box<dyn Keyring>,
    /// The operator's allow-list: keyrings that may unwrap the items' current data keys.
    sources: Vec<Box<dyn Keyring>>,
    parse: ParseOptions,
    verify: bool,
    dry_run: bool,
    /// One keyring call per distinct wrapped key, even with many workers.
    rewrapped: KeyedOnce<Arc<Rewrapped>>,
    unwrapped: KeyedOnce<Arc<DataKey>>,
    /// Per context: the current materials and how many items used them.
    materials: Mutex<HashMap<Vec<u8>, (MaterialsCell, u64)>>,
    /// A dry run's count of distinct wrapped keys and of items that would change.
    planned: Planned,
}

/// What a dry run learns about the keyring calls a real run would make:
/// the distinct wrapped keys it would re-wrap or unwrap.
#[derive(Default)]
struct Planned {
    keys: Mutex<std::collections::HashSet<[u8; 16]>>,
}

/// Distinct keys remembered before the count becomes a lower bound.
const PLANNED_KEYS: usize = 1 << 20;

impl Planned {
    fn note(&self, wrapped: &[u8]) {
        use sha2::Digest;
        let mut id = [0u8; 16];
        id.copy_from_slice(&sha2::Sha256::digest(wrapped)[..16]);
        if let Ok(mut keys) = self.keys.lock()
            && keys.len() < PLANNED_KEYS
        {
            keys.insert(id);
        }
    }
}

type MaterialsCell = Arc<OnceCell<Arc<Materials>>>;

/// Items sealed under one data key before a fresh one is generated. Each
/// still derives its own key from a random 256-bit message id (format §5).
const MESSAGES_PER_DATA_KEY: u64 = 100_000;

impl Transform {
    /// A transform into `destination`, allowing `sources` to unwrap.
    pub fn new(
        mode: Mode,
        destination: Box<dyn Keyring>,
        sources: Vec<Box<dyn Keyring>>,
        parse: ParseOptions,
        verify: bool,
        dry_run: bool,
    ) -> Self {
        Self {
            mode,
            destination,
            sources,
            parse,
            verify,
            dry_run,
            rewrapped: KeyedOnce::default(),
            unwrapped: KeyedOnce::default(),
            materials: Mutex::new(HashMap::new()),
            planned: Planned::default(),
        }
    }

    /// After a dry run that found `items` to change: the keyring calls the
    /// real run would make, as sentences for the plan (remote providers
    /// only; local keys cost none).
    pub fn planned_calls(&self, items: u64) -> Vec<String> {
        let keys = self.planned.keys.lock().map_or(0, |k| k.len());
        let bound = if keys >= PLANNED_KEYS { "at least " } else { "" };
        let remote = |provider: &str| provider != envelope_core::LOCAL_PROVIDER_ID;
        let destination_remote = remote(self.destination.provider_id());
        let sources_remote = self.sources.iter().any(|s| remote(s.provider_id()));
        let verify = if self.verify { keys } else { 0 };
        let mut calls = Vec::new();
        match &self.mode {
            Mode::Rewrap { .. } | Mode::RewrapBare { .. } if destination_remote || sources_remote => {
                calls.push(format!(
                    "{bound}{keys} re-wrap {} (one per distinct wrapped key, {items} items){}",
                    if keys == 1 { "call" } else { "calls" },
                    if verify > 0 { format!(", and {verify} more to --verify") } else { String::new() }
                ));
            }
            Mode::Reencrypt { legacy, .. } => {
                if sources_remote && legacy.is_none() {
                    calls.push(format!(
                        "{bound}{keys} unwrap {} (one per distinct data key)",
                        if keys == 1 { "call" } else { "calls" }
                    ));
                }
                if destination_remote {
                    calls.push(format!(
                        "about {} data key generations (one per {MESSAGES_PER_DATA_KEY} items and context){}",
                        items.div_ceil(MESSAGES_PER_DATA_KEY).max(1),
                        if self.verify { ", and as many unwraps to --verify" } else { "" }
                    ));
                }
            }
            _ => {}
        }
        if calls.is_empty() {
            calls.push("none: local keys only".into());
        }
        calls
    }

    /// The destination keyring.
    pub fn destination(&self) -> &dyn Keyring {
        self.destination.as_ref()
    }

    /// Transforms one item: pure with respect to storage, the sink writes.
    /// In a dry run, only decides whether it would change (no keyring call).
    ///
    /// `row` holds context pairs that bind the item to where it is stored
    /// (a table row's tenant id): an envelope being re-wrapped must already
    /// carry them, a bare data key is unwrapped and wrapped with them, and a
    /// re-encrypted item gets them.
    ///
    /// # Errors
    /// Why the item cannot be transformed.
    pub async fn apply(&self, item: &Item) -> Result<Outcome, ItemError> {
        if item.bytes.is_empty() {
            return Ok(Outcome::Empty);
        }
        if self.dry_run {
            return self.plan(&item.bytes);
        }
        if item.header_only {
            match &self.mode {
                Mode::Reencrypt { context, .. } => {
                    return self.plan_stream(&item.bytes, context.as_ref(), &item.context).await;
                }
                Mode::ReencryptToKeyset { .. } => {
                    return Err(ItemError::input(
                        "a compact record is for short records, not a framed envelope of several MiB; \
                         re-encrypt it with --to KEYREF instead",
                    ));
                }
                _ => {}
            }
        }
        self.apply_now(&item.bytes, &item.context).await
    }

    /// The keys of a streamed re-encryption of an item of which only the
    /// header (of a framed envelope) was read.
    async fn plan_stream(
        &self,
        header: &[u8],
        context: Option<&EncryptionContext>,
        row: &EncryptionContext,
    ) -> Result<Outcome, ItemError> {
        let envelope = Envelope::parse(header, &self.parse)?;
        let old = envelope.header();
        let BodyForm::Framed { frame_len } = old.body_form else {
            return Err(ItemError::input("only framed envelopes are streamed"));
        };
        let new_context = match context {
            Some(c) => with_row(c, row)?,
            None => with_row(&old.context, row)?,
        };
        if new_context == old.context && old.encrypted_data_keys.iter().any(|e| self.is_destination(e)) {
            let destination = [self.destination.as_ref()];
            if self.unwrap_committed(&envelope, &destination).await.is_ok() {
                return Ok(Outcome::Skipped);
            }
        }
        let data_key = self.unwrap_committed(&envelope, &self.sources()).await?;
        let materials = self.materials_for(&new_context).await?;
        if self.verify {
            // The destination must really open the new data key.
            let key = self.destination.unwrap(&materials.encrypted_data_keys, &new_context).await?;
            if key != materials.data_key {
                return Err(ItemError::new(
                    ItemErrorCode::VerifyFailed,
                    "the destination does not unwrap the new data key",
                ));
            }
        }
        let job = StreamJob { data_key, materials, context: new_context, frame_len, verify: self.verify };
        Ok(Outcome::Changed {
            new: Vec::new(),
            kind: ChangeKind::Reencrypted,
            old_edks: None,
            job: Some(Arc::new(job)),
        })
    }

    /// Transforms one item in memory even in a dry run (the dry run's sample).
    ///
    /// # Errors
    /// Why the item cannot be transformed.
    pub async fn apply_now(&self, item: &[u8], row: &EncryptionContext) -> Result<Outcome, ItemError> {
        match &self.mode {
            Mode::Rewrap { remove, add } => self.rewrap_envelope(item, remove, *add, row).await,
            Mode::RewrapBare { source_context, dest_context } => {
                self.rewrap_bare(item, &with_row(source_context, row)?, &with_row(dest_context, row)?).await
            }
            Mode::Reencrypt { context, legacy } => self.reencrypt(item, context.as_ref(), legacy.as_ref(), row).await,
            Mode::ReencryptToKeyset { keyset, context, legacy, inner } => {
                self.to_keyset(item, keyset, &with_row(context, row)?, legacy.as_ref(), *inner).await
            }
        }
    }

    /// An item bound for a keyset: sealed again as a compact record under
    /// the primary key, unless it already is one.
    async fn to_keyset(
        &self,
        item: &[u8],
        keyset: &KeysetHandle,
        context: &EncryptionContext,
        legacy: Option<&DataKey>,
        inner: InnerEncoding,
    ) -> Result<Outcome, ItemError> {
        let (opened, kind, record_key) = self.open_for_keyset(item, keyset, context, legacy, inner).await?;
        if record_key.is_some() && record_key == keyset.primary() {
            return Ok(Outcome::Skipped);
        }
        let plaintext: &[u8] = (*opened).as_ref();
        let sealed = keyset.encrypt(plaintext, context)?;
        if self.verify && keyset.decrypt(&sealed, context)?.as_bytes() != plaintext {
            return Err(ItemError::new(ItemErrorCode::VerifyFailed, "the new record does not decrypt to the original"));
        }
        let encoding = match kind {
            ChangeKind::FromLegacy => Encoding::Text { newline: item.ends_with(b"\n") },
            _ => keyset_encoding(item),
        };
        Ok(Outcome::Changed { new: encoding.encode(&sealed), kind, old_edks: None, job: None })
    }

    /// The plaintext of an item bound for a keyset, what it was, and the key
    /// id when it is a compact record already (opened with the keyset and
    /// `context`, so one of another keyset or context is refused): an
    /// envelope the sources open (its context must be `context`), or a
    /// legacy record.
    async fn open_for_keyset(
        &self,
        item: &[u8],
        keyset: &KeysetHandle,
        context: &EncryptionContext,
        legacy: Option<&DataKey>,
        inner: InnerEncoding,
    ) -> Result<(Box<dyn AsRef<[u8]> + Send + Sync>, ChangeKind, Option<KeyId>), ItemError> {
        match keyset_encoding(item).decode(item).ok().as_deref() {
            Some(b) if looks_like_compact_record(b) => {
                let opened = keyset.decrypt(b, context)?;
                let key = CompactRecord::parse(b).ok().map(|r| r.key_id());
                Ok((Box::new(opened), ChangeKind::Reencrypted, key))
            }
            Some(b) if b.starts_with(&envelope_core::MAGIC) => {
                let envelope = Envelope::parse(b, &self.parse)?;
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
                let key = self.unwrap_committed(&envelope, &self.sources()).await?;
                Ok((Box::new(envelope.open_plaintext(&key)?), ChangeKind::Reencrypted, None))
            }
            _ => {
                let text =
                    std::str::from_utf8(item).map_err(|_| ItemError::input("a legacy record must be base64 text"))?;
                let plain = match legacy {
                    Some(key) => decrypt_legacy_record(key, text, inner)?,
                    None if keyset.has_legacy_key() => keyset.decrypt_legacy(text, inner)?,
                    None => return Err(not_an_envelope()),
                };
                Ok((Box::new(plain), ChangeKind::FromLegacy, None))
            }
        }
    }

    fn sources(&self) -> Vec<&dyn Keyring> {
        self.sources.iter().map(AsRef::as_ref).collect()
    }

    fn is_destination(&self, edk: &EncryptedDataKey) -> bool {
        edk.provider_id() == self.destination.provider_id() && edk.key_id() == self.destination.key_id()
    }

    fn is_source(&self, edk: &EncryptedDataKey) -> bool {
        !self.is_destination(edk) && self.sources.iter().any(|s| s.can_unwrap(edk))
    }

    /// Checks a copy this transform made of `original` (a shadow column's
    /// value): the destination opens it, and it holds what the original
    /// holds. A re-wrapped copy is proven without decrypting any body (same
    /// message id, commitment and body bytes, and a data key the
    /// destination unwraps that passes the commitment); anything else is
    /// decrypted on both sides and compared.
    ///
    /// # Errors
    /// `verify_failed` when the copy differs, or why either side cannot be opened.
    pub async fn check_copy(&self, original: &Item, copy: &[u8]) -> Result<Proof, ItemError> {
        let differs = |what: &str| ItemError::new(ItemErrorCode::VerifyFailed, format!("the copy {what}"));
        let destination = [self.destination.as_ref()];
        if let Mode::RewrapBare { source_context, dest_context } = &self.mode {
            let (old_context, new_context) =
                (with_row(source_context, &original.context)?, with_row(dest_context, &original.context)?);
            let old = self.bare_data_key(&original.bytes, &old_context, &self.sources()).await?;
            let new = self.bare_data_key(copy, &new_context, &destination).await?;
            return if *old == *new { Ok(Proof::SameDataKey) } else { Err(differs("holds another data key")) };
        }
        if let Mode::ReencryptToKeyset { keyset, context, legacy, inner } = &self.mode {
            let context = with_row(context, &original.context)?;
            let copy_bytes = keyset_encoding(copy).decode(copy)?;
            if !looks_like_compact_record(&copy_bytes) {
                return Err(differs("is not a compact record"));
            }
            let new = keyset.decrypt(&copy_bytes, &context)?;
            let (old, _, _) = self.open_for_keyset(&original.bytes, keyset, &context, legacy.as_ref(), *inner).await?;
            return if (*old).as_ref() == new.as_bytes() {
                Ok(Proof::SamePlaintext)
            } else {
                Err(differs("decrypts to another plaintext"))
            };
        }
        let copy_bytes = Encoding::detect(copy).decode(copy)?;
        let copy_envelope = Envelope::parse(&copy_bytes, &self.parse)?;
        copy_envelope.header().context.require(&original.context).map_err(|e| {
            ItemError::new(ItemErrorCode::ContextMismatch, format!("{e}: the copy is not bound to its row"))
        })?;
        let copy_key = self.unwrap_committed(&copy_envelope, &destination).await?;
        let original_bytes = Encoding::detect(&original.bytes).decode(&original.bytes).ok();
        if let Some(bytes) = original_bytes.as_deref().filter(|b| b.starts_with(&envelope_core::MAGIC)) {
            let envelope = Envelope::parse(bytes, &self.parse)?;
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
            let key = self.unwrap_committed(&envelope, &self.sources()).await?;
            let same = envelope.open_plaintext(&key)?.as_bytes() == copy_envelope.open_plaintext(&copy_key)?.as_bytes();
            return if same { Ok(Proof::SamePlaintext) } else { Err(differs("decrypts to another plaintext")) };
        }
        let Mode::Reencrypt { legacy: Some((key, inner)), .. } = &self.mode else {
            return Err(not_an_envelope());
        };
        let text = std::str::from_utf8(&original.bytes)
            .map_err(|_| ItemError::input("a legacy record must be base64 text"))?;
        let plaintext = decrypt_legacy_record(key, text, *inner)?;
        if plaintext.as_bytes() == copy_envelope.open_plaintext(&copy_key)?.as_bytes() {
            Ok(Proof::SamePlaintext)
        } else {
            Err(differs("decrypts to another plaintext"))
        }
    }

    /// The data key of a bare wrapped key (binary or base64 text), unwrapped by one of `keyrings`.
    async fn bare_data_key(
        &self,
        item: &[u8],
        context: &EncryptionContext,
        keyrings: &[&dyn Keyring],
    ) -> Result<Arc<DataKey>, ItemError> {
        let blob = match std::str::from_utf8(item).ok().and_then(|t| STANDARD.decode(t.trim_ascii()).ok()) {
            Some(blob) => blob,
            None => item.to_vec(),
        };
        let mut last = None;
        for keyring in keyrings {
            let edk = EncryptedDataKey::new(keyring.provider_id(), keyring.key_id(), blob.clone())
                .map_err(|e| ItemError::input(e.to_string()))?;
            match self.unwrap_one(&edk, context, *keyring).await {
                Ok(key) => return Ok(key),
                Err(e) if e.code.is_transient() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ItemError::new(ItemErrorCode::NoSourceKey, "no key to try")))
    }

    /// Decides, without any key, whether an item would change: the dry run.
    fn plan(&self, item: &[u8]) -> Result<Outcome, ItemError> {
        let would_change = match &self.mode {
            Mode::Rewrap { remove, add } => {
                let bytes = Encoding::detect(item).decode(item)?;
                let envelope = Envelope::parse(&bytes, &self.parse)?;
                let edks = &envelope.header().encrypted_data_keys;
                let needed = self.rewrap_needed(edks, remove, *add)?;
                if needed && let Some(source) = edks.iter().find(|e| self.is_source(e)) {
                    self.planned.note(source.wrapped());
                }
                needed
            }
            Mode::RewrapBare { .. } => {
                self.planned.note(item);
                true
            }
            Mode::Reencrypt { legacy, .. } => {
                match Encoding::detect(item).decode(item).ok().filter(|b| b.starts_with(&envelope_core::MAGIC)) {
                    Some(bytes) => {
                        let envelope = Envelope::parse(&bytes, &self.parse)?;
                        if let Some(first) = envelope.header().encrypted_data_keys.first() {
                            self.planned.note(first.wrapped());
                        }
                    }
                    None if legacy.is_some() => {}
                    None => return Err(not_an_envelope()),
                }
                true
            }
            Mode::ReencryptToKeyset { keyset, .. } => match keyset_encoding(item).decode(item).ok() {
                Some(b) if looks_like_compact_record(&b) => {
                    CompactRecord::parse(&b).ok().map(|r| r.key_id()) != keyset.primary()
                }
                Some(b) if b.starts_with(&envelope_core::MAGIC) => {
                    let envelope = Envelope::parse(&b, &self.parse)?;
                    if let Some(first) = envelope.header().encrypted_data_keys.first() {
                        self.planned.note(first.wrapped());
                    }
                    true
                }
                _ => true,
            },
        };
        let kind = if matches!(self.mode, Mode::Reencrypt { .. } | Mode::ReencryptToKeyset { .. }) {
            ChangeKind::Reencrypted
        } else {
            ChangeKind::Rewrapped
        };
        Ok(if would_change {
            Outcome::Changed { new: item.to_vec(), kind, old_edks: None, job: None }
        } else {
            Outcome::Skipped
        })
    }

    /// Whether a rewrap has work to do (idempotence). Skipping needs no
    /// proof: it changes nothing.
    fn rewrap_needed(
        &self,
        edks: &[EncryptedDataKey],
        remove: &[Box<dyn Keyring>],
        add: bool,
    ) -> Result<bool, ItemError> {
        let has_source = edks.iter().any(|e| self.is_source(e));
        let has_destination = edks.iter().any(|e| self.is_destination(e));
        let removable = edks.iter().any(|e| !self.is_destination(e) && remove.iter().any(|r| r.can_unwrap(e)));
        let needed = if add { has_source && !has_destination } else { has_source || removable };
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

    async fn rewrap_envelope(
        &self,
        item: &[u8],
        remove: &[Box<dyn Keyring>],
        add: bool,
        row: &EncryptionContext,
    ) -> Result<Outcome, ItemError> {
        let encoding = Encoding::detect(item);
        let bytes = encoding.decode(item)?;
        let envelope = Envelope::parse(&bytes, &self.parse)?;
        let header = envelope.header();
        header.context.require(row).map_err(|e| {
            ItemError::new(ItemErrorCode::ContextMismatch, format!("{e}: the item is not bound to its row"))
        })?;
        let edks = &header.encrypted_data_keys;
        if !self.rewrap_needed(edks, remove, add)? {
            return Ok(Outcome::Skipped);
        }
        let commits = |key: &DataKey| envelope.verify_data_key(key).is_ok();
        let mut keep: Vec<EncryptedDataKey> = edks.clone();
        // A key checked against the envelope's commitment: proof enough to drop others.
        let mut proven = false;

        // A wrapped key labelled with the destination is only a claim: when
        // it would let others go, prove it first (unwrap it, check the commitment).
        let has_destination = edks.iter().any(|e| self.is_destination(e));
        if has_destination && !add {
            proven = self.prove_one(edks, |e| !self.is_destination(e), &header.context, &commits).await;
            if proven {
                keep.retain(|e| !self.is_source(e));
            }
        }
        if !(proven || add && has_destination)
            && let Some(source) = edks.iter().find(|e| self.is_source(e))
        {
            let rewrapped = self.rewrap_one(source, &header.context, &header.context).await?;
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
            if self.verify && !proven {
                let key = self.unwrap_one(&rewrapped.edk, &header.context, self.destination.as_ref()).await?;
                if !commits(&key) {
                    return Err(ItemError::new(
                        ItemErrorCode::VerifyFailed,
                        "the new wrapped key does not hold this item's data key",
                    ));
                }
                proven = true;
            }
            if !add {
                // Made from that very wrapped key: it may go. Others only with proof.
                keep.retain(|e| e != source && !(proven && self.is_source(e)));
            }
            keep.push(rewrapped.edk.clone());
        }

        let removable = |e: &EncryptedDataKey| !self.is_destination(e) && remove.iter().any(|r| r.can_unwrap(e));
        if keep.iter().any(removable) {
            if !proven {
                proven = self.prove_one(&keep, removable, &header.context, &commits).await;
            }
            if !proven {
                return Err(ItemError::new(
                    ItemErrorCode::Unproven,
                    "refusing to remove wrapped keys: none of the remaining ones could be shown to open this item",
                ));
            }
            keep.retain(|e| !removable(e));
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
        edks: &[EncryptedDataKey],
        excluded: impl Fn(&EncryptedDataKey) -> bool,
        context: &EncryptionContext,
        commits: &(dyn Fn(&DataKey) -> bool + Sync),
    ) -> bool {
        let keyrings: Vec<&dyn Keyring> =
            std::iter::once(self.destination.as_ref()).chain(self.sources.iter().map(AsRef::as_ref)).collect();
        for edk in edks.iter().filter(|e| !excluded(e)) {
            for keyring in keyrings.iter().filter(|k| k.can_unwrap(edk)) {
                if let Ok(key) = self.unwrap_one(edk, context, *keyring).await
                    && commits(&key)
                {
                    return true;
                }
            }
        }
        false
    }

    /// Re-wraps one data key under the destination; the destination keyring
    /// decides how (KMS ReEncrypt, or unwrap with the sources and wrap).
    async fn rewrap_one(
        &self,
        edk: &EncryptedDataKey,
        source: &EncryptionContext,
        dest: &EncryptionContext,
    ) -> Result<Arc<Rewrapped>, ItemError> {
        let work = || async {
            let sources = self.sources();
            self.destination.rewrap(edk, source, dest, &sources).await.map(Arc::new)
        };
        // The cache saves remote calls; a local key's work is cheaper than a lookup.
        let local = edk.provider_id() == envelope_core::LOCAL_PROVIDER_ID
            && self.destination.provider_id() == envelope_core::LOCAL_PROVIDER_ID;
        if local {
            Ok(work().await?)
        } else {
            Ok(self.rewrapped.get_or_try(cache_key(std::slice::from_ref(edk), source, Some(dest)), work).await?)
        }
    }

    /// Unwraps one wrapped key with `keyring`, once per distinct key.
    async fn unwrap_one(
        &self,
        edk: &EncryptedDataKey,
        context: &EncryptionContext,
        keyring: &dyn Keyring,
    ) -> Result<Arc<DataKey>, ItemError> {
        Ok(self
            .unwrapped
            .get_or_try(cache_key(std::slice::from_ref(edk), context, None), || async {
                keyring.unwrap(std::slice::from_ref(edk), context).await.map(Arc::new)
            })
            .await?)
    }

    /// The data key of an envelope: each wrapped key an allowed keyring
    /// accepts, one at a time, until one passes the commitment check, so a
    /// planted wrapped key cannot block the item.
    async fn unwrap_committed(
        &self,
        envelope: &Envelope<'_>,
        keyrings: &[&dyn Keyring],
    ) -> Result<Arc<DataKey>, ItemError> {
        let header = envelope.header();
        let mut last = None;
        for edk in &header.encrypted_data_keys {
            for keyring in keyrings.iter().filter(|k| k.can_unwrap(edk)) {
                match self.unwrap_one(edk, &header.context, *keyring).await {
                    Ok(key) if envelope.verify_data_key(&key).is_ok() => return Ok(key),
                    Ok(_) => {
                        last = Some(ItemError::new(
                            ItemErrorCode::Authentication,
                            envelope_core::Error::Authentication.to_string(),
                        ))
                    }
                    Err(e) if e.code.is_transient() => return Err(e),
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(last.unwrap_or_else(|| envelope_core::no_matching_key(&header.encrypted_data_keys).into()))
    }

    async fn rewrap_bare(
        &self,
        item: &[u8],
        source_context: &EncryptionContext,
        dest_context: &EncryptionContext,
    ) -> Result<Outcome, ItemError> {
        let (blob, encoding) = match std::str::from_utf8(item).ok().and_then(|t| STANDARD.decode(t.trim_ascii()).ok()) {
            Some(blob) => (blob, Encoding::Text { newline: item.ends_with(b"\n") }),
            None => (item.to_vec(), Encoding::Binary),
        };
        // A bare blob names no key: try it as the blob of each source key
        // (the allow-list), and let the keyring check what KMS really used.
        let mut last = None;
        let mut rewrapped = None;
        for source in &self.sources {
            let edk = EncryptedDataKey::new(source.provider_id(), source.key_id(), blob.clone())
                .map_err(|e| ItemError::input(e.to_string()))?;
            match self.rewrap_one(&edk, source_context, dest_context).await {
                Ok(r) => {
                    rewrapped = Some(r);
                    break;
                }
                Err(e) if e.code.is_transient() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        let Some(rewrapped) = rewrapped else {
            return Err(last.unwrap_or_else(|| ItemError::new(ItemErrorCode::NoSourceKey, "no --from key to try")));
        };
        if self.verify {
            // A bare key has no commitment: check the new blob unwraps under the destination.
            self.destination.unwrap(std::slice::from_ref(&rewrapped.edk), dest_context).await?;
        }
        let out = match encoding {
            Encoding::Binary => rewrapped.edk.wrapped().to_vec(),
            Encoding::Text { newline } => {
                let mut text = STANDARD.encode(rewrapped.edk.wrapped()).into_bytes();
                if newline {
                    text.push(b'\n');
                }
                text
            }
        };
        Ok(Outcome::Changed { new: out, kind: ChangeKind::Rewrapped, old_edks: None, job: None })
    }

    async fn reencrypt(
        &self,
        item: &[u8],
        context: Option<&EncryptionContext>,
        legacy: Option<&(DataKey, InnerEncoding)>,
        row: &EncryptionContext,
    ) -> Result<Outcome, ItemError> {
        let context = context.map(|c| with_row(c, row)).transpose()?;
        let context = context.as_ref();
        let encoding = Encoding::detect(item);
        let envelope_bytes = encoding.decode(item).ok().filter(|b| b.starts_with(&envelope_core::MAGIC));
        // The plaintext, zeroized when dropped (a whole-buffer wipe for envelopes).
        let (opened, old_context, frame_len, kind): (Box<dyn AsRef<[u8]> + Send + Sync>, _, _, _) =
            match (envelope_bytes, legacy) {
                (Some(bytes), _) => {
                    let envelope = Envelope::parse(&bytes, &self.parse)?;
                    let header = envelope.header();
                    let wanted_context = context.is_none_or(|c| *c == header.context);
                    // Done only if the destination really opens it: a label is not proof.
                    if wanted_context && header.encrypted_data_keys.iter().any(|e| self.is_destination(e)) {
                        let destination = [self.destination.as_ref()];
                        if self.unwrap_committed(&envelope, &destination).await.is_ok() {
                            return Ok(Outcome::Skipped);
                        }
                    }
                    let key = self.unwrap_committed(&envelope, &self.sources()).await?;
                    let frame_len = match header.body_form {
                        BodyForm::Framed { frame_len } => Some(frame_len),
                        BodyForm::SingleShot => None,
                    };
                    (
                        Box::new(envelope.open_plaintext(&key)?),
                        header.context.clone(),
                        frame_len,
                        ChangeKind::Reencrypted,
                    )
                }
                (None, Some((key, inner))) => {
                    let text = std::str::from_utf8(item)
                        .map_err(|_| ItemError::input("a legacy record must be base64 text"))?;
                    (
                        Box::new(decrypt_legacy_record(key, text, *inner)?),
                        EncryptionContext::new(),
                        None,
                        ChangeKind::FromLegacy,
                    )
                }
                (None, None) => return Err(not_an_envelope()),
            };
        let plaintext: &[u8] = (*opened).as_ref();
        let new_context = match context {
            Some(c) => c.clone(),
            None => with_row(&old_context, row)?,
        };
        let materials = self.materials_for(&new_context).await?;
        // The body keeps its form: framed stays framed, with the same frame length.
        let sealed = match frame_len {
            Some(frame_len) => {
                let mut out = Vec::with_capacity(plaintext.len() + 512);
                encrypt_stream(&materials, &new_context, frame_len, plaintext, &mut out)?;
                out
            }
            None => seal(&materials, &new_context, plaintext)?,
        };
        if self.verify {
            let check = Envelope::parse(&sealed, &self.parse)?;
            let key = self.destination.unwrap(&check.header().encrypted_data_keys, &new_context).await?;
            if check.open_plaintext(&key)?.as_bytes() != plaintext {
                return Err(ItemError::new(
                    ItemErrorCode::VerifyFailed,
                    "the new envelope does not decrypt to the original",
                ));
            }
        }
        let encoding =
            if kind == ChangeKind::FromLegacy { Encoding::Text { newline: item.ends_with(b"\n") } } else { encoding };
        Ok(Outcome::Changed { new: encoding.encode(&sealed), kind, old_edks: None, job: None })
    }

    /// Encryption materials for `context`: one data key serves up to
    /// `MESSAGES_PER_DATA_KEY` items, so a run makes few GenerateDataKey calls.
    async fn materials_for(&self, context: &EncryptionContext) -> Result<Arc<Materials>, ItemError> {
        let ctx_key = cache_key(&[], context, None);
        let cell = {
            let mut map = self
                .materials
                .lock()
                .map_err(|_| ItemError::new(ItemErrorCode::Keyring, "internal: materials cache poisoned"))?;
            let entry = map.entry(ctx_key).or_insert_with(|| (Arc::new(OnceCell::new()), 0));
            entry.1 += 1;
            if entry.1 > MESSAGES_PER_DATA_KEY {
                *entry = (Arc::new(OnceCell::new()), 1);
            }
            Arc::clone(&entry.0)
        };
        let materials = cell
            .get_or_try_init(|| async {
                let (data_key, edk) = self.destination.generate(context).await?;
                Ok::<_, KeyringError>(Arc::new(Materials { data_key, encrypted_data_keys: vec![edk] }))
            })
            .await?;
        Ok(Arc::clone(materials))
    }
}

/// `base` with the row's pairs added; a pair that contradicts `base` is an error.
fn with_row(base: &EncryptionContext, row: &EncryptionContext) -> Result<EncryptionContext, ItemError> {
    let mut out = base.clone();
    for (k, v) in row.iter() {
        match base.get(k) {
            Some(existing) if existing == v => {}
            Some(_) => {
                return Err(ItemError::new(
                    ItemErrorCode::ContextMismatch,
                    format!("the context pair {k:?} from the row contradicts the one given"),
                ));
            }
            None => out.insert(k, v).map_err(|e| ItemError::input(e.to_string()))?,
        }
    }
    Ok(out)
}

/// How an item bound for a keyset is stored: binary compact records start
/// with their magic, binary envelopes with theirs, anything else is text.
fn keyset_encoding(item: &[u8]) -> Encoding {
    if looks_like_compact_record(item) { Encoding::Binary } else { Encoding::detect(item) }
}

/// The body of a parsed envelope: its last `body_len` bytes.
fn body_of<'b>(bytes: &'b [u8], envelope: &Envelope<'_>) -> Option<&'b [u8]> {
    bytes.get(bytes.len().checked_sub(envelope.body_len())?..)
}

fn not_an_envelope() -> ItemError {
    ItemError::input("the item is not an envelope (for legacy records pass --items legacy)")
}

/// Bytes identifying wrapped keys under contexts: the cache key.
fn cache_key(edks: &[EncryptedDataKey], source: &EncryptionContext, dest: Option<&EncryptionContext>) -> Vec<u8> {
    let mut key = Vec::new();
    let mut put = |field: &[u8]| {
        key.extend_from_slice(&(field.len() as u64).to_be_bytes());
        key.extend_from_slice(field);
    };
    for edk in edks {
        put(edk.provider_id().as_bytes());
        put(edk.key_id().as_bytes());
        put(edk.wrapped());
    }
    for ctx in std::iter::once(source).chain(dest) {
        put(b"\xffcontext");
        for (k, v) in ctx.iter() {
            put(k.as_bytes());
            put(v.as_bytes());
        }
    }
    key
}

/// Runs an async computation once per key, however many workers ask at the
/// same time; failures are not cached, so a later item may try again.
struct KeyedOnce<T> {
    cells: Mutex<HashMap<Vec<u8>, Arc<OnceCell<T>>>>,
}

impl<T> Default for KeyedOnce<T> {
    fn default() -> Self {
        Self { cells: Mutex::new(HashMap::new()) }
    }
}

/// Entries kept before the cache starts over: bounds memory on huge runs
/// where every item has its own wrapped key.
const CACHE_ENTRIES: usize = 10_000;

impl<T: Clone> KeyedOnce<T> {
    async fn get_or_try<F, Fut>(&self, key: Vec<u8>, f: F) -> Result<T, KeyringError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, KeyringError>>,
    {
        let cell = {
            let mut cells = self
                .cells
                .lock()
                .map_err(|_| KeyringError::new(KeyringErrorKind::Invalid, "internal: cache poisoned"))?;
            if cells.len() >= CACHE_ENTRIES && !cells.contains_key(&key) {
                cells.retain(|_, c| !c.initialized());
            }
            Arc::clone(cells.entry(key).or_default())
        };
        cell.get_or_try_init(f).await.cloned()
    }
}

//! What happens to one item: the single place where both rotation paths
//! parse an item with envelope-core and either replace its wrapped keys
//! (rewrap) or decrypt and seal it again (reencrypt).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use envelope_core::legacy::{InnerEncoding, decrypt_legacy_record};
use envelope_core::{
    DataKey, EncryptedDataKey, EncryptionContext, Envelope, Keyring, KeyringError, KeyringErrorKind, Materials,
    ParseOptions, decode_text, encode_text, seal, unwrap_data_key,
};
use tokio::sync::OnceCell;

/// How an item was stored, so the new one is stored the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Binary,
    /// Base64 text; `newline` keeps a trailing newline of a file.
    Text {
        newline: bool,
    },
}

impl Encoding {
    fn detect(bytes: &[u8]) -> Self {
        if bytes.starts_with(&envelope_core::MAGIC) {
            Self::Binary
        } else {
            Self::Text { newline: bytes.ends_with(b"\n") }
        }
    }

    fn decode(self, bytes: &[u8]) -> Result<Vec<u8>, ItemError> {
        match self {
            Self::Binary => Ok(bytes.to_vec()),
            Self::Text { .. } => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| ItemError::input("the item is neither binary nor base64 text"))?;
                decode_text(text).map_err(|e| ItemError::input(e.to_string()))
            }
        }
    }

    fn encode(self, bytes: &[u8]) -> Vec<u8> {
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
pub(crate) enum Outcome {
    /// Already in the wanted state; nothing to write.
    Skipped,
    /// The item's replacement.
    Changed { new: Vec<u8>, kind: ChangeKind },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Rewrapped,
    Reencrypted,
}

/// Why one item failed: a stable code for the report, a message, and
/// whether trying again could help.
#[derive(Debug)]
pub(crate) struct ItemError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) transient: bool,
}

impl ItemError {
    pub(crate) fn input(message: impl Into<String>) -> Self {
        Self { code: "bad_input", message: message.into(), transient: false }
    }
}

impl From<KeyringError> for ItemError {
    fn from(e: KeyringError) -> Self {
        let (code, transient) = match e.kind() {
            KeyringErrorKind::NoMatchingKey => ("no_matching_key", false),
            KeyringErrorKind::InvalidCiphertext => ("invalid_ciphertext", false),
            KeyringErrorKind::KeyNotFound => ("key_not_found", false),
            KeyringErrorKind::AccessDenied => ("access_denied", false),
            KeyringErrorKind::KeyUnusable => ("key_unusable", false),
            KeyringErrorKind::Throttled => ("throttled", true),
            KeyringErrorKind::Unavailable => ("unavailable", true),
            KeyringErrorKind::Io => ("io", true),
            _ => ("keyring", false),
        };
        Self { code, message: e.to_string(), transient }
    }
}

impl From<envelope_core::Error> for ItemError {
    fn from(e: envelope_core::Error) -> Self {
        match e {
            envelope_core::Error::Keyring(k) => k.into(),
            envelope_core::Error::Authentication => {
                Self { code: "authentication", message: e.to_string(), transient: false }
            }
            other => Self::input(other.to_string()),
        }
    }
}

impl From<envelope_core::FormatError> for ItemError {
    fn from(e: envelope_core::FormatError) -> Self {
        Self::input(format!("malformed envelope: {e}"))
    }
}

/// Does an encrypted data key belong to a key named on the command line?
#[derive(Debug, Clone)]
pub(crate) struct KeyMatcher {
    provider_id: String,
    /// A KMS key ARN, or a local `name/v` prefix matching every version.
    key_id: String,
    prefix: bool,
}

impl KeyMatcher {
    pub(crate) fn for_keyring(keyring: &dyn Keyring) -> Self {
        let local = keyring.provider_id() == envelope_core::LOCAL_PROVIDER_ID;
        let key_id = if local {
            keyring.key_id().rsplit_once("/v").map_or(keyring.key_id(), |(name, _)| name).to_owned() + "/v"
        } else {
            keyring.key_id().to_owned()
        };
        Self { provider_id: keyring.provider_id().to_owned(), key_id, prefix: local }
    }

    pub(crate) fn matches(&self, edk: &EncryptedDataKey) -> bool {
        edk.provider_id() == self.provider_id
            && if self.prefix { edk.key_id().starts_with(&self.key_id) } else { edk.key_id() == self.key_id }
    }
}

/// One rotation's settings, shared by all workers.
pub(crate) struct Transform {
    pub(crate) mode: Mode,
    /// The key to wrap or encrypt under.
    pub(crate) destination: Box<dyn Keyring>,
    /// Keyrings that may unwrap the items' current data keys.
    pub(crate) sources: Vec<Box<dyn Keyring>>,
    pub(crate) parse: ParseOptions,
    pub(crate) verify: bool,
    /// Plan only: decide what would change, call no keyring, write nothing.
    pub(crate) dry_run: bool,
    /// One KMS call per distinct wrapped key, even with many workers.
    rewrapped: KeyedOnce<EncryptedDataKey>,
    unwrapped: KeyedOnce<Arc<DataKey>>,
    /// Per context: the current materials and how many items used them.
    materials: Mutex<HashMap<Vec<u8>, (MaterialsCell, u64)>>,
}

type MaterialsCell = Arc<OnceCell<Arc<Materials>>>;

/// What kind of rotation.
pub(crate) enum Mode {
    Rewrap {
        /// Which wrapped keys to replace; empty: all not already under the destination.
        from: Vec<KeyMatcher>,
        /// Wrapped keys to drop.
        remove: Vec<KeyMatcher>,
        /// Keep replaced keys beside the new one.
        add: bool,
    },
    /// Bare encrypted data keys (KMS ciphertext blobs).
    RewrapBare { source_context: EncryptionContext, dest_context: EncryptionContext },
    Reencrypt {
        /// New context; `None` keeps each envelope's own (legacy records get an empty one).
        context: Option<EncryptionContext>,
        /// The legacy data key, unwrapped once, and the inner encoding.
        legacy: Option<(DataKey, InnerEncoding)>,
    },
}

/// Items sealed under one data key before a fresh one is generated.
const MESSAGES_PER_DATA_KEY: u64 = 100_000;

impl Transform {
    pub(crate) fn new(
        mode: Mode,
        destination: Box<dyn Keyring>,
        sources: Vec<Box<dyn Keyring>>,
        parse: ParseOptions,
        verify: bool,
    ) -> Self {
        Self {
            mode,
            destination,
            sources,
            parse,
            verify,
            dry_run: false,
            rewrapped: KeyedOnce::default(),
            unwrapped: KeyedOnce::default(),
            materials: Mutex::new(HashMap::new()),
        }
    }

    /// Transforms one item. Pure with respect to storage: the caller writes.
    pub(crate) async fn apply(&self, item: &[u8]) -> Result<Outcome, ItemError> {
        if self.dry_run {
            return self.plan(item);
        }
        self.apply_now(item).await
    }

    /// Transforms one item in memory, even in a dry run (the preflight sample).
    pub(crate) async fn apply_now(&self, item: &[u8]) -> Result<Outcome, ItemError> {
        match &self.mode {
            Mode::Rewrap { from, remove, add } => self.rewrap_envelope(item, from, remove, *add).await,
            Mode::RewrapBare { source_context, dest_context } => {
                self.rewrap_bare(item, source_context, dest_context).await
            }
            Mode::Reencrypt { context, legacy } => self.reencrypt(item, context.as_ref(), legacy.as_ref()).await,
        }
    }

    fn is_destination(&self, edk: &EncryptedDataKey) -> bool {
        edk.provider_id() == self.destination.provider_id() && edk.key_id() == self.destination.key_id()
    }

    /// Decides, without any key, whether an item would change: the dry
    /// run's inventory. Returns `Changed` with the item itself as `new`.
    pub(crate) fn plan(&self, item: &[u8]) -> Result<Outcome, ItemError> {
        let would_change = match &self.mode {
            Mode::Rewrap { from, remove, add } => {
                let bytes = Encoding::detect(item).decode(item)?;
                let envelope = Envelope::parse(&bytes, &self.parse)?;
                self.rewrap_needed(&envelope.header().encrypted_data_keys, from, remove, *add)?
            }
            Mode::RewrapBare { .. } => true,
            Mode::Reencrypt { context, legacy } => {
                match Encoding::detect(item).decode(item).ok().filter(|b| b.starts_with(&envelope_core::MAGIC)) {
                    Some(bytes) => {
                        let envelope = Envelope::parse(&bytes, &self.parse)?;
                        let header = envelope.header();
                        !(header.encrypted_data_keys.iter().any(|e| self.is_destination(e))
                            && context.as_ref().is_none_or(|c| *c == header.context))
                    }
                    None => match legacy {
                        Some((key, inner)) => {
                            let text = std::str::from_utf8(item)
                                .map_err(|_| ItemError::input("a legacy record must be base64 text"))?;
                            decrypt_legacy_record(key, text, *inner)?;
                            true
                        }
                        None => {
                            return Err(ItemError::input(
                                "the item is not an envelope (for legacy records pass --items legacy)",
                            ));
                        }
                    },
                }
            }
        };
        let kind =
            if matches!(self.mode, Mode::Reencrypt { .. }) { ChangeKind::Reencrypted } else { ChangeKind::Rewrapped };
        Ok(if would_change { Outcome::Changed { new: item.to_vec(), kind } } else { Outcome::Skipped })
    }

    /// Whether a rewrap has work to do on these keys (idempotence: done when
    /// the destination key is present and nothing that should go is left).
    fn rewrap_needed(
        &self,
        edks: &[EncryptedDataKey],
        from: &[KeyMatcher],
        remove: &[KeyMatcher],
        add: bool,
    ) -> Result<bool, ItemError> {
        let selected =
            |e: &EncryptedDataKey| !self.is_destination(e) && (from.is_empty() || from.iter().any(|m| m.matches(e)));
        let has_destination = edks.iter().any(|e| self.is_destination(e));
        let pending_replace = !add && edks.iter().any(selected);
        let pending_remove = edks.iter().any(|e| remove.iter().any(|m| m.matches(e)) && !self.is_destination(e));
        if has_destination && !pending_replace && !pending_remove {
            return Ok(false);
        }
        if !has_destination && !edks.iter().any(selected) {
            return Err(ItemError {
                code: "no_source_key",
                message: "none of the item's wrapped keys matches --from".into(),
                transient: false,
            });
        }
        Ok(true)
    }

    async fn rewrap_envelope(
        &self,
        item: &[u8],
        from: &[KeyMatcher],
        remove: &[KeyMatcher],
        add: bool,
    ) -> Result<Outcome, ItemError> {
        let encoding = Encoding::detect(item);
        let bytes = encoding.decode(item)?;
        let envelope = Envelope::parse(&bytes, &self.parse)?;
        let header = envelope.header();
        let edks = &header.encrypted_data_keys;
        if !self.rewrap_needed(edks, from, remove, add)? {
            return Ok(Outcome::Skipped);
        }
        let selected =
            |e: &EncryptedDataKey| !self.is_destination(e) && (from.is_empty() || from.iter().any(|m| m.matches(e)));
        let removed = |e: &EncryptedDataKey| remove.iter().any(|m| m.matches(e)) && !self.is_destination(e);
        let has_destination = edks.iter().any(|e| self.is_destination(e));

        let mut new_edks: Vec<EncryptedDataKey> = Vec::with_capacity(edks.len() + 1);
        let mut wrapped_new = false;
        for edk in edks {
            if removed(edk) {
                continue;
            }
            if selected(edk) && !has_destination && !wrapped_new {
                let new = self.rewrap_one(edk, &header.context, &header.context).await?;
                if self.verify {
                    let key = self.destination.unwrap(std::slice::from_ref(&new), &header.context).await?;
                    envelope.verify_data_key(&key).map_err(|_| ItemError {
                        code: "verify_failed",
                        message: "the new wrapped key does not hold this envelope's data key".into(),
                        transient: false,
                    })?;
                }
                wrapped_new = true;
                if add {
                    new_edks.push(edk.clone());
                }
                new_edks.push(new);
            } else if selected(edk) && !add {
                // A further key of the replaced set: the new one stands for it.
                continue;
            } else {
                new_edks.push(edk.clone());
            }
        }
        if new_edks.is_empty() {
            return Err(ItemError::input("removing those keys would leave the item with no wrapped key"));
        }
        let out = envelope.with_encrypted_data_keys(&new_edks)?;
        Ok(Outcome::Changed { new: encoding.encode(&out), kind: ChangeKind::Rewrapped })
    }

    /// Re-wraps one data key under the destination: KMS to KMS with
    /// ReEncrypt (no plaintext key here), otherwise unwrap and wrap.
    async fn rewrap_one(
        &self,
        edk: &EncryptedDataKey,
        source: &EncryptionContext,
        dest: &EncryptionContext,
    ) -> Result<EncryptedDataKey, ItemError> {
        let kms_source = edk.provider_id() == crate::kms::PROVIDER_ID;
        let kms_destination = self.destination.provider_id() == crate::kms::PROVIDER_ID;
        let work = || async {
            let sources: Vec<&dyn Keyring> = self.sources.iter().map(AsRef::as_ref).collect();
            Ok(self.destination.rewrap(edk, source, dest, &sources).await?.edk)
        };
        // The cache exists to save KMS requests; local key work is cheaper than a lookup.
        if kms_source || kms_destination {
            let key = cache_key(std::slice::from_ref(edk), source, Some(dest));
            Ok(self.rewrapped.get_or_try(key, work).await?)
        } else {
            Ok(work().await?)
        }
    }

    async fn rewrap_bare(
        &self,
        item: &[u8],
        source: &EncryptionContext,
        dest: &EncryptionContext,
    ) -> Result<Outcome, ItemError> {
        let (blob, encoding) = match std::str::from_utf8(item).ok().and_then(|t| STANDARD.decode(t.trim_ascii()).ok()) {
            Some(blob) => (blob, Encoding::Text { newline: item.ends_with(b"\n") }),
            None => (item.to_vec(), Encoding::Binary),
        };
        let edk =
            EncryptedDataKey::new(crate::kms::PROVIDER_ID, "", blob).map_err(|e| ItemError::input(e.to_string()))?;
        let new = self.rewrap_one(&edk, source, dest).await?;
        if self.verify {
            // A bare key has no commitment to check it against: verify that
            // the new blob unwraps under the destination key and context.
            self.destination.unwrap(std::slice::from_ref(&new), dest).await?;
        }
        let out = match encoding {
            Encoding::Binary => new.wrapped().to_vec(),
            Encoding::Text { newline } => {
                let mut text = STANDARD.encode(new.wrapped()).into_bytes();
                if newline {
                    text.push(b'\n');
                }
                text
            }
        };
        Ok(Outcome::Changed { new: out, kind: ChangeKind::Rewrapped })
    }

    async fn reencrypt(
        &self,
        item: &[u8],
        context: Option<&EncryptionContext>,
        legacy: Option<&(DataKey, InnerEncoding)>,
    ) -> Result<Outcome, ItemError> {
        let encoding = Encoding::detect(item);
        let envelope_bytes = encoding.decode(item).ok().filter(|b| b.starts_with(&envelope_core::MAGIC));
        let (plaintext, old_context) = match (envelope_bytes, legacy) {
            (Some(bytes), _) => {
                let envelope = Envelope::parse(&bytes, &self.parse)?;
                let header = envelope.header();
                let done = header.encrypted_data_keys.iter().any(|e| self.is_destination(e))
                    && context.is_none_or(|c| *c == header.context);
                if done {
                    return Ok(Outcome::Skipped);
                }
                let key = self.unwrap_cached(&header.encrypted_data_keys, &header.context).await?;
                (envelope.open(&key)?, header.context.clone())
            }
            (None, Some((key, inner))) => {
                let text =
                    std::str::from_utf8(item).map_err(|_| ItemError::input("a legacy record must be base64 text"))?;
                let plain = decrypt_legacy_record(key, text, *inner)?;
                (zeroize::Zeroizing::new(plain.as_bytes().to_vec()), EncryptionContext::new())
            }
            (None, None) => {
                return Err(ItemError::input("the item is not an envelope (for legacy records pass --items legacy)"));
            }
        };
        let new_context = context.cloned().unwrap_or(old_context);
        let materials = self.materials_for(&new_context).await?;
        let sealed = seal(&materials, &new_context, &plaintext)?;
        if self.verify {
            let check = Envelope::parse(&sealed, &self.parse)?;
            let key = self.destination.unwrap(&check.header().encrypted_data_keys, &new_context).await?;
            if check.open(&key)?.as_slice() != plaintext.as_slice() {
                return Err(ItemError {
                    code: "verify_failed",
                    message: "the new envelope does not decrypt to the original".into(),
                    transient: false,
                });
            }
        }
        let encoding =
            if legacy.is_some() && encoding == Encoding::Binary { Encoding::Text { newline: false } } else { encoding };
        Ok(Outcome::Changed { new: encoding.encode(&sealed), kind: ChangeKind::Reencrypted })
    }

    async fn unwrap_cached(
        &self,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> Result<Arc<DataKey>, ItemError> {
        let sources: Vec<&dyn Keyring> = self.sources.iter().map(AsRef::as_ref).collect();
        Ok(self
            .unwrapped
            .get_or_try(cache_key(edks, context, None), || async {
                unwrap_data_key(&sources, edks, context).await.map(Arc::new)
            })
            .await?)
    }

    /// Encryption materials for `context`: one data key serves up to
    /// `MESSAGES_PER_DATA_KEY` items (each still gets its own message id and
    /// derived key), so a run makes few GenerateDataKey calls.
    async fn materials_for(&self, context: &EncryptionContext) -> Result<Arc<Materials>, ItemError> {
        let mut ctx_key = Vec::new();
        for (k, v) in context.iter() {
            ctx_key.extend_from_slice(&(k.len() as u64).to_be_bytes());
            ctx_key.extend_from_slice(k.as_bytes());
            ctx_key.extend_from_slice(&(v.len() as u64).to_be_bytes());
            ctx_key.extend_from_slice(v.as_bytes());
        }
        let cell = {
            let mut map = self.materials.lock().map_err(|_| ItemError::input("internal: materials cache poisoned"))?;
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

/// Bytes identifying wrapped keys under a context: the cache key.
fn cache_key(edks: &[EncryptedDataKey], source: &EncryptionContext, dest: Option<&EncryptionContext>) -> Vec<u8> {
    let mut key = Vec::new();
    for edk in edks {
        for field in [edk.provider_id().as_bytes(), edk.key_id().as_bytes(), edk.wrapped()] {
            key.extend_from_slice(&(field.len() as u64).to_be_bytes());
            key.extend_from_slice(field);
        }
    }
    for ctx in std::iter::once(source).chain(dest) {
        key.push(0xff);
        for (k, v) in ctx.iter() {
            key.extend_from_slice(&(k.len() as u64).to_be_bytes());
            key.extend_from_slice(k.as_bytes());
            key.extend_from_slice(&(v.len() as u64).to_be_bytes());
            key.extend_from_slice(v.as_bytes());
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

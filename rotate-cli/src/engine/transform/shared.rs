//! What every strategy shares: the operator's source keys, and one keyring
//! call per distinct wrapped key however many workers ask.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Keyring, KeyringError, KeyringErrorKind, Rewrapped};

use envelope_core::hazmat::{Envelope, Materials, ParseOptions};
use tokio::sync::OnceCell;

use crate::engine::error::{ItemError, ItemErrorCode};

/// Items sealed under one data key before a fresh one is generated. Each
/// still derives its own key from a random 256-bit message id (format §5).
pub(super) const MESSAGES_PER_DATA_KEY: u64 = 100_000;

/// Distinct keys a dry run remembers before its count becomes a lower bound.
const PLANNED_KEYS: usize = 1 << 20;

/// Entries kept before a cache starts over: bounds memory on huge runs
/// where every item has its own wrapped key.
const CACHE_ENTRIES: usize = 10_000;

type MaterialsCell = Arc<OnceCell<Arc<Materials>>>;

/// The keys and caches of one run, shared by its strategy and all workers.
pub struct Shared {
    /// The operator's allow-list: keyrings that may unwrap the items' current data keys.
    sources: Vec<Box<dyn Keyring>>,
    pub(super) parse: ParseOptions,
    pub(super) verify: bool,
    rewrapped: KeyedOnce<Arc<Rewrapped>>,
    unwrapped: KeyedOnce<Arc<DataKey>>,
    /// Per context: the current materials and how many items used them.
    materials: Mutex<HashMap<Vec<u8>, (MaterialsCell, u64)>>,
    /// A dry run's distinct wrapped keys (a hash of each).
    planned: Mutex<HashSet<[u8; 16]>>,
}

impl Shared {
    pub(super) fn new(sources: Vec<Box<dyn Keyring>>, parse: ParseOptions, verify: bool) -> Self {
        Self {
            sources,
            parse,
            verify,
            rewrapped: KeyedOnce::default(),
            unwrapped: KeyedOnce::default(),
            materials: Mutex::new(HashMap::new()),
            planned: Mutex::default(),
        }
    }

    pub(super) fn sources(&self) -> Vec<&dyn Keyring> {
        self.sources.iter().map(AsRef::as_ref).collect()
    }

    /// Whether any source key is remote.
    pub(super) fn sources_remote(&self) -> bool {
        self.sources.iter().any(|s| is_remote(s.as_ref()))
    }

    /// Whether `edk` is under a source key and not labelled with the destination.
    pub(super) fn is_source(&self, edk: &EncryptedDataKey, destination: &dyn Keyring) -> bool {
        !is_destination(edk, destination) && self.sources.iter().any(|s| s.can_unwrap(edk))
    }

    /// A dry run notes a wrapped key a real run would send to a keyring.
    pub(super) fn note_planned(&self, wrapped: &[u8]) {
        use sha2::Digest;
        let mut id = [0u8; 16];
        id.copy_from_slice(&sha2::Sha256::digest(wrapped)[..16]);
        if let Ok(mut keys) = self.planned.lock()
            && keys.len() < PLANNED_KEYS
        {
            keys.insert(id);
        }
    }

    /// The distinct wrapped keys a dry run noted, and whether that count is exact.
    pub(super) fn planned_keys(&self) -> (usize, bool) {
        let keys = self.planned.lock().map_or(0, |k| k.len());
        (keys, keys < PLANNED_KEYS)
    }

    /// Unwraps one wrapped key with `keyring`, once per distinct key.
    pub(super) async fn unwrap_one(
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

    /// The data key of an item this run just sealed, unwrapped by
    /// `destination` alone (`--verify`): once per distinct wrapped key, and
    /// items share one data key per context, so a run makes a call per data
    /// key rather than per item. The caller still decrypts the new item with
    /// it and compares.
    pub(super) async fn unwrap_new(
        &self,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
        destination: &dyn Keyring,
    ) -> Result<Arc<DataKey>, ItemError> {
        let Some(edk) = edks.iter().find(|e| destination.can_unwrap(e)) else {
            return Err(envelope_core::hazmat::no_matching_key(edks).into());
        };
        self.unwrap_one(edk, context, destination).await
    }

    /// Re-wraps one data key under `destination`; the destination keyring
    /// decides how (KMS ReEncrypt, or unwrap with the sources and wrap).
    pub(super) async fn rewrap_one(
        &self,
        edk: &EncryptedDataKey,
        source: &EncryptionContext,
        dest: &EncryptionContext,
        destination: &dyn Keyring,
    ) -> Result<Arc<Rewrapped>, ItemError> {
        let work = || async {
            let sources = self.sources();
            destination.rewrap(edk, source, dest, &sources).await.map(Arc::new)
        };
        // The cache saves remote calls; a local key's work is cheaper than a lookup.
        if !is_remote(destination) && edk.provider_id() == envelope_core::LOCAL_PROVIDER_ID {
            Ok(work().await?)
        } else {
            Ok(self.rewrapped.get_or_try(cache_key(std::slice::from_ref(edk), source, Some(dest)), work).await?)
        }
    }

    /// The data key of an envelope: each wrapped key an allowed keyring
    /// accepts, one at a time, until one passes the commitment check, so a
    /// planted wrapped key cannot block the item.
    pub(super) async fn unwrap_committed(
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
        Err(last.unwrap_or_else(|| envelope_core::hazmat::no_matching_key(&header.encrypted_data_keys).into()))
    }

    /// Whether the item opens under `destination` alone (checked against its
    /// commitment): the proof a re-encryption may skip it.
    pub(super) async fn opens_under(&self, envelope: &Envelope<'_>, destination: &dyn Keyring) -> bool {
        self.unwrap_committed(envelope, &[destination]).await.is_ok()
    }

    /// Encryption materials for `context` under `destination`: one data key
    /// serves up to `MESSAGES_PER_DATA_KEY` items, so a run makes few
    /// GenerateDataKey calls.
    pub(super) async fn materials_for(
        &self,
        context: &EncryptionContext,
        destination: &dyn Keyring,
    ) -> Result<Arc<Materials>, ItemError> {
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
                let (data_key, edk) = destination.generate(context).await?;
                Ok::<_, KeyringError>(Arc::new(Materials { data_key, encrypted_data_keys: vec![edk] }))
            })
            .await?;
        Ok(Arc::clone(materials))
    }
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

/// `base` with the row's pairs added; a pair that contradicts `base` is an error.
pub(super) fn with_row(base: &EncryptionContext, row: &EncryptionContext) -> Result<EncryptionContext, ItemError> {
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

/// The error for an item no strategy input format claims.
pub(super) fn not_an_envelope() -> ItemError {
    ItemError::input(
        "the item is not an envelope (for legacy records pass --items legacy, for AWS Encryption SDK messages \
         --items esdk)",
    )
}

/// Whether `edk` is labelled with `destination`'s key (a label, not proof).
pub(super) fn is_destination(edk: &EncryptedDataKey, destination: &dyn Keyring) -> bool {
    edk.provider_id() == destination.provider_id() && edk.key_id() == destination.key_id()
}

/// `provider:key id` of a keyring, as reports name it.
pub(super) fn label(keyring: &dyn Keyring) -> String {
    format!("{}:{}", keyring.provider_id(), keyring.key_id())
}

/// "call" or "calls".
pub(super) fn calls(n: usize) -> &'static str {
    if n == 1 { "call" } else { "calls" }
}

/// Whether a keyring is remote (costs a request per call); local keys cost none.
pub(super) fn is_remote(keyring: &dyn Keyring) -> bool {
    keyring.provider_id() != envelope_core::LOCAL_PROVIDER_ID
}

/// The forecast of a rewrap: one call per distinct wrapped key (remote keys only).
pub(super) fn rewrap_calls(
    destination: &dyn Keyring,
    shared: &Shared,
    keys: usize,
    bound: &str,
    items: u64,
) -> Vec<String> {
    if !(is_remote(destination) || shared.sources_remote()) {
        return Vec::new();
    }
    let verify = if shared.verify && keys > 0 {
        format!(
            ", and {keys} unwrap {} under the destination to --verify (kms:Decrypt for a KMS key), each bringing that \
             data key into this process's memory, which a KMS-to-KMS rewrap without --verify never does",
            calls(keys)
        )
    } else {
        String::new()
    };
    vec![format!("{bound}{keys} re-wrap {} (one per distinct wrapped key, {items} items){verify}", calls(keys))]
}

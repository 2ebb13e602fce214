//! What happens to one item: the single place where every rotation parses
//! an item with envelope-core and either replaces its wrapped keys
//! (rewrap) or decrypts and seals it again (reencrypt).
//!
//! Each kind of rotation is one [`Strategy`] type ([`Rewrap`],
//! [`RewrapBare`], [`Reencrypt`], [`ToKeyset`]); [`Transform`] runs one of
//! them with the state every strategy shares ([`Shared`]: the operator's
//! source keys and one keyring call per distinct wrapped key).
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

mod bare;
mod keyset;
mod reencrypt;
mod rewrap;
mod shared;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Keyring, Materials, ParseOptions};

pub use self::bare::RewrapBare;
pub use self::keyset::ToKeyset;
pub use self::reencrypt::Reencrypt;
pub use self::rewrap::Rewrap;
pub use self::shared::Shared;
use super::Item;
use super::error::{ItemError, ItemErrorCode};
pub use super::format::Encoding;

/// A strategy's future: boxed, so strategies are objects the engine picks at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// One kind of rotation: what it does to an item, and what a dry run of it
/// would cost. The engine runs any strategy the same way.
pub trait Strategy: Send + Sync {
    /// Where items end up, as the journal and reports name it (`provider:key id`).
    fn destination_label(&self) -> String;

    /// The keyring items are wrapped under, when the strategy has one.
    fn destination(&self) -> Option<&dyn Keyring>;

    /// What a change is called in a dry run's forecast.
    fn planned_kind(&self) -> ChangeKind;

    /// Whether `item` would change, decided without any key (a dry run);
    /// notes in `shared` the wrapped keys a real run would send to a keyring.
    ///
    /// # Errors
    /// Why the item cannot be transformed.
    fn plan(&self, shared: &Shared, item: &[u8]) -> Result<bool, ItemError>;

    /// Transforms one whole item; `row` holds the pairs binding it to where
    /// it is stored (see [`Transform::apply`]).
    fn apply<'a>(
        &'a self,
        shared: &'a Shared,
        item: &'a [u8],
        row: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<Outcome, ItemError>>;

    /// Transforms an item of which only the header was read (a framed
    /// envelope too large to hold); by default, as a whole item.
    fn apply_header<'a>(
        &'a self,
        shared: &'a Shared,
        header: &'a [u8],
        row: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<Outcome, ItemError>> {
        self.apply(shared, header, row)
    }

    /// Checks a copy this strategy made of `original` (a shadow column's value).
    fn check_copy<'a>(
        &'a self,
        shared: &'a Shared,
        original: &'a Item,
        copy: &'a [u8],
    ) -> BoxFuture<'a, Result<Proof, ItemError>>;

    /// The keyring calls a real run would make, as sentences, after a dry
    /// run found `items` to change and `keys` distinct wrapped keys
    /// (`bound` is "at least " when that count stopped early).
    fn planned_calls(&self, shared: &Shared, keys: usize, bound: &str, items: u64) -> Vec<String>;
}

/// One rotation's settings, shared by all workers: a strategy and its keys.
pub struct Transform {
    strategy: Box<dyn Strategy>,
    shared: Shared,
    dry_run: bool,
    destination_label: String,
}

impl Transform {
    /// A transform running `strategy`, allowing `sources` to unwrap.
    pub fn new(
        strategy: impl Strategy + 'static,
        sources: Vec<Box<dyn Keyring>>,
        parse: ParseOptions,
        verify: bool,
        dry_run: bool,
    ) -> Self {
        let destination_label = strategy.destination_label();
        Self { strategy: Box::new(strategy), shared: Shared::new(sources, parse, verify), dry_run, destination_label }
    }

    /// After a dry run that found `items` to change: the keyring calls the
    /// real run would make, as sentences for the plan (remote providers
    /// only; local keys cost none).
    pub fn planned_calls(&self, items: u64) -> Vec<String> {
        let (keys, complete) = self.shared.planned_keys();
        let bound = if complete { "" } else { "at least " };
        let mut calls = self.strategy.planned_calls(&self.shared, keys, bound, items);
        if calls.is_empty() {
            calls.push("none: local keys only".into());
        }
        calls
    }

    /// Where items end up (`provider:key id`), for the journal and reports.
    pub fn destination_label(&self) -> &str {
        &self.destination_label
    }

    /// The destination keyring, when the strategy wraps under one.
    pub fn destination(&self) -> Option<&dyn Keyring> {
        self.strategy.destination()
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
            let changes = self.strategy.plan(&self.shared, &item.bytes)?;
            return Ok(if changes {
                Outcome::Changed {
                    new: item.bytes.clone(),
                    kind: self.strategy.planned_kind(),
                    old_edks: None,
                    job: None,
                }
            } else {
                Outcome::Skipped
            });
        }
        if item.header_only {
            return self.strategy.apply_header(&self.shared, &item.bytes, &item.context).await;
        }
        self.apply_now(&item.bytes, &item.context).await
    }

    /// Transforms one item in memory even in a dry run (the dry run's sample).
    ///
    /// # Errors
    /// Why the item cannot be transformed.
    pub async fn apply_now(&self, item: &[u8], row: &EncryptionContext) -> Result<Outcome, ItemError> {
        self.strategy.apply(&self.shared, item, row).await
    }

    /// Checks a copy this transform made of `original` (a shadow column's
    /// value): the destination opens it, and it holds what the original
    /// holds. A re-wrapped copy is proven without decrypting any body where
    /// the format allows; anything else is decrypted on both sides and compared.
    ///
    /// # Errors
    /// `verify_failed` when the copy differs, or why either side cannot be opened.
    pub async fn check_copy(&self, original: &Item, copy: &[u8]) -> Result<Proof, ItemError> {
        self.strategy.check_copy(&self.shared, original, copy).await
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

/// The error for an item no strategy input format claims.
fn not_an_envelope() -> ItemError {
    ItemError::input("the item is not an envelope (for legacy records pass --items legacy)")
}

/// Whether `edk` is labelled with `destination`'s key (a label, not proof).
fn is_destination(edk: &EncryptedDataKey, destination: &dyn Keyring) -> bool {
    edk.provider_id() == destination.provider_id() && edk.key_id() == destination.key_id()
}

/// `provider:key id` of a keyring, as reports name it.
fn label(keyring: &dyn Keyring) -> String {
    format!("{}:{}", keyring.provider_id(), keyring.key_id())
}

/// "call" or "calls".
fn calls(n: usize) -> &'static str {
    if n == 1 { "call" } else { "calls" }
}

/// Whether a keyring is remote (costs a request per call); local keys cost none.
fn is_remote(keyring: &dyn Keyring) -> bool {
    keyring.provider_id() != envelope_core::LOCAL_PROVIDER_ID
}

/// The forecast of a rewrap: one call per distinct wrapped key (remote keys only).
fn rewrap_calls(destination: &dyn Keyring, shared: &Shared, keys: usize, bound: &str, items: u64) -> Vec<String> {
    if !(is_remote(destination) || shared.sources_remote()) {
        return Vec::new();
    }
    let verify = if shared.verify && keys > 0 { format!(", and {keys} more to --verify") } else { String::new() };
    vec![format!("{bound}{keys} re-wrap {} (one per distinct wrapped key, {items} items){verify}", calls(keys))]
}

//! The strategy seam, and the transform that runs one strategy for a whole run.

use std::future::Future;
use std::pin::Pin;

use envelope_core::{EncryptionContext, Keyring};

use envelope_core::hazmat::ParseOptions;

use super::outcome::{ChangeKind, Outcome, Proof};
use super::shared::Shared;
use crate::engine::error::ItemError;
use crate::engine::item::Item;

/// A strategy's future: boxed, so strategies are objects the engine picks at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

    /// Whether the run checks what it wrote (`--verify`).
    pub fn verifies(&self) -> bool {
        self.shared.verify
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

    /// Transforms one item for real even in a dry run (the dry run's
    /// sample): with its row's context, and as the real run would if only
    /// its header was read.
    ///
    /// # Errors
    /// Why the item cannot be transformed.
    pub async fn apply_sample(&self, item: &Item) -> Result<Outcome, ItemError> {
        if item.bytes.is_empty() {
            return Ok(Outcome::Empty);
        }
        if item.header_only {
            return self.strategy.apply_header(&self.shared, &item.bytes, &item.context).await;
        }
        self.apply_now(&item.bytes, &item.context).await
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

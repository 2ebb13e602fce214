//! What the engine moves: units of a target, and the items inside them.

use envelope_core::EncryptionContext;

use super::error::ItemError;
use super::transform::Outcome;

/// One item inside a unit: its name for reports, its bytes, and what became of it.
#[derive(Debug)]
pub struct Item {
    /// How reports name it (a path, `record 12 /ssn`).
    pub name: String,
    /// The item as read.
    pub bytes: Vec<u8>,
    /// What the transform made of it; `None` until then (and in scans).
    pub result: Option<Result<Outcome, ItemError>>,
    /// Attempts made.
    pub attempts: u32,
    /// Context pairs binding the item to where it is stored (a row's tenant id); usually empty.
    pub context: EncryptionContext,
    /// `bytes` is only the header of a framed envelope too large to hold:
    /// the sink streams the body (re-wraps copy it, re-encryptions re-seal it).
    pub header_only: bool,
}

impl Item {
    /// An item named `name` holding `bytes`.
    pub fn new(name: String, bytes: Vec<u8>) -> Self {
        Self { name, bytes, result: None, attempts: 0, context: EncryptionContext::new(), header_only: false }
    }
}

/// A unit of a target: what is read and written as a whole.
#[derive(Debug)]
pub struct Unit<P> {
    /// Stable id: selection, sharding and the journal key on it.
    pub id: String,
    /// Inside `--sample`, `--shard` and `--limit`, and not done before.
    pub selected: bool,
    /// The items, filled by [`Source::load`].
    pub items: Vec<Item>,
    /// A failure of the unit as a whole (unreadable, changed under the run).
    pub error: Option<ItemError>,
    /// What the target needs to know about it.
    pub payload: P,
}

impl<P> Unit<P> {
    /// A unit with no items loaded yet.
    pub fn new(id: String, payload: P) -> Self {
        Self { id, selected: true, items: Vec::new(), error: None, payload }
    }

    /// Whether any item changed.
    pub fn changed(&self) -> bool {
        self.items.iter().any(|i| matches!(i.result, Some(Ok(Outcome::Changed { .. }))))
    }
}

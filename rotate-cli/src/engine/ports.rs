//! The engine's seams: where units come from ([`Source`]), where results
//! go ([`Sink`]), and who watches ([`Progress`]).

use std::future::Future;
use std::sync::Arc;

use super::error::{Error, ItemError};
use super::item::{Item, Unit};
use super::journal::{Checkpoint, Journal};
use super::report::Counts;
use super::transform::ChangeKind;

/// Where units come from: a directory walk, a record stream, a bucket listing.
pub trait Source: Send {
    /// What a unit of this target carries.
    type Payload: Send + 'static;
    /// Units per worker task: 1 for costly units (files), more for cheap ones (records).
    const BATCH: usize = 1;

    /// The next unit, in a stable order; its items are loaded later, by a worker.
    ///
    /// # Errors
    /// A failure that stops the run (the inventory cannot be read).
    fn next_unit(&mut self) -> Result<Option<Unit<Self::Payload>>, Error>;

    /// Continues after a checkpoint of an earlier run: by default skips the
    /// units it counts; a target with its own position (a table's last key)
    /// starts after that instead.
    ///
    /// # Errors
    /// As [`Source::next_unit`].
    fn resume(&mut self, checkpoint: &Checkpoint) -> Result<(), Error> {
        for _ in 0..checkpoint.records {
            if self.next_unit()?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// How much there is, for progress: units, when cheap to know.
    fn total(&self) -> Option<u64> {
        None
    }

    /// For progress where units are not counted ahead (streams): the bytes
    /// read so far and the input's size, when known.
    fn bytes(&self) -> Option<(u64, u64)> {
        None
    }

    /// Reads a unit's items; runs concurrently in the workers.
    fn load(unit: &mut Unit<Self::Payload>) -> impl Future<Output = Result<(), ItemError>> + Send;
}

/// A changed item that an ordered sink could not store after all (a row an
/// application changed before the batch's UPDATE): counted as failed.
#[derive(Debug)]
pub struct Rejected {
    /// How reports name the item.
    pub item: String,
    /// The change that was not stored.
    pub kind: ChangeKind,
    /// Why.
    pub error: ItemError,
}

/// Where results go.
pub trait Sink<P>: Send + Sync + 'static {
    /// Called once before the first unit, with the journal (none in dry runs
    /// and scans) and the checkpoint a resumed run starts from.
    ///
    /// # Errors
    /// A failure that stops the run before anything is written.
    fn start(&self, journal: Option<Arc<Journal>>, checkpoint: Option<&Checkpoint>) -> Result<(), Error>;

    /// Called concurrently once a unit's items are transformed: durable
    /// writes that need no order. Failing fails the unit's changed items.
    fn write(&self, unit: &mut Unit<P>) -> impl Future<Output = Result<(), ItemError>> + Send;

    /// Called in source order for every unit, selected or not, with the
    /// counts so far: ordered writes (which may be batched) and checkpoints.
    /// Returns the changes a batch could not store after all.
    ///
    /// # Errors
    /// A failure that stops the run.
    fn commit(&self, unit: Unit<P>, counts: &Counts) -> Result<Vec<Rejected>, Error>;

    /// Called at the end; `complete` when the whole inventory was handled.
    /// Returns the changes a last batch could not store.
    ///
    /// # Errors
    /// A failure making the output final.
    fn finish(&self, complete: bool, counts: &Counts) -> Result<Vec<Rejected>, Error>;
}

/// Progress reports, for a bar or a log: the engine never draws.
pub trait Progress: Send + Sync {
    /// The number of units, when known.
    fn total(&self, _units: u64) {}
    /// `units` more were handled, `failed` of their items failed so far in all.
    fn advance(&self, _units: u64, _failed: u64) {}
    /// Bytes of the input read so far, of `total` (streams).
    fn bytes(&self, _read: u64, _total: u64) {}
    /// One selected item's result, as counted (audit records, `--metadata-output`).
    fn item(&self, _item: &Item) {}
    /// A selected unit that failed as a whole, with no item results.
    fn unit_failed(&self, _id: &str, _error: &ItemError) {}
    /// The run ended.
    fn finish(&self) {}
}

/// No progress reports.
#[derive(Debug, Default)]
pub struct Silent;
impl Progress for Silent {}

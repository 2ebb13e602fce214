//! Batches of changed rows: journaled, then updated conditionally.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use super::db::{DbThread, wait};
use super::spec::{Cell, Db, Group, KeyValue, RowUnit, TableSpec, Update, key_to_string};
use crate::engine::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use crate::engine::item::Unit;
use crate::engine::journal::{self, Checkpoint, Entry, Journal};
use crate::engine::ports::{Rejected, Sink};
use crate::engine::report::Counts;
use crate::engine::transform::{ChangeKind, Outcome};

/// A change waiting for its batch's transaction.
struct Pending {
    item: String,
    key: Vec<KeyValue>,
    column: usize,
    old: Cell,
    new: Cell,
    kind: ChangeKind,
}

/// The batch being gathered, and the previous one while it is stored.
#[derive(Default)]
struct Batch {
    changes: Vec<Pending>,
    units: usize,
    records: u64,
    last: Option<Vec<KeyValue>>,
    /// The previous batch, being journaled and written on the database thread.
    storing: Option<mpsc::Receiver<Result<Vec<Rejected>, Error>>>,
}

/// Writes changed rows back in batches, journal first, each row only if unchanged since read.
pub struct TableSink {
    spec: Arc<TableSpec>,
    db: OnceLock<DbThread>,
    journal: OnceLock<Arc<Journal>>,
    batch: Mutex<Batch>,
}

impl TableSink {
    /// A sink for `spec`; it connects when the run starts.
    pub fn new(spec: TableSpec) -> Self {
        Self {
            spec: Arc::new(spec),
            db: OnceLock::new(),
            journal: OnceLock::new(),
            batch: Mutex::new(Batch::default()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Batch>, Error> {
        self.batch.lock().map_err(|_| Error::new(ErrorKind::Io, "internal error: batch lock poisoned"))
    }

    /// Hands the gathered batch to the database thread and returns what the
    /// previous batch rejected. One batch is stored while the engine
    /// transforms the next, so the ordered loop never waits on a sync or a
    /// transaction unless the database falls a whole batch behind.
    fn flush(&self, batch: &mut Batch, counts: &Counts) -> Result<Vec<Rejected>, Error> {
        let earlier = Self::settle(batch)?;
        if batch.units == 0 {
            return Ok(earlier);
        }
        let journal = self.journal.get().ok_or_else(|| Error::new(ErrorKind::Io, "internal error: no journal"))?;
        let db = self.db.get().ok_or_else(|| Error::new(ErrorKind::Io, "internal error: not connected"))?;
        // The engine learns of `earlier` only when this returns; the checkpoint must already count it.
        let mut counts = *counts;
        for r in &earlier {
            counts.unstored(r.kind);
        }
        let changes = std::mem::take(&mut batch.changes);
        // Encoded here, on the engine's ordering thread, which has time to spare; the database thread only writes.
        let entries: Vec<Entry> = changes.iter().map(|c| row_entry(&self.spec, c)).collect();
        let store = Store {
            spec: Arc::clone(&self.spec),
            journal: Arc::clone(journal),
            rows: journal::Encoded::new(&entries)?,
            changes,
            at: Checkpoint {
                records: batch.records,
                output_bytes: 0,
                position: batch.last.as_deref().map(key_to_string),
            },
            counts,
        };
        batch.units = 0;
        batch.storing = Some(db.send(move |db| store.run(db))?);
        Ok(earlier)
    }

    /// Waits for the batch being stored, if any.
    fn settle(batch: &mut Batch) -> Result<Vec<Rejected>, Error> {
        match batch.storing.take() {
            Some(answer) => wait(&answer)?,
            None => Ok(Vec::new()),
        }
    }
}

/// One batch on its way to the database: journal, one transaction, rejected rows, checkpoint.
struct Store {
    spec: Arc<TableSpec>,
    journal: Arc<Journal>,
    /// The changes' journal entries, encoded.
    rows: journal::Encoded,
    changes: Vec<Pending>,
    at: Checkpoint,
    counts: Counts,
}

impl Store {
    fn run(self, db: &mut dyn Db) -> Result<Vec<Rejected>, Error> {
        let Self { spec, journal, rows, changes, at, mut counts } = self;
        let mut rejected = Vec::new();
        if !changes.is_empty() {
            journal.append_encoded(&rows, true)?;
            let mut groups: Vec<Group> = Vec::new();
            let mut index: HashMap<usize, usize> = HashMap::new();
            let mut order = Vec::with_capacity(changes.len());
            let mut names = Vec::with_capacity(changes.len());
            for c in changes {
                let g = *index.entry(c.column).or_insert_with(|| {
                    let column = &spec.columns[c.column];
                    groups.push(Group {
                        set: spec.into.clone().unwrap_or_else(|| column.clone()),
                        guard: column.clone(),
                        set_must_be_null: spec.into.is_some(),
                        rows: Vec::new(),
                    });
                    groups.len() - 1
                });
                order.push((g, groups[g].rows.len()));
                groups[g].rows.push(Update { key: c.key, expect: c.old, value: c.new });
                names.push((c.item, c.kind));
            }
            let applied = db.update(&groups).map_err(|e| {
                if e.hint.is_some() {
                    return e;
                }
                e.hint("the rows before this batch are done and checkpointed: rerun the same command with --resume")
            })?;
            for ((item, kind), (g, r)) in names.into_iter().zip(order) {
                if !applied.get(g).and_then(|rows| rows.get(r)).copied().unwrap_or(false) {
                    journal.append(&Entry::Abandoned { item: item.clone() }, false)?;
                    rejected.push(Rejected {
                        item,
                        kind,
                        error: ItemError::new(
                            ItemErrorCode::ChangedDuringRotation,
                            if spec.into.is_some() {
                                "the row changed after it was read (or its shadow column was filled); left as it is"
                            } else {
                                "the row changed after it was read; the other writer's value was kept"
                            },
                        ),
                    });
                }
            }
        }
        for r in &rejected {
            counts.unstored(r.kind);
        }
        journal.append(&Entry::Checkpoint { at, counts }, true)?;
        Ok(rejected)
    }
}

fn row_entry(spec: &TableSpec, c: &Pending) -> Entry {
    let column = spec.into.clone().unwrap_or_else(|| spec.columns[c.column].clone());
    // A shadow column's prior value is NULL (filled ones are skipped).
    let old = if spec.into.is_some() { &Cell::Null } else { &c.old };
    Entry::Row {
        item: c.item.clone(),
        key: key_to_string(&c.key),
        column,
        old_sha256: (*old != Cell::Null).then(|| journal::sha256(old.bytes())),
        new_sha256: journal::sha256(c.new.bytes()),
        old_b64: (*old != Cell::Null).then(|| journal::b64(old.bytes())),
        binary: matches!(old, Cell::Blob(_)),
        legacy: c.kind == ChangeKind::FromLegacy,
    }
}

/// The new value in the form its column stores: binary envelopes in
/// binary columns (a legacy record kept as bytes becomes a binary
/// envelope), text in text columns.
pub(crate) fn fit(old: &Cell, new: Vec<u8>, kind: ChangeKind) -> Result<Cell, ItemError> {
    match old {
        Cell::Blob(_) if kind == ChangeKind::FromLegacy && !new.starts_with(&envelope_core::hazmat::MAGIC) => {
            let text = std::str::from_utf8(&new).map_err(|_| ItemError::input("the new envelope is not text"))?;
            let bytes = envelope_core::hazmat::decode_text(text).map_err(|e| ItemError::input(e.to_string()))?;
            Ok(Cell::Blob(bytes))
        }
        Cell::Blob(_) => Ok(Cell::Blob(new)),
        _ if std::str::from_utf8(&new).is_err() => {
            Err(ItemError::input("a binary value cannot go into a text column; use a blob or bytea column"))
        }
        _ => Ok(Cell::Text(new)),
    }
}

impl Sink<RowUnit> for TableSink {
    fn start(&self, journal: Option<Arc<Journal>>, _checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        let journal = journal.ok_or_else(|| Error::usage("writing a table needs a journal"))?;
        let _ = self.journal.set(journal);
        let db = DbThread::start(TableSpec::clone(&self.spec))?;
        let written = self.spec.into.clone().map_or_else(|| self.spec.columns.clone(), |c| vec![c]);
        db.call(move |db| db.check_update(&written))??;
        let _ = self.db.set(db);
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<RowUnit>) -> Result<(), ItemError> {
        let cells = &unit.payload.row.cells;
        for (item, old) in unit.items.iter_mut().zip(cells) {
            if let Some(Ok(Outcome::Changed { new, kind, .. })) = &mut item.result {
                let kind = *kind;
                match fit(old, std::mem::take(new), kind) {
                    Ok(Cell::Text(b) | Cell::Blob(b)) => *new = b,
                    Ok(Cell::Null) => {}
                    Err(e) => item.result = Some(Err(e)),
                }
            }
        }
        Ok(())
    }

    fn commit(&self, unit: Unit<RowUnit>, counts: &Counts) -> Result<Vec<Rejected>, Error> {
        let mut batch = self.lock()?;
        let Unit { items, payload, .. } = unit;
        for (column, (item, old)) in items.into_iter().zip(payload.row.cells).enumerate() {
            if let Some(Ok(Outcome::Changed { new, kind, .. })) = item.result {
                let new = match &old {
                    Cell::Blob(_) => Cell::Blob(new),
                    _ => Cell::Text(new),
                };
                batch.changes.push(Pending { item: item.name, key: payload.row.key.clone(), column, old, new, kind });
            }
        }
        batch.units += 1;
        batch.records += 1;
        batch.last = Some(payload.row.key);
        if batch.units >= self.spec.batch_size || batch.changes.len() >= self.spec.batch_size {
            return self.flush(&mut batch, counts);
        }
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, counts: &Counts) -> Result<Vec<Rejected>, Error> {
        let mut batch = self.lock()?;
        if self.db.get().is_none() {
            return Ok(Vec::new());
        }
        let mut rejected = self.flush(&mut batch, counts)?;
        rejected.extend(Self::settle(&mut batch)?);
        Ok(rejected)
    }
}

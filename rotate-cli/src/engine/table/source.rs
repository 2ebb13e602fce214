//! The rows of a table, a page at a time.

use std::sync::Arc;
use std::sync::mpsc;

use envelope_core::EncryptionContext;

use super::db::{DbThread, wait};
use super::spec::{Cell, KeyValue, Names, Row, RowUnit, TableSpec, key_from_string};
use crate::engine::error::{Error, ItemError, ItemErrorCode};
use crate::engine::item::{Item, Unit};
use crate::engine::journal::Checkpoint;
use crate::engine::ports::Source;
use crate::engine::transform::Outcome;

/// The rows of a table, in key order, a page at a time.
pub struct TableSource {
    db: DbThread,
    names: Arc<Names>,
    batch: usize,
    page: std::vec::IntoIter<Row>,
    /// The next page, asked for while this one is handed out.
    next: Option<mpsc::Receiver<Result<Vec<Row>, Error>>>,
    done: bool,
    total: Option<u64>,
}

impl TableSource {
    /// Connects and checks the table: it exists, has the columns, and the
    /// id columns are unique (a primary key or unique index on exactly
    /// them, or no duplicate in the data).
    ///
    /// # Errors
    /// A usage error naming what is wrong (listing the real tables or
    /// columns), or the database's own error (connection, permission).
    pub fn open(spec: &TableSpec) -> Result<Self, Error> {
        spec.check()?;
        let db = DbThread::start(spec.clone())?;
        let names = Arc::new(Names {
            table: spec.table.clone(),
            ids: spec.ids.clone(),
            columns: spec.columns.clone(),
            context: spec.context_columns.clone(),
        });
        let mut source = Self {
            db,
            names,
            batch: spec.batch_size,
            page: Vec::new().into_iter(),
            next: None,
            done: false,
            total: None,
        };
        source.ask(None)?;
        Ok(source)
    }

    /// Counts the rows first, for a progress bar with a total.
    ///
    /// # Errors
    /// The database's error.
    pub fn with_total(mut self) -> Result<Self, Error> {
        self.total = self.db.call(|db| db.count())?;
        Ok(self)
    }

    fn ask(&mut self, after: Option<Vec<KeyValue>>) -> Result<(), Error> {
        let limit = self.batch;
        self.next = Some(self.db.send(move |db| db.page(after.as_deref(), limit))?);
        Ok(())
    }

    fn unit(&self, row: Row) -> Unit<RowUnit> {
        let id = row_id(&self.names, &row.key);
        Unit::new(id, RowUnit { row, names: Arc::clone(&self.names) })
    }
}

/// How reports name a row: `users id=42`.
pub(super) fn row_id(names: &Names, key: &[KeyValue]) -> String {
    let parts: Vec<String> = names.ids.iter().zip(key).map(|(n, v)| format!("{n}={}", v.display())).collect();
    format!("{} {}", names.table, parts.join(","))
}

impl Source for TableSource {
    type Payload = RowUnit;
    const BATCH: usize = 128;

    fn next_unit(&mut self) -> Result<Option<Unit<RowUnit>>, Error> {
        loop {
            if let Some(row) = self.page.next() {
                return Ok(Some(self.unit(row)));
            }
            if self.done {
                return Ok(None);
            }
            let Some(next) = self.next.take() else {
                return Ok(None);
            };
            let rows = wait(&next)??;
            if rows.len() < self.batch {
                self.done = true;
            } else if let Some(last) = rows.last() {
                // Prefetch: the next page is read while this one is transformed.
                self.ask(Some(last.key.clone()))?;
            }
            self.page = rows.into_iter();
        }
    }

    fn resume(&mut self, checkpoint: &Checkpoint) -> Result<(), Error> {
        let Some(position) = &checkpoint.position else {
            return Ok(());
        };
        // Forget the first page asked for at open; start after the checkpoint.
        if let Some(first) = self.next.take() {
            let _ = wait(&first);
        }
        self.page = Vec::new().into_iter();
        self.done = false;
        self.ask(Some(key_from_string(position)?))
    }

    fn total(&self) -> Option<u64> {
        self.total
    }

    async fn load(unit: &mut Unit<RowUnit>) -> Result<(), ItemError> {
        let RowUnit { row, names } = &unit.payload;
        let mut context = EncryptionContext::new();
        let mut context_error = None;
        for (name, value) in names.context.iter().zip(&row.context) {
            match value {
                Some(v) => {
                    if let Err(e) = context.insert(name.clone(), v.clone()) {
                        context_error = Some(format!("context column {name}: {e}"));
                    }
                }
                None => {
                    context_error = Some(format!("context column {name} is NULL: the item cannot be bound to its row"))
                }
            }
        }
        unit.items = names
            .columns
            .iter()
            .zip(&row.cells)
            .map(|(column, cell)| {
                let mut item = Item::new(format!("{} {column}", unit.id), cell.bytes().to_vec());
                item.context = context.clone();
                if row.shadow != Cell::Null {
                    item.result = Some(Ok(Outcome::Skipped));
                } else if let Some(message) = &context_error
                    && *cell != Cell::Null
                {
                    item.result = Some(Err(ItemError::new(ItemErrorCode::MissingField, message.clone())));
                }
                item
            })
            .collect();
        Ok(())
    }
}

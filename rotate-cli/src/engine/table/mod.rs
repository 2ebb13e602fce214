//! Database tables: encrypted columns rotated in place (or into a shadow
//! column), in SQLite or PostgreSQL.
//!
//! Reading is keyset pagination on the id columns (`WHERE (ids) > (last
//! key) ORDER BY ids LIMIT n`, never OFFSET), one page prefetched while the
//! previous one is transformed. Writing is per batch of `--batch-size`
//! rows: the journal entries holding each changed row's original are
//! appended and synced first, then one transaction updates the batch, each
//! row only if its column still holds the value that was read, so an
//! application writing the same row wins and the row is reported as
//! `changed_during_rotation`. On PostgreSQL a batch is one statement (the
//! rows travel as arrays and are joined with `unnest`): one round trip per
//! batch and column. After the commit, a checkpoint with the last key lets
//! `--resume` continue after it. A batch is journaled and stored on the
//! database thread while the engine transforms the next one.
//!
//! The drivers are synchronous from the engine's point of view: every
//! connection lives on its own thread ([`DbThread`]), so neither SQLite's
//! blocking calls nor PostgreSQL's own small runtime ever run on the
//! engine's async workers.

mod postgres;
mod sqlite;
mod verify;

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use envelope_core::EncryptionContext;
use serde_json::Value;

use super::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use super::journal::{self, Checkpoint, Entry, Journal};
use super::report::{Counts, Summary};
use super::transform::{ChangeKind, Outcome};
use super::{Item, Rejected, Sink, Source, Unit};

pub use self::postgres::redact_url;
pub use self::verify::{CopyCheck, CopyTally};

/// Rows per transaction and per page unless told otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// What to rotate: a table's columns, how rows are identified, where new
/// values go.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// `sqlite:PATH`, or `postgres://...` / `postgresql://...` (the `PG*`
    /// environment variables and the password file fill what it leaves out).
    pub url: String,
    /// The table, optionally `SCHEMA.TABLE`.
    pub table: String,
    /// The columns holding the items.
    pub columns: Vec<String>,
    /// The columns that identify a row (a primary key or unique index on exactly these).
    pub ids: Vec<String>,
    /// Write new values into this column and leave the originals alone.
    pub into: Option<String>,
    /// Columns whose values bind each item to its row in the encryption context.
    pub context_columns: Vec<String>,
    /// Rows per page and per transaction.
    pub batch_size: usize,
}

impl TableSpec {
    /// Checks what can be checked without the database.
    ///
    /// # Errors
    /// A usage error naming the problem.
    pub fn check(&self) -> Result<(), Error> {
        if self.columns.is_empty() {
            return Err(Error::usage("a table target needs at least one --column"));
        }
        if self.ids.is_empty() {
            return Err(Error::usage("a table target needs --id COLUMN[,COLUMN...]: the columns that identify a row"));
        }
        if self.into.is_some() && self.columns.len() != 1 {
            return Err(Error::usage("--into takes exactly one --column: the one whose shadow it is"));
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return Err(Error::usage("--batch-size is from 1 to 100000"));
        }
        let mut seen = HashSet::new();
        for name in self.columns.iter().chain(&self.into) {
            if !seen.insert(name.as_str()) {
                return Err(Error::usage(format!("column {name:?} is named twice")));
            }
            if self.ids.contains(name) {
                return Err(Error::usage(format!("column {name:?} cannot be both an id and rotated")));
            }
        }
        for name in self.columns.iter().chain(&self.ids).chain(&self.into).chain(&self.context_columns) {
            if name.is_empty() || name.contains('\0') {
                return Err(Error::usage(format!("{name:?} is not a column name")));
            }
        }
        Ok(())
    }

    /// The default journal file name: `TABLE.rekey-journal`, beside a SQLite
    /// database, in the current directory for PostgreSQL.
    pub fn default_journal(&self) -> std::path::PathBuf {
        let name = format!("{}.rekey-journal", self.table.replace(['/', '\\'], "_"));
        match sqlite_path(&self.url) {
            Some(path) => {
                let path = std::path::Path::new(path);
                let dir = path.canonicalize().ok().and_then(|p| p.parent().map(std::path::Path::to_path_buf));
                let file = path.file_name().map_or_else(|| "db".into(), |f| f.to_string_lossy().into_owned());
                dir.unwrap_or_default().join(format!("{file}.{name}"))
            }
            None => std::path::PathBuf::from(name),
        }
    }
}

/// The file a `sqlite:` URL names.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    Some(rest.strip_prefix("//").unwrap_or(rest))
}

/// Whether `target` is a database URL this build can open.
pub fn is_database_url(target: &str) -> bool {
    target.starts_with("sqlite:") || target.starts_with("postgres://") || target.starts_with("postgresql://")
}

/// `name` as an SQL identifier: in double quotes, inner quotes doubled.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name, `T` or `SCHEMA.T`, quoted part by part.
pub(crate) fn quote_table(table: &str) -> String {
    match table.split_once('.') {
        Some((schema, name)) => format!("{}.{}", quote(schema), quote(name)),
        None => quote(table),
    }
}

/// One id column's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeyValue {
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl KeyValue {
    fn to_json(&self) -> Value {
        match self {
            Self::Int(i) => Value::from(*i),
            Self::Real(f) => serde_json::json!({ "real": f.to_string() }),
            Self::Text(s) => Value::from(s.as_str()),
            Self::Blob(b) => serde_json::json!({ "b64": STANDARD.encode(b) }),
        }
    }

    fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Some(Self::Text(s.clone())),
            Value::Number(n) => n.as_i64().map(Self::Int),
            Value::Object(o) => match (o.get("real"), o.get("b64")) {
                (Some(Value::String(f)), None) => f.parse().ok().map(Self::Real),
                (None, Some(Value::String(b))) => STANDARD.decode(b).ok().map(Self::Blob),
                _ => None,
            },
            _ => None,
        }
    }

    fn display(&self) -> String {
        match self {
            Self::Int(i) => i.to_string(),
            Self::Real(f) => f.to_string(),
            Self::Text(s) if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "-_.:@".contains(c)) => {
                s.clone()
            }
            Self::Text(s) => format!("{s:?}"),
            Self::Blob(b) => format!("x'{}'", journal::hex(b)),
        }
    }
}

/// A row's key as the journal and checkpoints keep it: a JSON array.
fn key_to_string(key: &[KeyValue]) -> String {
    Value::Array(key.iter().map(KeyValue::to_json).collect()).to_string()
}

fn key_from_string(text: &str) -> Result<Vec<KeyValue>, Error> {
    let damaged = || Error::new(ErrorKind::BadInput, format!("the journal holds a damaged row key: {text}"));
    let Value::Array(values) = serde_json::from_str::<Value>(text).map_err(|_| damaged())? else {
        return Err(damaged());
    };
    values.iter().map(|v| KeyValue::from_json(v).ok_or_else(damaged)).collect()
}

/// A value of a rotated column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    /// Text (UTF-8).
    Text(Vec<u8>),
    /// Binary (a blob, bytea).
    Blob(Vec<u8>),
}

impl Cell {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Null => &[],
            Self::Text(b) | Self::Blob(b) => b,
        }
    }
}

/// One row as read.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) key: Vec<KeyValue>,
    /// The rotated columns' values, in `--column` order.
    pub(crate) cells: Vec<Cell>,
    /// The context columns' values as text (`None`: NULL).
    pub(crate) context: Vec<Option<String>>,
    /// With `--into`: the shadow column's value (`Null` when not yet filled).
    pub(crate) shadow: Cell,
}

/// Conditional updates of one column, made in one transaction with others.
#[derive(Debug)]
pub(crate) struct Group {
    /// The column written.
    pub(crate) set: String,
    /// The column that must still hold `expect` (the same one, or the original of a shadow).
    pub(crate) guard: String,
    /// The written column must be NULL (a shadow column not yet filled).
    pub(crate) set_must_be_null: bool,
    pub(crate) rows: Vec<Update>,
}

/// One conditional update.
#[derive(Debug)]
pub(crate) struct Update {
    pub(crate) key: Vec<KeyValue>,
    pub(crate) expect: Cell,
    pub(crate) value: Cell,
}

/// A connection to one table, checked against the spec.
pub(crate) trait Db {
    /// Up to `limit` rows after `after` (from the first with `None`), in key order.
    fn page(&mut self, after: Option<&[KeyValue]>, limit: usize) -> Result<Vec<Row>, Error>;
    /// The values of `column` for rows by key; `None` where the row is gone.
    fn fetch(&mut self, column: &str, keys: &[Vec<KeyValue>]) -> Result<Vec<Option<Cell>>, Error>;
    /// Applies every group in one transaction; per group and row, whether the row matched its guard.
    fn update(&mut self, groups: &[Group]) -> Result<Vec<Vec<bool>>, Error>;
    /// Rows in the table, for progress; `None` when unknown.
    fn count(&mut self) -> Option<u64>;
    /// Refuses, before any write, a connection that may not update `columns`.
    fn check_update(&mut self, columns: &[String]) -> Result<(), Error>;
}

/// Opens the database of `spec` and checks the table, its columns and ids.
fn connect(spec: &TableSpec) -> Result<Box<dyn Db>, Error> {
    if let Some(path) = sqlite_path(&spec.url) {
        Ok(Box::new(sqlite::SqliteDb::open(path, spec)?))
    } else if spec.url.starts_with("postgres://") || spec.url.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgDb::open(&spec.url, spec)?))
    } else {
        Err(Error::usage(format!("{} is not a database URL", redact_url(&spec.url)))
            .hint("write sqlite:PATH or postgres://USER@HOST:PORT/DB"))
    }
}

type Job = Box<dyn FnOnce(&mut dyn Db) + Send>;

/// A connection on its own thread: its calls block the caller, never an
/// async worker (they step aside with `block_in_place`).
struct DbThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DbThread {
    fn start(spec: TableSpec) -> Result<Self, Error> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("rekey-db".into())
            .spawn(move || {
                let mut db = match connect(&spec) {
                    Ok(db) => {
                        let _ = ready.send(Ok(()));
                        db
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(db.as_mut());
                }
            })
            .map_err(|e| Error::io("cannot start the database thread", &e))?;
        let this = Self { jobs: Some(jobs), thread: Some(thread) };
        blocking(|| opened.recv())
            .map_err(|_| Error::new(ErrorKind::Io, "internal error: the database thread stopped"))??;
        Ok(this)
    }

    /// Sends `f` to the connection without waiting; the answer comes on the receiver.
    fn send<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> T + Send + 'static,
    ) -> Result<mpsc::Receiver<T>, Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |db| {
            let _ = tx.send(f(db));
        });
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| Error::new(ErrorKind::Io, "internal error: the database thread stopped"))?;
        Ok(rx)
    }

    /// Runs `f` on the connection and waits for it.
    fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut dyn Db) -> T + Send + 'static) -> Result<T, Error> {
        let rx = self.send(f)?;
        wait(&rx)
    }
}

impl Drop for DbThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn wait<T>(rx: &mpsc::Receiver<T>) -> Result<T, Error> {
    blocking(|| rx.recv()).map_err(|_| Error::new(ErrorKind::Io, "internal error: the database thread stopped"))
}

/// Runs a blocking call; on a multi-thread async worker, lets the runtime
/// move its other tasks elsewhere meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Names a unit and its items refer to.
#[derive(Debug)]
struct Names {
    table: String,
    ids: Vec<String>,
    columns: Vec<String>,
    context: Vec<String>,
}

/// What a row unit carries.
#[derive(Debug)]
pub struct RowUnit {
    row: Row,
    names: Arc<Names>,
}

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
fn row_id(names: &Names, key: &[KeyValue]) -> String {
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
fn fit(old: &Cell, new: Vec<u8>, kind: ChangeKind) -> Result<Cell, ItemError> {
    match old {
        Cell::Blob(_) if kind == ChangeKind::FromLegacy && !new.starts_with(&envelope_core::MAGIC) => {
            let text = std::str::from_utf8(&new).map_err(|_| ItemError::input("the new envelope is not text"))?;
            let bytes = envelope_core::decode_text(text).map_err(|e| ItemError::input(e.to_string()))?;
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

/// Whether a journal's run was on a table.
pub fn is_table_run(params: &journal::RunParams) -> bool {
    params.get("target").is_some_and(|t| t == "table")
}

/// The run parameters a table run records, from which rollback reconnects
/// (the URL without its password: rollback reads that from the environment).
pub fn run_params(spec: &TableSpec) -> journal::RunParams {
    journal::RunParams::from([
        ("target".into(), "table".into()),
        ("database".into(), redact_url(&spec.url)),
        ("table".into(), spec.table.clone()),
        ("columns".into(), spec.columns.join(",")),
        ("ids".into(), spec.ids.join(",")),
        ("into".into(), spec.into.clone().unwrap_or_default()),
        ("context_columns".into(), spec.context_columns.join(",")),
    ])
}

/// One row-column to put back.
struct Restore {
    item: String,
    key: Vec<KeyValue>,
    old: Cell,
    old_sha256: Option<String>,
    new_sha256: String,
}

/// Puts every row a table journal changed back as it was, where the row
/// still holds what rekey wrote (checked and written in one conditional
/// update, so a concurrent writer is never overwritten). Rows changed since
/// are reported and left alone. `url` overrides the journal's database
/// (which has no password; `PGPASSWORD` or the password file supply it).
///
/// # Errors
/// A journal that cannot be read or is in use, or the database's errors.
pub fn rollback(journal_path: &std::path::Path, url: Option<&str>) -> Result<(Summary, Vec<String>), Error> {
    let start = std::time::Instant::now();
    let (_lock, entries, skipped_lines) = journal::read_for_rollback(journal_path)?;
    let Some(Entry::Run { params, .. }) = entries.first() else {
        return Err(Error::new(ErrorKind::BadInput, "not a rekey journal"));
    };
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let split = |s: String| -> Vec<String> { s.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect() };
    let into = Some(get("into")).filter(|s| !s.is_empty());
    let spec = TableSpec {
        url: url.map_or_else(|| get("database"), str::to_owned),
        table: get("table"),
        columns: split(get("columns")),
        ids: split(get("ids")),
        into: into.clone(),
        context_columns: Vec::new(),
        batch_size: DEFAULT_BATCH_SIZE,
    };
    spec.check()?;

    // Latest first: an item changed twice (a resumed run) goes back to its first original.
    let mut abandoned: HashSet<&str> = HashSet::new();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut per_column: HashMap<String, Vec<Restore>> = HashMap::new();
    for entry in entries.iter().rev() {
        match entry {
            Entry::Abandoned { item } => {
                abandoned.insert(item);
            }
            Entry::Row { item, key, column, old_sha256, new_sha256, old_b64, binary, .. } => {
                if abandoned.remove(item.as_str()) || !seen.insert((key.as_str(), column.as_str())) {
                    continue;
                }
                let old = match old_b64 {
                    None => Cell::Null,
                    Some(b) if *binary => Cell::Blob(journal::unb64(b)?),
                    Some(b) => Cell::Text(journal::unb64(b)?),
                };
                if old_sha256.as_deref().is_some_and(|h| journal::sha256(old.bytes()) != h) {
                    return Err(Error::new(
                        ErrorKind::BadInput,
                        format!("the journal's undo record of {item} is damaged"),
                    ));
                }
                per_column.entry(column.clone()).or_default().push(Restore {
                    item: item.clone(),
                    key: key_from_string(key)?,
                    old,
                    old_sha256: old_sha256.clone(),
                    new_sha256: new_sha256.clone(),
                });
            }
            _ => {}
        }
    }

    let db = DbThread::start(spec)?;
    let mut summary = Summary::new("rollback");
    let mut conflicts = Vec::new();
    for (column, restores) in per_column {
        for chunk in restores.chunks(DEFAULT_BATCH_SIZE) {
            let keys: Vec<Vec<KeyValue>> = chunk.iter().map(|r| r.key.clone()).collect();
            let col = column.clone();
            let current = db.call(move |db| db.fetch(&col, &keys))??;
            let mut group =
                Group { set: column.clone(), guard: column.clone(), set_must_be_null: false, rows: Vec::new() };
            let mut pending = Vec::new();
            for (r, now) in chunk.iter().zip(current) {
                let Some(now) = now else {
                    summary.counts.failed += 1;
                    conflicts.push(format!("{}: the row is gone", r.item));
                    continue;
                };
                let hash = (now != Cell::Null).then(|| journal::sha256(now.bytes()));
                if hash.as_deref() == Some(r.new_sha256.as_str()) {
                    pending.push(r);
                    group.rows.push(Update { key: r.key.clone(), expect: now, value: r.old.clone() });
                } else if hash == r.old_sha256 {
                    summary.counts.skipped += 1;
                } else {
                    summary.counts.failed += 1;
                    conflicts.push(format!("{}: changed since the run; left as it is", r.item));
                }
            }
            if group.rows.is_empty() {
                continue;
            }
            let applied = db.call(move |db| db.update(&[group]))??;
            for (r, ok) in pending.into_iter().zip(applied.into_iter().next().unwrap_or_default()) {
                if ok {
                    summary.restored += 1;
                } else {
                    summary.counts.failed += 1;
                    conflicts.push(format!("{}: changed during the rollback; left as it is", r.item));
                }
            }
        }
    }
    // Lines that could not be read are failures too: what they recorded is not undone.
    summary.counts.failed += skipped_lines.len() as u64;
    conflicts.extend(skipped_lines);
    summary.elapsed = start.elapsed();
    Ok((summary, conflicts))
}

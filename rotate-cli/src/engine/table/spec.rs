//! What a table run names: the table, its columns and ids, and the values rows hold.

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::engine::error::{Error, ErrorKind};
use crate::engine::journal::{self};

/// Rows per transaction and per page unless told otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// What to rotate: a table's columns, how rows are identified, where new
/// values go.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// `sqlite:PATH`, `postgres://...` / `postgresql://...` (the `PG*`
    /// environment variables and the password file fill what it leaves out),
    /// or `mysql://...` (an option file and `MYSQL_PWD` fill the password).
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
    /// database, in the current directory for PostgreSQL and MySQL.
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
pub(super) fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    Some(rest.strip_prefix("//").unwrap_or(rest))
}

/// Whether `target` is a database URL this build can open.
pub fn is_database_url(target: &str) -> bool {
    ["sqlite:", "postgres://", "postgresql://", "mysql://", "mariadb://"].iter().any(|p| target.starts_with(p))
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
    pub(super) fn to_json(&self) -> Value {
        match self {
            Self::Int(i) => Value::from(*i),
            Self::Real(f) => serde_json::json!({ "real": f.to_string() }),
            Self::Text(s) => Value::from(s.as_str()),
            Self::Blob(b) => serde_json::json!({ "b64": STANDARD.encode(b) }),
        }
    }

    pub(super) fn from_json(v: &Value) -> Option<Self> {
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

    pub(super) fn display(&self) -> String {
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
pub(super) fn key_to_string(key: &[KeyValue]) -> String {
    Value::Array(key.iter().map(KeyValue::to_json).collect()).to_string()
}

pub(super) fn key_from_string(text: &str) -> Result<Vec<KeyValue>, Error> {
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
    pub(super) fn bytes(&self) -> &[u8] {
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

/// Names a unit and its items refer to.
#[derive(Debug)]
pub(super) struct Names {
    pub(super) table: String,
    pub(super) ids: Vec<String>,
    pub(super) columns: Vec<String>,
    pub(super) context: Vec<String>,
}

/// What a row unit carries.
#[derive(Debug)]
pub struct RowUnit {
    pub(super) row: Row,
    pub(super) names: Arc<Names>,
}

//! Putting back what a table journal changed.

use std::collections::{HashMap, HashSet};

use super::db::DbThread;
use super::pg_config::redact_url;
use super::spec::{Cell, DEFAULT_BATCH_SIZE, Group, KeyValue, TableSpec, Update, key_from_string};
use crate::engine::error::{Error, ErrorKind};
use crate::engine::journal::{self, Entry};
use crate::engine::report::Summary;

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

/// A table's undo record in a generic [`Entry::Change`]: the fields of
/// [`Entry::Row`], which table runs write (a table journal may hold either).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RowUndo {
    /// The row's key: a JSON array of the id columns' values.
    pub key: String,
    /// The column written.
    pub column: String,
    /// SHA-256 of the value before; absent when it was NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_sha256: Option<String>,
    /// SHA-256 of the value rekey wrote.
    pub new_sha256: String,
    /// The value before, base64; absent when it was NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_b64: Option<String>,
    /// The value is binary (a blob or bytea), not text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
}

impl RowUndo {
    /// The undo of `entry`, when it is a table change (`Row`, or `Change` for `table`).
    ///
    /// # Errors
    /// A `Change` whose undo record is not a table's.
    fn of(entry: &Entry) -> Result<Option<(&str, Self)>, Error> {
        match entry {
            Entry::Row { item, key, column, old_sha256, new_sha256, old_b64, binary, .. } => Ok(Some((
                item,
                Self {
                    key: key.clone(),
                    column: column.clone(),
                    old_sha256: old_sha256.clone(),
                    new_sha256: new_sha256.clone(),
                    old_b64: old_b64.clone(),
                    binary: *binary,
                },
            ))),
            Entry::Change { item, target, undo } if target == "table" => {
                let undo = serde_json::from_value(undo.clone()).map_err(|_| {
                    Error::new(ErrorKind::BadInput, format!("the journal's undo record of {item} is damaged"))
                })?;
                Ok(Some((item, undo)))
            }
            _ => Ok(None),
        }
    }
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
pub fn rollback(journal: &journal::RollbackJournal, url: Option<&str>) -> Result<(Summary, Vec<String>), Error> {
    let start = std::time::Instant::now();
    let (entries, skipped_lines) = (journal.entries(), journal.skipped());
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
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut per_column: HashMap<String, Vec<Restore>> = HashMap::new();
    for entry in entries.iter().rev() {
        if let Entry::Abandoned { item } = entry {
            abandoned.insert(item);
            continue;
        }
        let Some((item, undo)) = RowUndo::of(entry)? else {
            continue;
        };
        if abandoned.remove(item) || !seen.insert((undo.key.clone(), undo.column.clone())) {
            continue;
        }
        let old = match &undo.old_b64 {
            None => Cell::Null,
            Some(b) if undo.binary => Cell::Blob(journal::unb64(b)?),
            Some(b) => Cell::Text(journal::unb64(b)?),
        };
        if undo.old_sha256.as_deref().is_some_and(|h| journal::sha256(old.bytes()) != h) {
            return Err(Error::new(ErrorKind::BadInput, format!("the journal's undo record of {item} is damaged")));
        }
        per_column.entry(undo.column.clone()).or_default().push(Restore {
            item: item.to_owned(),
            key: key_from_string(&undo.key)?,
            old,
            old_sha256: undo.old_sha256,
            new_sha256: undo.new_sha256,
        });
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
    conflicts.extend_from_slice(skipped_lines);
    summary.elapsed = start.elapsed();
    Ok((summary, conflicts))
}

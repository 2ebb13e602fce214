//! SQLite through rusqlite (SQLite compiled in: nothing to install).
//!
//! Values keep their storage class: a TEXT value is written back as TEXT, a
//! BLOB as a BLOB, and the guard of an update (`"col" IS ?`) compares with
//! the class that was read. Each page is its own statement, finished before
//! the next, so the reader never holds a lock across pages and the writer's
//! transactions (`BEGIN IMMEDIATE`) wait at most the busy timeout.

use std::collections::HashSet;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params_from_iter};

use super::spec::{Cell, Db, Group, KeyValue, Row, TableSpec, quote, quote_table};
use crate::engine::error::{Error, ErrorKind};

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// A checked connection to one SQLite table.
pub(crate) struct SqliteDb {
    conn: Connection,
    table: String,
    ids: Vec<String>,
    /// How many rotated columns a page row holds after the ids.
    columns: usize,
    select: String,
    select_after: String,
}

fn db_error(what: &str, e: &rusqlite::Error) -> Error {
    let mut error = Error::new(ErrorKind::Io, format!("{what}: {e}"));
    if let rusqlite::Error::SqliteFailure(f, _) = e {
        match f.code {
            rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied | rusqlite::ErrorCode::CannotOpen => {
                error = error.hint("check that this user may write the database file and its directory");
            }
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                error = error.hint("another connection held a lock too long; rerun the same command with --resume");
            }
            _ => {}
        }
    }
    error
}

impl SqliteDb {
    /// Opens an existing database file and checks the table.
    pub(crate) fn open(path: &str, spec: &TableSpec) -> Result<Self, Error> {
        if std::fs::metadata(path).is_err() {
            return Err(Error::usage(format!("the SQLite database {path} does not exist"))
                .hint("write sqlite:PATH with the path of an existing database file"));
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| db_error(&format!("cannot open {path}"), &e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| db_error("cannot set the busy timeout", &e))?;
        let (schema, name) = match spec.table.split_once('.') {
            Some((s, n)) => (s.to_owned(), n.to_owned()),
            None => ("main".to_owned(), spec.table.clone()),
        };
        let columns = table_columns(&conn, &schema, &name)?;
        if columns.is_empty() {
            let tables = list_tables(&conn)?;
            return Err(Error::usage(format!(
                "the database has no table {:?}; its tables are: {}",
                spec.table,
                tables.join(", ")
            ))
            .hint("name the table with --table"));
        }
        let names: Vec<&str> = columns.iter().map(|(n, _, _)| n.as_str()).collect();
        for c in spec.columns.iter().chain(&spec.ids).chain(&spec.into).chain(&spec.context_columns) {
            if !names.contains(&c.as_str()) {
                return Err(Error::usage(format!(
                    "table {} has no column {c:?}; its columns are: {}",
                    spec.table,
                    names.join(", ")
                )));
            }
        }
        check_unique(&conn, &schema, &name, &spec.table, &spec.ids, &columns)?;

        let table = quote_table(&spec.table);
        let ids: Vec<String> = spec.ids.iter().map(|c| quote(c)).collect();
        let mut selected: Vec<String> = ids.clone();
        selected.extend(spec.columns.iter().map(|c| quote(c)));
        selected.extend(spec.context_columns.iter().map(|c| quote(c)));
        selected.push(spec.into.as_ref().map_or_else(|| "NULL".to_owned(), |c| quote(c)));
        let key = ids.join(", ");
        let marks: Vec<String> = (1..=ids.len()).map(|i| format!("?{i}")).collect();
        let limit = ids.len() + 1;
        let select = format!("SELECT {} FROM {table} ORDER BY {key} LIMIT ?1", selected.join(", "));
        let select_after = format!(
            "SELECT {} FROM {table} WHERE ({key}) > ({}) ORDER BY {key} LIMIT ?{limit}",
            selected.join(", "),
            marks.join(", ")
        );
        Ok(Self { conn, table, ids, columns: spec.columns.len(), select, select_after })
    }

    fn key_condition(&self, first: usize) -> String {
        self.ids.iter().enumerate().map(|(i, c)| format!("{c} = ?{}", first + i)).collect::<Vec<_>>().join(" AND ")
    }
}

/// `(name, declared type, primary key position)` of each column.
fn table_columns(conn: &Connection, schema: &str, table: &str) -> Result<Vec<(String, String, i64)>, Error> {
    let sql = "SELECT name, type, pk FROM pragma_table_info(?1, ?2)";
    let mut stmt = conn.prepare(sql).map_err(|e| db_error("cannot read the table's columns", &e))?;
    let rows = stmt
        .query_map([table, schema], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
        .map_err(|e| db_error("cannot read the table's columns", &e))?;
    rows.collect::<Result<_, _>>().map_err(|e| db_error("cannot read the table's columns", &e))
}

fn list_tables(conn: &Connection) -> Result<Vec<String>, Error> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
        .map_err(|e| db_error("cannot list the tables", &e))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| db_error("cannot list the tables", &e))?;
    rows.collect::<Result<_, _>>().map_err(|e| db_error("cannot list the tables", &e))
}

/// The id columns must identify rows: the rowid alias, the primary key or a
/// unique index on exactly them; without one, the data must hold no
/// duplicate (checked, with a warning that nothing keeps it so).
fn check_unique(
    conn: &Connection,
    schema: &str,
    table: &str,
    table_name: &str,
    ids: &[String],
    columns: &[(String, String, i64)],
) -> Result<(), Error> {
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let pk: HashSet<&str> = columns.iter().filter(|c| c.2 > 0).map(|c| c.0.as_str()).collect();
    if pk == want {
        return Ok(());
    }
    let err = |e: rusqlite::Error| db_error("cannot read the table's indexes", &e);
    let sql = "SELECT name FROM pragma_index_list(?1, ?2) WHERE \"unique\" = 1 AND partial = 0";
    let indexes: Vec<String> = {
        let mut stmt = conn.prepare(sql).map_err(err)?;
        let rows = stmt.query_map([table, schema], |r| r.get::<_, String>(0)).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)?
    };
    for index in indexes {
        let mut stmt = conn.prepare("SELECT name FROM pragma_index_info(?1, ?2)").map_err(err)?;
        let cols: Vec<Option<String>> = stmt
            .query_map([index.as_str(), schema], |r| r.get::<_, Option<String>>(0))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let cols: HashSet<&str> = cols.iter().map(|c| c.as_deref().unwrap_or("")).collect();
        if cols == want {
            return Ok(());
        }
    }
    let key = ids.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let nulls = ids.iter().map(|c| format!("{} IS NULL", quote(c))).collect::<Vec<_>>().join(" OR ");
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM {t} GROUP BY {key} HAVING COUNT(*) > 1)), (SELECT COUNT(*) FROM {t} WHERE {nulls})",
        t = quote_table(table_name)
    );
    let (dups, nulls): (i64, i64) =
        conn.query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| db_error("cannot check the ids", &e))?;
    if dups > 0 || nulls > 0 {
        return Err(Error::usage(format!(
            "the id columns ({}) do not identify rows of {table_name}: {dups} values occur more than once, {nulls} rows have a NULL id",
            ids.join(", ")
        ))
        .hint("name a primary key or the columns of a unique index with --id; nothing was written"));
    }
    tracing::warn!(
        table = %table_name,
        "no primary key or unique index on exactly the --id columns; they are unique now, but nothing keeps them so, and each page is a scan"
    );
    Ok(())
}

fn key_value(v: ValueRef<'_>) -> Result<KeyValue, Error> {
    Ok(match v {
        ValueRef::Integer(i) => KeyValue::Int(i),
        ValueRef::Real(f) => KeyValue::Real(f),
        ValueRef::Text(t) => KeyValue::Text(
            String::from_utf8(t.to_vec())
                .map_err(|_| Error::new(ErrorKind::BadInput, "a row's id is text that is not UTF-8"))?,
        ),
        ValueRef::Blob(b) => KeyValue::Blob(b.to_vec()),
        ValueRef::Null => {
            return Err(Error::new(ErrorKind::BadInput, "a row has a NULL id; rows need a unique, non-NULL id"));
        }
    })
}

fn key_ref(k: &KeyValue) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match k {
        KeyValue::Int(i) => ValueRef::Integer(*i),
        KeyValue::Real(f) => ValueRef::Real(*f),
        KeyValue::Text(s) => ValueRef::Text(s.as_bytes()),
        KeyValue::Blob(b) => ValueRef::Blob(b),
    })
}

fn cell_ref(c: &Cell) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match c {
        Cell::Null => ValueRef::Null,
        // Text cells hold UTF-8 (read from TEXT values or made by rekey).
        Cell::Text(t) => ValueRef::Text(t),
        Cell::Blob(b) => ValueRef::Blob(b),
    })
}

fn to_value(k: &KeyValue) -> Value {
    match k {
        KeyValue::Int(i) => Value::Integer(*i),
        KeyValue::Real(f) => Value::Real(*f),
        KeyValue::Text(s) => Value::Text(s.clone()),
        KeyValue::Blob(b) => Value::Blob(b.clone()),
    }
}

fn cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Text(t) => Cell::Text(t.to_vec()),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        ValueRef::Integer(i) => Cell::Text(i.to_string().into_bytes()),
        ValueRef::Real(f) => Cell::Text(f.to_string().into_bytes()),
    }
}

fn text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(crate::engine::journal::hex(b)),
    }
}

impl Db for SqliteDb {
    fn page(&mut self, after: Option<&[KeyValue]>, limit: usize) -> Result<Vec<Row>, Error> {
        let err = |e: rusqlite::Error| db_error("cannot read the table", &e);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (sql, mut params) = match after {
            Some(key) => (&self.select_after, key.iter().map(to_value).collect::<Vec<_>>()),
            None => (&self.select, Vec::new()),
        };
        params.push(Value::Integer(limit));
        let mut stmt = self.conn.prepare(sql).map_err(err)?;
        let mut rows = stmt.query(params_from_iter(params)).map_err(err)?;
        let n_ids = self.ids.len();
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(err)? {
            let width = r.as_ref().column_count();
            let key = (0..n_ids).map(|i| key_value(r.get_ref(i).map_err(err)?)).collect::<Result<Vec<_>, _>>()?;
            let shadow = cell(r.get_ref(width - 1).map_err(err)?);
            out.push(Row { key, cells: Vec::new(), context: Vec::new(), shadow });
            let row = out.last_mut().ok_or_else(|| Error::new(ErrorKind::Io, "internal error"))?;
            for i in n_ids..n_ids + self.columns {
                row.cells.push(cell(r.get_ref(i).map_err(err)?));
            }
            for i in n_ids + self.columns..width - 1 {
                row.context.push(text(r.get_ref(i).map_err(err)?));
            }
        }
        drop(rows);
        drop(stmt);
        Ok(out)
    }

    fn fetch(&mut self, column: &str, keys: &[Vec<KeyValue>]) -> Result<Vec<Option<Cell>>, Error> {
        let err = |e: rusqlite::Error| db_error("cannot read the table", &e);
        let sql = format!("SELECT {} FROM {} WHERE {}", quote(column), self.table, self.key_condition(1));
        let mut stmt = self.conn.prepare(&sql).map_err(err)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let mut rows = stmt.query(params_from_iter(key.iter().map(to_value))).map_err(err)?;
            out.push(match rows.next().map_err(err)? {
                Some(r) => Some(cell(r.get_ref(0).map_err(err)?)),
                None => None,
            });
        }
        Ok(out)
    }

    fn update(&mut self, groups: &[Group]) -> Result<Vec<Vec<bool>>, Error> {
        let err = |e: rusqlite::Error| db_error("cannot update the table", &e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let n = self.ids.len();
            let key = self.ids.iter().enumerate().map(|(i, c)| format!("{c} = ?{}", i + 3)).collect::<Vec<_>>();
            let null = if g.set_must_be_null { format!(" AND {} IS NULL", quote(&g.set)) } else { String::new() };
            let sql = format!(
                "UPDATE {} SET {} = ?1 WHERE {} AND {} IS ?2{null}",
                self.table,
                quote(&g.set),
                key.join(" AND "),
                quote(&g.guard)
            );
            let mut stmt = tx.prepare(&sql).map_err(err)?;
            let mut applied = Vec::with_capacity(g.rows.len());
            let mut params = Vec::with_capacity(n + 2);
            for u in &g.rows {
                // Bound by reference: a batch's values are not copied again.
                params.clear();
                params.push(cell_ref(&u.value));
                params.push(cell_ref(&u.expect));
                params.extend(u.key.iter().map(key_ref));
                applied.push(stmt.execute(params_from_iter(params.iter())).map_err(err)? == 1);
            }
            out.push(applied);
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    fn check_update(&mut self, _columns: &[String]) -> Result<(), Error> {
        // SQLite has no grants: what matters is whether the file opened writable.
        if self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(Error::new(ErrorKind::Io, "the SQLite database opened read-only: this user may not write it")
                .hint("check that this user may write the database file and its directory"));
        }
        Ok(())
    }

    fn count(&mut self) -> Option<u64> {
        let sql = format!("SELECT COUNT(*) FROM {}", self.table);
        self.conn.query_row(&sql, [], |r| r.get::<_, i64>(0)).ok().and_then(|n| u64::try_from(n).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_never_break_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            r#"CREATE TABLE "we""ird" ("i""d" INTEGER PRIMARY KEY, "v; DROP TABLE x" TEXT);
               INSERT INTO "we""ird" VALUES (1, 'a'), (2, NULL);"#,
        )
        .expect("schema");
        let spec = TableSpec {
            url: String::new(),
            table: "we\"ird".into(),
            columns: vec!["v; DROP TABLE x".into()],
            ids: vec!["i\"d".into()],
            into: None,
            context_columns: Vec::new(),
            batch_size: 10,
        };
        let mut db = SqliteDb::open(path.to_str().expect("utf-8"), &spec).expect("open table");
        let rows = db.page(None, 10).expect("page");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].cells, vec![Cell::Text(b"a".to_vec())]);
        assert_eq!(rows[1].cells, vec![Cell::Null]);
        let after = db.page(Some(&rows[0].key), 10).expect("page");
        assert_eq!(after.len(), 1);
    }
}

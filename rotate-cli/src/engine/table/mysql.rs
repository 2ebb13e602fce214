//! MySQL and MariaDB through mysql_async.
//!
//! The connection settings and TLS are read as the `mysql` client reads
//! them ([`super::mysql_connect`]). Identifiers are quoted with backticks.
//! Integer ids travel as integers, binary ids as bytes, every other id as
//! text (the server converts it back when comparing). A batch of updates is
//! one statement per column: the rows travel as a derived table (`SELECT ?
//! k0, ? e, ? v, 0 i UNION ALL ...`, which MySQL and MariaDB both read)
//! joined on the ids, each row updated only if its column still holds, byte
//! for byte, what was read. When fewer rows matched than were sent, the
//! same transaction reads which ones hold the new value.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row as SqlRow, Value};

use super::mysql_connect::{check_encrypted, connect, db_error, is_privilege_error};
#[cfg(test)]
use super::spec::Update;
use super::spec::{Cell, Db, Group, KeyValue, Row, TableSpec};
use crate::engine::error::{Error, ErrorKind};

/// The most placeholders one statement may hold (the protocol's limit).
const MAX_PARAMS: usize = 65_535;

/// How an id column's values travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdKind {
    Int,
    Binary,
    Text,
}

/// `name` as a MySQL identifier: in backticks, inner backticks doubled.
pub(super) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal for statements that take no placeholders (GRANT hints).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A checked connection to one MySQL or MariaDB table.
pub(crate) struct MysqlDb {
    rt: tokio::runtime::Runtime,
    conn: Conn,
    table: String,
    ids: Vec<(String, IdKind)>,
    /// Per id: how the derived table's value is compared with it (in the column's own
    /// character set and collation for text, so the primary key's index serves the join).
    id_matches: Vec<String>,
    /// Binary (VARBINARY, BLOB) or text columns among the rotated and shadow ones.
    binary: std::collections::HashMap<String, bool>,
    /// Per rotated column, in `--column` order: binary (else text).
    cell_binary: Vec<bool>,
    select: String,
    select_after: String,
}

/// `(name, data type, nullable, character set and collation)` of each column.
type Columns = Vec<(String, String, bool, Option<(String, String)>)>;

fn is_binary_type(ty: &str) -> bool {
    matches!(ty, "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob")
}

fn is_text_type(ty: &str) -> bool {
    matches!(ty, "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext")
}

fn is_int_type(ty: &str) -> bool {
    matches!(ty, "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint")
}

impl MysqlDb {
    /// Connects and checks the table.
    pub(crate) fn open(url: &str, spec: &TableSpec) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the database runtime", &e))?;
        let (mut conn, config) = connect(&rt, url)?;
        let cipher: Option<(String, String)> = rt
            .block_on(conn.query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'"))
            .map_err(|e| db_error("cannot read the connection's TLS status", &e))?;
        check_encrypted(&config, cipher.is_some_and(|(_, c)| !c.is_empty()), url)?;
        let (schema, name) = match spec.table.split_once('.') {
            Some((s, n)) => (Some(s.to_owned()), n.to_owned()),
            None => (config.database.clone(), spec.table.clone()),
        };
        let Some(schema) = schema else {
            return Err(Error::usage(format!("no database is named for table {:?}", spec.table))
                .hint("name it in the URL (mysql://USER@HOST:PORT/DB) or as --table DB.TABLE"));
        };
        let columns = rt.block_on(check(&mut conn, spec, &schema, &name))?;
        let find = |c: &str| columns.iter().find(|col| col.0 == c);
        let mut binary = std::collections::HashMap::new();
        for c in spec.columns.iter().chain(&spec.into) {
            if let Some((_, ty, _, _)) = find(c) {
                binary.insert(c.clone(), is_binary_type(ty));
            }
        }
        let id_matches = spec
            .ids
            .iter()
            .enumerate()
            .map(|(i, c)| match find(c).and_then(|col| col.3.as_ref()) {
                Some((cs, coll)) if !is_binary_type(&find(c).map_or(String::new(), |col| col.1.clone())) => {
                    format!("t.{} = CONVERT(v.k{i} USING {cs}) COLLATE {coll}", quote(c))
                }
                _ => format!("t.{} = v.k{i}", quote(c)),
            })
            .collect();
        let ids: Vec<(String, IdKind)> = spec
            .ids
            .iter()
            .map(|c| {
                let ty = find(c).map_or("", |col| col.1.as_str());
                let kind = if is_int_type(ty) {
                    IdKind::Int
                } else if is_binary_type(ty) {
                    IdKind::Binary
                } else {
                    IdKind::Text
                };
                (quote(c), kind)
            })
            .collect();
        let table = format!("{}.{}", quote(&schema), quote(&name));
        // Aliased: ORDER BY then sorts by the columns, not by their text form.
        let mut selected: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, (c, kind))| match kind {
                IdKind::Text => format!("CAST({c} AS CHAR) AS rekey_k{i}"),
                _ => format!("{c} AS rekey_k{i}"),
            })
            .collect();
        selected.extend(spec.columns.iter().enumerate().map(|(i, c)| format!("{} AS rekey_c{i}", quote(c))));
        selected.extend(spec.context_columns.iter().enumerate().map(|(i, c)| {
            if find(c).is_some_and(|col| is_binary_type(&col.1)) {
                format!("LOWER(HEX({})) AS rekey_x{i}", quote(c))
            } else {
                format!("CAST({} AS CHAR) AS rekey_x{i}", quote(c))
            }
        }));
        selected.push(
            spec.into.as_ref().map_or_else(|| "NULL AS rekey_s".to_owned(), |c| format!("{} AS rekey_s", quote(c))),
        );
        let key = ids.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ");
        let after = if ids.len() == 1 {
            format!("{key} > ?")
        } else {
            format!("({key}) > ({})", vec!["?"; ids.len()].join(", "))
        };
        let select = format!("SELECT {} FROM {table} ORDER BY {key} LIMIT ?", selected.join(", "));
        let select_after = format!("SELECT {} FROM {table} WHERE {after} ORDER BY {key} LIMIT ?", selected.join(", "));
        let cell_binary = spec.columns.iter().map(|c| binary.get(c).copied().unwrap_or(false)).collect();
        Ok(Self { rt, conn, table, ids, id_matches, binary, cell_binary, select, select_after })
    }

    /// `(SELECT ? AS k0, ..., N AS i UNION ALL ...)`: a derived table of `rows` rows of the ids
    /// and `extra` values. Binary ids and the values are cast to bytes: the derived table's
    /// columns would otherwise be text in the connection's character set, which refuses
    /// binary values and compares by collation.
    fn derived(&self, rows: usize, extra: &[&str]) -> String {
        let mut sql = String::with_capacity(rows * (self.ids.len() + extra.len() + 2) * 20);
        let binary = "CAST(? AS BINARY)";
        for r in 0..rows {
            sql.push_str(if r == 0 { "SELECT " } else { " UNION ALL SELECT " });
            for (i, (_, kind)) in self.ids.iter().enumerate() {
                sql.push_str(if *kind == IdKind::Binary { binary } else { "?" });
                if r == 0 {
                    sql.push_str(&format!(" AS k{i}"));
                }
                sql.push_str(", ");
            }
            for name in extra {
                sql.push_str(binary);
                if r == 0 {
                    sql.push_str(&format!(" AS {name}"));
                }
                sql.push_str(", ");
            }
            sql.push_str(&if r == 0 { format!("{r} AS i") } else { r.to_string() });
        }
        format!("({sql})")
    }

    fn key_join(&self) -> String {
        self.id_matches.join(" AND ")
    }

    fn rows_per_statement(&self, extra: usize) -> usize {
        (MAX_PARAMS / (self.ids.len() + extra)).min(10_000)
    }
}

fn key_param(k: &KeyValue) -> Value {
    match k {
        KeyValue::Int(i) => Value::Int(*i),
        KeyValue::Real(f) => Value::Double(*f),
        KeyValue::Text(s) => Value::Bytes(s.as_bytes().to_vec()),
        KeyValue::Blob(b) => Value::Bytes(b.clone()),
    }
}

fn cell_param(c: &Cell) -> Value {
    match c {
        Cell::Null => Value::NULL,
        Cell::Text(b) | Cell::Blob(b) => Value::Bytes(b.clone()),
    }
}

fn key_value(v: Option<Value>, kind: IdKind) -> Result<KeyValue, Error> {
    let null = || Error::new(ErrorKind::BadInput, "a row has a NULL id; rows need a unique, non-NULL id");
    Ok(match (v.ok_or_else(null)?, kind) {
        (Value::NULL, _) => return Err(null()),
        (Value::Int(i), _) => KeyValue::Int(i),
        (Value::UInt(u), _) => i64::try_from(u).map_or_else(|_| KeyValue::Text(u.to_string()), KeyValue::Int),
        (Value::Bytes(b), IdKind::Binary) => KeyValue::Blob(b),
        (Value::Bytes(b), _) => KeyValue::Text(
            String::from_utf8(b)
                .map_err(|_| Error::new(ErrorKind::BadInput, "a row's id is text that is not UTF-8"))?,
        ),
        (Value::Float(f), _) => KeyValue::Real(f64::from(f)),
        (Value::Double(f), _) => KeyValue::Real(f),
        (other, _) => KeyValue::Text(other.as_sql(true).trim_matches('\'').to_owned()),
    })
}

fn cell(v: Option<Value>, binary: bool) -> Cell {
    match v {
        None | Some(Value::NULL) => Cell::Null,
        Some(Value::Bytes(b)) if binary => Cell::Blob(b),
        Some(Value::Bytes(b)) => Cell::Text(b),
        Some(other) => Cell::Text(other.as_sql(true).into_bytes()),
    }
}

fn text(v: Option<Value>) -> Option<String> {
    match v? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

/// The table exists, has the columns (text or binary for the rotated ones),
/// and the ids identify rows.
async fn check(conn: &mut Conn, spec: &TableSpec, schema: &str, name: &str) -> Result<Columns, Error> {
    let err = |e: mysql_async::Error| db_error("cannot read the table's definition", &e);
    type Definition = (String, String, String, Option<String>, Option<String>);
    let rows: Vec<Definition> = conn
        .exec(
            "SELECT CAST(COLUMN_NAME AS CHAR), LOWER(CAST(DATA_TYPE AS CHAR)), CAST(IS_NULLABLE AS CHAR), \
                    CAST(CHARACTER_SET_NAME AS CHAR), CAST(COLLATION_NAME AS CHAR) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (schema, name),
        )
        .await
        .map_err(err)?;
    let name_like = |s: &String| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let columns: Columns = rows
        .into_iter()
        .map(|(n, t, null, cs, coll)| {
            let text = match (cs, coll) {
                (Some(cs), Some(coll)) if name_like(&cs) && name_like(&coll) => Some((cs, coll)),
                _ => None,
            };
            (n, t, null == "YES", text)
        })
        .collect();
    if columns.is_empty() {
        let tables: Vec<String> = conn
            .exec(
                "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
                (schema,),
            )
            .await
            .map_err(err)?;
        return Err(Error::usage(format!(
            "database {schema:?} has no table {name:?} (or this user may not see it); its tables are: {}",
            tables.join(", ")
        ))
        .hint("name the table with --table (DB.TABLE for another database)"));
    }
    let find = |c: &str| columns.iter().find(|col| col.0 == c);
    for c in spec.columns.iter().chain(&spec.ids).chain(&spec.into).chain(&spec.context_columns) {
        if find(c).is_none() {
            let names: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
            return Err(Error::usage(format!(
                "table {} has no column {c:?}; its columns are: {}",
                spec.table,
                names.join(", ")
            )));
        }
    }
    for c in spec.columns.iter().chain(&spec.into) {
        let ty = find(c).map_or("", |col| col.1.as_str());
        if !is_binary_type(ty) && !is_text_type(ty) {
            return Err(Error::usage(format!(
                "column {c:?} is of type {ty}; rekey rotates text (CHAR, VARCHAR, TEXT: text form) and binary \
                 (BINARY, VARBINARY, BLOB: binary form) columns"
            )));
        }
    }
    if let Some(into) = &spec.into {
        let kind = |c: &str| find(c).is_some_and(|col| is_binary_type(&col.1));
        if kind(into) != kind(&spec.columns[0]) {
            return Err(Error::usage(format!(
                "--into {into:?} and --column {:?} are of different kinds (text and binary); make the shadow column the same kind",
                spec.columns[0]
            )));
        }
    }
    // Unique: a unique index (the primary key is one) on exactly the ids.
    let index_columns: Vec<(String, String)> = conn
        .exec(
            "SELECT CAST(INDEX_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 AND COLUMN_NAME IS NOT NULL",
            (schema, name),
        )
        .await
        .map_err(err)?;
    let mut indexes: std::collections::HashMap<String, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    for (index, column) in index_columns {
        indexes.entry(index).or_default().insert(column);
    }
    let want: std::collections::HashSet<String> = spec.ids.iter().cloned().collect();
    let unique = indexes.values().any(|cols| *cols == want);
    let nullable = spec.ids.iter().any(|c| find(c).is_some_and(|col| col.2));
    let table = format!("{}.{}", quote(schema), quote(name));
    let key = spec.ids.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let nulls = spec.ids.iter().map(|c| format!("{} IS NULL", quote(c))).collect::<Vec<_>>().join(" OR ");
    let (dups, null_rows): (i64, i64) = match (unique, nullable) {
        (true, false) => (0, 0),
        (true, true) => {
            let n: Option<i64> =
                conn.query_first(format!("SELECT COUNT(*) FROM {table} WHERE {nulls}")).await.map_err(err)?;
            (0, n.unwrap_or(0))
        }
        (false, _) => conn
            .query_first(format!(
                "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM {table} GROUP BY {key} HAVING COUNT(*) > 1) d), \
                        (SELECT COUNT(*) FROM {table} WHERE {nulls})"
            ))
            .await
            .map_err(err)?
            .unwrap_or((0, 0)),
    };
    if dups > 0 || null_rows > 0 {
        return Err(Error::usage(format!(
            "the id columns ({}) do not identify rows of {}: {dups} values occur more than once, {null_rows} rows have a NULL id",
            spec.ids.join(", "),
            spec.table
        ))
        .hint("name a primary key or the columns of a unique index with --id; nothing was written"));
    }
    if !unique {
        tracing::warn!(
            table = %spec.table,
            "no primary key or unique index on exactly the --id columns; they are unique now, but nothing keeps them so"
        );
    }
    Ok(columns)
}

impl Db for MysqlDb {
    fn page(&mut self, after: Option<&[KeyValue]>, limit: usize) -> Result<Vec<Row>, Error> {
        let err = |e: mysql_async::Error| db_error("cannot read the table", &e);
        let limit = Value::UInt(u64::try_from(limit).unwrap_or(u64::MAX));
        let (sql, mut params) = match after {
            None => (&self.select, Vec::new()),
            Some(key) => (&self.select_after, key.iter().map(key_param).collect()),
        };
        params.push(limit);
        let rows: Vec<SqlRow> = self.rt.block_on(self.conn.exec(sql.as_str(), params)).map_err(err)?;
        let n = self.ids.len();
        let binary = &self.cell_binary;
        let columns = binary.len();
        let mut out = Vec::with_capacity(rows.len());
        for mut r in rows {
            let width = r.len();
            let mut key = Vec::with_capacity(n);
            for (i, (_, kind)) in self.ids.iter().enumerate() {
                key.push(key_value(r.take(i), *kind)?);
            }
            let cells = (0..columns).map(|j| cell(r.take(n + j), binary[j])).collect();
            let context = (n + columns..width - 1).map(|i| text(r.take(i))).collect();
            let shadow = cell(r.take(width - 1), binary.first().copied().unwrap_or(false));
            out.push(Row { key, cells, context, shadow });
        }
        Ok(out)
    }

    fn fetch(&mut self, column: &str, keys: &[Vec<KeyValue>]) -> Result<Vec<Option<Cell>>, Error> {
        let err = |e: mysql_async::Error| db_error("cannot read the table", &e);
        let binary = self.binary.get(column).copied().unwrap_or(false);
        let mut out = vec![None; keys.len()];
        let per = self.rows_per_statement(0);
        for (c, chunk) in keys.chunks(per.max(1)).enumerate() {
            let sql = format!(
                "SELECT v.i, t.{} FROM {} t JOIN {} v ON {}",
                quote(column),
                self.table,
                self.derived(chunk.len(), &[]),
                self.key_join()
            );
            let params: Vec<Value> = chunk.iter().flat_map(|k| k.iter().map(key_param)).collect();
            let rows: Vec<SqlRow> = self.rt.block_on(self.conn.exec(sql, params)).map_err(err)?;
            for mut r in rows {
                let i: Option<i64> = r.take(0);
                if let Some(slot) = i.and_then(|i| usize::try_from(i).ok()).and_then(|i| out.get_mut(c * per + i)) {
                    *slot = Some(cell(r.take(1), binary));
                }
            }
        }
        Ok(out)
    }

    fn update(&mut self, groups: &[Group]) -> Result<Vec<Vec<bool>>, Error> {
        let err = |e: mysql_async::Error| db_error("cannot update the table", &e);
        let per = self.rows_per_statement(2);
        let mut statements = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let null =
                if group.set_must_be_null { format!(" AND t.{} IS NULL", quote(&group.set)) } else { String::new() };
            for (c, chunk) in group.rows.chunks(per.max(1)).enumerate() {
                let derived = self.derived(chunk.len(), &["e", "v"]);
                // Compared as bytes: a text collation would call values equal that differ in case or padding.
                let sql = format!(
                    "UPDATE {table} t JOIN {derived} v ON {join} SET t.{set} = v.v \
                     WHERE CAST(t.{guard} AS BINARY) <=> v.e{null}",
                    table = self.table,
                    join = self.key_join(),
                    set = quote(&group.set),
                    guard = quote(&group.guard),
                );
                let check = format!(
                    "SELECT v.i FROM {table} t JOIN {derived} v ON {join} WHERE CAST(t.{set} AS BINARY) <=> v.v",
                    table = self.table,
                    join = self.key_join(),
                    set = quote(&group.set),
                );
                let mut params = Vec::with_capacity(chunk.len() * (self.ids.len() + 2));
                for u in chunk {
                    params.extend(u.key.iter().map(key_param));
                    params.push(cell_param(&u.expect));
                    params.push(cell_param(&u.value));
                }
                statements.push((g, c * per, chunk.len(), sql, check, params));
            }
        }
        let conn = &mut self.conn;
        self.rt
            .block_on(async move {
                conn.query_drop("START TRANSACTION").await?;
                let run = async {
                    let mut out: Vec<Vec<bool>> = groups.iter().map(|g| vec![false; g.rows.len()]).collect();
                    for (g, first, len, sql, check, params) in statements {
                        conn.exec_drop(sql, params.clone()).await?;
                        let matched = usize::try_from(conn.affected_rows()).unwrap_or(usize::MAX);
                        if matched == len {
                            out[g][first..first + len].iter_mut().for_each(|a| *a = true);
                            continue;
                        }
                        // Some rows changed under us: those holding the new value are ours.
                        let ours: Vec<i64> = conn.exec(check, params).await?;
                        for i in ours {
                            if let Some(slot) = usize::try_from(i).ok().and_then(|i| out[g].get_mut(first + i)) {
                                *slot = true;
                            }
                        }
                    }
                    Ok::<_, mysql_async::Error>(out)
                };
                match run.await {
                    Ok(out) => {
                        conn.query_drop("COMMIT").await?;
                        Ok(out)
                    }
                    Err(e) => {
                        let _ = conn.query_drop("ROLLBACK").await;
                        Err(e)
                    }
                }
            })
            .map_err(err)
    }

    fn check_update(&mut self, columns: &[String]) -> Result<(), Error> {
        let err = |e: mysql_async::Error| db_error("cannot check this user's privileges", &e);
        let user: Option<String> =
            self.rt.block_on(self.conn.query_first("SELECT CAST(CURRENT_USER() AS CHAR)")).map_err(err)?;
        let user = user.unwrap_or_default();
        let grantee = match user.rsplit_once('@') {
            Some((name, host)) => format!("{}@{}", literal(name), literal(host)),
            None => literal(&user),
        };
        for column in columns {
            // Changes nothing (no row matches), but the server checks the privilege all the same.
            let probe = format!("UPDATE {} SET {c} = {c} WHERE FALSE", self.table, c = quote(column));
            match self.rt.block_on(self.conn.query_drop(probe)) {
                Ok(()) => {}
                Err(e) if is_privilege_error(&e) => {
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!("user {user} may not UPDATE column {column:?} of {}; nothing was written", self.table),
                    )
                    .hint(format!(
                        "GRANT UPDATE ({}) ON {} TO {grantee}",
                        quote(column),
                        self.table
                    )));
                }
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    fn count(&mut self) -> Option<u64> {
        let sql = format!("SELECT COUNT(*) FROM {}", self.table);
        self.rt.block_on(self.conn.query_first::<u64, _>(sql)).ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_never_break_out() {
        assert_eq!(quote("a`b"), "`a``b`");
        assert_eq!(quote("t`; DROP TABLE x; --"), "`t``; DROP TABLE x; --`");
        assert_eq!(literal("o'k\\"), "'o''k\\\\'");
    }

    /// An application's value that differs from what rekey read only in letter case (or
    /// trailing spaces) is equal under a case-insensitive collation: it must still win.
    #[test]
    #[ignore = "needs MariaDB: bash scripts/test.sh"]
    fn a_value_changed_only_in_case_is_not_overwritten() {
        let url = std::env::var("REKEY_TEST_MYSQL_URL").expect("REKEY_TEST_MYSQL_URL: run bash scripts/test.sh");
        let spec = TableSpec {
            url: url.clone(),
            table: "rekey_case_t".into(),
            columns: vec!["v".into()],
            ids: vec!["id".into()],
            into: None,
            context_columns: Vec::new(),
            batch_size: 10,
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let (mut admin, _) = connect(&rt, &url).expect("connect");
        rt.block_on(admin.query_drop(
            "DROP TABLE IF EXISTS rekey_case_t; \
             CREATE TABLE rekey_case_t (id INT PRIMARY KEY, v VARCHAR(64)) COLLATE utf8mb4_general_ci; \
             INSERT INTO rekey_case_t VALUES (1, 'abc'), (2, 'abc'), (3, 'abc')",
        ))
        .expect("table");
        let mut db = MysqlDb::open(&url, &spec).expect("open");
        let rows = db.page(None, 10).expect("page");
        assert_eq!(rows.len(), 3);
        // The application writes after rekey read: another case, trailing spaces.
        rt.block_on(admin.query_drop(
            "UPDATE rekey_case_t SET v = 'ABC' WHERE id = 1; UPDATE rekey_case_t SET v = 'abc ' WHERE id = 2",
        ))
        .expect("application write");
        let group = Group {
            set: "v".into(),
            guard: "v".into(),
            set_must_be_null: false,
            rows: rows
                .iter()
                .map(|r| Update { key: r.key.clone(), expect: r.cells[0].clone(), value: Cell::Text(b"new".to_vec()) })
                .collect(),
        };
        assert_eq!(db.update(&[group]).expect("update"), vec![vec![false, false, true]]);
        let values: Vec<String> = rt.block_on(admin.query("SELECT v FROM rekey_case_t ORDER BY id")).expect("read");
        assert_eq!(values, ["ABC", "abc ", "new"], "the application's writes stand");
        rt.block_on(admin.query_drop("DROP TABLE rekey_case_t")).expect("drop");
    }
}

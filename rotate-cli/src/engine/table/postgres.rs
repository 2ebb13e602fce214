//! PostgreSQL through tokio-postgres.
//!
//! The connection settings, TLS and RDS IAM authentication come as libpq
//! and AWS users expect ([`super::pg_connect`]).
//!
//! Keys travel as text (`id::text`) and are cast back to the column's type
//! in SQL, so any id type with a text form works. A batch of updates is one
//! statement: the keys, expected and new values are arrays joined with
//! `unnest`, and `RETURNING` names the rows that matched.

use std::collections::HashSet;

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::pg_connect::connect;
use super::spec::{Cell, Db, Group, KeyValue, Row, TableSpec, quote, quote_table};
use crate::engine::error::{Error, ErrorKind};

/// How a column's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Bytea,
}

/// A checked connection to one PostgreSQL table.
pub(crate) struct PgDb {
    rt: tokio::runtime::Runtime,
    client: Client,
    table: String,
    /// Quoted id columns and their types (for casts from text).
    ids: Vec<(String, String)>,
    kinds: std::collections::HashMap<String, Kind>,
    select: tokio_postgres::Statement,
    select_after: tokio_postgres::Statement,
    text_cells: Vec<Kind>,
    /// Update statements prepared so far, by their text.
    prepared: std::collections::HashMap<String, tokio_postgres::Statement>,
}

fn db_error(what: &str, e: &tokio_postgres::Error) -> Error {
    let message = match e.as_db_error() {
        Some(db) => format!("{what}: {} (SQLSTATE {})", db.message(), db.code().code()),
        None => format!("{what}: {e}"),
    };
    let error = Error::new(ErrorKind::Io, message);
    match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE => {
            error.hint("grant this role SELECT and UPDATE on the table (GRANT SELECT, UPDATE ON ... TO ...)")
        }
        Some(c) if *c == tokio_postgres::error::SqlState::INVALID_PASSWORD => {
            error.hint("set PGPASSWORD or add the password to ~/.pgpass (0600)")
        }
        _ if e.is_closed() => error.hint("the connection was lost; rerun the same command with --resume"),
        _ => error,
    }
}

impl PgDb {
    /// Connects (settings as libpq reads them) and checks the table.
    pub(crate) fn open(url: &str, spec: &TableSpec) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the database runtime", &e))?;
        let client = connect(&rt, url)?;
        rt.block_on(check(&client, spec)).and_then(|(ids, kinds)| {
            let table = quote_table(&spec.table);
            let key = ids.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ");
            // Aliased: an output column named like an id would otherwise be what ORDER BY sorts (as text).
            let mut selected: Vec<String> =
                ids.iter().enumerate().map(|(i, (c, _))| format!("{c}::text AS rekey_k{i}")).collect();
            let mut text_cells = Vec::new();
            for (i, c) in spec.columns.iter().enumerate() {
                let kind = kinds.get(c).copied().unwrap_or(Kind::Text);
                text_cells.push(kind);
                selected.push(match kind {
                    Kind::Text => format!("{}::text AS rekey_c{i}", quote(c)),
                    Kind::Bytea => format!("{} AS rekey_c{i}", quote(c)),
                });
            }
            selected.extend(
                spec.context_columns.iter().enumerate().map(|(i, c)| format!("{}::text AS rekey_x{i}", quote(c))),
            );
            // The shadow column, of the same kind as the rotated one (checked above).
            selected.push(match (&spec.into, text_cells.first()) {
                (Some(c), Some(Kind::Bytea)) => format!("{} AS rekey_s", quote(c)),
                (Some(c), _) => format!("{}::text AS rekey_s", quote(c)),
                (None, _) => "NULL::text AS rekey_s".to_owned(),
            });
            let n = ids.len();
            let casts: Vec<String> =
                ids.iter().enumerate().map(|(i, (_, t))| format!("(${}::text)::{t}", i + 1)).collect();
            let select = format!("SELECT {} FROM {table} ORDER BY {key} LIMIT $1", selected.join(", "));
            let select_after = format!(
                "SELECT {} FROM {table} WHERE ({key}) > ({}) ORDER BY {key} LIMIT ${}",
                selected.join(", "),
                casts.join(", "),
                n + 1
            );
            let (select, select_after) = rt
                .block_on(async {
                    Ok::<_, tokio_postgres::Error>((
                        client.prepare(&select).await?,
                        client.prepare(&select_after).await?,
                    ))
                })
                .map_err(|e| db_error("cannot read the table", &e))?;
            Ok(Self {
                rt,
                client,
                table,
                ids,
                kinds,
                select,
                select_after,
                text_cells,
                prepared: std::collections::HashMap::new(),
            })
        })
    }

    fn kind(&self, column: &str) -> Kind {
        self.kinds.get(column).copied().unwrap_or(Kind::Text)
    }

    /// `unnest($1::text[], ..., ) AS v(k0, ...,` for the keys, then the caller's arrays.
    fn unnest_keys(&self) -> (String, String) {
        let arrays: Vec<String> = (1..=self.ids.len()).map(|i| format!("${i}::text[]")).collect();
        let names: Vec<String> = (0..self.ids.len()).map(|i| format!("k{i}")).collect();
        (arrays.join(", "), names.join(", "))
    }

    fn key_join(&self) -> String {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, (c, t))| format!("t.{c} = (v.k{i})::{t}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The keys as one text array per id column.
    fn key_arrays(&self, keys: impl Iterator<Item = Vec<KeyValue>> + Clone) -> Vec<Vec<String>> {
        (0..self.ids.len())
            .map(|i| {
                keys.clone()
                    .map(|k| match k.get(i) {
                        Some(KeyValue::Text(s)) => s.clone(),
                        Some(KeyValue::Int(n)) => n.to_string(),
                        Some(KeyValue::Real(f)) => f.to_string(),
                        Some(KeyValue::Blob(b)) => format!("\\x{}", crate::engine::journal::hex(b)),
                        None => String::new(),
                    })
                    .collect()
            })
            .collect()
    }
}

type Ids = Vec<(String, String)>;
type Kinds = std::collections::HashMap<String, Kind>;

/// The table exists, has the columns (text or bytea for the rotated ones),
/// and the ids identify rows.
async fn check(client: &Client, spec: &TableSpec) -> Result<(Ids, Kinds), Error> {
    let err = |e: tokio_postgres::Error| db_error("cannot read the table's definition", &e);
    let oid: Option<u32> =
        client.query_one("SELECT to_regclass($1::text)::oid", &[&quote_table(&spec.table)]).await.map_err(err)?.get(0);
    let Some(oid) = oid else {
        let rows = client
            .query(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables \
                 WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
                &[],
            )
            .await
            .map_err(err)?;
        let tables: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        return Err(Error::usage(format!(
            "the database has no table {:?} (or this role may not see it); its tables are: {}",
            spec.table,
            tables.join(", ")
        ))
        .hint("name the table with --table (SCHEMA.TABLE outside the search path)"));
    };
    let rows = client
        .query(
            "SELECT a.attname::text, a.attnum, format_type(a.atttypid, NULL), \
                    CASE WHEN t.typname = 'bytea' THEN 'b' WHEN t.typcategory = 'S' THEN 's' ELSE 'o' END, a.attnotnull \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(err)?;
    let columns: Vec<(String, i16, String, String, bool)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
    let find = |name: &str| columns.iter().find(|c| c.0 == name);
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
    let mut kinds = Kinds::new();
    for c in spec.columns.iter().chain(&spec.into) {
        let Some((_, _, ty, cat, _)) = find(c) else { continue };
        let kind = match cat.as_str() {
            "b" => Kind::Bytea,
            "s" => Kind::Text,
            _ => {
                return Err(Error::usage(format!(
                    "column {c:?} is of type {ty}; rekey rotates text (text form) and bytea (binary form) columns"
                )));
            }
        };
        kinds.insert(c.clone(), kind);
    }
    if let Some(into) = &spec.into
        && kinds.get(into) != kinds.get(&spec.columns[0])
    {
        return Err(Error::usage(format!(
            "--into {into:?} and --column {:?} are of different kinds (text and bytea); make the shadow column the same type",
            spec.columns[0]
        )));
    }
    let ids: Ids = spec.ids.iter().filter_map(|c| find(c).map(|col| (quote(c), col.2.clone()))).collect();

    // Unique: a unique index (the primary key is one) on exactly the ids, without a predicate or expressions.
    let want: HashSet<i16> = spec.ids.iter().filter_map(|c| find(c).map(|col| col.1)).collect();
    let indexes = client
        .query(
            "SELECT i.indkey::int2[], i.indnkeyatts FROM pg_index i \
             WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL",
            &[&oid],
        )
        .await
        .map_err(err)?;
    let unique = indexes.iter().any(|r| {
        let keys: Vec<i16> = r.get(0);
        let n: i16 = r.get(1);
        let keys: HashSet<i16> = keys.into_iter().take(usize::try_from(n).unwrap_or(0)).collect();
        keys == want
    });
    let table = quote_table(&spec.table);
    let nullable = spec.ids.iter().any(|c| find(c).is_some_and(|col| !col.4));
    let key = ids.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ");
    let nulls = ids.iter().map(|(c, _)| format!("{c} IS NULL")).collect::<Vec<_>>().join(" OR ");
    let (dups, null_rows): (i64, i64) = match (unique, nullable) {
        (true, false) => (0, 0),
        (true, true) => {
            let r = client
                .query_one(&format!("SELECT 0::int8, (SELECT COUNT(*) FROM {table} WHERE {nulls})"), &[])
                .await
                .map_err(err)?;
            (r.get(0), r.get(1))
        }
        (false, _) => {
            let r = client
                .query_one(
                    &format!(
                        "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM {table} GROUP BY {key} HAVING COUNT(*) > 1) d), \
                                (SELECT COUNT(*) FROM {table} WHERE {nulls})"
                    ),
                    &[],
                )
                .await
                .map_err(err)?;
            (r.get(0), r.get(1))
        }
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
    Ok((ids, kinds))
}

fn cell_of(row: &tokio_postgres::Row, i: usize, kind: Kind) -> Result<Cell, tokio_postgres::Error> {
    Ok(match kind {
        Kind::Text => row.try_get::<_, Option<&str>>(i)?.map_or(Cell::Null, |s| Cell::Text(s.as_bytes().to_vec())),
        Kind::Bytea => row.try_get::<_, Option<&[u8]>>(i)?.map_or(Cell::Null, |b| Cell::Blob(b.to_vec())),
    })
}

/// A column of cells as the array parameter of its kind.
fn cell_array(cells: impl Iterator<Item = Cell>, kind: Kind) -> Box<dyn ToSql + Sync + Send> {
    match kind {
        Kind::Text => Box::new(
            cells
                .map(|c| match c {
                    Cell::Null => None,
                    Cell::Text(b) | Cell::Blob(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                })
                .collect::<Vec<Option<String>>>(),
        ),
        Kind::Bytea => Box::new(
            cells
                .map(|c| match c {
                    Cell::Null => None,
                    Cell::Text(b) | Cell::Blob(b) => Some(b),
                })
                .collect::<Vec<Option<Vec<u8>>>>(),
        ),
    }
}

fn array_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "text[]",
        Kind::Bytea => "bytea[]",
    }
}

impl Db for PgDb {
    fn page(&mut self, after: Option<&[KeyValue]>, limit: usize) -> Result<Vec<Row>, Error> {
        let err = |e: tokio_postgres::Error| db_error("cannot read the table", &e);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match after {
            None => self.rt.block_on(self.client.query(&self.select, &[&limit])),
            Some(key) => {
                let texts: Vec<String> = self.key_arrays(std::iter::once(key.to_vec())).into_iter().flatten().collect();
                let mut params: Vec<&(dyn ToSql + Sync)> = texts.iter().map(|t| t as &(dyn ToSql + Sync)).collect();
                params.push(&limit);
                self.rt.block_on(self.client.query(&self.select_after, &params))
            }
        }
        .map_err(err)?;
        let n = self.ids.len();
        let columns = self.text_cells.len();
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let width = r.len();
            let mut key = Vec::with_capacity(n);
            for i in 0..n {
                let v: Option<String> = r.try_get(i).map_err(err)?;
                key.push(KeyValue::Text(v.ok_or_else(|| {
                    Error::new(ErrorKind::BadInput, "a row has a NULL id; rows need a unique, non-NULL id")
                })?));
            }
            let mut cells = Vec::with_capacity(columns);
            for (j, kind) in self.text_cells.iter().enumerate() {
                cells.push(cell_of(r, n + j, *kind).map_err(err)?);
            }
            let mut context = Vec::new();
            for i in n + columns..width - 1 {
                context.push(r.try_get::<_, Option<String>>(i).map_err(err)?);
            }
            let shadow = cell_of(r, width - 1, self.text_cells.first().copied().unwrap_or(Kind::Text)).map_err(err)?;
            out.push(Row { key, cells, context, shadow });
        }
        Ok(out)
    }

    fn fetch(&mut self, column: &str, keys: &[Vec<KeyValue>]) -> Result<Vec<Option<Cell>>, Error> {
        let err = |e: tokio_postgres::Error| db_error("cannot read the table", &e);
        let kind = self.kind(column);
        let (arrays, names) = self.unnest_keys();
        let n = self.ids.len();
        let value = match kind {
            Kind::Text => format!("t.{}::text", quote(column)),
            Kind::Bytea => format!("t.{}", quote(column)),
        };
        let sql = format!(
            "SELECT v.i, {value} FROM unnest({arrays}, ${}::int4[]) AS v({names}, i) JOIN {} t ON {}",
            n + 1,
            self.table,
            self.key_join()
        );
        let key_arrays = self.key_arrays(keys.iter().cloned());
        let index: Vec<i32> = (0..keys.len()).filter_map(|i| i32::try_from(i).ok()).collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = key_arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        params.push(&index);
        let rows = self.rt.block_on(self.client.query(&sql, &params)).map_err(err)?;
        let mut out = vec![None; keys.len()];
        for r in &rows {
            let i: i32 = r.try_get(0).map_err(err)?;
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                *slot = Some(cell_of(r, 1, kind).map_err(err)?);
            }
        }
        Ok(out)
    }

    fn update(&mut self, groups: &[Group]) -> Result<Vec<Vec<bool>>, Error> {
        let err = |e: tokio_postgres::Error| db_error("cannot update the table", &e);
        let n = self.ids.len();
        let (arrays, names) = self.unnest_keys();
        let mut statements = Vec::with_capacity(groups.len());
        for g in groups {
            let (set_kind, guard_kind) = (self.kind(&g.set), self.kind(&g.guard));
            let null = if g.set_must_be_null { format!(" AND t.{} IS NULL", quote(&g.set)) } else { String::new() };
            let sql = format!(
                "UPDATE {} AS t SET {} = v.val FROM unnest({arrays}, ${}::{}, ${}::{}, ${}::int4[]) AS v({names}, expect, val, i) \
                 WHERE {} AND t.{} IS NOT DISTINCT FROM v.expect{null} RETURNING v.i",
                self.table,
                quote(&g.set),
                n + 1,
                array_type(guard_kind),
                n + 2,
                array_type(set_kind),
                n + 3,
                self.key_join(),
                quote(&g.guard),
            );
            let key_arrays = self.key_arrays(g.rows.iter().map(|u| u.key.clone()));
            let mut params: Vec<Box<dyn ToSql + Sync + Send>> =
                key_arrays.into_iter().map(|a| Box::new(a) as Box<dyn ToSql + Sync + Send>).collect();
            params.push(cell_array(g.rows.iter().map(|u| u.expect.clone()), guard_kind));
            params.push(cell_array(g.rows.iter().map(|u| u.value.clone()), set_kind));
            params.push(Box::new((0..g.rows.len()).filter_map(|i| i32::try_from(i).ok()).collect::<Vec<i32>>()));
            statements.push((sql, params, g.rows.len()));
        }
        // Prepared once per statement shape: a batch then costs one round trip, not two.
        for (sql, _, _) in &statements {
            if !self.prepared.contains_key(sql) {
                let prepared = self.rt.block_on(self.client.prepare(sql)).map_err(err)?;
                self.prepared.insert(sql.clone(), prepared);
            }
        }
        let prepared = &self.prepared;
        let client = &self.client;
        self.rt
            .block_on(async move {
                // One statement is a transaction of its own: one round trip. Several run in one.
                let single = statements.len() == 1;
                if !single {
                    client.batch_execute("BEGIN").await?;
                }
                let run = async {
                    let mut out = Vec::with_capacity(statements.len());
                    for (sql, params, len) in &statements {
                        let refs: Vec<&(dyn ToSql + Sync)> =
                            params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
                        let rows = match prepared.get(sql) {
                            Some(statement) => client.query(statement, &refs).await?,
                            None => client.query(sql.as_str(), &refs).await?,
                        };
                        let mut applied = vec![false; *len];
                        for r in rows {
                            let i: i32 = r.try_get(0)?;
                            if let Some(slot) = usize::try_from(i).ok().and_then(|i| applied.get_mut(i)) {
                                *slot = true;
                            }
                        }
                        out.push(applied);
                    }
                    Ok::<_, tokio_postgres::Error>(out)
                };
                match run.await {
                    Ok(out) => {
                        if !single {
                            client.batch_execute("COMMIT").await?;
                        }
                        Ok(out)
                    }
                    Err(e) => {
                        if !single {
                            let _ = client.batch_execute("ROLLBACK").await;
                        }
                        Err(e)
                    }
                }
            })
            .map_err(err)
    }

    fn check_update(&mut self, columns: &[String]) -> Result<(), Error> {
        let err = |e: tokio_postgres::Error| db_error("cannot check this role's privileges", &e);
        for column in columns {
            let row = self
                .rt
                .block_on(self.client.query_one(
                    "SELECT has_column_privilege($1, $2, 'UPDATE'), current_user::text",
                    &[&self.table, column],
                ))
                .map_err(err)?;
            let (allowed, role): (bool, String) = (row.try_get(0).map_err(err)?, row.try_get(1).map_err(err)?);
            if !allowed {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("role {role} may not UPDATE column {column:?} of {}; nothing was written", self.table),
                )
                .hint(format!(
                    "GRANT UPDATE ({}) ON {} TO {}",
                    quote(column),
                    self.table,
                    quote(&role)
                )));
            }
        }
        Ok(())
    }

    fn count(&mut self) -> Option<u64> {
        let sql = format!("SELECT COUNT(*) FROM {}", self.table);
        let row = self.rt.block_on(self.client.query_one(sql.as_str(), &[])).ok()?;
        u64::try_from(row.get::<_, i64>(0)).ok()
    }
}

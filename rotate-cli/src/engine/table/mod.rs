//! Database tables: encrypted columns rotated in place (or into a shadow
//! column), in SQLite, PostgreSQL (over TLS, with passwords or RDS IAM
//! tokens), or MySQL and MariaDB (over TLS).
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

mod db;
mod mysql;
mod mysql_config;
mod mysql_connect;
mod pg_config;
mod pg_connect;
mod pg_tls;
mod postgres;
mod rds_iam;
mod rollback;
mod sink;
mod source;
mod spec;
mod sqlite;
mod target;
mod verify;

pub use self::pg_config::{IAM_AUTH_PARAM, redact_url};
pub use self::rollback::{RowUndo, is_table_run, rollback, run_params};
pub use self::sink::TableSink;
pub(crate) use self::sink::fit;
pub use self::source::TableSource;
pub(crate) use self::spec::Cell;
pub use self::spec::{DEFAULT_BATCH_SIZE, RowUnit, TableSpec, is_database_url};
pub use self::target::TableTarget;
pub use self::verify::{CopyCheck, CopyTally};

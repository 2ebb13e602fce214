//! The rotation engine: one loop for every target.
//!
//! A [`Source`] streams [`Unit`]s (a file, a record; later an S3 object or
//! a row), each holding one or more items. The engine owns, once for every
//! target: selection (`--sample`, `--shard`, `--limit`), resume from the
//! journal, a preflight on the first item before anything is written,
//! bounded parallelism with results kept in source order, per-item retries,
//! the failure report, `--max-failures`, interruption, progress and the
//! summary. A [`Sink`] makes results durable: concurrently per unit
//! ([`Sink::write`], e.g. a file replaced in place) and in source order
//! ([`Sink::commit`], e.g. an output stream with checkpoints). A dry run is
//! a sink that writes nothing; a scan is a sink that only counts.

pub mod dynamodb;
pub mod error;
pub mod files;
pub mod format;
mod item;
pub mod journal;
mod ports;
pub mod records;
pub mod report;
mod run;
pub mod s3;
pub mod scan;
mod settings;
pub mod table;
pub mod target;
pub mod transform;

pub use self::error::{Error, ErrorKind, ItemError, ItemErrorCode};
pub use self::item::{Item, Unit};
pub use self::ports::{Progress, Rejected, Silent, Sink, Source};
pub use self::run::{Engine, apply_with_retries};
pub use self::settings::{Settings, Shard};
pub use self::target::{Rotation, ScanOutput, Target, TargetFuture};

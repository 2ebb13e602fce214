//! DynamoDB tables: encrypted attributes rotated in place (or into a shadow
//! attribute), item by item.
//!
//! Reading is a parallel `Scan` (`--segments`), projecting only the key
//! attributes and the named ones, the key schema from `DescribeTable`.
//! `--shard I/N` takes every Nth segment, so N processes cover the table
//! exactly once; each segment's last evaluated key is checkpointed in the
//! journal once every item before it is written, and `--resume` starts each
//! segment after its own.
//!
//! Writing is one `UpdateItem` per changed DynamoDB item (every rotated
//! attribute at once), conditional on each attribute still holding the
//! value read (and, with `--version-attribute`, on the version read, which
//! the update bumps): a concurrent application write is never overwritten
//! and the item is reported `changed_during_rotation`. Before it, a
//! [`Entry::Change`](crate::engine::journal::Entry::Change) holding the old
//! values is appended and synced; `rekey rollback` puts them back where the
//! item still holds what rekey wrote. Binary (`B`) attributes stay binary
//! and string (`S`) attributes stay strings.
//!
//! Throttling (`ProvisionedThroughputExceededException`) is retried by the
//! SDK with backoff and counted for the summary.

mod client;
mod rollback;
mod sink;
mod source;
mod spec;
mod target;
#[cfg(test)]
mod tests;

pub use self::client::DynamoClient;
pub use self::rollback::rollback;
pub use self::sink::DynamoSink;
pub use self::source::{DynamoSource, DynamoUnit};
pub use self::spec::{DEFAULT_SEGMENTS, DynamoSpec, KIND, is_dynamodb_url, parse_url};
pub use self::target::DynamoTarget;

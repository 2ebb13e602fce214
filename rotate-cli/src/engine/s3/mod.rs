//! S3 objects as engine targets: the operations guide's methods A and B.
//!
//! - **Method A** ([`S3Job::MetadataKey`]): a KMS-encrypted data key kept
//!   (base64) in a user-metadata entry is re-wrapped by the engine's
//!   transform (KMS ReEncrypt: the data key never leaves KMS), and the object
//!   is copied onto itself with only that entry replaced. The body is never
//!   read.
//! - **Method B** ([`S3Job::Sse`]): the SSE-KMS key of an object is changed,
//!   with `UpdateObjectEncryption` where the endpoint has it (no data moves;
//!   ETag, metadata and dates are kept) and by a self-copy otherwise
//!   (multipart `UploadPartCopy` above a threshold, 5 GB by default, S3's
//!   limit for one copy).
//!
//! Every self-copy carries over what a copy with `MetadataDirective=REPLACE`
//! would otherwise drop: the other user metadata, Content-Type, -Encoding,
//! -Disposition, -Language, Cache-Control, Expires, the website redirect, the
//! storage class, the object lock settings when HeadObject shows them, and the
//! server-side encryption (a self-copy without the SSE headers turns an
//! SSE-KMS object into SSE-S3). Tags are kept by `TaggingDirective=COPY` (and
//! read and resent for a multipart copy). The copy names the version read
//! (versioned buckets) and is conditional on the ETag read
//! (`x-amz-copy-source-if-match`); since some S3-compatible servers ignore
//! that condition, the object is also read again just before the copy and
//! compared (ETag, version, modification time, metadata), so a concurrent
//! writer is reported as `changed_during_rotation` and never overwritten.
//!
//! Inventory: ListObjectsV2, one page at a time (never the whole listing),
//! in key order, filtered by globs on the key relative to the prefix. Only
//! current versions are rotated: older versions of a versioned bucket stay
//! under the old key until they expire.
//!
//! Journal: an [`Entry::Object`] holding the old metadata value or the old
//! encryption settings, synced before the change; `rekey rollback` puts them

mod backup;
mod batch;
mod body;
mod client;
mod copy;
mod listing;
mod object;
mod rollback;
mod s3ec;
mod scan;
mod sink;
mod target;
#[cfg(test)]
mod tests;

pub use self::backup::check_backup_prefix;
pub use self::batch::BatchJobSink;
pub use self::body::READ_WHOLE_UP_TO;
pub use self::client::{
    ClientSettings, DEFAULT_PART_SIZE, MAX_SINGLE_COPY, MIN_PART_SIZE, S3Url, client, is_s3_url, same_key,
};
pub(crate) use self::client::{blocking, check_plain_http};
pub use self::copy::update_supported;
pub use self::listing::{MAX_KEY_BYTES, S3Source};
pub use self::object::{Head, ObjectUnit, Probe, S3Job, SseJob, SseMethod};
pub use self::rollback::{is_s3_run, rollback, run_params};
pub use self::s3ec::inspect_object;
pub use self::scan::{S3ScanReport, S3ScanSink, S3ecCounts};
pub use self::sink::ObjectSink;
pub use self::target::S3Target;

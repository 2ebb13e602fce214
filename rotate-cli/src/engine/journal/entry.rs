//! The journal's entries: what each line records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::report::Counts;

/// The journal format this build writes. Version 3 records encryption
/// contexts as canonical JSON objects ([`context_param`]); version 2
/// recorded them in Rust's debug form, and is compared in that form
/// ([`in_version_2_form`]) so its runs still resume.
pub(super) const FORMAT_VERSION: u32 = 3;

/// The parameters of a run, compared on `--resume`: name to value.
pub type RunParams = BTreeMap<String, String>;

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// The first line: what run this is.
    Run {
        /// The journal format.
        version: u32,
        /// The run's parameters.
        params: RunParams,
    },
    /// Written and synced before an item is replaced.
    Begin {
        /// The unit's id.
        item: String,
        /// SHA-256 of the unit as it was.
        old_sha256: String,
        /// SHA-256 of the unit as rekey writes it.
        new_sha256: String,
        /// What rollback needs to rebuild the original.
        undo: Undo,
        /// The unit held legacy CBC records, never authenticated.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        legacy: bool,
    },
    /// The replacement is in place.
    Done {
        /// The unit's id.
        item: String,
    },
    /// The replacement was not made (the unit changed under the run).
    Abandoned {
        /// The unit's id.
        item: String,
    },
    /// Ordered progress (streams, tables): everything up to here is durable.
    Checkpoint {
        /// Where the run is.
        #[serde(flatten)]
        at: Checkpoint,
        /// Counts up to here, so a resumed run reports the whole job.
        counts: Counts,
    },
    /// Written and synced before a table row's column is updated: what
    /// rollback needs to put it back (ciphertext only).
    Row {
        /// How reports name the item (`users id=42 ssn`); an `Abandoned`
        /// entry with this name says the update did not happen.
        item: String,
        /// The row's key: a JSON array of the id columns' values.
        key: String,
        /// The column written.
        column: String,
        /// SHA-256 of the value before; absent when it was NULL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_sha256: Option<String>,
        /// SHA-256 of the value rekey wrote.
        new_sha256: String,
        /// The value before, base64; absent when it was NULL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_b64: Option<String>,
        /// The value is binary (a blob or bytea), not text.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        binary: bool,
        /// The value was a legacy CBC record, never authenticated.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        legacy: bool,
    },
    /// Written and synced before an S3 object is copied onto itself (or its
    /// encryption updated): what rollback needs to put it back, and what
    /// rekey wrote, so rollback only touches objects still as rekey left them.
    Object {
        /// How reports name the object (`s3://bucket/key`); `Done` and
        /// `Abandoned` entries use the same name.
        item: String,
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        /// The version read (versioned buckets: it stays as the backup).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version_id: Option<String>,
        /// The ETag read.
        etag: String,
        /// What changed, and its old value.
        undo: ObjectUndo,
    },
    /// Written and synced before a change to an item of any target that
    /// records its own undo: what rollback needs to put it back
    /// (ciphertext and hashes only). Targets added since the journal had
    /// `Row` and `Object` write this; `Done` and `Abandoned` entries name
    /// the same `item`.
    Change {
        /// How reports name the item.
        item: String,
        /// The target kind ([`Target::kind`](super::Target::kind)) whose rollback reads `undo`.
        target: String,
        /// The target's own undo record, which its rollback parses.
        undo: serde_json::Value,
    },
    /// A stream finished and its output was renamed into place.
    Complete {
        /// The output path.
        output: String,
    },
}

/// How far an ordered target got: what a resumed run starts after.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    /// Units consumed from the source.
    pub records: u64,
    /// Output bytes durable on disk (streams).
    #[serde(default)]
    pub output_bytes: u64,
    /// A target's own position, such as the last key of a table (keyset pagination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
}

/// What rollback needs to put an item back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Undo {
    /// A rewrap changed only the key list: the old list, with the unchanged
    /// header core and body of the new item, rebuilds the original exactly.
    KeyList {
        /// The encoded old key list, base64.
        edks_b64: String,
    },
    /// The whole original, base64 (re-encryptions, bare keys).
    Original {
        /// The original bytes, base64.
        b64: String,
    },
    /// The original kept as a file beside the item (a streamed re-encryption).
    Backup {
        /// Where it is.
        path: String,
    },
}

/// What rollback needs to put an S3 object back (ciphertext and key ids only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ObjectUndo {
    /// A user-metadata entry holding a wrapped data key was replaced.
    Metadata {
        /// The metadata entry's name (without `x-amz-meta-`).
        name: String,
        /// Its old value, base64 of the stored text.
        old_b64: String,
        /// SHA-256 of the value rekey wrote.
        new_sha256: String,
    },
    /// An object whose body is a rekey envelope got a new key list.
    Envelope {
        /// The old key list (as in [`Undo::KeyList`]): with the new object's
        /// unchanged header core and body it rebuilds the original.
        edks_b64: String,
        /// SHA-256 of what was read (the whole object, or its header).
        old_sha256: String,
        /// SHA-256 of what rekey wrote (the whole object, or its header).
        new_sha256: String,
        /// Only the header was read and rewritten (a large framed envelope).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        header_only: bool,
    },
    /// An object was re-encrypted: its original is kept in the bucket.
    Original {
        /// A copy of the original in the same bucket (unversioned buckets).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup_key: Option<String>,
        /// The original's version (versioned buckets).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version_id: Option<String>,
        /// SHA-256 of the original.
        old_sha256: String,
        /// SHA-256 of what rekey wrote.
        new_sha256: String,
    },
    /// The object's server-side encryption was changed.
    Sse {
        /// The old `x-amz-server-side-encryption` (`aws:kms`, `AES256`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_algorithm: Option<String>,
        /// The old SSE-KMS key id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_kms_key: Option<String>,
        /// The old S3 Bucket Key setting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_bucket_key: Option<bool>,
        /// The SSE-KMS key rekey set.
        new_kms_key: String,
    },
}

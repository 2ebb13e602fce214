//! What a run knows of an object: the job, what HeadObject said, the unit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{ObjectLockLegalHoldStatus, ObjectLockMode, ServerSideEncryption, StorageClass};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use envelope_core::{EncryptedDataKey, EncryptionContext};

use super::client::{changed, item_error};
use crate::engine::error::ItemError;
use crate::engine::transform::Transform;

/// How method B changes an object's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseMethod {
    /// `UpdateObjectEncryption`, falling back to the copy when the endpoint
    /// answers that it does not implement it.
    Auto,
    /// `UpdateObjectEncryption` only.
    Update,
    /// The self-copy only.
    Copy,
}

impl SseMethod {
    /// Its name, as journals and summaries give it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Update => "update",
            Self::Copy => "copy",
        }
    }
}

/// Method B's parameters.
#[derive(Debug, Clone)]
pub struct SseJob {
    /// The destination KMS key (its ARN, ideally: S3 reports ARNs).
    pub to: String,
    /// Only objects under these keys (empty: every object not under `to`).
    pub from: Vec<String>,
    /// How.
    pub method: SseMethod,
    /// The S3 Bucket Key setting to set; `None` keeps each object's.
    pub bucket_key: Option<bool>,
    /// Objects larger than this are copied in parts.
    pub multipart_from: u64,
    /// Part size of a multipart copy.
    pub part_size: u64,
}

/// What a run does to each object.
#[derive(Debug, Clone)]
pub enum S3Job {
    /// Method A: the user-metadata entry `name` holds a wrapped data key.
    MetadataKey {
        /// The entry's name, without `x-amz-meta-` (S3 lowercases it).
        name: String,
    },
    /// Method B: change the SSE-KMS key.
    Sse(SseJob),
    /// The object's body is a rekey envelope: its key list is re-wrapped.
    /// Objects up to 8 MiB are read and written whole (`PutObject` with
    /// `If-Match`); larger framed envelopes only by their header (a ranged
    /// GET): the new object is the new header with the old body, uploaded in
    /// parts whose first carries the header and the body's first 8 MiB and
    /// the rest are `UploadPartCopy` ranges of the object itself (constant
    /// memory, the body never passes through whole, no plaintext anywhere).
    /// A re-encryption first keeps the original: the previous version on a
    /// versioned bucket, a copy under `backup_prefix` in the same bucket
    /// otherwise. Objects over 8 MiB are re-encrypted as they stream, from
    /// the download through the frames into a multipart upload.
    Envelope {
        /// Where originals of re-encrypted objects are copied on unversioned buckets.
        backup_prefix: String,
    },
    /// Objects written by the Amazon S3 Encryption Client: the wrapped key
    /// in `x-amz-key-v2` / `x-amz-3` (or `x-amz-key`), in the object's
    /// metadata or its instruction file, re-wrapped under the object's own
    /// KMS encryption context; the body is never read.
    S3ec {
        /// The instruction file of `KEY` is `KEY{instruction_suffix}`.
        instruction_suffix: String,
        /// Where originals of rewritten instruction files are copied on unversioned buckets.
        backup_prefix: String,
    },
    /// Count keys: SSE-KMS key ids, and the metadata entry when named.
    Scan {
        /// The user-metadata entry holding a data key, if any.
        metadata_key: Option<String>,
    },
}

/// Everything the workers share.
pub(super) struct Shared {
    pub(super) client: Client,
    pub(super) bucket: String,
    pub(super) job: S3Job,
    pub(super) probe: Option<Probe>,
    /// `UpdateObjectEncryption` was found missing: copy from now on.
    pub(super) update_unavailable: AtomicBool,
    /// `--sse-context`, base64 JSON: see [`Head`].
    pub(super) sse_context: Option<String>,
}

/// Tells whether a bare data key is already under the destination key,
/// without any plaintext: KMS ReEncrypt from the destination to itself,
/// with the destination context, succeeds only for such a key. Opaque
/// blobs name no key, so this is how a rerun skips what is done.
pub struct Probe {
    pub(super) transform: Arc<Transform>,
    pub(super) context: EncryptionContext,
    /// Probe before the transform while every object so far was already
    /// done (a rerun: one call per object, and the preflight passes);
    /// after the first object that needed work, probe only objects whose
    /// transform failed (a first run: no extra call per object).
    pub(super) first: AtomicBool,
}

impl Probe {
    /// A probe with the run's transform and destination context.
    pub fn new(transform: Arc<Transform>, context: EncryptionContext) -> Self {
        Self { transform, context, first: AtomicBool::new(true) }
    }

    /// Marks `item` skipped when its blob is under the destination already,
    /// probing before the transform only while every item so far was (a rerun).
    pub(crate) async fn skip_if_done(&self, item: &mut crate::engine::Item) {
        if item.result.is_some() || item.bytes.is_empty() || !self.first.load(Ordering::Relaxed) {
            return;
        }
        if self.under_destination(&item.bytes, &item.context).await {
            item.result = Some(Ok(crate::engine::transform::Outcome::Skipped));
        } else {
            self.first.store(false, Ordering::Relaxed);
        }
    }

    /// Marks `item` skipped when its transform failed for good because its
    /// blob is under the destination already (a resumed or repeated run).
    pub(crate) async fn rescue(&self, item: &mut crate::engine::Item) {
        use crate::engine::error::ItemErrorCode;
        let Some(Err(e)) = &item.result else {
            return;
        };
        if e.code.is_transient()
            || matches!(
                e.code,
                ItemErrorCode::MissingField | ItemErrorCode::ChangedDuringRotation | ItemErrorCode::BadInput
            )
        {
            return;
        }
        if self.under_destination(&item.bytes, &item.context).await {
            item.result = Some(Ok(crate::engine::transform::Outcome::Skipped));
        }
    }

    /// Whether `value` is a blob under the destination already, with the
    /// destination context and the item's own pairs (`row`).
    pub(crate) async fn under_destination(&self, value: &[u8], row: &EncryptionContext) -> bool {
        let mut context = self.context.clone();
        for (k, v) in row.iter() {
            let clashes = context.get(k).map(|have| have != v);
            match clashes {
                Some(false) => {}
                Some(true) => return false,
                None => {
                    if context.insert(k, v).is_err() {
                        return false;
                    }
                }
            }
        }
        let blob = std::str::from_utf8(value)
            .ok()
            .and_then(|t| STANDARD.decode(t.trim_ascii()).ok())
            .unwrap_or_else(|| value.to_vec());
        let Some(destination) = self.transform.destination() else {
            return false;
        };
        let Ok(edk) = EncryptedDataKey::new(destination.provider_id(), destination.key_id(), blob) else {
            return false;
        };
        destination.rewrap(&edk, &context, &context, &[destination]).await.is_ok()
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").finish_non_exhaustive()
    }
}

/// What HeadObject said about an object: everything a self-copy must carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Head {
    pub(super) etag: String,
    pub(super) version_id: Option<String>,
    pub(super) last_modified: Option<DateTime>,
    pub(super) size: u64,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) content_type: Option<String>,
    pub(super) content_encoding: Option<String>,
    pub(super) content_disposition: Option<String>,
    pub(super) content_language: Option<String>,
    pub(super) cache_control: Option<String>,
    pub(super) expires: Option<String>,
    pub(super) website_redirect: Option<String>,
    pub(super) storage_class: Option<StorageClass>,
    pub(super) sse: Option<ServerSideEncryption>,
    pub(super) kms_key: Option<String>,
    pub(super) bucket_key: Option<bool>,
    pub(super) sse_customer: bool,
    pub(super) lock_mode: Option<ObjectLockMode>,
    pub(super) lock_until: Option<DateTime>,
    pub(super) legal_hold: Option<ObjectLockLegalHoldStatus>,
    /// The SSE-KMS encryption context to give every copy (base64 JSON, as
    /// the header takes it). S3 never returns an object's context, so this
    /// is the run's `--sse-context`, not something read.
    pub(super) sse_context: Option<String>,
}

impl Head {
    /// The SSE-KMS key id, when the object is under one.
    pub fn kms_key(&self) -> Option<&str> {
        self.kms_key.as_deref().filter(|_| self.is_kms())
    }

    pub(super) fn is_kms(&self) -> bool {
        matches!(&self.sse, Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse))
    }

    /// The encryption context for a write under `sse`: only SSE-KMS takes one.
    pub(super) fn context_for(&self, sse: Option<&ServerSideEncryption>) -> Option<String> {
        let kms = matches!(sse, Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse));
        self.sse_context.clone().filter(|_| kms)
    }
}

/// Where an S3 Encryption Client object keeps the wrapped key rekey replaces.
#[derive(Debug, Clone)]
pub(super) enum KeyPlace {
    /// The object's user-metadata entry of that name.
    Metadata { entry: &'static str },
    /// The instruction file, as read.
    InstructionFile { key: String, head: Box<Head>, body: Vec<u8>, entry: &'static str },
}

/// What an S3 unit carries.
pub struct ObjectUnit {
    pub(super) shared: Arc<Shared>,
    pub(super) key: String,
    pub(super) head: Option<Head>,
    /// Where an S3 Encryption Client object's wrapped key is (`S3Job::S3ec`).
    pub(super) s3ec: Option<KeyPlace>,
}

impl std::fmt::Debug for ObjectUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectUnit").field("key", &self.key).finish_non_exhaustive()
    }
}

/// HeadObject, as a [`Head`].
pub(super) async fn head(client: &Client, bucket: &str, key: &str) -> Result<Head, ItemError> {
    let out = client.head_object().bucket(bucket).key(key).send().await.map_err(|e| item_error("HeadObject", &e))?;
    Ok(Head {
        etag: out.e_tag().unwrap_or_default().to_owned(),
        version_id: out.version_id().filter(|v| *v != "null").map(str::to_owned),
        last_modified: out.last_modified().copied(),
        size: out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        metadata: out.metadata().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
        content_type: out.content_type().map(str::to_owned),
        content_encoding: out.content_encoding().map(str::to_owned),
        content_disposition: out.content_disposition().map(str::to_owned),
        content_language: out.content_language().map(str::to_owned),
        cache_control: out.cache_control().map(str::to_owned),
        expires: out.expires_string().map(str::to_owned),
        website_redirect: out.website_redirect_location().map(str::to_owned),
        storage_class: out.storage_class().cloned(),
        sse: out.server_side_encryption().cloned(),
        kms_key: out.ssekms_key_id().map(str::to_owned),
        bucket_key: out.bucket_key_enabled(),
        sse_customer: out.sse_customer_algorithm().is_some(),
        lock_mode: out.object_lock_mode().cloned(),
        lock_until: out.object_lock_retain_until_date().copied(),
        legal_hold: out.object_lock_legal_hold_status().cloned(),
        sse_context: None,
    })
}

/// Reads the object again and compares it with what was read: some servers
/// ignore `x-amz-copy-source-if-match`, so this closes all but a tiny window
/// there (and S3 itself closes that one with the condition).
pub(super) async fn still_as_read(client: &Client, bucket: &str, key: &str, read: &Head) -> Result<(), ItemError> {
    let now = head(client, bucket, key).await?;
    if now.etag != read.etag
        || now.version_id != read.version_id
        || now.last_modified != read.last_modified
        || now.metadata != read.metadata
        || now.kms_key != read.kms_key
    {
        return Err(changed());
    }
    Ok(())
}

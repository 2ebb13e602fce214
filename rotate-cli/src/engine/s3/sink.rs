//! The sink that changes objects: journal first, then the copy or the
//! key change, each conditional.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use aws_sdk_s3::types::ServerSideEncryption;

use super::body::{put_whole, reencrypt_streamed, reencrypt_whole, rewrite_header};
use super::client::{DEFAULT_PART_SIZE, MAX_SINGLE_COPY, io_error, same_key};
use super::copy::{CopyChange, Written, self_copy, update_encryption};
use super::object::{ObjectUnit, S3Job, SseMethod, head, still_as_read};
use crate::engine::error::{Error, ItemError, ItemErrorCode};
use crate::engine::item::Unit;
use crate::engine::journal::{self, Checkpoint, Entry, Journal, ObjectUndo};
use crate::engine::ports::{Rejected, Sink};
use crate::engine::report::Counts;
use crate::engine::transform::Outcome;

/// Changes objects, journal first: method A (a metadata entry) or B (SSE).
#[derive(Debug, Default)]
pub struct ObjectSink {
    pub(super) journal: OnceLock<Arc<Journal>>,
}

impl ObjectSink {
    /// A sink writing to the journal it is started with.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl Sink<ObjectUnit> for ObjectSink {
    fn start(&self, journal: Option<Arc<Journal>>, _checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        let journal = journal.ok_or_else(|| Error::usage("changing S3 objects needs a journal"))?;
        let _ = self.journal.set(journal);
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<ObjectUnit>) -> Result<(), ItemError> {
        let shared = Arc::clone(&unit.payload.shared);
        let Some(read) = unit.payload.head.clone() else {
            return Ok(());
        };
        let Some(item) = unit.items.first_mut() else {
            return Ok(());
        };
        // Method A, a failed transform: maybe the key is already under the destination.
        if let (Some(probe), Some(Err(e))) = (&shared.probe, &item.result)
            && !e.code.is_transient()
            && !matches!(e.code, ItemErrorCode::MissingField | ItemErrorCode::ChangedDuringRotation)
            && probe.under_destination(&item.bytes, &item.context).await
        {
            item.result = Some(Ok(Outcome::Skipped));
            return Ok(());
        }
        let Some(Ok(Outcome::Changed { new, old_edks, .. })) = &item.result else {
            return Ok(());
        };
        let journal = Arc::clone(self.journal.get().ok_or_else(|| ItemError::new(ItemErrorCode::Io, "no journal"))?);
        let (client, bucket, key) = (&shared.client, shared.bucket.as_str(), unit.payload.key.as_str());
        if let S3Job::Envelope { backup_prefix } = &shared.job {
            let Some(old_edks) = old_edks else {
                let (id, original) = (unit.id.clone(), item.bytes.clone());
                if item.header_only {
                    let Some(Ok(Outcome::Changed { job: Some(job), .. })) = &item.result else {
                        return Err(ItemError::new(ItemErrorCode::Io, "internal error: no streamed re-encryption"));
                    };
                    let job = Arc::clone(job);
                    return reencrypt_streamed(client, bucket, key, &read, &journal, &id, job, backup_prefix).await;
                }
                let new = new.clone();
                return reencrypt_whole(client, bucket, key, &read, &journal, &id, &original, new, backup_prefix).await;
            };
            let undo = ObjectUndo::Envelope {
                edks_b64: journal::key_list(old_edks),
                old_sha256: journal::sha256(&item.bytes),
                new_sha256: journal::sha256(new),
                header_only: item.header_only,
            };
            still_as_read(client, bucket, key, &read).await?;
            let entry = Entry::Object {
                item: unit.id.clone(),
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version_id: read.version_id.clone(),
                etag: read.etag.clone(),
                undo,
            };
            journal.append(&entry, true).map_err(|e| io_error("cannot write the journal", &e))?;
            let written = if item.header_only {
                rewrite_header(client, bucket, key, &read, new, item.bytes.len()).await
            } else {
                put_whole(client, bucket, key, &read, new.clone()).await
            };
            return match written {
                Ok(()) => journal
                    .append(&Entry::Done { item: unit.id.clone() }, false)
                    .map_err(|e| io_error("cannot write the journal", &e)),
                Err(e) => {
                    if e.code == ItemErrorCode::ChangedDuringRotation {
                        let _ = journal.append(&Entry::Abandoned { item: unit.id.clone() }, false);
                    }
                    Err(e)
                }
            };
        }
        let new = String::from_utf8(new.clone())
            .map_err(|_| ItemError::new(ItemErrorCode::BadInput, "internal: a new value that is not text"))?;
        let (undo, change, sse_job) = match &shared.job {
            S3Job::MetadataKey { name } => {
                let old = String::from_utf8_lossy(&item.bytes).into_owned();
                let undo = ObjectUndo::Metadata {
                    name: name.to_ascii_lowercase(),
                    old_b64: journal::b64(old.as_bytes()),
                    new_sha256: journal::sha256(new.as_bytes()),
                };
                (undo, CopyChange::Metadata { name: name.clone(), value: new }, None)
            }
            S3Job::Sse(job) => {
                let undo = ObjectUndo::Sse {
                    old_algorithm: read.sse.as_ref().map(|s| s.as_str().to_owned()),
                    old_kms_key: read.kms_key().map(str::to_owned),
                    old_bucket_key: read.bucket_key,
                    new_kms_key: job.to.clone(),
                };
                let bucket_key = job.bucket_key.or(read.bucket_key.filter(|_| read.is_kms()));
                let change = CopyChange::Sse {
                    algorithm: Some(ServerSideEncryption::AwsKms),
                    kms_key: Some(job.to.clone()),
                    bucket_key,
                };
                (undo, change, Some(job))
            }
            S3Job::Scan { .. } | S3Job::Envelope { .. } => return Ok(()),
        };
        still_as_read(client, bucket, key, &read).await?;
        let entry = Entry::Object {
            item: unit.id.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: read.version_id.clone(),
            etag: read.etag.clone(),
            undo,
        };
        journal.append(&entry, true).map_err(|e| io_error("cannot write the journal", &e))?;
        let result = match sse_job {
            Some(job) if job.method != SseMethod::Copy && !shared.update_unavailable.load(Ordering::Relaxed) => {
                let CopyChange::Sse { bucket_key, .. } = &change else { unreachable!("an SSE job changes SSE") };
                match update_encryption(client, bucket, key, &read, &job.to, *bucket_key).await {
                    Ok(true) => {
                        // The operation keeps the data and the ETag: anything else is not it.
                        let now = head(client, bucket, key).await?;
                        if now.etag != read.etag || !now.kms_key().is_some_and(|k| same_key(k, &job.to)) {
                            Err(ItemError::new(
                                ItemErrorCode::Io,
                                "UpdateObjectEncryption was answered but the object is not the one read under the new key; \
                                 check it (and its previous version), and rerun with --method copy",
                            ))
                        } else {
                            Ok(Written { version_id: read.version_id.clone() })
                        }
                    }
                    Ok(false) if job.method == SseMethod::Auto => {
                        if !shared.update_unavailable.swap(true, Ordering::Relaxed) {
                            tracing::warn!("the endpoint does not implement UpdateObjectEncryption; copying instead");
                        }
                        self_copy(client, bucket, key, &read, &change, job.multipart_from, job.part_size).await
                    }
                    Ok(false) => Err(ItemError::new(
                        ItemErrorCode::Io,
                        "the endpoint does not implement UpdateObjectEncryption; rerun with --method copy",
                    )),
                    Err(e) => Err(e),
                }
            }
            Some(job) => self_copy(client, bucket, key, &read, &change, job.multipart_from, job.part_size).await,
            None => self_copy(client, bucket, key, &read, &change, MAX_SINGLE_COPY, DEFAULT_PART_SIZE).await,
        };
        match result {
            Ok(written) => {
                tracing::debug!(item = %unit.id, version = ?written.version_id, "object written");
                journal
                    .append(&Entry::Done { item: unit.id.clone() }, false)
                    .map_err(|e| io_error("cannot write the journal", &e))
            }
            Err(e) => {
                if e.code == ItemErrorCode::ChangedDuringRotation || e.code == ItemErrorCode::AccessDenied {
                    let _ = journal.append(&Entry::Abandoned { item: unit.id.clone() }, false);
                }
                Err(e)
            }
        }
    }

    fn commit(&self, _unit: Unit<ObjectUnit>, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }
}

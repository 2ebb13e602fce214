//! Putting objects back as the journal recorded them, each conditional on
//! still being what rekey wrote.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::ServerSideEncryption;

use super::body::{get_bytes, put_whole, read_header, rewrite_header};
use super::client::{DEFAULT_PART_SIZE, MAX_SINGLE_COPY, S3Url, io_error, item_error, same_key};
use super::copy::{CopyChange, copy_object_to, self_copy};
use super::object::{S3Job, head, still_as_read};
use crate::engine::error::{Error, ItemError};
use crate::engine::journal::{self, Entry, ObjectUndo, RunParams};
use crate::engine::report::Summary;

/// The journal parameters naming an S3 run; [`is_s3_run`] recognises them.
pub fn run_params(url: &S3Url, job: &S3Job, sse_context: Option<&str>) -> RunParams {
    let mut params = RunParams::new();
    if let Some(context) = sse_context {
        params.insert("sse_context".into(), context.to_owned());
    }
    params.insert("target".into(), "s3".into());
    params.insert("targets".into(), url.to_string());
    match job {
        S3Job::MetadataKey { name } => {
            params.insert("metadata_key".into(), name.clone());
        }
        S3Job::Sse(job) => {
            params.insert("sse_to".into(), job.to.clone());
            params.insert("from".into(), job.from.join(","));
            params.insert("method".into(), job.method.name().into());
        }
        S3Job::Envelope { backup_prefix } => {
            params.insert("objects".into(), "envelopes".into());
            params.insert("backup_prefix".into(), backup_prefix.clone());
        }
        S3Job::Scan { .. } => {}
    }
    params
}

/// Whether a journal's parameters are of an S3 run.
pub fn is_s3_run(params: &RunParams) -> bool {
    params.get("target").is_some_and(|t| t == "s3")
}

/// Puts every object a journal changed back, latest change first, each only
/// if it is still what rekey wrote (the metadata value's hash, or the key);
/// an object already back is skipped, one changed since is reported.
/// Returns the summary and the conflicts.
///
/// # Errors
/// A journal that cannot be read.
pub async fn rollback(client: &Client, journal: &journal::RollbackJournal) -> Result<(Summary, Vec<String>), Error> {
    let start = std::time::Instant::now();
    let (entries, skipped_lines) = (journal.entries(), journal.skipped());
    let sse_context = match entries.first() {
        Some(Entry::Run { params, .. }) => params.get("sse_context").filter(|c| !c.is_empty()).cloned(),
        _ => None,
    };
    let mut summary = Summary::new("rollback");
    let mut conflicts = Vec::new();
    let mut abandoned: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for entry in entries.iter().rev() {
        let (item, bucket, key, undo) = match entry {
            Entry::Abandoned { item } => {
                abandoned.insert(item);
                continue;
            }
            Entry::Object { item, bucket, key, undo, .. } => (item, bucket, key, undo),
            _ => continue,
        };
        if abandoned.remove(item.as_str()) || !seen.insert(item) {
            continue;
        }
        match restore_object(client, bucket, key, undo, sse_context.as_deref()).await {
            Ok(Restoration::Done) => summary.restored += 1,
            Ok(Restoration::AlreadyBack) => summary.counts.skipped += 1,
            Ok(Restoration::Conflict(why)) => {
                summary.counts.failed += 1;
                conflicts.push(format!("{item}: {why}; left as it is"));
            }
            Err(e) => {
                summary.counts.failed += 1;
                conflicts.push(format!("{item}: {e}"));
            }
        }
    }
    // Lines that could not be read are failures too: what they recorded is not undone.
    summary.counts.failed += skipped_lines.len() as u64;
    conflicts.extend_from_slice(skipped_lines);
    summary.elapsed = start.elapsed();
    Ok((summary, conflicts))
}

pub(super) enum Restoration {
    Done,
    AlreadyBack,
    Conflict(String),
}

pub(super) async fn restore_object(
    client: &Client,
    bucket: &str,
    key: &str,
    undo: &ObjectUndo,
    sse_context: Option<&str>,
) -> Result<Restoration, ItemError> {
    let mut now = head(client, bucket, key).await?;
    now.sse_context = sse_context.map(str::to_owned);
    let change = match undo {
        ObjectUndo::Original { backup_key, version_id, old_sha256, new_sha256 } => {
            let current = get_bytes(client, bucket, key, &now, None).await?;
            let hash = journal::sha256(&current);
            if hash == *old_sha256 {
                return Ok(Restoration::AlreadyBack);
            }
            if hash != *new_sha256 {
                return Ok(Restoration::Conflict("the object changed since the run".into()));
            }
            let (from_key, from_version) = match (backup_key, version_id) {
                (Some(b), _) => (b.as_str(), None),
                (None, Some(v)) => (key, Some(v.as_str())),
                (None, None) => return Err(ItemError::input("the journal names no backup of the original")),
            };
            // The backup must be the original the journal names: another run,
            // or anyone, may have written over it since.
            let (backup_hash, backup_etag) = body_sha256(client, bucket, from_key, from_version).await?;
            if backup_hash != *old_sha256 {
                let version = from_version.map(|v| format!(" (version {v})")).unwrap_or_default();
                return Ok(Restoration::Conflict(format!(
                    "its backup s3://{bucket}/{from_key}{version} is not the original: its SHA-256 is {backup_hash}, \
                     the journal's is {old_sha256} (the backup was written over or altered); nothing was copied back"
                )));
            }
            let from = (from_key, from_version, Some(backup_etag.as_str()));
            copy_object_to(client, bucket, from, key, Some(&now.etag), now.sse_context.as_deref()).await?;
            return Ok(Restoration::Done);
        }
        ObjectUndo::Envelope { edks_b64, old_sha256, new_sha256, header_only } => {
            let current = if *header_only {
                read_header(client, bucket, key, &now).await?.unwrap_or_default()
            } else {
                get_bytes(client, bucket, key, &now, None).await?
            };
            let hash = journal::sha256(&current);
            if hash == *old_sha256 {
                return Ok(Restoration::AlreadyBack);
            }
            if hash != *new_sha256 {
                return Ok(Restoration::Conflict("the object changed since the run".into()));
            }
            let edks = journal::parse_key_list(edks_b64).map_err(|e| ItemError::input(e.message))?;
            let original = journal::with_key_list(&current, &edks)
                .filter(|o| journal::sha256(o) == *old_sha256)
                .ok_or_else(|| ItemError::input("the journal's undo record does not rebuild the original"))?;
            still_as_read(client, bucket, key, &now).await?;
            if *header_only {
                rewrite_header(client, bucket, key, &now, &original, current.len()).await?;
            } else {
                put_whole(client, bucket, key, &now, original).await?;
            }
            return Ok(Restoration::Done);
        }
        ObjectUndo::Metadata { name, old_b64, new_sha256 } => {
            let old = String::from_utf8(journal::unb64(old_b64).map_err(|e| ItemError::input(e.message))?)
                .map_err(|_| ItemError::input("the journal's old metadata value is not text"))?;
            match now.metadata.get(name) {
                Some(v) if journal::sha256(v.as_bytes()) == *new_sha256 => {}
                Some(v) if *v == old => return Ok(Restoration::AlreadyBack),
                _ => return Ok(Restoration::Conflict("the metadata entry changed since the run".into())),
            }
            CopyChange::Metadata { name: name.clone(), value: old }
        }
        ObjectUndo::Sse { old_algorithm, old_kms_key, old_bucket_key, new_kms_key } => {
            let current = now.kms_key();
            let back = match old_kms_key {
                Some(old) => current.is_some_and(|c| same_key(c, old)),
                None => now.sse.as_ref().map(|s| s.as_str().to_owned()) == *old_algorithm && current.is_none(),
            };
            if back {
                return Ok(Restoration::AlreadyBack);
            }
            if !current.is_some_and(|c| same_key(c, new_kms_key)) {
                return Ok(Restoration::Conflict("the object's encryption changed since the run".into()));
            }
            CopyChange::Sse {
                algorithm: old_algorithm.as_deref().map(ServerSideEncryption::from),
                kms_key: old_kms_key.clone(),
                bucket_key: *old_bucket_key,
            }
        }
    };
    still_as_read(client, bucket, key, &now).await?;
    self_copy(client, bucket, key, &now, &change, MAX_SINGLE_COPY, DEFAULT_PART_SIZE).await?;
    Ok(Restoration::Done)
}

/// SHA-256 of an object's body (a version of it), read as it streams, and
/// the ETag it had.
pub(super) async fn body_sha256(
    client: &Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<(String, String), ItemError> {
    use sha2::Digest as _;
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .map_err(|e| item_error("GetObject", &e))?;
    let etag = out.e_tag().unwrap_or_default().to_owned();
    let mut body = out.body;
    let mut hash = sha2::Sha256::new();
    while let Some(chunk) = body.next().await {
        hash.update(chunk.map_err(|e| io_error(&format!("cannot read s3://{bucket}/{key}"), &e))?);
    }
    Ok((journal::hex(&hash.finalize()), etag))
}

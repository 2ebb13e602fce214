//! Originals kept before a body is rewritten on an unversioned bucket:
//! per-run names that never overwrite, checked again on rollback.

use std::sync::OnceLock;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};

use super::client::S3Url;
use super::copy::copy_object_to;
use super::object::Head;
use crate::engine::error::{Error, ItemError};
use crate::engine::journal::{self};

/// Refuses a backup prefix under which a backup could land on an object
/// the run rotates, or be rotated itself: an empty one (each backup would
/// be the object itself), and one that is a prefix of the rotated prefix or
/// lies inside it. A whole-bucket target is the exception it has to be:
/// there the backup prefix is left out of the listing.
///
/// # Errors
/// A usage error naming the prefix, with the next step.
pub fn check_backup_prefix(url: &S3Url, backup_prefix: &str) -> Result<(), Error> {
    let hint = || {
        format!(
            "pass --backup-prefix with a prefix outside s3://{}/{}, such as the default .rekey-backup/",
            url.bucket, url.prefix
        )
    };
    if backup_prefix.is_empty() {
        return Err(Error::usage(
            "--backup-prefix is empty: the backup of each original would be the object itself, overwritten by the run",
        )
        .hint(hint()));
    }
    let rotated = url.prefix.as_str();
    if !rotated.is_empty() && (rotated.starts_with(backup_prefix) || backup_prefix.starts_with(rotated)) {
        return Err(Error::usage(format!(
            "--backup-prefix {backup_prefix:?} overlaps the rotated prefix {rotated:?}: backups would be taken for \
             objects to rotate, or objects for backups"
        ))
        .hint(hint()));
    }
    Ok(())
}

/// This run's name under the backup prefix: the start time and random
/// digits, so that no run (nor a resumed one) writes where another kept
/// its originals. The journal names each backup's full key.
pub(super) fn backup_run() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let now = DateTime::from(std::time::SystemTime::now());
        let time = now.fmt(DateTimeFormat::DateTime).unwrap_or_default().replace(['-', ':'], "");
        let time = time.split('.').next().unwrap_or_default().trim_end_matches('Z').to_owned();
        let mut random = [0u8; 4];
        // Without the system's random source, the process id still tells runs of one second apart.
        if getrandom::fill(&mut random).is_err() {
            random = std::process::id().to_be_bytes();
        }
        format!("{time}Z-{}", journal::hex(&random))
    })
}

/// A re-encryption of a whole object: the original is kept first (the
/// previous version of a versioned bucket, or a copy under the backup
/// prefix), the journal names it, then the new body is put conditionally.
/// Keeps the original of an object about to be re-encrypted: on a
/// versioned bucket its version stays (nothing to do), otherwise a
/// server-side copy at `{backup_prefix}{run}/{key}` (see [`backup_run`]),
/// never over an existing object, whose key is returned.
pub(super) async fn keep_original(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    backup_prefix: &str,
) -> Result<Option<String>, ItemError> {
    if read.version_id.is_some() {
        return Ok(None);
    }
    let backup = format!("{backup_prefix}{}/{key}", backup_run());
    copy_object_to(client, bucket, (key, None, None), &backup, None, read.sse_context.as_deref()).await.map_err(
        |mut e| {
            e.message = format!("cannot keep the original at s3://{bucket}/{backup}: {}", e.message);
            e
        },
    )?;
    Ok(Some(backup))
}

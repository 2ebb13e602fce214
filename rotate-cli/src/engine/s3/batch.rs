//! Method B at S3 Batch Operations scale: a manifest and a job instead of
//! copies made here.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::copy::encode_key;
use super::object::{ObjectUnit, SseJob, SseMethod};
use crate::engine::error::{Error, ErrorKind, ItemError};
use crate::engine::item::Unit;
use crate::engine::journal::{Checkpoint, Journal};
use crate::engine::ports::{Rejected, Sink};
use crate::engine::report::Counts;

/// `--emit-batch-job DIR`: instead of changing objects, writes an S3 Batch
/// Operations manifest (`manifest.csv`, the documented
/// `S3BatchOperations_CSV_20180820` format: bucket and URL-encoded key per
/// line) of the objects the run would change, in listing order, and the job
/// definition (`job.json`, the `aws s3control create-job --cli-input-json`
/// input) doing the same change: `S3UpdateObjectEncryption`, or
/// `S3PutObjectCopy` with the new key for `--method copy`.
///
/// On a versioned bucket the `S3UpdateObjectEncryption` manifest also names
/// the version that was read, so the job changes exactly that version and
/// never one an application wrote since. A copy manifest names no version:
/// copying a pinned version would make the old content current again over
/// a newer write, while copying the current version loses nothing.
#[derive(Debug)]
pub struct BatchJobSink {
    pub(super) dir: std::path::PathBuf,
    pub(super) bucket: String,
    pub(super) job: SseJob,
    pub(super) manifest: Mutex<Manifest>,
    pub(super) rows: std::sync::atomic::AtomicU64,
}

/// The manifest being written, and whether its rows carry version ids (known at the first row).
#[derive(Debug)]
pub(super) struct Manifest {
    pub(super) out: Option<std::io::BufWriter<std::fs::File>>,
    pub(super) versioned: Option<bool>,
}

impl BatchJobSink {
    /// A sink writing into `dir` (created; existing manifest and job files are refused).
    ///
    /// # Errors
    /// The directory cannot be made or already holds a manifest.
    pub fn new(dir: &std::path::Path, bucket: &str, job: SseJob) -> Result<Arc<Self>, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), &e))?;
        let path = dir.join("manifest.csv");
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| {
            Error::io(format!("cannot create {}", path.display()), &e)
                .hint("choose an empty --emit-batch-job directory")
        })?;
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            bucket: bucket.to_owned(),
            job,
            manifest: Mutex::new(Manifest { out: Some(std::io::BufWriter::new(file)), versioned: None }),
            rows: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Objects written to the manifest.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// The job definition, with placeholders (in capitals) for what only the
    /// operator knows: the account, the role, where the manifest and the
    /// report go.
    pub fn job_definition(&self) -> Value {
        let operation = match self.job.method {
            SseMethod::Copy => {
                let mut copy = json!({
                    "TargetResource": format!("arn:aws:s3:::{}", self.bucket),
                    "MetadataDirective": "COPY",
                    "SSEAwsKmsKeyId": self.job.to,
                });
                if let Some(b) = self.job.bucket_key {
                    copy["BucketKeyEnabled"] = json!(b);
                }
                json!({ "S3PutObjectCopy": copy })
            }
            _ => {
                let mut sse = json!({ "KMSKeyArn": self.job.to });
                if let Some(b) = self.job.bucket_key {
                    sse["BucketKeyEnabled"] = json!(b);
                }
                json!({ "S3UpdateObjectEncryption": { "ObjectEncryption": { "SSEKMS": sse } } })
            }
        };
        let versioned = self.manifest.lock().is_ok_and(|m| m.versioned == Some(true));
        let fields = if versioned { json!(["Bucket", "Key", "VersionId"]) } else { json!(["Bucket", "Key"]) };
        json!({
            "AccountId": "ACCOUNT_ID",
            "ConfirmationRequired": true,
            "Operation": operation,
            "Manifest": {
                "Spec": { "Format": "S3BatchOperations_CSV_20180820", "Fields": fields },
                "Location": { "ObjectArn": "arn:aws:s3:::MANIFEST_BUCKET/MANIFEST_KEY", "ETag": "MANIFEST_ETAG" },
            },
            "Report": {
                "Bucket": "arn:aws:s3:::REPORT_BUCKET",
                "Format": "Report_CSV_20180820",
                "Enabled": true,
                "Prefix": "rekey-batch-reports",
                "ReportScope": "AllTasks",
            },
            "Priority": 10,
            "RoleArn": "arn:aws:iam::ACCOUNT_ID:role/BATCH_OPERATIONS_ROLE",
            "Description": format!("rekey: objects of s3://{} to KMS key {}", self.bucket, self.job.to),
        })
    }
}

impl Sink<ObjectUnit> for BatchJobSink {
    fn start(&self, _journal: Option<Arc<Journal>>, _checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        Ok(())
    }

    async fn write(&self, _unit: &mut Unit<ObjectUnit>) -> Result<(), ItemError> {
        Ok(())
    }

    fn commit(&self, unit: Unit<ObjectUnit>, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        if unit.selected && unit.changed() {
            use std::io::Write;
            let mut manifest = self.manifest.lock().map_err(|_| Error::new(ErrorKind::Io, "manifest lock poisoned"))?;
            let version = unit.payload.head.as_ref().and_then(|h| h.version_id.as_deref());
            let versioned = *manifest.versioned.get_or_insert(version.is_some() && self.job.method != SseMethod::Copy);
            if let Some(out) = manifest.out.as_mut() {
                let key = form_encode_key(&unit.payload.key);
                match version.filter(|_| versioned) {
                    Some(v) => writeln!(out, "{},{key},{}", self.bucket, form_encode_key(v)),
                    // An object older than the bucket's versioning has the version id `null`.
                    None if versioned => writeln!(out, "{},{key},null", self.bucket),
                    None => writeln!(out, "{},{key}", self.bucket),
                }
                .map_err(|e| Error::io("cannot write the manifest", &e))?;
                self.rows.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        use std::io::Write;
        let mut manifest = self.manifest.lock().map_err(|_| Error::new(ErrorKind::Io, "manifest lock poisoned"))?;
        if let Some(mut out) = manifest.out.take() {
            out.flush().map_err(|e| Error::io("cannot write the manifest", &e))?;
            out.get_ref().sync_all().map_err(|e| Error::io("cannot sync the manifest", &e))?;
        }
        drop(manifest);
        let path = self.dir.join("job.json");
        let text = serde_json::to_string_pretty(&self.job_definition()).unwrap_or_default() + "\n";
        std::fs::write(&path, text).map_err(|e| Error::io(format!("cannot write {}", path.display()), &e))?;
        Ok(Vec::new())
    }
}

/// A key as S3 Batch Operations CSV manifests want it: URL-encoded, slashes kept.
pub(super) fn form_encode_key(key: &str) -> String {
    encode_key(key)
}

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
//! back, each conditional on the object still being what rekey wrote.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, ObjectEncryption, ObjectLockLegalHoldStatus,
    ObjectLockMode, ServerSideEncryption, SsekmsEncryption, StorageClass, TaggingDirective,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use envelope_core::{EncryptedDataKey, EncryptionContext};
use globset::GlobSet;
use serde_json::{Value, json};

use super::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use super::item::{Item, Unit};
use super::journal::{self, Checkpoint, Entry, Journal, ObjectUndo, RunParams};
use super::ports::{Rejected, Sink, Source};
use super::report::{Counts, Summary};
use super::transform::{ChangeKind, Outcome, StreamJob, Transform};

/// S3's limit for one CopyObject: larger objects are copied in parts.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// Default part size of a multipart copy.
pub const DEFAULT_PART_SIZE: u64 = 512 * 1024 * 1024;
/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Keys per ListObjectsV2 page.
const PAGE: i32 = 1000;

/// Whether a command-line target names S3 (`s3://BUCKET[/PREFIX]`).
pub fn is_s3_url(target: &str) -> bool {
    target.starts_with("s3://")
}

/// A bucket and a key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key prefix (may be empty: the whole bucket).
    pub prefix: String,
}

impl std::str::FromStr for S3Url {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::usage(format!("{s:?} is not an S3 target; write s3://BUCKET or s3://BUCKET/PREFIX"));
        let rest = s.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains(['*', '?', ' ']) {
            return Err(bad());
        }
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// How to reach S3: the standard AWS chain (`AWS_PROFILE`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, SSO, IMDS), as for KMS.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Path-style addressing (`http://host/bucket/key`), which S3-compatible
    /// servers need; also turned on by `AWS_S3_FORCE_PATH_STYLE=true`.
    pub path_style: bool,
    /// Most attempts per S3 call, retries included.
    pub max_attempts: u32,
    /// Seconds before one attempt is abandoned.
    pub attempt_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self { path_style: false, max_attempts: 8, attempt_timeout: Duration::from_secs(120) }
    }
}

/// An S3 client from the standard AWS configuration chain.
///
/// Checksums are computed and checked only where S3 requires them, so
/// S3-compatible servers that do not know the newer checksum headers work.
///
/// # Errors
/// A plain `http://` endpoint off the loopback interface: credentials and
/// data keys' ciphertexts would cross the network unprotected.
pub async fn client(settings: &ClientSettings) -> Result<Client, Error> {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    let retry = RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1));
    let timeouts = TimeoutConfig::builder().operation_attempt_timeout(settings.attempt_timeout).build();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts)
        .load()
        .await;
    let s3_endpoint = std::env::var("AWS_ENDPOINT_URL_S3").ok();
    let endpoint = s3_endpoint.as_deref().or(shared.endpoint_url());
    if let Some(url) = endpoint {
        check_endpoint(url)?;
    }
    // An endpoint named by an IP address or `localhost` cannot take the
    // bucket in its host name: path style is the only style that works there.
    let by_address = endpoint.is_some_and(|url| {
        let host = endpoint_host(url);
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok()
    });
    let path_style = settings.path_style
        || by_address
        || std::env::var("AWS_S3_FORCE_PATH_STYLE").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    Ok(Client::from_conf(conf))
}

/// Refuses a plain-HTTP endpoint that is not on the loopback interface.
fn check_endpoint(url: &str) -> Result<(), Error> {
    if !url.starts_with("http://") {
        return Ok(());
    }
    let host = endpoint_host(url);
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(Error::usage(format!("refusing the plain-HTTP S3 endpoint {url}: only loopback endpoints may skip TLS"))
            .hint("use an https:// endpoint (AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3)"))
    }
}

/// The host of an endpoint URL, without port or brackets.
fn endpoint_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    }
}

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
    /// Count keys: SSE-KMS key ids, and the metadata entry when named.
    Scan {
        /// The user-metadata entry holding a data key, if any.
        metadata_key: Option<String>,
    },
}

/// Everything the workers share.
struct Shared {
    client: Client,
    bucket: String,
    job: S3Job,
    probe: Option<Probe>,
    /// `UpdateObjectEncryption` was found missing: copy from now on.
    update_unavailable: AtomicBool,
    /// `--sse-context`, base64 JSON: see [`Head`].
    sse_context: Option<String>,
}

/// Tells whether a bare data key is already under the destination key,
/// without any plaintext: KMS ReEncrypt from the destination to itself,
/// with the destination context, succeeds only for such a key. Opaque
/// blobs name no key, so this is how a rerun skips what is done.
pub struct Probe {
    transform: Arc<Transform>,
    context: EncryptionContext,
    /// Probe before the transform while every object so far was already
    /// done (a rerun: one call per object, and the preflight passes);
    /// after the first object that needed work, probe only objects whose
    /// transform failed (a first run: no extra call per object).
    first: AtomicBool,
}

impl Probe {
    /// A probe with the run's transform and destination context.
    pub fn new(transform: Arc<Transform>, context: EncryptionContext) -> Self {
        Self { transform, context, first: AtomicBool::new(true) }
    }

    async fn under_destination(&self, value: &[u8]) -> bool {
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
        destination.rewrap(&edk, &self.context, &self.context, &[destination]).await.is_ok()
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
    etag: String,
    version_id: Option<String>,
    last_modified: Option<DateTime>,
    size: u64,
    metadata: BTreeMap<String, String>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<String>,
    website_redirect: Option<String>,
    storage_class: Option<StorageClass>,
    sse: Option<ServerSideEncryption>,
    kms_key: Option<String>,
    bucket_key: Option<bool>,
    sse_customer: bool,
    lock_mode: Option<ObjectLockMode>,
    lock_until: Option<DateTime>,
    legal_hold: Option<ObjectLockLegalHoldStatus>,
    /// The SSE-KMS encryption context to give every copy (base64 JSON, as
    /// the header takes it). S3 never returns an object's context, so this
    /// is the run's `--sse-context`, not something read.
    sse_context: Option<String>,
}

impl Head {
    /// The SSE-KMS key id, when the object is under one.
    pub fn kms_key(&self) -> Option<&str> {
        self.kms_key.as_deref().filter(|_| self.is_kms())
    }

    fn is_kms(&self) -> bool {
        matches!(&self.sse, Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse))
    }

    /// The encryption context for a write under `sse`: only SSE-KMS takes one.
    fn context_for(&self, sse: Option<&ServerSideEncryption>) -> Option<String> {
        let kms = matches!(sse, Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse));
        self.sse_context.clone().filter(|_| kms)
    }
}

/// What an S3 unit carries.
pub struct ObjectUnit {
    shared: Arc<Shared>,
    key: String,
    head: Option<Head>,
}

impl std::fmt::Debug for ObjectUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectUnit").field("key", &self.key).finish_non_exhaustive()
    }
}

/// The objects under a prefix, listed one page at a time.
pub struct S3Source {
    shared: Arc<Shared>,
    url: S3Url,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    page: VecDeque<String>,
    token: Option<String>,
    listed_all: bool,
    list: Option<ListFile>,
}

/// An inventory read from files instead of ListObjectsV2, line by line.
struct ListFile {
    path: std::path::PathBuf,
    lines: BoundedLines,
    line: u64,
    /// An S3 Inventory manifest's data files not read yet.
    rest: VecDeque<std::path::PathBuf>,
    /// Columns of an inventory's schema that mark rows to leave out:
    /// `IsLatest` (only current versions are rotated) and `IsDeleteMarker`.
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
}

impl ListFile {
    fn open(path: &std::path::Path) -> Result<BoundedLines, Error> {
        use std::io::BufRead;
        let mut file = std::io::BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| Error::io(format!("cannot open the object list {}", path.display()), &e))?,
        );
        // S3 Inventory writes its CSV data files gzipped: read them as they come.
        let gzipped = file
            .fill_buf()
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), &e))?
            .starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead + Send> = if gzipped {
            Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(file)
        };
        Ok(BoundedLines(reader))
    }

    /// An S3 Inventory `manifest.json`: its CSV data files, found by name
    /// beside the manifest or in a `data/` directory next to it (the layout
    /// `aws s3 cp --recursive` of the inventory's destination leaves).
    fn manifest(path: &std::path::Path) -> Result<Self, Error> {
        let bad = |what: String| {
            Error::new(ErrorKind::BadInput, format!("{}: {what}", path.display()))
                .hint("pass an S3 Inventory manifest.json (CSV format), a CSV data file, or a list of keys")
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), &e))?;
        let manifest: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        if manifest["fileFormat"].as_str() != Some("CSV") {
            return Err(bad(format!(
                "inventory format {} is not read; configure the inventory as CSV",
                manifest["fileFormat"]
            )));
        }
        let schema: Vec<String> =
            manifest["fileSchema"].as_str().unwrap_or_default().split(',').map(|c| c.trim().to_owned()).collect();
        if schema.first().map(String::as_str) != Some("Bucket") || schema.get(1).map(String::as_str) != Some("Key") {
            return Err(bad(format!("the schema {schema:?} does not start with Bucket, Key")));
        }
        let dir = path.parent().unwrap_or_else(|| std::path::Path::new("."));
        let mut files = VecDeque::new();
        for file in manifest["files"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let key = file["key"].as_str().ok_or_else(|| bad("a data file without a key".into()))?;
            let name = key.rsplit('/').next().unwrap_or(key);
            let local =
                [dir.join(name), dir.join("data").join(name)].into_iter().find(|p| p.is_file()).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Io,
                        format!(
                            "the inventory data file {name} is not beside {} nor in its data/ directory",
                            path.display()
                        ),
                    )
                    .hint("download the inventory's data files first, e.g. aws s3 cp --recursive s3://DEST/PREFIX/ .")
                })?;
            files.push_back(local);
        }
        let first = files.pop_front().ok_or_else(|| bad("the manifest names no data file".into()))?;
        Ok(Self {
            lines: Self::open(&first)?,
            path: first,
            line: 0,
            rest: files,
            is_latest: schema.iter().position(|c| c == "IsLatest"),
            is_delete_marker: schema.iter().position(|c| c == "IsDeleteMarker"),
        })
    }
}

/// S3's longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// The longest line of an object list read whole: more than any key (1,024
/// bytes, three times that URL-encoded) or S3 Inventory row needs.
const MAX_LIST_LINE: usize = 64 << 10;

/// The lines of an object list, each read with a bound: a longer line (a
/// 400 MB line without a newline, say) is cut at [`MAX_LIST_LINE`] bytes,
/// the rest skipped unread into memory, and returned marked as cut.
struct BoundedLines(Box<dyn std::io::BufRead + Send>);

impl Iterator for BoundedLines {
    type Item = std::io::Result<(String, bool)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        let mut cut = false;
        loop {
            let buf = match self.0.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            };
            if buf.is_empty() {
                return (!line.is_empty() || cut).then(|| Ok((String::from_utf8_lossy(&line).into_owned(), cut)));
            }
            let (take, end) = match buf.iter().position(|b| *b == b'\n') {
                Some(at) => (at, true),
                None => (buf.len(), false),
            };
            let room = MAX_LIST_LINE.saturating_sub(line.len());
            line.extend_from_slice(&buf[..take.min(room)]);
            cut |= take > room;
            self.0.consume(take + usize::from(end));
            if end {
                return Some(Ok((String::from_utf8_lossy(&line).into_owned(), cut)));
            }
        }
    }
}

impl S3Source {
    /// The objects of `url` for `job`, filtered by globs on the key relative
    /// to the prefix. `probe` (method A) lets reruns skip objects already
    /// under the destination.
    ///
    /// # Errors
    /// A bad glob.
    pub fn new(
        client: Client,
        url: S3Url,
        job: S3Job,
        include: &[String],
        exclude: &[String],
        probe: Option<Probe>,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            client,
            bucket: url.bucket.clone(),
            job,
            probe,
            update_unavailable: AtomicBool::new(false),
            sse_context: None,
        });
        Ok(Self {
            shared,
            url,
            include: super::files::globs(include)?,
            exclude: super::files::globs(exclude)?,
            page: VecDeque::new(),
            token: None,
            listed_all: false,
            list: None,
        })
    }

    /// Gives every copy this SSE-KMS encryption context (base64 JSON, as S3's
    /// header takes it): S3 never returns an object's context, so a copy
    /// can carry one only when the operator names it (`--sse-context`).
    #[must_use]
    pub fn with_sse_context(mut self, context: Option<String>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.sse_context = context;
        }
        self
    }

    /// Takes the objects from `path` instead of listing the bucket: one key
    /// per line, or the rows of an S3 Inventory report's CSV data file
    /// (`"bucket","key",...` with URL-encoded keys; gunzip it first). Rows
    /// of other buckets, and keys outside the prefix, are left out; the
    /// file's order is kept, so sampling, shards and resume work on it.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn with_list(mut self, path: &std::path::Path) -> Result<Self, Error> {
        let manifest = path.extension().is_some_and(|e| e == "json");
        self.list = Some(if manifest {
            ListFile::manifest(path)?
        } else {
            ListFile {
                lines: ListFile::open(path)?,
                path: path.to_path_buf(),
                line: 0,
                rest: VecDeque::new(),
                is_latest: None,
                is_delete_marker: None,
            }
        });
        Ok(self)
    }

    /// The next key of the list file, if any.
    fn next_listed(&mut self) -> Result<Option<String>, Error> {
        let bucket = self.url.bucket.clone();
        let Some(list) = self.list.as_mut() else {
            return Ok(None);
        };
        loop {
            let Some(line) = list.lines.next() else {
                let Some(next) = list.rest.pop_front() else {
                    return Ok(None);
                };
                list.lines = ListFile::open(&next)?;
                list.path = next;
                list.line = 0;
                continue;
            };
            list.line += 1;
            let (line, cut) = line.map_err(|e| Error::io(format!("cannot read {}", list.path.display()), &e))?;
            if cut {
                // Longer than any key or inventory row: one failed item (too long a key), not a parse.
                return Ok(Some(line));
            }
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if !line.starts_with('"') {
                return Ok(Some(line.to_owned()));
            }
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes());
            let record = reader.records().next().and_then(Result::ok).filter(|r| r.len() >= 2).ok_or_else(|| {
                Error::new(
                    ErrorKind::BadInput,
                    format!(
                        "{} line {}: not an S3 Inventory CSV row (\"bucket\",\"key\",...)",
                        list.path.display(),
                        list.line
                    ),
                )
            })?;
            let flag = |column: Option<usize>| column.and_then(|i| record.get(i)).map(|v| v == "true");
            if record[0] != *bucket || flag(list.is_latest) == Some(false) || flag(list.is_delete_marker) == Some(true)
            {
                continue;
            }
            let key = percent_decode(&record[1]).ok_or_else(|| {
                Error::new(
                    ErrorKind::BadInput,
                    format!("{} line {}: a key that is not URL-encoded text", list.path.display(), list.line),
                )
            })?;
            return Ok(Some(key));
        }
    }

    /// The default journal, in the current directory, named after the target.
    pub fn default_journal(url: &S3Url) -> std::path::PathBuf {
        let name: String = format!("{}-{}", url.bucket, url.prefix)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
            .collect();
        std::path::PathBuf::from(format!("s3-{}.rekey-journal", name.trim_end_matches(['-', '_'])))
    }

    fn wanted(&self, key: &str) -> bool {
        let relative = key.strip_prefix(&self.url.prefix).unwrap_or(key).trim_start_matches('/');
        let backup = match &self.shared.job {
            S3Job::Envelope { backup_prefix } => !backup_prefix.is_empty() && key.starts_with(backup_prefix.as_str()),
            _ => false,
        };
        !key.ends_with('/')
            && !backup
            && self.include.as_ref().is_none_or(|g| g.is_match(relative))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(relative))
    }

    fn fetch_page(&mut self) -> Result<(), Error> {
        let request = self
            .shared
            .client
            .list_objects_v2()
            .bucket(&self.url.bucket)
            .prefix(&self.url.prefix)
            .max_keys(PAGE)
            .set_continuation_token(self.token.clone());
        let out =
            blocking(move || tokio::runtime::Handle::current().block_on(request.send()).map_err(|e| describe(&e)))
                .map_err(|e| {
                    Error::new(ErrorKind::Io, format!("cannot list {}: {e}", self.url))
                        .hint("check the bucket name, the region and s3:ListBucket on the bucket")
                })?;
        for object in out.contents() {
            if let Some(key) = object.key() {
                self.page.push_back(key.to_owned());
            }
        }
        self.token = out.next_continuation_token().map(str::to_owned);
        self.listed_all = !out.is_truncated().unwrap_or(false) || self.token.is_none();
        Ok(())
    }
}

/// Runs a blocking call; on a multi-thread async worker, lets the runtime
/// move its other tasks elsewhere meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Source for S3Source {
    type Payload = ObjectUnit;

    fn next_unit(&mut self) -> Result<Option<Unit<ObjectUnit>>, Error> {
        loop {
            if let Some(key) = self.page.pop_front() {
                if !self.wanted(&key) {
                    continue;
                }
                let id = if key.len() > MAX_KEY_BYTES {
                    // Reports name it by its start: the whole may be 64 KiB.
                    let start: String = key.chars().take(64).collect();
                    format!("s3://{}/{start}... ({} bytes)", self.url.bucket, key.len())
                } else {
                    format!("s3://{}/{key}", self.url.bucket)
                };
                return Ok(Some(Unit::new(id, ObjectUnit { shared: Arc::clone(&self.shared), key, head: None })));
            }
            if self.list.is_some() {
                match self.next_listed()? {
                    Some(key) if key.starts_with(&self.url.prefix) => self.page.push_back(key),
                    Some(_) => {}
                    None => return Ok(None),
                }
                continue;
            }
            if self.listed_all {
                return Ok(None);
            }
            self.fetch_page()?;
        }
    }

    async fn load(unit: &mut Unit<ObjectUnit>) -> Result<(), ItemError> {
        if unit.payload.key.len() > MAX_KEY_BYTES {
            // No such object can exist, and the SDK cannot even build the request for a very long one.
            return Err(ItemError::input(format!(
                "the key is {} bytes long, and S3 keys are at most 1,024 bytes (UTF-8): no such object; \
                 check the object list",
                unit.payload.key.len()
            )));
        }
        let shared = Arc::clone(&unit.payload.shared);
        let mut head = head(&shared.client, &shared.bucket, &unit.payload.key).await?;
        head.sse_context.clone_from(&shared.sse_context);
        if head.sse_customer {
            return Err(ItemError::new(
                ItemErrorCode::BadInput,
                "the object is encrypted with a customer-provided key (SSE-C), which rekey cannot copy",
            ));
        }
        let mut item = Item::new(unit.id.clone(), Vec::new());
        match &shared.job {
            S3Job::MetadataKey { name } => match head.metadata.get(&name.to_ascii_lowercase()) {
                None => {
                    item.result = Some(Err(ItemError::new(
                        ItemErrorCode::MissingField,
                        format!("the object has no metadata entry {name:?} (x-amz-meta-{name})"),
                    )));
                }
                Some(value) => {
                    item.bytes = value.as_bytes().to_vec();
                    if let Some(probe) = &shared.probe
                        && probe.first.load(Ordering::Relaxed)
                    {
                        if probe.under_destination(&item.bytes).await {
                            item.result = Some(Ok(Outcome::Skipped));
                        } else {
                            probe.first.store(false, Ordering::Relaxed);
                        }
                    }
                }
            },
            S3Job::Sse(job) => {
                item.bytes = head.kms_key().unwrap_or_default().as_bytes().to_vec();
                let current = head.kms_key();
                if current.is_some_and(|k| same_key(k, &job.to)) {
                    item.result = Some(Ok(Outcome::Skipped));
                } else if !job.from.is_empty() && !current.is_some_and(|k| job.from.iter().any(|f| same_key(k, f))) {
                    // Under another key (or not SSE-KMS): not this run's business.
                    unit.selected = false;
                } else {
                    item.result = Some(Ok(Outcome::Changed {
                        new: job.to.as_bytes().to_vec(),
                        kind: ChangeKind::Rewrapped,
                        old_edks: None,
                        job: None,
                    }));
                }
            }
            S3Job::Envelope { .. } => {
                if head.size <= READ_WHOLE_UP_TO {
                    item.bytes = get_bytes(&shared.client, &shared.bucket, &unit.payload.key, &head, None).await?;
                } else {
                    match read_header(&shared.client, &shared.bucket, &unit.payload.key, &head).await? {
                        Some(header) => {
                            item.bytes = header;
                            item.header_only = true;
                        }
                        None => {
                            item.result = Some(Err(ItemError::input(
                                "an object over 8 MiB that is not a framed rekey envelope: only framed envelopes \
                                 are rewritten by their header",
                            )));
                        }
                    }
                }
            }
            S3Job::Scan { metadata_key } => {
                if let Some(value) = metadata_key.as_ref().and_then(|n| head.metadata.get(&n.to_ascii_lowercase())) {
                    item.bytes = value.as_bytes().to_vec();
                }
            }
        }
        unit.payload.head = Some(head);
        unit.items = vec![item];
        Ok(())
    }
}

/// Whether two KMS key references name the same key: equal, or an ARN
/// and the key id (or alias name) it ends with.
pub fn same_key(a: &str, b: &str) -> bool {
    fn tail(k: &str) -> &str {
        if k.starts_with("arn:") { k.rsplit_once(':').map_or(k, |(_, t)| t) } else { k }
    }
    let (a, b) = (a.strip_prefix("kms:").unwrap_or(a), b.strip_prefix("kms:").unwrap_or(b));
    a == b || tail(a) == tail(b) || tail(a).strip_prefix("key/") == Some(b) || tail(b).strip_prefix("key/") == Some(a)
}

type Response = aws_sdk_s3::config::http::HttpResponse;

fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E, Response>) -> String {
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                _ => format!("{err:?}"),
            }
        }
        other => format!("{}", aws_sdk_s3::error::DisplayErrorContext(other)),
    }
}

fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// An S3 failure as an item failure: 412 is a concurrent change, 5xx and
/// timeouts are transient, 403 is access denied, 404 the object is gone.
fn item_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    e: &SdkError<E, Response>,
) -> ItemError {
    let text = format!("{what}: {}", describe(e));
    let code = match status(e) {
        Some(412) => ItemErrorCode::ChangedDuringRotation,
        Some(403) => ItemErrorCode::AccessDenied,
        Some(429 | 503) => ItemErrorCode::Throttled,
        Some(500..) => ItemErrorCode::Unavailable,
        Some(_) => ItemErrorCode::Io,
        None => ItemErrorCode::Unavailable,
    };
    ItemError::new(code, text)
}

/// HeadObject, as a [`Head`].
async fn head(client: &Client, bucket: &str, key: &str) -> Result<Head, ItemError> {
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

/// What a self-copy changes; everything else is carried over.
#[derive(Debug, Clone)]
enum CopyChange {
    /// One user-metadata entry gets a new value.
    Metadata { name: String, value: String },
    /// The server-side encryption.
    Sse { algorithm: Option<ServerSideEncryption>, kms_key: Option<String>, bucket_key: Option<bool> },
}

/// The result of a write.
#[derive(Debug)]
struct Written {
    version_id: Option<String>,
}

/// Reads the object again and compares it with what was read: some servers
/// ignore `x-amz-copy-source-if-match`, so this closes all but a tiny window
/// there (and S3 itself closes that one with the condition).
async fn still_as_read(client: &Client, bucket: &str, key: &str, read: &Head) -> Result<(), ItemError> {
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

fn changed() -> ItemError {
    ItemError::new(
        ItemErrorCode::ChangedDuringRotation,
        "the object changed after it was read; the other writer's version was kept",
    )
}

fn copy_source(bucket: &str, key: &str, version: Option<&str>) -> String {
    let mut source = format!("{bucket}/{}", encode_key(key));
    if let Some(v) = version {
        source.push_str("?versionId=");
        source.push_str(&encode_key(v));
    }
    source
}

/// Percent-encodes a key for `x-amz-copy-source` (slashes kept).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_expires(head: &Head) -> Result<Option<DateTime>, ItemError> {
    match &head.expires {
        None => Ok(None),
        Some(text) => DateTime::from_str(text, DateTimeFormat::HttpDate).map(Some).map_err(|_| {
            ItemError::new(
                ItemErrorCode::BadInput,
                format!("the object's Expires header {text:?} is not an HTTP date; a copy could not keep it"),
            )
        }),
    }
}

/// Copies an object onto itself with `change`, carrying everything else
/// over; in parts above `multipart_from`.
async fn self_copy(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    change: &CopyChange,
    multipart_from: u64,
    part_size: u64,
) -> Result<Written, ItemError> {
    let mut metadata: HashMap<String, String> = read.metadata.clone().into_iter().collect();
    let (sse, kms_key, bucket_key) = match change {
        CopyChange::Metadata { name, value } => {
            metadata.insert(name.to_ascii_lowercase(), value.clone());
            (read.sse.clone(), read.kms_key().map(str::to_owned), read.bucket_key.filter(|_| read.is_kms()))
        }
        CopyChange::Sse { algorithm, kms_key, bucket_key } => (algorithm.clone(), kms_key.clone(), *bucket_key),
    };
    let expires = parse_expires(read)?;
    if read.size > multipart_from {
        return multipart_copy(client, bucket, key, read, metadata, (sse, kms_key, bucket_key), expires, part_size)
            .await;
    }
    #[allow(deprecated)]
    let request = client
        .copy_object()
        .bucket(bucket)
        .key(key)
        .copy_source(copy_source(bucket, key, read.version_id.as_deref()))
        .copy_source_if_match(&read.etag)
        .metadata_directive(MetadataDirective::Replace)
        .set_metadata(Some(metadata))
        .tagging_directive(TaggingDirective::Copy)
        .set_content_type(read.content_type.clone())
        .set_content_encoding(read.content_encoding.clone())
        .set_content_disposition(read.content_disposition.clone())
        .set_content_language(read.content_language.clone())
        .set_cache_control(read.cache_control.clone())
        .set_expires(expires)
        .set_website_redirect_location(read.website_redirect.clone())
        .set_storage_class(read.storage_class.clone())
        .set_ssekms_encryption_context(read.context_for(sse.as_ref()))
        .set_server_side_encryption(sse)
        .set_ssekms_key_id(kms_key)
        .set_bucket_key_enabled(bucket_key)
        .set_object_lock_mode(read.lock_mode.clone())
        .set_object_lock_retain_until_date(read.lock_until)
        .set_object_lock_legal_hold_status(read.legal_hold.clone());
    let out = request.send().await.map_err(|e| item_error("CopyObject", &e))?;
    Ok(Written { version_id: out.version_id().map(str::to_owned) })
}

/// A copy in parts: CreateMultipartUpload with every property, UploadPartCopy
/// per range (each conditional on the ETag read), CompleteMultipartUpload;
/// the upload is aborted on any failure.
#[allow(clippy::too_many_arguments)]
async fn multipart_copy(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    metadata: HashMap<String, String>,
    (sse, kms_key, bucket_key): (Option<ServerSideEncryption>, Option<String>, Option<bool>),
    expires: Option<DateTime>,
    part_size: u64,
) -> Result<Written, ItemError> {
    let part_size = part_size.max(MIN_PART_SIZE);
    let tags = client
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .set_version_id(read.version_id.clone())
        .send()
        .await
        .map_err(|e| item_error("GetObjectTagging", &e))?;
    let tagging: Vec<String> =
        tags.tag_set().iter().map(|t| format!("{}={}", form_encode(t.key()), form_encode(t.value()))).collect();
    #[allow(deprecated)]
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_metadata(Some(metadata))
        .set_tagging(if tagging.is_empty() { None } else { Some(tagging.join("&")) })
        .set_content_type(read.content_type.clone())
        .set_content_encoding(read.content_encoding.clone())
        .set_content_disposition(read.content_disposition.clone())
        .set_content_language(read.content_language.clone())
        .set_cache_control(read.cache_control.clone())
        .set_expires(expires)
        .set_website_redirect_location(read.website_redirect.clone())
        .set_storage_class(read.storage_class.clone())
        .set_ssekms_encryption_context(read.context_for(sse.as_ref()))
        .set_server_side_encryption(sse)
        .set_ssekms_key_id(kms_key)
        .set_bucket_key_enabled(bucket_key)
        .set_object_lock_mode(read.lock_mode.clone())
        .set_object_lock_retain_until_date(read.lock_until)
        .set_object_lock_legal_hold_status(read.legal_hold.clone())
        .send()
        .await
        .map_err(|e| item_error("CreateMultipartUpload", &e))?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| ItemError::new(ItemErrorCode::Io, "CreateMultipartUpload returned no upload id"))?
        .to_owned();
    let parts = async {
        let mut parts = Vec::new();
        let mut start = 0u64;
        let mut number = 1i32;
        while start < read.size {
            let end = (start + part_size).min(read.size) - 1;
            let out = client
                .upload_part_copy()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .copy_source(copy_source(bucket, key, read.version_id.as_deref()))
                .copy_source_if_match(&read.etag)
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| item_error("UploadPartCopy", &e))?;
            let etag = out.copy_part_result().and_then(|r| r.e_tag()).unwrap_or_default().to_owned();
            parts.push(CompletedPart::builder().part_number(number).e_tag(etag).build());
            start = end + 1;
            number += 1;
        }
        let done = client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| item_error("CompleteMultipartUpload", &e))?;
        Ok::<_, ItemError>(Written { version_id: done.version_id().map(str::to_owned) })
    }
    .await;
    if parts.is_err() {
        let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
    }
    parts
}

/// Decodes `%XX` escapes (and `+` as a space, as S3 Inventory writes them).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `application/x-www-form-urlencoded` for the tagging header.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `UpdateObjectEncryption`: the new SSE-KMS key, no data moved.
/// `Ok(false)` when the endpoint says it does not implement the operation.
async fn update_encryption(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    to: &str,
    bucket_key: Option<bool>,
) -> Result<bool, ItemError> {
    let encryption = SsekmsEncryption::builder()
        .kms_key_arn(to)
        .set_bucket_key_enabled(bucket_key)
        .build()
        .map_err(|e| ItemError::new(ItemErrorCode::BadInput, format!("UpdateObjectEncryption: {e}")))?;
    let sent = client
        .update_object_encryption()
        .bucket(bucket)
        .key(key)
        .set_version_id(read.version_id.clone())
        .object_encryption(ObjectEncryption::Ssekms(encryption))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) if not_implemented(&e) => Ok(false),
        Err(e) => Err(item_error("UpdateObjectEncryption", &e)),
    }
}

/// Whether the endpoint really implements `UpdateObjectEncryption`, asked
/// once before any object is touched, on a key that does not exist: S3
/// answers 404. A server that does not know the operation may answer that it
/// does not implement it, or (as moto does) take the request for a PutObject
/// and create an object holding the XML body, which would destroy a real
/// object's data: that object is deleted again and the answer is no.
///
/// # Errors
/// Failures that say nothing about the operation (network, access).
pub async fn update_supported(client: &Client, bucket: &str, prefix: &str, to: &str) -> Result<bool, Error> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let key = format!("{prefix}.rekey-update-probe-{}-{nanos}", std::process::id());
    let encryption = SsekmsEncryption::builder()
        .kms_key_arn(to)
        .build()
        .map_err(|e| Error::usage(format!("UpdateObjectEncryption: {e}")))?;
    let sent = client
        .update_object_encryption()
        .bucket(bucket)
        .key(&key)
        .object_encryption(ObjectEncryption::Ssekms(encryption))
        .send()
        .await;
    match sent {
        Err(e) if status(&e) == Some(404) => Ok(true),
        Err(e) if not_implemented(&e) => Ok(false),
        Err(e) => Err(Error::new(
            ErrorKind::Io,
            format!("cannot tell whether the endpoint implements UpdateObjectEncryption: {}", describe(&e)),
        )
        .hint("pass --method copy to use self-copies, or check s3:UpdateObjectEncryption permissions")),
        Ok(_) => {
            tracing::warn!(
                "the endpoint accepted UpdateObjectEncryption on a missing key (it took it for a PutObject); \
                 removing {key} and copying instead"
            );
            let _ = client.delete_object().bucket(bucket).key(&key).send().await;
            Ok(false)
        }
    }
}

/// The endpoint's way of saying it lacks an operation: 501 NotImplemented
/// (S3 and most compatible servers), or 405 / 400 with such a code.
fn not_implemented<E: ProvideErrorMetadata>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    let code = match e {
        SdkError::ServiceError(s) => s.err().code().map(str::to_owned),
        _ => None,
    };
    status(e) == Some(501)
        || matches!(code.as_deref(), Some("NotImplemented" | "MethodNotAllowed" | "UnsupportedOperation"))
}

/// Changes objects, journal first: method A (a metadata entry) or B (SSE).
#[derive(Debug, Default)]
pub struct ObjectSink {
    journal: OnceLock<Arc<Journal>>,
}

impl ObjectSink {
    /// A sink writing to the journal it is started with.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

fn io_error(what: &str, e: &dyn std::fmt::Display) -> ItemError {
    ItemError::new(ItemErrorCode::Io, format!("{what}: {e}"))
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
            && probe.under_destination(&item.bytes).await
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
    dir: std::path::PathBuf,
    bucket: String,
    job: SseJob,
    manifest: Mutex<Manifest>,
    rows: std::sync::atomic::AtomicU64,
}

/// The manifest being written, and whether its rows carry version ids (known at the first row).
#[derive(Debug)]
struct Manifest {
    out: Option<std::io::BufWriter<std::fs::File>>,
    versioned: Option<bool>,
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
fn form_encode_key(key: &str) -> String {
    encode_key(key)
}

/// `rekey scan s3://...`: objects per SSE-KMS key, per server-side
/// encryption, and the metadata data keys.
#[derive(Debug, Default)]
pub struct S3ScanSink {
    report: Mutex<S3ScanReport>,
}

/// What a scan of objects found.
#[derive(Debug, Default, Clone)]
pub struct S3ScanReport {
    /// Objects per SSE-KMS key id.
    pub sse_kms_keys: BTreeMap<String, u64>,
    /// Objects per server-side encryption (`aws:kms`, `AES256`, `none`).
    pub sse: BTreeMap<String, u64>,
    /// Metadata data keys per KMS key, where the value names its key (a rekey
    /// envelope); bare KMS blobs name their key only to KMS.
    pub metadata_keys: BTreeMap<String, u64>,
    /// Objects with the metadata entry holding a bare KMS blob.
    pub metadata_bare: u64,
    /// Objects without the metadata entry.
    pub metadata_missing: u64,
    /// Objects that could not be read.
    pub unreadable: u64,
}

impl S3ScanSink {
    /// An empty report.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The report so far.
    pub fn report(&self) -> S3ScanReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl S3ScanReport {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "sse_kms_keys": self.sse_kms_keys,
            "server_side_encryption": self.sse,
            "metadata_keys": self.metadata_keys,
            "metadata_bare_data_keys": self.metadata_bare,
            "metadata_missing": self.metadata_missing,
            "unreadable": self.unreadable,
        })
    }

    /// As text for a person.
    pub fn to_text(&self, metadata_key: Option<&str>) -> String {
        let mut out = String::from("objects per SSE-KMS key:\n");
        if self.sse_kms_keys.is_empty() {
            out.push_str("  (none)\n");
        }
        for (key, n) in &self.sse_kms_keys {
            out.push_str(&format!("  {n:>10}  {key}\n"));
        }
        out.push_str("objects per server-side encryption:\n");
        for (sse, n) in &self.sse {
            out.push_str(&format!("  {n:>10}  {sse}\n"));
        }
        if let Some(name) = metadata_key {
            out.push_str(&format!("metadata data keys ({name}):\n"));
            for (key, n) in &self.metadata_keys {
                out.push_str(&format!("  {n:>10}  {key}\n"));
            }
            out.push_str(&format!(
                "  {:>10}  bare KMS blobs (they name their key only to KMS)\n  {:>10}  objects without the entry\n",
                self.metadata_bare, self.metadata_missing
            ));
        }
        if self.unreadable > 0 {
            out.push_str(&format!("{:>12}  unreadable\n", self.unreadable));
        }
        out
    }
}

impl Sink<ObjectUnit> for S3ScanSink {
    fn start(&self, _journal: Option<Arc<Journal>>, _checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<ObjectUnit>) -> Result<(), ItemError> {
        let Some(head) = &unit.payload.head else {
            return Ok(());
        };
        let mut report = self.report.lock().map_err(|_| ItemError::input("internal: scan lock poisoned"))?;
        if let Some(key) = head.kms_key() {
            *report.sse_kms_keys.entry(key.to_owned()).or_default() += 1;
        }
        let sse = head.sse.as_ref().map_or("none", |s| s.as_str()).to_owned();
        *report.sse.entry(sse).or_default() += 1;
        if let S3Job::Scan { metadata_key: Some(_) } = &unit.payload.shared.job {
            match unit.items.first().map(|i| i.bytes.as_slice()) {
                None | Some([]) => report.metadata_missing += 1,
                Some(bytes) => {
                    let keys: Option<Vec<String>> = std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|t| envelope_core::hazmat::decode_text(t.trim_ascii()).ok())
                        .and_then(|b| {
                            let parsed = envelope_core::hazmat::Envelope::parse(
                                &b,
                                &envelope_core::hazmat::ParseOptions::default(),
                            )
                            .ok()?;
                            let header = parsed.header();
                            Some(
                                header
                                    .encrypted_data_keys
                                    .iter()
                                    .map(|edk| format!("{}:{}", edk.provider_id(), edk.key_id()))
                                    .collect(),
                            )
                        });
                    match keys {
                        Some(keys) => {
                            for key in keys {
                                *report.metadata_keys.entry(key).or_default() += 1;
                            }
                        }
                        None => report.metadata_bare += 1,
                    }
                }
            }
        }
        Ok(())
    }

    fn commit(&self, unit: Unit<ObjectUnit>, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        if unit.error.is_some() {
            let mut report = self.report.lock().map_err(|_| Error::new(ErrorKind::Io, "scan lock poisoned"))?;
            report.unreadable += 1;
        }
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }
}

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
            params.insert("method".into(), format!("{:?}", job.method).to_lowercase());
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
pub async fn rollback(client: &Client, journal_path: &std::path::Path) -> Result<(Summary, Vec<String>), Error> {
    let start = std::time::Instant::now();
    let (_lock, entries, skipped_lines) = journal::read_for_rollback(journal_path)?;
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
    conflicts.extend(skipped_lines);
    summary.elapsed = start.elapsed();
    Ok((summary, conflicts))
}

enum Restoration {
    Done,
    AlreadyBack,
    Conflict(String),
}

async fn restore_object(
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
async fn body_sha256(
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

/// Objects up to this size are read whole; larger ones only by their header.
pub const READ_WHOLE_UP_TO: u64 = 8 << 20;
/// The largest envelope header read.
const MAX_HEADER: usize = 4 << 20;
/// Body bytes sent with the new header in the first part of a rewrite.
const FIRST_PART_BODY: u64 = 8 << 20;
/// Ranges copied server-side per part of a rewrite.
const COPY_PART: u64 = 256 << 20;

/// GetObject of the version read, conditional on its ETag; a byte range or all.
async fn get_bytes(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    range: Option<(u64, u64)>,
) -> Result<Vec<u8>, ItemError> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(read.version_id.clone())
        .if_match(&read.etag)
        .set_range(range.map(|(a, b)| format!("bytes={a}-{b}")))
        .send()
        .await
        .map_err(|e| item_error("GetObject", &e))?;
    let body = out.body.collect().await.map_err(|e| io_error("cannot read the object", &e))?;
    Ok(body.into_bytes().to_vec())
}

/// The header of a framed envelope (growing ranged GETs); `None` when the
/// object is not a framed envelope.
async fn read_header(client: &Client, bucket: &str, key: &str, read: &Head) -> Result<Option<Vec<u8>>, ItemError> {
    let options = envelope_core::hazmat::ParseOptions { max_encrypted_data_keys: 255 };
    let mut want: u64 = 64 << 10;
    loop {
        let end = want.min(read.size).saturating_sub(1);
        let mut bytes = get_bytes(client, bucket, key, read, Some((0, end))).await?;
        match envelope_core::hazmat::Header::parse_prefix(&bytes, &options) {
            Ok((header, _, len)) => {
                bytes.truncate(len);
                return Ok(matches!(header.body_form, envelope_core::hazmat::BodyForm::Framed { .. }).then_some(bytes));
            }
            Err(envelope_core::FormatError::Truncated(_))
                if want < read.size && usize::try_from(want).is_ok_and(|w| w < MAX_HEADER) =>
            {
                want *= 4;
            }
            Err(_) => return Ok(None),
        }
    }
}

/// The object's tags as the `x-amz-tagging` header wants them.
async fn tagging(client: &Client, bucket: &str, key: &str, read: &Head) -> Result<Option<String>, ItemError> {
    let tags = client
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .set_version_id(read.version_id.clone())
        .send()
        .await
        .map_err(|e| item_error("GetObjectTagging", &e))?;
    let pairs: Vec<String> =
        tags.tag_set().iter().map(|t| format!("{}={}", form_encode(t.key()), form_encode(t.value()))).collect();
    Ok(if pairs.is_empty() { None } else { Some(pairs.join("&")) })
}

/// Every property of the object as read (a [`Head`]) on a request that
/// replaces it (PutObject, CreateMultipartUpload): the two SDK builders
/// share these setters but no trait.
macro_rules! carry_properties {
    ($request:expr, $read:expr, $tags:expr, $expires:expr) => {{
        let read: &Head = $read;
        #[allow(deprecated)] // `expires`, kept as the object had it
        let request = $request
            .set_metadata(Some(read.metadata.clone().into_iter().collect()))
            .set_tagging($tags)
            .set_content_type(read.content_type.clone())
            .set_content_encoding(read.content_encoding.clone())
            .set_content_disposition(read.content_disposition.clone())
            .set_content_language(read.content_language.clone())
            .set_cache_control(read.cache_control.clone())
            .set_expires($expires)
            .set_website_redirect_location(read.website_redirect.clone())
            .set_storage_class(read.storage_class.clone())
            .set_ssekms_encryption_context(read.context_for(read.sse.as_ref()))
            .set_server_side_encryption(read.sse.clone())
            .set_ssekms_key_id(read.kms_key().map(str::to_owned))
            .set_bucket_key_enabled(read.bucket_key.filter(|_| read.is_kms()))
            .set_object_lock_mode(read.lock_mode.clone())
            .set_object_lock_retain_until_date(read.lock_until)
            .set_object_lock_legal_hold_status(read.legal_hold.clone());
        request
    }};
}

/// PutObject of a whole new body, every property carried over, conditional
/// (`If-Match`) on the ETag read.
async fn put_whole(client: &Client, bucket: &str, key: &str, read: &Head, body: Vec<u8>) -> Result<(), ItemError> {
    let expires = parse_expires(read)?;
    let tags = tagging(client, bucket, key, read).await?;
    let request = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .if_match(&read.etag)
        .body(aws_sdk_s3::primitives::ByteStream::from(body));
    carry_properties!(request, read, tags, expires).send().await.map_err(|e| item_error("PutObject", &e))?;
    Ok(())
}

/// Replaces the first `old_header_len` bytes of a large object by `header`:
/// a multipart upload whose first part is the new header and the body's
/// first bytes (one ranged GET), the rest ranges of the object itself copied
/// by S3 (`UploadPartCopy`, each conditional on the ETag read).
async fn rewrite_header(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    header: &[u8],
    old_header_len: usize,
) -> Result<(), ItemError> {
    let upload_id = create_upload(client, bucket, key, read).await?;
    let result = async {
        let body_start = old_header_len as u64;
        let first_end = (body_start + FIRST_PART_BODY).min(read.size);
        let mut first = header.to_vec();
        if first_end > body_start {
            first.extend(get_bytes(client, bucket, key, read, Some((body_start, first_end - 1))).await?);
        }
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(1)
            .body(aws_sdk_s3::primitives::ByteStream::from(first))
            .send()
            .await
            .map_err(|e| item_error("UploadPart", &e))?;
        let mut parts = vec![CompletedPart::builder().part_number(1).set_e_tag(out.e_tag().map(str::to_owned)).build()];
        let mut start = first_end;
        let mut number = 2;
        while start < read.size {
            let end = (start + COPY_PART).min(read.size) - 1;
            let out = client
                .upload_part_copy()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .copy_source(copy_source(bucket, key, read.version_id.as_deref()))
                .copy_source_if_match(&read.etag)
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| item_error("UploadPartCopy", &e))?;
            let etag = out.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned);
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(etag).build());
            start = end + 1;
            number += 1;
        }
        complete_upload(client, bucket, key, read, &upload_id, parts).await
    }
    .await;
    if result.is_err() {
        let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
    }
    result
}

/// Starts the multipart upload of an object's replacement, with every
/// property of the object as read carried over.
async fn create_upload(client: &Client, bucket: &str, key: &str, read: &Head) -> Result<String, ItemError> {
    let expires = parse_expires(read)?;
    let tags = tagging(client, bucket, key, read).await?;
    let request = client.create_multipart_upload().bucket(bucket).key(key);
    let created = carry_properties!(request, read, tags, expires)
        .send()
        .await
        .map_err(|e| item_error("CreateMultipartUpload", &e))?;
    Ok(created
        .upload_id()
        .ok_or_else(|| ItemError::new(ItemErrorCode::Io, "CreateMultipartUpload returned no upload id"))?
        .to_owned())
}

/// Completes a replacement only if the object is still the one read.
async fn complete_upload(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> Result<(), ItemError> {
    // Checked here too: some servers ignore If-Match on this call (S3 honours it).
    still_as_read(client, bucket, key, read).await?;
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .if_match(&read.etag)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .map_err(|e| item_error("CompleteMultipartUpload", &e))?;
    Ok(())
}

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
fn backup_run() -> &'static str {
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
async fn keep_original(
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

/// Parts of a streamed re-encryption: S3's least (but for the last part).
/// At most three are in memory: one filling, one queued, one uploading.
#[allow(clippy::cast_possible_truncation)] // 5 MiB
const STREAM_PART: usize = MIN_PART_SIZE as usize;

/// A re-encryption of an object too large to hold: the original is kept
/// first (as for small objects); the object is then read, decrypted and
/// sealed frame by frame into a multipart upload (constant memory, the
/// plaintext only in zeroized chunks in memory); the journal entry goes in
/// once the new object's hash is known, and the upload completes only if
/// the object is still the one read and every frame authenticated.
#[allow(clippy::too_many_arguments)]
async fn reencrypt_streamed(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    journal: &Journal,
    id: &str,
    job: Arc<StreamJob>,
    backup_prefix: &str,
) -> Result<(), ItemError> {
    still_as_read(client, bucket, key, read).await?;
    let backup_key = keep_original(client, bucket, key, read, backup_prefix).await?;
    let upload_id = create_upload(client, bucket, key, read).await?;
    let result = async {
        let (parts, old_sha256, new_sha256) = upload_reencrypted(client, bucket, key, read, &upload_id, job).await?;
        let entry = Entry::Object {
            item: id.to_owned(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: read.version_id.clone(),
            etag: read.etag.clone(),
            undo: ObjectUndo::Original { backup_key, version_id: read.version_id.clone(), old_sha256, new_sha256 },
        };
        journal.append(&entry, true).map_err(|e| io_error("cannot write the journal", &e))?;
        complete_upload(client, bucket, key, read, &upload_id, parts).await
    }
    .await;
    match result {
        Ok(()) => journal
            .append(&Entry::Done { item: id.to_owned() }, false)
            .map_err(|e| io_error("cannot write the journal", &e)),
        Err(e) => {
            let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
            if e.code == ItemErrorCode::ChangedDuringRotation {
                let _ = journal.append(&Entry::Abandoned { item: id.to_owned() }, false);
            }
            Err(e)
        }
    }
}

/// Reads the object (the version read, if it still has that ETag), re-encrypts
/// it and uploads the result as parts of `upload_id`; returns the parts and
/// the SHA-256 of the original and of the new object.
async fn upload_reencrypted(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    upload_id: &str,
    job: Arc<StreamJob>,
) -> Result<(Vec<CompletedPart>, String, String), ItemError> {
    use sha2::Digest as _;
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(read.version_id.clone())
        .if_match(&read.etag)
        .send()
        .await
        .map_err(|e| item_error("GetObject", &e))?;
    let mut body = object.body;
    let (chunks, chunks_rx) = std::sync::mpsc::sync_channel(super::files::PIPE_CHUNKS);
    let (parts_tx, mut parts_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    // Three stages at once, each waiting on the next: the download into a
    // pipe, the decryption and sealing, and the upload of each full part.
    let handle = tokio::runtime::Handle::current();
    let feeding = tokio::task::spawn_blocking(move || -> Result<(), ItemError> {
        while let Some(chunk) = handle.block_on(body.next()) {
            let chunk = chunk.map_err(|e| io_error("cannot read the object", &e))?;
            if chunks.send(zeroize::Zeroizing::new(chunk.to_vec())).is_err() {
                break; // the sealing side stopped and says why
            }
        }
        Ok(())
    });
    let sealing = tokio::task::spawn_blocking(move || -> Result<(String, String), ItemError> {
        let mut reader = HashingPipe { pipe: super::files::PipeReader::new(chunks_rx), hash: sha2::Sha256::new() };
        let mut writer =
            PartWriter { parts: parts_tx, part: Vec::with_capacity(STREAM_PART), hash: sha2::Sha256::new() };
        super::files::reencrypt_stream(&job, &mut reader, &mut writer)?;
        writer.send_part().map_err(|e| io_error("cannot upload", &e))?;
        Ok((journal::hex(&reader.hash.finalize()), journal::hex(&writer.hash.finalize())))
    });
    let uploading = async move {
        let mut parts = Vec::new();
        let mut number = 1;
        while let Some(part) = parts_rx.recv().await {
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(aws_sdk_s3::primitives::ByteStream::from(part))
                .send()
                .await
                .map_err(|e| item_error("UploadPart", &e))?;
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_owned)).build());
            number += 1;
        }
        Ok::<_, ItemError>(parts)
    };
    let uploaded = uploading.await;
    let stopped = |_| ItemError::new(ItemErrorCode::Io, "a re-encryption thread stopped");
    let sealed = sealing.await.map_err(stopped)?;
    let fed = feeding.await.map_err(stopped)?;
    // The first stage to fail is the cause; the later ones only saw their input end.
    fed?;
    let parts = uploaded?;
    let (old_sha256, new_sha256) = sealed?;
    Ok((parts, old_sha256, new_sha256))
}

/// The sealing stage's input: the downloaded chunks, hashed as read.
struct HashingPipe {
    pipe: super::files::PipeReader,
    hash: sha2::Sha256,
}

impl std::io::Read for HashingPipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.pipe.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The sealing stage's output: parts of at least `STREAM_PART` bytes (but
/// the last) handed to the upload, hashed as written.
struct PartWriter {
    parts: tokio::sync::mpsc::Sender<Vec<u8>>,
    part: Vec<u8>,
    hash: sha2::Sha256,
}

impl PartWriter {
    /// Hands over what is gathered (also an empty last part: an upload needs one).
    fn send_part(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.part, Vec::with_capacity(STREAM_PART));
        self.parts.blocking_send(part).map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl std::io::Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        self.part.extend_from_slice(buf);
        self.hash.update(buf);
        if self.part.len() >= STREAM_PART {
            self.send_part()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn reencrypt_whole(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    journal: &Journal,
    id: &str,
    original: &[u8],
    new: Vec<u8>,
    backup_prefix: &str,
) -> Result<(), ItemError> {
    still_as_read(client, bucket, key, read).await?;
    let backup_key = keep_original(client, bucket, key, read, backup_prefix).await?;
    let entry = Entry::Object {
        item: id.to_owned(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: read.version_id.clone(),
        etag: read.etag.clone(),
        undo: ObjectUndo::Original {
            backup_key,
            version_id: read.version_id.clone(),
            old_sha256: journal::sha256(original),
            new_sha256: journal::sha256(&new),
        },
    };
    journal.append(&entry, true).map_err(|e| io_error("cannot write the journal", &e))?;
    match put_whole(client, bucket, key, read, new).await {
        Ok(()) => journal
            .append(&Entry::Done { item: id.to_owned() }, false)
            .map_err(|e| io_error("cannot write the journal", &e)),
        Err(e) => {
            if e.code == ItemErrorCode::ChangedDuringRotation {
                let _ = journal.append(&Entry::Abandoned { item: id.to_owned() }, false);
            }
            Err(e)
        }
    }
}

/// CopyObject from `from` (a key, a version of it, and the ETag it must
/// still have) to `to`, keeping metadata, tags
/// and content headers (`COPY` directives) and resending the source's
/// storage class and server-side encryption; conditional on `to_etag` being
/// the destination's current ETag when given (checked by a read just before),
/// and on `to` not existing without it (a read just before, and
/// `If-None-Match: *`, which S3 enforces on copies).
async fn copy_object_to(
    client: &Client,
    bucket: &str,
    (from, from_version, from_etag): (&str, Option<&str>, Option<&str>),
    to: &str,
    to_etag: Option<&str>,
    sse_context: Option<&str>,
) -> Result<(), ItemError> {
    let source = client
        .head_object()
        .bucket(bucket)
        .key(from)
        .set_version_id(from_version.map(str::to_owned))
        .send()
        .await
        .map_err(|e| item_error("HeadObject", &e))?;
    if from_etag.is_some_and(|etag| source.e_tag() != Some(etag)) {
        return Err(ItemError::new(
            ItemErrorCode::ChangedDuringRotation,
            format!("s3://{bucket}/{from} changed while it was being checked"),
        ));
    }
    if let Some(etag) = to_etag {
        let now = head(client, bucket, to).await?;
        if now.etag != etag {
            return Err(changed());
        }
    } else {
        match client.head_object().bucket(bucket).key(to).send().await {
            Ok(_) => {
                return Err(ItemError::new(
                    ItemErrorCode::Io,
                    format!("s3://{bucket}/{to} already exists, and a backup is never written over"),
                ));
            }
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => return Err(item_error("HeadObject", &e)),
        }
    }
    let is_kms = matches!(
        source.server_side_encryption(),
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    );
    let copy = client
        .copy_object()
        .bucket(bucket)
        .key(to)
        .copy_source(copy_source(bucket, from, from_version))
        .set_copy_source_if_match(source.e_tag().map(str::to_owned))
        .metadata_directive(MetadataDirective::Copy)
        .tagging_directive(TaggingDirective::Copy)
        .set_storage_class(source.storage_class().cloned())
        .set_server_side_encryption(source.server_side_encryption().cloned())
        .set_ssekms_encryption_context(sse_context.filter(|_| is_kms).map(str::to_owned))
        .set_ssekms_key_id(source.ssekms_key_id().filter(|_| is_kms).map(str::to_owned))
        .set_bucket_key_enabled(source.bucket_key_enabled().filter(|_| is_kms));
    let fresh = to_etag.is_none();
    match copy.clone().set_if_none_match(fresh.then(|| "*".to_owned())).send().await {
        Ok(_) => Ok(()),
        // A server without conditional copies: the name was seen free just before.
        Err(e) if fresh && not_implemented(&e) => {
            copy.send().await.map_err(|e| item_error("CopyObject", &e))?;
            Ok(())
        }
        Err(e) => Err(item_error("CopyObject", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keys_and_endpoints() {
        let u: S3Url = "s3://b/p/q".parse().expect("url");
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("b", "p/q"));
        let whole: S3Url = "s3://b".parse().expect("url");
        assert_eq!(whole.prefix, "");
        assert!("s3:///x".parse::<S3Url>().is_err() && "b/x".parse::<S3Url>().is_err());
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(same_key(arn, "1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(same_key("kms:1234abcd-12ab-34cd-56ef-1234567890ab", arn));
        assert!(!same_key(arn, "other"));
        assert_eq!(encode_key("a b/c+d"), "a%20b/c%2Bd");
        assert_eq!(percent_decode("a%20b/c%2Bd+e").as_deref(), Some("a b/c+d e"));
        assert!(percent_decode("bad%2").is_none());
        assert!(check_endpoint("http://127.0.0.1:5000").is_ok());
        assert!(check_endpoint("http://[::1]:5000/").is_ok());
        assert!(check_endpoint("https://s3.example.com").is_ok());
        assert!(check_endpoint("http://s3.example.com").is_err());
    }

    #[test]
    fn object_list_lines_are_read_with_a_bound() {
        let long = "x".repeat(MAX_LIST_LINE * 3);
        let text = format!("a\n{long}\nb\r\n{long}");
        let lines: Vec<(String, bool)> =
            BoundedLines(Box::new(std::io::Cursor::new(text.into_bytes()))).map(|l| l.expect("line")).collect();
        let shape: Vec<(usize, bool)> = lines.iter().map(|(l, cut)| (l.len(), *cut)).collect();
        assert_eq!(shape, [(1, false), (MAX_LIST_LINE, true), (2, false), (MAX_LIST_LINE, true)]);
        assert_eq!((lines[0].0.as_str(), lines[2].0.as_str()), ("a", "b\r"));
    }

    #[test]
    fn backup_prefixes_that_could_meet_the_rotated_objects_are_refused() {
        let url: S3Url = "s3://b/data/".parse().expect("url");
        for bad in ["", "data/", "data/old/", "d", "data"] {
            let e = check_backup_prefix(&url, bad).expect_err(bad);
            assert!(e.message.contains("--backup-prefix") && e.hint.is_some(), "{bad:?}: {}", e.message);
        }
        assert!(check_backup_prefix(&url, ".rekey-backup/").is_ok() && check_backup_prefix(&url, "dat/").is_ok());
        let whole: S3Url = "s3://b".parse().expect("url");
        assert!(check_backup_prefix(&whole, ".rekey-backup/").is_ok(), "left out of a whole bucket's listing");
        assert!(check_backup_prefix(&whole, "").is_err());
        let run = backup_run();
        assert!(run.len() == 25 && run.as_bytes()[8] == b'T' && run.as_bytes()[15] == b'Z', "{run}");
    }
}

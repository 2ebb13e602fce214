//! The inventory: ListObjectsV2 a page at a time, or a key list / S3 Inventory
//! report the operator gives, read with bounds.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_s3::Client;
use globset::GlobSet;
use serde_json::Value;

use super::body::{READ_WHOLE_UP_TO, get_bytes, read_header};
use super::client::{PAGE, S3Url, blocking, describe, same_key};
use super::copy::percent_decode;
use super::object::{ObjectUnit, Probe, S3Job, Shared, head};
use crate::engine::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use crate::engine::item::{Item, Unit};
use crate::engine::ports::Source;
use crate::engine::transform::{ChangeKind, Outcome};

/// The objects under a prefix, listed one page at a time.
pub struct S3Source {
    pub(super) shared: Arc<Shared>,
    pub(super) url: S3Url,
    pub(super) include: Option<GlobSet>,
    pub(super) exclude: Option<GlobSet>,
    pub(super) page: VecDeque<String>,
    pub(super) token: Option<String>,
    pub(super) listed_all: bool,
    pub(super) list: Option<ListFile>,
}

/// An inventory read from files instead of ListObjectsV2, line by line.
pub(super) struct ListFile {
    pub(super) path: std::path::PathBuf,
    pub(super) lines: BoundedLines,
    pub(super) line: u64,
    /// An S3 Inventory manifest's data files not read yet.
    pub(super) rest: VecDeque<std::path::PathBuf>,
    /// Columns of an inventory's schema that mark rows to leave out:
    /// `IsLatest` (only current versions are rotated) and `IsDeleteMarker`.
    pub(super) is_latest: Option<usize>,
    pub(super) is_delete_marker: Option<usize>,
}

impl ListFile {
    pub(super) fn open(path: &std::path::Path) -> Result<BoundedLines, Error> {
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
    pub(super) fn manifest(path: &std::path::Path) -> Result<Self, Error> {
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
pub(super) const MAX_LIST_LINE: usize = 64 << 10;

/// The lines of an object list, each read with a bound: a longer line (a
/// 400 MB line without a newline, say) is cut at [`MAX_LIST_LINE`] bytes,
/// the rest skipped unread into memory, and returned marked as cut.
pub(super) struct BoundedLines(pub(super) Box<dyn std::io::BufRead + Send>);

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
            include: crate::engine::files::globs(include)?,
            exclude: crate::engine::files::globs(exclude)?,
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
    pub(super) fn next_listed(&mut self) -> Result<Option<String>, Error> {
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

    pub(super) fn wanted(&self, key: &str) -> bool {
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

    pub(super) fn fetch_page(&mut self) -> Result<(), Error> {
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
                        if probe.under_destination(&item.bytes, &item.context).await {
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

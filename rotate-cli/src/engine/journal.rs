//! The journal: one entry per line, each line `CHECKSUM JSON`, appended and
//! fsynced before the change it describes is made visible, so that after a
//! crash at any moment every changed item can be found and put back.
//!
//! What crashes do to it is expected: a torn last line is cut off when a run
//! resumes; a damaged line anywhere else is a loud error, never a silent end.
//! The file is locked for the whole run, so two runs can never share it.
//! The first entry records the run's parameters, and `--resume` with other
//! parameters is refused, naming the difference.
//!
//! It holds only ciphertext (old key lists, original items, which are
//! envelopes, legacy records or wrapped keys) and hashes: never a plaintext
//! or a data key.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{Error, ErrorKind};
use super::format;
use super::report::Counts;
use crate::fsio;
use envelope_core::EncryptedDataKey;
use envelope_core::hazmat::{Envelope, ParseOptions};

/// The journal format this build writes.
const FORMAT_VERSION: u32 = 2;

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
    /// Written and synced before a change to one item of a target that
    /// keeps its own undo record (DynamoDB): rollback hands `undo` to the
    /// target named by `target`. `Done` and `Abandoned` entries use the same `item`.
    Change {
        /// How reports name the item.
        item: String,
        /// The target kind that wrote the entry and reads it back.
        target: String,
        /// What the target needs to put the item back (ciphertext only).
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

/// An open, locked journal, shared by the workers.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    /// Why an append failed: the journal takes no more entries, and the
    /// engine stops the run (see [`Journal::failure`]).
    failed: Mutex<Option<String>>,
}

impl Journal {
    /// Opens `path` for a run and locks it. An existing journal is continued
    /// with `resume`, and refused without it, so a finished run's undo record
    /// is never overwritten by accident. Returns the entries already there.
    ///
    /// # Errors
    /// Usage errors for an existing journal without `resume`, a journal held
    /// by another run, or other parameters; I/O errors; a damaged journal.
    pub fn open(path: &Path, resume: bool, params: &RunParams) -> Result<(Self, Vec<Entry>), Error> {
        let exists = std::fs::symlink_metadata(path).is_ok();
        if exists && !resume {
            let shown = path.display();
            // Read only to say which way out fits; a journal in use says so here.
            let nothing = read_locked(path).is_ok_and(|(_, entries)| changed_nothing(&entries));
            return Err(if nothing {
                Error::usage(format!("journal {shown} already exists, from a run that changed nothing")).hint(format!(
                    "retire it with `rekey rollback --journal {shown}` (there is nothing to undo), then rerun"
                ))
            } else {
                Error::usage(format!("journal {shown} already exists")).hint(format!(
                    "pass --resume to continue that run, `rekey rollback --journal {shown}` to undo it, or --journal to \
                     choose another file"
                ))
            });
        }
        let file = fsio::open_private(path, true).map_err(|e| {
            Error::io(format!("cannot open journal {}", path.display()), &e)
                .hint("choose a place you may write with --journal FILE")
        })?;
        lock(&file, path)?;
        let journal = Self { path: path.to_path_buf(), file: Mutex::new(file), failed: Mutex::new(None) };
        let entries = journal.read_for_resume()?;
        match entries.first() {
            None => {
                journal.append(&Entry::Run { version: FORMAT_VERSION, params: params.clone() }, true)?;
                fsio::sync_dir(path).map_err(|e| Error::io("cannot sync the journal's directory", &e))?;
            }
            Some(Entry::Run { params: before, .. }) => check_same_run(before, params).map_err(|e| {
                if changed_nothing(&entries) {
                    e.hint(format!(
                        "that run changed nothing: retire its journal with `rekey rollback --journal {}`, then run \
                         the corrected command without --resume",
                        path.display()
                    ))
                } else {
                    e
                }
            })?,
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::BadInput,
                    format!("{} does not start with a run entry", path.display()),
                ));
            }
        }
        Ok((journal, entries))
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the entries, cutting a torn last line off the file.
    fn read_for_resume(&self) -> Result<Vec<Entry>, Error> {
        let mut file = self.file.lock().map_err(|_| Error::new(ErrorKind::Io, "journal lock poisoned"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| Error::io("cannot read the journal", &e))?;
        let (entries, good_len) = parse(&bytes, &self.path)?;
        if good_len < bytes.len() {
            tracing::warn!(journal = %self.path.display(), "cutting off a torn last line left by a crash");
            file.set_len(good_len as u64).map_err(|e| Error::io("cannot repair the journal", &e))?;
            file.sync_all().map_err(|e| Error::io("cannot sync the journal", &e))?;
        }
        Ok(entries)
    }

    /// Appends one entry; `sync` makes it durable before returning.
    ///
    /// # Errors
    /// I/O errors writing or syncing.
    pub fn append(&self, entry: &Entry, sync: bool) -> Result<(), Error> {
        self.append_encoded(&Encoded(encode_line(entry)?), sync)
    }

    /// Appends entries in one write (a batch of rows, say); `sync` makes
    /// them durable before returning.
    ///
    /// # Errors
    /// I/O errors writing or syncing.
    pub fn append_all<'a>(&self, entries: impl IntoIterator<Item = &'a Entry>, sync: bool) -> Result<(), Error> {
        self.append_encoded(&Encoded::new(entries)?, sync)
    }

    /// Appends entries encoded beforehand (on another thread, say) in one write.
    ///
    /// # Errors
    /// I/O errors writing or syncing.
    pub fn append_encoded(&self, lines: &Encoded, sync: bool) -> Result<(), Error> {
        let mut file = self.file.lock().map_err(|_| Error::new(ErrorKind::Io, "journal lock poisoned"))?;
        if let Some(e) = self.failure() {
            return Err(e);
        }
        append_to(&mut *file, &lines.0, sync).map_err(|e| self.fail(&e))
    }

    /// Makes everything appended so far durable.
    ///
    /// # Errors
    /// I/O errors syncing.
    pub fn sync(&self) -> Result<(), Error> {
        let file = self.file.lock().map_err(|_| Error::new(ErrorKind::Io, "journal lock poisoned"))?;
        if let Some(e) = self.failure() {
            return Err(e);
        }
        file.sync_data().map_err(|e| self.fail(&e))
    }

    /// Why the journal stopped taking entries, if it did: an append or a
    /// sync failed (a full disk, say). Nothing a run does after that could
    /// be undone, so the engine stops the run.
    pub fn failure(&self) -> Option<Error> {
        let failed = self.failed.lock().map_or_else(|p| p.into_inner().clone(), |f| f.clone());
        failed.map(|why| {
            Error::new(ErrorKind::Io, format!("cannot write the journal {}: {why}", self.path.display())).hint(
                "the run stopped; the journal ends with its last whole entry. Make room (or fix the disk), \
                 then rerun the same command with --resume",
            )
        })
    }

    /// Records a failed append or sync; returns the error to report.
    fn fail(&self, e: &std::io::Error) -> Error {
        let mut failed = self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failed.get_or_insert_with(|| e.to_string());
        drop(failed);
        self.failure().unwrap_or_else(|| Error::io("cannot write the journal", e))
    }
}

/// What appending needs of the journal file: the seam where tests inject
/// a disk that fills up part-way through a write.
trait AppendTarget: Write {
    /// The current length.
    fn len(&self) -> std::io::Result<u64>;
    /// Cuts the file back to `len`.
    fn cut(&mut self, len: u64) -> std::io::Result<()>;
    /// Makes the data durable.
    fn sync(&self) -> std::io::Result<()>;
}

impl AppendTarget for File {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn cut(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// Appends whole lines, or nothing: a write that fails part-way (ENOSPC
/// after some bytes) or a failed sync cuts the file back to where it was,
/// so no fragment is ever left for later lines to follow.
fn append_to(file: &mut impl AppendTarget, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let good = file.len()?;
    let written = file.write_all(bytes).and_then(|()| if sync { file.sync() } else { Ok(()) });
    if let Err(e) = written {
        if let Err(cut) = file.cut(good).and_then(|()| file.sync()) {
            return Err(std::io::Error::new(
                e.kind(),
                format!("{e}; cutting the partial entry off failed too ({cut}): rollback skips it, naming its line"),
            ));
        }
        return Err(e);
    }
    Ok(())
}

/// Journal lines ready to append: the encoding (JSON, checksums) done
/// where it is cheapest, the write where the order is kept.
#[derive(Debug, Default)]
pub struct Encoded(Vec<u8>);

impl Encoded {
    /// Encodes `entries`, one line each.
    ///
    /// # Errors
    /// An entry that does not serialize.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<Self, Error> {
        let mut lines = Vec::new();
        for entry in entries {
            lines.extend_from_slice(&encode_line(entry)?);
        }
        Ok(Self(lines))
    }
}

/// Whether a journal records no change at all (every item failed, or was
/// already done): it has nothing to undo.
pub fn changed_nothing(entries: &[Entry]) -> bool {
    entries.iter().all(|e| match e {
        Entry::Begin { .. } | Entry::Row { .. } | Entry::Object { .. } | Entry::Change { .. } => false,
        Entry::Checkpoint { counts, .. } => counts.rewrapped == 0 && counts.reencrypted == 0,
        _ => true,
    })
}

/// Retires the journal of a run that changed nothing, so it no longer
/// blocks the next run: it and its failure report are renamed to
/// `JOURNAL.retired` (`.retired.2`, … when taken), kept as a record.
/// Returns the new name, or `None` when the journal records a change.
///
/// # Errors
/// I/O errors, a journal in use by a run, a damaged journal.
pub fn retire_if_unchanged(path: &Path) -> Result<Option<PathBuf>, Error> {
    let (_lock, entries) = read_locked(path)?;
    if !changed_nothing(&entries) {
        return Ok(None);
    }
    let retired = (1..)
        .map(|n| {
            let suffix = if n == 1 { ".retired".to_owned() } else { format!(".retired.{n}") };
            suffixed(path, &suffix)
        })
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or_else(|| suffixed(path, ".retired"));
    std::fs::rename(path, &retired)
        .map_err(|e| Error::io(format!("cannot retire the journal {}", path.display()), &e))?;
    let failures = suffixed(path, ".failures.jsonl");
    if std::fs::symlink_metadata(&failures).is_ok() {
        std::fs::rename(&failures, suffixed(&retired, ".failures.jsonl"))
            .map_err(|e| Error::io(format!("cannot move the failure report {}", failures.display()), &e))?;
    }
    fsio::sync_dir(path).map_err(|e| Error::io("cannot sync the journal's directory", &e))?;
    Ok(Some(retired))
}

/// `path` with `suffix` appended to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Reads a journal for rollback, holding its lock for as long as the
/// returned file lives; a torn last line is ignored, any other damage is an error.
///
/// # Errors
/// I/O errors, a journal in use by a run, a damaged journal.
pub fn read_locked(path: &Path) -> Result<(File, Vec<Entry>), Error> {
    let mut file = fsio::open_private(path, false)
        .map_err(|e| Error::io(format!("cannot open journal {}", path.display()), &e))?;
    lock(&file, path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| Error::io("cannot read the journal", &e))?;
    let (entries, _) = parse(&bytes, path)?;
    if !matches!(entries.first(), Some(Entry::Run { .. })) {
        return Err(Error::new(ErrorKind::BadInput, format!("{} is not a rekey journal", path.display())));
    }
    Ok((file, entries))
}

/// Reads a journal for rollback like [`read_locked`], but past damaged
/// lines: every intact entry is returned, with a sentence for each line
/// skipped (torn or altered), so a rollback can restore what it can and
/// say what it could not.
///
/// # Errors
/// I/O errors, a journal in use by a run, a file that is not a journal.
pub fn read_for_rollback(path: &Path) -> Result<(File, Vec<Entry>, Vec<String>), Error> {
    let mut file = fsio::open_private(path, false)
        .map_err(|e| Error::io(format!("cannot open journal {}", path.display()), &e))?;
    lock(&file, path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| Error::io("cannot read the journal", &e))?;
    let read = read_lines(&bytes);
    if !matches!(read.entries.first(), Some(Entry::Run { .. })) {
        return Err(Error::new(ErrorKind::BadInput, format!("{} is not a rekey journal", path.display())));
    }
    let skipped = read
        .damaged
        .iter()
        .map(|d| {
            format!(
                "journal {}: {}; skipped: the change it recorded, if any, is not undone",
                path.display(),
                d.describe()
            )
        })
        .collect();
    Ok((file, read.entries, skipped))
}

fn lock(file: &File, path: &Path) -> Result<(), Error> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(Error::usage(format!("another rekey run is using {} right now", path.display()))
                .hint("wait for it to finish (or stop it), then rerun with --resume"))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("cannot lock {}", path.display()), &e)),
    }
}

/// One line: 16 hex digits of SHA-256 over the JSON, a space, the JSON.
fn encode_line(entry: &Entry) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_vec(entry).map_err(|e| Error::new(ErrorKind::Io, format!("journal: {e}")))?;
    let mut line = Vec::with_capacity(json.len() + 18);
    line.extend_from_slice(checksum(&json).as_bytes());
    line.push(b' ');
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

fn checksum(json: &[u8]) -> String {
    hex(&Sha256::digest(json)[..8])
}

/// Parses every line; returns the entries and the length of the intact
/// prefix. Only the last line may be damaged (a crash mid-append).
fn parse(bytes: &[u8], path: &Path) -> Result<(Vec<Entry>, usize), Error> {
    let read = read_lines(bytes);
    if let Some(damage) = read.damaged.first() {
        return Err(damage.error(path));
    }
    Ok((read.entries, read.good_len))
}

/// What [`read_lines`] found.
struct Lines {
    /// Every entry read, in order (also those after a damaged line).
    entries: Vec<Entry>,
    /// The length up to the first damaged line, a torn last line left out.
    good_len: usize,
    /// Damaged lines other than a torn last one.
    damaged: Vec<Damage>,
}

/// A line in the middle of a journal that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Damage {
    /// Its number, from 1.
    line: usize,
    /// Torn (a fragment of an append that failed part-way, the next
    /// append's entry after it) rather than altered (not what was written).
    torn: bool,
}

impl Damage {
    /// What it means, for a person.
    fn describe(self) -> String {
        if self.torn {
            format!(
                "line {} is torn: an append that failed part-way (a full disk, say) left a fragment there, and \
                 later entries follow it",
                self.line
            )
        } else {
            format!("line {} was altered after it was written (its checksum does not match its content)", self.line)
        }
    }

    /// The error that stops a resume.
    fn error(self, path: &Path) -> Error {
        let what = format!("journal {}: {}", path.display(), self.describe());
        if self.torn {
            Error::new(ErrorKind::BadInput, what).hint(format!(
                "a run cannot continue this journal; `rekey rollback --journal {}` restores every change its \
                 intact lines name and lists the lines it skips; then start the rotation again with a new journal",
                path.display()
            ))
        } else {
            Error::new(ErrorKind::BadInput, what).hint(
                "restore the journal from a backup before resuming; `rekey rollback` skips the altered line, naming it",
            )
        }
    }
}

/// Reads every line it can. A damaged last line is a crash's torn append
/// (left out of `good_len`); a damaged line elsewhere is recorded, and an
/// intact entry found right after a fragment on the same line (the append
/// that followed a failed one) is read too.
fn read_lines(bytes: &[u8]) -> Lines {
    let mut read = Lines { entries: Vec::new(), good_len: 0, damaged: Vec::new() };
    let mut offset = 0;
    let mut lines = bytes.split_inclusive(|b| *b == b'\n').peekable();
    let mut number = 0;
    while let Some(line) = lines.next() {
        number += 1;
        let last = lines.peek().is_none();
        if let Some(entry) = decode_line(line) {
            read.entries.push(entry);
            if read.damaged.is_empty() {
                offset += line.len();
                read.good_len = offset;
            }
            continue;
        }
        if last {
            break;
        }
        // Appends only ever tear the last line; a fragment in the middle is
        // followed, on the same line, by the next append's whole entry. A
        // damaged line without one was altered.
        let starts_entry = |at: usize| {
            line.get(at..at + 17).is_some_and(|h| h[..16].iter().all(u8::is_ascii_hexdigit) && h[16] == b' ')
        };
        let following = (1..line.len()).filter(|at| starts_entry(*at)).find_map(|at| decode_line(&line[at..]));
        read.damaged.push(Damage { line: number, torn: following.is_some() });
        read.entries.extend(following);
    }
    if read.damaged.is_empty() {
        read.good_len = offset;
    }
    read
}

fn decode_line(line: &[u8]) -> Option<Entry> {
    let line = line.strip_suffix(b"\n")?;
    let (sum, json) = line.split_at_checked(16)?;
    let json = json.strip_prefix(b" ")?;
    if sum != checksum(json).as_bytes() {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// Parameters journals did not always record: a journal without one was
/// written before, and is not compared on it (so it can still be resumed).
const RECORDED_LATER: [&str; 4] = ["source_keys", "kms_discovery", "legacy_key", "legacy_context"];

fn check_same_run(before: &RunParams, now: &RunParams) -> Result<(), Error> {
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(now.keys()).collect();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|k| before.contains_key(*k) || !RECORDED_LATER.contains(&k.as_str()))
        .filter(|k| before.get(*k) != now.get(*k))
        .map(|k| {
            format!(
                "{k}: the journal has {}, this command has {}",
                before.get(k).map_or("nothing", String::as_str),
                now.get(k).map_or("nothing", String::as_str)
            )
        })
        .collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(Error::usage(format!("--resume needs the same command as the run it continues; {}", differences.join("; ")))
        .hint("rerun exactly the command that made this journal, or roll it back first"))
}

/// A key list as an undo record: `[provider, key id, base64 blob]` triples, base64.
pub fn key_list(edks: &[EncryptedDataKey]) -> String {
    let list: Vec<serde_json::Value> =
        edks.iter().map(|e| serde_json::json!([e.provider_id(), e.key_id(), b64(e.wrapped())])).collect();
    b64(serde_json::Value::Array(list).to_string().as_bytes())
}

/// Reads a key list written by [`key_list`].
///
/// # Errors
/// A bad-input error when the record is damaged.
pub fn parse_key_list(text: &str) -> Result<Vec<EncryptedDataKey>, Error> {
    let damaged = || Error::new(ErrorKind::BadInput, "the journal holds a damaged undo record");
    let list: Vec<(String, String, String)> = serde_json::from_slice(&unb64(text)?).map_err(|_| damaged())?;
    list.into_iter().map(|(p, k, w)| EncryptedDataKey::new(p, k, unb64(&w)?).map_err(|_| damaged())).collect()
}

/// `item` (a whole envelope, binary or text, or the header of a framed one)
/// with its key list replaced by `edks`, in the same encoding: how a rewrap's
/// undo record rebuilds the original.
pub fn with_key_list(item: &[u8], edks: &[EncryptedDataKey]) -> Option<Vec<u8>> {
    let encoding = format::encoding_of(item);
    let bytes = encoding.decode(item).ok()?;
    let envelope = Envelope::parse(&bytes, &ParseOptions { max_encrypted_data_keys: 255 }).ok()?;
    Some(encoding.encode(&envelope.with_encrypted_data_keys(edks).ok()?))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    // By table: a `format!` per byte was a tenth of a table run's ordered loop.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// SHA-256 of `bytes`, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Base64 of `bytes`, for undo records.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes base64 from an undo record.
///
/// # Errors
/// A bad-input error when it is not base64.
pub fn unb64(text: &str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(text).map_err(|_| Error::new(ErrorKind::BadInput, "the journal holds a damaged undo record"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(to: &str) -> RunParams {
        RunParams::from([("operation".into(), "rewrap".into()), ("to".into(), to.into())])
    }

    #[test]
    fn a_torn_last_line_is_cut_and_a_damaged_middle_line_is_loud() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        {
            let (j, _) = Journal::open(&path, false, &params("a")).expect("open");
            j.append(&Entry::Done { item: "x".into() }, true).expect("append");
            j.append(&Entry::Done { item: "y".into() }, true).expect("append");
        }
        let full = std::fs::read(&path).expect("read");
        // Tear the last line in the middle.
        std::fs::write(&path, &full[..full.len() - 7]).expect("tear");
        let (j, entries) = Journal::open(&path, true, &params("a")).expect("resume");
        assert_eq!(entries.len(), 2, "the torn line is gone");
        j.append(&Entry::Done { item: "z".into() }, true).expect("append after repair");
        drop(j);
        let (_, entries) = read_locked(&path).expect("read");
        assert_eq!(entries.last(), Some(&Entry::Done { item: "z".into() }));

        // Flip one character of the second line: loud, wherever it is.
        let mut bytes = std::fs::read(&path).expect("read");
        let second = bytes.iter().position(|b| *b == b'\n').expect("a line") + 30;
        bytes[second] ^= 1;
        std::fs::write(&path, &bytes).expect("damage");
        let err = Journal::open(&path, true, &params("a")).expect_err("damaged");
        assert!(err.message.contains("line 2"), "{}", err.message);
    }

    /// A file on a disk that fills up after `room` more bytes.
    struct FillingDisk {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for FillingDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room);
            self.data.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl AppendTarget for FillingDisk {
        fn len(&self) -> std::io::Result<u64> {
            Ok(self.data.len() as u64)
        }
        fn cut(&mut self, len: u64) -> std::io::Result<()> {
            self.data.truncate(usize::try_from(len).expect("small"));
            Ok(())
        }
        fn sync(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_append_that_fills_the_disk_part_way_leaves_no_fragment() {
        let first = encode_line(&Entry::Done { item: "x".into() }).expect("line");
        let second = encode_line(&Entry::Done { item: "y".into() }).expect("line");
        let mut disk = FillingDisk { data: first.clone(), room: 10 };
        let err = append_to(&mut disk, &second, true).expect_err("disk full");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(disk.data, first, "the 10 bytes that fitted are cut off again");
        // Room again (another process freed some): the next entry starts on a line of its own.
        disk.room = usize::MAX;
        append_to(&mut disk, &second, true).expect("append");
        let read = read_lines(&disk.data);
        assert!(read.damaged.is_empty() && read.entries.len() == 2, "{:?}", read.damaged);
    }

    #[test]
    fn rollback_reads_past_a_torn_or_altered_middle_line_and_resume_names_which() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        let line = |item: &str| encode_line(&Entry::Done { item: item.into() }).expect("line");
        let run = encode_line(&Entry::Run { version: FORMAT_VERSION, params: params("a") }).expect("line");
        // What a partial write followed by a successful append leaves: a fragment, then a whole entry.
        let fragment = &line("y")[..20];
        let torn = [run.clone(), line("x"), fragment.to_vec(), line("z"), line("w")].concat();
        std::fs::write(&path, &torn).expect("write");
        let err = Journal::open(&path, true, &params("a")).expect_err("torn");
        assert!(err.message.contains("line 3 is torn"), "{}", err.message);
        assert!(err.hint.as_deref().is_some_and(|h| h.contains("rekey rollback")), "{:?}", err.hint);
        let (_, entries, skipped) = read_for_rollback(&path).expect("read past it");
        let items: Vec<_> = entries
            .iter()
            .filter_map(|e| if let Entry::Done { item } = e { Some(item.as_str()) } else { None })
            .collect();
        assert_eq!(items, ["x", "z", "w"], "the entry after the fragment is read too");
        assert!(skipped.len() == 1 && skipped[0].contains("line 3 is torn"), "{skipped:?}");

        // One character of a whole line changed: altered, not torn.
        let mut altered = line("y");
        altered[30] ^= 1;
        std::fs::write(&path, [run, line("x"), altered, line("w")].concat()).expect("write");
        let err = Journal::open(&path, true, &params("a")).expect_err("altered");
        assert!(err.message.contains("line 3 was altered"), "{}", err.message);
        let (_, entries, skipped) = read_for_rollback(&path).expect("read past it");
        assert_eq!(entries.len(), 3);
        assert!(skipped.len() == 1 && skipped[0].contains("line 3 was altered"), "{skipped:?}");
    }

    #[test]
    fn resume_with_other_parameters_is_refused_naming_the_difference() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        drop(Journal::open(&path, false, &params("kms:a")).expect("open"));
        let err = Journal::open(&path, true, &params("kms:b")).expect_err("other --to");
        assert!(err.message.contains("to: the journal has kms:a, this command has kms:b"), "{}", err.message);
        assert!(Journal::open(&path, false, &params("kms:a")).is_err(), "exists without --resume");
    }

    #[test]
    fn a_second_run_cannot_open_a_journal_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        let (_held, _) = Journal::open(&path, false, &params("a")).expect("open");
        let err = Journal::open(&path, true, &params("a")).expect_err("locked");
        assert!(err.message.contains("another rekey run"), "{}", err.message);
    }
}

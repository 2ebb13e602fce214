//! Files and directories of items, rewritten in place.
//!
//! Order of a replacement: the journal entry holding what rollback needs is
//! made durable; the new content is written to a temporary file beside the
//! original and fsynced; the original is checked to be the very file that
//! was read (device, inode, size, times), so a concurrent writer is never
//! overwritten; then the rename, and the directory fsync. A crash at any
//! moment leaves each file either as it was or as it will be.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use envelope_core::{EncryptedDataKey, Envelope, ParseOptions};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::json;

use super::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use super::journal::{self, Checkpoint, Entry, Journal, Undo};
use super::report::{Counts, Summary};
use super::transform::{ChangeKind, Encoding, Outcome};
use super::{Item, Rejected, Sink, Source, Unit};
use crate::fsio::AtomicFile;

/// Suffixes of files the engine writes itself and never treats as items.
const OWN_SUFFIXES: [&str; 3] = [".rekey-journal", ".failures.jsonl", ".rekey-partial"];

/// Identifies the exact file that was read: a rename over it or a write to
/// it changes at least one of these. (Not the ctime: renaming the file
/// itself, as the atomic exchange does, changes that.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(Self {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let mtime = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
            Ok(Self { dev: 0, ino: 0, len: meta.len(), mtime_ns: mtime })
        }
    }
}

/// What a file unit carries.
#[derive(Debug)]
pub struct FileUnit {
    path: PathBuf,
    stamp: Option<Stamp>,
}

/// The files of a run: the targets walked lazily in a stable order.
pub struct FileSource {
    roots: Vec<PathBuf>,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    walk: Box<dyn Iterator<Item = (PathBuf, walkdir::Result<walkdir::DirEntry>)> + Send>,
    total: Option<u64>,
    _locks: Vec<File>,
}

impl FileSource {
    /// The files under `roots`, filtered by globs relative to each root.
    /// Each root is locked for the life of the source, so two runs can
    /// never work on one target at once.
    ///
    /// # Errors
    /// A missing target, a bad glob, or a target another run holds.
    pub fn new(roots: Vec<PathBuf>, include: &[String], exclude: &[String]) -> Result<Self, Error> {
        let mut locks = Vec::new();
        for root in &roots {
            if std::fs::symlink_metadata(root).is_err() {
                return Err(Error::new(ErrorKind::Io, format!("target {} does not exist", root.display())));
            }
            locks.push(lock_target(root)?);
        }
        let walk_roots = roots.clone();
        let walk = Box::new(walk_roots.into_iter().flat_map(|root| {
            walkdir::WalkDir::new(&root).sort_by_file_name().into_iter().map(move |e| (root.clone(), e))
        }));
        Ok(Self { roots, include: globs(include)?, exclude: globs(exclude)?, walk, total: None, _locks: locks })
    }

    /// Counts the files first, for a progress bar with a total.
    ///
    /// # Errors
    /// A directory that cannot be listed.
    pub fn with_total(mut self) -> Result<Self, Error> {
        let mut n = 0;
        for root in &self.roots {
            for entry in walkdir::WalkDir::new(root) {
                let entry =
                    entry.map_err(|e| Error::new(ErrorKind::Io, format!("cannot list {}: {e}", root.display())))?;
                if self.wanted(root, entry.path(), entry.file_type().is_file()) {
                    n += 1;
                }
            }
        }
        self.total = Some(n);
        Ok(self)
    }

    /// The default journal: beside the first target, named after it.
    pub fn default_journal(&self) -> PathBuf {
        let root = &self.roots[0];
        let name = root.file_name().map_or_else(|| "rekey".into(), |n| n.to_string_lossy().into_owned());
        let parent = root
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        parent.join(format!("{name}.rekey-journal"))
    }

    /// The targets, as given.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    fn wanted(&self, root: &Path, path: &Path, is_file: bool) -> bool {
        let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
            return false;
        };
        if !is_file || name.contains(".rekey-tmp.") || OWN_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            return false;
        }
        let relative = path.strip_prefix(root).unwrap_or(path);
        let relative = if relative.as_os_str().is_empty() { Path::new(name.as_ref()) } else { relative };
        !(self.include.as_ref().is_some_and(|g| !g.is_match(relative))
            || self.exclude.as_ref().is_some_and(|g| g.is_match(relative)))
    }
}

impl Source for FileSource {
    type Payload = FileUnit;

    fn next_unit(&mut self) -> Result<Option<Unit<FileUnit>>, Error> {
        loop {
            let Some((root, entry)) = self.walk.next() else {
                return Ok(None);
            };
            let entry = entry.map_err(|e| Error::new(ErrorKind::Io, format!("cannot list {}: {e}", root.display())))?;
            let path = entry.path();
            if entry.file_type().is_file()
                && path.file_name().is_some_and(|n| n.to_string_lossy().contains(".rekey-tmp."))
            {
                // The leftover of a write interrupted before its rename: the
                // original beside it is intact, and the target lock rules out
                // a live run owning it.
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!("cannot remove the stale temporary {}: {e}", path.display());
                }
                continue;
            }
            if !self.wanted(&root, path, entry.file_type().is_file()) {
                continue;
            }
            // Absolute, so a rollback from another directory finds the file.
            let id = path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).display().to_string();
            return Ok(Some(Unit::new(id, FileUnit { path: path.to_path_buf(), stamp: None })));
        }
    }

    fn total(&self) -> Option<u64> {
        self.total
    }

    async fn load(unit: &mut Unit<FileUnit>) -> Result<(), ItemError> {
        let path = unit.payload.path.clone();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<(Stamp, Vec<u8>)> {
            let stamp = Stamp::of(&path)?;
            Ok((stamp, std::fs::read(&path)?))
        })
        .await
        .map_err(|e| ItemError::new(ItemErrorCode::Io, e.to_string()))?;
        let (stamp, bytes) = read.map_err(|e| ItemError::new(ItemErrorCode::Io, format!("cannot read: {e}")))?;
        unit.payload.stamp = Some(stamp);
        unit.items = vec![Item::new(unit.id.clone(), bytes)];
        Ok(())
    }
}

/// Replaces changed files in place, journal first.
#[derive(Debug, Default)]
pub struct InPlaceSink {
    journal: OnceLock<Arc<Journal>>,
}

impl Sink<FileUnit> for InPlaceSink {
    fn start(&self, journal: Option<Arc<Journal>>, _checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        let journal = journal.ok_or_else(|| Error::usage("rewriting files in place needs a journal"))?;
        let _ = self.journal.set(journal);
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<FileUnit>) -> Result<(), ItemError> {
        let Some(Item { bytes: original, result: Some(Ok(Outcome::Changed { new, kind, old_edks })), .. }) =
            unit.items.first_mut()
        else {
            return Ok(());
        };
        let journal = Arc::clone(self.journal.get().ok_or_else(|| ItemError::new(ItemErrorCode::Io, "no journal"))?);
        let begin = Entry::Begin {
            item: unit.id.clone(),
            old_sha256: journal::sha256(original),
            new_sha256: journal::sha256(new),
            undo: undo_record(original, new, old_edks.as_deref()),
            legacy: *kind == ChangeKind::FromLegacy,
        };
        let new = std::mem::take(new);
        let (id, path, stamp) = (unit.id.clone(), unit.payload.path.clone(), unit.payload.stamp);
        let result = tokio::task::spawn_blocking(move || replace(&journal, &id, &path, stamp, &new, &begin))
            .await
            .map_err(|e| ItemError::new(ItemErrorCode::Io, e.to_string()))?;
        // The new bytes are on disk; keep only the outcome in memory.
        *original = Vec::new();
        result
    }

    fn commit(&self, _unit: Unit<FileUnit>, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }
}

/// Journal, write beside, check the original is still the one read, rename.
fn replace(
    journal: &Journal,
    id: &str,
    path: &Path,
    stamp: Option<Stamp>,
    new: &[u8],
    begin: &Entry,
) -> Result<(), ItemError> {
    let io = |what: &str, e: &dyn std::fmt::Display| ItemError::new(ItemErrorCode::Io, format!("{what}: {e}"));
    journal.append(begin, true).map_err(|e| io("cannot write the journal", &e))?;
    let mut file = AtomicFile::create(path, Some(path)).map_err(|e| io("cannot write beside the file", &e))?;
    std::io::Write::write_all(&mut file, new).map_err(|e| io("cannot write beside the file", &e))?;
    match file.commit_if_original(|displaced| Stamp::of(displaced).ok() == stamp) {
        Ok(true) => {}
        Ok(false) => {
            let _ = journal.append(&Entry::Abandoned { item: id.to_owned() }, false);
            return Err(ItemError::new(
                ItemErrorCode::ChangedDuringRotation,
                "the file changed after it was read; the other writer's version was kept",
            ));
        }
        Err(e) => return Err(io("cannot replace the file", &e)),
    }
    journal.append(&Entry::Done { item: id.to_owned() }, false).map_err(|e| io("cannot write the journal", &e))
}

/// What rollback needs: the old key list when it rebuilds the original byte
/// for byte from the new item, the whole original otherwise.
fn undo_record(original: &[u8], new: &[u8], old_edks: Option<&[EncryptedDataKey]>) -> Undo {
    if let Some(edks) = old_edks
        && rebuild(new, edks).as_deref() == Some(original)
    {
        let list: Vec<_> =
            edks.iter().map(|e| json!([e.provider_id(), e.key_id(), journal::b64(e.wrapped())])).collect();
        return Undo::KeyList { edks_b64: journal::b64(serde_json::Value::Array(list).to_string().as_bytes()) };
    }
    Undo::Original { b64: journal::b64(original) }
}

/// The item `new` with its key list replaced by `edks`, in the same encoding.
fn rebuild(new: &[u8], edks: &[EncryptedDataKey]) -> Option<Vec<u8>> {
    let encoding = Encoding::detect(new);
    let bytes = encoding.decode(new).ok()?;
    let envelope = Envelope::parse(&bytes, &ParseOptions { max_encrypted_data_keys: 255 }).ok()?;
    Some(encoding.encode(&envelope.with_encrypted_data_keys(edks).ok()?))
}

fn undo_original(undo: &Undo, current: &[u8]) -> Result<Vec<u8>, Error> {
    let damaged = || Error::new(ErrorKind::BadInput, "the journal holds a damaged undo record");
    match undo {
        Undo::Original { b64 } => journal::unb64(b64),
        Undo::KeyList { edks_b64 } => {
            let list: Vec<(String, String, String)> =
                serde_json::from_slice(&journal::unb64(edks_b64)?).map_err(|_| damaged())?;
            let edks = list
                .into_iter()
                .map(|(p, k, w)| EncryptedDataKey::new(p, k, journal::unb64(&w)?).map_err(|_| damaged()))
                .collect::<Result<Vec<_>, _>>()?;
            rebuild(current, &edks).ok_or_else(damaged)
        }
    }
}

/// Puts every file a journal changed back as it was. A file that is
/// neither what rekey wrote nor the original (changed since) is reported
/// and left alone; the check and the replacement are as careful as the run's.
///
/// # Errors
/// A journal that cannot be read, is in use, or is of a record stream.
pub fn rollback(journal_path: &Path) -> Result<(Summary, Vec<String>), Error> {
    let start = std::time::Instant::now();
    let (_lock, entries) = journal::read_locked(journal_path)?;
    let mut summary = Summary::new("rollback");
    let mut conflicts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Latest first, so an item changed twice (resumed runs) returns to its first original.
    for entry in entries.iter().rev() {
        if let Entry::Checkpoint { .. } | Entry::Complete { .. } = entry {
            return Err(Error::usage("this journal is of a record stream, whose input was never modified")
                .hint("the original records are still in the input file; remove the output to undo"));
        }
        let Entry::Begin { item, old_sha256, new_sha256, undo, .. } = entry else {
            continue;
        };
        let path = Path::new(item);
        let read = Stamp::of(path).and_then(|stamp| Ok((stamp, std::fs::read(path)?)));
        let (stamp, current) = match read {
            Ok(read) => read,
            Err(e) => {
                summary.counts.failed += 1;
                conflicts.push(format!("{item}: {e}"));
                continue;
            }
        };
        let current_hash = journal::sha256(&current);
        if current_hash == *new_sha256 && !seen.contains(item) {
            let original = undo_original(undo, &current)?;
            if journal::sha256(&original) != *old_sha256 {
                return Err(Error::new(ErrorKind::BadInput, format!("the journal's undo record of {item} is damaged")));
            }
            let mut file =
                AtomicFile::create(path, Some(path)).map_err(|e| Error::io(format!("cannot restore {item}"), &e))?;
            std::io::Write::write_all(&mut file, &original)
                .map_err(|e| Error::io(format!("cannot restore {item}"), &e))?;
            let restored = file
                .commit_if_original(|displaced| Stamp::of(displaced).ok() == Some(stamp))
                .map_err(|e| Error::io(format!("cannot restore {item}"), &e))?;
            if restored {
                summary.restored += 1;
                seen.insert(item.clone());
            } else {
                summary.counts.failed += 1;
                conflicts.push(format!("{item}: changed during the rollback; left as it is"));
            }
        } else if current_hash == *old_sha256 || seen.contains(item) {
            if seen.insert(item.clone()) {
                summary.counts.skipped += 1;
            }
        } else if seen.insert(item.clone()) {
            summary.counts.failed += 1;
            conflicts.push(format!("{item}: changed since the run; left as it is"));
        }
    }
    summary.elapsed = start.elapsed();
    Ok((summary, conflicts))
}

/// Locks a target for the run: a directory itself, a single file's directory.
fn lock_target(root: &Path) -> Result<File, Error> {
    let dir = if root.is_dir() {
        root.to_path_buf()
    } else {
        match root.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let file = File::open(&dir).map_err(|e| Error::io(format!("cannot open {}", dir.display()), &e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(Error::usage(format!("another rekey run is working on {} right now", root.display()))
                .hint("two runs on one target cannot run at once: wait for it, or stop it and rerun with --resume"))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("cannot lock {}", dir.display()), &e)),
    }
}

fn globs(patterns: &[String]) -> Result<Option<GlobSet>, Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(Glob::new(p).map_err(|e| Error::usage(format!("bad glob {p:?}: {e}")))?);
    }
    builder.build().map(Some).map_err(|e| Error::usage(format!("bad globs: {e}")))
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

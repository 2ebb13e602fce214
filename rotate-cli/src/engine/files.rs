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

use std::io::{Read, Seek, Write};

use envelope_core::{EncryptedDataKey, FormatError};

use envelope_core::hazmat::{BodyForm, Header, ParseOptions, StreamDecryptor, encrypt_stream};
use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use super::item::{Item, Unit};
use super::journal::{self, Checkpoint, Entry, Journal, Undo};
use super::ports::{Rejected, Sink, Source};
use super::report::{Counts, Summary};
use super::transform::{ChangeKind, Outcome, StreamJob};
use crate::fsio::{self, AtomicFile};

/// Suffixes of files the engine writes itself and never treats as items.
const OWN_SUFFIXES: [&str; 3] = [".rekey-journal", ".failures.jsonl", ".rekey-partial"];
/// In names of the originals kept for rollback of streamed re-encryptions.
const BACKUP_MARK: &str = ".rekey-orig.";
/// Framed envelopes from this size on are streamed: only their header is held.
const STREAM_FROM: u64 = 8 << 20;
/// The largest header read when streaming.
const MAX_HEADER: usize = 4 << 20;
/// Plaintext chunks in flight between the decrypting and the encrypting thread.
pub(crate) const PIPE_CHUNKS: usize = 8;

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
        if !is_file
            || name.contains(".rekey-tmp.")
            || name.contains(BACKUP_MARK)
            || OWN_SUFFIXES.iter().any(|s| name.ends_with(s))
        {
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
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<(Stamp, Vec<u8>, bool)> {
            let stamp = Stamp::of(&path)?;
            if stamp.len >= STREAM_FROM
                && let Some(header) = read_framed_header(&path)?
            {
                return Ok((stamp, header, true));
            }
            Ok((stamp, std::fs::read(&path)?, false))
        })
        .await
        .map_err(|e| ItemError::new(ItemErrorCode::Io, e.to_string()))?;
        let (stamp, bytes, header_only) =
            read.map_err(|e| ItemError::new(ItemErrorCode::Io, format!("cannot read: {e}")))?;
        unit.payload.stamp = Some(stamp);
        let mut item = Item::new(unit.id.clone(), bytes);
        item.header_only = header_only;
        unit.items = vec![item];
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
        let Some(item) = unit.items.first_mut() else {
            return Ok(());
        };
        let Some(Ok(Outcome::Changed { new, kind, old_edks, job })) = &mut item.result else {
            return Ok(());
        };
        let journal = Arc::clone(self.journal.get().ok_or_else(|| ItemError::new(ItemErrorCode::Io, "no journal"))?);
        let change = Change {
            id: unit.id.clone(),
            path: unit.payload.path.clone(),
            stamp: unit.payload.stamp,
            original: std::mem::take(&mut item.bytes),
            new: std::mem::take(new),
            old_edks: old_edks.take(),
            job: job.take(),
            header_only: item.header_only,
            legacy: *kind == ChangeKind::FromLegacy,
        };
        tokio::task::spawn_blocking(move || change.apply(&journal))
            .await
            .map_err(|e| ItemError::new(ItemErrorCode::Io, e.to_string()))?
    }

    fn commit(&self, _unit: Unit<FileUnit>, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }
}

/// One file's replacement, done in a blocking thread.
struct Change {
    id: String,
    path: PathBuf,
    stamp: Option<Stamp>,
    /// The item as read (only its header when `header_only`).
    original: Vec<u8>,
    /// The new item (only its header for a streamed rewrap; empty for a streamed re-encryption).
    new: Vec<u8>,
    old_edks: Option<Vec<EncryptedDataKey>>,
    job: Option<Arc<StreamJob>>,
    header_only: bool,
    legacy: bool,
}

fn io_error(what: &str, e: &dyn std::fmt::Display) -> ItemError {
    ItemError::new(ItemErrorCode::Io, format!("{what}: {e}"))
}

fn changed_under_us() -> ItemError {
    ItemError::new(
        ItemErrorCode::ChangedDuringRotation,
        "the file changed after it was read; the other writer's version was kept",
    )
}

impl Change {
    /// Journal, write beside, check the original is still the one read, swap.
    fn apply(self, journal: &Journal) -> Result<(), ItemError> {
        let mut file = AtomicFile::create(&self.path, Some(&self.path))
            .map_err(|e| io_error("cannot write beside the file", &e))?;
        let (begin, backup) =
            if self.header_only { self.write_streamed(&mut file)? } else { (self.write_whole(&mut file)?, None) };
        journal.append(&begin, true).map_err(|e| io_error("cannot write the journal", &e))?;
        let stamp = self.stamp;
        let swapped = file
            .commit_if_original(|displaced| Stamp::of(displaced).ok() == stamp)
            .map_err(|e| io_error("cannot replace the file", &e))?;
        if !swapped {
            if let Some(backup) = backup {
                let _ = std::fs::remove_file(backup);
            }
            let _ = journal.append(&Entry::Abandoned { item: self.id.clone() }, false);
            return Err(changed_under_us());
        }
        journal
            .append(&Entry::Done { item: self.id.clone() }, false)
            .map_err(|e| io_error("cannot write the journal", &e))
    }

    fn write_whole(&self, file: &mut AtomicFile) -> Result<Entry, ItemError> {
        file.write_all(&self.new).map_err(|e| io_error("cannot write beside the file", &e))?;
        Ok(Entry::Begin {
            item: self.id.clone(),
            old_sha256: journal::sha256(&self.original),
            new_sha256: journal::sha256(&self.new),
            undo: undo_record(&self.original, &self.new, self.old_edks.as_deref()),
            legacy: self.legacy,
        })
    }

    /// A framed envelope too large to hold: a rewrap writes the new header
    /// and copies the body; a re-encryption decrypts and seals frame by frame
    /// through a bounded pipe, keeping the original as a hard-linked backup
    /// for rollback (the journal only names it).
    fn write_streamed(&self, file: &mut AtomicFile) -> Result<(Entry, Option<PathBuf>), ItemError> {
        let source = File::open(&self.path).map_err(|e| io_error("cannot read", &e))?;
        let stamp = source.metadata().ok().map(|m| (m.len(), m.modified().ok()));
        if Stamp::of(&self.path).ok() != self.stamp || stamp.is_none() {
            return Err(changed_under_us());
        }
        let mut old_hash = Sha256::new();
        let mut new_hash = Sha256::new();
        let mut reader =
            HashingReader { inner: std::io::BufReader::with_capacity(1 << 16, source), hash: &mut old_hash };
        let mut writer = HashingWriter { inner: &mut *file, hash: &mut new_hash };
        let (undo, backup) = match &self.job {
            None => {
                // The header as read must be the header on disk: then copy the body through.
                let mut header = vec![0u8; self.original.len()];
                reader.read_exact(&mut header).map_err(|e| io_error("cannot read", &e))?;
                if header != self.original {
                    return Err(changed_under_us());
                }
                writer.write_all(&self.new).map_err(|e| io_error("cannot write beside the file", &e))?;
                std::io::copy(&mut reader, &mut writer).map_err(|e| io_error("cannot copy the body", &e))?;
                (undo_record(&self.original, &self.new, self.old_edks.as_deref()), None)
            }
            Some(job) => {
                reencrypt_stream(job, &mut reader, &mut writer)?;
                writer.flush().map_err(|e| io_error("cannot write beside the file", &e))?;
                file.sync().map_err(|e| io_error("cannot sync", &e))?;
                if job.verify {
                    verify_stream(job, file.temp_path())?;
                }
                let backup =
                    link_backup(&self.path).map_err(|e| io_error("cannot keep the original for rollback", &e))?;
                (Undo::Backup { path: backup.display().to_string() }, Some(backup))
            }
        };
        let begin = Entry::Begin {
            item: self.id.clone(),
            old_sha256: journal::hex(&old_hash.finalize()),
            new_sha256: journal::hex(&new_hash.finalize()),
            undo,
            legacy: self.legacy,
        };
        Ok((begin, backup))
    }
}

/// Decrypts `reader` with the job's data key in one thread and seals the
/// plaintext in this one, through a bounded channel of zeroized chunks:
/// constant memory, and no plaintext ever on disk.
pub(crate) fn reencrypt_stream(
    job: &StreamJob,
    reader: &mut (dyn Read + Send),
    writer: &mut dyn Write,
) -> Result<(), ItemError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Zeroizing<Vec<u8>>>(PIPE_CHUNKS);
    std::thread::scope(|scope| {
        let decrypting = scope.spawn(move || -> Result<(), ItemError> {
            let decryptor = StreamDecryptor::new(&mut *reader, &ParseOptions::default())?;
            decryptor.decrypt_to(&job.data_key, PipeWriter { tx })?;
            // Read to the end, so the hash covers the whole original.
            std::io::copy(reader, &mut std::io::sink()).map_err(|e| io_error("cannot read", &e))?;
            Ok(())
        });
        let sealed = encrypt_stream(&job.materials, &job.context, job.frame_len, PipeReader::new(rx), writer);
        // The decrypting side's verdict comes first: a failure there ends the
        // pipe early, and a sealed prefix must never pass for the whole.
        decrypting.join().map_err(|_| ItemError::new(ItemErrorCode::Io, "the decrypting thread failed"))??;
        sealed.map(|_| ()).map_err(ItemError::from)
    })
}

/// `--verify` of a streamed re-encryption: the new envelope decrypts, frame
/// by frame, with the new data key.
fn verify_stream(job: &StreamJob, written: &Path) -> Result<(), ItemError> {
    let file = File::open(written).map_err(|e| io_error("cannot read back", &e))?;
    StreamDecryptor::new(std::io::BufReader::new(file), &ParseOptions::default())
        .and_then(|d| d.decrypt_to(&job.materials.data_key, std::io::sink()))
        .map(|_| ())
        .map_err(|e| ItemError::new(ItemErrorCode::VerifyFailed, format!("the new envelope does not decrypt: {e}")))
}

/// A second link to the original, beside it, so the rename leaves it on disk.
fn link_backup(path: &Path) -> std::io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for n in 0u32.. {
        let backup = dir.join(format!(".{name}{BACKUP_MARK}{n}"));
        match std::fs::hard_link(path, &backup) {
            Ok(()) => return Ok(backup),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {}
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

struct HashingReader<'a, R> {
    inner: R,
    hash: &'a mut Sha256,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

struct HashingWriter<'a, W: ?Sized> {
    inner: &'a mut W,
    hash: &'a mut Sha256,
}

impl<W: Write + ?Sized> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The decrypting end of the pipe: each write is one zeroized chunk.
struct PipeWriter {
    tx: std::sync::mpsc::SyncSender<Zeroizing<Vec<u8>>>,
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx.send(Zeroizing::new(buf.to_vec())).map_err(|_| std::io::Error::other("the sealing side stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The sealing end of the pipe.
pub(crate) struct PipeReader {
    rx: std::sync::mpsc::Receiver<Zeroizing<Vec<u8>>>,
    chunk: Zeroizing<Vec<u8>>,
    at: usize,
}

impl PipeReader {
    /// Reads the chunks sent on `rx`, in order, until the sender is dropped.
    pub(crate) fn new(rx: std::sync::mpsc::Receiver<Zeroizing<Vec<u8>>>) -> Self {
        Self { rx, chunk: Zeroizing::new(Vec::new()), at: 0 }
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The header of a framed envelope at the start of `path`, or `None` when
/// the file is something else (it is then read whole).
fn read_framed_header(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = File::open(path)?;
    let mut buf = Vec::with_capacity(1 << 12);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match Header::parse_prefix(&buf, &ParseOptions { max_encrypted_data_keys: 255 }) {
            Ok((header, _, len)) => {
                buf.truncate(len);
                return Ok(matches!(header.body_form, BodyForm::Framed { .. }).then_some(buf));
            }
            Err(FormatError::Truncated(_)) if buf.len() < MAX_HEADER => {
                let n = file.read(&mut chunk)?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(_) => return Ok(None),
        }
    }
}

/// What rollback needs: the old key list when it rebuilds the original byte
/// for byte from the new item, the whole original otherwise.
fn undo_record(original: &[u8], new: &[u8], old_edks: Option<&[EncryptedDataKey]>) -> Undo {
    if let Some(edks) = old_edks
        && journal::with_key_list(new, edks).as_deref() == Some(original)
    {
        return Undo::KeyList { edks_b64: journal::key_list(edks) };
    }
    Undo::Original { b64: journal::b64(original) }
}

/// SHA-256 of a file, streamed.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hash = Sha256::new();
    let mut reader =
        HashingReader { inner: std::io::BufReader::with_capacity(1 << 16, File::open(path)?), hash: &mut hash };
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(journal::hex(&hash.finalize()))
}

/// Writes the original of `path` beside it from its undo record and swaps
/// it in if the file is still `stamp`. Returns whether it was restored.
fn restore(path: &Path, stamp: Stamp, undo: &Undo, old_sha256: &str) -> Result<bool, Error> {
    let item = path.display();
    let failed = |e: &dyn std::fmt::Display| Error::new(ErrorKind::Io, format!("cannot restore {item}: {e}"));
    let damaged = || Error::new(ErrorKind::BadInput, format!("the journal's undo record of {item} is damaged"));
    let still = |displaced: &Path| Stamp::of(displaced).ok() == Some(stamp);
    if let Undo::Backup { path: backup } = undo {
        if hash_file(Path::new(backup)).map_err(|e| failed(&e))? != old_sha256 {
            return Err(damaged());
        }
        return fsio::swap_in(Path::new(backup), path, still).map_err(|e| failed(&e));
    }
    let mut file = AtomicFile::create(path, Some(path)).map_err(|e| failed(&e))?;
    let mut hash = Sha256::new();
    let header = if stamp.len >= STREAM_FROM { read_framed_header(path).map_err(|e| failed(&e))? } else { None };
    match (undo, header) {
        (Undo::KeyList { edks_b64 }, Some(header)) => {
            let old_header =
                journal::with_key_list(&header, &journal::parse_key_list(edks_b64)?).ok_or_else(damaged)?;
            let mut body = File::open(path).map_err(|e| failed(&e))?;
            body.seek(std::io::SeekFrom::Start(header.len() as u64)).map_err(|e| failed(&e))?;
            let mut writer = HashingWriter { inner: &mut file, hash: &mut hash };
            writer.write_all(&old_header).map_err(|e| failed(&e))?;
            std::io::copy(&mut body, &mut writer).map_err(|e| failed(&e))?;
        }
        (Undo::KeyList { edks_b64 }, None) => {
            let current = std::fs::read(path).map_err(|e| failed(&e))?;
            let original = journal::with_key_list(&current, &journal::parse_key_list(edks_b64)?).ok_or_else(damaged)?;
            HashingWriter { inner: &mut file, hash: &mut hash }.write_all(&original).map_err(|e| failed(&e))?;
        }
        (Undo::Original { b64 }, _) => {
            HashingWriter { inner: &mut file, hash: &mut hash }
                .write_all(&journal::unb64(b64)?)
                .map_err(|e| failed(&e))?;
        }
        (Undo::Backup { .. }, _) => unreachable!("handled above"),
    }
    if journal::hex(&hash.finalize()) != old_sha256 {
        return Err(damaged());
    }
    file.commit_if_original(still).map_err(|e| failed(&e))
}

/// Puts every file a journal changed back as it was. A file that is
/// neither what rekey wrote nor the original (changed since) is reported
/// and left alone; the check and the replacement are as careful as the run's.
/// Counts files, not journal entries: a file begun in several runs, or
/// retried, is one item; a replacement the journal says was abandoned was
/// never made and is not an item. Reports its progress, one unit per file,
/// to `progress`.
///
/// # Errors
/// A journal that cannot be read, is in use, or is of a record stream.
pub fn rollback(journal_path: &Path, progress: &dyn super::ports::Progress) -> Result<(Summary, Vec<String>), Error> {
    let start = std::time::Instant::now();
    let (_lock, entries, skipped_lines) = journal::read_for_rollback(journal_path)?;
    if entries.iter().any(|e| matches!(e, Entry::Checkpoint { .. } | Entry::Complete { .. })) {
        return Err(Error::usage("this journal is of a record stream, whose input was never modified")
            .hint("the original records are still in the input file; remove the output to undo"));
    }
    // Latest first: an `Abandoned` entry cancels the `Begin` before it.
    let mut abandoned = std::collections::HashSet::new();
    let mut changes: Vec<(&String, &String, &String, &Undo)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in entries.iter().rev() {
        match entry {
            Entry::Abandoned { item } => {
                abandoned.insert(item.as_str());
            }
            Entry::Begin { item, old_sha256, new_sha256, undo, .. } => {
                if abandoned.remove(item.as_str()) {
                    continue;
                }
                // The latest change of a file is the one its content can
                // show; an earlier `Begin` of it (a run stopped before the
                // replacement, then resumed) holds the same original.
                if seen.insert(item.as_str()) {
                    changes.push((item, old_sha256, new_sha256, undo));
                }
            }
            _ => {}
        }
    }
    // Temporaries that a killed run or rollback left beside the journal's files.
    let mut beside: std::collections::HashMap<&Path, std::collections::HashSet<std::ffi::OsString>> =
        std::collections::HashMap::new();
    for (item, ..) in &changes {
        let path = Path::new(item.as_str());
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            beside.entry(dir).or_default().insert(name.to_owned());
        }
    }
    for (dir, names) in beside {
        for temp in fsio::remove_stale_temps(dir, &names) {
            tracing::warn!("removed {}, a temporary file an interrupted rekey left", temp.display());
        }
    }
    progress.total(changes.len() as u64);
    let mut summary = Summary::new("rollback");
    let mut conflicts = Vec::new();
    for (item, old_sha256, new_sha256, undo) in changes {
        let path = Path::new(item);
        match Stamp::of(path).and_then(|stamp| Ok((stamp, hash_file(path)?))) {
            Err(e) => {
                summary.counts.failed += 1;
                conflicts.push(format!("{item}: {e}"));
            }
            Ok((stamp, current)) if current == *new_sha256 => match restore(path, stamp, undo, old_sha256) {
                Ok(true) => summary.restored += 1,
                Ok(false) => {
                    summary.counts.failed += 1;
                    conflicts.push(format!("{item}: changed during the rollback; left as it is"));
                }
                // One file that cannot be put back (a full disk, an I/O error) is that file's
                // failure; the others are still restored.
                Err(e) => {
                    summary.counts.failed += 1;
                    // `e` names the file ("cannot restore FILE: why").
                    conflicts.push(format!("{e}; left as rekey wrote it (rerun the rollback once fixed)"));
                }
            },
            Ok((_, current)) if current == *old_sha256 => summary.counts.skipped += 1,
            Ok(_) => {
                summary.counts.failed += 1;
                conflicts.push(format!("{item}: changed since the run; left as it is"));
            }
        }
        progress.advance(1, summary.counts.failed);
    }
    progress.finish();
    // Lines that could not be read are failures too: what they recorded is not undone.
    summary.counts.failed += skipped_lines.len() as u64;
    conflicts.extend(skipped_lines);
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

/// A glob set, `None` for no patterns.
///
/// # Errors
/// A usage error naming a pattern that is not a glob.
pub fn globs(patterns: &[String]) -> Result<Option<GlobSet>, Error> {
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

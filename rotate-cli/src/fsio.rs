//! Crash-safe file replacement: nothing is ever half-written where a reader
//! can see it. Data goes to a temporary file in the target's directory, is
//! flushed and fsynced, then renamed over the target, and the directory is
//! fsynced so the rename itself survives a crash. Until `commit`, the target
//! is untouched; dropping an uncommitted file removes the temporary.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written in place of `target`.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing a replacement for `target`. The temporary file is
    /// private (0600) unless `like` names a file whose mode it should copy.
    ///
    /// # Errors
    /// The I/O error that stopped it.
    pub fn create(target: &Path, like: Option<&Path>) -> io::Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target.file_name().ok_or_else(|| io::Error::other("the output path has no file name"))?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        for attempt in 0u32.. {
            let temp = dir.join(format!(".{}.rekey-tmp.{}.{attempt}", name.to_string_lossy(), std::process::id()));
            match options.open(&temp) {
                Ok(file) => {
                    if let Some(like) = like
                        && let Ok(meta) = fs::metadata(like)
                    {
                        fs::set_permissions(&temp, meta.permissions())?;
                    }
                    return Ok(Self {
                        target: target.to_path_buf(),
                        temp,
                        writer: Some(BufWriter::with_capacity(1 << 16, file)),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    /// Flushes, fsyncs, renames over the target and fsyncs the directory.
    ///
    /// # Errors
    /// The I/O error that stopped it.
    pub fn commit(mut self) -> io::Result<()> {
        let writer = self.writer.take().ok_or_else(|| io::Error::other("already committed"))?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temp, &self.target)?;
        sync_dir(&self.target)
    }

    /// As [`AtomicFile::commit`], but only if the file it replaces is the
    /// one the caller read: see [`swap_in`].
    ///
    /// # Errors
    /// The I/O error that stopped it.
    pub fn commit_if_original(mut self, is_original: impl Fn(&Path) -> bool) -> io::Result<bool> {
        self.sync()?;
        self.writer = None;
        let ours = identity(&fs::symlink_metadata(&self.temp)?);
        let swapped = swap_in(&self.temp, &self.target, is_original);
        // Not swapped in: remove our temporary, but never another writer's file.
        if !matches!(swapped, Ok(true)) && fs::symlink_metadata(&self.temp).map(|m| identity(&m)).ok() == Some(ours) {
            let _ = fs::remove_file(&self.temp);
        }
        swapped
    }

    /// Flushes and fsyncs what was written so far; the temporary stays open.
    ///
    /// # Errors
    /// The I/O error that stopped it.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush()?;
            writer.get_ref().sync_all()?;
        }
        Ok(())
    }

    /// Where the new content is being written, until the commit.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }
}

/// Puts the file at `new` in place of `target` if the file it replaces is
/// the one the caller read (`is_original` is asked about the displaced
/// file); returns `false`, with the target as another writer left it, when
/// not. On success `new` no longer exists.
///
/// On Linux the two are swapped atomically (`RENAME_EXCHANGE`) and the
/// displaced file is checked afterwards, so no concurrent rename can be
/// overwritten in between: a displaced file that is not the original is
/// swapped back, and a file that is not ours is never deleted. Elsewhere the
/// check comes just before a plain rename.
///
/// # Errors
/// The I/O error that stopped it.
pub fn swap_in(new: &Path, target: &Path, is_original: impl Fn(&Path) -> bool) -> io::Result<bool> {
    let ours = identity(&fs::symlink_metadata(new)?);
    match exchange(new, target) {
        Ok(()) => {
            if is_original(new) {
                fs::remove_file(new)?;
                sync_dir(target)?;
                return Ok(true);
            }
            // Another writer replaced the target after it was read: put theirs back.
            exchange(new, target)?;
            if fs::symlink_metadata(new).map(|m| identity(&m)).ok() != Some(ours) {
                tracing::warn!(
                    "{} changed twice during its replacement; both versions are kept, the other at {}",
                    target.display(),
                    new.display()
                );
            }
            sync_dir(target)?;
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            if !is_original(target) {
                return Ok(false);
            }
            fs::rename(new, target)?;
            sync_dir(target)?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Device and inode: which file a path names.
fn identity(meta: &fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

/// Swaps two paths atomically; `Unsupported` where the system cannot.
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
                Err(io::Error::new(io::ErrorKind::Unsupported, "no RENAME_EXCHANGE here"))
            }
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Err(io::Error::new(io::ErrorKind::Unsupported, "no atomic exchange here"))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.as_mut().ok_or_else(|| io::Error::other("already committed"))?.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.writer.as_mut().ok_or_else(|| io::Error::other("already committed"))?.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Removes the temporaries [`AtomicFile`] leaves beside a file when its
/// process is killed (`.NAME.rekey-tmp.PID.N`), for the files of `dir` named
/// in `names`, when process PID is gone: a live process's temporary (another
/// run's, or this one's) is never touched. Returns the paths removed.
///
/// Where there is no `/proc` to ask whether a process lives, nothing is removed.
pub fn remove_stale_temps(dir: &Path, names: &std::collections::HashSet<std::ffi::OsString>) -> Vec<PathBuf> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix('.')) else {
            continue;
        };
        // NAME.rekey-tmp.PID.N, NAME itself possibly holding dots.
        let Some((name, tail)) = rest.rsplit_once(".rekey-tmp.") else {
            continue;
        };
        let Some((pid, attempt)) = tail.split_once('.') else {
            continue;
        };
        let numbers = pid.parse::<u32>().is_ok() && attempt.parse::<u32>().is_ok();
        if !numbers || !names.contains(std::ffi::OsStr::new(name)) || proc.join(pid).exists() {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// Fsyncs the directory holding `path`, so a rename in it is durable.
///
/// # Errors
/// The I/O error that stopped it.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `target` atomically.
///
/// # Errors
/// The I/O error that stopped it.
pub fn write_atomic(target: &Path, bytes: &[u8], like: Option<&Path>) -> io::Result<()> {
    let mut file = AtomicFile::create(target, like)?;
    file.write_all(bytes)?;
    file.commit()
}

/// Opens a private file for appending (created 0600), refusing a symlink at
/// `path`: journals and failure reports are never world-readable and never
/// written through a link someone else planted.
///
/// # Errors
/// The I/O error that stopped it.
pub fn open_private(path: &Path, create: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(create);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other(format!("{} is not a regular file", path.display())));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(file)
}

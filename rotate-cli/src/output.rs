//! Crash-safe file replacement: nothing is ever half-written where a reader
//! can see it. Data goes to a temporary file in the target's directory, is
//! flushed and fsynced, then renamed over the target, and the directory is
//! fsynced so the rename itself survives a crash. Until `commit`, the target
//! is untouched; dropping an uncommitted file removes the temporary.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written in place of `target`.
pub(crate) struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing a replacement for `target`. The temporary file is
    /// private (0600) unless `like` names a file whose mode it should copy.
    pub(crate) fn create(target: &Path, like: Option<&Path>) -> io::Result<Self> {
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
    pub(crate) fn commit(mut self) -> io::Result<()> {
        let writer = self.writer.take().ok_or_else(|| io::Error::other("already committed"))?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temp, &self.target)?;
        sync_dir(&self.target)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.as_mut().ok_or_else(|| io::Error::other("already committed"))?.write(buf)
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

/// Fsyncs the directory holding `path`, so a rename in it is durable.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `target` atomically.
pub(crate) fn write_atomic(target: &Path, bytes: &[u8], like: Option<&Path>) -> io::Result<()> {
    let mut file = AtomicFile::create(target, like)?;
    file.write_all(bytes)?;
    file.commit()
}

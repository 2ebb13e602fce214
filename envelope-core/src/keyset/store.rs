//! Where a keyset lives: a [`KeysetStore`] (a file, a database row, …) with
//! compare-and-swap saves, so two processes rotating at once cannot lose
//! each other's keys.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;

use crate::error::{Error, KeyringError, KeyringErrorKind};

use super::file::MAX_KEYSET_FILE_LEN;
use super::set::Keyset;

/// The future a store method returns (boxed, so stores can be `dyn` and
/// envelope-core needs no async runtime).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Keeps one keyset's file text somewhere durable.
///
/// An application that keeps its keyset in its database implements this
/// over one row: `load` reads the text and parses it with
/// [`Keyset::from_text`]; `save` writes [`Keyset::to_text`] with an
/// `UPDATE … WHERE text = previous` (or an insert that fails on a present
/// row when `previous` is `None`) and fails when no row matched. The text
/// holds no secret, but whoever can write it decides which keys the
/// application trusts (docs/format.md §12.8): restrict writes to it.
pub trait KeysetStore: Send + Sync {
    /// The stored keyset, or `None` when nothing is stored yet.
    fn load(&self) -> StoreFuture<'_, Option<Keyset>>;

    /// Stores `keyset` if what is stored is still `previous` (`None`: nothing);
    /// otherwise fails with [`KeyringErrorKind::Io`] saying the keyset changed
    /// meanwhile, and stores nothing: load again, redo the change, retry.
    fn save<'a>(&'a self, keyset: &'a Keyset, previous: Option<&'a Keyset>) -> StoreFuture<'a, ()>;
}

/// A keyset kept in memory, for tests and as a model of a database store.
#[derive(Debug, Default)]
pub struct MemoryKeysetStore {
    text: Mutex<Option<String>>,
}

impl MemoryKeysetStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeysetStore for MemoryKeysetStore {
    fn load(&self) -> StoreFuture<'_, Option<Keyset>> {
        let text = self.text.lock().map(|t| t.clone()).unwrap_or_else(|p| p.into_inner().clone());
        Box::pin(std::future::ready(text.map(|t| Keyset::from_text(&t).map_err(Error::from)).transpose()))
    }

    fn save<'a>(&'a self, keyset: &'a Keyset, previous: Option<&'a Keyset>) -> StoreFuture<'a, ()> {
        let mut stored = self.text.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = if stored.as_deref() == previous.map(Keyset::to_text).as_deref() {
            *stored = Some(keyset.to_text());
            Ok(())
        } else {
            Err(changed("the keyset in memory"))
        };
        Box::pin(std::future::ready(result))
    }
}

/// A keyset file on disk, written like the local keystore's files: a private
/// temporary file, fsync, then an atomic rename, under an exclusive lock of
/// the current file; created `0600`; read only when no other user can have
/// written it (MUST 12.15).
#[derive(Debug, Clone)]
pub struct FileKeysetStore {
    path: PathBuf,
}

impl FileKeysetStore {
    /// A store at `path`; nothing is read or written yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and parses the file, or `None` when it does not exist.
    ///
    /// # Errors
    /// [`KeyringErrorKind::AccessDenied`] for a link, a file that is not
    /// regular, or one that another user owns or could have written;
    /// [`KeyringErrorKind::Io`]; [`Error::Format`] for a malformed file.
    pub fn load_sync(&self) -> Result<Option<Keyset>, Error> {
        let Some(file) = self.open()? else {
            return Ok(None);
        };
        let text = self.read(&file)?;
        Ok(Some(Keyset::from_text(&text)?))
    }

    /// Compare-and-swap save, see [`KeysetStore::save`].
    ///
    /// # Errors
    /// [`KeyringErrorKind::Io`] when the file changed since `previous` was
    /// read, or for I/O; as [`FileKeysetStore::load_sync`] for the present file.
    pub fn save_sync(&self, keyset: &Keyset, previous: Option<&Keyset>) -> Result<(), Error> {
        let expected = previous.map(Keyset::to_text);
        loop {
            let Some(file) = self.open()? else {
                if expected.is_some() {
                    return Err(changed(&self.path.display().to_string()));
                }
                return self.write(keyset, false);
            };
            file.lock().map_err(|e| io_error(&self.path, e))?;
            // A save that held the lock before us replaced the file we opened.
            if !same_file(&file, &self.path)? {
                continue;
            }
            if expected.as_deref() != Some(self.read(&file)?.as_str()) {
                return Err(changed(&self.path.display().to_string()));
            }
            let result = self.write(keyset, true);
            drop(file);
            return result;
        }
    }

    fn open(&self) -> Result<Option<File>, Error> {
        let mut options = OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let file = match options.open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_symlink()) => {
                let _ = e;
                return Err(denied(format!(
                    "refusing keyset file {} because it is a symbolic link; use the file itself",
                    self.path.display()
                )));
            }
            Err(e) => return Err(io_error(&self.path, e).into()),
        };
        check_file(&file, &self.path)?;
        Ok(Some(file))
    }

    fn read(&self, file: &File) -> Result<String, Error> {
        let mut text = String::new();
        let limit = u64::try_from(MAX_KEYSET_FILE_LEN).unwrap_or(u64::MAX) + 1;
        let reader = file;
        reader.take(limit).read_to_string(&mut text).map_err(|e| io_error(&self.path, e))?;
        Ok(text)
    }

    fn write(&self, keyset: &Keyset, replace: bool) -> Result<(), Error> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut suffix = [0u8; 8];
        crate::random::fill(&mut suffix)?;
        let tmp = dir.join(format!(".{name}.tmp-{:016x}", u64::from_be_bytes(suffix)));
        let result = (|| {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(keyset.to_text().as_bytes())?;
            file.sync_all()?;
            if replace { fs::rename(&tmp, &self.path) } else { fs::hard_link(&tmp, &self.path) }
        })();
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(()) => {
                if let Ok(d) = File::open(&dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(changed(&self.path.display().to_string())),
            Err(e) => Err(io_error(&self.path, e).into()),
        }
    }
}

impl KeysetStore for FileKeysetStore {
    fn load(&self) -> StoreFuture<'_, Option<Keyset>> {
        Box::pin(std::future::ready(self.load_sync()))
    }

    fn save<'a>(&'a self, keyset: &'a Keyset, previous: Option<&'a Keyset>) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.save_sync(keyset, previous)))
    }
}

/// The opened file must be regular, owned by this user (or root), and
/// writable by no one else: its writer chooses the keys we trust.
#[cfg(unix)]
fn check_file(file: &File, path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(denied(format!("refusing keyset file {} because it is not a regular file", path.display())));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(denied(format!(
            "refusing keyset file {} because user {} owns it, not you (user {me}); whoever writes a keyset \
             chooses the keys it trusts",
            path.display(),
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(denied(format!(
            "refusing keyset file {} because group or others can write to it (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_file(_file: &File, _path: &Path) -> Result<(), Error> {
    Ok(())
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> Result<bool, Error> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata().map_err(|e| io_error(path, e))?;
    match fs::symlink_metadata(path) {
        Ok(now) => Ok(now.dev() == open.dev() && now.ino() == open.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(path, e).into()),
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> Result<bool, Error> {
    Ok(true)
}

fn changed(place: &str) -> Error {
    KeyringError::new(
        KeyringErrorKind::Io,
        format!("the keyset in {place} changed since it was read; read it again and redo the change"),
    )
    .into()
}

fn denied(message: String) -> Error {
    KeyringError::new(KeyringErrorKind::AccessDenied, message).into()
}

fn io_error(path: &Path, e: std::io::Error) -> KeyringError {
    KeyringError::new(KeyringErrorKind::Io, format!("{}: {e}", path.display())).with_source(e)
}

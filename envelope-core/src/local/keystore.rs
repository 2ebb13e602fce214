//! The keystore directory: key files created, rotated, listed and loaded with
//! checks on who owns them and who may read them (docs/format.md §8).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{KeyringError, KeyringErrorKind};

use super::key::{KeyInfo, LocalKey, check_name, denied, invalid, io_error};

/// A directory of local wrapping keys, one file per name (MUST 8.2 to 8.4).
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
}

impl Keystore {
    /// A keystore at `dir`. Nothing is read or created until a key is used.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates key `name` with one version. Fails if it exists.
    ///
    /// # Errors
    /// [`KeyringErrorKind::Invalid`] for a bad or taken name, [`KeyringErrorKind::Io`] for I/O.
    pub fn create_key(&self, name: &str) -> Result<KeyInfo, KeyringError> {
        let key = LocalKey::generate(name)?;
        self.ensure_dir()?;
        self.write(&key, false)?;
        Ok(key.info())
    }

    /// Adds a new version to key `name`; older versions stay for unwrapping.
    ///
    /// # Errors
    /// As [`Keystore::load`], and [`KeyringErrorKind::Io`] when locking or
    /// writing fails.
    ///
    /// The key file is locked (an exclusive advisory lock) from the read to
    /// the rename of its new version, so two rotations racing, in threads or
    /// in processes, each add their own version: neither can overwrite a
    /// version the other already handed out (and that may have wrapped data).
    pub fn rotate_key(&self, name: &str) -> Result<KeyInfo, KeyringError> {
        check_name(name)?;
        self.check_dir()?;
        let path = self.path(name);
        loop {
            let file = self.open_key_file(name, &path)?;
            file.lock().map_err(|e| io_error(&path, e))?;
            // The rename of a rotation that held the lock before us replaced
            // the file we opened: start again on the new one.
            if !same_file(&file, &path)? {
                continue;
            }
            let mut key = read_key(name, &path, &file)?;
            key.add_version()?;
            self.write(&key, true)?;
            // The lock goes with `file`, after the new file is in place.
            drop(file);
            return Ok(key.info());
        }
    }

    /// Loads key `name`, trusting no one else with it (MUST 8.3): the
    /// keystore directory must not be writable by group or others (they could
    /// swap a file in), and the key file must be a regular file, opened
    /// without following a symbolic link, owned by the current user and
    /// readable by no one else. The checks are made on the opened file, not
    /// on the path, so the file cannot be swapped between check and read.
    ///
    /// # Errors
    /// [`KeyringErrorKind::KeyNotFound`], [`KeyringErrorKind::AccessDenied`]
    /// for any of the above, [`KeyringErrorKind::Invalid`] for a malformed
    /// file, [`KeyringErrorKind::Io`] otherwise.
    pub fn load(&self, name: &str) -> Result<LocalKey, KeyringError> {
        check_name(name)?;
        self.check_dir()?;
        let path = self.path(name);
        let file = self.open_key_file(name, &path)?;
        read_key(name, &path, &file)
    }

    /// Opens a key file for reading without following a symbolic link (or
    /// blocking on a FIFO), then checks what was opened.
    fn open_key_file(&self, name: &str, path: &Path) -> Result<File, KeyringError> {
        let mut options = OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KeyringError::new(
                KeyringErrorKind::KeyNotFound,
                format!(
                    "local key {name:?} does not exist in keystore {}; create it with `rekey keys create {name}`",
                    self.dir.display()
                ),
            ),
            _ if is_symlink_refusal(&e, path) => denied(format!(
                "refusing local key file {} because it is a symbolic link; key files must be regular files \
                 in the keystore itself (copy the file there and `chmod 600` it)",
                path.display()
            )),
            _ => io_error(path, e),
        })?;
        check_key_file(&file, path)?;
        Ok(file)
    }

    /// Loads every key in the keystore, in name order.
    ///
    /// # Errors
    /// As [`Keystore::load`] for any key file.
    pub fn load_all(&self) -> Result<Vec<LocalKey>, KeyringError> {
        self.names()?.iter().map(|name| self.load(name)).collect()
    }

    /// Lists the keys without their bytes.
    ///
    /// # Errors
    /// As [`Keystore::load_all`].
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyringError> {
        Ok(self.load_all()?.iter().map(LocalKey::info).collect())
    }

    fn names(&self) -> Result<Vec<String>, KeyringError> {
        self.check_dir()?;
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&self.dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&self.dir, e))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".key")) else {
                continue;
            };
            if check_name(name).is_ok() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// Creates the keystore directory (and any missing parent) private to
    /// the user, or checks the existing one.
    fn ensure_dir(&self) -> Result<(), KeyringError> {
        if !self.dir.exists() {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(&self.dir).map_err(|e| io_error(&self.dir, e))?;
            // The mode given to mkdir is only an upper bound (the umask may
            // take bits away, never add them); set it exactly.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| io_error(&self.dir, e))?;
            }
        }
        self.check_dir()
    }

    /// Refuses a keystore directory that someone else could write to: they
    /// could replace a key file, or add one, between two of our reads.
    #[cfg(unix)]
    fn check_dir(&self) -> Result<(), KeyringError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = match fs::metadata(&self.dir) {
            Ok(meta) => meta,
            // A missing directory holds no key: say so where the key is looked up.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&self.dir, e)),
        };
        if !meta.is_dir() {
            return Err(denied(format!("the keystore {} is not a directory", self.dir.display())));
        }
        let me = current_user();
        if meta.uid() != me && meta.uid() != 0 {
            return Err(denied(format!(
                "refusing keystore {} because it is owned by user {}, not by you (user {me}); \
                 use a keystore directory of your own",
                self.dir.display(),
                meta.uid()
            )));
        }
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(denied(format!(
                "refusing keystore {} because group or others can write to it (mode {:o}); run `chmod 700 {}`",
                self.dir.display(),
                mode & 0o7777,
                self.dir.display()
            )));
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn check_dir(&self) -> Result<(), KeyringError> {
        Ok(())
    }

    /// Writes a key file atomically: a private temporary file, fsync, then a
    /// rename (replace) or a hard link (create, failing if the name is taken).
    fn write(&self, key: &LocalKey, replace: bool) -> Result<(), KeyringError> {
        let path = self.path(&key.name);
        let mut suffix = [0u8; 8];
        crate::random::fill(&mut suffix).map_err(|e| KeyringError::new(KeyringErrorKind::Io, e.to_string()))?;
        let tmp = self.dir.join(format!(".{}.key.tmp-{}", key.name, u64::from_be_bytes(suffix)));
        let result = (|| {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(key.to_file().as_bytes())?;
            file.sync_all()?;
            if replace { fs::rename(&tmp, &path) } else { fs::hard_link(&tmp, &path) }
        })();
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(()) => {
                if let Ok(dir) = File::open(&self.dir) {
                    let _ = dir.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(invalid(format!(
                "local key {:?} already exists; use `rekey keys rotate {}` for a new version",
                key.name, key.name
            ))),
            Err(e) => Err(io_error(&path, e)),
        }
    }
}

/// Reads and parses an opened key file.
fn read_key(name: &str, path: &Path, file: &File) -> Result<LocalKey, KeyringError> {
    use std::io::Read;
    // Sized up front from the opened file, so the buffer holding key text
    // never grows (a growing buffer would leave unzeroized copies behind).
    let len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let capacity = usize::try_from(len).unwrap_or(MAX_KEY_FILE_LEN).min(MAX_KEY_FILE_LEN);
    let mut text = Zeroizing::new(Vec::with_capacity(capacity.saturating_add(1)));
    file.take(u64::try_from(MAX_KEY_FILE_LEN).unwrap_or(u64::MAX))
        .read_to_end(&mut text)
        .map_err(|e| io_error(path, e))?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| invalid(format!("local key file for {name:?} is malformed: it is not UTF-8")))?;
    LocalKey::from_file(name, text)
}

/// The largest key file read: about 80 bytes a version, so thousands of
/// versions; anything larger is not a key file.
const MAX_KEY_FILE_LEN: usize = 1 << 20;

/// Checks the opened key file itself (not the path, which may have changed
/// since): a regular file, owned by the current user, private.
#[cfg(unix)]
fn check_key_file(file: &File, path: &Path) -> Result<(), KeyringError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(denied(format!("refusing local key file {} because it is not a regular file", path.display())));
    }
    let me = current_user();
    if meta.uid() != me {
        return Err(denied(format!(
            "refusing local key file {} because it is owned by user {}, not by you (user {me}); \
             only a key file of your own is trusted",
            path.display(),
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(denied(format!(
            "refusing local key file {} because others can access it (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_file(_file: &File, _path: &Path) -> Result<(), KeyringError> {
    Ok(())
}

/// Whether `path` still names the file `file` has open.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> Result<bool, KeyringError> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata().map_err(|e| io_error(path, e))?;
    match fs::symlink_metadata(path) {
        Ok(now) => Ok(now.dev() == open.dev() && now.ino() == open.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(path, e)),
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> Result<bool, KeyringError> {
    Ok(true)
}

/// Whether an open with `O_NOFOLLOW` failed because the path is a link.
fn is_symlink_refusal(e: &std::io::Error, path: &Path) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return true;
    }
    let _ = e;
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The effective user id of this process: the user whose keys these are.
#[cfg(unix)]
fn current_user() -> u32 {
    rustix::process::geteuid().as_raw()
}

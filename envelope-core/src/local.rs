//! The local keyring: wrapping keys kept in files of a keystore directory
//! (docs/format.md §8), so everything works offline, without AWS.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::aead::{Gcm, NONCE_LEN, TAG_LEN};
use crate::codec::put_vec16;
use crate::context::EncryptionContext;
use crate::error::{KeyringError, KeyringErrorKind};
use crate::key::{DATA_KEY_LEN, DataKey, EncryptedDataKey};
use crate::keyring::{Keyring, KeyringFuture, no_matching_key};

/// The provider id of local encrypted data keys.
pub const LOCAL_PROVIDER_ID: &str = "rekey-local";
const FILE_TAG: &str = "rekey-keystore-file v1";
const WRAPPED_LEN: usize = NONCE_LEN + DATA_KEY_LEN + TAG_LEN;

/// One version of a local wrapping key.
struct KeyVersion {
    number: u32,
    created: u64,
    secret: Zeroizing<[u8; 32]>,
}

/// A named local wrapping key with all its versions. Its bytes are never
/// printed; `Debug` shows the name and version numbers only.
pub struct LocalKey {
    name: String,
    versions: Vec<KeyVersion>,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKey").field("name", &self.name).field("versions", &self.versions.len()).finish()
    }
}

/// What `keys list` shows of a key: never its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's name.
    pub name: String,
    /// The newest version, the one new data keys are wrapped with.
    pub latest_version: u32,
    /// Creation time of each version, seconds since the Unix epoch.
    pub created: Vec<u64>,
}

impl LocalKey {
    /// A key with one random version, kept in memory only.
    ///
    /// # Errors
    /// [`KeyringErrorKind::Invalid`] for a bad name, [`KeyringErrorKind::Io`]
    /// when the random source fails.
    pub fn generate(name: &str) -> Result<Self, KeyringError> {
        check_name(name)?;
        let mut key = Self { name: name.to_owned(), versions: Vec::new() };
        key.add_version()?;
        Ok(key)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The newest version number.
    pub fn latest_version(&self) -> u32 {
        self.versions.last().map_or(0, |v| v.number)
    }

    /// A summary without secrets.
    pub fn info(&self) -> KeyInfo {
        KeyInfo {
            name: self.name.clone(),
            latest_version: self.latest_version(),
            created: self.versions.iter().map(|v| v.created).collect(),
        }
    }

    /// The key id that encrypted data keys wrapped by the newest version carry.
    pub fn key_id(&self) -> String {
        format!("{}/v{}", self.name, self.latest_version())
    }

    fn add_version(&mut self) -> Result<(), KeyringError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        crate::random::fill(secret.as_mut()).map_err(|e| KeyringError::new(KeyringErrorKind::Io, e.to_string()))?;
        let number = self.latest_version().checked_add(1).ok_or_else(|| invalid("too many key versions"))?;
        self.versions.push(KeyVersion { number, created: now(), secret });
        Ok(())
    }

    fn version(&self, number: u32) -> Option<&KeyVersion> {
        self.versions.iter().find(|v| v.number == number)
    }

    /// The key file's text. Sized up front and written piece by piece, so no
    /// reallocation and no `format!` temporary leaves key text behind.
    fn to_file(&self) -> Zeroizing<String> {
        // A version line: "version " + 10 digits + " created " + 20 digits + " " + 44 + "\n".
        let line_max = 8 + 10 + 9 + 20 + 1 + 44 + 1;
        let capacity = FILE_TAG.len() + 6 + self.name.len() + 1 + self.versions.len() * line_max;
        let mut text = Zeroizing::new(String::with_capacity(capacity));
        text.push_str(FILE_TAG);
        text.push_str("\nname ");
        text.push_str(&self.name);
        text.push('\n');
        let mut secret = Zeroizing::new(String::with_capacity(44));
        for v in &self.versions {
            text.push_str("version ");
            text.push_str(&v.number.to_string());
            text.push_str(" created ");
            text.push_str(&v.created.to_string());
            text.push(' ');
            secret.clear();
            STANDARD.encode_string(v.secret.as_ref(), &mut secret);
            text.push_str(&secret);
            text.push('\n');
        }
        debug_assert!(text.len() <= capacity, "the key file text was sized too small");
        text
    }

    fn from_file(name: &str, text: &str) -> Result<Self, KeyringError> {
        let bad = |why: &str| invalid(format!("local key file for {name:?} is malformed: {why}"));
        let mut lines = text.lines();
        if lines.next() != Some(FILE_TAG) {
            return Err(bad("first line is not the keystore file tag"));
        }
        if lines.next() != Some(format!("name {name}").as_str()) {
            return Err(bad("the name line does not match the file name"));
        }
        let mut key = Self { name: name.to_owned(), versions: Vec::new() };
        for line in lines {
            let fields: Vec<&str> = line.split(' ').collect();
            let ["version", number, "created", created, secret] = fields[..] else {
                return Err(bad("a version line is not `version N created T KEY`"));
            };
            let number: u32 = number.parse().map_err(|_| bad("a version number is not a number"))?;
            if number != key.latest_version() + 1 {
                return Err(bad("versions are not numbered 1, 2, 3, …")); // MUST 8.2
            }
            let created = created.parse().map_err(|_| bad("a creation time is not a number"))?;
            let decoded = Zeroizing::new(STANDARD.decode(secret).map_err(|_| bad("a key is not base64"))?);
            let mut secret = Zeroizing::new([0u8; 32]);
            if decoded.len() != 32 {
                return Err(bad("a key is not 32 bytes"));
            }
            secret.copy_from_slice(&decoded);
            key.versions.push(KeyVersion { number, created, secret });
        }
        if key.versions.is_empty() {
            return Err(bad("it has no key version"));
        }
        Ok(key)
    }
}

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

/// Wraps with one local key and unwraps with an allowed set of local keys.
pub struct LocalKeyring {
    wrapping: Option<LocalKey>,
    allowed: Vec<LocalKey>,
    key_id: String,
}

impl LocalKeyring {
    /// A keyring that wraps with the newest version of `key` and unwraps with
    /// any version of it.
    pub fn new(key: LocalKey) -> Self {
        Self::with_allowed(Some(key), Vec::new())
    }

    /// A keyring that wraps with `wrapping` (if any) and may also unwrap with
    /// the keys in `allowed` (for re-wrapping from one local key to another,
    /// or decrypting with every key of a keystore).
    pub fn with_allowed(wrapping: Option<LocalKey>, allowed: Vec<LocalKey>) -> Self {
        let key_id = wrapping.as_ref().map(LocalKey::key_id).unwrap_or_default();
        Self { wrapping, allowed, key_id }
    }

    /// Makes a data key and wraps it.
    ///
    /// # Errors
    /// [`KeyringErrorKind::Unsupported`] without a wrapping key.
    pub fn generate_sync(&self, context: &EncryptionContext) -> Result<(DataKey, EncryptedDataKey), KeyringError> {
        let key = DataKey::generate().map_err(|e| KeyringError::new(KeyringErrorKind::Io, e.to_string()))?;
        let edk = self.wrap_sync(&key, context)?;
        Ok((key, edk))
    }

    /// Wraps `data_key` with the newest version of the wrapping key (MUST 8.1).
    ///
    /// # Errors
    /// [`KeyringErrorKind::Unsupported`] without a wrapping key.
    pub fn wrap_sync(&self, data_key: &DataKey, context: &EncryptionContext) -> Result<EncryptedDataKey, KeyringError> {
        let key = self.wrapping.as_ref().ok_or_else(|| {
            KeyringError::new(
                KeyringErrorKind::Unsupported,
                "this local keyring only decrypts; name a key to encrypt with",
            )
        })?;
        let version = key.versions.last().ok_or_else(|| invalid("local key has no version"))?;
        // Sized once and zeroizing: the data key sits here in clear until it
        // is sealed in place, and a failed seal must not leave it behind.
        let mut wrapped = Zeroizing::new(Vec::with_capacity(WRAPPED_LEN));
        let mut nonce = [0u8; NONCE_LEN];
        crate::random::fill(&mut nonce).map_err(|e| KeyringError::new(KeyringErrorKind::Io, e.to_string()))?;
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(data_key.expose_secret());
        let aad = wrap_aad(&self.key_id, context);
        let tag = Gcm::new(&version.secret)
            .seal_in_place(&nonce, &aad, &mut wrapped[NONCE_LEN..])
            .map_err(|_| invalid("local wrap failed"))?;
        wrapped.extend_from_slice(&tag);
        // Sealed: ciphertext from here on.
        EncryptedDataKey::new(LOCAL_PROVIDER_ID, self.key_id.clone(), wrapped.to_vec())
            .map_err(|e| invalid(e.to_string()))
    }

    /// Unwraps the first of `edks` that an allowed key opens.
    ///
    /// # Errors
    /// [`KeyringErrorKind::NoMatchingKey`] naming the envelope's key ids when
    /// none is ours; [`KeyringErrorKind::InvalidCiphertext`] when ours fail
    /// to open (wrong context or tampering).
    pub fn unwrap_sync(&self, edks: &[EncryptedDataKey], context: &EncryptionContext) -> Result<DataKey, KeyringError> {
        let mut tried = false;
        for edk in edks {
            let Some(version) = self.version_for(edk) else {
                continue;
            };
            tried = true;
            if let Some(key) = open_wrapped(version, edk, context) {
                return Ok(key);
            }
        }
        if tried {
            Err(KeyringError::new(
                KeyringErrorKind::InvalidCiphertext,
                "the local key did not unwrap the data key: wrong encryption context, or the data was altered",
            ))
        } else {
            Err(no_matching_key(edks))
        }
    }

    fn version_for(&self, edk: &EncryptedDataKey) -> Option<&KeyVersion> {
        if edk.provider_id() != LOCAL_PROVIDER_ID {
            return None;
        }
        let (name, version) = edk.key_id().rsplit_once("/v")?;
        let number: u32 = version.parse().ok()?;
        self.wrapping.iter().chain(&self.allowed).find(|k| k.name == name)?.version(number)
    }
}

fn open_wrapped(version: &KeyVersion, edk: &EncryptedDataKey, context: &EncryptionContext) -> Option<DataKey> {
    let wrapped = edk.wrapped();
    if wrapped.len() != WRAPPED_LEN {
        return None;
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&wrapped[..NONCE_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&wrapped[NONCE_LEN + DATA_KEY_LEN..]);
    let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    key.copy_from_slice(&wrapped[NONCE_LEN..NONCE_LEN + DATA_KEY_LEN]);
    let aad = wrap_aad(edk.key_id(), context);
    Gcm::new(&version.secret).open_in_place(&nonce, &aad, key.as_mut(), &tag).ok()?;
    Some(DataKey::from_bytes(*key))
}

/// The wrapping AAD of MUST 8.1.
fn wrap_aad(key_id: &str, context: &EncryptionContext) -> Vec<u8> {
    let mut aad = b"rekey-local v1".to_vec();
    put_vec16(&mut aad, key_id.as_bytes());
    context.encode(&mut aad);
    aad
}

impl Keyring for LocalKeyring {
    fn provider_id(&self) -> &str {
        LOCAL_PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn can_unwrap(&self, edk: &EncryptedDataKey) -> bool {
        self.version_for(edk).is_some()
    }

    fn needs_runtime(&self) -> bool {
        false
    }

    fn generate<'a>(&'a self, context: &'a EncryptionContext) -> KeyringFuture<'a, (DataKey, EncryptedDataKey)> {
        Box::pin(std::future::ready(self.generate_sync(context)))
    }

    fn wrap<'a>(&'a self, key: &'a DataKey, context: &'a EncryptionContext) -> KeyringFuture<'a, EncryptedDataKey> {
        Box::pin(std::future::ready(self.wrap_sync(key, context)))
    }

    fn unwrap<'a>(
        &'a self,
        edks: &'a [EncryptedDataKey],
        context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, DataKey> {
        Box::pin(std::future::ready(self.unwrap_sync(edks, context)))
    }
}

fn check_name(name: &str) -> Result<(), KeyringError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name:?} is not a valid key name (letters, digits, '_', '-', '.', at most 64, not starting with '.')"
        )))
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

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn denied(message: impl Into<String>) -> KeyringError {
    KeyringError::new(KeyringErrorKind::AccessDenied, message)
}

fn invalid(message: impl Into<String>) -> KeyringError {
    KeyringError::new(KeyringErrorKind::Invalid, message)
}

fn io_error(path: &Path, e: std::io::Error) -> KeyringError {
    KeyringError::new(KeyringErrorKind::Io, format!("{}: {e}", path.display())).with_source(e)
}

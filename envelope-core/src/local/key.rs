//! A local wrapping key and its versions, and the errors the keystore shares.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::aead::{NONCE_LEN, TAG_LEN};
use crate::error::{KeyringError, KeyringErrorKind};
use crate::key::DATA_KEY_LEN;

/// The provider id of local encrypted data keys.
pub const LOCAL_PROVIDER_ID: &str = "rekey-local";
pub(super) const FILE_TAG: &str = "rekey-keystore-file v1";
pub(super) const WRAPPED_LEN: usize = NONCE_LEN + DATA_KEY_LEN + TAG_LEN;

/// One version of a local wrapping key.
pub(super) struct KeyVersion {
    pub(super) number: u32,
    pub(super) created: u64,
    pub(super) secret: Zeroizing<[u8; 32]>,
}

/// A named local wrapping key with all its versions. Its bytes are never
/// printed; `Debug` shows the name and version numbers only.
pub struct LocalKey {
    pub(super) name: String,
    pub(super) versions: Vec<KeyVersion>,
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

    pub(super) fn add_version(&mut self) -> Result<(), KeyringError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        crate::random::fill(secret.as_mut()).map_err(|e| KeyringError::new(KeyringErrorKind::Io, e.to_string()))?;
        let number = self.latest_version().checked_add(1).ok_or_else(|| invalid("too many key versions"))?;
        self.versions.push(KeyVersion { number, created: now(), secret });
        Ok(())
    }

    pub(super) fn version(&self, number: u32) -> Option<&KeyVersion> {
        self.versions.iter().find(|v| v.number == number)
    }

    /// The key file's text. Sized up front and written piece by piece, so no
    /// reallocation and no `format!` temporary leaves key text behind.
    pub(super) fn to_file(&self) -> Zeroizing<String> {
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

    pub(super) fn from_file(name: &str, text: &str) -> Result<Self, KeyringError> {
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

pub(super) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(super) fn denied(message: impl Into<String>) -> KeyringError {
    KeyringError::new(KeyringErrorKind::AccessDenied, message)
}

pub(super) fn invalid(message: impl Into<String>) -> KeyringError {
    KeyringError::new(KeyringErrorKind::Invalid, message)
}

pub(super) fn io_error(path: &Path, e: std::io::Error) -> KeyringError {
    KeyringError::new(KeyringErrorKind::Io, format!("{}: {e}", path.display())).with_source(e)
}

pub(super) fn check_name(name: &str) -> Result<(), KeyringError> {
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

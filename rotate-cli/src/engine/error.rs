//! What can go wrong: a run-level [`Error`] that stops the run, and an
//! [`ItemError`] that fails one item while the run goes on. Both carry a
//! message for a person; neither ever carries key material or plaintext.

use std::fmt;

use envelope_core::{KeyringError, KeyringErrorKind};

/// What kind of run-level failure, so the binary can choose its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The settings are wrong or contradict the target or the journal.
    Usage,
    /// The target's content is malformed beyond one item (a CSV header, a journal).
    BadInput,
    /// A file, directory or lock could not be used.
    Io,
    /// A keyring refused or failed before any item was changed (preflight).
    Keyring(KeyringErrorKind),
}

/// A failure that stops the run.
#[derive(Debug)]
pub struct Error {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// A sentence for a person, naming what is wrong.
    pub message: String,
    /// The next step to take, when there is an obvious one.
    pub hint: Option<String>,
}

impl Error {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), hint: None }
    }

    /// A usage failure.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }

    /// An I/O failure: `what` failed with `e`.
    pub fn io(what: impl fmt::Display, e: &std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{what}: {e}"))
    }

    /// Adds the next step to take.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Why one item failed, as a stable code for reports and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ItemErrorCode {
    /// The item is malformed: not an envelope, bad base64, not JSON.
    BadInput,
    /// The record has no such field or column.
    MissingField,
    /// The record holds the field more than once (JSON): which one is meant is ambiguous.
    DuplicateField,
    /// None of the item's wrapped keys is under a source key of this run.
    NoSourceKey,
    /// No allowed keyring could unwrap the item's data key.
    NoMatchingKey,
    /// A wrapped key did not unwrap: wrong context, tampered, or not the label's key.
    InvalidCiphertext,
    /// The key does not exist.
    KeyNotFound,
    /// The caller may not use the key.
    AccessDenied,
    /// The key is disabled, pending deletion or of the wrong kind.
    KeyUnusable,
    /// The provider kept throttling.
    Throttled,
    /// A network or service fault.
    Unavailable,
    /// Any other keyring failure.
    Keyring,
    /// The body or the key commitment did not authenticate.
    Authentication,
    /// The item's encryption context does not bind it to where it is stored.
    ContextMismatch,
    /// The written item did not check out (`--verify`), or a copy differs from its original (`rekey verify`).
    VerifyFailed,
    /// A copy that should exist (a shadow column's value) is missing.
    NotCopied,
    /// Removing wrapped keys was refused: nothing proves the remaining ones open the item.
    Unproven,
    /// The item changed between reading and writing; the other writer won.
    ChangedDuringRotation,
    /// Reading or writing the item failed.
    Io,
}

impl ItemErrorCode {
    /// The code as it appears in failure reports: stable, snake case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadInput => "bad_input",
            Self::MissingField => "missing_field",
            Self::DuplicateField => "duplicate_field",
            Self::NoSourceKey => "no_source_key",
            Self::NoMatchingKey => "no_matching_key",
            Self::InvalidCiphertext => "invalid_ciphertext",
            Self::KeyNotFound => "key_not_found",
            Self::AccessDenied => "access_denied",
            Self::KeyUnusable => "key_unusable",
            Self::Throttled => "throttled",
            Self::Unavailable => "unavailable",
            Self::Keyring => "keyring",
            Self::Authentication => "authentication",
            Self::ContextMismatch => "context_mismatch",
            Self::VerifyFailed => "verify_failed",
            Self::NotCopied => "not_copied",
            Self::Unproven => "unproven_keys",
            Self::ChangedDuringRotation => "changed_during_rotation",
            Self::Io => "io",
        }
    }

    /// Whether trying the item again could help.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Throttled | Self::Unavailable)
    }

    /// Whether this failure would hit every item alike (a key or permission
    /// problem rather than a bad item): the preflight stops the run on these.
    pub fn is_systemic(self) -> bool {
        matches!(
            self,
            Self::NoSourceKey | Self::NoMatchingKey | Self::KeyNotFound | Self::AccessDenied | Self::KeyUnusable
        )
    }
}

impl fmt::Display for ItemErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one item failed.
#[derive(Debug, Clone)]
pub struct ItemError {
    /// The stable code.
    pub code: ItemErrorCode,
    /// A sentence for a person.
    pub message: String,
    /// The keyring error kind behind it, if any.
    pub keyring: Option<KeyringErrorKind>,
}

impl ItemError {
    /// A failure with `code`.
    pub fn new(code: ItemErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), keyring: None }
    }

    /// A malformed item.
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ItemErrorCode::BadInput, message)
    }
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl From<KeyringError> for ItemError {
    fn from(e: KeyringError) -> Self {
        let code = match e.kind() {
            KeyringErrorKind::NoMatchingKey => ItemErrorCode::NoMatchingKey,
            KeyringErrorKind::InvalidCiphertext => ItemErrorCode::InvalidCiphertext,
            KeyringErrorKind::KeyNotFound => ItemErrorCode::KeyNotFound,
            KeyringErrorKind::AccessDenied => ItemErrorCode::AccessDenied,
            KeyringErrorKind::KeyUnusable => ItemErrorCode::KeyUnusable,
            KeyringErrorKind::Throttled => ItemErrorCode::Throttled,
            KeyringErrorKind::Unavailable => ItemErrorCode::Unavailable,
            KeyringErrorKind::Io => ItemErrorCode::Io,
            _ => ItemErrorCode::Keyring,
        };
        Self { code, message: e.to_string(), keyring: Some(e.kind()) }
    }
}

impl From<envelope_core::Error> for ItemError {
    fn from(e: envelope_core::Error) -> Self {
        match e {
            envelope_core::Error::Keyring(k) => k.into(),
            envelope_core::Error::Authentication => Self::new(ItemErrorCode::Authentication, e.to_string()),
            other => Self::input(other.to_string()),
        }
    }
}

impl From<envelope_core::FormatError> for ItemError {
    fn from(e: envelope_core::FormatError) -> Self {
        Self::input(format!("malformed envelope: {e}"))
    }
}

//! Errors. Two rules shape them (docs/format.md, MUST 9.1 and 9.2): every
//! authentication failure is the same opaque [`Error::Authentication`], and no
//! error carries payload or key bytes, only static words and numbers.

use std::fmt;

/// Why an input is not a well-formed envelope, legacy record or keystore file.
///
/// Each variant names the field at fault in words; none carries input bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The input does not start with the envelope magic bytes.
    NotAnEnvelope,
    /// The envelope's format version is not one this build reads.
    UnsupportedVersion(u8),
    /// The algorithm suite id is not one this build knows.
    UnknownSuite(u16),
    /// The body form byte is neither single-shot nor framed.
    UnknownBodyForm(u8),
    /// The input ended inside the named field.
    Truncated(&'static str),
    /// A length field is over its maximum.
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length in the input.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// The named field is not valid UTF-8.
    NotUtf8(&'static str),
    /// Encryption context keys are not sorted, or one repeats.
    ContextNotCanonical,
    /// An encryption context key is empty.
    EmptyContextKey,
    /// There are more encrypted data keys than the reader accepts.
    TooManyEncryptedDataKeys {
        /// How many the envelope has.
        count: usize,
        /// The configured maximum.
        max: usize,
    },
    /// There is no encrypted data key at all.
    NoEncryptedDataKeys,
    /// The frame length is zero or over the maximum.
    BadFrameLength(u32),
    /// A frame's length does not fit the frame rules (docs/format.md §6).
    BadFrame,
    /// Bytes follow the end of the envelope.
    TrailingBytes,
    /// The text form is not valid base64.
    BadBase64,
    /// A field that must be empty or fixed is not, named here.
    Invalid(&'static str),
    /// A keyset file breaks a rule of docs/format.md §12.3.
    Keyset {
        /// The line at fault, from 1; 0 when the problem is not on one line.
        line: usize,
        /// What is wrong.
        problem: &'static str,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnEnvelope => f.write_str("the input is not a rekey envelope (no magic bytes)"),
            Self::UnsupportedVersion(v) => write!(f, "envelope format version {v} is not supported by this build"),
            Self::UnknownSuite(s) => write!(f, "unknown algorithm suite 0x{s:04x}"),
            Self::UnknownBodyForm(b) => write!(f, "unknown body form {b}"),
            Self::Truncated(field) => {
                write!(f, "the input is truncated: it ends inside the {field}")
            }
            Self::TooLong { field, len, max } => {
                write!(f, "the {field} is {len} bytes long; at most {max} are allowed")
            }
            Self::NotUtf8(field) => write!(f, "the {field} is not valid UTF-8"),
            Self::ContextNotCanonical => {
                f.write_str("the encryption context is not in canonical order (sorted, no repeats)")
            }
            Self::EmptyContextKey => f.write_str("an encryption context key is empty"),
            Self::TooManyEncryptedDataKeys { count, max } => write!(
                f,
                "the envelope has {count} encrypted data keys; at most {max} are accepted (raise the limit if this is expected)"
            ),
            Self::NoEncryptedDataKeys => f.write_str("the envelope has no encrypted data key"),
            Self::BadFrameLength(n) => write!(f, "frame length {n} is outside the allowed range"),
            Self::BadFrame => f.write_str("a frame's length field breaks the framing rules"),
            Self::TrailingBytes => f.write_str("unexpected bytes after the end of the envelope"),
            Self::BadBase64 => f.write_str("the text form is not valid base64"),
            Self::Invalid(what) => write!(f, "invalid {what}"),
            Self::Keyset { line: 0, problem } => write!(f, "keyset: {problem}"),
            Self::Keyset { line, problem } => write!(f, "keyset file, line {line}: {problem}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// What went wrong in a keyring, so callers can decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringErrorKind {
    /// None of the keyring's keys can unwrap any of the encrypted data keys.
    NoMatchingKey,
    /// The named key does not exist.
    KeyNotFound,
    /// The caller is not allowed to use the key.
    AccessDenied,
    /// The key exists but is disabled, pending deletion or of the wrong kind.
    KeyUnusable,
    /// The wrapped key did not unwrap: wrong context, tampered or not ours.
    InvalidCiphertext,
    /// The provider kept throttling after all retries.
    Throttled,
    /// A network or service fault after all retries.
    Unavailable,
    /// The keyring cannot do this operation.
    Unsupported,
    /// Bad configuration or input (a malformed key reference, say).
    Invalid,
    /// A local keystore file could not be read or written.
    Io,
}

/// A keyring failure: a kind, a sentence naming the key and operation, and
/// the provider's own error as the source. Never key bytes.
#[derive(Debug)]
pub struct KeyringError {
    kind: KeyringErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl KeyringError {
    /// A new error of `kind` with a message for a person.
    pub fn new(kind: KeyringErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), source: None }
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> KeyringErrorKind {
        self.kind
    }

    /// The message, without the source.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KeyringError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Any failure of an envelope-core operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The input is malformed; says what is wrong.
    Format(FormatError),
    /// Authentication failed: wrong key, wrong context, tampered data or a
    /// commitment mismatch. Deliberately says nothing more.
    Authentication,
    /// A keyring failed.
    Keyring(KeyringError),
    /// An encryption context given by the caller breaks a rule.
    Context(&'static str),
    /// The envelope's context lacks a pair the caller required, has another
    /// value for it, or (for [`Expect::Exactly`](crate::Expect::Exactly)) has
    /// a pair the caller did not expect.
    ContextMismatch {
        /// The key of the pair that differs.
        key: String,
    },
    /// Reading or writing a stream failed.
    Io(std::io::Error),
    /// An AWS Encryption SDK message uses a suite without key commitment,
    /// which the default policy refuses (named here).
    NonCommittingSuite(&'static str),
    /// The operation needs a cargo feature this build lacks.
    FeatureRequired {
        /// What was asked.
        what: &'static str,
        /// The feature that provides it.
        feature: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Format(e) => write!(f, "malformed input: {e}"),
            Self::Authentication => {
                f.write_str("authentication failed: wrong key, wrong encryption context, or the data was altered")
            }
            Self::Keyring(e) => write!(f, "{e}"),
            Self::Context(why) => write!(f, "invalid encryption context: {why}"),
            Self::ContextMismatch { key } => write!(
                f,
                "the envelope's encryption context does not match the expected one (key {key:?} differs, is missing, or is not expected)"
            ),
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::NonCommittingSuite(suite) => write!(
                f,
                "the message uses algorithm suite {suite}, which does not commit to its data key; \
                 it is refused by default (set DecryptOptions::allow_non_committing to read legacy messages)"
            ),
            Self::FeatureRequired { what, feature } => {
                write!(f, "{what} needs envelope-core's `{feature}` cargo feature, which this build lacks")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Format(e) => Some(e),
            Self::Keyring(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FormatError> for Error {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl From<KeyringError> for Error {
    fn from(e: KeyringError) -> Self {
        Self::Keyring(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

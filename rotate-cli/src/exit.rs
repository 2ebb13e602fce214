//! Exit codes and the error type every command returns: a message for a
//! person, the next step to take, and the code a script can act on.

use std::fmt;
use std::process::ExitCode;

use envelope_core::{Error as CoreError, KeyringError, KeyringErrorKind};

/// The exit codes, documented in `rekey --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Malformed input: not an envelope, truncated, bad base64.
    BadInput = 1,
    /// The command line is wrong (clap uses 2 as well).
    Usage = 2,
    /// Decryption refused: wrong key, wrong context, or altered data.
    Authentication = 3,
    /// A file, directory or the keystore could not be read or written.
    Io = 4,
    /// AWS KMS (or S3) refused or failed.
    Kms = 5,
    /// A rotation finished, but some items failed (see the failure report).
    Partial = 6,
}

/// The text `--help` shows about exit codes.
pub(crate) const EXIT_CODES_HELP: &str = "\
Key references (KEYREF):
  local:NAME                         a key of the local keystore
  kms:alias/NAME, kms:KEY_ID         an AWS KMS key in the default region
  kms:arn:aws:kms:REGION:...         a KMS key (or alias) ARN, used in its own region
  kms:alias/NAME?region=R&profile=P  in region R and/or with the credentials of profile P

Exit codes:
  0  success
  1  malformed input (not an envelope, truncated, bad base64)
  2  usage error
  3  authentication failed: wrong key, wrong encryption context, or altered data
  4  I/O error: files, directories, the local keystore
  5  AWS KMS error: key not found, access denied, disabled key, throttled, network
  6  finished with failures: some items or files failed (see the report)";

/// A command's failure.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: Code,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    /// Standard output was closed by its reader (`| head`): not a failure
    /// to report; `main` exits quietly.
    pub(crate) closed_pipe: bool,
}

impl CliError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), hint: None, closed_pipe: false }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Code::Usage, message)
    }

    pub(crate) fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        let closed_pipe = e.kind() == std::io::ErrorKind::BrokenPipe;
        Self { closed_pipe, ..Self::new(Code::Io, format!("{what}: {e}")) }
    }

    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code as u8)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A local keystore failure: I/O, whatever its kind, except a bad name.
pub(crate) fn keystore_error(e: KeyringError) -> CliError {
    let code = if e.kind() == KeyringErrorKind::Invalid { Code::Usage } else { Code::Io };
    CliError::new(code, e.to_string())
}

/// The exit code a keyring failure maps to.
pub(crate) fn keyring_code(kind: KeyringErrorKind) -> Code {
    match kind {
        KeyringErrorKind::NoMatchingKey | KeyringErrorKind::InvalidCiphertext => Code::Authentication,
        KeyringErrorKind::Io => Code::Io,
        KeyringErrorKind::Invalid => Code::Usage,
        KeyringErrorKind::AccessDenied | KeyringErrorKind::KeyNotFound => Code::Kms,
        _ => Code::Kms,
    }
}

impl From<KeyringError> for CliError {
    fn from(e: KeyringError) -> Self {
        let code = keyring_code(e.kind());
        let hint = match e.kind() {
            KeyringErrorKind::NoMatchingKey => Some(
                "pass the key it was made for with --key (local:NAME or kms:ARN), or --kms-discovery to let any KMS key try",
            ),
            KeyringErrorKind::InvalidCiphertext => Some("check --context: it must match the one used to encrypt"),
            _ => None,
        };
        let err = Self::new(code, e.to_string());
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    }
}

impl From<CoreError> for CliError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Keyring(k) => k.into(),
            CoreError::Authentication => Self::new(Code::Authentication, e.to_string()),
            CoreError::ContextMismatch { .. } => Self::new(Code::Authentication, e.to_string())
                .hint("rekey inspect shows the context it was encrypted with"),
            CoreError::Io(io) => Self::io("I/O error", io),
            CoreError::Context(_) => Self::new(Code::Usage, e.to_string()),
            other => Self::new(Code::BadInput, other.to_string()).hint("rekey inspect tells what the input is"),
        }
    }
}

impl From<envelope_core::FormatError> for CliError {
    fn from(e: envelope_core::FormatError) -> Self {
        CoreError::from(e).into()
    }
}

impl From<rotate_cli::engine::Error> for CliError {
    fn from(e: rotate_cli::engine::Error) -> Self {
        use rotate_cli::engine::ErrorKind;
        let code = match e.kind {
            ErrorKind::Usage => Code::Usage,
            ErrorKind::BadInput => Code::BadInput,
            ErrorKind::Io => Code::Io,
            ErrorKind::Keyring(kind) => keyring_code(kind),
            _ => Code::Io,
        };
        // The engine's errors carry text only; a record stream written to a
        // closed stdout says so in the OS's words.
        let closed_pipe =
            e.kind == ErrorKind::Io && e.message.ends_with(&std::io::Error::from_raw_os_error(libc::EPIPE).to_string());
        Self { code, message: e.message, hint: e.hint, closed_pipe }
    }
}

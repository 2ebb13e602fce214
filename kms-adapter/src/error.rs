//! KMS failures, typed, each naming the operation and the key.

use std::fmt;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use envelope_core::{KeyringError, KeyringErrorKind};

use crate::endpoint::PlainHttpRefused;

/// What kind of KMS failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KmsErrorKind {
    /// The key does not exist (NotFoundException).
    KeyNotFound,
    /// The caller may not use the key (AccessDeniedException).
    AccessDenied,
    /// Disabled, pending deletion, or the wrong kind of key.
    KeyUnusable,
    /// The ciphertext does not decrypt: wrong encryption context, tampered,
    /// or not KMS's (InvalidCiphertextException, IncorrectKeyException).
    InvalidCiphertext,
    /// Still throttled after every retry.
    Throttled,
    /// Network failure or timeout after every retry.
    Network,
    /// The response's key is not on the allow-list (strict mode).
    KeyNotAllowed,
    /// A malformed key reference or argument.
    Invalid,
    /// Any other service error.
    Service,
    /// The endpoint is plain `http://` to a host off the loopback interface:
    /// refused before any request, since data keys would travel in clear.
    InsecureEndpoint,
}

/// A KMS call that failed. Its parts are read through accessors; its
/// `Display` is the sentence for a person.
#[derive(Debug)]
pub struct KmsError {
    kind: KmsErrorKind,
    operation: &'static str,
    key: String,
    pub(crate) detail: String,
    pub(crate) help: Option<String>,
    pub(crate) suggestion: Option<String>,
}

impl KmsError {
    /// The kind of failure.
    pub fn kind(&self) -> KmsErrorKind {
        self.kind
    }

    /// The KMS operation, such as `Decrypt`.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The key the call named, if any (empty otherwise).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// KMS's own message or the transport's.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// What the adapter found out about the failure, for a person: for a
    /// key that does not exist, why the reference may be wrong and the
    /// aliases that do exist. Part of the `Display` text.
    pub fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }

    /// A key reference to try instead, when one is likely meant (an alias
    /// close to a mistyped one, `alias/NAME` for a bare name), written with
    /// the caller's qualifiers.
    pub fn suggestion(&self) -> Option<&str> {
        self.suggestion.as_deref()
    }

    pub(crate) fn new(kind: KmsErrorKind, operation: &'static str, key: &str, detail: impl Into<String>) -> Self {
        Self { kind, operation, key: key.to_owned(), detail: detail.into(), help: None, suggestion: None }
    }

    /// Maps an SDK error; throttling and network faults reach here only
    /// after the SDK's retries are spent.
    pub(crate) fn from_sdk<E, R>(operation: &'static str, key: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug + 'static,
    {
        if let Some(refused) = find_source::<PlainHttpRefused>(&err) {
            return Self::new(KmsErrorKind::InsecureEndpoint, operation, key, refused.to_string());
        }
        let kind = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => KmsErrorKind::Network,
            _ => match err.code() {
                Some("NotFoundException") => KmsErrorKind::KeyNotFound,
                Some("AccessDeniedException") => KmsErrorKind::AccessDenied,
                Some(
                    "DisabledException"
                    | "KMSInvalidStateException"
                    | "InvalidKeyUsageException"
                    | "KeyUnavailableException",
                ) => KmsErrorKind::KeyUnusable,
                Some("InvalidCiphertextException" | "IncorrectKeyException") => KmsErrorKind::InvalidCiphertext,
                Some("ThrottlingException" | "LimitExceededException") => KmsErrorKind::Throttled,
                Some("DependencyTimeoutException" | "KMSInternalException") => KmsErrorKind::Network,
                Some("InvalidKeyIdException" | "ValidationException") => KmsErrorKind::Invalid,
                _ => KmsErrorKind::Service,
            },
        };
        let detail = match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => error_chain(&err),
        };
        Self::new(kind, operation, key, detail)
    }

    /// The IAM action this operation needs, for access-denied hints.
    fn iam_action(&self) -> &'static str {
        match self.operation {
            "GenerateDataKey" => "kms:GenerateDataKey",
            "Decrypt" => "kms:Decrypt",
            "Encrypt" => "kms:Encrypt",
            "ReEncrypt" => "kms:ReEncryptFrom on the source key and kms:ReEncryptTo on the destination key",
            _ => "kms:DescribeKey",
        }
    }
}

/// The first error of type `T` in `err`'s source chain.
fn find_source<'a, T: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() { String::new() } else { format!(" with key {}", self.key) };
        write!(f, "KMS {}{key} failed: ", self.operation)?;
        match self.kind {
            KmsErrorKind::KeyNotFound => write!(f, "the key does not exist ({})", self.detail),
            KmsErrorKind::AccessDenied => {
                write!(f, "access denied ({}); the caller needs {}", self.detail, self.iam_action())
            }
            KmsErrorKind::KeyUnusable => {
                write!(
                    f,
                    "the key cannot be used: disabled, pending deletion or not a symmetric encryption key ({})",
                    self.detail
                )
            }
            KmsErrorKind::InvalidCiphertext => write!(
                f,
                "the wrapped key does not decrypt: wrong encryption context, altered data, or another key's ciphertext ({})",
                self.detail
            ),
            KmsErrorKind::Throttled => write!(
                f,
                "still throttled after all retries ({}); lower --concurrency or --max-rps, or raise --kms-max-attempts",
                self.detail
            ),
            KmsErrorKind::Network => write!(f, "network failure or timeout after all retries ({})", self.detail),
            KmsErrorKind::KeyNotAllowed => write!(f, "{}", self.detail),
            KmsErrorKind::Invalid | KmsErrorKind::Service | KmsErrorKind::InsecureEndpoint => {
                write!(f, "{}", self.detail)
            }
        }?;
        match &self.help {
            Some(help) => write!(f, "; {help}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for KmsError {}

impl From<KmsError> for KeyringError {
    fn from(e: KmsError) -> Self {
        let kind = match e.kind {
            KmsErrorKind::KeyNotFound => KeyringErrorKind::KeyNotFound,
            KmsErrorKind::AccessDenied => KeyringErrorKind::AccessDenied,
            KmsErrorKind::KeyUnusable => KeyringErrorKind::KeyUnusable,
            KmsErrorKind::InvalidCiphertext => KeyringErrorKind::InvalidCiphertext,
            KmsErrorKind::Throttled => KeyringErrorKind::Throttled,
            KmsErrorKind::Network => KeyringErrorKind::Unavailable,
            KmsErrorKind::KeyNotAllowed => KeyringErrorKind::NoMatchingKey,
            KmsErrorKind::Invalid => KeyringErrorKind::Invalid,
            KmsErrorKind::Service => KeyringErrorKind::Unavailable,
            // A setting to change, not a key to skip: stops any search for another key.
            KmsErrorKind::InsecureEndpoint => KeyringErrorKind::Unsupported,
        };
        KeyringError::new(kind, e.to_string()).with_source(e)
    }
}

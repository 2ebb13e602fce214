//! What a reader accepts: the SDKs' commitment policy and size limits.

use super::suite::Suite;
use crate::error::Error;

/// The default of [`DecryptOptions::max_wrapped_keys`]: the SDKs' usual
/// configured limit.
pub const DEFAULT_MAX_WRAPPED_KEYS: usize = 10;
/// The default of [`DecryptOptions::max_buffer_len`]: 64 MiB.
pub const DEFAULT_MAX_BUFFER_LEN: u32 = 64 << 20;

/// What a reader accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecryptOptions {
    /// Most wrapped keys a header may list (default 10); more is
    /// [`FormatError::TooManyEncryptedDataKeys`](crate::FormatError::TooManyEncryptedDataKeys). Each costs the caller's
    /// keyring a try, so an attacker's long list is a denial of service.
    pub max_wrapped_keys: usize,
    /// Whether to decrypt the non-committing legacy suites (default no).
    pub allow_non_committing: bool,
    /// Largest frame (or non-framed body) [`StreamDecryptor`](super::StreamDecryptor) holds in
    /// memory to check its tag before writing it (default 64 MiB). Larger
    /// ones are refused before anything is allocated for them.
    /// [`Message`](super::Message) needs no such limit: its input is already in memory.
    pub max_buffer_len: u32,
}

impl Default for DecryptOptions {
    fn default() -> Self {
        Self {
            max_wrapped_keys: DEFAULT_MAX_WRAPPED_KEYS,
            allow_non_committing: false,
            max_buffer_len: DEFAULT_MAX_BUFFER_LEN,
        }
    }
}

impl DecryptOptions {
    /// The defaults, but decrypting the non-committing legacy suites too
    /// (the SDKs' `REQUIRE_ENCRYPT_ALLOW_DECRYPT`), for reading old messages.
    pub fn allowing_non_committing() -> Self {
        Self { allow_non_committing: true, ..Self::default() }
    }

    /// Refuses a suite the policy does not allow.
    pub(crate) fn check_policy(&self, suite: Suite) -> Result<(), Error> {
        if suite.is_committing() || self.allow_non_committing {
            Ok(())
        } else {
            Err(Error::NonCommittingSuite(suite.name()))
        }
    }
}

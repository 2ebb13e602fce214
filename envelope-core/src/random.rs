//! The one source of randomness: the operating system's.

use crate::error::Error;

/// Fills `buf` from the OS random source.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|e| Error::Io(std::io::Error::other(format!("system random source failed: {e}"))))
}

//! Decrypted bytes that are wiped when dropped.

use zeroize::{Zeroize, Zeroizing};

/// A decrypted message, wiped from memory when dropped, in one bulk pass
/// (a memset the compiler may not remove). It has no `Clone`, and its
/// `Debug` shows only its length.
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// An empty buffer, for [`Envelope::open_into`](crate::hazmat::Envelope::open_into) to fill.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// `len` zero bytes: a fresh allocation, so nothing of an earlier one is copied.
    pub(crate) fn zeroed(len: usize) -> Self {
        Self(vec![0; len])
    }

    /// An empty buffer with room for `capacity` bytes, which must not be
    /// exceeded: growing would leave a copy behind in freed memory.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    pub(crate) fn vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Makes the contents `len` bytes long, keeping the allocation when it
    /// is large enough: bytes already there stay until overwritten, new
    /// ones are zero. A buffer too small is wiped and replaced, never grown
    /// (growing would leave a copy behind in freed memory).
    pub(crate) fn set_len_zeroed(&mut self, len: usize) {
        if self.0.capacity() < len {
            *self = Self::zeroed(len);
        } else {
            self.0.resize(len, 0);
        }
    }

    /// Wipes the contents and empties the buffer, keeping its allocation.
    pub(crate) fn clear(&mut self) {
        wipe(&mut self.0);
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The same bytes as a [`Zeroizing`] vector, without a copy.
    pub fn into_zeroizing(mut self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(std::mem::take(&mut self.0))
    }
}

impl std::ops::Deref for Plaintext {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Plaintext {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Default for Plaintext {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Zeroes all of `buf`'s allocation, contents and spare capacity, with
/// `zeroize`'s bulk fill for byte slices, then empties it.
pub(crate) fn wipe(buf: &mut Vec<u8>) {
    buf.as_mut_slice().zeroize();
    buf.spare_capacity_mut().zeroize();
    buf.clear();
}

//! The two block-cipher primitives, kept thin so that the Wycheproof vectors
//! exercise exactly the code the envelope and the legacy codec run.
//!
//! Raw AEADs take caller-chosen nonces, so they are not part of the public
//! API: tests, benches and fuzz targets reach them through the `internals`
//! feature, and without it their `pub` items are reachable from nowhere.
#![cfg_attr(not(feature = "internals"), allow(unreachable_pub))]

#[cfg(feature = "internals")]
use cbc::cipher::block_padding::Pkcs7;
#[cfg(feature = "internals")]
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

#[cfg(feature = "internals")]
use crate::backend::AeadBackend;
use crate::backend::Engine;
use crate::error::Error;

pub use crate::backend::{NONCE_LEN, TAG_LEN};

/// AES-256-GCM with a 256-bit key, 96-bit nonces and 128-bit tags, on the
/// build's default [`AeadBackend`] or a chosen one.
pub struct Gcm(Engine);

impl Gcm {
    /// A cipher for `key` on [`AeadBackend::DEFAULT`].
    pub fn new(key: &[u8; 32]) -> Self {
        Self(Engine::new_default(key))
    }

    /// A cipher for `key` on `backend`; `None` when this build lacks it
    /// (see [`AeadBackend::is_available`]).
    #[cfg(feature = "internals")]
    pub fn with_backend(backend: AeadBackend, key: &[u8; 32]) -> Option<Self> {
        Engine::new(backend, key).map(Self)
    }

    /// The backend this cipher runs on.
    #[cfg(feature = "internals")]
    pub fn backend(&self) -> AeadBackend {
        self.0.backend()
    }

    /// Encrypts `buf` in place and returns the tag.
    ///
    /// # Errors
    /// [`Error::Authentication`] only if the input is beyond GCM's length
    /// limit, which the envelope's frame limits rule out.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        self.0.seal_in_place(nonce, aad, buf).map_err(|()| Error::Authentication)
    }

    /// Encrypts `plaintext` into `ciphertext`, which must have the same
    /// length, in one pass, and returns the tag.
    ///
    /// # Errors
    /// [`Error::Authentication`] when the lengths differ or the input is
    /// beyond GCM's length limit.
    pub fn seal_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        ciphertext: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        self.0.seal_to(nonce, aad, plaintext, ciphertext).map_err(|()| Error::Authentication)
    }

    /// Decrypts `buf` in place if `tag` verifies; on failure `buf` is zeroed,
    /// so no unauthenticated plaintext survives.
    ///
    /// # Errors
    /// [`Error::Authentication`] when the tag does not verify.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        self.0.open_in_place(nonce, aad, buf, tag).map_err(|()| {
            buf.fill(0);
            Error::Authentication
        })
    }

    /// Decrypts `ciphertext` into `plaintext`, which must have the same
    /// length, if `tag` verifies; on failure `plaintext` is zeroed.
    ///
    /// # Errors
    /// [`Error::Authentication`] when the tag does not verify or the lengths differ.
    pub fn open_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        plaintext: &mut [u8],
    ) -> Result<(), Error> {
        self.0.open_to(nonce, aad, ciphertext, tag, plaintext).map_err(|()| {
            plaintext.fill(0);
            Error::Authentication
        })
    }
}

/// AES-256-CBC with PKCS#7 padding, for legacy test fixtures and the
/// Wycheproof vectors (the legacy reader has its own constant-time unpadding).
#[cfg(feature = "internals")]
pub struct Cbc;

#[cfg(feature = "internals")]
impl Cbc {
    /// Decrypts and unpads. Every failure is the same [`Error::Authentication`]
    /// (MUST 11.1), and the scratch buffer is zeroized either way.
    ///
    /// # Errors
    /// [`Error::Authentication`] for a length that is not a whole number of
    /// blocks or for bad padding.
    pub fn decrypt(key: &[u8; 32], iv: &[u8; 16], ciphertext: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        let mut buf = zeroize::Zeroizing::new(ciphertext.to_vec());
        let decryptor = cbc::Decryptor::<aes::Aes256>::new(&(*key).into(), &(*iv).into());
        let len = decryptor.decrypt_padded::<Pkcs7>(&mut buf).map_err(|_| Error::Authentication)?.len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Pads and encrypts: only for making legacy test fixtures (MUST 11.2).
    pub fn encrypt_for_fixtures(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
        cbc::Encryptor::<aes::Aes256>::new(&(*key).into(), &(*iv).into()).encrypt_padded_vec::<Pkcs7>(plaintext)
    }
}

/// A tag slice of the right length as an array (callers have checked the length).
pub(crate) fn tag_array(tag: &[u8]) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag);
    out
}

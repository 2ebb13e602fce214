//! The two block-cipher primitives, kept thin so that the Wycheproof vectors
//! exercise exactly the code the envelope and the legacy codec run.

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Nonce, Tag};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

use crate::error::Error;

/// AES-256-GCM tag length.
pub const TAG_LEN: usize = 16;
/// AES-256-GCM nonce length.
pub const NONCE_LEN: usize = 12;

/// AES-256-GCM with a 256-bit key, 96-bit nonces and 128-bit tags.
pub struct Gcm(Aes256Gcm);

impl Gcm {
    /// A cipher for `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(&(*key).into()))
    }

    /// Encrypts `buf` in place and returns the tag.
    ///
    /// # Errors
    /// [`Error::Authentication`] only if the input is beyond GCM's length
    /// limit, which the envelope's frame limits rule out.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        let tag =
            self.0.encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into()).map_err(|_| Error::Authentication)?;
        Ok(tag.into())
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
        let result = self.0.decrypt_inout_detached(&Nonce::from(*nonce), aad, (&mut *buf).into(), &Tag::from(*tag));
        if result.is_err() {
            buf.fill(0);
            return Err(Error::Authentication);
        }
        Ok(())
    }
}

/// AES-256-CBC with PKCS#7 padding, for the legacy records only.
pub struct Cbc;

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

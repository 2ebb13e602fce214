//! AES-256-GCM on RustCrypto's `aes-gcm`.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Nonce, Tag};

use crate::aead::{NONCE_LEN, TAG_LEN};

pub(crate) struct Key(Aes256Gcm);

impl Key {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(&(*key).into()))
    }

    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], ()> {
        let tag = self.0.encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into()).map_err(drop)?;
        Ok(tag.into())
    }

    pub(crate) fn seal_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; TAG_LEN], ()> {
        let buf = InOutBuf::new(input, output).map_err(drop)?;
        let tag = self.0.encrypt_inout_detached(&Nonce::from(*nonce), aad, buf).map_err(drop)?;
        Ok(tag.into())
    }

    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), ()> {
        self.0.decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into(), &Tag::from(*tag)).map_err(drop)
    }

    pub(crate) fn open_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        input: &[u8],
        tag: &[u8; TAG_LEN],
        output: &mut [u8],
    ) -> Result<(), ()> {
        let buf = InOutBuf::new(input, output).map_err(drop)?;
        self.0.decrypt_inout_detached(&Nonce::from(*nonce), aad, buf, &Tag::from(*tag)).map_err(drop)
    }
}

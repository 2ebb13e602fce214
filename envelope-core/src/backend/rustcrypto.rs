//! AES-256-GCM on RustCrypto's `aes-gcm`.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, AesGcm, KeyInit, Nonce, Tag};

use super::params::{NONCE_LEN, TAG_LEN};

/// AES-256-GCM on the encryption half of AES alone: GCM runs the block
/// cipher forward to open as well as to seal, so the decryption round keys
/// that `aes_gcm::Aes256Gcm` also derives would be work thrown away for
/// every message key.
type Aes256GcmForward = AesGcm<aes::Aes256Enc, U12>;

pub(crate) struct Key(Aes256GcmForward);

impl Key {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self(Aes256GcmForward::new(&(*key).into()))
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

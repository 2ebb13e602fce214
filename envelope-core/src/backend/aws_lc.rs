//! AES-256-GCM on aws-lc-rs (the `aws-lc` feature).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::params::{NONCE_LEN, TAG_LEN};

pub(crate) struct Key(LessSafeKey);

impl Key {
    /// `None` only if aws-lc refuses a 32-byte AES-256 key, which it does not.
    pub(crate) fn new(key: &[u8; 32]) -> Option<Self> {
        UnboundKey::new(&AES_256_GCM, key).ok().map(|k| Self(LessSafeKey::new(k)))
    }

    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], ()> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(drop)?;
        tag.as_ref().try_into().map_err(drop)
    }

    pub(crate) fn seal_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; TAG_LEN], ()> {
        let mut tag = [0u8; TAG_LEN];
        self.0
            .seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                input,
                output,
                &[],
                &mut tag,
            )
            .map_err(drop)?;
        Ok(tag)
    }

    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), ()> {
        self.0
            .open_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), tag, buf)
            .map(drop)
            .map_err(drop)
    }

    pub(crate) fn open_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        input: &[u8],
        tag: &[u8; TAG_LEN],
        output: &mut [u8],
    ) -> Result<(), ()> {
        self.0
            .open_separate_gather(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), input, tag, output)
            .map_err(drop)
    }
}

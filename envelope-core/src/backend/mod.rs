//! The AES-256-GCM implementations the envelope can run on.
//!
//! The format does not depend on the implementation: every backend turns the
//! same key, nonce, associated data and plaintext into the same bytes (the
//! Wycheproof, known-answer and cross-backend tests check it). RustCrypto is
//! always built and is the default, so the library stays pure Rust; the
//! `aws-lc` cargo feature adds aws-lc-rs and makes it the default, for its
//! faster AES-GCM (fused AES-NI/VAES and carry-less multiplication).

mod params;
mod rustcrypto;

#[cfg(feature = "aws-lc")]
mod aws_lc;

pub use self::params::{NONCE_LEN, TAG_LEN};

/// An implementation of AES-256-GCM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AeadBackend {
    /// RustCrypto's `aes-gcm`: pure Rust, always available.
    RustCrypto,
    /// aws-lc-rs: available when envelope-core is built with the `aws-lc` feature.
    AwsLc,
}

impl AeadBackend {
    /// The backend the envelope uses: aws-lc-rs when the `aws-lc` feature is
    /// on, RustCrypto otherwise.
    pub const DEFAULT: Self = if cfg!(feature = "aws-lc") { Self::AwsLc } else { Self::RustCrypto };

    /// Every backend this build contains, the default first.
    pub fn available() -> &'static [Self] {
        if cfg!(feature = "aws-lc") { &[Self::AwsLc, Self::RustCrypto] } else { &[Self::RustCrypto] }
    }

    /// Whether this build contains the backend.
    pub fn is_available(self) -> bool {
        Self::available().contains(&self)
    }

    /// A short name for people and benchmark reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::RustCrypto => "RustCrypto aes-gcm",
            Self::AwsLc => "aws-lc-rs",
        }
    }
}

/// An expanded AES-256-GCM key on one backend. Every failure is the same
/// `Err(())`: callers map it to the one authentication error.
pub(crate) enum Engine {
    /// Boxed: its expanded keys take over a kilobyte, which would otherwise
    /// be copied each time a cipher moves.
    RustCrypto(Box<rustcrypto::Key>),
    #[cfg(feature = "aws-lc")]
    AwsLc(aws_lc::Key),
}

impl Engine {
    /// Expands `key` for `backend`; `None` when this build lacks the backend.
    #[cfg(feature = "internals")]
    pub(crate) fn new(backend: AeadBackend, key: &[u8; 32]) -> Option<Self> {
        match backend {
            AeadBackend::RustCrypto => Some(Self::RustCrypto(Box::new(rustcrypto::Key::new(key)))),
            #[cfg(feature = "aws-lc")]
            AeadBackend::AwsLc => aws_lc::Key::new(key).map(Self::AwsLc),
            #[cfg(not(feature = "aws-lc"))]
            AeadBackend::AwsLc => None,
        }
    }

    /// Expands `key` for [`AeadBackend::DEFAULT`].
    pub(crate) fn new_default(key: &[u8; 32]) -> Self {
        #[cfg(feature = "aws-lc")]
        if let Some(k) = aws_lc::Key::new(key) {
            return Self::AwsLc(k);
        }
        // Reached only without the feature: aws-lc accepts every 32-byte key.
        Self::RustCrypto(Box::new(rustcrypto::Key::new(key)))
    }

    #[cfg(feature = "internals")]
    pub(crate) fn backend(&self) -> AeadBackend {
        match self {
            Self::RustCrypto(_) => AeadBackend::RustCrypto,
            #[cfg(feature = "aws-lc")]
            Self::AwsLc(_) => AeadBackend::AwsLc,
        }
    }

    /// Encrypts `buf` in place, returning the tag.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], ()> {
        match self {
            Self::RustCrypto(k) => k.seal_in_place(nonce, aad, buf),
            #[cfg(feature = "aws-lc")]
            Self::AwsLc(k) => k.seal_in_place(nonce, aad, buf),
        }
    }

    /// Encrypts `input` into `output` (of the same length), returning the tag:
    /// one pass instead of a copy and an in-place pass.
    pub(crate) fn seal_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; TAG_LEN], ()> {
        if input.len() != output.len() {
            return Err(());
        }
        match self {
            Self::RustCrypto(k) => k.seal_to(nonce, aad, input, output),
            #[cfg(feature = "aws-lc")]
            Self::AwsLc(k) => k.seal_to(nonce, aad, input, output),
        }
    }

    /// Decrypts `buf` in place if `tag` verifies. On failure `buf` holds
    /// unspecified bytes: the caller wipes it.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), ()> {
        match self {
            Self::RustCrypto(k) => k.open_in_place(nonce, aad, buf, tag),
            #[cfg(feature = "aws-lc")]
            Self::AwsLc(k) => k.open_in_place(nonce, aad, buf, tag),
        }
    }

    /// Decrypts `input` into `output` (of the same length) if `tag` verifies.
    /// On failure `output` holds unspecified bytes: the caller wipes it.
    pub(crate) fn open_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        input: &[u8],
        tag: &[u8; TAG_LEN],
        output: &mut [u8],
    ) -> Result<(), ()> {
        if input.len() != output.len() {
            return Err(());
        }
        match self {
            Self::RustCrypto(k) => k.open_to(nonce, aad, input, tag, output),
            #[cfg(feature = "aws-lc")]
            Self::AwsLc(k) => k.open_to(nonce, aad, input, tag, output),
        }
    }
}

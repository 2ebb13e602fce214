//! The algorithm suites of the AWS Encryption SDK, their key derivation
//! (spec `framework/algorithm-suites.md`, `framework/transitive-requirements.md`)
//! and the AES-GCM ciphers of three key sizes they run on.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, AesGcm, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use sha2::{Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::aead::Gcm;
use crate::error::{Error, FormatError};

use super::keys::PlaintextDataKey;

/// Length of every suite's AES-GCM nonce (IV), in bytes.
pub(crate) const IV_LEN: usize = 12;
/// Length of every suite's AES-GCM tag, in bytes.
pub(crate) const TAG_LEN: usize = 16;
/// Length of the commitment key of the committing suites.
pub(crate) const COMMIT_LEN: usize = 32;

/// An algorithm suite of the AWS Encryption SDK message format: the cipher
/// and key size, the key derivation, key commitment and the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// 0x0014: AES-128-GCM on the data key itself (no KDF). Legacy.
    Aes128Gcm,
    /// 0x0046: AES-192-GCM on the data key itself (no KDF). Legacy.
    Aes192Gcm,
    /// 0x0078: AES-256-GCM on the data key itself (no KDF). Legacy.
    Aes256Gcm,
    /// 0x0114: AES-128-GCM, HKDF-SHA256. Legacy.
    Aes128GcmHkdfSha256,
    /// 0x0146: AES-192-GCM, HKDF-SHA256. Legacy.
    Aes192GcmHkdfSha256,
    /// 0x0178: AES-256-GCM, HKDF-SHA256. Legacy.
    Aes256GcmHkdfSha256,
    /// 0x0214: AES-128-GCM, HKDF-SHA256, ECDSA P-256 signature. Legacy.
    Aes128GcmHkdfSha256EcdsaP256,
    /// 0x0346: AES-192-GCM, HKDF-SHA384, ECDSA P-384 signature. Legacy.
    Aes192GcmHkdfSha384EcdsaP384,
    /// 0x0378: AES-256-GCM, HKDF-SHA384, ECDSA P-384 signature. Legacy.
    Aes256GcmHkdfSha384EcdsaP384,
    /// 0x0478: AES-256-GCM, HKDF-SHA512, key commitment, unsigned.
    Aes256GcmHkdfSha512Commit,
    /// 0x0578: AES-256-GCM, HKDF-SHA512, key commitment, ECDSA P-384
    /// signature: the SDKs' default.
    Aes256GcmHkdfSha512CommitEcdsaP384,
}

/// How a suite turns the data key into the message's AES key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kdf {
    Identity,
    HkdfSha256,
    HkdfSha384,
    /// HKDF-SHA512 with the message id as salt, and a commitment key.
    CommitSha512,
}

/// The curve (and hash) of a signed suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

impl Suite {
    /// Every suite, in id order.
    pub const ALL: [Suite; 11] = [
        Self::Aes128Gcm,
        Self::Aes192Gcm,
        Self::Aes256Gcm,
        Self::Aes128GcmHkdfSha256,
        Self::Aes192GcmHkdfSha256,
        Self::Aes256GcmHkdfSha256,
        Self::Aes128GcmHkdfSha256EcdsaP256,
        Self::Aes192GcmHkdfSha384EcdsaP384,
        Self::Aes256GcmHkdfSha384EcdsaP384,
        Self::Aes256GcmHkdfSha512Commit,
        Self::Aes256GcmHkdfSha512CommitEcdsaP384,
    ];

    /// The suite with this id.
    ///
    /// # Errors
    /// [`FormatError::UnknownSuite`] for any other id.
    pub fn from_id(id: u16) -> Result<Self, FormatError> {
        Self::ALL.into_iter().find(|s| s.id() == id).ok_or(FormatError::UnknownSuite(id))
    }

    /// The two-byte id in the message header.
    pub fn id(self) -> u16 {
        match self {
            Self::Aes128Gcm => 0x0014,
            Self::Aes192Gcm => 0x0046,
            Self::Aes256Gcm => 0x0078,
            Self::Aes128GcmHkdfSha256 => 0x0114,
            Self::Aes192GcmHkdfSha256 => 0x0146,
            Self::Aes256GcmHkdfSha256 => 0x0178,
            Self::Aes128GcmHkdfSha256EcdsaP256 => 0x0214,
            Self::Aes192GcmHkdfSha384EcdsaP384 => 0x0346,
            Self::Aes256GcmHkdfSha384EcdsaP384 => 0x0378,
            Self::Aes256GcmHkdfSha512Commit => 0x0478,
            Self::Aes256GcmHkdfSha512CommitEcdsaP384 => 0x0578,
        }
    }

    /// The SDKs' name for the suite, such as
    /// `AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128Gcm => "AES_128_GCM_IV12_TAG16_NO_KDF (0x0014)",
            Self::Aes192Gcm => "AES_192_GCM_IV12_TAG16_NO_KDF (0x0046)",
            Self::Aes256Gcm => "AES_256_GCM_IV12_TAG16_NO_KDF (0x0078)",
            Self::Aes128GcmHkdfSha256 => "AES_128_GCM_IV12_TAG16_HKDF_SHA256 (0x0114)",
            Self::Aes192GcmHkdfSha256 => "AES_192_GCM_IV12_TAG16_HKDF_SHA256 (0x0146)",
            Self::Aes256GcmHkdfSha256 => "AES_256_GCM_IV12_TAG16_HKDF_SHA256 (0x0178)",
            Self::Aes128GcmHkdfSha256EcdsaP256 => "AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256 (0x0214)",
            Self::Aes192GcmHkdfSha384EcdsaP384 => "AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384 (0x0346)",
            Self::Aes256GcmHkdfSha384EcdsaP384 => "AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384 (0x0378)",
            Self::Aes256GcmHkdfSha512Commit => "AES_256_GCM_HKDF_SHA512_COMMIT_KEY (0x0478)",
            Self::Aes256GcmHkdfSha512CommitEcdsaP384 => "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384 (0x0578)",
        }
    }

    /// Whether the message commits to its data key (only one data key can
    /// decrypt it): 0x0478 and 0x0578.
    pub fn is_committing(self) -> bool {
        self.kdf() == Kdf::CommitSha512
    }

    /// Whether the message ends with an ECDSA signature over header and body.
    pub fn is_signed(self) -> bool {
        self.curve().is_some()
    }

    /// The message format version this suite is written in: 2 for the
    /// committing suites, 1 for the others.
    pub fn message_version(self) -> u8 {
        if self.is_committing() { 2 } else { 1 }
    }

    /// Length of the data key (and of the AES key), in bytes: 16, 24 or 32.
    pub fn data_key_len(self) -> usize {
        match self {
            Self::Aes128Gcm | Self::Aes128GcmHkdfSha256 | Self::Aes128GcmHkdfSha256EcdsaP256 => 16,
            Self::Aes192Gcm | Self::Aes192GcmHkdfSha256 | Self::Aes192GcmHkdfSha384EcdsaP384 => 24,
            _ => 32,
        }
    }

    /// Length of the message id: 16 bytes in version 1, 32 in version 2.
    pub(crate) fn message_id_len(self) -> usize {
        if self.is_committing() { 32 } else { 16 }
    }

    fn kdf(self) -> Kdf {
        match self {
            Self::Aes128Gcm | Self::Aes192Gcm | Self::Aes256Gcm => Kdf::Identity,
            Self::Aes128GcmHkdfSha256
            | Self::Aes192GcmHkdfSha256
            | Self::Aes256GcmHkdfSha256
            | Self::Aes128GcmHkdfSha256EcdsaP256 => Kdf::HkdfSha256,
            Self::Aes192GcmHkdfSha384EcdsaP384 | Self::Aes256GcmHkdfSha384EcdsaP384 => Kdf::HkdfSha384,
            Self::Aes256GcmHkdfSha512Commit | Self::Aes256GcmHkdfSha512CommitEcdsaP384 => Kdf::CommitSha512,
        }
    }

    pub(crate) fn curve(self) -> Option<Curve> {
        match self {
            Self::Aes128GcmHkdfSha256EcdsaP256 => Some(Curve::P256),
            Self::Aes192GcmHkdfSha384EcdsaP384
            | Self::Aes256GcmHkdfSha384EcdsaP384
            | Self::Aes256GcmHkdfSha512CommitEcdsaP384 => Some(Curve::P384),
            _ => None,
        }
    }

    /// Derives the message's cipher from the data key and, for the
    /// committing suites, checks the commitment key stored in the header in
    /// constant time before anything else uses the key (spec
    /// `client-apis/decrypt.md`, "Get the decryption materials").
    ///
    /// `commitment` is the header's commitment key (empty for version 1).
    pub(crate) fn derive(
        self,
        data_key: &PlaintextDataKey,
        message_id: &[u8],
        commitment: &[u8],
    ) -> Result<Cipher, Error> {
        let ikm = data_key.expose_secret();
        if ikm.len() != self.data_key_len() {
            return Err(Error::Format(FormatError::Invalid(
                "data key length for this suite (16, 24 or 32 bytes by suite)",
            )));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        let key = &mut key[..self.data_key_len()];
        match self.kdf() {
            Kdf::Identity => key.copy_from_slice(ikm),
            Kdf::HkdfSha256 | Kdf::HkdfSha384 => hkdf_legacy(self, ikm, message_id, key)?,
            Kdf::CommitSha512 => {
                let expected = commit_derive(self, ikm, message_id, key)?;
                // Constant time: a timing difference would tell an attacker how
                // much of a planted commitment matches.
                if !bool::from(expected.ct_eq(commitment)) {
                    return Err(Error::Authentication);
                }
            }
        }
        Ok(Cipher::new(key))
    }

    /// The commitment key a writer stores in the header, and the cipher.
    pub(crate) fn derive_for_writing(
        self,
        data_key: &PlaintextDataKey,
        message_id: &[u8],
    ) -> Result<(Cipher, [u8; COMMIT_LEN]), Error> {
        if !self.is_committing() {
            return Err(Error::Format(FormatError::Invalid("suite for writing (only 0x0478 and 0x0578 are written)")));
        }
        let ikm = data_key.expose_secret();
        if ikm.len() != 32 {
            return Err(Error::Format(FormatError::Invalid("data key length (32 bytes for 0x0478 and 0x0578)")));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        let commitment = commit_derive(self, ikm, message_id, &mut key[..])?;
        Ok((Cipher::new(&key[..]), *commitment))
    }
}

/// The committing suites' key schedule: one HKDF-SHA512 extract (salt = the
/// message id), expanded twice: the message key (info = suite id ‖
/// `DERIVEKEY`) into `key`, and the returned commitment key (info =
/// `COMMITKEY`) (transitive-requirements.md, "HKDF Commit Key").
fn commit_derive(
    suite: Suite,
    ikm: &[u8],
    message_id: &[u8],
    key: &mut [u8],
) -> Result<Zeroizing<[u8; COMMIT_LEN]>, Error> {
    let hkdf = Hkdf::<Sha512>::new(Some(message_id), ikm);
    let mut info = [0u8; 11];
    info[..2].copy_from_slice(&suite.id().to_be_bytes());
    info[2..].copy_from_slice(b"DERIVEKEY");
    hkdf.expand(&info, key).map_err(|_| Error::Authentication)?;
    let mut commitment = Zeroizing::new([0u8; COMMIT_LEN]);
    hkdf.expand(b"COMMITKEY", &mut commitment[..]).map_err(|_| Error::Authentication)?;
    Ok(commitment)
}

/// HKDF of the non-committing suites: no salt (HKDF's zeros), info = suite
/// id ‖ message id (16 bytes in version 1).
fn hkdf_legacy(suite: Suite, ikm: &[u8], message_id: &[u8], key: &mut [u8]) -> Result<(), Error> {
    let mut info = [0u8; 2 + 16];
    if message_id.len() != 16 {
        return Err(Error::Authentication);
    }
    info[..2].copy_from_slice(&suite.id().to_be_bytes());
    info[2..].copy_from_slice(message_id);
    let expanded = match suite.kdf() {
        Kdf::HkdfSha384 => Hkdf::<Sha384>::new(None, ikm).expand(&info, key),
        _ => Hkdf::<Sha256>::new(None, ikm).expand(&info, key),
    };
    expanded.map_err(|_| Error::Authentication)
}

/// AES-GCM, forward direction only (GCM never runs the block cipher backwards).
type Aes128GcmForward = AesGcm<aes::Aes128Enc, U12>;
type Aes192GcmForward = AesGcm<aes::Aes192Enc, U12>;

/// A message's derived key, expanded. AES-256 runs on the crate's backend
/// (aws-lc-rs with the `aws-lc` feature); the legacy 128- and 192-bit
/// suites on RustCrypto. The expanded keys are wiped on drop (aes-gcm's
/// `zeroize` feature; aws-lc frees its own). Every failure is the one
/// [`Error::Authentication`].
pub(crate) enum Cipher {
    Aes128(Box<Aes128GcmForward>),
    Aes192(Box<Aes192GcmForward>),
    Aes256(Gcm),
}

impl Cipher {
    /// `key` is 16, 24 or 32 bytes long (checked by every caller).
    pub(crate) fn new(key: &[u8]) -> Self {
        match key.len() {
            16 => {
                let mut k = Zeroizing::new([0u8; 16]);
                k.copy_from_slice(key);
                Self::Aes128(Box::new(Aes128GcmForward::new(&(*k).into())))
            }
            24 => {
                let mut k = Zeroizing::new([0u8; 24]);
                k.copy_from_slice(key);
                Self::Aes192(Box::new(Aes192GcmForward::new(&(*k).into())))
            }
            _ => {
                let mut k = Zeroizing::new([0u8; 32]);
                k.copy_from_slice(key);
                Self::Aes256(Gcm::new(&k))
            }
        }
    }

    /// Decrypts `input` into `output` (same length) if `tag` verifies; on
    /// failure `output` is zeroed.
    pub(crate) fn open_to(
        &self,
        nonce: &[u8; IV_LEN],
        aad: &[u8],
        input: &[u8],
        tag: &[u8; TAG_LEN],
        output: &mut [u8],
    ) -> Result<(), Error> {
        let result = match self {
            Self::Aes256(g) => return g.open_to(nonce, aad, input, tag, output),
            Self::Aes128(k) => InOutBuf::new(input, &mut *output)
                .map_err(drop)
                .and_then(|b| k.decrypt_inout_detached(&Nonce::from(*nonce), aad, b, &Tag::from(*tag)).map_err(drop)),
            Self::Aes192(k) => InOutBuf::new(input, &mut *output)
                .map_err(drop)
                .and_then(|b| k.decrypt_inout_detached(&Nonce::from(*nonce), aad, b, &Tag::from(*tag)).map_err(drop)),
        };
        result.map_err(|()| {
            output.fill(0);
            Error::Authentication
        })
    }

    /// Checks a tag over `aad` alone (the header authentication).
    pub(crate) fn verify_aad(&self, nonce: &[u8; IV_LEN], aad: &[u8], tag: &[u8; TAG_LEN]) -> Result<(), Error> {
        self.open_to(nonce, aad, &[], tag, &mut [])
    }

    /// Encrypts `input` into `output` (same length) and returns the tag.
    /// Only the writer calls it, and it writes AES-256 suites only.
    pub(crate) fn seal_to(
        &self,
        nonce: &[u8; IV_LEN],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        match self {
            Self::Aes256(g) => g.seal_to(nonce, aad, input, output),
            Self::Aes128(k) => InOutBuf::new(input, output)
                .map_err(drop)
                .and_then(|b| k.encrypt_inout_detached(&Nonce::from(*nonce), aad, b).map_err(drop))
                .map(Into::into)
                .map_err(|()| Error::Authentication),
            Self::Aes192(k) => InOutBuf::new(input, output)
                .map_err(drop)
                .and_then(|b| k.encrypt_inout_detached(&Nonce::from(*nonce), aad, b).map_err(drop))
                .map(Into::into)
                .map_err(|()| Error::Authentication),
        }
    }
}

impl PlaintextDataKey {
    /// A fresh random key for `suite` from the operating system.
    ///
    /// # Errors
    /// [`Error::Io`] when the system random source fails.
    pub fn generate(suite: Suite) -> Result<Self, Error> {
        let mut key = Self { bytes: [0; 32], len: suite.data_key_len() };
        crate::random::fill(&mut key.bytes[..key.len])?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_properties_match_the_spec_tables() {
        for s in Suite::ALL {
            assert_eq!(Suite::from_id(s.id()), Ok(s));
            assert_eq!(s.is_committing(), s.id() >> 8 >= 4);
            assert_eq!(
                s.data_key_len(),
                match s.id() & 0xff {
                    0x14 => 16,
                    0x46 => 24,
                    _ => 32,
                }
            );
        }
        assert_eq!(Suite::from_id(0x0578).map(Suite::is_signed), Ok(true));
        assert_eq!(Suite::from_id(0x0001), Err(FormatError::UnknownSuite(1)));
    }
}

//! A keyset's keys: their ids and purposes, and what is derived from each
//! data key (the commitment, the record key, the binding context).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::aead::Gcm;
use crate::context::EncryptionContext;
use crate::error::{Error, FormatError, KeyringError, KeyringErrorKind};
use crate::key::{DATA_KEY_LEN, DataKey, EncryptedDataKey};

/// Records one data key may seal (MUST 12.12): 2^32, for a nonce collision
/// chance below 2^-32 with random 96-bit nonces.
pub const MAX_RECORDS_PER_KEY: u64 = 1 << 32;
/// Length of a keyset id.
pub const KEYSET_ID_LEN: usize = 16;
/// Length of a key commitment.
pub const KEY_COMMITMENT_LEN: usize = 32;

/// The encryption context keys that bind a wrapped data key to its entry (MUST 12.6).
pub const CONTEXT_KEYSET: &str = "rekey-keyset";
/// See [`CONTEXT_KEYSET`].
pub const CONTEXT_KEY_ID: &str = "rekey-keyset-key";
/// See [`CONTEXT_KEYSET`].
pub const CONTEXT_PURPOSE: &str = "rekey-keyset-purpose";
/// See [`CONTEXT_KEYSET`].
pub const CONTEXT_COMMITMENT: &str = "rekey-keyset-commitment";

/// The 4-byte id of a key within a keyset, written in every compact record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl std::str::FromStr for KeyId {
    type Err = FormatError;

    /// Eight hex digits, as [`KeyId`]'s `Display` writes them.
    fn from_str(s: &str) -> Result<Self, FormatError> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(FormatError::Invalid("key id (must be 8 lowercase hex digits)"));
        }
        u32::from_str_radix(s, 16).map(KeyId).map_err(|_| FormatError::Invalid("key id"))
    }
}

/// The random 16-byte id of a keyset; every key of the keyset is bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeysetId(pub [u8; KEYSET_ID_LEN]);

impl fmt::Display for KeysetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What a keyset key may be used for; bound into its commitment, so an
/// entry's purpose cannot be changed by editing the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyPurpose {
    /// Seals and opens compact records.
    Records,
    /// Reads legacy CBC records only (an imported blog data key); never primary.
    LegacyCbc,
}

impl KeyPurpose {
    /// The word in the keyset file and the wrapping context.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Records => "records",
            Self::LegacyCbc => "legacy-cbc",
        }
    }

    pub(super) fn byte(self) -> u8 {
        match self {
            Self::Records => 1,
            Self::LegacyCbc => 2,
        }
    }

    pub(super) fn parse(word: &str) -> Option<Self> {
        match word {
            "records" => Some(Self::Records),
            "legacy-cbc" => Some(Self::LegacyCbc),
            _ => None,
        }
    }
}

/// One key of a keyset as stored: its id, purpose, commitment and wrapped
/// copies. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysetKey {
    pub(super) id: KeyId,
    pub(super) purpose: KeyPurpose,
    pub(super) created: u64,
    pub(super) commitment: [u8; KEY_COMMITMENT_LEN],
    pub(super) wraps: Vec<EncryptedDataKey>,
}

impl KeysetKey {
    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// What the key is for.
    pub fn purpose(&self) -> KeyPurpose {
        self.purpose
    }

    /// When it was added, seconds since the Unix epoch.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The commitment to its data key (public).
    pub fn commitment(&self) -> &[u8; KEY_COMMITMENT_LEN] {
        &self.commitment
    }

    /// Its wrapped copies, one per keyring that wrapped it.
    pub fn wraps(&self) -> &[EncryptedDataKey] {
        &self.wraps
    }
}

/// The commitment of MUST 12.5: HMAC-SHA-256 keyed with the data key.
pub(super) fn commitment(
    data_key: &DataKey,
    keyset: &KeysetId,
    id: KeyId,
    purpose: KeyPurpose,
) -> [u8; KEY_COMMITMENT_LEN] {
    hmac(data_key, b"rekey keyset v1 commitment", keyset, id, purpose.byte())
}

pub(super) fn verify_commitment(data_key: &DataKey, keyset: &KeysetId, key: &KeysetKey) -> Result<(), Error> {
    let expected = commitment(data_key, keyset, key.id, key.purpose);
    if bool::from(expected.ct_eq(&key.commitment)) { Ok(()) } else { Err(Error::Authentication) }
}

pub(super) fn check_commitment(data_key: &DataKey, keyset: &KeysetId, key: &KeysetKey) -> Result<(), Error> {
    verify_commitment(data_key, keyset, key)
}

/// The record key of MUST 12.11, expanded once per key when a keyset is unwrapped.
pub(super) fn record_cipher(data_key: &DataKey, keyset: &KeysetId, id: KeyId) -> Gcm {
    let key = Zeroizing::new(hmac(data_key, b"rekey keyset v1 record key", keyset, id, KeyPurpose::Records.byte()));
    Gcm::new(&key)
}

/// HMAC-SHA-256(data key, label || 0x00 || keyset id || key id || purpose).
pub(super) fn hmac(data_key: &DataKey, label: &[u8], keyset: &KeysetId, id: KeyId, purpose: u8) -> [u8; 32] {
    // RFC 2104 with a 32-byte key, which needs no hashing first.
    let mut pad = Zeroizing::new([0u8; 64]);
    pad[..DATA_KEY_LEN].copy_from_slice(data_key.expose_secret());
    pad.iter_mut().for_each(|b| *b ^= 0x36);
    let mut inner = Sha256::new();
    inner.update(pad.as_ref());
    inner.update(label);
    inner.update([0u8]);
    inner.update(keyset.0);
    inner.update(id.0.to_be_bytes());
    inner.update([purpose]);
    let inner = inner.finalize();
    pad.iter_mut().for_each(|b| *b ^= 0x36 ^ 0x5c);
    let mut outer = Sha256::new();
    outer.update(pad.as_ref());
    outer.update(inner);
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer.finalize());
    out
}

/// The encryption context a key's wrapped copies are bound to (MUST 12.6).
pub(super) fn binding_context(
    keyset: &KeysetId,
    id: KeyId,
    purpose: KeyPurpose,
    commitment: &[u8; KEY_COMMITMENT_LEN],
) -> EncryptionContext {
    let mut hex = String::with_capacity(2 * KEY_COMMITMENT_LEN);
    for b in commitment {
        hex.push_str(&format!("{b:02x}"));
    }
    EncryptionContext::from_pairs([
        (CONTEXT_KEYSET, keyset.to_string()),
        (CONTEXT_KEY_ID, id.to_string()),
        (CONTEXT_PURPOSE, purpose.as_str().to_owned()),
        (CONTEXT_COMMITMENT, hex),
    ])
    // Four fixed short pairs are within every limit.
    .unwrap_or_default()
}

impl KeysetKey {
    /// The encryption context this key's wrapped copies are bound to, for
    /// tools that re-wrap them outside [`Keyset::rewrap`](super::Keyset::rewrap).
    pub fn binding_context(&self, keyset: &KeysetId) -> EncryptionContext {
        binding_context(keyset, self.id, self.purpose, &self.commitment)
    }
}

pub(super) fn describe_wraps(wraps: &[EncryptedDataKey]) -> String {
    wraps.iter().map(|w| format!("{}:{}", w.provider_id(), w.key_id())).collect::<Vec<_>>().join(", ")
}

pub(super) fn invalid(message: String) -> Error {
    KeyringError::new(KeyringErrorKind::Invalid, message).into()
}

pub(super) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Most keys a keyset holds (MUST 12.4).
pub const MAX_KEYSET_KEYS: usize = 256;
/// Most wrapped copies of one key (MUST 12.4).
pub const MAX_WRAPS_PER_KEY: usize = 16;

/// Checks that wrapped copies fit the file: a token is printable ASCII
/// without spaces (MUST 12.3), and a key has 1 to 16 copies.
pub(crate) fn check_wraps(wraps: &[EncryptedDataKey]) -> Result<(), FormatError> {
    if wraps.is_empty() || wraps.len() > MAX_WRAPS_PER_KEY {
        return Err(FormatError::Keyset { line: 0, problem: "a key must have 1 to 16 wrapped copies" });
    }
    for w in wraps {
        if !is_token(w.provider_id()) || !is_token(w.key_id()) {
            return Err(FormatError::Keyset {
                line: 0,
                problem: "a keyring's provider id or key id is empty or has spaces or control characters",
            });
        }
    }
    Ok(())
}

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

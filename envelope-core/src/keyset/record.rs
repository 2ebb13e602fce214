//! The compact record (docs/format.md §12.6): a message sealed under a
//! keyset's data key, naming that key by its 4-byte id.
//!
//! ```text
//! magic (1) = 0xC1 | key id (u32) | nonce (12, random) | ciphertext (n) | tag (16)
//! ```

use crate::aead::{Gcm, NONCE_LEN, TAG_LEN};
use crate::codec::Reader;
use crate::context::EncryptionContext;
use crate::error::{Error, FormatError};
use crate::plaintext::Plaintext;

use super::key::KeyId;

/// The first byte of every compact record (MUST 12.9). Above 0x7F, so no
/// legacy record with the blog's ASCII IV starts with it; neither does a
/// rekey envelope (`R`) or an AWS Encryption SDK message (`0x01`, `0x02`).
pub const COMPACT_MAGIC: u8 = 0xC1;
/// Bytes before the nonce: the magic and the key id.
pub const COMPACT_PREFIX_LEN: usize = 5;
/// Bytes a compact record adds to its plaintext: prefix, nonce and tag.
pub const COMPACT_OVERHEAD: usize = COMPACT_PREFIX_LEN + NONCE_LEN + TAG_LEN;
/// The largest plaintext a compact record holds (16 MiB): records are for
/// fields and rows; larger data belongs in an envelope.
pub const MAX_COMPACT_PLAINTEXT: usize = 16 << 20;

/// A parsed compact record: borrowed views of its parts, nothing decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactRecord<'a> {
    prefix: &'a [u8],
    key_id: KeyId,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
    tag: [u8; TAG_LEN],
}

impl<'a> CompactRecord<'a> {
    /// Splits a binary compact record into its fields (MUST 12.9, 12.10).
    ///
    /// # Errors
    /// [`FormatError::Invalid`] when the first byte is not the magic,
    /// [`FormatError::Truncated`] when the record is shorter than its
    /// overhead, [`FormatError::TooLong`] past [`MAX_COMPACT_PLAINTEXT`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        if r.u8("compact record magic")? != COMPACT_MAGIC {
            return Err(FormatError::Invalid("compact record: the first byte is not 0xC1"));
        }
        let key_id = KeyId(r.u32("compact record key id")?);
        let nonce = r.array::<NONCE_LEN>("compact record nonce")?;
        let rest = &bytes[r.position()..];
        let body_len = rest.len().checked_sub(TAG_LEN).ok_or(FormatError::Truncated("compact record tag"))?;
        if body_len > MAX_COMPACT_PLAINTEXT {
            return Err(FormatError::TooLong { field: "compact record", len: body_len, max: MAX_COMPACT_PLAINTEXT });
        }
        let (ciphertext, tag) = rest.split_at(body_len);
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        Ok(Self { prefix: &bytes[..COMPACT_PREFIX_LEN], key_id, nonce, ciphertext, tag: tag_bytes })
    }

    /// The id of the keyset key the record names (not secret, not proof).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The plaintext's length.
    pub fn plaintext_len(&self) -> usize {
        self.ciphertext.len()
    }

    /// Opens the record with `cipher` (the named key's record cipher).
    pub(crate) fn open(&self, cipher: &Gcm, context: &EncryptionContext) -> Result<Plaintext, Error> {
        let aad = record_aad(self.prefix, context);
        let mut out = Plaintext::zeroed(self.ciphertext.len());
        cipher.open_to(&self.nonce, &aad, self.ciphertext, &self.tag, &mut out)?;
        Ok(out)
    }
}

/// Whether `bytes` starts like a compact record: the magic and room for the
/// overhead. A cheap test for `inspect` and `scan`; only [`CompactRecord::parse`]
/// and a keyset tell for sure.
pub fn looks_like_compact_record(bytes: &[u8]) -> bool {
    bytes.len() >= COMPACT_OVERHEAD && bytes.first() == Some(&COMPACT_MAGIC)
}

/// The associated data of MUST 12.11: the record's prefix, then the
/// caller's context in the §4 encoding.
fn record_aad(prefix: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(COMPACT_PREFIX_LEN + 2 + 32 * context.len());
    aad.extend_from_slice(prefix);
    context.encode(&mut aad);
    aad
}

/// Seals `plaintext` under `cipher` with a fresh random nonce (MUST 12.12).
pub(crate) fn seal(
    cipher: &Gcm,
    key_id: KeyId,
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Vec<u8>, Error> {
    if plaintext.len() > MAX_COMPACT_PLAINTEXT {
        return Err(FormatError::TooLong {
            field: "compact record plaintext",
            len: plaintext.len(),
            max: MAX_COMPACT_PLAINTEXT,
        }
        .into());
    }
    let random = crate::random::message_id()?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&random[..NONCE_LEN]);
    seal_with_nonce(cipher, key_id, &nonce, plaintext, context)
}

/// Seals every plaintext of `plaintexts` under `cipher`, each with a fresh
/// random nonce (MUST 12.12), drawing the nonces together (one fork check).
pub(crate) fn seal_many(
    cipher: &Gcm,
    key_id: KeyId,
    plaintexts: &[&[u8]],
    context: &EncryptionContext,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut random = vec![[0u8; 32]; plaintexts.len()];
    crate::random::message_ids(&mut random)?;
    let mut out = Vec::with_capacity(plaintexts.len());
    for (plaintext, random) in plaintexts.iter().zip(&random) {
        if plaintext.len() > MAX_COMPACT_PLAINTEXT {
            return Err(FormatError::TooLong {
                field: "compact record plaintext",
                len: plaintext.len(),
                max: MAX_COMPACT_PLAINTEXT,
            }
            .into());
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&random[..NONCE_LEN]);
        out.push(seal_with_nonce(cipher, key_id, &nonce, plaintext, context)?);
    }
    Ok(out)
}

/// Seals with a given nonce: for [`seal`] and the known-answer tests only,
/// never public (a caller-chosen nonce is a reuse hazard).
pub(crate) fn seal_with_nonce(
    cipher: &Gcm,
    key_id: KeyId,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; COMPACT_OVERHEAD + plaintext.len()];
    out[0] = COMPACT_MAGIC;
    out[1..COMPACT_PREFIX_LEN].copy_from_slice(&key_id.0.to_be_bytes());
    out[COMPACT_PREFIX_LEN..COMPACT_PREFIX_LEN + NONCE_LEN].copy_from_slice(nonce);
    let aad = record_aad(&out[..COMPACT_PREFIX_LEN], context);
    let body_start = COMPACT_PREFIX_LEN + NONCE_LEN;
    let body_end = body_start + plaintext.len();
    let tag = cipher.seal_to(nonce, &aad, plaintext, &mut out[body_start..body_end])?;
    out[body_end..].copy_from_slice(&tag);
    Ok(out)
}

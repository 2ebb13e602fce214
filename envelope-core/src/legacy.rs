//! The legacy record scheme taught by a widely read blog post
//! (docs/format.md §11): read it so data can be moved off it; write it only
//! to make test fixtures.
//!
//! `record = base64( IV(16) || AES-256-CBC(key, IV, PKCS#7( base64(UTF-8 text) )) )`
//!
//! It has no authentication and the blog reused one IV for every record, so
//! equal texts give equal records. Nothing here should be used for new data.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::aead::Cbc;
use crate::error::{Error, FormatError};
use crate::key::DataKey;

/// Whether the text was base64-encoded before encryption, as the blog did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InnerEncoding {
    /// `PKCS#7(base64(UTF-8 text))`: the blog's code.
    #[default]
    Base64,
    /// `PKCS#7(UTF-8 text)`: variants that dropped the inner layer.
    Raw,
}

/// The largest legacy record accepted, in bytes of text.
pub const MAX_LEGACY_RECORD_LEN: usize = 16 << 20;

/// Decrypts a legacy record to its text.
///
/// Bad padding, bad inner base64 and bad UTF-8 give the same
/// [`Error::Authentication`] (MUST 11.1); a record that is not base64 or too
/// short to hold an IV and a block is a [`FormatError`].
///
/// # Errors
/// As above.
pub fn decrypt_legacy_record(
    data_key: &DataKey,
    record: &str,
    inner: InnerEncoding,
) -> Result<Zeroizing<String>, Error> {
    let record = record.trim_ascii();
    if record.len() > MAX_LEGACY_RECORD_LEN {
        return Err(
            FormatError::TooLong { field: "legacy record", len: record.len(), max: MAX_LEGACY_RECORD_LEN }.into()
        );
    }
    let raw = STANDARD.decode(record).map_err(|_| FormatError::BadBase64)?;
    if raw.len() < 32 || raw.len() % 16 != 0 {
        return Err(FormatError::Invalid("legacy record length (must be an IV and whole AES blocks)").into());
    }
    let (iv, ciphertext) = raw.split_at(16);
    let mut iv_bytes = [0u8; 16];
    iv_bytes.copy_from_slice(iv);
    let padded_plain = Cbc::decrypt(data_key.expose_secret(), &iv_bytes, ciphertext)?;
    let text_bytes = match inner {
        InnerEncoding::Base64 => Zeroizing::new(STANDARD.decode(&padded_plain[..]).map_err(|_| Error::Authentication)?),
        InnerEncoding::Raw => padded_plain,
    };
    let text = std::str::from_utf8(&text_bytes).map_err(|_| Error::Authentication)?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Writes a legacy record. **For test fixtures only** (MUST 11.2): the
/// scheme is unauthenticated, and callers that pass a fixed IV reproduce the
/// blog's IV reuse.
pub fn encrypt_legacy_record_for_fixtures(
    data_key: &DataKey,
    iv: &[u8; 16],
    text: &str,
    inner: InnerEncoding,
) -> String {
    let inner_bytes = match inner {
        InnerEncoding::Base64 => STANDARD.encode(text.as_bytes()).into_bytes(),
        InnerEncoding::Raw => text.as_bytes().to_vec(),
    };
    let mut raw = iv.to_vec();
    raw.extend_from_slice(&Cbc::encrypt_for_fixtures(data_key.expose_secret(), iv, &inner_bytes));
    STANDARD.encode(raw)
}

/// Whether `text` could be a legacy record: base64 of an IV and at least one
/// whole block. Only a hint: there is no magic to check.
pub fn looks_like_legacy_record(text: &str) -> bool {
    let text = text.trim_ascii();
    text.len() >= 44
        && text.len().is_multiple_of(4)
        && STANDARD.decode(text).is_ok_and(|raw| raw.len() >= 32 && raw.len() % 16 == 0)
}

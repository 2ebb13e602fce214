//! Undo records' pieces: key lists, hashes, base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::engine::error::{Error, ErrorKind};
use crate::engine::format;
use envelope_core::EncryptedDataKey;
use envelope_core::hazmat::{Envelope, ParseOptions};

/// A key list as an undo record: `[provider, key id, base64 blob]` triples, base64.
pub fn key_list(edks: &[EncryptedDataKey]) -> String {
    let list: Vec<serde_json::Value> =
        edks.iter().map(|e| serde_json::json!([e.provider_id(), e.key_id(), b64(e.wrapped())])).collect();
    b64(serde_json::Value::Array(list).to_string().as_bytes())
}

/// Reads a key list written by [`key_list`].
///
/// # Errors
/// A bad-input error when the record is damaged.
pub fn parse_key_list(text: &str) -> Result<Vec<EncryptedDataKey>, Error> {
    let damaged = || Error::new(ErrorKind::BadInput, "the journal holds a damaged undo record");
    let list: Vec<(String, String, String)> = serde_json::from_slice(&unb64(text)?).map_err(|_| damaged())?;
    list.into_iter().map(|(p, k, w)| EncryptedDataKey::new(p, k, unb64(&w)?).map_err(|_| damaged())).collect()
}

/// `item` (a whole envelope, binary or text, or the header of a framed one)
/// with its key list replaced by `edks`, in the same encoding: how a rewrap's
/// undo record rebuilds the original.
pub fn with_key_list(item: &[u8], edks: &[EncryptedDataKey]) -> Option<Vec<u8>> {
    let encoding = format::encoding_of(item);
    let bytes = encoding.decode(item).ok()?;
    let envelope = Envelope::parse(&bytes, &ParseOptions { max_encrypted_data_keys: 255 }).ok()?;
    Some(encoding.encode(&envelope.with_encrypted_data_keys(edks).ok()?))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    // By table: a `format!` per byte was a tenth of a table run's ordered loop.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// SHA-256 of `bytes`, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Base64 of `bytes`, for undo records.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes base64 from an undo record.
///
/// # Errors
/// A bad-input error when it is not base64.
pub fn unb64(text: &str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(text).map_err(|_| Error::new(ErrorKind::BadInput, "the journal holds a damaged undo record"))
}

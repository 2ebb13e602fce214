//! Ciphertext formats: what a stored item is, decided in one place.
//!
//! Every format rekey reads is one module here implementing
//! [`CiphertextFormat`], listed once in [`FORMATS`]. Detection runs them in
//! that order, so the order and the ambiguity rules are written once:
//!
//! 1. **rekey envelope** (`RKY\x01`, binary or its base64 text): a magic of
//!    four bytes, then a header that must parse.
//! 2. **compact keyset record** (first byte `0xC1`, binary or base64 text):
//!    before legacy records, because the blog's CBC records start with an
//!    ASCII IV (printable, never `0xC1`); only a random-IV record could, and
//!    those are named with `--items legacy`.
//! 3. **AWS Encryption SDK message** (binary, or its base64 text; see
//!    [`esdk`]): version 1 starts `01 80`, version 2 `02 04 78` or
//!    `02 05 78`. Disjoint from the two magics above, but before legacy
//!    records, because the base64 of a message is also base64 of bytes
//!    that a legacy record could hold. Those two or three bytes are a weak
//!    magic (a random-IV legacy record starts with them once in 2^16), so
//!    a message is claimed only when its whole header parses (version,
//!    suite, context, wrapped keys, content type, frame length); anything
//!    else falls through to the legacy guess.
//! 4. **legacy CBC record** (base64 text of IV ‖ whole blocks): there is no
//!    magic, so this is the last guess and only a hint.
//!
//! Bare KMS ciphertext blobs are opaque (no magic, no structure anyone may
//! rely on): they are never detected, only named by the operator
//! (`--items edk`). The operator's `--items` always overrides detection.

mod base;
mod compact;
mod envelope;
pub mod esdk;
mod legacy;

use envelope_core::hazmat::decode_text;

pub use self::base::{CiphertextFormat, Description, Encoding, FormatId, Migrate};

/// Every detectable format, in detection order (see the module docs).
pub static FORMATS: &[&dyn CiphertextFormat] =
    &[&envelope::EnvelopeFormat, &compact::CompactFormat, &esdk::EsdkFormat, &legacy::LegacyFormat];

/// An item whose format was recognised.
#[derive(Debug)]
pub struct Detected {
    /// The format.
    pub format: FormatId,
    /// How it was stored.
    pub encoding: Encoding,
    /// The decoded bytes (for legacy records: the raw IV ‖ ciphertext).
    pub bytes: Vec<u8>,
    format_impl: &'static dyn CiphertextFormat,
}

impl Detected {
    /// What the item shows without a key.
    pub fn describe(&self) -> Description {
        self.format_impl.describe(&self.bytes)
    }
}

/// How `item` is stored: binary when it starts with a format's binary signature, text otherwise.
pub fn encoding_of(item: &[u8]) -> Encoding {
    if FORMATS.iter().any(|f| f.binary_signature(item)) { Encoding::Binary } else { Encoding::text_of(item) }
}

/// What `item` is, trying [`FORMATS`] in order; `None` when no format claims it.
pub fn detect(item: &[u8]) -> Option<Detected> {
    if let Some(format) = FORMATS.iter().find(|f| f.binary_signature(item)) {
        return Some(Detected {
            format: format.id(),
            encoding: Encoding::Binary,
            bytes: item.to_vec(),
            format_impl: *format,
        });
    }
    let text = std::str::from_utf8(item).ok()?;
    let decoded = decode_text(text).ok()?;
    let format = FORMATS.iter().find(|f| f.recognises(&decoded, Some(text)))?;
    Some(Detected { format: format.id(), encoding: Encoding::text_of(item), bytes: decoded, format_impl: *format })
}

/// The item as `format`, whether it says so or not: the operator's `--items`
/// override. `None` when the item cannot be decoded at all.
pub fn decode_as(item: &[u8], format: FormatId) -> Option<Detected> {
    let format_impl = *FORMATS.iter().find(|f| f.id() == format)?;
    if format_impl.binary_signature(item) {
        return Some(Detected { format, encoding: Encoding::Binary, bytes: item.to_vec(), format_impl });
    }
    let decoded = std::str::from_utf8(item).ok().and_then(|t| decode_text(t).ok())?;
    Some(Detected { format, encoding: Encoding::text_of(item), bytes: decoded, format_impl })
}

#[cfg(test)]
mod tests;

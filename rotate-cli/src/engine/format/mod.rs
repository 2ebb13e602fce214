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
//! 3. **legacy CBC record** (base64 text of IV ‖ whole blocks): there is no
//!    magic, so this is the last guess and only a hint.
//!
//! Bare KMS ciphertext blobs are opaque (no magic, no structure anyone may
//! rely on): they are never detected, only named by the operator
//! (`--items edk`). The operator's `--items` always overrides detection.

mod compact;
mod envelope;
mod legacy;

use std::fmt;

use envelope_core::{decode_text, encode_text};

use super::error::ItemError;

/// The formats rekey reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FormatId {
    /// A rekey envelope (docs/format.md).
    Envelope,
    /// A compact record of a keyset (docs/format.md §12).
    Compact,
    /// The blog's AES-CBC record (unauthenticated).
    Legacy,
    /// A bare KMS ciphertext blob of a data key.
    BareKey,
}

impl fmt::Display for FormatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Envelope => "rekey envelope",
            Self::Compact => "compact keyset record",
            Self::Legacy => "legacy CBC record",
            Self::BareKey => "bare data key",
        })
    }
}

/// How an item was stored, so the new one is stored the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The binary form.
    Binary,
    /// Base64 text; `newline` keeps a trailing newline of a file.
    Text {
        /// The item ended with a newline.
        newline: bool,
    },
}

impl Encoding {
    /// Binary when the item starts with a binary signature of a format, text otherwise.
    pub fn detect(bytes: &[u8]) -> Self {
        if FORMATS.iter().any(|f| f.binary_signature(bytes)) { Self::Binary } else { Self::text_of(bytes) }
    }

    /// The text encoding of `item`, keeping its trailing newline.
    pub fn text_of(item: &[u8]) -> Self {
        Self::Text { newline: item.ends_with(b"\n") }
    }

    /// The decoded bytes of an item.
    ///
    /// # Errors
    /// A bad-input error for text that is not base64.
    pub fn decode(self, bytes: &[u8]) -> Result<Vec<u8>, ItemError> {
        match self {
            Self::Binary => Ok(bytes.to_vec()),
            Self::Text { .. } => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| ItemError::input("the item is neither binary nor base64 text"))?;
                decode_text(text).map_err(|e| ItemError::input(e.to_string()))
            }
        }
    }

    /// The item bytes of decoded `bytes`.
    pub fn encode(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Binary => bytes.to_vec(),
            Self::Text { newline } => {
                let mut text = encode_text(bytes).into_bytes();
                if newline {
                    text.push(b'\n');
                }
                text
            }
        }
    }
}

/// What a format shows of an item without any key: for `scan` and `inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    /// The keys the item names (`provider:key id`): labels, not proof.
    pub keys: Vec<String>,
    /// The item claims the format (its magic) but does not parse.
    pub malformed: bool,
}

/// One ciphertext format: how to recognise it and what it shows without a key.
pub trait CiphertextFormat: Sync {
    /// Which format this is.
    fn id(&self) -> FormatId;

    /// Whether `item`, as stored, is this format's binary form (by its magic).
    fn binary_signature(&self, item: &[u8]) -> bool;

    /// Whether `decoded` bytes (the binary form, or decoded base64 text) are this format.
    /// `text` is the item as text when it is text (legacy records are recognised as text).
    fn recognises(&self, decoded: &[u8], text: Option<&str>) -> bool;

    /// What the item shows without a key.
    fn describe(&self, decoded: &[u8]) -> Description;
}

/// Every detectable format, in detection order (see the module docs).
pub static FORMATS: &[&dyn CiphertextFormat] =
    &[&envelope::EnvelopeFormat, &compact::CompactFormat, &legacy::LegacyFormat];

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

impl fmt::Debug for dyn CiphertextFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id())
    }
}

impl Detected {
    /// What the item shows without a key.
    pub fn describe(&self) -> Description {
        self.format_impl.describe(&self.bytes)
    }
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

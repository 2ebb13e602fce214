//! What every ciphertext format is and implements.

use std::fmt;

use envelope_core::{decode_text, encode_text};

use crate::engine::error::ItemError;

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

impl fmt::Debug for dyn CiphertextFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id())
    }
}

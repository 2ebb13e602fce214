//! What every ciphertext format is and implements.

use std::fmt;

use envelope_core::hazmat::{decode_text, encode_text};

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
    /// An AWS Encryption SDK message (docs/format.md §14).
    Esdk,
}

impl FormatId {
    /// Every format, in the order reports list them.
    pub const ALL: [FormatId; 5] = [Self::Envelope, Self::Legacy, Self::BareKey, Self::Compact, Self::Esdk];

    /// The key of this format's count in `rekey scan --json` (stable: scripts read it).
    pub fn report_key(self) -> &'static str {
        match self {
            Self::Envelope => "envelopes",
            Self::Compact => "compact_records",
            Self::Legacy => "legacy_cbc",
            Self::BareKey => "bare_data_keys",
            Self::Esdk => "esdk_messages",
        }
    }

    /// This format's line in `rekey scan`'s text report, with the next step where there is one.
    pub fn report_label(self) -> &'static str {
        match self {
            Self::Envelope => "envelopes",
            Self::Compact => "compact keyset records (`rekey keyset list` names their keys)",
            Self::Legacy => "legacy CBC records (unauthenticated; move them with `rekey reencrypt --items legacy`)",
            Self::BareKey => "bare data keys",
            Self::Esdk => "AWS Encryption SDK messages (`rekey reencrypt --items esdk` rotates them)",
        }
    }
}

impl fmt::Display for FormatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Envelope => "rekey envelope",
            Self::Compact => "compact keyset record",
            Self::Legacy => "legacy CBC record",
            Self::BareKey => "bare data key",
            Self::Esdk => "AWS Encryption SDK message",
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
    /// The algorithm suite, for formats with several (scan counts items per suite).
    pub suite: Option<String>,
    /// Why the item should move to another suite or format, when it should (scan flags it).
    pub migrate: Option<Migrate>,
}

/// A reason to move items, as scan reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Migrate {
    /// The count's key in `rekey scan --json`.
    pub key: &'static str,
    /// The reason and the command that moves them, for people.
    pub note: &'static str,
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

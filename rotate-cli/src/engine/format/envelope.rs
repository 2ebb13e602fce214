//! rekey envelopes (docs/format.md): binary with the magic, or its base64 text.

use envelope_core::hazmat::{Envelope, MAGIC, ParseOptions};

use super::base::{CiphertextFormat, Description, FormatId};

/// Wrapped keys read when only describing: every key an envelope may hold.
const DESCRIBE_OPTIONS: ParseOptions = ParseOptions { max_encrypted_data_keys: 255 };

pub(super) struct EnvelopeFormat;

impl CiphertextFormat for EnvelopeFormat {
    fn id(&self) -> FormatId {
        FormatId::Envelope
    }

    fn binary_signature(&self, item: &[u8]) -> bool {
        item.starts_with(&MAGIC)
    }

    fn recognises(&self, decoded: &[u8], _text: Option<&str>) -> bool {
        decoded.starts_with(&MAGIC)
    }

    fn describe(&self, decoded: &[u8]) -> Description {
        match Envelope::parse(decoded, &DESCRIBE_OPTIONS) {
            Ok(envelope) => Description {
                keys: envelope
                    .header()
                    .encrypted_data_keys
                    .iter()
                    .map(|e| format!("{}:{}", e.provider_id(), e.key_id()))
                    .collect(),
                malformed: false,
                ..Description::default()
            },
            Err(_) => Description { malformed: true, ..Description::default() },
        }
    }
}

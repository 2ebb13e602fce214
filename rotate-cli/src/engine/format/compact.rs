//! Compact keyset records (docs/format.md §12): first byte `0xC1`, binary or base64 text.

use envelope_core::keyset::{CompactRecord, looks_like_compact_record};

use super::base::{CiphertextFormat, Description, FormatId};

pub(super) struct CompactFormat;

impl CiphertextFormat for CompactFormat {
    fn id(&self) -> FormatId {
        FormatId::Compact
    }

    fn binary_signature(&self, item: &[u8]) -> bool {
        looks_like_compact_record(item)
    }

    fn recognises(&self, decoded: &[u8], _text: Option<&str>) -> bool {
        looks_like_compact_record(decoded)
    }

    fn describe(&self, decoded: &[u8]) -> Description {
        match CompactRecord::parse(decoded) {
            Ok(record) => Description {
                keys: vec![format!("keyset-key:{}", record.key_id())],
                malformed: false,
                ..Description::default()
            },
            Err(_) => Description { malformed: true, ..Description::default() },
        }
    }
}

//! The blog's AES-CBC records: base64 text of IV ‖ whole blocks, no magic,
//! no authentication. Recognised last, and only as a hint.

use envelope_core::legacy::looks_like_legacy_record;

use super::base::{CiphertextFormat, Description, FormatId};

pub(super) struct LegacyFormat;

impl CiphertextFormat for LegacyFormat {
    fn id(&self) -> FormatId {
        FormatId::Legacy
    }

    fn binary_signature(&self, _item: &[u8]) -> bool {
        // Always stored as text.
        false
    }

    fn recognises(&self, _decoded: &[u8], text: Option<&str>) -> bool {
        text.is_some_and(looks_like_legacy_record)
    }

    fn describe(&self, _decoded: &[u8]) -> Description {
        // The data key is held elsewhere (the blog keeps its KMS blob apart).
        Description::default()
    }
}

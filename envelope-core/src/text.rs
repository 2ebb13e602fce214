//! The text form: standard base64 of the binary envelope (MUST 9.1).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::FormatError;

/// Encodes an envelope (or any bytes) in the text form.
pub fn encode_text(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes the text form. Surrounding whitespace (a trailing newline, say)
/// is ignored; anything else that is not canonical base64 is rejected.
///
/// # Errors
/// [`FormatError::BadBase64`], without echoing the input.
pub fn decode_text(text: &str) -> Result<Vec<u8>, FormatError> {
    STANDARD.decode(text.trim_ascii()).map_err(|_| FormatError::BadBase64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_strictness() {
        assert_eq!(decode_text(&encode_text(b"RKY\x01abc")).as_deref(), Ok(&b"RKY\x01abc"[..]));
        assert_eq!(decode_text("UktZAQ==\n").as_deref(), Ok(&b"RKY\x01"[..]));
        for bad in ["UktZAQ", "Ukt ZAQ==", "UktZAR==", "UktZAQ==?", "_-8="] {
            assert_eq!(decode_text(bad), Err(FormatError::BadBase64), "{bad}");
        }
    }
}

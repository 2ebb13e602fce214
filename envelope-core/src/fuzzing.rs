//! Entry points for the fuzz targets in `fuzz/`: each target is one call
//! here, so the harness stays three lines and the logic stays in the crate.
//! Every function must return normally for any input; a panic is a bug.

use crate::context::EncryptionContext;
use crate::envelope::Envelope;
use crate::header::{Header, ParseOptions};
use crate::key::{DataKey, EncryptedDataKey};
use crate::legacy::{InnerEncoding, decrypt_legacy_record};
use crate::stream::StreamDecryptor;

/// The key the targets decrypt with, derived from the message id's first
/// byte so that the committed seeds (the known-answer vectors, whose data key
/// is `[0x11 + i; 32]` and message id `[0xa0 + i; 32]`) really decrypt, and
/// the fuzzer reaches the frame logic behind the commitment check.
fn fuzz_key(message_id: &[u8; 32]) -> DataKey {
    DataKey::from_bytes([message_id[0].wrapping_sub(0x8f); 32])
}

/// Parses a header; if it parses, re-encodes it and checks the bytes match.
pub fn header_round_trip(data: &[u8]) {
    let options = ParseOptions { max_encrypted_data_keys: 255 };
    if let Ok((header, _core_len, header_len)) = Header::parse_prefix(data, &options) {
        let mut again = Vec::new();
        header.encode(&mut again).expect("a parsed header re-encodes");
        assert_eq!(again, &data[..header_len], "re-encoding must reproduce the parsed bytes");
    }
}

/// Parses a whole envelope and tries to open it.
pub fn open_single_shot(data: &[u8]) {
    if let Ok(envelope) = Envelope::parse(data, &ParseOptions::default()) {
        let key = fuzz_key(&envelope.header().message_id);
        let _ = envelope.open(&key);
        let _ = envelope.verify_data_key(&key);
        let edks: Vec<EncryptedDataKey> = envelope.header().encrypted_data_keys.clone();
        let rewrapped = envelope.with_encrypted_data_keys(&edks).expect("parsed keys re-encode");
        assert_eq!(rewrapped, data, "replacing the keys with themselves must reproduce the input");
    }
}

/// Decrypts through the streaming reader.
pub fn open_framed(data: &[u8]) {
    if let Ok(decryptor) = StreamDecryptor::new(data, &ParseOptions::default()) {
        let key = fuzz_key(&decryptor.header().message_id);
        let _ = decryptor.decrypt_to(&key, std::io::sink());
    }
}

/// Decodes the text form and parses the result.
pub fn decode_text(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(bytes) = crate::text::decode_text(text)
    {
        let _ = Envelope::parse(&bytes, &ParseOptions::default());
        assert_eq!(crate::text::decode_text(&crate::text::encode_text(&bytes)).ok(), Some(bytes));
    }
}

/// Decrypts a legacy record both ways.
pub fn legacy_record(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        // The key of the committed legacy fixtures (tests/data/legacy).
        let key = DataKey::try_from_slice(&(0x20u8..0x40).collect::<Vec<u8>>()).expect("32 bytes");
        let _ = decrypt_legacy_record(&key, text, InnerEncoding::Base64);
        let _ = decrypt_legacy_record(&key, text, InnerEncoding::Raw);
        let _ = crate::legacy::looks_like_legacy_record(text);
    }
}

/// Reads an encryption context and checks canonical re-encoding.
pub fn context_round_trip(data: &[u8]) {
    let mut reader = crate::codec::Reader::new(data);
    if let Ok(context) = EncryptionContext::read(&mut reader) {
        let mut again = Vec::new();
        context.encode(&mut again);
        assert_eq!(again, &data[..reader.position()]);
    }
}

/// Parses a compact record and opens it with the key of the first committed
/// known-answer vector (tests/data/keyset_vectors.json), so seeds reach the
/// tag check; then the text form.
pub fn compact_record(data: &[u8]) {
    let key = DataKey::from_bytes([0x30; 32]);
    let _ = crate::keyset::open_with_key(&key, [0x50; 16], data, &EncryptionContext::new());
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(bytes) = crate::text::decode_text(text)
    {
        let _ = crate::keyset::open_with_key(&key, [0x50; 16], &bytes, &EncryptionContext::new());
    }
}

/// Parses a keyset file; what parses must re-encode to the same text.
pub fn keyset_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(keyset) = crate::keyset::Keyset::from_text(text)
    {
        assert_eq!(keyset.to_text(), text, "a parsed keyset must re-encode to its input");
    }
}

/// Parses an AWS Encryption SDK message; if it parses, re-encodes the
/// header and checks the bytes match, then tries to decrypt it.
pub fn esdk_message(data: &[u8]) {
    crate::esdk::fuzz_message(data);
}

/// Reads S3 Encryption Client metadata: the input, split at newlines into
/// `name=value` entries up to the first NUL, then the rest as an
/// instruction file; also replaces the key of that file.
pub fn s3ec_metadata(data: &[u8]) {
    let (entries, file) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let metadata: std::collections::BTreeMap<String, String> = String::from_utf8_lossy(entries)
        .lines()
        .filter_map(|line| line.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let _ = crate::s3ec::parse(&metadata);
    let _ = crate::s3ec::parse_with_instruction_file(&metadata, file);
    let _ = crate::s3ec::replace_instruction_key(file, crate::s3ec::KEY_V3, "AQID");
}

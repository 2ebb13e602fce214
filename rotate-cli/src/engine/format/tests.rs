//! Detection order and ambiguity, written once in `FORMATS`, tested here.

use envelope_core::encode_text;
use envelope_core::keyset::COMPACT_MAGIC;
use envelope_core::legacy::{InnerEncoding, encrypt_legacy_record_for_fixtures};
use envelope_core::{DataKey, EncryptionContext, LocalKey, LocalKeyring, generate_materials, seal};

use super::*;

fn envelope() -> Vec<u8> {
    let keyring = LocalKeyring::new(LocalKey::generate("k").expect("a local key"));
    let context = EncryptionContext::new();
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let materials = runtime.block_on(generate_materials(&[&keyring], &context)).expect("materials");
    seal(&materials, &context, b"hello").expect("seal")
}

#[test]
fn envelopes_binary_and_text() {
    let bytes = envelope();
    let binary = detect(&bytes).expect("binary envelope");
    assert_eq!((binary.format, binary.encoding), (FormatId::Envelope, Encoding::Binary));
    assert_eq!(binary.describe().keys, vec!["rekey-local:k/v1".to_owned()]);
    let mut text = encode_text(&bytes).into_bytes();
    text.push(b'\n');
    let t = detect(&text).expect("text envelope");
    assert_eq!((t.format, t.encoding), (FormatId::Envelope, Encoding::Text { newline: true }));
    assert_eq!(t.bytes, bytes);
    assert_eq!(t.encoding.encode(&t.bytes), text, "the encoding round-trips the item");
}

#[test]
fn a_damaged_envelope_is_still_an_envelope_but_malformed() {
    let mut bytes = envelope();
    bytes.truncate(10);
    let d = detect(&bytes).expect("the magic claims it");
    assert_eq!(d.format, FormatId::Envelope);
    assert!(d.describe().malformed);
}

#[test]
fn compact_records_before_legacy() {
    // A compact record's base64 is also a plausible legacy record (base64 of
    // whole blocks): the compact magic wins, as the module docs say.
    let mut record = vec![COMPACT_MAGIC];
    record.extend_from_slice(&7u32.to_be_bytes());
    record.extend_from_slice(&[0u8; 12 + 15 + 16]);
    assert_eq!(record.len() % 16, 0);
    let text = encode_text(&record);
    assert!(envelope_core::legacy::looks_like_legacy_record(&text), "the ambiguity this order resolves");
    let d = detect(text.as_bytes()).expect("compact");
    assert_eq!(d.format, FormatId::Compact);
    assert_eq!(d.describe().keys, vec!["keyset-key:00000007".to_owned()]);
    assert_eq!(detect(&record).expect("binary").encoding, Encoding::Binary);
}

#[test]
fn legacy_records_are_text_only_and_last() {
    let key = DataKey::from_bytes([7; 32]);
    let text = encrypt_legacy_record_for_fixtures(&key, b"0123456789abcdef", "a card number", InnerEncoding::Base64);
    let d = detect(text.as_bytes()).expect("legacy");
    assert_eq!((d.format, d.encoding), (FormatId::Legacy, Encoding::Text { newline: false }));
    assert!(d.describe().keys.is_empty());
}

#[test]
fn opaque_bytes_are_nothing_but_can_be_named() {
    for item in [&b""[..], b"plain words", &[0xff, 0x00, 0x17][..], b"QUJD"] {
        assert!(detect(item).is_none(), "{item:?} claimed by a format");
    }
    // A bare KMS blob is only ever what the operator says it is.
    assert!(FORMATS.iter().all(|f| f.id() != FormatId::BareKey));
    let named = decode_as(b"QUJD\n", FormatId::Envelope).expect("base64 decodes");
    assert_eq!((named.bytes.as_slice(), named.encoding), (&b"ABC"[..], Encoding::Text { newline: true }));
}

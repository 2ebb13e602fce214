//! Detection order and ambiguity, written once in `FORMATS`, tested here.

use envelope_core::hazmat::encode_text;
use envelope_core::hazmat::{generate_materials, seal};
use envelope_core::keyset::COMPACT_MAGIC;
use envelope_core::legacy::{InnerEncoding, encrypt_legacy_record_for_fixtures};
use envelope_core::{DataKey, EncryptionContext, LocalKey, LocalKeyring};

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

/// The AWS Encryption SDK vectors (made by the Python SDK 3.3.1; their
/// manifest says what each is).
fn esdk_vectors() -> Vec<(String, Vec<u8>, serde_json::Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../envelope-core/tests/data/esdk");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest")).expect("json");
    manifest["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|v| {
            let file = v["file"].as_str().expect("file").to_owned();
            let bytes = std::fs::read(dir.join(&file)).expect("vector");
            (file, bytes, v.clone())
        })
        .collect()
}

#[test]
fn esdk_messages_binary_and_text_with_their_keys_and_suites() {
    let vectors = esdk_vectors();
    assert!(vectors.len() > 100, "the manifest lists every vector");
    for (file, bytes, v) in vectors {
        let d = detect(&bytes).unwrap_or_else(|| panic!("{file}: not detected"));
        assert_eq!((d.format, d.encoding), (FormatId::Esdk, Encoding::Binary), "{file}");
        let description = d.describe();
        let mut names: Vec<String> = v["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| match k.as_str() {
                Some("aes256") => "rekey-kat:wrapping-key-256".to_owned(),
                Some("aes128") => "rekey-kat:wrapping-key-128".to_owned(),
                other => panic!("{file}: unknown key {other:?}"),
            })
            .collect();
        // The SDK writes wrapped keys in its own order.
        let mut keys = description.keys.clone();
        keys.sort();
        names.sort();
        assert_eq!(keys, names, "{file}");
        let suite = v["suite"].as_str().expect("suite");
        let label = description.suite.expect("a suite");
        assert!(label.contains(&format!("({suite})")), "{file}: {label}");
        let committing = suite == "0x0478" || suite == "0x0578";
        assert_eq!(description.migrate.is_some(), !committing, "{file}");
        assert_eq!(label.contains("no key commitment"), !committing, "{file}: {label}");
        assert_eq!(label.contains("unsigned"), !["0x0214", "0x0346", "0x0378", "0x0578"].contains(&suite), "{label}");

        let text = format!("{}\n", encode_text(&bytes)).into_bytes();
        let t = detect(&text).unwrap_or_else(|| panic!("{file}: text not detected"));
        assert_eq!((t.format, t.encoding), (FormatId::Esdk, Encoding::Text { newline: true }), "{file}");
        assert_eq!(t.encoding.encode(&t.bytes), text, "{file}: the encoding round-trips");
    }
}

#[test]
fn esdk_prefix_alone_claims_nothing() {
    // A random-IV legacy record whose IV happens to start like a message.
    let mut record = vec![0x01, 0x80];
    record.extend((0u8..46).map(|i| i.wrapping_mul(37)));
    let text = encode_text(&record);
    assert!(envelope_core::legacy::looks_like_legacy_record(&text));
    assert_eq!(detect(text.as_bytes()).expect("legacy").format, FormatId::Legacy);
    for prefix in [&[0x02, 0x04, 0x78][..], &[0x02, 0x05, 0x78]] {
        let mut record = prefix.to_vec();
        record.resize(48, 0xab);
        assert_eq!(detect(encode_text(&record).as_bytes()).expect("legacy").format, FormatId::Legacy);
        assert!(detect(&record).is_none(), "binary bytes that only start like a message");
    }
    // A message cut inside its header is no message.
    let (_, bytes, _) = esdk_vectors().into_iter().find(|(f, _, _)| f == "0578_frame4096_64.bin").expect("vector");
    assert!(detect(&bytes[..40]).is_none());
}

//! The legacy CBC codec against records made by the blog's own Python code
//! (tests/data/legacy/, from scripts/fixtures/make_legacy_fixtures.py), and
//! its failure modes: one error for every kind of bad record.

use envelope_core::legacy::{
    InnerEncoding, decrypt_legacy_record, encrypt_legacy_record_for_fixtures, looks_like_legacy_record,
};
use envelope_core::{DataKey, Error};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixtures {
    data_key_hex: String,
    iv: String,
    inner_base64: bool,
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    plaintext: String,
    record: String,
    iv_mode: String,
}

fn load(name: &str) -> (DataKey, Fixtures) {
    let path = format!("{}/tests/data/legacy/{name}", env!("CARGO_MANIFEST_DIR"));
    let fixtures: Fixtures = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture file")).expect("json");
    let key = DataKey::try_from_slice(&hex::decode(&fixtures.data_key_hex).expect("hex")).expect("32 bytes");
    (key, fixtures)
}

#[test]
fn records_made_by_the_blogs_python_code_decrypt() {
    for (file, inner) in
        [("blog_records.json", InnerEncoding::Base64), ("blog_records_no_inner_base64.json", InnerEncoding::Raw)]
    {
        let (key, fixtures) = load(file);
        assert_eq!(fixtures.inner_base64, inner == InnerEncoding::Base64);
        assert!(fixtures.records.len() >= 14);
        assert!(fixtures.records.iter().any(|r| r.iv_mode == "random"));
        for r in &fixtures.records {
            let text = decrypt_legacy_record(&key, &r.record, inner)
                .unwrap_or_else(|e| panic!("{file}: {:?}: {e}", r.plaintext));
            assert_eq!(text.as_str(), r.plaintext, "{file}");
            assert!(looks_like_legacy_record(&r.record));
            if r.iv_mode == "fixed" {
                // Our fixture writer reproduces the blog's bytes exactly.
                let iv: [u8; 16] = fixtures.iv.as_bytes().try_into().expect("16 characters");
                assert_eq!(encrypt_legacy_record_for_fixtures(&key, &iv, &r.plaintext, inner), r.record);
            }
        }
    }
}

#[test]
fn the_blogs_own_message_is_88_characters() {
    let (_, fixtures) = load("blog_records.json");
    let blog = fixtures.records.iter().find(|r| r.plaintext == "i want to back to home").expect("the blog's message");
    assert_eq!(blog.record.len(), 88);
}

#[test]
fn bad_padding_bad_inner_base64_and_bad_utf8_are_one_error() {
    let key = DataKey::from_bytes([9; 32]);
    let iv = [b'i'; 16];
    let mut errors = Vec::new();
    // Bad padding: the wrong key almost always gives it.
    let record = encrypt_legacy_record_for_fixtures(&key, &iv, "hello", InnerEncoding::Base64);
    errors.push(
        decrypt_legacy_record(&DataKey::from_bytes([8; 32]), &record, InnerEncoding::Base64).expect_err("wrong key"),
    );
    // Valid padding around text that is not base64.
    let not_b64 = encrypt_legacy_record_for_fixtures(&key, &iv, "%%%%", InnerEncoding::Raw);
    errors.push(decrypt_legacy_record(&key, &not_b64, InnerEncoding::Base64).expect_err("inner base64"));
    // Valid padding and base64 around bytes that are not UTF-8.
    let mut raw = iv.to_vec();
    raw.extend_from_slice(&envelope_core::Cbc::encrypt_for_fixtures(&[9; 32], &iv, b"/w=="));
    use base64::Engine;
    let not_utf8 = base64::engine::general_purpose::STANDARD.encode(raw);
    errors.push(decrypt_legacy_record(&key, &not_utf8, InnerEncoding::Base64).expect_err("utf-8"));
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(errors.iter().all(|e| matches!(e, Error::Authentication)), "{errors:?}");
    assert!(messages.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn malformed_records_are_format_errors() {
    let key = DataKey::from_bytes([9; 32]);
    for bad in ["", "not base64!", "AAAA", "QUFBQUFBQUFBQUFBQUFBQQ==", &"A".repeat(70)] {
        let err = decrypt_legacy_record(&key, bad, InnerEncoding::Base64).expect_err(bad);
        assert!(matches!(err, Error::Format(_)), "{bad:?}: {err:?}");
        assert!(!looks_like_legacy_record(bad) || bad.len() == 70);
    }
}

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
    raw.extend_from_slice(&envelope_core::internals::Cbc::encrypt_for_fixtures(&[9; 32], &iv, b"/w=="));
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

/// A record holding `inner` exactly as the padded plaintext's content.
fn record_of_bytes(key: &[u8; 32], inner: &[u8]) -> String {
    use base64::Engine;
    let iv = [3u8; 16];
    let mut raw = iv.to_vec();
    raw.extend_from_slice(&envelope_core::internals::Cbc::encrypt_for_fixtures(key, &iv, inner));
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// A record whose last block decrypts to `last_block` itself: no valid
/// PKCS#7 padding unless `last_block` happens to end like one.
fn record_with_last_block(key: &[u8; 32], body: &[u8], last_block: [u8; 16]) -> String {
    use base64::Engine;
    let iv = [3u8; 16];
    let mut plain = body.to_vec();
    plain.extend_from_slice(&last_block);
    let mut ciphertext = envelope_core::internals::Cbc::encrypt_for_fixtures(key, &iv, &plain);
    ciphertext.truncate(plain.len()); // drop the block of padding PKCS#7 added
    let mut raw = iv.to_vec();
    raw.extend_from_slice(&ciphertext);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[test]
fn fail_every_kind_of_bad_padding() {
    let key = [5u8; 32];
    let data_key = DataKey::from_bytes(key);
    let mut cases = vec![[b'A'; 16]];
    cases.push({
        let mut b = [b'A'; 16];
        b[15] = 0; // zero is never a padding length
        b
    });
    cases.push([17u8; 16]); // longer than a block
    cases.push({
        let mut b = [3u8; 16];
        b[13] = 4; // 3, 3, then a byte that is not 3
        b
    });
    cases.push({
        let mut b = [16u8; 16];
        b[0] = 15; // a full block of padding with one wrong byte
        b
    });
    for (n, last) in cases.into_iter().enumerate() {
        for inner in [InnerEncoding::Raw, InnerEncoding::Base64] {
            let record = record_with_last_block(&key, b"QUFBQUFBQUFBQUFB", last);
            let err = decrypt_legacy_record(&data_key, &record, inner).expect_err("bad padding");
            assert!(matches!(err, Error::Authentication), "case {n}: {err:?}");
        }
    }
    // And good paddings of every length still decrypt.
    for pad in 1..=16u8 {
        let mut last = [b'A'; 16];
        for b in &mut last[16 - usize::from(pad)..] {
            *b = pad;
        }
        let record = record_with_last_block(&key, b"", last);
        let text = decrypt_legacy_record(&data_key, &record, InnerEncoding::Raw).expect("valid padding");
        assert_eq!(text.len(), 16 - usize::from(pad));
    }
}

#[test]
fn fail_non_canonical_inner_base64() {
    let key = [5u8; 32];
    let data_key = DataKey::from_bytes(key);
    for (inner, ok) in [
        ("QQ==", true),
        ("QR==", false), // trailing bits set
        ("QUE=", true),
        ("QUF=", false),
        ("QUFB", true),
        ("QUF", false),
        ("Q===", false),
        ("QU=B", false),
        ("=QUF", false),
        ("", true),
        ("QUFB QUFB", false),
        ("QUFB\nQUFB", false),
        ("-_-_", false), // the URL-safe alphabet is not the blog's
    ] {
        let record = record_of_bytes(&key, inner.as_bytes());
        let result = decrypt_legacy_record(&data_key, &record, InnerEncoding::Base64);
        assert_eq!(result.is_ok(), ok, "{inner:?}: {result:?}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(600))]

    /// The constant-time checks accept exactly what the ordinary ones
    /// (std's UTF-8, the base64 crate's STANDARD engine) accept.
    #[test]
    fn constant_time_checks_agree_with_the_ordinary_ones(
        bytes in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::any::<u8>(),
                proptest::sample::select(vec![
                    0x80u8, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0x9f, 0xa0, 0x8f, 0x90,
                    b'=', b'A', b'/', b'+', b'z',
                ]),
            ],
            0..40,
        ),
        valid_b64 in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..30),
    ) {
        use base64::Engine;
        let key = [5u8; 32];
        let data_key = DataKey::from_bytes(key);
        let raw = decrypt_legacy_record(&data_key, &record_of_bytes(&key, &bytes), InnerEncoding::Raw);
        match std::str::from_utf8(&bytes) {
            Ok(text) => proptest::prop_assert_eq!(raw.expect("valid UTF-8").to_string(), text),
            Err(_) => proptest::prop_assert!(matches!(raw, Err(Error::Authentication))),
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        for inner in [bytes.clone(), b64.encode(&valid_b64).into_bytes()] {
            let got = decrypt_legacy_record(&data_key, &record_of_bytes(&key, &inner), InnerEncoding::Base64);
            let want = b64.decode(&inner).ok().and_then(|d| String::from_utf8(d).ok());
            match want {
                Some(text) => proptest::prop_assert_eq!(got.expect("valid").to_string(), text),
                None => proptest::prop_assert!(matches!(got, Err(Error::Authentication))),
            }
        }
    }
}

/// The padding oracle by timing: a record with bad padding must cost the
/// same work as one whose padding is good (and whose inner base64 then
/// fails at its very end). Before the constant-time reader, bad padding
/// returned straight after the block decryption, skipping the inner decode.
///
/// Timing only means something in an optimized build: unoptimized, the AES
/// decryption dwarfs everything else.
#[test]
#[cfg_attr(debug_assertions, ignore = "timing: run with `cargo test --release`")]
fn bad_padding_takes_as_long_as_good_padding() {
    let key = [5u8; 32];
    let data_key = DataKey::from_bytes(key);
    let body = vec![b'A'; 256 << 10];
    let bad_padding = record_with_last_block(&key, &body, [b'A'; 16]);
    let mut good_last = [b'A'; 16];
    good_last[14] = b'!'; // not base64: fails only after the padding is accepted
    good_last[15] = 1;
    let good_padding = record_with_last_block(&key, &body, good_last);
    assert_eq!(bad_padding.len(), good_padding.len());

    let time = |record: &str| {
        let start = std::time::Instant::now();
        let result = decrypt_legacy_record(&data_key, record, InnerEncoding::Base64);
        let elapsed = start.elapsed();
        assert!(matches!(result, Err(Error::Authentication)));
        elapsed
    };
    // Interleaved, and the fastest of each: the least noisy estimate of the
    // work itself on a shared machine.
    let (mut bad, mut good) = (std::time::Duration::MAX, std::time::Duration::MAX);
    for _ in 0..9 {
        bad = bad.min(time(&bad_padding));
        good = good.min(time(&good_padding));
    }
    let ratio = good.as_secs_f64() / bad.as_secs_f64();
    assert!((0.8..1.25).contains(&ratio), "good padding {good:?}, bad padding {bad:?}: ratio {ratio:.2}");
}

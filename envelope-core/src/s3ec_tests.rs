use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn complete(status: Status) -> ContentMetadata {
    match status {
        Status::Complete(m) => *m,
        other => panic!("not complete: {other:?}"),
    }
}

/// A V2 object as the Python client writes it with its legacy-compatible settings.
fn v2() -> BTreeMap<String, String> {
    map(&[
        ("x-amz-key-v2", "AQIDBA=="),
        ("x-amz-wrap-alg", "kms+context"),
        ("x-amz-iv", "AAAAAAAAAAAAAAAA"),
        ("x-amz-cek-alg", "AES/GCM/NoPadding"),
        ("x-amz-tag-len", "128"),
        ("x-amz-matdesc", r#"{"tenant": "a", "aws:x-amz-cek-alg": "AES/GCM/NoPadding"}"#),
        ("owner", "someone"),
    ])
}

/// A V3 object as the Python client writes it by default.
fn v3() -> BTreeMap<String, String> {
    map(&[
        ("x-amz-c", "115"),
        ("x-amz-3", "AQIDBA=="),
        ("x-amz-w", "12"),
        ("x-amz-i", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v"),
        ("x-amz-d", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        ("x-amz-t", r#"{"aws:x-amz-cek-alg": "115"}"#),
    ])
}

#[test]
fn v2_kms_context_gives_the_stored_context_as_kms_gets_it() {
    let m = complete(parse(&v2()).expect("parsed"));
    assert_eq!(m.version, FormatVersion::V2);
    assert_eq!(m.wrapping, Wrapping::KmsContext);
    assert_eq!(m.cipher, ContentCipher::AesGcm);
    assert_eq!(m.key_entry, KEY_V2);
    assert_eq!(m.wrapped_key, [1, 2, 3, 4]);
    assert_eq!(m.location, Location::ObjectMetadata);
    let context = m.kms_context().expect("parsed");
    assert_eq!(context, &map(&[("tenant", "a"), (CEK_ALG_CONTEXT_KEY, "AES/GCM/NoPadding")]));
}

#[test]
fn v3_kms_context_comes_from_x_amz_t_and_keeps_commitment() {
    let m = complete(parse(&v3()).expect("parsed"));
    assert_eq!(m.version, FormatVersion::V3);
    assert_eq!(m.wrapping, Wrapping::KmsContext);
    assert_eq!(m.cipher, ContentCipher::AesGcmCommitting);
    assert_eq!(m.key_entry, KEY_V3);
    assert_eq!(m.kms_context().expect("parsed"), &map(&[(CEK_ALG_CONTEXT_KEY, "115")]));
    assert_eq!(m.key_commitment.as_ref().map(Vec::len), Some(32));
    assert_eq!(m.message_id.as_ref().map(Vec::len), Some(48));
}

#[test]
fn v3_raw_wrapping_reads_x_amz_m_and_is_no_kms_context() {
    let mut meta = v3();
    meta.insert("x-amz-w".into(), "02".into());
    meta.insert("x-amz-m".into(), r#"{"name": "local"}"#.into());
    let m = complete(parse(&meta).expect("parsed"));
    assert_eq!(m.wrapping, Wrapping::Raw("AES/GCM".into()));
    assert_eq!(m.stored_context, map(&[("name", "local")]));
    assert!(m.kms_context().is_none());
}

#[test]
fn v1_legacy_kms_is_told_by_its_context_and_is_cbc() {
    let meta = map(&[
        ("x-amz-key", "AQIDBA=="),
        ("x-amz-iv", "AAAAAAAAAAAAAAAAAAAAAA=="),
        ("x-amz-matdesc", r#"{"kms_cmk_id":"arn:aws:kms:us-east-1:1:key/k"}"#),
        ("x-amz-unencrypted-content-length", "5"),
    ]);
    let m = complete(parse(&meta).expect("parsed"));
    assert_eq!(m.version, FormatVersion::V1);
    assert_eq!(m.wrapping, Wrapping::KmsLegacy);
    assert_eq!(m.cipher, ContentCipher::AesCbc);
    assert!(!m.cipher.authenticated());
    assert_eq!(m.kms_context().expect("parsed")[KMS_CMK_ID_CONTEXT_KEY], "arn:aws:kms:us-east-1:1:key/k");
}

#[test]
fn v2_cbc_and_legacy_kms() {
    let mut meta = v2();
    meta.insert("x-amz-wrap-alg".into(), "kms".into());
    meta.insert("x-amz-cek-alg".into(), "AES/CBC/PKCS5Padding".into());
    let m = complete(parse(&meta).expect("parsed"));
    assert_eq!((m.wrapping, m.cipher), (Wrapping::KmsLegacy, ContentCipher::AesCbc));
}

#[test]
fn ordinary_objects_and_instruction_file_objects() {
    assert_eq!(parse(&map(&[("owner", "x")])).expect("parsed"), Status::NotMarked);
    let mut meta = v3();
    for k in ["x-amz-3", "x-amz-w", "x-amz-t"] {
        meta.remove(k);
    }
    assert_eq!(parse(&meta).expect("parsed"), Status::InstructionFile);
}

#[test]
fn mixed_versions_and_bad_values_are_refused() {
    let mut both = v2();
    both.insert("x-amz-3".into(), "AQID".into());
    assert!(parse(&both).expect_err("refused").0.contains("more than one format version"));
    let mut v3_with_matdesc = v3();
    v3_with_matdesc.insert("x-amz-matdesc".into(), "{}".into());
    assert!(parse(&v3_with_matdesc).is_err());
    for (name, value) in [
        ("x-amz-key-v2", "not base64!"),
        ("x-amz-key-v2", ""),
        ("x-amz-matdesc", "[1]"),
        ("x-amz-matdesc", r#"{"a": 1}"#),
        ("x-amz-matdesc", "{"),
        ("x-amz-cek-alg", "115"),
        ("x-amz-cek-alg", "DES"),
    ] {
        let mut meta = v2();
        meta.insert(name.into(), value.into());
        assert!(parse(&meta).is_err(), "{name}={value} accepted");
    }
    for (name, value) in [("x-amz-w", "13"), ("x-amz-c", "AES/GCM/NoPadding"), ("x-amz-d", "%%"), ("x-amz-t", "\"s\"")]
    {
        let mut meta = v3();
        meta.insert(name.into(), value.into());
        assert!(parse(&meta).is_err(), "{name}={value} accepted");
    }
    let mut meta = v3();
    meta.remove("x-amz-i");
    assert!(parse(&meta).expect_err("refused").0.contains("x-amz-i"));
}

fn v3_split() -> (BTreeMap<String, String>, Vec<u8>) {
    let object = map(&[("x-amz-c", "115"), ("x-amz-i", "AAEC"), ("x-amz-d", "AAEC")]);
    let file =
        br#"{"x-amz-3": "AQIDBA==", "x-amz-w": "12", "x-amz-t": "{\"aws:x-amz-cek-alg\": \"115\", \"t\": \"1\"}"}"#;
    (object, file.to_vec())
}

#[test]
fn v3_instruction_file_joins_the_object_content_entries() {
    let (object, file) = v3_split();
    let m = parse_with_instruction_file(&object, &file).expect("parsed");
    assert_eq!((m.version, m.location, m.key_entry), (FormatVersion::V3, Location::InstructionFile, KEY_V3));
    assert_eq!(m.kms_context().expect("parsed"), &map(&[(CEK_ALG_CONTEXT_KEY, "115"), ("t", "1")]));
}

#[test]
fn an_instruction_file_holding_object_only_entries_is_tampered() {
    let (object, _) = v3_split();
    let file = br#"{"x-amz-3": "AQIDBA==", "x-amz-w": "12", "x-amz-d": "AAEC"}"#;
    assert!(parse_with_instruction_file(&object, file).expect_err("refused").0.contains("tampered"));
    // V2 entries swapped in for a V3 object's key: a downgrade.
    let file = br#"{"x-amz-key-v2": "AQIDBA==", "x-amz-wrap-alg": "kms+context", "x-amz-iv": "AAAA", "x-amz-cek-alg": "AES/GCM/NoPadding"}"#;
    assert!(parse_with_instruction_file(&object, file).is_err());
}

#[test]
fn v2_instruction_file_and_key_replacement_keeps_the_rest() {
    let file = br#"{"x-amz-key-v2":"AQIDBA==","x-amz-wrap-alg":"kms+context","x-amz-iv":"AAAA","x-amz-cek-alg":"AES/GCM/NoPadding","x-amz-matdesc":"{}"}"#;
    let m = parse_with_instruction_file(&BTreeMap::new(), file).expect("parsed");
    assert_eq!((m.version, m.location), (FormatVersion::V2, Location::InstructionFile));
    let replaced = replace_instruction_key(file, KEY_V2, "BQYH").expect("parsed");
    let again = parse_with_instruction_file(&BTreeMap::new(), &replaced).expect("parsed");
    assert_eq!(again.wrapped_key, [5, 6, 7]);
    assert_eq!(ContentMetadata { wrapped_key: m.wrapped_key.clone(), ..again }, m);
}

/// From the official Python client's own derivation (`derive_keys`), data
/// key 00..1f, message id 100..127.
#[test]
fn key_commitment_matches_the_official_client() {
    let data_key: Vec<u8> = (0..32).collect();
    let message_id: Vec<u8> = (100..128).collect();
    assert_eq!(
        hex::encode(key_commitment(&data_key, &message_id)),
        "2d59a480d136f5982791c93a93d760ceade5011ccf465dbfc303c597"
    );
    let mut meta = complete(parse(&v3()).expect("parsed"));
    meta.message_id = Some(message_id);
    meta.key_commitment = Some(key_commitment(&data_key, meta.message_id.as_ref().expect("id")).to_vec());
    assert_eq!(meta.commits_to(&data_key), Some(true));
    assert_eq!(meta.commits_to(&[0u8; 32]), Some(false));
    assert_eq!(complete(parse(&v2()).expect("parsed")).commits_to(&data_key), None);
}

#[test]
fn debug_output_holds_no_key_bytes() {
    let m = complete(parse(&v2()).expect("parsed"));
    assert!(!format!("{m:?}").contains("AQIDBA"));
}

proptest! {
    #[test]
    fn hostile_metadata_never_panics(
        entries in proptest::collection::btree_map(
            prop_oneof![
                Just("x-amz-key".to_owned()), Just("x-amz-key-v2".to_owned()), Just("x-amz-3".to_owned()),
                Just("x-amz-wrap-alg".to_owned()), Just("x-amz-cek-alg".to_owned()), Just("x-amz-iv".to_owned()),
                Just("x-amz-matdesc".to_owned()), Just("x-amz-c".to_owned()), Just("x-amz-w".to_owned()),
                Just("x-amz-t".to_owned()), Just("x-amz-m".to_owned()), Just("x-amz-d".to_owned()),
                Just("x-amz-i".to_owned()), ".{0,8}",
            ],
            prop_oneof![Just("12".to_owned()), Just("115".to_owned()), Just("AQID".to_owned()), Just("{}".to_owned()), ".{0,40}"],
            0..10,
        ),
        file in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = parse(&entries);
        let _ = parse_with_instruction_file(&entries, &file);
        let _ = replace_instruction_key(&file, KEY_V2, "AQID");
    }
}

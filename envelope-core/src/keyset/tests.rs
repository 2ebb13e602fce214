//! Unit tests that need the crate's internals: the known-answer vectors of
//! tests/data/keyset_vectors.json, sealed with fixed nonces (which the
//! public API never allows). `REKEY_WRITE_VECTORS=1` rewrites the file.

use serde_json::{Value, json};

use super::handle::seal_with_nonce;
use super::key::{commitment, hmac};
use super::set::keyset_with_key;
use super::*;
use crate::context::EncryptionContext;
use crate::error::Error;
use crate::key::DataKey;
use crate::keyring::Keyring;
use crate::local::{Keystore, LocalKeyring};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keyset_vectors.json");

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    EncryptionContext::from_pairs(pairs.iter().copied()).expect("valid")
}

fn context_json(c: &EncryptionContext) -> Value {
    Value::Object(c.iter().map(|(k, v)| (k.to_owned(), Value::String(v.to_owned()))).collect())
}

fn context_from(v: &Value) -> EncryptionContext {
    let map = v.as_object().expect("context object");
    EncryptionContext::from_pairs(map.iter().map(|(k, v)| (k.clone(), v.as_str().expect("string").to_owned())))
        .expect("valid")
}

struct Case {
    description: &'static str,
    index: u8,
    key_id: u32,
    context: EncryptionContext,
    plaintext: Vec<u8>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            description: "the blog's 22-byte message, empty context: 76 base64 characters",
            index: 0,
            key_id: 0x1a2b_3c4d,
            context: EncryptionContext::new(),
            plaintext: b"i want to back to home".to_vec(),
        },
        Case {
            description: "empty plaintext, two context pairs",
            index: 1,
            key_id: 1,
            context: context(&[("column", "ssn"), ("table", "users")]),
            plaintext: Vec::new(),
        },
        Case {
            description: "64 bytes, key id ffffffff",
            index: 2,
            key_id: 0xffff_ffff,
            context: context(&[("a", "b")]),
            plaintext: (0u8..64).collect(),
        },
    ]
}

fn make_case(c: &Case) -> Value {
    let key = DataKey::from_bytes([0x30 + c.index; 32]);
    let keyset = [0x50 + c.index; 16];
    let nonce = [0x70 + c.index; 12];
    let record = seal_with_nonce(&key, keyset, c.key_id, &nonce, &c.plaintext, &c.context).expect("seal");
    json!({
        "description": c.description,
        "data_key": hex::encode(key.expose_secret()),
        "keyset_id": hex::encode(keyset),
        "key_id": KeyId(c.key_id).to_string(),
        "nonce": hex::encode(nonce),
        "context": context_json(&c.context),
        "plaintext_hex": hex::encode(&c.plaintext),
        "commitment": hex::encode(commitment(&key, &KeysetId(keyset), KeyId(c.key_id), KeyPurpose::Records)),
        "record": crate::text::encode_text(&record),
    })
}

/// The negative vectors, each altering vector 0 and naming the error.
fn make_failures(good: &Value) -> Vec<Value> {
    let record = crate::text::decode_text(good["record"].as_str().expect("record")).expect("base64");
    let mut flipped_tag = record.clone();
    *flipped_tag.last_mut().expect("non-empty") ^= 1;
    let mut other_key_id = record.clone();
    other_key_id[4] ^= 1;
    let mut magic = record.clone();
    magic[0] = 0xC2;
    let mut out = vec![
        json!({"description": "fail_flipped_tag_bit", "record": crate::text::encode_text(&flipped_tag), "context": {}, "error": "authentication"}),
        json!({"description": "fail_other_key_id", "record": crate::text::encode_text(&other_key_id), "context": {}, "error": "authentication"}),
        json!({"description": "fail_wrong_context", "record": good["record"], "context": {"column": "ssn"}, "error": "authentication"}),
        json!({"description": "fail_other_magic", "record": crate::text::encode_text(&magic), "context": {}, "error": "format"}),
        json!({"description": "fail_truncated_to_overhead_less_one", "record": crate::text::encode_text(&record[..COMPACT_OVERHEAD - 1]), "context": {}, "error": "format"}),
    ];
    out.push(json!({"description": "fail_truncated_tag_byte", "record": crate::text::encode_text(&record[..record.len() - 1]), "context": {}, "error": "authentication"}));
    out
}

fn kat_keystore(dir: &std::path::Path) -> Keystore {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let secret = crate::text::encode_text(&[0x60; 32]);
    let path = dir.join("kat.key");
    std::fs::write(&path, format!("rekey-keystore-file v1\nname kat\nversion 1 created 0 {secret}\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    Keystore::new(dir)
}

#[test]
fn known_answer_vectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = LocalKeyring::new(kat_keystore(dir.path()).load("kat").expect("kat key"));
    let keyrings: [&dyn Keyring; 1] = [&keyring];
    let records: Vec<Value> = cases().iter().map(make_case).collect();
    let failures = make_failures(&records[0]);

    if std::env::var_os("REKEY_WRITE_VECTORS").is_some() {
        let data_key = DataKey::from_bytes([0x33; 32]);
        let keyset =
            block_on(keyset_with_key([0x53; 16], 0x5eed_0001, 1_764_000_000, &data_key, &keyrings)).expect("keyset");
        let handle = block_on(keyset.unwrap(&keyrings)).expect("unwrap");
        let file_context = context(&[("app", "kat")]);
        let record = handle.encrypt_text(b"a record under the keyset file", &file_context).expect("seal");
        let file = json!({
            "description": "a keyset file with one records key wrapped by the local key `kat` (version 1, 32 bytes of 0x60), and a record under it",
            "local_key_file": format!("rekey-keystore-file v1\nname kat\nversion 1 created 0 {}\n", crate::text::encode_text(&[0x60; 32])),
            "data_key": hex::encode(data_key.expose_secret()),
            "keyset": keyset.to_text(),
            "context": {"app": "kat"},
            "plaintext": "a record under the keyset file",
            "record": record,
        });
        let all = json!({"records": records, "failures": failures, "keyset_files": [file]});
        std::fs::write(VECTORS, serde_json::to_string_pretty(&all).expect("json") + "\n").expect("write vectors");
    }

    let committed: Value = serde_json::from_str(&std::fs::read_to_string(VECTORS).expect("vectors")).expect("json");
    // Sealing with the committed nonces reproduces the committed bytes.
    assert_eq!(committed["records"], Value::Array(records), "the compact record layout or key schedule changed");
    assert_eq!(committed["failures"], Value::Array(failures));
    // Every committed record opens to its plaintext; every failure fails as named.
    for case in committed["records"].as_array().expect("records") {
        let key = DataKey::try_from_slice(&hex::decode(case["data_key"].as_str().expect("hex")).expect("hex"))
            .expect("32 bytes");
        let keyset: [u8; 16] =
            hex::decode(case["keyset_id"].as_str().expect("hex")).expect("hex").try_into().expect("16");
        let record = crate::text::decode_text(case["record"].as_str().expect("record")).expect("base64");
        let opened = open_with_key(&key, keyset, &record, &context_from(&case["context"])).expect("opens");
        assert_eq!(hex::encode(opened.as_bytes()), case["plaintext_hex"].as_str().expect("hex"));
    }
    let key = DataKey::from_bytes([0x30; 32]);
    for case in committed["failures"].as_array().expect("failures") {
        let record = crate::text::decode_text(case["record"].as_str().expect("record")).expect("base64");
        let result = open_with_key(&key, [0x50; 16], &record, &context_from(&case["context"]));
        let what = case["description"].as_str().expect("description");
        match case["error"].as_str().expect("error") {
            "authentication" => assert!(matches!(result, Err(Error::Authentication)), "{what}: {result:?}"),
            "format" => assert!(matches!(result, Err(Error::Format(_))), "{what}: {result:?}"),
            other => panic!("unknown expected error {other}"),
        }
    }
    for file in committed["keyset_files"].as_array().expect("files") {
        let keyset = Keyset::from_text(file["keyset"].as_str().expect("text")).expect("parses");
        let data_key = DataKey::try_from_slice(&hex::decode(file["data_key"].as_str().expect("hex")).expect("hex"))
            .expect("32 bytes");
        let key = &keyset.keys()[0];
        assert_eq!(key.commitment(), &commitment(&data_key, &keyset.id(), key.id(), KeyPurpose::Records));
        let handle = block_on(keyset.unwrap(&keyrings)).expect("the committed keyset unwraps");
        let plaintext = handle
            .decrypt_text(file["record"].as_str().expect("record"), &context_from(&file["context"]))
            .expect("the committed record opens");
        assert_eq!(plaintext.as_bytes(), file["plaintext"].as_str().expect("text").as_bytes());
    }
}

#[test]
fn hmac_matches_the_reference() {
    // HMAC-SHA-256 written out here against the RFC 4231 test case 2 shape:
    // a 32-byte key needs no hashing, so compare with an independent HMAC.
    use hkdf::hmac::{Hmac, KeyInit, Mac};
    let key = DataKey::from_bytes([7; 32]);
    let ours = hmac(&key, b"label", &KeysetId([1; 16]), KeyId(0x0102_0304), 9);
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[7; 32]).expect("key");
    mac.update(b"label\0");
    mac.update(&[1; 16]);
    mac.update(&[1, 2, 3, 4, 9]);
    assert_eq!(ours.as_slice(), mac.finalize().into_bytes().as_slice());
}

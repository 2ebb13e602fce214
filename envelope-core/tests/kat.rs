//! Known-answer vectors for the envelope format, committed as data in
//! `tests/data/envelope_vectors.json`. A change that alters the bytes an
//! input produces breaks compatibility with stored data, and fails here.
//!
//! Regenerate (only for a deliberate new format version):
//! `REKEY_WRITE_VECTORS=1 cargo test -p envelope-core --test kat`.

use envelope_core::hazmat::{Envelope, Materials, ParseOptions, StreamDecryptor};
use envelope_core::internals::{encrypt_stream_with_message_id, seal_with_message_id};
use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext};
use serde::{Deserialize, Serialize};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/envelope_vectors.json");

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Vector {
    description: String,
    data_key_hex: String,
    message_id_hex: String,
    context: Vec<(String, String)>,
    /// (provider id, key id, wrapped key hex)
    encrypted_data_keys: Vec<(String, String, String)>,
    /// `None` for single-shot.
    frame_len: Option<u32>,
    plaintext_hex: String,
    envelope_hex: String,
}

fn inputs() -> Vec<Vector> {
    let kms_arn = "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555";
    // (description, context, EDK count, frame length, plaintext)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], usize, Option<u32>, Vec<u8>);
    let cases: [Case; 6] = [
        ("single-shot, empty plaintext, empty context", &[], 1, None, vec![]),
        ("single-shot, 64-byte record, one context pair", &[("tenant", "acme")], 1, None, (0..64).collect()),
        ("single-shot, UTF-8 context, two EDKs", &[("purpose", "백업"), ("a", "")], 2, None, b"hello, world".to_vec()),
        ("framed, empty plaintext", &[("k", "v")], 1, Some(16), vec![]),
        ("framed, exact multiple of the frame length", &[], 1, Some(16), (0..48).collect()),
        (
            "framed, partial final frame, three EDKs",
            &[("b", "2"), ("a", "1")],
            3,
            Some(7),
            (0..30).map(|i| i * 3).collect(),
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (description, context, edk_count, frame_len, plaintext))| {
            let seed = u8::try_from(i).expect("few cases");
            let edks = (0..edk_count)
                .map(|j| {
                    let wrapped: Vec<u8> = (0..60u8).map(|b| b ^ seed ^ u8::try_from(j).expect("few")).collect();
                    if j == 1 {
                        ("aws-kms".to_owned(), kms_arn.to_owned(), hex::encode(&wrapped))
                    } else {
                        ("rekey-local".to_owned(), format!("key-{j}/v1"), hex::encode(&wrapped))
                    }
                })
                .collect();
            Vector {
                description: description.to_owned(),
                data_key_hex: hex::encode([0x11 + seed; 32]),
                message_id_hex: hex::encode([0xa0 + seed; 32]),
                context: context.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
                encrypted_data_keys: edks,
                frame_len,
                plaintext_hex: hex::encode(plaintext),
                envelope_hex: String::new(),
            }
        })
        .collect()
}

fn produce(v: &Vector) -> Vec<u8> {
    let data_key = DataKey::try_from_slice(&hex::decode(&v.data_key_hex).expect("hex")).expect("32 bytes");
    let message_id: [u8; 32] = hex::decode(&v.message_id_hex).expect("hex").try_into().expect("32 bytes");
    let context = EncryptionContext::from_pairs(v.context.iter().cloned()).expect("context");
    let encrypted_data_keys = v
        .encrypted_data_keys
        .iter()
        .map(|(p, k, w)| EncryptedDataKey::new(p.clone(), k.clone(), hex::decode(w).expect("hex")).expect("edk"))
        .collect();
    let materials = Materials { data_key, encrypted_data_keys };
    let plaintext = hex::decode(&v.plaintext_hex).expect("hex");
    match v.frame_len {
        None => seal_with_message_id(&materials, &context, &plaintext, message_id).expect("seal"),
        Some(frame_len) => {
            let mut out = Vec::new();
            encrypt_stream_with_message_id(&materials, &context, frame_len, &plaintext[..], &mut out, message_id)
                .expect("encrypt");
            out
        }
    }
}

#[test]
fn envelope_vectors_are_stable() {
    if std::env::var_os("REKEY_WRITE_VECTORS").is_some() {
        let vectors: Vec<Vector> = inputs()
            .into_iter()
            .map(|mut v| {
                v.envelope_hex = hex::encode(produce(&v));
                v
            })
            .collect();
        std::fs::write(PATH, serde_json::to_string_pretty(&vectors).expect("json") + "\n").expect("write vectors");
    }
    let stored: Vec<Vector> =
        serde_json::from_str(&std::fs::read_to_string(PATH).expect("committed vectors")).expect("vectors parse");
    assert_eq!(stored.len(), inputs().len());
    for v in &stored {
        let expected = hex::decode(&v.envelope_hex).expect("hex");
        assert_eq!(hex::encode(produce(v)), v.envelope_hex, "{}: the format changed", v.description);

        // And the stored bytes decrypt to the stored plaintext.
        let data_key = DataKey::try_from_slice(&hex::decode(&v.data_key_hex).expect("hex")).expect("32 bytes");
        let plaintext = hex::decode(&v.plaintext_hex).expect("hex");
        let envelope = Envelope::parse(&expected, &ParseOptions::default()).expect("parse");
        assert_eq!(envelope.open(&data_key).expect("open").as_slice(), plaintext, "{}", v.description);
        let mut streamed = Vec::new();
        StreamDecryptor::new(&expected[..], &ParseOptions::default())
            .expect("header")
            .decrypt_to(&data_key, &mut streamed)
            .expect("stream");
        assert_eq!(streamed, plaintext, "{}", v.description);
    }
}

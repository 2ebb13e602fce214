//! AWS Encryption SDK messages: the vectors the real Python SDK wrote
//! (tests/data/esdk, scripts/fixtures/make_esdk_vectors.py) decrypt in
//! memory and streamed; our writer's output reads back; and every kind of
//! alteration is refused.

use std::io::Read;
use std::path::PathBuf;

use envelope_core::esdk::{
    DecryptOptions, Encryptor, Message, PlaintextDataKey, RawAesKeyring, StreamDecryptor, Suite,
};
use envelope_core::{EncryptionContext, Error, FormatError};
use serde_json::Value;
use sha2::{Digest, Sha256};

const SIGNING: bool = cfg!(feature = "aws-lc");

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/esdk")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(data_dir().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest is JSON")
}

fn read(file: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(file)).expect("vector file")
}

fn keyring(manifest: &Value, name: &str) -> RawAesKeyring {
    let k = &manifest["wrapping_keys"][name];
    let key = hex::decode(k["key_hex"].as_str().expect("hex")).expect("hex");
    RawAesKeyring::new(k["namespace"].as_str().expect("ns"), k["name"].as_str().expect("name"), &key).expect("keyring")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn suite_of(vector: &Value) -> Suite {
    let id = u16::from_str_radix(vector["suite"].as_str().expect("suite").trim_start_matches("0x"), 16).expect("hex");
    Suite::from_id(id).expect("known suite")
}

/// A reader that hands out at most `chunk` bytes per call.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn legacy_ok() -> DecryptOptions {
    DecryptOptions::allowing_non_committing()
}

/// Parses, unwraps with `keyring` and decrypts in memory.
fn open(bytes: &[u8], keyring: &RawAesKeyring, options: &DecryptOptions) -> Result<Vec<u8>, Error> {
    let message = Message::parse_with(bytes, options)?;
    let key = keyring.unwrap(&message.header())?;
    Ok(message.decrypt(&key)?.to_vec())
}

/// The same through the streaming reader, `chunk` bytes per read.
fn stream(bytes: &[u8], keyring: &RawAesKeyring, options: &DecryptOptions, chunk: usize) -> Result<Vec<u8>, Error> {
    let mut decryptor = StreamDecryptor::new(Chunked { data: bytes, chunk }, options)?;
    let key = keyring.unwrap(&decryptor.header())?;
    let mut out = Vec::new();
    let written = decryptor.decrypt_to(&key, &mut out)?;
    assert_eq!(decryptor.finish()?, written);
    assert_eq!(written, out.len() as u64);
    Ok(out)
}

#[test]
fn every_python_vector_decrypts_in_memory_and_streamed() {
    let manifest = manifest();
    let vectors = manifest["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 100, "the manifest lists every suite and shape");
    let mut seen_suites = std::collections::BTreeSet::new();
    for v in vectors {
        let file = v["file"].as_str().expect("file");
        let bytes = read(file);
        let suite = suite_of(v);
        seen_suites.insert(suite.id());
        let message = Message::parse_with(&bytes, &legacy_ok()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(message.suite(), suite, "{file}");
        assert_eq!(message.version(), if suite.is_committing() { 2 } else { 1 }, "{file}");
        assert_eq!(message.message_id().len(), if suite.is_committing() { 32 } else { 16 }, "{file}");
        assert_eq!(u64::from(message.frame_length()), v["frame_length"].as_u64().expect("frame"), "{file}");
        assert_eq!(message.plaintext_len() as u64, v["plaintext_len"].as_u64().expect("len"), "{file}");
        // The context: the manifest's pairs, plus the public key exactly when signed.
        let expected = v["context"].as_object().expect("context");
        let pairs: Vec<(&str, &str)> = message.encryption_context().collect();
        for (k, val) in expected {
            assert!(pairs.contains(&(k.as_str(), val.as_str().expect("str"))), "{file}: context lacks {k}");
        }
        let extra = usize::from(suite.is_signed());
        assert_eq!(pairs.len(), expected.len() + extra, "{file}");
        let names = v["keys"].as_array().expect("keys");
        assert_eq!(message.wrapped_keys().len(), names.len(), "{file}");
        for name in names {
            let keyring = keyring(&manifest, name.as_str().expect("name"));
            let result = open(&bytes, &keyring, &legacy_ok());
            if suite.is_signed() && !SIGNING {
                assert!(matches!(result, Err(Error::FeatureRequired { feature: "aws-lc", .. })), "{file}: {result:?}");
                continue;
            }
            let plaintext = result.unwrap_or_else(|e| panic!("{file} with {name}: {e}"));
            assert_eq!(sha256_hex(&plaintext), v["plaintext_sha256"].as_str().expect("digest"), "{file}");
            if let Some(hex) = v["plaintext_hex"].as_str() {
                assert_eq!(hex::encode(&plaintext), hex, "{file}");
            }
            let chunks: &[usize] = if bytes.len() > 100_000 { &[4096, 1 << 20] } else { &[1, 7, 4096] };
            for &chunk in chunks {
                let streamed = stream(&bytes, &keyring, &legacy_ok(), chunk).unwrap_or_else(|e| panic!("{file}: {e}"));
                assert!(streamed == plaintext, "{file}: streamed in chunks of {chunk}");
            }
        }
    }
    assert_eq!(seen_suites.len(), 11, "every suite the SDKs write");
}

#[test]
fn negative_vectors_fail_as_the_manifest_says() {
    let manifest = manifest();
    let keyring = keyring(&manifest, "aes256");
    for f in manifest["failures"].as_array().expect("failures") {
        let file = f["file"].as_str().expect("file");
        let bytes = read(file);
        let options =
            if f["allow_non_committing"].as_bool().expect("bool") { legacy_ok() } else { DecryptOptions::default() };
        let source_signed = file.starts_with("fail_0578");
        if source_signed && !SIGNING {
            continue;
        }
        for result in [open(&bytes, &keyring, &options), stream(&bytes, &keyring, &options, 5)] {
            let ok = match (f["expect"].as_str().expect("expect"), &result) {
                ("format", Err(Error::Format(_))) => true,
                ("authentication", Err(Error::Authentication)) => true,
                ("non-committing", Err(Error::NonCommittingSuite(name))) => name.contains("0x0178"),
                _ => false,
            };
            assert!(ok, "{file}: expected {}, got {result:?}", f["expect"]);
        }
    }
}

#[test]
fn legacy_suites_are_refused_by_default_with_a_way_out() {
    let manifest = manifest();
    let keyring = keyring(&manifest, "aes256");
    for v in manifest["vectors"].as_array().expect("vectors") {
        if suite_of(v).is_committing() || v["keys"][0] != "aes256" {
            continue;
        }
        let bytes = read(v["file"].as_str().expect("file"));
        for result in [
            open(&bytes, &keyring, &DecryptOptions::default()),
            stream(&bytes, &keyring, &DecryptOptions::default(), 64),
        ] {
            let Err(e @ Error::NonCommittingSuite(_)) = result else { panic!("{result:?}") };
            assert!(e.to_string().contains("allow_non_committing"), "{e}");
        }
    }
}

fn context() -> EncryptionContext {
    EncryptionContext::from_pairs([("tenant", "acme"), ("purpose", "test")]).expect("context")
}

fn test_keyring() -> RawAesKeyring {
    RawAesKeyring::new("rekey-test", "key-1", &[0x33; 32]).expect("keyring")
}

/// Our writer: returns the message and the data key.
fn write(suite: Suite, frame_len: u32, plaintext: &[u8]) -> (Vec<u8>, PlaintextDataKey) {
    let encryptor = Encryptor::new(suite, &context()).expect("encryptor").with_frame_len(frame_len).expect("frame");
    let key = PlaintextDataKey::generate(suite).expect("random");
    let other = RawAesKeyring::new("rekey-test", "key-2", &[0x44; 16]).expect("keyring");
    let wrapped = vec![
        test_keyring().wrap(&key, encryptor.encryption_context()).expect("wrap"),
        other.wrap(&key, encryptor.encryption_context()).expect("wrap"),
    ];
    (encryptor.encrypt(&key, &wrapped, plaintext).expect("encrypt"), key)
}

fn writable_suites() -> Vec<Suite> {
    let mut suites = vec![Suite::Aes256GcmHkdfSha512Commit];
    if SIGNING {
        suites.push(Suite::Aes256GcmHkdfSha512CommitEcdsaP384);
    }
    suites
}

#[test]
fn our_messages_read_back_every_way() {
    for suite in writable_suites() {
        for frame_len in [1u32, 16, 4096] {
            for len in [0usize, 1, 15, 16, 17, 64, 4096, 4097, 70_000] {
                let plaintext: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).expect("below 251")).collect();
                let (bytes, _) = write(suite, frame_len, &plaintext);
                let message = Message::parse(&bytes).expect("parse");
                assert_eq!((message.version(), message.suite(), message.wrapped_keys().len()), (2, suite, 2));
                assert_eq!(message.frame_length(), frame_len);
                assert_eq!(open(&bytes, &test_keyring(), &DecryptOptions::default()).expect("open"), plaintext);
                let second = RawAesKeyring::new("rekey-test", "key-2", &[0x44; 16]).expect("keyring");
                assert_eq!(open(&bytes, &second, &DecryptOptions::default()).expect("open"), plaintext);
                for chunk in [3, 1 << 16] {
                    let out = stream(&bytes, &test_keyring(), &DecryptOptions::default(), chunk).expect("stream");
                    assert!(out == plaintext, "{suite:?} frame {frame_len} len {len}");
                }
                // The streaming writer writes a message of the same shape.
                let encryptor =
                    Encryptor::new(suite, &context()).expect("encryptor").with_frame_len(frame_len).expect("frame");
                let key = PlaintextDataKey::generate(suite).expect("random");
                let wrapped = vec![test_keyring().wrap(&key, encryptor.encryption_context()).expect("wrap")];
                let mut streamed = Vec::new();
                let n = encryptor
                    .encrypt_stream(&key, &wrapped, Chunked { data: &plaintext, chunk: 5 }, &mut streamed)
                    .expect("encrypt");
                assert_eq!(n, streamed.len() as u64);
                assert_eq!(open(&streamed, &test_keyring(), &DecryptOptions::default()).expect("open"), plaintext);
            }
        }
    }
}

/// Flips every bit position's byte of a 64-byte message in turn: with the
/// right data key in hand (so not even the keyring can be what refuses),
/// every altered message must fail.
#[test]
fn every_flipped_byte_is_refused() {
    for suite in writable_suites() {
        let (bytes, key) = write(suite, 4096, &[0x5a; 64]);
        let message = Message::parse(&bytes).expect("parse");
        assert_eq!(message.decrypt(&key).expect("good").as_bytes(), &[0x5a; 64]);
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut altered = bytes.clone();
                altered[i] ^= bit;
                let result = Message::parse(&altered).and_then(|m| m.decrypt(&key).map(drop));
                assert!(result.is_err(), "{suite:?}: byte {i} flipped ({bit:#x}) was accepted");
                let mut d = match StreamDecryptor::new(altered.as_slice(), &DecryptOptions::default()) {
                    Ok(d) => d,
                    Err(_) => continue,
                };
                let streamed = d.decrypt_to(&key, std::io::sink()).and_then(|_| d.finish());
                assert!(streamed.is_err(), "{suite:?}: byte {i} flipped was accepted by the stream");
            }
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    for suite in writable_suites() {
        let (bytes, key) = write(suite, 16, &[0x5a; 64]);
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            assert!(Message::parse(cut).is_err(), "{suite:?}: cut at {len} parsed");
            let streamed = StreamDecryptor::new(cut, &DecryptOptions::default()).and_then(|mut d| {
                d.decrypt_to(&key, std::io::sink())?;
                d.finish()
            });
            assert!(streamed.is_err(), "{suite:?}: cut at {len} streamed");
        }
    }
}

/// Frame boundaries of a message written with 16-byte frames: header, then
/// frames of 4 + 12 + 16 + 16 bytes.
fn frame_at(bytes: &[u8], i: usize) -> std::ops::Range<usize> {
    let header_len = Message::parse(bytes).expect("parse").header().len();
    let start = header_len + i * 48;
    start..start + 48
}

#[test]
fn swapped_frames_are_refused() {
    let (bytes, key) = write(Suite::Aes256GcmHkdfSha512Commit, 16, &[0x11; 64]);
    let (a, b) = (frame_at(&bytes, 0), frame_at(&bytes, 1));
    let mut swapped = bytes.clone();
    swapped[a.clone()].copy_from_slice(&bytes[b.clone()]);
    swapped[b.clone()].copy_from_slice(&bytes[a.clone()]);
    assert!(matches!(Message::parse(&swapped), Err(Error::Format(_))));
    // The sequence numbers put back: the frames' AAD still binds them.
    swapped[a.start..a.start + 4].copy_from_slice(&1u32.to_be_bytes());
    swapped[b.start..b.start + 4].copy_from_slice(&2u32.to_be_bytes());
    let message = Message::parse(&swapped).expect("well formed");
    assert!(matches!(message.decrypt(&key), Err(Error::Authentication)));
    // A frame dropped, the later ones renumbered: refused too.
    let mut dropped = bytes[..a.end].to_vec();
    dropped.extend_from_slice(&bytes[b.end..]);
    for seq in 2u32..6 {
        let at = a.end + (seq as usize - 2) * 48;
        if dropped[at..at + 4] != [0xff; 4] {
            dropped[at..at + 4].copy_from_slice(&seq.to_be_bytes());
        } else {
            dropped[at + 4..at + 8].copy_from_slice(&seq.to_be_bytes());
            break;
        }
    }
    let result = Message::parse(&dropped).and_then(|m| m.decrypt(&key).map(drop));
    assert!(result.is_err(), "{result:?}");
}

#[test]
fn a_changed_context_is_refused() {
    let (bytes, key) = write(Suite::Aes256GcmHkdfSha512Commit, 4096, b"pay 100 to alice");
    let at = bytes.windows(4).position(|w| w == b"acme").expect("context value");
    let mut altered = bytes.clone();
    altered[at..at + 4].copy_from_slice(b"evil");
    let message = Message::parse(&altered).expect("still well formed");
    assert_eq!(message.header().context_value("tenant"), Some("evil"));
    assert!(matches!(message.decrypt(&key), Err(Error::Authentication)));
    // The keyring refuses first: the wrapped key is bound to the context.
    assert!(matches!(test_keyring().unwrap(&message.header()), Err(Error::Keyring(_))));
}

#[test]
fn a_signature_from_another_message_is_refused() {
    if !SIGNING {
        return;
    }
    let suite = Suite::Aes256GcmHkdfSha512CommitEcdsaP384;
    let (a, key) = write(suite, 4096, &[1; 64]);
    let (b, _) = write(suite, 4096, &[1; 64]);
    let footer = |m: &[u8]| {
        let message = Message::parse(m).expect("parse");
        m.len() - (message.header().len() + 4 + 4 + 12 + 4 + 64 + 16)
    };
    let mut spliced = a[..a.len() - footer(&a)].to_vec();
    spliced.extend_from_slice(&b[b.len() - footer(&b)..]);
    let message = Message::parse(&spliced).expect("well formed");
    assert!(matches!(message.decrypt(&key), Err(Error::Authentication)));
    let mut d = StreamDecryptor::new(spliced.as_slice(), &DecryptOptions::default()).expect("header");
    d.decrypt_to(&key, std::io::sink()).expect("frames verify on their own");
    assert!(matches!(d.finish(), Err(Error::Authentication)));
}

#[test]
fn signed_messages_need_the_aws_lc_feature() {
    if SIGNING {
        return;
    }
    let e = Encryptor::new(Suite::Aes256GcmHkdfSha512CommitEcdsaP384, &context()).err().expect("refused");
    assert!(e.to_string().contains("`aws-lc`"), "{e}");
}

#[test]
fn limits_are_enforced_before_allocation() {
    let manifest = manifest();
    let bytes = read("0478_frame4096_64.bin"); // two wrapped keys
    let mut options = DecryptOptions::default();
    options.max_wrapped_keys = 1;
    assert!(matches!(
        Message::parse_with(&bytes, &options),
        Err(Error::Format(FormatError::TooManyEncryptedDataKeys { count: 2, max: 1 }))
    ));
    let big = read("0478_frame65536_65537.bin");
    let mut options = DecryptOptions::default();
    options.max_buffer_len = 4096;
    let keyring = keyring(&manifest, "aes256");
    assert!(matches!(stream(&big, &keyring, &options, 4096), Err(Error::Format(FormatError::TooLong { .. }))));
    // A header claiming more than the input holds fails cleanly.
    assert!(matches!(Message::parse(&[2, 4, 0x78]), Err(Error::Format(FormatError::Truncated(_)))));
    assert!(matches!(Message::parse(&[]), Err(Error::Format(FormatError::Truncated(_)))));
}

#[test]
fn a_wrong_data_key_is_one_opaque_error() {
    let (bytes, _) = write(Suite::Aes256GcmHkdfSha512Commit, 4096, b"x");
    let message = Message::parse(&bytes).expect("parse");
    let wrong = PlaintextDataKey::from_slice(&[9; 32]).expect("key");
    assert!(matches!(message.decrypt(&wrong), Err(Error::Authentication)));
    let short = PlaintextDataKey::from_slice(&[9; 16]).expect("key");
    assert!(matches!(message.decrypt(&short), Err(Error::Format(_))));
}

/// Our writer's messages, read by the real Python SDK and CLI under the
/// strictest policy (scripts/interop/esdk_read.py).
#[test]
#[ignore = "needs the Python AWS Encryption SDK: bash scripts/test.sh"]
fn python_sdk_and_cli_read_our_messages() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "no {}: python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt",
        python.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = [("key-1", [0x33u8; 32].to_vec()), ("key-2", [0x44u8; 16].to_vec())];
    let keyrings: Vec<RawAesKeyring> =
        keys.iter().map(|(name, key)| RawAesKeyring::new("rekey-test", *name, key).expect("keyring")).collect();
    let mut messages = Vec::new();
    for suite in writable_suites() {
        for (frame_len, len) in
            [(4096u32, 0usize), (4096, 1), (4096, 64), (4096, 4096), (128, 4097), (1, 33), (65536, 200_000)]
        {
            let plaintext: Vec<u8> = (0..len).map(|i| u8::try_from(i % 253).expect("below 253")).collect();
            let encryptor =
                Encryptor::new(suite, &context()).expect("encryptor").with_frame_len(frame_len).expect("frame");
            let key = PlaintextDataKey::generate(suite).expect("random");
            let wrapped: Vec<_> =
                keyrings.iter().map(|k| k.wrap(&key, encryptor.encryption_context()).expect("wrap")).collect();
            let file = format!("{:04x}_frame{frame_len}_{len}.bin", suite.id());
            let bytes = if len % 2 == 0 {
                encryptor.encrypt(&key, &wrapped, &plaintext).expect("encrypt")
            } else {
                let mut out = Vec::new();
                encryptor.encrypt_stream(&key, &wrapped, plaintext.as_slice(), &mut out).expect("encrypt");
                out
            };
            std::fs::write(dir.path().join(&file), bytes).expect("write");
            messages.push(serde_json::json!({
                "file": file,
                "suite": format!("0x{:04x}", suite.id()),
                "plaintext_sha256": sha256_hex(&plaintext),
                "context": {"tenant": "acme", "purpose": "test"},
            }));
        }
    }
    let keys_json: serde_json::Map<String, Value> = keys
        .iter()
        .map(|(name, key)| {
            (
                (*name).to_owned(),
                serde_json::json!({"namespace": "rekey-test", "name": name, "key_hex": hex::encode(key)}),
            )
        })
        .collect();
    let manifest = serde_json::json!({"keys": keys_json, "messages": messages});
    std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).expect("write manifest");
    let output = std::process::Command::new(&python)
        .arg(root.join("scripts/interop/esdk_read.py"))
        .arg(dir.path())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    eprintln!("{stdout}");
}

/// The fuzz target's checks over every vector, its truncations and single
/// byte changes: no panic, header re-encoding, both readers agreeing.
#[test]
fn fuzz_entry_holds_on_the_vectors_and_their_mutations() {
    let manifest = manifest();
    for v in manifest["vectors"].as_array().expect("vectors") {
        let bytes = read(v["file"].as_str().expect("file"));
        if bytes.len() > 2000 {
            continue;
        }
        envelope_core::fuzzing::esdk_message(&bytes);
        for i in (0..bytes.len()).step_by(7) {
            envelope_core::fuzzing::esdk_message(&bytes[..i]);
            let mut altered = bytes.clone();
            altered[i] ^= 0x04;
            envelope_core::fuzzing::esdk_message(&altered);
        }
    }
}

#[test]
fn a_bad_frame_anywhere_in_a_large_message_releases_nothing() {
    // 3 MiB in 4096-byte frames.
    let plaintext: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11).to_le_bytes()[0]).collect();
    let (bytes, key) = write(Suite::Aes256GcmHkdfSha512Commit, 4096, &plaintext);
    let message = Message::parse(&bytes).expect("parse");
    assert!(message.decrypt(&key).expect("decrypt").as_bytes() == plaintext.as_slice());
    let header_len = message.header().len();
    let frame_size = 4 + 12 + 4096 + 16;
    let frames = plaintext.len() / 4096;
    // A flipped ciphertext byte in the first, a middle and the last full frame.
    for i in [0, frames / 2, frames - 1] {
        let mut bad = bytes.clone();
        bad[header_len + i * frame_size + 100] ^= 1;
        let message = Message::parse(&bad).expect("well formed");
        let mut out = envelope_core::Plaintext::new();
        assert!(matches!(message.decrypt_into(&key, &mut out), Err(Error::Authentication)), "frame {i}");
        assert!(out.as_bytes().is_empty(), "frame {i}: nothing released");
    }
}

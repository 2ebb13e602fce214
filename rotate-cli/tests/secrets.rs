//! Hardening, through the built `rekey` binary: no data key in any log,
//! output, journal or report, even at trace level with the AWS SDK asked to
//! print request bodies; a planted wrapped key does not block decryption;
//! discovery needs an account; plain HTTP is refused off loopback.
//!
//! No database password or RDS IAM token in any log, output or journal
//! either.
//!
//! The log tests need the local KMS server or PostgreSQL (`bash
//! scripts/test.sh`); the others run anywhere. Helpers are local to this file on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use envelope_core::hazmat::{Envelope, ParseOptions, decode_text, encode_text};
use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Keystore, LOCAL_PROVIDER_ID, LocalKeyring};

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn keystore(&self) -> Keystore {
        Keystore::new(self.path("keys"))
    }

    /// Runs rekey with the keystore here, no AWS profile, and `env` on top.
    fn rekey(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(common::Env::bin());
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("REKEY_KEYSTORE", self.path("keys"))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_KMS")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("run rekey")
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.rekey(args, env);
        assert!(out.status.success(), "rekey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
}

/// The data key of an envelope, unwrapped from its local wrapped key with
/// the keystore's key: learnt without asking rekey.
fn local_data_key(keystore: &Keystore, name: &str, envelope: &[u8]) -> DataKey {
    let envelope = Envelope::parse(envelope, &ParseOptions::default()).expect("an envelope");
    let header = envelope.header();
    let local: Vec<EncryptedDataKey> =
        header.encrypted_data_keys.iter().filter(|e| e.provider_id() == LOCAL_PROVIDER_ID).cloned().collect();
    assert!(!local.is_empty(), "the envelope has a local wrapped key");
    let keyring = LocalKeyring::with_allowed(None, vec![keystore.load(name).expect("the local key")]);
    let key = keyring.unwrap_sync(&local, &header.context).expect("unwraps");
    envelope.verify_data_key(&key).expect("it is the envelope's data key");
    key
}

/// Every way a 32-byte key could be printed, whole or its first 12 bytes
/// (a truncated print): hex, base64 (standard and URL-safe, padded or not),
/// each of those again as a list of its byte values, the raw bytes, and
/// Rust's `Debug` of a byte slice or array.
fn encodings(key: &[u8; 32]) -> Vec<(String, Vec<u8>)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut out = Vec::new();
    for part in [&key[..], &key[..12]] {
        let hex: String = part.iter().map(|b| format!("{b:02x}")).collect();
        out.push(("hex".to_owned(), hex.clone().into_bytes()));
        out.push(("HEX".to_owned(), hex.to_uppercase().into_bytes()));
        for (name, engine) in [
            ("base64", STANDARD),
            ("base64 no pad", STANDARD_NO_PAD),
            ("base64url", URL_SAFE),
            ("base64url no pad", URL_SAFE_NO_PAD),
        ] {
            out.push((name.to_owned(), engine.encode(part).into_bytes()));
        }
        out.push(("raw bytes".to_owned(), part.to_vec()));
        // Text encodings printed as the bytes of a request body: the SDK's
        // trace shows a body as `Bytes([123, 34, ...])`, and a KMS request's
        // JSON carries the key in base64.
        let text_forms: Vec<(String, Vec<u8>)> = out.iter().filter(|(n, _)| n != "raw bytes").cloned().collect();
        for (name, text) in text_forms {
            let list: Vec<String> = text.iter().map(u8::to_string).collect();
            out.push((format!("{name} as a byte list"), list.join(", ").into_bytes()));
        }
        let list: Vec<String> = part.iter().map(u8::to_string).collect();
        out.push(("debug list".to_owned(), list.join(", ").into_bytes()));
        out.push(("compact list".to_owned(), list.join(",").into_bytes()));
        let hex_list: Vec<String> = part.iter().map(|b| format!("{b:#04x}")).collect();
        out.push(("hex debug list".to_owned(), hex_list.join(", ").into_bytes()));
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts `key` appears in no encoding in `what`.
fn assert_absent(key: &DataKey, what: &str, bytes: &[u8]) {
    for (encoding, needle) in encodings(key.expose_secret()) {
        assert!(!contains(bytes, &needle), "the data key is in {what}, as {encoding}");
    }
}

/// Every file under `dir` but the keystore (which holds wrapping keys, never data keys).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("ls").flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "keys") {
            continue;
        }
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A KMS key on the local server, made with boto3.
fn create_kms_key(endpoint: &str) -> String {
    let python = std::env::var("REKEY_TEST_PYTHON")
        .unwrap_or_else(|_| panic!("REKEY_TEST_PYTHON is not set: run the tests with `bash scripts/test.sh`"));
    let out = Command::new(python)
        .args(["-c", r#"import boto3; print(boto3.client("kms").create_key()["KeyMetadata"]["Arn"])"#])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("python");
    assert!(out.status.success(), "create_key: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn no_data_key_in_trace_logs_outputs_journals_or_reports() {
    let endpoint = std::env::var("REKEY_TEST_ENDPOINT")
        .unwrap_or_else(|_| panic!("REKEY_TEST_ENDPOINT is not set: run the tests with `bash scripts/test.sh`"));
    let dir = Dir::new();
    let arn = create_kms_key(&endpoint);
    let kms_key = format!("kms:{arn}");
    let loud = [("AWS_ENDPOINT_URL", endpoint.as_str()), ("RUST_LOG", "trace"), ("LOG_SIGNABLE_BODY", "true")];
    dir.ok(&["keys", "create", "k"], &[]);
    std::fs::write(dir.path("plain.txt"), "the quarterly numbers\n").expect("write");

    // A two-key encrypt: the local key generates the data key, KMS Encrypt wraps it.
    let encrypt =
        dir.ok(&["-vv", "encrypt", "--key", "local:k", "--key", &kms_key, "plain.txt", "-o", "two.rky"], &loud);
    let key = local_data_key(&dir.keystore(), "k", &std::fs::read(dir.path("two.rky")).expect("read"));
    assert_absent(&key, "encrypt's stderr", &encrypt.stderr);
    assert_absent(&key, "encrypt's stdout", &encrypt.stdout);

    // A local-to-KMS rewrap: KMS Encrypt again, and a journal and report.
    std::fs::create_dir(dir.path("vault")).expect("mkdir");
    dir.ok(&["encrypt", "--key", "local:k", "plain.txt", "-o", "vault/one.rky"], &[]);
    let rewrapped_key = local_data_key(&dir.keystore(), "k", &std::fs::read(dir.path("vault/one.rky")).expect("read"));
    std::fs::write(dir.path("vault/broken.rky"), b"RKY not really").expect("write");
    let rewrap = dir.rekey(&["-vv", "rewrap", "--to", &kms_key, "--from", "local:k", "--no-progress", "vault"], &loud);
    assert_eq!(rewrap.status.code(), Some(6), "one bad item: {}", String::from_utf8_lossy(&rewrap.stderr));
    let journal_and_report = files(dir.dir.path());
    assert!(journal_and_report.iter().any(|p| p.to_string_lossy().contains("journal")), "{journal_and_report:?}");
    for key in [&key, &rewrapped_key] {
        assert_absent(key, "rewrap's stderr", &rewrap.stderr);
        assert_absent(key, "rewrap's stdout", &rewrap.stdout);
        for file in &journal_and_report {
            assert_absent(key, &file.display().to_string(), &std::fs::read(file).expect("read"));
        }
    }
    let envelope = std::fs::read(dir.path("vault/one.rky")).expect("read");
    let header = Envelope::parse(&envelope, &ParseOptions::default()).expect("parse").header().clone();
    assert!(header.encrypted_data_keys.iter().any(|e| e.key_id() == arn), "the rewrap did happen");
}

/// The envelope of `text` under local key `k`, with a planted wrapped key (of
/// another data key, under the same local key) in front of the real one.
fn planted(dir: &Dir, text: &str) -> Vec<u8> {
    std::fs::write(dir.path("in.txt"), text).expect("write");
    dir.ok(&["encrypt", "--key", "local:k", "in.txt", "-o", "in.rky", "--force"], &[]);
    let sealed = std::fs::read(dir.path("in.rky")).expect("read");
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    let keyring = LocalKeyring::new(dir.keystore().load("k").expect("load"));
    let other = DataKey::generate().expect("random");
    let plant = keyring.wrap_sync(&other, &EncryptionContext::new()).expect("wrap");
    let mut edks = vec![plant];
    edks.extend(envelope.header().encrypted_data_keys.iter().cloned());
    envelope.with_encrypted_data_keys(&edks).expect("re-encode")
}

#[test]
fn a_planted_wrapped_key_first_does_not_block_decryption() {
    let dir = Dir::new();
    dir.ok(&["keys", "create", "k"], &[]);
    // Framed (the binary form streams).
    std::fs::write(dir.path("framed.rky"), planted(&dir, "framed body\n")).expect("write");
    let out = dir.ok(&["decrypt", "framed.rky", "-o", "framed.txt"], &[]);
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(dir.path("framed.txt")).expect("read"), "framed body\n");
    // Text form, single-shot: re-sealed by rekey with --text, then planted.
    std::fs::write(dir.path("one.txt"), "a record").expect("write");
    let text = dir.ok(&["encrypt", "--key", "local:k", "--text", "one.txt"], &[]);
    let bytes = decode_text(std::str::from_utf8(&text.stdout).expect("utf-8").trim()).expect("text form");
    let envelope = Envelope::parse(&bytes, &ParseOptions::default()).expect("parse");
    let keyring = LocalKeyring::new(dir.keystore().load("k").expect("load"));
    let plant = keyring.wrap_sync(&DataKey::generate().expect("random"), &EncryptionContext::new()).expect("wrap");
    let mut edks = vec![plant];
    edks.extend(envelope.header().encrypted_data_keys.iter().cloned());
    let planted_text = encode_text(&envelope.with_encrypted_data_keys(&edks).expect("re-encode"));
    std::fs::write(dir.path("record.txt"), &planted_text).expect("write");
    dir.ok(&["decrypt", "record.txt", "-o", "record.out"], &[]);
    assert_eq!(std::fs::read_to_string(dir.path("record.out")).expect("read"), "a record");
    // --lines: the same planted record twice, and a clean one between.
    let clean = String::from_utf8(text.stdout).expect("utf-8");
    std::fs::write(dir.path("lines.enc"), format!("{planted_text}\n{}\n{planted_text}\n", clean.trim()))
        .expect("write");
    dir.ok(&["decrypt", "--lines", "lines.enc", "-o", "lines.out"], &[]);
    assert_eq!(std::fs::read_to_string(dir.path("lines.out")).expect("read"), "a record\na record\na record\n");
}

#[test]
fn kms_discovery_without_an_account_is_a_usage_error() {
    let dir = Dir::new();
    std::fs::write(dir.path("x.rky"), b"RKY").expect("write");
    let out = dir.rekey(&["decrypt", "--kms-discovery", "x.rky"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--discovery-account"));
    let out = dir.rekey(&["decrypt", "--kms-discovery", "--discovery-account", "12345", "x.rky"], &[]);
    assert_eq!(out.status.code(), Some(2), "a malformed account: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("12 digits"));
}

#[test]
fn a_plain_http_endpoint_off_loopback_is_refused_before_any_request() {
    let dir = Dir::new();
    std::fs::write(dir.path("plain.txt"), "x").expect("write");
    let key = "kms:arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555";
    // TEST-NET-1: nothing answers; a request would wait for the timeout.
    for variable in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS"] {
        let started = Instant::now();
        let out = dir.rekey(
            &["encrypt", "--kms-max-attempts", "1", "--kms-attempt-timeout", "30", "--key", key, "plain.txt"],
            &[(variable, "http://192.0.2.1:9")],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("plain HTTP") && stderr.contains("192.0.2.1"), "{variable}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "refused at once, not after a connection attempt");
        assert!(out.stdout.is_empty());
    }
}

/// A variable scripts/postgres.sh sets.
fn pg_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `bash scripts/test.sh`"))
}

#[test]
#[ignore = "needs the local PostgreSQL servers: bash scripts/test.sh"]
fn no_database_password_or_iam_token_in_trace_logs_outputs_or_journals() {
    let dir = Dir::new();
    dir.ok(&["keys", "create", "new"], &[]);
    let admin = pg_var("REKEY_TEST_PG_URL");
    let port = admin.split_once("127.0.0.1:").and_then(|(_, r)| r.split('/').next()).expect("port").to_owned();
    let password = pg_var("REKEY_TEST_PG_TLS_PASSWORD");
    let ca = pg_var("REKEY_TEST_PG_TLS_CA");
    let trace = [("RUST_LOG", "trace")];
    let table = ["--table", "pg_catalog.pg_am", "--column", "amname", "--id", "oid"];
    let everything = |out: &Output| {
        let mut all = out.stdout.clone();
        all.extend_from_slice(&out.stderr);
        for file in files(dir.dir.path()) {
            all.extend(std::fs::read(file).unwrap_or_default());
        }
        all
    };

    // A password in the URL: a scan that connects, and a run the server refuses after TLS.
    let url = format!("postgres://rekey_tls:{password}@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca}");
    let out = dir.rekey(&[&["scan", &url][..], &table, &["--json"]].concat(), &trace);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!contains(&everything(&out), password.as_bytes()), "the password stays out of logs and outputs");
    let wrong = url.replace("/postgres?", "/no_such_db?");
    let out = dir.rekey(&[&["rewrap", "--to", "local:new", &wrong][..], &table, &["--journal", "j"]].concat(), &trace);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!contains(&everything(&out), password.as_bytes()), "the password stays out of logs and outputs");

    // An IAM token: signed from these credentials, sent as the password, refused by the server.
    let (access, secret, session) =
        ("ASIAEXAMPLEEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzSESSIONTOKENEXAMPLE");
    let iam = format!("postgres://rekey_iam@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}");
    let out = dir.rekey(
        &[&["rewrap", "--to", "local:new", &iam, "--database-iam-auth"][..], &table, &["--journal", "j2"]].concat(),
        &[
            ("RUST_LOG", "trace"),
            ("AWS_ACCESS_KEY_ID", access),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_SESSION_TOKEN", session),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("the IAM token was refused"), "the server saw a token and said no: {stderr}");
    let all = everything(&out);
    for needle in ["X-Amz-Signature", "X-Amz-Security-Token", "Action=connect", secret, session] {
        assert!(!contains(&all, needle.as_bytes()), "{needle} appears in the output or logs");
    }
}

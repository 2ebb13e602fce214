//! The rotation engine against a real KMS API: the local moto server that
//! `bash scripts/test.sh` installs and starts. Fixtures are made by boto3 and
//! by the blog's own Python code, the way the applications rekey migrates
//! made them. Faults moto cannot make (throttling, slow answers) come from a
//! loopback proxy in front of it (scripts/interop/fault_proxy.py).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{endpoint, interop_script, python};
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
    endpoint: String,
}

impl Env {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir"), endpoint: endpoint() }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn py(&self, args: &[&str]) -> String {
        let out = Command::new(python())
            .arg(interop_script("kms_fixtures.py"))
            .args(args)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .output()
            .expect("python");
        assert!(out.status.success(), "kms_fixtures.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
    }

    fn create_key(&self) -> String {
        self.py(&["create-key"])
    }

    fn rekey(&self, args: &[&str]) -> Output {
        self.rekey_via(&self.endpoint, args)
    }

    fn rekey_via(&self, endpoint: &str, args: &[&str]) -> Output {
        Command::new(common::Env::bin())
            .args(args)
            .current_dir(self.dir.path())
            .env("REKEY_KEYSTORE", self.path("keys"))
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .output()
            .expect("run rekey")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.rekey(args);
        assert!(out.status.success(), "rekey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
}

fn summary(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("summary JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn ten_thousand_legacy_records_move_to_kms_and_decrypt_back() {
    let env = Env::new();
    let (old_key, new_key) = (env.create_key(), env.create_key());
    let export = env.path("users.jsonl");
    let edk = env.path("datakey.bin");
    env.py(&["legacy-export", &old_key, "10000", export.to_str().expect("utf-8"), edk.to_str().expect("utf-8")]);

    let out = env.ok(&[
        "reencrypt",
        "--items",
        "legacy",
        "--legacy-edk",
        "datakey.bin",
        "--to",
        &format!("kms:{new_key}"),
        "--context",
        "table=users",
        "--field",
        "/ssn",
        "--json",
        "users.jsonl",
        "-o",
        "users.new.jsonl",
    ]);
    let s = summary(&out);
    assert_eq!(s["reencrypted"], 10000);
    assert_eq!(s["failed"], 0);
    // One Decrypt for the shared legacy data key, one GenerateDataKey for the new ones.
    assert_eq!(s["kms"]["calls"]["Decrypt"], 1, "{s}");
    assert_eq!(s["kms"]["calls"]["GenerateDataKey"], 1, "{s}");

    // Decrypt the new field values back with only the new key allowed.
    let fields: Vec<String> = std::fs::read_to_string(env.path("users.new.jsonl"))
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["ssn"].as_str().expect("string").to_owned())
        .collect();
    std::fs::write(env.path("ssn.enc"), fields.join("\n") + "\n").expect("write");
    env.ok(&[
        "decrypt",
        "--lines",
        "--key",
        &format!("kms:{new_key}"),
        "--context",
        "table=users",
        "ssn.enc",
        "-o",
        "ssn.txt",
    ]);
    let decrypted: Vec<String> =
        std::fs::read_to_string(env.path("ssn.txt")).expect("read").lines().map(str::to_owned).collect();
    let expected: Vec<String> = std::fs::read_to_string(env.path("users.jsonl.expected"))
        .expect("expected")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["ssn"].as_str().expect("string").to_owned())
        .collect();
    assert_eq!(decrypted.len(), 10000);
    assert_eq!(decrypted, expected);
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn two_thousand_envelope_files_rewrapped_from_one_kms_key_to_another() {
    let env = Env::new();
    let (old_key, new_key) = (env.create_key(), env.create_key());
    std::fs::create_dir_all(env.path("vault")).expect("mkdir");
    // Encrypt 2,000 records in one process (--lines) and split them into files.
    let plaintexts: Vec<String> = (0..2000).map(|i| format!("document {i}")).collect();
    std::fs::write(env.path("plain.txt"), plaintexts.join("\n") + "\n").expect("write");
    env.ok(&[
        "encrypt",
        "--lines",
        "--key",
        &format!("kms:{old_key}"),
        "--context",
        "app=vault",
        "plain.txt",
        "-o",
        "all.enc",
    ]);
    for (i, line) in std::fs::read_to_string(env.path("all.enc")).expect("read").lines().enumerate() {
        std::fs::write(env.path(&format!("vault/doc{i:04}.rky")), line).expect("write");
    }

    // Without --from, KMS-wrapped items have no allowed source: one clear error, nothing written.
    let refused = env.rekey(&["rewrap", "--to", &format!("kms:{new_key}"), "--dry-run", "--json", "vault"]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--from"));
    let dry = env.ok(&[
        "rewrap",
        "--to",
        &format!("kms:{new_key}"),
        "--from",
        &format!("kms:{old_key}"),
        "--dry-run",
        "--json",
        "vault",
    ]);
    let d = summary(&dry);
    assert_eq!(d["rewrapped"], 2000);
    assert!(d["iam_actions"].to_string().contains("kms:ReEncryptTo"), "{d}");
    assert!(d["sample"].as_str().is_some_and(|s| s.contains("ok")), "{d}");
    assert!(d["kms_calls"].to_string().contains("1 re-wrap call (one per distinct wrapped key, 2000 items)"), "{d}");

    let out = env.ok(&[
        "rewrap",
        "--to",
        &format!("kms:{new_key}"),
        "--from",
        &format!("kms:{old_key}"),
        "--verify",
        "--json",
        "vault",
    ]);
    let s = summary(&out);
    assert_eq!(s["rewrapped"], 2000);
    // The files share one wrapped data key: one ReEncrypt for all of them,
    // and --verify checks it once too.
    assert_eq!(s["kms"]["calls"]["ReEncrypt"], 1, "{s}");
    assert_eq!(s["kms"]["calls"]["Decrypt"], 1, "{s}");

    for i in [0usize, 1, 999, 1999] {
        let file = format!("vault/doc{i:04}.rky");
        let only_new = env.ok(&["decrypt", "--key", &format!("kms:{new_key}"), "--force", &file]);
        assert_eq!(String::from_utf8_lossy(&only_new.stdout), plaintexts[i]);
        let only_old = env.rekey(&["decrypt", "--key", &format!("kms:{old_key}"), "--force", &file]);
        assert_eq!(only_old.status.code(), Some(3), "the old key is gone from {file}");
    }
    env.ok(&["rollback", "--journal", "vault.rekey-journal"]);
    let back = env.ok(&["decrypt", "--key", &format!("kms:{old_key}"), "--force", "vault/doc0005.rky"]);
    assert_eq!(String::from_utf8_lossy(&back.stdout), plaintexts[5]);
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn bare_data_keys_made_by_boto3_are_rewrapped_with_a_new_context() {
    let env = Env::new();
    let (old_key, new_key) = (env.create_key(), env.create_key());
    env.py(&[
        "bare-edks",
        &old_key,
        "25",
        env.path("keys-dir").to_str().expect("utf-8"),
        r#"{"purpose":"file-backup"}"#,
    ]);
    let out = env.ok(&[
        "rewrap",
        "--items",
        "edk",
        "--to",
        &format!("kms:{new_key}"),
        "--from",
        &format!("kms:{old_key}"),
        "--source-context",
        "purpose=file-backup",
        "--dest-context",
        "purpose=file-backup",
        "--dest-context",
        "rotated=2026-11-23",
        "--verify",
        "--json",
        "keys-dir",
    ]);
    assert_eq!(summary(&out)["rewrapped"], 25);
    let decrypted: BTreeMap<String, String> = serde_json::from_str(&env.py(&[
        "decrypt-edks",
        env.path("keys-dir").to_str().expect("utf-8"),
        r#"{"purpose":"file-backup","rotated":"2026-11-23"}"#,
    ]))
    .expect("json");
    let expected: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(env.path("keys-dir.expected.json")).expect("expected"))
            .expect("json");
    assert_eq!(decrypted, expected, "boto3 decrypts the re-wrapped keys to the same data keys");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn bad_items_are_reported_one_by_one_while_the_rest_complete() {
    let env = Env::new();
    let (a, b, c) = (env.create_key(), env.create_key(), env.create_key());
    std::fs::create_dir_all(env.path("vault")).expect("mkdir");
    std::fs::write(env.path("plain.txt"), "one\ntwo\nthree\n").expect("write");
    env.ok(&["encrypt", "--lines", "--key", &format!("kms:{a}"), "-c", "app=x", "plain.txt", "-o", "good.enc"]);
    for (i, line) in std::fs::read_to_string(env.path("good.enc")).expect("read").lines().enumerate() {
        std::fs::write(env.path(&format!("vault/good{i}.rky")), line).expect("write");
    }
    std::fs::write(env.path("vault/garbage.rky"), "definitely not an envelope").expect("write");
    let good = std::fs::read_to_string(env.path("vault/good0.rky")).expect("read");
    std::fs::write(env.path("vault/truncated.rky"), &good[..good.len() / 2]).expect("write");
    // Wrapped under key c, which --from does not name.
    env.ok(&["encrypt", "--text", "--key", &format!("kms:{c}"), "-c", "app=x", "plain.txt", "-o", "vault/unknown.rky"]);
    // A genuine wrapped key whose header claims another context: KMS refuses it.
    let tampered = env.ok(&["encrypt", "--text", "--key", &format!("kms:{a}"), "-c", "app=y", "plain.txt"]);
    let spliced = splice_context(&String::from_utf8_lossy(&tampered.stdout), &good);
    std::fs::write(env.path("vault/wrong-context.rky"), spliced).expect("write");

    let out = env.rekey(&["rewrap", "--to", &format!("kms:{b}"), "--from", &format!("kms:{a}"), "--json", "vault"]);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    let s = summary(&out);
    assert_eq!(s["rewrapped"], 3);
    assert_eq!(s["failed"], 4);
    let report = std::fs::read_to_string(env.path("vault.rekey-journal.failures.jsonl")).expect("report");
    let codes: BTreeMap<String, String> = report
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .map(|v| {
            let item = v["item"].as_str().expect("item");
            (
                Path::new(item).file_name().expect("name").to_string_lossy().into_owned(),
                v["error_code"].as_str().expect("code").to_owned(),
            )
        })
        .collect();
    assert_eq!(codes["garbage.rky"], "bad_input");
    assert_eq!(codes["truncated.rky"], "bad_input");
    assert_eq!(codes["unknown.rky"], "no_source_key");
    assert_eq!(codes["wrong-context.rky"], "invalid_ciphertext");
}

/// `victim`'s wrapped keys under `donor`'s header core and body: the key is
/// genuine, but KMS will refuse it under the victim's context.
fn splice_context(donor: &str, victim: &str) -> String {
    use envelope_core::hazmat::{Envelope, ParseOptions, decode_text, encode_text};
    let donor = decode_text(donor).expect("donor");
    let victim = decode_text(victim).expect("victim");
    let d = Envelope::parse(&donor, &ParseOptions::default()).expect("parse");
    let v = Envelope::parse(&victim, &ParseOptions::default()).expect("parse");
    encode_text(&d.with_encrypted_data_keys(&v.header().encrypted_data_keys).expect("encode"))
}

/// The fault proxy, killed when dropped.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(interop_script("fault_proxy.py"))
            .arg(endpoint())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the fault proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("port");
        Self { child, url: format!("http://127.0.0.1:{}", line.trim()) }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn throttling_and_slow_answers_are_retried_and_counted() {
    let env = Env::new();
    let (old_key, new_key) = (env.create_key(), env.create_key());
    std::fs::create_dir_all(env.path("vault")).expect("mkdir");
    // Forty files, each with its own data key: forty ReEncrypt calls.
    for i in 0..40 {
        std::fs::write(env.path("p.txt"), format!("secret {i}")).expect("write");
        env.ok(&[
            "encrypt",
            "--text",
            "--key",
            &format!("kms:{old_key}"),
            "p.txt",
            "-o",
            &format!("vault/f{i:02}.rky"),
        ]);
    }
    let proxy = Proxy::start(&["--throttle-every", "3", "--delay-every", "17", "--delay", "3", "--only", "ReEncrypt"]);
    let out = env.rekey_via(
        &proxy.url,
        &[
            "rewrap",
            "--to",
            &format!("kms:{new_key}"),
            "--from",
            &format!("kms:{old_key}"),
            "--kms-attempt-timeout",
            "1",
            "--concurrency",
            "4",
            "--json",
            "vault",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = summary(&out);
    assert_eq!(s["rewrapped"], 40);
    assert!(s["kms"]["throttles"].as_u64().is_some_and(|n| n > 0), "throttles counted: {s}");
    assert!(s["kms"]["retries"].as_u64().is_some_and(|n| n > 0), "retries counted: {s}");
    for i in [0, 17, 39] {
        let out = env.ok(&["decrypt", "--key", &format!("kms:{new_key}"), "--force", &format!("vault/f{i:02}.rky")]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("secret {i}"));
    }

    // Throttled on every request: the run ends, each item reported as throttled.
    let always = Proxy::start(&["--throttle-every", "1", "--only", "ReEncrypt"]);
    let out = env.rekey_via(
        &always.url,
        &[
            "rewrap",
            "--to",
            &format!("kms:{old_key}"),
            "--from",
            &format!("kms:{new_key}"),
            "--kms-max-attempts",
            "2",
            // Throttles are retried until the operation timeout.
            "--kms-operation-timeout",
            "1",
            "--item-attempts",
            "1",
            "--journal",
            "j2",
            "--json",
            "vault",
        ],
    );
    assert_eq!(out.status.code(), Some(6));
    let s = summary(&out);
    assert_eq!(s["failed"], 40);
    let report = std::fs::read_to_string(env.path("j2.failures.jsonl")).expect("report");
    assert!(report.lines().all(|l| l.contains("\"error_code\":\"throttled\"")), "{report}");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn rewrap_only_moves_keys_the_operator_named() {
    use envelope_core::EncryptedDataKey;
    use envelope_core::hazmat::{Envelope, ParseOptions, decode_text, encode_text};
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    std::fs::create_dir_all(env.path("vault")).expect("mkdir");
    std::fs::write(env.path("plain.txt"), "made under a third key\n").expect("write");
    env.ok(&["encrypt", "--text", "--key", &format!("kms:{k3}"), "plain.txt", "-o", "vault/item.rky"]);
    // The attack: the wrapped key's key id rewritten to name the source key K1.
    let text = std::fs::read_to_string(env.path("vault/item.rky")).expect("read");
    let bytes = decode_text(text.trim()).expect("b64");
    let envelope = Envelope::parse(&bytes, &ParseOptions::default()).expect("envelope");
    let planted = &envelope.header().encrypted_data_keys[0];
    let relabelled = EncryptedDataKey::new("aws-kms", k1.clone(), planted.wrapped().to_vec()).expect("edk");
    let forged = encode_text(&envelope.with_encrypted_data_keys(&[relabelled]).expect("encode"));
    std::fs::write(env.path("vault/item.rky"), &forged).expect("write");
    // Honest items under K1 beside it: they move, the forged one does not.
    for i in 0..3 {
        env.ok(&["encrypt", "--text", "--key", &format!("kms:{k1}"), "plain.txt", "-o", &format!("vault/ok{i}.rky")]);
    }

    let out = env.rekey(&["rewrap", "--to", &format!("kms:{k2}"), "--from", &format!("kms:{k1}"), "--json", "vault"]);
    assert_eq!(out.status.code(), Some(6), "refused and reported: {}", String::from_utf8_lossy(&out.stderr));
    let s = summary(&out);
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(3), Some(1)), "{s}");
    assert_eq!(std::fs::read_to_string(env.path("vault/item.rky")).expect("read"), forged, "never re-wrapped");
    let report = std::fs::read_to_string(env.path("vault.rekey-journal.failures.jsonl")).expect("report");
    assert!(report.contains(&k3), "the report names the key KMS really used: {report}");
}

/// Issue 24, item 10: `reencrypt --verify` unwraps each new data key once
/// (rows share one), not once per row, and still decrypts every new item;
/// a dry run says what `--verify` costs and brings into memory, for
/// re-encryptions and for bare (S3 metadata) data keys alike.
#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn verify_unwraps_each_new_data_key_once_and_the_dry_run_says_what_it_costs() {
    let env = Env::new();
    let (old_key, new_key) = (env.create_key(), env.create_key());
    let export = env.path("users.jsonl");
    let edk = env.path("datakey.bin");
    env.py(&["legacy-export", &old_key, "300", export.to_str().expect("utf-8"), edk.to_str().expect("utf-8")]);
    let to = format!("kms:{new_key}");
    let args = [
        "reencrypt",
        "--items",
        "legacy",
        "--legacy-edk",
        "datakey.bin",
        "--to",
        &to,
        "--context",
        "table=users",
        "--field",
        "/ssn",
        "--verify",
        "--json",
        "users.jsonl",
        "-o",
        "users.new.jsonl",
    ];
    let dry = summary(&env.ok(&[&args[..], &["--dry-run"]].concat()));
    let calls = dry["kms_calls"].to_string();
    assert!(calls.contains("to --verify (each new data key is brought into memory"), "{dry}");
    let s = summary(&env.ok(&args));
    assert_eq!(s["reencrypted"], 300, "{s}");
    assert_eq!(s["verified"].as_u64().unwrap_or(0), 0, "{s}");
    // One Decrypt for the legacy data key, one to --verify the one new data key.
    assert_eq!(s["kms"]["calls"]["Decrypt"], 2, "not one per row: {s}");
    assert_eq!(s["kms"]["calls"]["GenerateDataKey"], 1, "{s}");

    // Bare data keys: --verify's Decrypt brings each data key into memory, and the plan says so.
    env.py(&["bare-edks", &old_key, "5", env.path("keys-dir").to_str().expect("utf-8"), r#"{"purpose":"b"}"#]);
    let from = format!("kms:{old_key}");
    let dry = summary(&env.ok(&[
        "rewrap",
        "--items",
        "edk",
        "--to",
        &to,
        "--from",
        &from,
        "--source-context",
        "purpose=b",
        "--verify",
        "--dry-run",
        "--json",
        "keys-dir",
    ]));
    let calls = dry["kms_calls"].to_string();
    assert!(calls.contains("5 unwrap calls under the destination to --verify (kms:Decrypt for a KMS key)"), "{dry}");
    assert!(calls.contains("into this process's memory"), "{dry}");
    assert!(dry["iam_actions"].to_string().contains("brings each new data key into memory"), "{dry}");
}

/// Issue 24, item 11: the dry run's IAM list names kms:Decrypt for the
/// legacy data key's KMS key.
#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn the_dry_run_names_kms_decrypt_for_the_legacy_data_key() {
    let env = Env::new();
    let (old_key, new_key) = (env.create_key(), env.create_key());
    let export = env.path("users.jsonl");
    let edk = env.path("datakey.bin");
    env.py(&["legacy-export", &old_key, "5", export.to_str().expect("utf-8"), edk.to_str().expect("utf-8")]);
    let to = format!("kms:{new_key}");
    let dry = summary(&env.ok(&[
        "reencrypt",
        "--items",
        "legacy",
        "--legacy-edk",
        "datakey.bin",
        "--to",
        &to,
        "--field",
        "/ssn",
        "--dry-run",
        "--json",
        "users.jsonl",
        "-o",
        "users.new.jsonl",
    ]));
    assert!(
        dry["iam_actions"]
            .to_string()
            .contains("kms:Decrypt on the KMS key the legacy data key (--legacy-edk) is under"),
        "{dry}"
    );
}

/// Issue 24, item 7, as reported: bare KMS data keys with a wrong
/// `--source-context` failed one by one (exit 6, a journal, the warning
/// naming ReEncrypt with a key); the preflight now stops the run first and
/// names the context tried.
#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn a_wrong_source_context_on_kms_bare_keys_stops_before_the_journal() {
    let env = Env::new();
    let (old_key, new_key) = (env.create_key(), env.create_key());
    env.py(&["bare-edks", &old_key, "20", env.path("keys-dir").to_str().expect("utf-8"), r#"{"purpose":"backup"}"#]);
    let (to, from) = (format!("kms:{new_key}"), format!("kms:{old_key}"));
    let out = env.rekey(&[
        "rewrap",
        "--items",
        "edk",
        "--to",
        &to,
        "--from",
        &from,
        "--source-context",
        "purpose=backups",
        "keys-dir",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no --from key opens this data key with the context purpose=backups"), "{stderr}");
    assert!(stderr.contains("hint: nothing was written; check --source-context"), "{stderr}");
    assert!(!env.path("keys-dir.rekey-journal").exists());
}

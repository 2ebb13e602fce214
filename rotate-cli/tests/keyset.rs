//! `rekey keyset` through the real binary: keyset files, compact records,
//! rewrap without touching records, the substituted-wrapping attack, legacy
//! import, and (against the local KMS server) 100,000 records whose keyset is
//! re-wrapped with one ReEncrypt per data key.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{Env, endpoint, python};
use sha2::{Digest, Sha256};

fn sha256(path: &Path) -> String {
    hex(&Sha256::digest(std::fs::read(path).expect("read")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lines_file(env: &Env, name: &str, n: usize, prefix: &str) -> String {
    let text: String = (0..n).map(|i| format!("{prefix} {i} 집에 가고 싶어\n")).collect();
    std::fs::write(env.path(name), &text).expect("write");
    text
}

#[test]
fn compact_records_survive_a_local_rewrap_untouched_and_need_only_the_new_key() {
    let env = Env::with_keys(&["k1", "k2"]);
    env.ok(&["keyset", "create", "--key", "local:k1", "app.keyset"]);
    let mode = std::fs::metadata(env.path("app.keyset")).expect("meta");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    let plain = lines_file(&env, "in.txt", 200, "record");
    env.ok(&["keyset", "encrypt", "--keyset", "app.keyset", "--lines", "in.txt", "-o", "a.rec"]);
    env.ok(&["keyset", "rotate", "--key", "local:k1", "app.keyset"]);
    env.ok(&["keyset", "encrypt", "--keyset", "app.keyset", "--lines", "in.txt", "-o", "b.rec"]);
    let first = std::fs::read_to_string(env.path("a.rec")).expect("read");
    assert!(first.lines().all(|l| l.starts_with('w')), "compact records start with 'w' in base64");
    let before = (sha256(&env.path("a.rec")), sha256(&env.path("b.rec")));

    let summary = env.json(&["keyset", "rewrap", "--to", "local:k2", "--from", "local:k1", "--json", "app.keyset"]);
    assert_eq!(summary["rewrapped"].as_array().expect("list").len(), 2, "{summary}");
    assert_eq!(summary["keys"], 2);
    let listed = env.json(&["keyset", "list", "--json", "app.keyset"]);
    for key in listed["keys"].as_array().expect("keys") {
        assert_eq!(key["wrapped_by"], serde_json::json!(["rekey-local:k2/v1"]), "{listed}");
    }

    for file in ["a.rec", "b.rec"] {
        let out = env.ok(&["keyset", "decrypt", "--keyset", "app.keyset", "--key", "local:k2", "--lines", file]);
        assert_eq!(String::from_utf8(out.stdout).expect("utf-8"), plain);
        env.fails(&["keyset", "decrypt", "--keyset", "app.keyset", "--key", "local:k1", "--lines", file], 3);
    }
    assert_eq!((sha256(&env.path("a.rec")), sha256(&env.path("b.rec"))), before, "no record file changed");
}

#[test]
fn fail_a_keyset_file_with_a_wrapped_key_moved_from_another_entry_is_refused() {
    let env = Env::with_keys(&["k1"]);
    env.ok(&["keyset", "create", "--key", "local:k1", "app.keyset"]);
    env.ok(&["keyset", "rotate", "--key", "local:k1", "app.keyset"]);
    std::fs::write(env.path("in.txt"), "secret\n").expect("write");
    env.ok(&["keyset", "encrypt", "--keyset", "app.keyset", "--lines", "in.txt", "-o", "r.rec"]);
    let text = std::fs::read_to_string(env.path("app.keyset")).expect("read");
    let wraps: Vec<&str> = text.lines().filter(|l| l.starts_with("wrap ")).collect();
    // The primary (second key) now names the first key's wrapped data key.
    let tampered = text.replacen(wraps[1], wraps[0], 1);
    std::fs::write(env.path("app.keyset"), tampered).expect("write");
    let err = env.fails(&["keyset", "decrypt", "--keyset", "app.keyset", "--lines", "r.rec"], 3);
    assert!(err.contains("could not be unwrapped"), "{err}");
}

#[test]
fn records_of_another_keyset_or_context_fail_with_exit_3_and_a_hint() {
    let env = Env::with_keys(&["k1"]);
    env.ok(&["keyset", "create", "--key", "local:k1", "a.keyset"]);
    env.ok(&["keyset", "create", "--key", "local:k1", "b.keyset"]);
    std::fs::write(env.path("in.txt"), "x\n").expect("write");
    env.ok(&["keyset", "encrypt", "--keyset", "a.keyset", "-c", "t=users", "--lines", "in.txt", "-o", "r.rec"]);
    let err = env.fails(&["keyset", "decrypt", "--keyset", "b.keyset", "-c", "t=users", "--lines", "r.rec"], 3);
    assert!(err.contains("authentication failed") && err.contains("does not hold"), "{err}");
    env.fails(&["keyset", "decrypt", "--keyset", "a.keyset", "-c", "t=orders", "--lines", "r.rec"], 3);
    env.ok(&["keyset", "decrypt", "--keyset", "a.keyset", "-c", "t=users", "--lines", "r.rec"]);
}

#[test]
fn csv_columns_and_json_fields_round_trip() {
    let env = Env::with_keys(&["k1"]);
    env.ok(&["keyset", "create", "--key", "local:k1", "app.keyset"]);
    let csv = "id,name,ssn\n1,ann,123-45-6789\n2,\"bob, jr\",\n";
    std::fs::write(env.path("t.csv"), csv).expect("write");
    env.ok(&["keyset", "encrypt", "--keyset", "app.keyset", "--column", "ssn", "t.csv", "-o", "t.enc.csv"]);
    let enc = std::fs::read_to_string(env.path("t.enc.csv")).expect("read");
    assert!(!enc.contains("123-45-6789") && enc.contains("\"bob, jr\",\n"), "{enc}");
    let out = env.ok(&["keyset", "decrypt", "--keyset", "app.keyset", "--column", "ssn", "t.enc.csv"]);
    assert_eq!(String::from_utf8(out.stdout).expect("utf-8"), csv);

    let jsonl = "{\"id\":1,\"ssn\":\"123\",\"n\":1.50}\n{\"id\":2,\"ssn\":null}\n";
    std::fs::write(env.path("u.jsonl"), jsonl).expect("write");
    env.ok(&["keyset", "encrypt", "--keyset", "app.keyset", "--field", "/ssn", "u.jsonl", "-o", "u.enc"]);
    let out = env.ok(&["keyset", "decrypt", "--keyset", "app.keyset", "--field", "/ssn", "u.enc"]);
    assert_eq!(String::from_utf8(out.stdout).expect("utf-8"), jsonl);
    let err = env.fails(&["keyset", "encrypt", "--keyset", "app.keyset", "--field", "/nope", "u.jsonl"], 1);
    assert!(err.contains("no field /nope"), "{err}");
}

#[derive(serde::Deserialize)]
struct Fixtures {
    data_key_hex: String,
    records: Vec<BTreeMap<String, String>>,
}

#[test]
fn the_blogs_records_and_envelopes_are_reencrypted_into_compact_records() {
    let env = Env::with_keys(&["k1", "old"]);
    let fixtures: Fixtures = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../envelope-core/tests/data/legacy/blog_records.json"
        ))
        .expect("fixtures"),
    )
    .expect("json");
    let key: Vec<u8> =
        (0..32).map(|i| u8::from_str_radix(&fixtures.data_key_hex[2 * i..2 * i + 2], 16).expect("hex")).collect();
    std::fs::write(env.path("legacy.key"), key).expect("write");
    env.ok(&["keyset", "create", "--key", "local:k1", "app.keyset"]);
    env.ok(&["keyset", "import-legacy", "--legacy-key-file", "legacy.key", "--key", "local:k1", "app.keyset"]);
    let listed = env.json(&["keyset", "list", "--json", "app.keyset"]);
    assert_eq!(listed["keys"][1]["purpose"], "legacy-cbc", "{listed}");

    // Legacy records, one envelope (under another key) and one compact record, mixed.
    let mut input = String::new();
    let mut expected = String::new();
    for r in &fixtures.records {
        input.push_str(&r["record"]);
        input.push('\n');
        expected.push_str(&r["plaintext"]);
        expected.push('\n');
    }
    std::fs::write(env.path("env.txt"), "from an envelope").expect("write");
    env.ok(&["encrypt", "--key", "local:old", "--text", "env.txt", "-o", "env.rky"]);
    input.push_str(std::fs::read_to_string(env.path("env.rky")).expect("read").trim());
    input.push('\n');
    expected.push_str("from an envelope\n");
    std::fs::write(env.path("mixed.txt"), &input).expect("write");

    let out = env.ok(&[
        "keyset",
        "reencrypt",
        "--keyset",
        "app.keyset",
        "--from",
        "local:old",
        "--lines",
        "mixed.txt",
        "-o",
        "new.txt",
    ]);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains(&format!("{} from legacy CBC", fixtures.records.len())), "{summary}");
    assert!(summary.contains("1 from envelopes"), "{summary}");
    let new = std::fs::read_to_string(env.path("new.txt")).expect("read");
    let blog = new.lines().next().expect("first line");
    assert!(blog.len() <= 88, "the blog's message as a compact record: {} characters", blog.len());
    let out = env.ok(&["keyset", "decrypt", "--keyset", "app.keyset", "--lines", "new.txt"]);
    assert_eq!(String::from_utf8(out.stdout).expect("utf-8"), expected);
    // A second run finds everything under the primary already.
    let out = env.ok(&["keyset", "reencrypt", "--keyset", "app.keyset", "--lines", "new.txt", "-o", "again.txt"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{} already under", fixtures.records.len() + 1)));
    assert_eq!(std::fs::read(env.path("again.txt")).expect("read"), new.as_bytes());
}

// ---- against the local KMS server ------------------------------------------

fn kms(env: &Env, args: &[&str]) -> Output {
    env.cmd(args)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run rekey")
}

fn kms_ok(env: &Env, args: &[&str]) -> Output {
    let out = kms(env, args);
    assert!(out.status.success(), "rekey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn py(env: &Env, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/interop/kms_fixtures.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .current_dir(env.dir.path())
        .env("AWS_ENDPOINT_URL", endpoint())
        .output()
        .expect("python");
    assert!(out.status.success(), "kms_fixtures.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn a_keyset_under_k1_encrypts_100000_records_and_rewraps_to_k2_with_one_reencrypt_per_data_key() {
    let env = Env::with_keys(&[]);
    let (k1, k2) = (py(&env, &["create-key"]), py(&env, &["create-key"]));
    let (k1_ref, k2_ref) = (format!("kms:{k1}"), format!("kms:{k2}"));
    kms_ok(&env, &["keyset", "create", "--key", &k1_ref, "app.keyset"]);
    let plain = lines_file(&env, "in.txt", 50_000, "i want to back to home");
    kms_ok(&env, &["keyset", "encrypt", "--keyset", "app.keyset", "--lines", "in.txt", "-o", "a.rec"]);
    kms_ok(&env, &["keyset", "rotate", "--key", &k1_ref, "app.keyset"]);
    kms_ok(&env, &["keyset", "encrypt", "--keyset", "app.keyset", "--lines", "in.txt", "-o", "b.rec"]);
    let records = std::fs::read_to_string(env.path("a.rec")).expect("read").lines().count()
        + std::fs::read_to_string(env.path("b.rec")).expect("read").lines().count();
    assert_eq!(records, 100_000);
    let before = (sha256(&env.path("a.rec")), sha256(&env.path("b.rec")));

    let out = kms_ok(&env, &["keyset", "rewrap", "--to", &k2_ref, "--from", &k1_ref, "--json", "app.keyset"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let keys = summary["keys"].as_u64().expect("keys");
    assert_eq!(keys, 2);
    assert_eq!(summary["kms"]["calls"]["ReEncrypt"].as_u64(), Some(keys), "one ReEncrypt per data key: {summary}");
    assert_eq!(summary["kms"]["calls"].get("Decrypt"), None, "the data keys never left KMS: {summary}");

    for file in ["a.rec", "b.rec"] {
        let out = kms_ok(&env, &["keyset", "decrypt", "--keyset", "app.keyset", "--key", &k2_ref, "--lines", file]);
        assert!(out.stdout == plain.as_bytes(), "{file} decrypts with only K2");
        let refused = kms(&env, &["keyset", "decrypt", "--keyset", "app.keyset", "--key", &k1_ref, "--lines", file]);
        assert!(!refused.status.success(), "K1 no longer unwraps the keyset");
    }
    assert_eq!((sha256(&env.path("a.rec")), sha256(&env.path("b.rec"))), before, "no record file changed");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn records_made_by_the_blogs_python_code_move_to_compact_records_through_an_imported_key() {
    let env = Env::with_keys(&[]);
    let (blog_key, keyset_key) = (py(&env, &["create-key"]), py(&env, &["create-key"]));
    py(&env, &["legacy-export", &blog_key, "2000", "users.jsonl", "datakey.bin"]);
    let k = format!("kms:{keyset_key}");
    kms_ok(&env, &["keyset", "create", "--key", &k, "app.keyset"]);
    kms_ok(&env, &["keyset", "import-legacy", "--legacy-edk", "datakey.bin", "--key", &k, "app.keyset"]);
    let out = kms_ok(
        &env,
        &[
            "keyset",
            "reencrypt",
            "--keyset",
            "app.keyset",
            "--context",
            "table=users",
            "--field",
            "/ssn",
            "users.jsonl",
            "-o",
            "users.new.jsonl",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2000 from legacy CBC"));
    let out = kms_ok(
        &env,
        &[
            "keyset",
            "decrypt",
            "--keyset",
            "app.keyset",
            "--key",
            &k,
            "--context",
            "table=users",
            "--field",
            "/ssn",
            "users.new.jsonl",
        ],
    );
    let expected = std::fs::read_to_string(env.path("users.jsonl.expected")).expect("expected");
    let got: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).expect("utf-8").lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    for (row, want) in got.iter().zip(expected.lines()) {
        let want: serde_json::Value = serde_json::from_str(want).expect("json");
        assert_eq!(row["id"], want["id"]);
        assert_eq!(row["ssn"], want["ssn"]);
    }
    assert_eq!(got.len(), 2000);
}

#[test]
fn inspect_and_scan_recognise_compact_records_and_count_them_per_key() {
    let env = Env::with_keys(&["k1"]);
    env.ok(&["keyset", "create", "--key", "local:k1", "app.keyset"]);
    std::fs::write(env.path("in.txt"), "a\nb\n").expect("write");
    env.ok(&["keyset", "encrypt", "--keyset", "app.keyset", "--lines", "in.txt", "-o", "one.rec"]);
    env.ok(&["keyset", "rotate", "--key", "local:k1", "app.keyset"]);
    env.ok(&["keyset", "encrypt", "--keyset", "app.keyset", "--lines", "in.txt", "-o", "two.rec"]);
    let listed = env.json(&["keyset", "list", "--json", "app.keyset"]);
    let (first, second) =
        (listed["keys"][0]["id"].as_str().expect("id"), listed["keys"][1]["id"].as_str().expect("id"));
    let both = format!(
        "{}{}",
        std::fs::read_to_string(env.path("one.rec")).expect("read"),
        std::fs::read_to_string(env.path("two.rec")).expect("read")
    );
    std::fs::write(env.path("all.rec"), both).expect("write");

    let report = env.json(&["inspect", "--json", "all.rec"]);
    assert_eq!(report["format"], "compact-record", "{report}");
    assert_eq!(report["per_key"][first], 2);
    assert_eq!(report["per_key"][second], 2);

    let csv = "id,v\n1,x\n2,y\n";
    std::fs::write(env.path("t.csv"), csv).expect("write");
    env.ok(&["keyset", "encrypt", "--keyset", "app.keyset", "--column", "v", "t.csv", "-o", "t.enc.csv"]);
    let scan = env.json(&["scan", "--column", "v", "--json", "t.enc.csv"]);
    assert_eq!(scan["compact_records"], 2, "{scan}");
    assert_eq!(scan["per_key"][format!("keyset-key:{second}")], 2, "{scan}");
}

#[test]
fn encrypt_and_decrypt_take_a_keyset_for_records() {
    let env = Env::with_keys(&["k1"]);
    env.ok(&["keyset", "create", "--key", "local:k1", "app.keyset"]);
    std::fs::write(env.path("msg.txt"), "i want to back to home").expect("write");
    let out = env.ok(&["encrypt", "--keyset", "app.keyset", "msg.txt"]);
    let record = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(record.trim_end().len(), 76, "{record}");
    std::fs::write(env.path("r.txt"), &record).expect("write");
    let out = env.ok(&["decrypt", "--keyset", "app.keyset", "--key", "local:k1", "r.txt", "-o", "-", "--force"]);
    assert_eq!(out.stdout, b"i want to back to home");
    lines_file(&env, "in.txt", 10, "line");
    env.ok(&["encrypt", "--keyset", "app.keyset", "--lines", "in.txt", "-o", "in.rec"]);
    let out = env.ok(&["decrypt", "--keyset", "app.keyset", "--lines", "in.rec"]);
    assert_eq!(out.stdout, std::fs::read(env.path("in.txt")).expect("read"));
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn fail_kms_refuses_a_wrapped_key_moved_between_entries_of_a_keyset() {
    let env = Env::with_keys(&[]);
    let k1 = format!("kms:{}", py(&env, &["create-key"]));
    kms_ok(&env, &["keyset", "create", "--key", &k1, "app.keyset"]);
    kms_ok(&env, &["keyset", "rotate", "--key", &k1, "app.keyset"]);
    std::fs::write(env.path("in.txt"), "secret\n").expect("write");
    kms_ok(&env, &["keyset", "encrypt", "--keyset", "app.keyset", "--lines", "in.txt", "-o", "r.rec"]);
    let text = std::fs::read_to_string(env.path("app.keyset")).expect("read");
    let wraps: Vec<&str> = text.lines().filter(|l| l.starts_with("wrap ")).collect();
    std::fs::write(env.path("app.keyset"), text.replacen(wraps[1], wraps[0], 1)).expect("write");
    let out = kms(&env, &["keyset", "decrypt", "--keyset", "app.keyset", "--lines", "r.rec"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("could not be unwrapped"), "{err}");
}

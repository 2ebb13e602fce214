//! rekey writing AWS Encryption SDK messages, proven with the real readers:
//! `rekey encrypt --format esdk` under KMS keys of the local KMS server, and
//! the Python SDK (aws-encryption-sdk 3.3.1, a strict provider of one key,
//! REQUIRE_ENCRYPT_REQUIRE_DECRYPT) and aws-encryption-cli 4.3.0 decrypt
//! every message to the same plaintext and context.

mod common;
mod sdk;

use common::Env;
use sdk::{create_key, json_lines, ok, py, rekey, sha256_hex};
use serde_json::{Value, json};

/// What the Python SDK read from `file` with `key` alone (`form`: binary, text or lines).
fn sdk_read(env: &Env, key: &str, file: &str, form: &str) -> Vec<Value> {
    json_lines(&py("esdk_fixtures.py", &["read", key, env.path(file).to_str().expect("utf-8"), form]))
}

/// What aws-encryption-cli read from `file` with `key` alone, requiring `context`.
fn cli_read(env: &Env, key: &str, file: &str, context: &Value) -> Value {
    let path = env.path(file);
    serde_json::from_str(&py(
        "esdk_fixtures.py",
        &["cli-read", key, path.to_str().expect("utf-8"), &context.to_string()],
    ))
    .expect("json")
}

#[test]
#[ignore = "needs the local KMS server and the Python AWS Encryption SDK: bash scripts/test.sh"]
fn our_sdk_messages_are_read_by_the_python_sdk_and_its_cli() {
    let env = Env::with_keys(&[]);
    let (a, b) = (create_key(), create_key());
    let (key_a, key_b) = (format!("kms:{a}"), format!("kms:{b}"));
    std::fs::create_dir_all(env.path("data")).expect("mkdir");
    let invoice: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    // A whole number of frames: the final frame is empty, as the SDK writes it.
    let whole: Vec<u8> = vec![0x5a; 8192];
    for (name, bytes) in [("invoice", &invoice[..]), ("whole", &whole[..]), ("empty", &[][..])] {
        std::fs::write(env.path(&format!("data/{name}")), bytes).expect("write");
    }
    std::fs::write(env.path("data/lines"), "123-45-6789\n987-65-4321\n\nlast").expect("write");
    let context = json!({"app": "billing", "tenant": "acme"});

    // The default: signed (0x0578), 4096-byte frames, every key wraps the data key.
    let common_args = ["encrypt", "--format", "esdk", "--key", &key_a, "--key", &key_b, "-c", "app=billing"];
    let with = |extra: &[&'static str]| [&common_args[..], &["-c", "tenant=acme"], extra].concat();
    ok(&env, &with(&["data/invoice", "-o", "data/invoice.msg"]));
    for key in [&a, &b] {
        let [read] = &sdk_read(&env, key, "data/invoice.msg", "binary")[..] else { panic!("one message") };
        assert_eq!(read["plaintext_sha256"], sha256_hex(&invoice), "{read}");
        assert_eq!(
            (&read["suite"], &read["signed"], &read["frame_length"], &read["context"]),
            (&json!("0x0578"), &json!(true), &json!(4096), &context),
            "{read}"
        );
        let mut keys: Vec<&str> = read["keys"].as_array().expect("keys").iter().filter_map(Value::as_str).collect();
        keys.sort_unstable();
        let mut want = [a.as_str(), b.as_str()];
        want.sort_unstable();
        assert_eq!(keys, want, "{read}");
    }
    let cli = cli_read(&env, &b, "data/invoice.msg", &context);
    assert_eq!(cli["plaintext_sha256"], sha256_hex(&invoice), "{cli}");

    // Unsigned, other frame lengths, whole frames, empty, base64 text.
    let unsigned = ["--algorithm", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"];
    ok(&env, &with(&[&unsigned[..], &["--frame-size", "1000", "data/invoice", "-o", "data/invoice.0478"]].concat()));
    ok(&env, &with(&["--frame-size", "4096", "data/whole", "-o", "data/whole.msg"]));
    ok(&env, &with(&[&unsigned[..], &["data/empty", "-o", "data/empty.msg"]].concat()));
    ok(&env, &with(&["--text", "data/invoice", "-o", "data/invoice.b64"]));
    for (file, form, suite, frame, plaintext) in [
        ("data/invoice.0478", "binary", "0x0478", 1000, &invoice[..]),
        ("data/whole.msg", "binary", "0x0578", 4096, &whole[..]),
        ("data/empty.msg", "binary", "0x0478", 4096, &[][..]),
        ("data/invoice.b64", "text", "0x0578", 4096, &invoice[..]),
    ] {
        let [read] = &sdk_read(&env, &a, file, form)[..] else { panic!("one message in {file}") };
        assert_eq!(read["plaintext_sha256"], sha256_hex(plaintext), "{file}: {read}");
        assert_eq!((&read["suite"], &read["frame_length"]), (&json!(suite), &json!(frame)), "{file}: {read}");
        assert_eq!(read["context"], context, "{file}: {read}");
        let cli = cli_read(&env, &a, file, &context);
        assert_eq!(cli["plaintext_sha256"], sha256_hex(plaintext), "{file}: {cli}");
    }

    // One message per line, each its own (signed: each its own data key).
    ok(&env, &with(&["--lines", "data/lines", "-o", "data/lines.b64"]));
    let lines = sdk_read(&env, &b, "data/lines.b64", "lines");
    let want = ["123-45-6789", "987-65-4321", "", "last"];
    assert_eq!(lines.len(), want.len());
    for (read, plain) in lines.iter().zip(want) {
        assert_eq!(read["plaintext_sha256"], sha256_hex(plain.as_bytes()), "{read}");
        assert_eq!(read["suite"], "0x0578");
    }
    let written = std::fs::read_to_string(env.path("data/lines.b64")).expect("read");
    assert!(!written.ends_with('\n'), "the missing final newline is kept");

    // rekey reads its own messages, with either key.
    let plain = ok(&env, &["decrypt", "--key", &key_b, "data/invoice.msg"]);
    assert_eq!(plain.stdout, invoice);
    let plain = ok(&env, &["decrypt", "--key", &key_a, "--lines", "data/lines.b64"]);
    assert_eq!(plain.stdout, b"123-45-6789\n987-65-4321\n\nlast");
}

#[test]
#[ignore = "needs the local KMS server and the Python AWS Encryption SDK: bash scripts/test.sh"]
fn encrypt_format_esdk_refuses_what_the_sdks_cannot_read() {
    let env = Env::with_keys(&["mine"]);
    let a = create_key();
    std::fs::write(env.path("plain"), b"secret").expect("write");
    let stderr = env.fails(&["encrypt", "--format", "esdk", "--key", "local:mine", "plain", "-o", "out"], 2);
    assert!(stderr.contains("local:mine is not kms:KEY"), "{stderr}");
    let out = rekey(
        &env,
        &["encrypt", "--format", "esdk", "--key", &format!("kms:{a}"), "-c", "aws-crypto-x=1", "plain", "-o", "out"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = env.fails(&["encrypt", "--format", "esdk", "--keyset", "ks.json", "plain", "-o", "out"], 2);
    assert!(stderr.contains("--keyset"), "{stderr}");
    assert!(!env.path("out").exists(), "nothing was written");
}

/// The expected plaintext and context of each message `esdk_fixtures.py write` made.
fn expected(env: &Env) -> Value {
    serde_json::from_str(&std::fs::read_to_string(env.path("data/expected.json")).expect("expected")).expect("json")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
#[ignore = "needs the local KMS server and the Python AWS Encryption SDK: bash scripts/test.sh"]
fn python_sdk_messages_convert_into_rekey_envelopes_and_compact_records() {
    let env = Env::with_keys(&[]);
    let (a, b) = (create_key(), create_key());
    let (from, to) = (format!("kms:{a}"), format!("kms:{b}"));
    py("esdk_fixtures.py", &["write", &a, env.path("data").to_str().expect("utf-8")]);
    let expected = expected(&env);
    let before = env.snapshot("data/files");
    let convert = ["reencrypt", "--items", "esdk", "--format", "rekey", "--from", &from, "--to", &to];

    // Into rekey envelopes: every suite, each message's context carried.
    let run = sdk::json(&env, &[&convert[..], &["--verify", "--json", "--no-progress", "data/files"]].concat());
    assert_eq!((run["reencrypted"].as_u64(), run["failed"].as_u64()), (Some(9), Some(0)), "{run}");
    assert_eq!(run["lifted_to_key_commitment"], 4, "{run}");
    for (name, want) in expected.as_object().expect("map").iter().filter(|(n, _)| n.starts_with("files/")) {
        let file = format!("data/{name}");
        let inspect = sdk::json(&env, &["inspect", "--json", &file]);
        assert_eq!(inspect["format"], "rekey-envelope", "{name}: {inspect}");
        assert_eq!(inspect["context"], want["context"], "{name}: {inspect}");
        assert_eq!(inspect["encoding"], if name.ends_with(".b64") { "text" } else { "binary" }, "{name}");
        let plain = ok(&env, &["decrypt", "--key", &to, &file]);
        assert_eq!(hex(&plain.stdout), want["plaintext_hex"].as_str().expect("hex"), "{name}");
    }
    // A second run finds them done; rollback restores every message byte for byte.
    let again = sdk::json(
        &env,
        &[&convert[..], &["--journal", "again.journal", "--json", "--no-progress", "data/files"]].concat(),
    );
    assert_eq!((again["skipped"].as_u64(), again["reencrypted"].as_u64()), (Some(9), Some(0)), "{again}");
    ok(&env, &["rollback", "--journal", "data/files.rekey-journal"]);
    assert_eq!(env.snapshot("data/files"), before);

    // Into compact records: a record keeps no context, so a message whose
    // context is not the records' is refused with the reason, untouched.
    ok(&env, &["keyset", "create", "--key", &to, "ks.json"]);
    let to_keyset = ["reencrypt", "--items", "esdk", "--keyset", "ks.json", "--from", &from];
    let out = rekey(
        &env,
        &[&to_keyset[..], &["--journal", "ks.journal", "--json", "--no-progress", "--no-preflight", "data/files"]]
            .concat(),
    );
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((summary["reencrypted"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(8)), "{summary}");
    let report = std::fs::read_to_string(env.path("ks.journal.failures.jsonl")).expect("report");
    assert!(report.contains("context_mismatch") && report.contains("a compact record keeps no context"), "{report}");
    // The binary message became a binary record; `decrypt --keyset` reads the text form.
    let record = std::fs::read(env.path("data/files/signed_nonframed.msg")).expect("read");
    std::fs::write(env.path("record"), envelope_core::hazmat::encode_text(&record)).expect("write");
    let plain = ok(&env, &["decrypt", "--keyset", "ks.json", "record"]);
    assert_eq!(plain.stdout, b"no context at all");

    // A table whose rows hold the context's pairs: every record converts.
    let db = env.path("data/app.db");
    {
        let conn = rusqlite::Connection::open(&db).expect("sqlite");
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, row TEXT, secret TEXT)").expect("create");
        for line in std::fs::read_to_string(env.path("data/records.jsonl")).expect("records").lines() {
            let record: Value = serde_json::from_str(line).expect("json");
            let id = record["id"].as_i64().expect("id");
            conn.execute(
                "INSERT INTO users VALUES (?1, ?2, ?3)",
                rusqlite::params![id, id.to_string(), record["secret"].as_str()],
            )
            .expect("insert");
        }
    }
    let url = format!("sqlite:{}", db.display());
    let table = [&url, "--table", "users", "--column", "secret", "--id", "id", "--context-column", "row"];
    let run = sdk::json(
        &env,
        &[&to_keyset[..], &["--context", "table=users", "--verify", "--json", "--no-progress"], &table[..]].concat(),
    );
    assert_eq!((run["reencrypted"].as_u64(), run["failed"].as_u64()), (Some(12), Some(0)), "{run}");
    let conn = rusqlite::Connection::open(&db).expect("sqlite");
    let record: String = conn.query_row("SELECT secret FROM users WHERE id = 4", [], |r| r.get(0)).expect("row");
    std::fs::write(env.path("record"), format!("{record}\n")).expect("write");
    let plain = ok(&env, &["decrypt", "--keyset", "ks.json", "-c", "table=users", "-c", "row=4", "record"]);
    assert_eq!(plain.stdout, b"record 4: secret");
}

//! AWS Encryption SDK messages through the rotation engine, proven with the
//! real Python SDK (aws-encryption-sdk 3.3.1) on the local KMS server: it
//! writes the messages under key A (scripts/interop/esdk_fixtures.py),
//! `rekey reencrypt --items esdk` moves them to key B, and the SDK with a
//! strict provider of B alone, under REQUIRE_ENCRYPT_REQUIRE_DECRYPT, reads
//! every output back to the same plaintext and context.

mod common;
mod sdk;

use common::Env;
use sdk::{create_key, json, ok, py, rekey, sha256_hex, text};
use serde_json::Value;

#[test]
#[ignore = "needs the local KMS server and the Python AWS Encryption SDK: bash scripts/test.sh"]
fn python_sdk_messages_move_to_a_new_kms_key_and_the_python_sdk_reads_them_back() {
    let env = Env::with_keys(&[]);
    let (a, b) = (create_key(), create_key());
    let (from, to) = (format!("kms:{a}"), format!("kms:{b}"));
    let dir = env.path("data");
    py("esdk_fixtures.py", &["write", &a, dir.to_str().expect("utf-8")]);
    let before = env.snapshot("data/files");

    // scan: per key, per suite, the non-committing ones flagged.
    let scan = json(&env, &["scan", "--json", "--no-progress", "data/files"]);
    assert_eq!(scan["esdk_messages"], 9, "{scan}");
    assert_eq!(scan["esdk_non_committing"], 4, "{scan}");
    assert_eq!(scan["envelopes"], 0, "{scan}");
    assert_eq!(scan["per_key"][format!("aws-kms:{a}")], 9, "{scan}");
    assert_eq!(
        scan["per_suite"]["AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384 (0x0378) [no key commitment, signed]"],
        2
    );
    let scan_text = text(&ok(&env, &["scan", "--no-progress", "data/files"]));
    assert!(
        scan_text.contains("4  of them with no key commitment: move them with `rekey reencrypt --items esdk`"),
        "{scan_text}"
    );

    // inspect: binary and base64, with the suite's lacks spelled out.
    let inspect = text(&ok(&env, &["inspect", "data/files/legacy_0378.msg"]));
    for want in [
        "AWS Encryption SDK message, format version 1 (binary form)",
        "AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384 (0x0378) [no key commitment, signed]",
        "framed, 4096 bytes per frame",
        "app=old",
        &format!("- aws-kms: {a}"),
    ] {
        assert!(inspect.contains(want), "{want:?} not in {inspect}");
    }
    let inspect = json(&env, &["inspect", "--json", "data/files/text_commit.b64"]);
    assert_eq!(inspect["encoding"], "text");
    assert_eq!(inspect["suite"]["id"], "0x0478");
    assert_eq!(inspect["wrapped_keys"][0]["key"], a.as_str());

    // decrypt: the legacy suite only with the opt-in, named in the error.
    let refused = rekey(&env, &["decrypt", "--key", &from, "data/files/legacy_0378.msg"]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-non-committing"));
    let plain = ok(&env, &["decrypt", "--key", &from, "--allow-non-committing", "data/files/legacy_0378.msg"]);
    assert_eq!(plain.stdout, b"legacy signed ".repeat(50));

    // A dry run forecasts the signed messages' data keys.
    let dry = json(
        &env,
        &[
            "reencrypt",
            "--items",
            "esdk",
            "--from",
            &from,
            "--to",
            &to,
            "--dry-run",
            "--json",
            "--no-progress",
            "data/files",
        ],
    );
    let calls = dry["kms_calls"].to_string();
    assert!(calls.contains("4 data key generations for 4 signed messages"), "{calls}");
    assert_eq!(env.snapshot("data/files"), before, "a dry run writes nothing");

    // The rotation: files (binary and base64) and a record stream.
    let run = json(
        &env,
        &[
            "reencrypt",
            "--items",
            "esdk",
            "--from",
            &from,
            "--to",
            &to,
            "--verify",
            "--json",
            "--no-progress",
            "data/files",
        ],
    );
    assert_eq!((run["reencrypted"].as_u64(), run["failed"].as_u64()), (Some(9), Some(0)), "{run}");
    assert_eq!(run["lifted_to_key_commitment"], 4, "{run}");
    let records = json(
        &env,
        &[
            "reencrypt",
            "--items",
            "esdk",
            "--from",
            &from,
            "--to",
            &to,
            "--field",
            "/secret",
            "--json",
            "--no-progress",
            "data/records.jsonl",
            "-o",
            "data/records.new.jsonl",
        ],
    );
    assert_eq!(records["reencrypted"], 12, "{records}");
    assert_eq!(records["lifted_to_key_commitment"], 4, "{records}");
    // Unsigned outputs share data keys per context; signed ones need one each.
    assert!(records["kms"]["calls"]["GenerateDataKey"].as_u64().expect("count") <= 13, "{records}");

    // A table: base64 text in one column, the binary message in a BLOB
    // column, each bound to its row by the context pair `row`.
    let db = env.path("data/app.db");
    {
        let conn = rusqlite::Connection::open(&db).expect("sqlite");
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, row TEXT, secret TEXT, raw BLOB)")
            .expect("create");
        for line in std::fs::read_to_string(env.path("data/records.jsonl")).expect("records").lines() {
            let record: Value = serde_json::from_str(line).expect("json");
            let secret = record["secret"].as_str().expect("secret");
            let raw = envelope_core::hazmat::decode_text(secret).expect("base64");
            let id = record["id"].as_i64().expect("id");
            conn.execute(
                "INSERT INTO users VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id, id.to_string(), secret, raw],
            )
            .expect("insert");
        }
    }
    let url = format!("sqlite:{}", db.display());
    let table = json(
        &env,
        &[
            "reencrypt",
            "--items",
            "esdk",
            "--from",
            &from,
            "--to",
            &to,
            "--json",
            "--no-progress",
            &url,
            "--table",
            "users",
            "--column",
            "secret",
            "--column",
            "raw",
            "--id",
            "id",
            "--context-column",
            "row",
        ],
    );
    assert_eq!((table["reencrypted"].as_u64(), table["failed"].as_u64()), (Some(24), Some(0)), "{table}");
    {
        let conn = rusqlite::Connection::open(&db).expect("sqlite");
        let mut rows = conn.prepare("SELECT id, secret, raw FROM users ORDER BY id").expect("select");
        let rows: Vec<(i64, String, Vec<u8>)> = rows
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect();
        let mut text = String::new();
        let mut blob = String::new();
        for (id, secret, raw) in rows {
            assert!(raw.starts_with(&[0x02]), "the BLOB stays binary");
            text.push_str(&format!("{}\n", serde_json::json!({"id": id, "secret": secret})));
            blob.push_str(&format!(
                "{}\n",
                serde_json::json!({"id": id, "secret": envelope_core::hazmat::encode_text(&raw)})
            ));
        }
        std::fs::write(env.path("data/table.text.jsonl"), text).expect("write");
        std::fs::write(env.path("data/table.blob.jsonl"), blob).expect("write");
    }
    for records in ["table.text.jsonl", "table.blob.jsonl"] {
        let check: Value =
            serde_json::from_str(&py("esdk_fixtures.py", &["check", &b, dir.to_str().expect("utf-8"), records]))
                .expect("json");
        assert_eq!(check["checked"], 9 + 12, "{records}: {check}");
    }

    // The proof: the Python SDK, key B alone, strictest policy.
    let check: Value = serde_json::from_str(&py(
        "esdk_fixtures.py",
        &["check", &b, dir.to_str().expect("utf-8"), "records.new.jsonl"],
    ))
    .expect("json");
    assert_eq!(check["checked"], 9 + 12, "{check}");
    assert_eq!(check["bad"], serde_json::json!([]), "{check}");

    // rekey reads them with B too (a binary file; base64 lines), and scan
    // shows them all under B, committing (files; a record stream's field).
    let plain = ok(&env, &["decrypt", "--key", &to, "data/files/legacy_0378.msg"]);
    assert_eq!(plain.stdout, b"legacy signed ".repeat(50));
    let lines = [
        std::fs::read_to_string(env.path("data/files/text_commit.b64")).expect("text"),
        std::fs::read_to_string(env.path("data/files/text_legacy.b64")).expect("text"),
    ]
    .concat();
    std::fs::write(env.path("data/lines.b64"), lines).expect("write");
    let plain = ok(&env, &["decrypt", "--key", &to, "--lines", "data/lines.b64"]);
    assert_eq!(text(&plain), "123-45-6789\n987-65-4321\n");
    let scan = json(&env, &["scan", "--json", "--no-progress", "--field", "/secret", "data/records.new.jsonl"]);
    assert_eq!(
        (scan["esdk_messages"].as_u64(), scan["per_key"][format!("aws-kms:{b}")].as_u64()),
        (Some(12), Some(12))
    );
    let scan = json(&env, &["scan", "--json", "--no-progress", "data/files"]);
    assert_eq!(scan["per_key"][format!("aws-kms:{b}")], 9, "{scan}");
    assert!(scan.get("esdk_non_committing").is_none(), "{scan}");

    // A second run changes nothing, and makes no new data key.
    let again = json(
        &env,
        &[
            "reencrypt",
            "--items",
            "esdk",
            "--from",
            &from,
            "--to",
            &to,
            "--journal",
            "again.journal",
            "--json",
            "--no-progress",
            "data/files",
        ],
    );
    assert_eq!((again["skipped"].as_u64(), again["reencrypted"].as_u64()), (Some(9), Some(0)), "{again}");
    assert!(again["kms"]["calls"].get("GenerateDataKey").is_none(), "{again}");

    // Rollback restores every original byte for byte.
    ok(&env, &["rollback", "--journal", "data/files.rekey-journal"]);
    assert_eq!(env.snapshot("data/files"), before);
}

#[test]
#[ignore = "needs the local KMS server and the Python AWS Encryption SDK: bash scripts/test.sh"]
fn aes_128_and_192_suites_and_20_mib_messages_decrypt_and_rotate() {
    let env = Env::with_keys(&[]);
    let (a, b) = (create_key(), create_key());
    let (from, to) = (format!("kms:{a}"), format!("kms:{b}"));
    let dir = env.path("data");
    // Every AES-128 and AES-192 suite, 20 MiB framed and non-framed, empty: made now, not committed.
    py("esdk_fixtures.py", &["suites", &a, dir.to_str().expect("utf-8")]);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("data/expected.json")).expect("read")).expect("json");
    let expected = expected.as_object().expect("map");
    assert_eq!(expected.len(), 9);
    for (name, want) in expected {
        let file = format!("data/{name}");
        let plain = ok(&env, &["decrypt", "--key", &from, "--allow-non-committing", &file]);
        assert_eq!(sha256_hex(&plain.stdout), want["plaintext_sha256"].as_str().expect("sha"), "{name}");
        let inspect = json(&env, &["inspect", "--json", &file]);
        assert_eq!(inspect["suite"]["id"], want["suite"], "{name}: {inspect}");
    }
    // The KMS answer is checked: another key's allow-list opens none.
    let refused = rekey(&env, &["decrypt", "--key", &to, "--allow-non-committing", "data/files/aes128_0114.msg"]);
    assert_ne!(refused.status.code(), Some(0));

    let run = json(
        &env,
        &[
            "reencrypt",
            "--items",
            "esdk",
            "--from",
            &from,
            "--to",
            &to,
            "--verify",
            "--json",
            "--no-progress",
            "data/files",
        ],
    );
    assert_eq!((run["reencrypted"].as_u64(), run["failed"].as_u64()), (Some(9), Some(0)), "{run}");
    assert_eq!(run["lifted_to_key_commitment"], 6, "{run}");
    // The Python SDK, key B alone, strictest policy: AES-256 with key commitment, signed inputs still signed.
    let check: Value =
        serde_json::from_str(&py("esdk_fixtures.py", &["check", &b, dir.to_str().expect("utf-8")])).expect("json");
    assert_eq!(check["checked"], 9, "{check}");
    assert_eq!(check["bad"], serde_json::json!([]), "{check}");
    assert_eq!(check["suites"], serde_json::json!({"0x0478": 6, "0x0578": 3}), "{check}");
}

#[test]
#[ignore = "needs the local KMS server and the Python AWS Encryption SDK: bash scripts/test.sh"]
fn planted_and_foreign_messages_are_refused_and_left_alone() {
    let env = Env::with_keys(&[]);
    let (a, b, c) = (create_key(), create_key(), create_key());
    std::fs::create_dir_all(env.path("data")).expect("mkdir");
    let genuine = env.path("genuine.msg");
    py("esdk_fixtures.py", &["one", &a, genuine.to_str().expect("utf-8")]);
    // Its wrapped key replaced by another data key under the same key A and context.
    py(
        "esdk_fixtures.py",
        &["plant", &a, genuine.to_str().expect("utf-8"), env.path("data/planted.msg").to_str().expect("utf-8")],
    );
    // A message under a key the operator did not allow.
    py("esdk_fixtures.py", &["one", &c, env.path("data/foreign.msg").to_str().expect("utf-8")]);
    let before = env.snapshot("data");

    let out = rekey(
        &env,
        &[
            "reencrypt",
            "--items",
            "esdk",
            "--from",
            &format!("kms:{a}"),
            "--to",
            &format!("kms:{b}"),
            "--json",
            "--no-progress",
            "--no-preflight",
            "data",
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((summary["failed"].as_u64(), summary["reencrypted"].as_u64()), (Some(2), Some(0)), "{summary}");
    assert_eq!(env.snapshot("data"), before, "nothing was written");
    let report = std::fs::read_to_string(env.path("data.rekey-journal.failures.jsonl")).expect("failure report");
    let codes: Vec<String> = report
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["error_code"].as_str().expect("code").to_owned())
        .collect();
    assert!(codes.contains(&"authentication".to_owned()), "{report}");
    assert!(codes.contains(&"no_source_key".to_owned()), "{report}");
}

#[test]
fn rewrap_of_sdk_messages_is_refused_before_anything_is_written() {
    let env = Env::with_keys(&[]);
    let vector =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../envelope-core/tests/data/esdk/0578_frame4096_64.bin");
    std::fs::create_dir_all(env.path("data")).expect("mkdir");
    std::fs::copy(vector, env.path("data/m.bin")).expect("copy");
    let before = env.snapshot("data");
    let stderr = env.fails(&["rewrap", "--items", "esdk", "--to", "kms:alias/new", "data"], 2);
    assert!(stderr.contains("fixed zero IV"), "{stderr}");
    assert!(stderr.contains("hint: use rekey reencrypt --items esdk"), "{stderr}");
    assert_eq!(env.snapshot("data"), before);
    assert!(!env.path("data.rekey-journal").exists(), "no journal either");
}

//! Record streams (JSON Lines and CSV) through the engine with local keys:
//! legacy CBC records re-encrypted, envelopes re-wrapped, other fields and
//! the order of records untouched, and SIGKILL then resume.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use envelope_core::hazmat::{Materials, encode_text, seal};
use envelope_core::legacy::{InnerEncoding, encrypt_legacy_record_for_fixtures};
use envelope_core::{DataKey, EncryptionContext};
use serde_json::{Value, json};

mod common;

use common::Env;

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).expect("read").lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

#[test]
fn legacy_records_in_json_lines_are_reencrypted_field_by_field() {
    let env = Env::with_keys(&["old", "new"]);
    let legacy_key = [0x5a; 32];
    std::fs::write(env.path("legacy.key"), legacy_key).expect("write key");
    let data_key = DataKey::from_bytes(legacy_key);
    let iv = *b"0123456789abcdef"; // the blog's fixed IV, reused for every record
    let mut lines = String::new();
    let mut expected = Vec::new();
    for i in 0..500 {
        let ssn = format!("{i:03}-45-{:04}", i * 7);
        let note = if i % 10 == 0 { String::new() } else { format!("메모 {i} \"quoted\"") };
        let record = json!({
            "id": i,
            "amount": 12.50,
            "big": 12345678901234567890u64,
            "user": {"name": format!("user{i}"), "ssn": encrypt_legacy_record_for_fixtures(&data_key, &iv, &ssn, InnerEncoding::Base64)},
            "note": if note.is_empty() { String::new() } else { encrypt_legacy_record_for_fixtures(&data_key, &iv, &note, InnerEncoding::Base64) },
        });
        lines.push_str(&record.to_string());
        lines.push('\n');
        expected.push((ssn, note));
    }
    std::fs::write(env.path("export.jsonl"), &lines).expect("write");

    let out = env.ok(&[
        "reencrypt",
        "--items",
        "legacy",
        "--legacy-key-file",
        "legacy.key",
        "--to",
        "local:new",
        "--context",
        "table=users",
        "--field",
        "/user/ssn",
        "--field",
        "/note",
        "--verify",
        "--json",
        "export.jsonl",
        "-o",
        "export.new.jsonl",
    ]);
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["reencrypted"], 950, "500 ssn + 450 non-empty notes");
    assert_eq!(summary["failed"], 0);

    let before = read_jsonl(&env.path("export.jsonl"));
    let after = read_jsonl(&env.path("export.new.jsonl"));
    assert_eq!(after.len(), before.len());
    for ((old, new), (ssn, note)) in before.iter().zip(&after).zip(&expected) {
        assert_eq!(new["id"], old["id"], "order kept");
        assert_eq!(new["user"]["name"], old["user"]["name"]);
        assert_eq!(new["amount"].to_string(), "12.5");
        assert_eq!(new["big"].to_string(), "12345678901234567890", "numbers untouched");
        let (plain, ids) = env.open_text(new["user"]["ssn"].as_str().expect("string"));
        assert_eq!(plain, ssn.as_bytes());
        assert_eq!(ids, ["new/v1"]);
        if note.is_empty() {
            assert_eq!(new["note"], "", "empty values stay empty");
        } else {
            assert_eq!(env.open_text(new["note"].as_str().expect("string")).0, note.as_bytes());
        }
    }
    // Field order within a record is kept too.
    let first_line = std::fs::read_to_string(env.path("export.new.jsonl")).expect("read");
    assert!(first_line.starts_with("{\"id\":0,\"amount\":12.5"), "{}", &first_line[..60]);
}

#[test]
fn csv_columns_are_rewrapped_and_everything_else_kept() {
    let env = Env::with_keys(&["old", "new"]);
    let keyring = env.keyring("old");
    let context = EncryptionContext::new();
    let (data_key, edk) = keyring.generate_sync(&context).expect("generate");
    let materials = Materials { data_key, encrypted_data_keys: vec![edk] };
    let mut csv = String::from("id,name,card,comment\n");
    for i in 0..200 {
        let card = encode_text(&seal(&materials, &context, format!("4111-{i:04}").as_bytes()).expect("seal"));
        csv.push_str(&format!("{i},\"Name, {i}\",{card},\"says \"\"hi\"\"\"\n"));
    }
    std::fs::write(env.path("cards.csv"), &csv).expect("write");
    env.ok(&["rewrap", "--to", "local:new", "--column", "card", "cards.csv", "-o", "cards.new.csv"]);
    let mut reader = csv::Reader::from_path(env.path("cards.new.csv")).expect("csv");
    let mut n = 0;
    for (i, row) in reader.records().enumerate() {
        let row = row.expect("row");
        assert_eq!(&row[0], i.to_string());
        assert_eq!(&row[1], format!("Name, {i}"));
        assert_eq!(&row[3], "says \"hi\"");
        let (plain, ids) = env.open_text(&row[2]);
        assert_eq!(plain, format!("4111-{i:04}").as_bytes());
        assert_eq!(ids, ["new/v1"]);
        n += 1;
    }
    assert_eq!(n, 200);
    // One unwrap and one wrap for all 200 records: they share a wrapped key.
}

#[test]
fn a_record_stream_killed_at_random_moments_resumes_without_loss_or_duplicates() {
    let env = Env::with_keys(&["old", "new"]);
    let keyring = env.keyring("old");
    let context = EncryptionContext::from_pairs([("t", "x")]).expect("ctx");
    let n = 30_000;
    let mut lines = String::new();
    // A fresh data key every 100 records, so the run makes real key work.
    let mut materials = None;
    for i in 0..n {
        if i % 100 == 0 {
            let (data_key, edk) = keyring.generate_sync(&context).expect("generate");
            materials = Some(Materials { data_key, encrypted_data_keys: vec![edk] });
        }
        let m = materials.as_ref().expect("set");
        let secret = encode_text(&seal(m, &context, format!("secret {i}").as_bytes()).expect("seal"));
        lines.push_str(&json!({"n": i, "s": secret}).to_string());
        lines.push('\n');
    }
    std::fs::write(env.path("in.jsonl"), lines).expect("write");

    let args = [
        "rewrap",
        "--to",
        "local:new",
        "--field",
        "/s",
        "--resume",
        "--concurrency",
        "4",
        "in.jsonl",
        "-o",
        "out.jsonl",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut interrupted = 0;
    for _ in 0..4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = env.cmd(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(100 + seed % 600));
        if child.try_wait().expect("poll").is_none() {
            interrupted += 1;
        }
        child.kill().ok();
        child.wait().expect("reap");
        if env.path("out.jsonl").exists() {
            break;
        }
        assert!(
            std::fs::read_to_string(env.path("in.jsonl")).expect("input").lines().count() == n,
            "the input is never touched"
        );
    }
    if !env.path("out.jsonl").exists() {
        env.ok(&args);
    }
    assert!(interrupted > 0, "no run was interrupted; the test proves nothing");
    let out = read_jsonl(&env.path("out.jsonl"));
    assert_eq!(out.len(), n, "every record once");
    for (i, record) in out.iter().enumerate() {
        assert_eq!(record["n"], i, "in order, none duplicated");
        let (plain, ids) = env.open_text(record["s"].as_str().expect("string"));
        assert_eq!(plain, format!("secret {i}").as_bytes());
        assert_eq!(ids, ["new/v1"]);
    }
    assert!(!env.path("out.jsonl.rekey-partial").exists());
}

//! The rotation engine end to end with the local keyring: the real binary on
//! real files, including SIGKILL at random moments and resumption.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod common;

use common::{Env, walk};

fn key_ids(env: &Env, file: &Path) -> Vec<String> {
    env.key_ids(file)
}

#[test]
fn rewrap_a_directory_then_roll_it_back() {
    let env = Env::with_keys(&["old", "new", "other"]);
    let plaintexts = env.vault(30);
    let before = env.snapshot("vault");

    let dry = env.ok(&["rewrap", "--to", "local:new", "--dry-run", "vault"]);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("30 rewrapped"), "{}", String::from_utf8_lossy(&dry.stdout));
    assert_eq!(env.snapshot("vault"), before, "a dry run writes nothing");
    assert!(!env.path("vault.rekey-journal").exists());

    let out = env.ok(&["rewrap", "--to", "local:new", "--verify", "--json", "vault"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(summary["rewrapped"], 30);
    assert_eq!(summary["failed"], 0);
    for (name, plaintext) in &plaintexts {
        let file = env.path(&format!("vault/{name}"));
        assert_eq!(key_ids(&env, &file), ["new/v1"]);
        assert_eq!(&env.decrypt(&file, &["local:new"]).expect("new key decrypts"), plaintext);
        assert!(env.decrypt(&file, &["local:old"]).is_err(), "the old key no longer decrypts {name}");
        // The body is untouched: same length difference as the key ids.
        assert_eq!(std::fs::read(&file).expect("read").len(), before[name].len(), "{name}");
    }

    // Running again changes nothing: every item is already done.
    let again = env.ok(&["rewrap", "--to", "local:new", "--resume", "--json", "vault"]);
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!((summary["done_before"].as_u64(), summary["rewrapped"].as_u64()), (Some(30), Some(0)));

    // Without --resume an existing journal is refused, not overwritten.
    let refused = env.run(&["rewrap", "--to", "local:new", "vault"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));

    env.ok(&["rollback", "--journal", "vault.rekey-journal"]);
    assert_eq!(env.snapshot("vault"), before, "rollback restores every file byte for byte");
}

#[test]
fn add_keeps_both_keys_and_remove_drops_the_old_one() {
    let env = Env::with_keys(&["old", "new", "other"]);
    let plaintexts = env.vault(6);
    env.ok(&["rewrap", "--to", "local:new", "--add", "--journal", "j1", "vault"]);
    for (name, plaintext) in &plaintexts {
        let file = env.path(&format!("vault/{name}"));
        assert_eq!(key_ids(&env, &file), ["old/v1", "new/v1"]);
        assert_eq!(&env.decrypt(&file, &["local:old"]).expect("old"), plaintext);
        assert_eq!(&env.decrypt(&file, &["local:new"]).expect("new"), plaintext);
    }
    env.ok(&["rewrap", "--to", "local:new", "--remove", "local:old", "--journal", "j2", "vault"]);
    for name in plaintexts.keys() {
        assert_eq!(key_ids(&env, &env.path(&format!("vault/{name}"))), ["new/v1"]);
    }
}

#[test]
fn local_key_rotation_moves_items_to_the_new_version() {
    let env = Env::with_keys(&["old", "new", "other"]);
    env.vault(4);
    env.ok(&["keys", "rotate", "old"]);
    env.ok(&["rewrap", "--to", "local:old", "vault"]);
    for file in walk(&env.path("vault")) {
        assert_eq!(key_ids(&env, &file), ["old/v2"]);
    }
}

#[test]
fn bad_items_are_reported_one_by_one_and_the_rest_complete() {
    let env = Env::with_keys(&["old", "new", "other"]);
    let plaintexts = env.vault(10);
    std::fs::write(env.path("vault/garbage.rky"), b"not an envelope at all").expect("write");
    let good = std::fs::read(env.path("vault/item00001.rky")).expect("read");
    std::fs::write(env.path("vault/truncated.rky"), &good[..good.len() / 2]).expect("write");
    env.encrypt("local:other", b"other", "n=x", &env.path("vault/unknown-key.rky"), false);
    // An envelope whose wrapped key was made under another context.
    let a = std::fs::read(env.path("vault/item00001.rky")).expect("read");
    let b = std::fs::read(env.path("vault/item00002.rky")).expect("read");
    std::fs::write(env.path("vault/wrong-context.rky"), splice_edks(&a, &b)).expect("write");

    let out = env.run(&["rewrap", "--to", "local:new", "--from", "local:old", "--json", "vault"]);
    assert_eq!(out.status.code(), Some(6), "finished with failures: {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["rewrapped"], 10);
    assert_eq!(summary["failed"], 4);
    let report = std::fs::read_to_string(env.path("vault.rekey-journal.failures.jsonl")).expect("failure report");
    let failures: BTreeMap<String, String> = report
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .map(|v| {
            (
                Path::new(v["item"].as_str().expect("item")).file_name().expect("name").to_string_lossy().into_owned(),
                v["error_code"].as_str().expect("code").to_owned(),
            )
        })
        .collect();
    assert_eq!(failures["garbage.rky"], "bad_input");
    assert_eq!(failures["truncated.rky"], "bad_input");
    assert_eq!(failures["unknown-key.rky"], "no_source_key");
    assert_eq!(failures["wrong-context.rky"], "invalid_ciphertext");
    for (name, plaintext) in &plaintexts {
        assert_eq!(&env.decrypt(&env.path(&format!("vault/{name}")), &["local:new"]).expect("decrypts"), plaintext);
    }
    assert!(!report.contains("record "), "no plaintext in the report");

    // --max-failures stops early.
    let out = env.run(&[
        "rewrap",
        "--to",
        "local:other",
        "--journal",
        "j2",
        "--max-failures",
        "1",
        "--concurrency",
        "1",
        "--json",
        "vault",
    ]);
    assert_eq!(out.status.code(), Some(6));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["stopped"], "max_failures");
}

/// Header core of `a` with the EDK list and body of... no: `a`'s core and
/// body with `b`'s EDK list (wrapped under `b`'s context).
fn splice_edks(a: &[u8], b: &[u8]) -> Vec<u8> {
    use envelope_core::hazmat::{Envelope, ParseOptions, decode_text, encode_text};
    let decode = |x: &[u8]| {
        if x.starts_with(b"RKY") {
            x.to_vec()
        } else {
            decode_text(std::str::from_utf8(x).expect("utf-8")).expect("b64")
        }
    };
    let (a, b) = (decode(a), decode(b));
    let ea = Envelope::parse(&a, &ParseOptions::default()).expect("a");
    let eb = Envelope::parse(&b, &ParseOptions::default()).expect("b");
    let spliced = ea.with_encrypted_data_keys(&eb.header().encrypted_data_keys).expect("encode");
    encode_text(&spliced).into_bytes()
}

#[test]
fn sample_then_full_run() {
    let env = Env::with_keys(&["old", "new", "other"]);
    env.vault(40);
    let out = env.ok(&["rewrap", "--to", "local:new", "--sample", "25", "--json", "vault"]);
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let sampled = first["rewrapped"].as_u64().expect("count");
    assert!((2..=20).contains(&sampled), "about a quarter of 40, got {sampled}");
    let out = env.ok(&["rewrap", "--to", "local:new", "--resume", "--limit", "5", "--json", "vault"]);
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(second["rewrapped"].as_u64().expect("n") + second["skipped"].as_u64().expect("n"), 5);
    let out = env.ok(&["rewrap", "--to", "local:new", "--resume", "--json", "vault"]);
    let last: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(last["done_before"].as_u64().expect("n") + last["rewrapped"].as_u64().expect("n"), 40);
    assert_eq!(last["done_before"].as_u64().expect("n"), sampled + second["rewrapped"].as_u64().expect("n"));
}

#[test]
fn sigkill_at_random_moments_then_resume_loses_nothing() {
    let env = Env::with_keys(&["old", "new", "other"]);
    let n = 2000;
    // Make 2,000 envelopes quickly: one real envelope per context, copied.
    let plaintexts = env.vault(20);
    let originals: Vec<(String, Vec<u8>)> =
        plaintexts.keys().map(|k| (k.clone(), std::fs::read(env.path(&format!("vault/{k}"))).expect("read"))).collect();
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let (name, bytes) = &originals[i % originals.len()];
        let copy = format!("bulk/{i:05}-{}", Path::new(name).file_name().expect("name").to_string_lossy());
        std::fs::create_dir_all(env.path("vault/bulk")).expect("mkdir");
        std::fs::write(env.path(&format!("vault/{copy}")), bytes).expect("write");
        expected.insert(copy, plaintexts[name].clone());
    }
    for (name, p) in &plaintexts {
        expected.insert(name.clone(), p.clone());
    }

    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(40 + seed % 400);
        let mut child = env
            .cmd(&["rewrap", "--to", "local:new", "--resume", "--concurrency", "8", "vault"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // At every moment, every file decrypts with the old or the new key.
        for (name, plaintext) in &expected {
            let file = env.path(&format!("vault/{name}"));
            let got = env.decrypt_quick(&file);
            assert_eq!(
                got.as_deref(),
                Some(plaintext.as_slice()),
                "round {round}: {name} unreadable after SIGKILL at {delay:?}"
            );
        }
    }
    let out = env.ok(&["rewrap", "--to", "local:new", "--resume", "--json", "vault"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["failed"], 0);
    assert_eq!(
        summary["rewrapped"].as_u64().expect("n")
            + summary["skipped"].as_u64().expect("n")
            + summary["done_before"].as_u64().expect("n"),
        expected.len() as u64
    );
    let files = walk(&env.path("vault"));
    assert_eq!(
        files.len(),
        expected.len(),
        "no file lost, none duplicated, no temporary left: {:?}",
        files.iter().filter(|f| f.to_string_lossy().contains("rekey-tmp")).collect::<Vec<_>>()
    );
    for (name, plaintext) in &expected {
        let file = env.path(&format!("vault/{name}"));
        assert_eq!(key_ids(&env, &file), ["new/v1"], "{name}");
        assert_eq!(&env.decrypt(&file, &["local:new"]).expect("decrypts"), plaintext, "{name}");
    }
}

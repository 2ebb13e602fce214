//! The rotation engine end to end with the local keyring: the real binary on
//! real files, including SIGKILL at random moments and resumption.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self { dir: tempfile::tempdir().expect("tempdir") };
        for key in ["old", "new", "other"] {
            env.ok(&["keys", "create", key]);
        }
        env
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("REKEY_KEYSTORE", self.path("keys"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run rekey")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "rekey {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn encrypt(&self, key: &str, plaintext: &[u8], context: &str, out: &Path, text: bool) {
        let mut args = vec!["encrypt", "--key", key, "--context", context, "-o", out.to_str().expect("utf-8")];
        if text {
            args.push("--text");
        }
        let mut child =
            self.cmd(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), plaintext).expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn decrypt(&self, file: &Path, keys: &[&str]) -> Result<Vec<u8>, String> {
        let mut args = vec!["decrypt".to_owned(), file.to_string_lossy().into_owned()];
        for k in keys {
            args.push("--key".into());
            args.push((*k).into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args);
        if out.status.success() { Ok(out.stdout) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }

    /// A directory of `n` envelopes under `local:old`; returns file name → plaintext.
    fn vault(&self, n: usize) -> BTreeMap<String, Vec<u8>> {
        std::fs::create_dir_all(self.path("vault/sub")).expect("mkdir");
        let mut plaintexts = BTreeMap::new();
        // Encrypting through the binary one file at a time is slow; one
        // process makes the data key, the rest are copies of varied records.
        for i in 0..n {
            let name = if i % 3 == 0 { format!("sub/item{i:05}.rky") } else { format!("item{i:05}.rky") };
            let plaintext = format!("record {i}: {}", "x".repeat(i % 50)).into_bytes();
            self.encrypt("local:old", &plaintext, &format!("n={i}"), &self.path(&format!("vault/{name}")), i % 2 == 0);
            plaintexts.insert(name, plaintext);
        }
        plaintexts
    }

    fn snapshot(&self, dir: &str) -> BTreeMap<String, Vec<u8>> {
        let root = self.path(dir);
        walk(&root)
            .into_iter()
            .map(|p| {
                (p.strip_prefix(&root).expect("under root").display().to_string(), std::fs::read(&p).expect("read"))
            })
            .collect()
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn key_ids(env: &Env, file: &Path) -> Vec<String> {
    let out = env.ok(&["inspect", "--json", file.to_str().expect("utf-8")]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["encrypted_data_keys"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["key_id"].as_str().expect("str").to_owned())
        .collect()
}

#[test]
fn rewrap_a_directory_then_roll_it_back() {
    let env = Env::new();
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
    let env = Env::new();
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
    let env = Env::new();
    env.vault(4);
    env.ok(&["keys", "rotate", "old"]);
    env.ok(&["rewrap", "--to", "local:old", "vault"]);
    for file in walk(&env.path("vault")) {
        assert_eq!(key_ids(&env, &file), ["old/v2"]);
    }
}

#[test]
fn bad_items_are_reported_one_by_one_and_the_rest_complete() {
    let env = Env::new();
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
    use envelope_core::{Envelope, ParseOptions, decode_text, encode_text};
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
    let env = Env::new();
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
    let env = Env::new();
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

impl Env {
    /// Decrypts in-process (faster than a process per file): with all local keys.
    fn decrypt_quick(&self, file: &Path) -> Option<Vec<u8>> {
        use envelope_core::{Envelope, Keystore, LocalKeyring, ParseOptions, decode_text};
        let store = Keystore::new(self.path("keys"));
        let keyring = LocalKeyring::with_allowed(None, store.load_all().ok()?);
        let raw = std::fs::read(file).ok()?;
        let bytes = if raw.starts_with(b"RKY") { raw } else { decode_text(std::str::from_utf8(&raw).ok()?).ok()? };
        let envelope = Envelope::parse(&bytes, &ParseOptions::default()).ok()?;
        let key = keyring.unwrap_sync(&envelope.header().encrypted_data_keys, &envelope.header().context).ok()?;
        Some(envelope.open(&key).ok()?.to_vec())
    }
}

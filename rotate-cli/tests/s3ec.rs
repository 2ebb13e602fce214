//! Objects written by the official Amazon S3 Encryption Client for Python
//! (scripts/interop/s3ec.py) on the local server (moto), re-wrapped by
//! `rekey rewrap --items s3ec` through the real binary, then read back by
//! the same client with a keyring of the new key alone. Snapshots and
//! object surgery are boto3's (scripts/interop/s3_fixtures.py); the race
//! is the recording proxy's (scripts/interop/s3_proxy.py).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use common::{endpoint, interop_script, python};
use serde_json::Value;

static BUCKETS: AtomicU32 = AtomicU32::new(0);

struct Env {
    dir: tempfile::TempDir,
    endpoint: String,
}

impl Env {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir"), endpoint: endpoint() }
    }

    fn path(&self, p: &str) -> String {
        self.dir.path().join(p).to_str().expect("utf-8").to_owned()
    }

    fn py(&self, script: &str, args: &[&str]) -> String {
        let out = Command::new(python())
            .arg(interop_script(script))
            .args(args)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .output()
            .expect("python");
        assert!(out.status.success(), "{script} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
    }

    fn key(&self) -> String {
        self.py("kms_fixtures.py", &["create-key"])
    }

    /// A fresh bucket holding the client's objects under `d/`, keys K1 (the
    /// client's) and K2, K3; returns (bucket, manifest, k1, k2, k3).
    fn objects(&self) -> (String, String, String, String, String) {
        let (k1, k2, k3) = (self.key(), self.key(), self.key());
        let bucket = format!("s3ec-{}-{}", std::process::id(), BUCKETS.fetch_add(1, Ordering::Relaxed));
        self.py("s3_fixtures.py", &["create-bucket", &bucket]);
        let manifest = self.path(&format!("{bucket}.json"));
        self.py("s3ec.py", &["write", &bucket, "d/", &k1, &k3, &manifest]);
        (bucket, manifest, k1, k2, k3)
    }

    /// What the official client makes of each object with a keyring of `key` alone.
    fn read(&self, bucket: &str, key: &str, manifest: &str) -> BTreeMap<String, String> {
        serde_json::from_str(&self.py("s3ec.py", &["read", bucket, key, manifest])).expect("JSON")
    }

    fn snapshot(&self, bucket: &str) -> BTreeMap<String, Value> {
        serde_json::from_str(&self.py("s3_fixtures.py", &["snapshot", bucket, "d/"])).expect("JSON")
    }

    fn rekey_via(&self, endpoint: &str, args: &[&str]) -> Output {
        Command::new(common::Env::bin())
            .args(args)
            .current_dir(self.dir.path())
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

    /// rekey's JSON summary; `code` is the exit status wanted.
    fn rekey(&self, args: &[&str], code: i32) -> Value {
        let out = self.rekey_via(&self.endpoint, args);
        assert_eq!(out.status.code(), Some(code), "rekey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

fn rewrap<'a>(url: &'a str, from: &'a str, to: &'a str, journal: &'a str) -> Vec<&'a str> {
    vec!["rewrap", url, "--items", "s3ec", "--from", from, "--to", to, "--journal", journal, "--json", "--no-progress"]
}

/// The entry holding the wrapped key of an object of the manifest.
fn key_entry(name: &str) -> &'static str {
    if name.starts_with("d/v3/") { "x-amz-3" } else { "x-amz-key-v2" }
}

fn all_ok(read: &BTreeMap<String, String>) -> bool {
    read.len() == 12 && read.values().all(|r| r == "ok")
}

#[test]
#[ignore = "needs the local KMS server and the S3 Encryption Client: bash scripts/test.sh"]
fn official_client_objects_rewrapped_then_read_with_the_new_key_alone_rerun_skips_rollback_restores() {
    let env = Env::new();
    let (bucket, manifest, k1, k2, _) = env.objects();
    assert!(all_ok(&env.read(&bucket, &k1, &manifest)));
    let before = env.snapshot(&bucket);
    let url = format!("s3://{bucket}/d/");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));

    // The scan sees the client's formats; the dry run promises what the run does.
    let scan = env.rekey(&["scan", &url, "--json", "--no-progress"], 0);
    let s3ec = &scan["s3_encryption_client"];
    assert_eq!((s3ec["format_versions"]["V2"].as_u64(), s3ec["format_versions"]["V3"].as_u64()), (Some(6), Some(6)));
    let mut dry = rewrap(&url, &from, &to, "dry.journal");
    dry.push("--dry-run");
    let d = env.rekey(&dry, 0);
    assert_eq!((d["rewrapped"].as_u64(), d["failed"].as_u64()), (Some(12), Some(0)), "{d}");
    assert!(d["sample"].as_str().is_some_and(|s| s.ends_with("ok")), "{d}");
    assert_eq!(env.snapshot(&bucket), before, "the dry run wrote nothing");

    let mut run = rewrap(&url, &from, &to, "run1.journal");
    run.push("--verify");
    let s = env.rekey(&run, 0);
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(12), Some(0)), "{s}");

    // The client opens every object with the new key alone, and no longer with the old.
    assert!(all_ok(&env.read(&bucket, &k2, &manifest)), "{:?}", env.read(&bucket, &k2, &manifest));
    assert!(env.read(&bucket, &k1, &manifest).values().all(|r| r.starts_with("error")));

    // The stored bodies are the same bytes; everything but the key entry is
    // as it was (multipart objects get a copy's ETag, as any copy does).
    let after = env.snapshot(&bucket);
    for (name, b) in &before {
        let a = &after[name];
        for (field, value) in b.as_object().expect("fields") {
            if field == "Metadata" || (field == "ETag" && value.as_str().is_some_and(|e| e.contains('-'))) {
                continue;
            }
            assert_eq!(&a[field], value, "{name}: {field} changed");
        }
        let (mut old, mut new) = (b["Metadata"].clone(), a["Metadata"].clone());
        let entry = key_entry(name);
        assert_ne!(old[entry], new[entry], "{name}: the wrapped key replaced");
        old.as_object_mut().expect("map").remove(entry);
        new.as_object_mut().expect("map").remove(entry);
        assert_eq!(old, new, "{name}: every other entry kept");
    }

    // A second run skips every object and writes nothing.
    let again = env.rekey(&rewrap(&url, &from, &to, "run2.journal"), 0);
    assert_eq!((again["skipped"].as_u64(), again["rewrapped"].as_u64()), (Some(12), Some(0)), "{again}");
    assert_eq!(env.snapshot(&bucket), after);

    // Rollback restores every key entry: the old key opens them again.
    let r = env.rekey(&["rollback", "--journal", "run1.journal", "--json"], 0);
    assert_eq!(r["restored"], 12, "{r}");
    assert!(all_ok(&env.read(&bucket, &k1, &manifest)));
    let restored = env.snapshot(&bucket);
    for (name, b) in &before {
        assert_eq!(restored[name]["Metadata"], b["Metadata"], "{name}");
        assert_eq!(restored[name]["BodySha256"], b["BodySha256"], "{name}");
    }
}

#[test]
#[ignore = "needs the local KMS server and the S3 Encryption Client: bash scripts/test.sh"]
fn moved_and_foreign_keys_are_refused_and_a_tampered_commitment_is_not_laundered() {
    let env = Env::new();
    let (bucket, manifest, k1, k2, k3) = env.objects();
    let url = format!("s3://{bucket}/d/");
    // Attack 1: object 2's wrapped key replaced by object 1's (another context).
    let head = env.snapshot(&bucket);
    let moved = head["d/v3/small-1"]["Metadata"]["x-amz-3"].as_str().expect("key").to_owned();
    env.py("s3ec.py", &["set-metadata", &bucket, "d/v3/small-2", "x-amz-3", &moved]);
    // Attack 2: a V2 object's key replaced by one made under K3 (not --from) with the same context.
    env.py("s3ec.py", &["foreign-key", &bucket, "d/v2/small-0", &k3]);
    // Attack 3: a V3 object's key commitment tampered with.
    env.py(
        "s3ec.py",
        &["set-metadata", &bucket, "d/v3/small-0", "x-amz-d", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="],
    );
    let before = env.snapshot(&bucket);

    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let mut args = rewrap(&url, &from, &to, "run.journal");
    args.push("--verify");
    let s = env.rekey(&args, 6);
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(9), Some(3)), "{s}");
    let failures = std::fs::read_to_string(env.path("run.journal.failures.jsonl")).expect("failure report");
    assert!(failures.contains("d/v3/small-2") && failures.contains("d/v2/small-0"), "{failures}");
    // --verify opens the new key and finds the stored commitment is not its own.
    assert!(failures.contains("d/v3/small-0") && failures.contains("x-amz-d"), "{failures}");
    let after = env.snapshot(&bucket);
    for name in ["d/v3/small-2", "d/v2/small-0", "d/v3/small-0"] {
        assert_eq!(after[name], before[name], "{name}: refused, and left exactly as it was");
    }
    let read = env.read(&bucket, &k2, &manifest);
    let fine = read.iter().filter(|(_, r)| *r == "ok").count();
    assert_eq!(fine, 9, "{read:?}");

    // Without --verify the tampered object's key is re-wrapped and its
    // commitment kept as it was: nothing is laundered, the client still refuses it.
    let s = env.rekey(&rewrap(&url, &from, &to, "run2.journal"), 6);
    assert_eq!(
        (s["rewrapped"].as_u64(), s["skipped"].as_u64(), s["failed"].as_u64()),
        (Some(1), Some(9), Some(2)),
        "{s}"
    );
    let read = env.read(&bucket, &k2, &manifest);
    assert!(read["d/v3/small-0"].starts_with("error"), "{read:?}");
    let after = env.snapshot(&bucket);
    assert_eq!(after["d/v3/small-0"]["Metadata"]["x-amz-d"], before["d/v3/small-0"]["Metadata"]["x-amz-d"]);
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs the local KMS server and the S3 Encryption Client: bash scripts/test.sh"]
fn a_concurrent_writer_between_read_and_copy_is_never_overwritten() {
    let env = Env::new();
    let (bucket, _, k1, k2, _) = env.objects();
    let before = env.snapshot(&bucket);
    let victim = format!("/{bucket}/d/v3/small-1");
    let mut child = Command::new(python())
        .arg(interop_script("s3_proxy.py"))
        .arg(&env.endpoint)
        .args(["--record", &env.path("requests.jsonl"), "--race", &victim])
        .env("AWS_ENDPOINT_URL", &env.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("proxy");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port");
    let _proxy = Proxy(child);
    let via = format!("http://127.0.0.1:{}", line.trim());
    let url = format!("s3://{bucket}/d/");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let mut args = rewrap(&url, &from, &to, "run.journal");
    args.extend(["--no-preflight", "--concurrency", "1"]);
    let out = env.rekey_via(&via, &args);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(11), Some(1)), "{s}");
    let failures = std::fs::read_to_string(env.path("run.journal.failures.jsonl")).expect("failure report");
    assert!(failures.contains("d/v3/small-1") && failures.contains("changed_during_rotation"), "{failures}");
    // The other writer's object is intact: its body and metadata, not rekey's.
    let after = env.snapshot(&bucket);
    assert_ne!(after["d/v3/small-1"]["BodySha256"], before["d/v3/small-1"]["BodySha256"]);
    assert_eq!(after["d/v3/small-1"]["Metadata"]["edk"], "b3RoZXI=");
}

#[test]
#[ignore = "needs the local KMS server and the S3 Encryption Client: bash scripts/test.sh"]
fn inspect_shows_one_object_and_legacy_kms_wrapping_fails_with_its_reason_in_the_dry_run_too() {
    let env = Env::new();
    let (bucket, _, k1, k2, _) = env.objects();
    let out = env.rekey_via(&env.endpoint, &["inspect", &format!("s3://{bucket}/d/v2/small-2"), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let i: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((i["format_version"].as_str(), i["wrapping"].as_str()), (Some("V2"), Some("kms+context")), "{i}");
    assert_eq!(i["kms_encryption_context"]["aws:x-amz-cek-alg"], "AES/GCM/NoPadding");
    assert_eq!(i["kms_encryption_context"]["region"], "eu-west-1 (Paris)");
    // A V2 object relabelled as the legacy `kms` wrapping.
    env.py("s3ec.py", &["set-metadata", &bucket, "d/v2/small-1", "x-amz-wrap-alg", "kms"]);
    let url = format!("s3://{bucket}/d/");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let mut dry = rewrap(&url, &from, &to, "dry.journal");
    dry.extend(["--dry-run", "--include", "v2/small-1"]);
    let d = env.rekey(&dry, 6);
    assert_eq!((d["rewrapped"].as_u64(), d["failed"].as_u64()), (Some(0), Some(1)), "{d}");
    assert!(d["sample"].as_str().is_some_and(|s| s.contains("FAILED") && s.contains("legacy `kms`")), "{d}");
    let s = env.rekey(&rewrap(&url, &from, &to, "run.journal"), 6);
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(11), Some(1)), "{s}");
    let failures = std::fs::read_to_string(env.path("run.journal.failures.jsonl")).expect("failure report");
    assert!(failures.contains("legacy `kms`") && failures.contains("reencrypt"), "{failures}");
}

#[test]
#[ignore = "needs the local KMS server and the S3 Encryption Client: bash scripts/test.sh"]
fn keys_in_instruction_files_are_rewrapped_there_with_the_object_untouched_and_rolled_back() {
    let env = Env::new();
    let (bucket, manifest, k1, k2, _) = env.objects();
    for key in ["d/v3/small-1", "d/v2/small-2", "d/v3/big-0"] {
        env.py("s3ec.py", &["to-instruction-file", &bucket, key]);
    }
    // The official client reads them from their instruction files.
    assert!(all_ok(&env.read(&bucket, &k1, &manifest)));
    let before = env.snapshot(&bucket);
    let url = format!("s3://{bucket}/d/");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let scan = env.rekey(&["scan", &url, "--json", "--no-progress"], 0);
    let counts = &scan["s3_encryption_client"];
    assert_eq!((counts["instruction_files"].as_u64(), counts["key_in_instruction_file"].as_u64()), (Some(3), Some(2)));

    let s = env.rekey(&rewrap(&url, &from, &to, "run.journal"), 0);
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(12), Some(0)), "{s}");
    assert!(all_ok(&env.read(&bucket, &k2, &manifest)), "{:?}", env.read(&bucket, &k2, &manifest));
    let after = env.snapshot(&bucket);
    for key in ["d/v3/small-1", "d/v2/small-2", "d/v3/big-0"] {
        assert_eq!(after[key], before[key], "{key}: the object itself is untouched");
        let file = format!("{key}.instruction");
        assert_ne!(after[&file]["BodySha256"], before[&file]["BodySha256"], "{file} rewritten");
        assert_eq!(after[&file]["Metadata"], before[&file]["Metadata"], "{file}: its own metadata kept");
    }
    // The originals of the rewritten files were kept beside them (unversioned bucket).
    let backups = env.py("s3_fixtures.py", &["versions", &bucket, ".rekey-backup/"]);
    assert_eq!(serde_json::from_str::<BTreeMap<String, u64>>(&backups).expect("JSON").len(), 3, "{backups}");

    let again = env.rekey(&rewrap(&url, &from, &to, "run2.journal"), 0);
    assert_eq!((again["skipped"].as_u64(), again["rewrapped"].as_u64()), (Some(12), Some(0)), "{again}");
    let r = env.rekey(&["rollback", "--journal", "run.journal", "--json"], 0);
    assert_eq!(r["restored"], 12, "{r}");
    assert!(all_ok(&env.read(&bucket, &k1, &manifest)));
    let restored = env.snapshot(&bucket);
    for key in ["d/v3/small-1.instruction", "d/v2/small-2.instruction", "d/v3/big-0.instruction"] {
        assert_eq!(restored[key]["BodySha256"], before[key]["BodySha256"], "{key}: restored byte for byte");
    }
}

//! S3 targets against the local server (moto: S3 and KMS on one endpoint),
//! through the real binary. Fixtures and every check of the result are made
//! by boto3 (scripts/interop/s3_fixtures.py), independently of rekey. What
//! moto does not do (enforce `x-amz-copy-source-if-match` and a copy's
//! `If-None-Match`, implement UpdateObjectEncryption) is shown by a recording
//! proxy in front of it (scripts/interop/s3_proxy.py). `REKEY_BIN` runs them
//! against another build of rekey (see tests/common).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use common::{endpoint, interop_script, python};
use serde_json::Value;

/// What the AWS SDKs need to reach the local server.
fn aws_env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

static BUCKETS: AtomicU32 = AtomicU32::new(0);

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

    /// A fresh bucket with a name no other test uses.
    fn bucket(&self, versioned: bool) -> String {
        let name = format!("rekey-{}-{}", std::process::id(), BUCKETS.fetch_add(1, Ordering::Relaxed));
        let mut args = vec!["create-bucket", name.as_str()];
        if versioned {
            args.push("versioned");
        }
        self.fixtures(&args);
        name
    }

    fn run_py(&self, script_name: &str, args: &[&str]) -> String {
        let out = Command::new(python())
            .arg(interop_script(script_name))
            .args(args)
            .envs(aws_env(&self.endpoint))
            .output()
            .expect("python");
        assert!(out.status.success(), "{script_name} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
    }

    fn fixtures(&self, args: &[&str]) -> String {
        self.run_py("s3_fixtures.py", args)
    }

    fn create_key(&self) -> String {
        self.run_py("kms_fixtures.py", &["create-key"])
    }

    fn snapshot(&self, bucket: &str, prefix: &str) -> BTreeMap<String, Value> {
        serde_json::from_str(&self.fixtures(&["snapshot", bucket, prefix])).expect("snapshot JSON")
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

    fn ok(&self, args: &[&str]) -> Value {
        let out = self.rekey_via(&self.endpoint, args);
        assert!(out.status.success(), "rekey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// The recording proxy in front of moto; returns it and its URL.
    fn proxy(&self, record: &Path, extra: &[&str]) -> (Proxy, String) {
        let mut child = Command::new(python())
            .arg(interop_script("s3_proxy.py"))
            .arg(&self.endpoint)
            .arg("--record")
            .arg(record)
            .args(extra)
            .envs(aws_env(&self.endpoint))
            .stdout(Stdio::piped())
            .spawn()
            .expect("proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port");
        let url = format!("http://127.0.0.1:{}", line.trim());
        (Proxy(child), url)
    }
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn recorded(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("record JSON"))
        .collect()
}

/// Every field of two snapshots equal, except those named.
fn same_except(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>, except: &[&str]) {
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "the same objects");
    for (key, b) in before {
        let a = &after[key];
        for (field, value) in b.as_object().expect("object") {
            if !except.contains(&field.as_str()) {
                assert_eq!(&a[field], value, "{key}: {field} changed");
            }
        }
    }
}

const SOURCE_CONTEXT: &str = r#"{"purpose":"s3-object"}"#;
const DEST_CONTEXT: &str = r#"{"purpose":"s3-object","rotated":"2026-11"}"#;

fn rewrap_args<'a>(url: &'a str, k1: &'a str, k2: &'a str, journal: &'a str) -> Vec<&'a str> {
    vec![
        "rewrap",
        url,
        "--metadata-key",
        "edk",
        "--from",
        k1,
        "--to",
        k2,
        "--source-context",
        "purpose=s3-object",
        "--dest-context",
        "purpose=s3-object",
        "--dest-context",
        "rotated=2026-11",
        "--journal",
        journal,
        "--json",
        "--no-progress",
    ]
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn method_a_500_objects_rewrapped_every_other_property_kept_rerun_skips_rollback_restores() {
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let expected = env.path("expected.json");
    env.fixtures(&[
        "edk-objects",
        &bucket,
        "docs/",
        "500",
        &k1,
        &k3,
        SOURCE_CONTEXT,
        expected.to_str().expect("utf-8"),
    ]);
    let before = env.snapshot(&bucket, "docs/");
    let url = format!("s3://{bucket}/docs/");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));

    // The dry run: nothing written, the plan and the S3 and KMS actions named.
    let mut dry = rewrap_args(&url, &from, &to, "dry.journal");
    dry.push("--dry-run");
    let d = env.ok(&dry);
    assert_eq!(d["rewrapped"], 500, "{d}");
    assert!(
        d["iam_actions"].to_string().contains("s3:PutObject")
            && d["iam_actions"].to_string().contains("kms:ReEncryptTo")
    );
    assert!(d["preflight"].to_string().contains("versioning is off"), "{d}");
    same_except(&before, &env.snapshot(&bucket, "docs/"), &[]);

    let s = env.ok(&rewrap_args(&url, &from, &to, "run1.journal"));
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(500), Some(0)), "{s}");
    // One ReEncrypt per object, plus the one probe of a first object.
    assert!(s["kms"]["calls"]["ReEncrypt"].as_u64().is_some_and(|n| n <= 502), "{s}");

    // boto3 decrypts every new data key under K2 with the new context, to the same bytes.
    let decrypted: BTreeMap<String, String> =
        serde_json::from_str(&env.fixtures(&["decrypt-edks", &bucket, "docs/", &k2, DEST_CONTEXT])).expect("JSON");
    let wanted: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&expected).expect("expected")).expect("JSON");
    assert_eq!(decrypted.len(), 500);
    assert_eq!(decrypted, wanted);

    // Everything but the one metadata entry is as it was, field by field
    // (other metadata, content headers, cache control, expires, storage class,
    // SSE-KMS under K3 with the bucket key, tags, body, ETag).
    let after = env.snapshot(&bucket, "docs/");
    same_except(&before, &after, &["Metadata"]);
    for (key, b) in &before {
        let (mut old, mut new) = (b["Metadata"].clone(), after[key]["Metadata"].clone());
        assert_ne!(old["edk"], new["edk"], "{key}: edk replaced");
        old.as_object_mut().expect("map").remove("edk");
        new.as_object_mut().expect("map").remove("edk");
        assert_eq!(old, new, "{key}: the other metadata kept");
        assert!(after[key]["SSEKMSKeyId"].as_str().is_some_and(|k| k == k3), "{key}: still SSE-KMS under K3");
    }

    // A second run (its own journal) skips every object and writes nothing.
    let again = env.ok(&rewrap_args(&url, &from, &to, "run2.journal"));
    assert_eq!((again["skipped"].as_u64(), again["rewrapped"].as_u64()), (Some(500), Some(0)), "{again}");
    same_except(&after, &env.snapshot(&bucket, "docs/"), &[]);

    // Rollback puts every original data key back.
    let r = env.ok(&["rollback", "--journal", "run1.journal", "--json"]);
    assert_eq!(r["restored"], 500, "{r}");
    same_except(&before, &env.snapshot(&bucket, "docs/"), &[]);
    let r = env.ok(&["rollback", "--journal", "run1.journal", "--json"]);
    assert_eq!((r["restored"].as_u64(), r["skipped"].as_u64()), (Some(0), Some(500)), "a second rollback: {r}");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn method_a_copy_is_conditional_and_a_concurrent_writer_is_never_overwritten() {
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let expected = env.path("expected.json");
    env.fixtures(&["edk-objects", &bucket, "docs/", "6", &k1, &k3, SOURCE_CONTEXT, expected.to_str().expect("utf-8")]);
    let before = env.snapshot(&bucket, "docs/");
    let record = env.path("requests.jsonl");
    let victim = format!("/{bucket}/docs/obj0003.bin");
    let (_proxy, via) = env.proxy(&record, &["--race", &victim]);
    let url = format!("s3://{bucket}/docs/");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let mut args = rewrap_args(&url, &from, &to, "run.journal");
    // The SSE-KMS context the objects were written with: S3 never returns it, so the operator names it.
    args.extend(["--no-preflight", "--concurrency", "1", "--sse-context", "app=docs"]);
    let out = env.rekey_via(&via, &args);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(5), Some(1)), "{s}");
    let failures = std::fs::read_to_string(env.path("run.journal.failures.jsonl")).expect("failure report");
    assert!(failures.contains("obj0003.bin") && failures.contains("changed_during_rotation"), "{failures}");

    // The other writer's version is intact.
    let after = env.snapshot(&bucket, "docs/");
    let victim_key = "docs/obj0003.bin";
    assert_eq!(after[victim_key]["Metadata"]["edk"], "b3RoZXI=");
    assert_ne!(after[victim_key]["BodySha256"], before[victim_key]["BodySha256"]);

    // Every copy rekey sent was conditional on the ETag it read, named its
    // source, replaced the metadata, copied the tags and resent SSE-KMS under K3.
    let copies: Vec<Value> = recorded(&record)
        .into_iter()
        .filter(|r| r["method"] == "PUT" && r["headers"].get("x-amz-copy-source").is_some())
        .collect();
    assert_eq!(copies.len(), 5);
    for copy in &copies {
        let h = &copy["headers"];
        let key = copy["path"].as_str().expect("path").trim_start_matches(&format!("/{bucket}/")).to_owned();
        assert_eq!(h["x-amz-copy-source-if-match"], before[&key]["ETag"], "{copy}");
        assert_eq!(h["x-amz-metadata-directive"], "REPLACE");
        assert_eq!(h["x-amz-tagging-directive"], "COPY");
        assert_eq!(h["x-amz-server-side-encryption"], "aws:kms");
        assert_eq!(h["x-amz-server-side-encryption-aws-kms-key-id"], k3.as_str());
        assert_eq!(h["x-amz-server-side-encryption-bucket-key-enabled"], "true");
        // base64 of {"app":"docs"}
        assert_eq!(h["x-amz-server-side-encryption-context"], "eyJhcHAiOiJkb2NzIn0=");
        assert_eq!(h["x-amz-meta-owner"], before[&key]["Metadata"]["owner"]);
        assert_eq!(h["cache-control"], "max-age=3600, private");
    }
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn method_b_300_objects_moved_by_copy_with_a_20_mib_multipart_object_others_left_alone() {
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(true);
    env.fixtures(&["sse-objects", &bucket, "logs/", "299", &k1, "20"]);
    env.fixtures(&["sse-objects", &bucket, "logs/other-", "12", &k3]);
    let before = env.snapshot(&bucket, "logs/");
    assert_eq!(before.len(), 312);
    let url = format!("s3://{bucket}/logs/");
    let args = [
        "s3",
        "sse-rotate",
        &url,
        "--to",
        &k2,
        "--from",
        &k1,
        "--method",
        "copy",
        "--multipart-threshold",
        "8388608",
        "--part-size",
        "5242880",
        "--journal",
        "sse.journal",
        "--json",
        "--no-progress",
    ];
    let s = env.ok(&args);
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(300), Some(0)), "{s}");
    assert_eq!(s["not_selected"], 12, "objects under K3 are not this run's: {s}");
    let after = env.snapshot(&bucket, "logs/");
    for (key, b) in &before {
        let a = &after[key];
        let wanted = if key.contains("other-") { &k3 } else { &k2 };
        assert_eq!(a["SSEKMSKeyId"].as_str(), Some(wanted.as_str()), "{key}");
        for field in
            ["BodySha256", "Metadata", "Tags", "ContentType", "CacheControl", "ContentLength", "ServerSideEncryption"]
        {
            assert_eq!(a[field], b[field], "{key}: {field}");
        }
    }
    // The 20 MiB object went through UploadPartCopy (its ETag is a multipart one now).
    assert!(after["logs/big.bin"]["ETag"].as_str().is_some_and(|e| e.contains('-')));

    // A rerun skips everything; rollback puts K1 back, and the versioned bucket kept the old versions.
    let mut rerun = args.to_vec();
    rerun[14] = "sse2.journal";
    let again = env.ok(&rerun);
    assert_eq!((again["skipped"].as_u64(), again["rewrapped"].as_u64()), (Some(300), Some(0)), "{again}");
    // The versioned bucket kept each original as a previous version.
    let versions: BTreeMap<String, u64> =
        serde_json::from_str(&env.fixtures(&["versions", &bucket, "logs/"])).expect("JSON");
    for (key, n) in &versions {
        assert_eq!(*n, if key.contains("other-") { 1 } else { 2 }, "{key}");
    }
    let r = env.ok(&["rollback", "--journal", "sse.journal", "--json"]);
    assert_eq!(r["restored"], 300, "{r}");
    let back = env.snapshot(&bucket, "logs/");
    for (key, b) in &before {
        assert_eq!(back[key]["SSEKMSKeyId"], b["SSEKMSKeyId"], "{key}");
        assert_eq!(back[key]["BodySha256"], b["BodySha256"], "{key}");
        assert_eq!(back[key]["Tags"], b["Tags"], "{key}");
    }
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn method_b_update_object_encryption_is_sent_right_and_falls_back_to_the_copy() {
    let env = Env::new();
    let (k1, k2) = (env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    env.fixtures(&["sse-objects", &bucket, "a/", "4", &k1]);
    let before = env.snapshot(&bucket, "a/");
    let url = format!("s3://{bucket}/a/");

    // An endpoint that implements it (the proxy does it the way S3 does).
    let record = env.path("emulated.jsonl");
    let (proxy, via) = env.proxy(&record, &["--update-encryption", "emulate"]);
    let args = ["s3", "sse-rotate", &url, "--to", &k2, "--journal", "u.journal", "--json", "--no-progress"];
    let out = env.rekey_via(&via, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(proxy);
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((s["rewrapped"].as_u64(), s["method"].as_str()), (Some(4), Some("auto")), "{s}");
    let updates: Vec<Value> = recorded(&record).into_iter().filter(|r| r["query"] == "encryption").collect();
    // One capability probe on a missing key, then one request per object; no copy, no PutObject.
    assert_eq!(updates.len(), 5, "{updates:?}");
    // (KMS requests go through the proxy too; S3 writes are what matter.)
    let others: Vec<Value> = recorded(&record)
        .into_iter()
        .filter(|r| r["query"] != "encryption" && r["headers"].get("x-amz-target").is_none())
        .collect();
    assert!(others.is_empty(), "only UpdateObjectEncryption was sent: {others:?}");
    for u in &updates {
        assert_eq!(u["method"], "PUT");
        let body = u["body"].as_str().expect("body");
        assert!(body.contains("<ObjectEncryption") && body.contains("<SSE-KMS>"), "{body}");
        assert!(body.contains(&format!("<KMSKeyArn>{k2}</KMSKeyArn>")), "{body}");
    }
    let after = env.snapshot(&bucket, "a/");
    for (key, b) in &before {
        assert_eq!(after[key]["SSEKMSKeyId"].as_str(), Some(k2.as_str()));
        assert_eq!(after[key]["BodySha256"], b["BodySha256"]);
    }

    // An endpoint that does not implement it: --method update stops before
    // touching anything; auto falls back to the copy.
    let record = env.path("missing.jsonl");
    let (_proxy, via) = env.proxy(&record, &[]);
    let back = ["s3", "sse-rotate", &url, "--to", &k1, "--method", "update", "--journal", "x.journal", "--json"];
    let refused = env.rekey_via(&via, &back);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--method copy"));
    let auto = ["s3", "sse-rotate", &url, "--to", &k1, "--journal", "y.journal", "--json", "--no-progress"];
    let out = env.rekey_via(&via, &auto);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((s["rewrapped"].as_u64(), s["method"].as_str()), (Some(4), Some("copy")), "{s}");
    let copies = recorded(&record).iter().filter(|r| r["headers"].get("x-amz-copy-source").is_some()).count();
    assert_eq!(copies, 4);
    let restored = env.snapshot(&bucket, "a/");
    same_except(&before, &restored, &["ETag"]);
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn scan_counts_objects_per_kms_key() {
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let expected = env.path("expected.json");
    env.fixtures(&["edk-objects", &bucket, "m/", "5", &k1, &k3, SOURCE_CONTEXT, expected.to_str().expect("utf-8")]);
    env.fixtures(&["sse-objects", &bucket, "m/logs/", "7", &k2]);
    let s = env.ok(&["scan", &format!("s3://{bucket}/m/"), "--metadata-key", "edk", "--json", "--no-progress"]);
    assert_eq!(s["objects"], 12, "{s}");
    assert_eq!(s["sse_kms_keys"][&k3], 5, "{s}");
    assert_eq!(s["sse_kms_keys"][&k2], 7, "{s}");
    assert_eq!(s["metadata_bare_data_keys"], 5, "{s}");
    assert_eq!(s["metadata_missing"], 7, "{s}");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn method_a_killed_at_random_moments_and_resumed_loses_nothing() {
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let expected = env.path("expected.json");
    env.fixtures(&[
        "edk-objects",
        &bucket,
        "docs/",
        "300",
        &k1,
        &k3,
        SOURCE_CONTEXT,
        expected.to_str().expect("utf-8"),
    ]);
    let url = format!("s3://{bucket}/docs/");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let mut args = rewrap_args(&url, &from, &to, "run.journal");
    args.extend(["--resume", "--concurrency", "8"]);
    // A deterministic pseudo-random schedule of SIGKILLs, then runs until one finishes.
    let mut seed = u64::from(std::process::id()) | 1;
    let mut kills = 0;
    let finished = loop {
        let mut child = Command::new(common::Env::bin())
            .args(&args)
            .current_dir(env.dir.path())
            .envs(aws_env(&env.endpoint))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rekey");
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let wait = std::time::Duration::from_millis(150 + (seed >> 33) % 700);
        std::thread::sleep(wait);
        if kills < 5 && child.try_wait().expect("wait").is_none() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            kills += 1;
            continue;
        }
        let out = child.wait_with_output().expect("rekey");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        break serde_json::from_slice::<Value>(&out.stdout).expect("JSON");
    };
    assert_eq!(finished["failed"], 0, "{finished}");
    assert!(kills > 0, "no run was killed; the schedule is too slow for this machine");
    // Every object's data key opens under K2 (and only there) to the original bytes.
    let decrypted: BTreeMap<String, String> =
        serde_json::from_str(&env.fixtures(&["decrypt-edks", &bucket, "docs/", &k2, DEST_CONTEXT])).expect("JSON");
    let wanted: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&expected).expect("expected")).expect("JSON");
    assert_eq!(decrypted, wanted, "after {kills} kills");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn emit_batch_job_writes_the_documented_manifest_and_job_and_changes_nothing() {
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    env.fixtures(&["sse-objects", &bucket, "b/", "9", &k1]);
    env.fixtures(&["sse-objects", &bucket, "b/k3 ", "3", &k3]);
    let before = env.snapshot(&bucket, "b/");
    let url = format!("s3://{bucket}/b/");
    for (method, operation) in [("auto", "S3UpdateObjectEncryption"), ("copy", "S3PutObjectCopy")] {
        let dir = format!("batch-{method}");
        let s = env.ok(&[
            "s3",
            "sse-rotate",
            &url,
            "--to",
            &k2,
            "--from",
            &k1,
            "--method",
            method,
            "--emit-batch-job",
            &dir,
            "--json",
            "--no-progress",
        ]);
        assert_eq!(s["manifest_objects"], 9, "{s}");
        // The manifest: S3BatchOperations_CSV_20180820, bucket and URL-encoded key, no header.
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(env.path(&format!("{dir}/manifest.csv")))
            .expect("manifest");
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert_eq!(rows.len(), 9);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), 2);
            assert_eq!(&row[0], bucket.as_str());
            assert_eq!(&row[1], format!("b/log{i:04}.txt").as_str(), "objects under K3 are not listed");
        }
        let job: Value =
            serde_json::from_str(&std::fs::read_to_string(env.path(&format!("{dir}/job.json"))).expect("job"))
                .expect("job JSON");
        assert_eq!(job["Manifest"]["Spec"]["Format"], "S3BatchOperations_CSV_20180820");
        assert_eq!(job["Manifest"]["Spec"]["Fields"], serde_json::json!(["Bucket", "Key"]));
        assert_eq!(job["Report"]["Format"], "Report_CSV_20180820");
        let op = &job["Operation"][operation];
        let arn = if method == "copy" { &op["SSEAwsKmsKeyId"] } else { &op["ObjectEncryption"]["SSEKMS"]["KMSKeyArn"] };
        assert_eq!(arn.as_str(), Some(k2.as_str()), "{job}");
    }
    same_except(&before, &env.snapshot(&bucket, "b/"), &[]);

    // On a versioned bucket, the UpdateObjectEncryption manifest pins the version that was read;
    // the copy manifest does not (a pinned copy would bring old content back over a newer write).
    let versioned = env.bucket(true);
    env.fixtures(&["sse-objects", &versioned, "v/", "4", &k1]);
    for (method, width) in [("auto", 3), ("copy", 2)] {
        let dir = format!("batch-versioned-{method}");
        let url = format!("s3://{versioned}/v/");
        let args = ["s3", "sse-rotate", &url, "--to", &k2, "--method", method, "--emit-batch-job", &dir, "--json"];
        assert_eq!(env.ok(&args)["manifest_objects"], 4);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(env.path(&format!("{dir}/manifest.csv")))
            .expect("manifest");
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert!(rows.iter().all(|r| r.len() == width), "{method}: {rows:?}");
        if width == 3 {
            let mut ids: Vec<&str> = rows.iter().map(|r| &r[2]).collect();
            assert!(ids.iter().all(|v| !v.is_empty() && *v != "null"), "{ids:?}");
            ids.dedup();
            assert_eq!(ids.len(), 4, "one version per object");
        }
        let job: Value =
            serde_json::from_str(&std::fs::read_to_string(env.path(&format!("{dir}/job.json"))).expect("job"))
                .expect("job JSON");
        let fields = if width == 3 {
            serde_json::json!(["Bucket", "Key", "VersionId"])
        } else {
            serde_json::json!(["Bucket", "Key"])
        };
        assert_eq!(job["Manifest"]["Spec"]["Fields"], fields);
    }
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn envelope_bodies_rewrapped_a_64_mib_one_in_constant_memory_then_decrypted_with_only_the_new_key() {
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    // Small envelopes (binary and text form) and one 64 MiB framed envelope, made by rekey, uploaded by boto3.
    let mut names = Vec::new();
    for i in 0..8 {
        let plain = format!("plain{i}");
        std::fs::write(env.path(&plain), format!("document {i} ").repeat(1 + i * 500)).expect("write");
        names.push(plain);
    }
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(env.path("plainbig"), &big).expect("write");
    names.push("plainbig".into());
    for (i, plain) in names.iter().enumerate() {
        let sealed = format!("{plain}.rky");
        let mut args = vec!["encrypt", "--key", from.as_str(), "--context", "app=vault", plain.as_str(), "-o", &sealed];
        if i % 3 == 1 {
            args.push("--text");
        }
        let out = env.rekey_via(&env.endpoint, &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let key = format!("env/{sealed}");
        env.fixtures(&["put-file", &bucket, &key, env.path(&sealed).to_str().expect("utf-8"), &k3]);
    }
    let before = env.snapshot(&bucket, "env/");
    let url = format!("s3://{bucket}/env/");
    let args = ["rewrap", &url, "--from", &from, "--to", &to, "--journal", "env.journal", "--json", "--no-progress"];
    // Peak memory, as the kernel counts it.
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(env.path("rss"))
        .arg(common::Env::bin())
        .args(args)
        .current_dir(env.dir.path())
        .envs(aws_env(&env.endpoint))
        .output()
        .expect("rekey under /usr/bin/time");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(9), Some(0)), "{s}");
    let rss_kib: u64 = std::fs::read_to_string(env.path("rss")).expect("rss").trim().parse().expect("KiB");
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB for a 64 MiB object");
    eprintln!("rewrap of 9 envelope objects, one of 64 MiB: peak RSS {rss_kib} KiB");

    // Every property but the body kept; every body decrypts with only K2 allowed, to the plaintext.
    let after = env.snapshot(&bucket, "env/");
    same_except(&before, &after, &["BodySha256", "ETag", "ContentLength"]);
    for plain in &names {
        let got = format!("{plain}.got");
        env.fixtures(&["get", &bucket, &format!("env/{plain}.rky"), env.path(&got).to_str().expect("utf-8")]);
        let clear = format!("{plain}.clear");
        let out =
            env.rekey_via(&env.endpoint, &["decrypt", "--key", &to, "--context", "app=vault", &got, "-o", &clear]);
        assert!(out.status.success(), "{plain}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(env.path(&clear)).expect("read"), std::fs::read(env.path(plain)).expect("read"));
        let old = env.rekey_via(&env.endpoint, &["decrypt", "--key", &from, &got, "-o", "x"]);
        assert!(!old.status.success(), "{plain}: the old key no longer opens it");
    }

    // A rerun skips them; rollback puts every original back byte for byte.
    let again = env.ok(&["rewrap", &url, "--from", &from, "--to", &to, "--journal", "env2.journal", "--json"]);
    assert_eq!((again["skipped"].as_u64(), again["rewrapped"].as_u64()), (Some(9), Some(0)), "{again}");
    let r = env.ok(&["rollback", "--journal", "env.journal", "--json"]);
    assert_eq!(r["restored"], 9, "{r}");
    let back = env.snapshot(&bucket, "env/");
    same_except(&before, &back, &["ETag"]);
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn object_lists_from_an_s3_inventory_csv_or_plain_keys_replace_the_listing() {
    let env = Env::new();
    let (k1, k2) = (env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    env.fixtures(&["sse-objects", &bucket, "l/with space ", "6", &k1]);
    let url = format!("s3://{bucket}/l/");
    // An S3 Inventory CSV data file: quoted fields, URL-encoded keys, other buckets and prefixes left out.
    let inventory = format!(
        "\"{bucket}\",\"l/with+space+log0001.txt\",\"12\"\n\"other-bucket\",\"l/x\",\"1\"\n\
         \"{bucket}\",\"elsewhere/log.txt\",\"3\"\n\"{bucket}\",\"l/with%20space%20log0004.txt\",\"9\"\n"
    );
    std::fs::write(env.path("inventory.csv"), inventory).expect("write");
    std::fs::write(env.path("keys.txt"), "l/with space log0002.txt\n\nl/with space log0003.txt\n").expect("write");
    let mut changed = Vec::new();
    for (list, journal, n) in [("inventory.csv", "a.journal", 2), ("keys.txt", "b.journal", 2)] {
        let s = env.ok(&[
            "s3",
            "sse-rotate",
            &url,
            "--to",
            &k2,
            "--method",
            "copy",
            "--object-list",
            list,
            "--journal",
            journal,
            "--json",
            "--no-progress",
        ]);
        assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(n), Some(0)), "{list}: {s}");
        changed.extend(match list {
            "keys.txt" => vec![2, 3],
            _ => vec![1, 4],
        });
    }
    for (key, fields) in env.snapshot(&bucket, "l/") {
        let i: usize = key.trim_start_matches("l/with space log").trim_end_matches(".txt").parse().expect("index");
        let wanted = if changed.contains(&i) { &k2 } else { &k1 };
        assert_eq!(fields["SSEKMSKeyId"].as_str(), Some(wanted.as_str()), "{key}");
    }
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn envelope_bodies_reencrypted_with_the_originals_kept_in_the_bucket_and_rolled_back() {
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    for i in 0..6 {
        let plain = format!("plain{i}");
        std::fs::write(env.path(&plain), format!("record {i} ").repeat(1 + i * 300)).expect("write");
        let sealed = format!("{plain}.rky");
        let out =
            env.rekey_via(&env.endpoint, &["encrypt", "--key", &from, "--context", "app=vault", &plain, "-o", &sealed]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        env.fixtures(&["put-file", &bucket, &format!("e/{sealed}"), env.path(&sealed).to_str().expect("utf-8"), &k3]);
    }
    let before = env.snapshot(&bucket, "e/");
    let url = format!("s3://{bucket}/e/");
    let s = env.ok(&[
        "reencrypt",
        &url,
        "--from",
        &from,
        "--to",
        &to,
        "--journal",
        "re.journal",
        "--json",
        "--no-progress",
    ]);
    assert_eq!((s["reencrypted"].as_u64(), s["failed"].as_u64()), (Some(6), Some(0)), "{s}");
    // The originals were kept under the backup prefix, in a folder of this run, with their properties.
    let backups = env.snapshot(&bucket, ".rekey-backup/");
    assert_eq!(backups.len(), 6);
    let run = backups.keys().next().expect("a backup").split('/').nth(1).expect("the run's folder").to_owned();
    for (key, b) in &before {
        let kept = &backups[&format!(".rekey-backup/{run}/{key}")];
        for field in ["BodySha256", "Metadata", "Tags", "ContentType", "SSEKMSKeyId"] {
            assert_eq!(kept[field], b[field], "{key}: {field}");
        }
    }
    let after = env.snapshot(&bucket, "e/");
    same_except(&before, &after, &["BodySha256", "ETag", "ContentLength"]);
    for i in 0..6 {
        let got = format!("got{i}");
        env.fixtures(&["get", &bucket, &format!("e/plain{i}.rky"), env.path(&got).to_str().expect("utf-8")]);
        let clear = format!("clear{i}");
        let out =
            env.rekey_via(&env.endpoint, &["decrypt", "--key", &to, "--context", "app=vault", &got, "-o", &clear]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            std::fs::read(env.path(&clear)).expect("read"),
            std::fs::read(env.path(&format!("plain{i}"))).expect("read")
        );
    }
    let r = env.ok(&["rollback", "--journal", "re.journal", "--json"]);
    assert_eq!(r["restored"], 6, "{r}");
    same_except(&before, &env.snapshot(&bucket, "e/"), &["ETag"]);
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn method_b_copy_and_envelope_bodies_never_overwrite_a_concurrent_writer() {
    let env = Env::new();
    let (k1, k2) = (env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let record = env.path("requests.jsonl");

    // Method B by copy: the object replaced between rekey's HeadObject and its CopyObject.
    env.fixtures(&["sse-objects", &bucket, "logs/", "5", &k1]);
    let (proxy, via) = env.proxy(&record, &["--race", &format!("/{bucket}/logs/log0002.txt")]);
    let url = format!("s3://{bucket}/logs/");
    let args = [
        "s3",
        "sse-rotate",
        &url,
        "--to",
        &k2,
        "--from",
        &k1,
        "--method",
        "copy",
        "--journal",
        "sse.journal",
        "--json",
        "--no-progress",
        "--no-preflight",
        "--concurrency",
        "1",
    ];
    let out = env.rekey_via(&via, &args);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(s["failed"], 1, "{s}");
    let failures = std::fs::read_to_string(env.path("sse.journal.failures.jsonl")).expect("failure report");
    assert!(failures.contains("log0002.txt") && failures.contains("changed_during_rotation"), "{failures}");
    let after = env.snapshot(&bucket, "logs/");
    assert_eq!(after["logs/log0002.txt"]["Metadata"]["edk"], "b3RoZXI=", "the other writer's version is kept");
    assert_ne!(after["logs/log0002.txt"]["SSEKMSKeyId"].as_str(), Some(k2.as_str()));
    drop(proxy);

    // Envelope bodies: rewritten only if the object is still the one read (If-Match).
    let from = format!("kms:{k1}");
    for i in 0..4 {
        let (plain, sealed) = (format!("p{i}"), format!("p{i}.rky"));
        std::fs::write(env.path(&plain), format!("document {i}")).expect("write");
        let out = env.rekey_via(&env.endpoint, &["encrypt", "--key", &from, &plain, "-o", &sealed]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        env.fixtures(&["put-file", &bucket, &format!("env/{sealed}"), env.path(&sealed).to_str().expect("utf-8"), &k1]);
    }
    let (_proxy, via) = env.proxy(&record, &["--race", &format!("/{bucket}/env/p1.rky")]);
    let url = format!("s3://{bucket}/env/");
    let to = format!("kms:{k2}");
    let args = [
        "rewrap",
        &url,
        "--from",
        &from,
        "--to",
        &to,
        "--journal",
        "env.journal",
        "--json",
        "--no-progress",
        "--no-preflight",
        "--concurrency",
        "1",
    ];
    let out = env.rekey_via(&via, &args);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(3), Some(1)), "{s}");
    let failures = std::fs::read_to_string(env.path("env.journal.failures.jsonl")).expect("failure report");
    assert!(failures.contains("p1.rky") && failures.contains("changed_during_rotation"), "{failures}");
    env.fixtures(&["get", &bucket, "env/p1.rky", env.path("p1.got").to_str().expect("utf-8")]);
    assert_eq!(std::fs::read(env.path("p1.got")).expect("read"), b"the other writer's version");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn an_s3_inventory_manifest_with_gzipped_csv_data_files_is_the_object_list() {
    let env = Env::new();
    let k1 = env.create_key();
    let bucket = env.bucket(true);
    env.fixtures(&["sse-objects", &bucket, "logs/", "6", &k1]);
    // The layout `aws s3 cp --recursive` of an inventory destination leaves: manifest.json and data/*.csv.gz.
    std::fs::create_dir_all(env.path("inv/data")).expect("mkdir");
    let row =
        |key: &str, latest: bool, marker: bool| format!("\"{bucket}\",\"{key}\",\"v1\",\"{latest}\",\"{marker}\"\n");
    let mut first = String::new();
    for i in 0..4 {
        first.push_str(&row(&format!("logs/log{i:04}.txt"), true, false));
    }
    first.push_str(&row("logs/log0000.txt", false, false)); // an older version: left alone
    first.push_str(&row("logs/gone.txt", true, true)); // a delete marker: nothing to rotate
    first.push_str("\"another-bucket\",\"logs/log0005.txt\",\"v1\",\"true\",\"false\"\n");
    let second = format!("{}{}", row("logs/log0004.txt", true, false), row("logs/log%2B0005.txt", true, false));
    for (name, text) in [("a.csv", first), ("b.csv", second)] {
        std::fs::write(env.path(&format!("inv/data/{name}")), text).expect("write");
        let status = Command::new("gzip").arg(env.path(&format!("inv/data/{name}"))).status().expect("gzip");
        assert!(status.success());
    }
    let manifest = serde_json::json!({
        "sourceBucket": bucket,
        "destinationBucket": "arn:aws:s3:::inventory",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker",
        "files": [
            {"key": "inv/source/config/data/a.csv.gz", "size": 1, "MD5checksum": "x"},
            {"key": "inv/source/config/data/b.csv.gz", "size": 1, "MD5checksum": "x"},
        ],
    });
    std::fs::write(env.path("inv/manifest.json"), manifest.to_string()).expect("manifest");
    let url = format!("s3://{bucket}/logs/");
    let s = env.ok(&["scan", &url, "--object-list", "inv/manifest.json", "--json", "--no-progress"]);
    // log0000..log0004 are current; "log+0005.txt" does not exist and is counted unreadable.
    assert_eq!((s["sse_kms_keys"][&k1].as_u64(), s["unreadable"].as_u64()), (Some(5), Some(1)), "{s}");

    std::fs::write(env.path("inv/manifest.json"), manifest.to_string().replace("\"CSV\"", "\"ORC\"")).expect("w");
    let out = env.rekey_via(&env.endpoint, &["scan", &url, "--object-list", "inv/manifest.json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("configure the inventory as CSV"));
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn a_large_envelope_object_is_reencrypted_streamed_in_constant_memory_and_rolled_back() {
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    // Two runs, on 24 MiB and on 56 MiB: constant memory means the second costs about what the first does.
    let mut rss = Vec::new();
    let mut before = BTreeMap::new();
    for (prefix, mib) in [("a", 24u32), ("b", 56)] {
        let big: Vec<u8> = (0..mib << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        std::fs::write(env.path(prefix), &big).expect("write");
        let sealed = format!("{prefix}.rky");
        let out =
            env.rekey_via(&env.endpoint, &["encrypt", "--key", &from, "--context", "app=vault", prefix, "-o", &sealed]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        env.fixtures(&[
            "put-file",
            &bucket,
            &format!("{prefix}/{sealed}"),
            env.path(&sealed).to_str().expect("utf-8"),
            &k3,
        ]);
        before.extend(env.snapshot(&bucket, &format!("{prefix}/")));
        let url = format!("s3://{bucket}/{prefix}/");
        let journal = format!("{prefix}.journal");
        let args = ["reencrypt", &url, "--from", &from, "--to", &to, "--journal", &journal, "--json", "--no-progress"];
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o"])
            .arg(env.path("rss"))
            .arg(common::Env::bin())
            .args(args)
            .current_dir(env.dir.path())
            .envs(aws_env(&env.endpoint))
            .output()
            .expect("rekey under /usr/bin/time");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!((s["reencrypted"].as_u64(), s["failed"].as_u64()), (Some(1), Some(0)), "{s}");
        rss.push(std::fs::read_to_string(env.path("rss")).expect("rss").trim().parse::<u64>().expect("KiB"));

        // Every property but the body kept; the body opens with only K2, to the same bytes.
        let got = format!("{prefix}.got");
        env.fixtures(&["get", &bucket, &format!("{prefix}/{sealed}"), env.path(&got).to_str().expect("utf-8")]);
        let clear = format!("{prefix}.clear");
        let out =
            env.rekey_via(&env.endpoint, &["decrypt", "--key", &to, "--context", "app=vault", &got, "-o", &clear]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::read(env.path(&clear)).expect("read") == big, "{prefix}: the same plaintext");
        let old = env.rekey_via(&env.endpoint, &["decrypt", "--key", &from, &got, "-o", &format!("{prefix}.x")]);
        assert!(!old.status.success(), "the old key no longer opens it");
    }
    eprintln!("reencrypt peak RSS: 24 MiB object {} KiB, 56 MiB object {} KiB", rss[0], rss[1]);
    assert!(rss[1] < rss[0] + 6 * 1024, "32 MiB more object cost {} KiB more memory", rss[1].saturating_sub(rss[0]));
    let after: BTreeMap<String, Value> = ["a/", "b/"].iter().flat_map(|p| env.snapshot(&bucket, p)).collect();
    same_except(&before, &after, &["BodySha256", "ETag", "ContentLength"]);
    assert_eq!(env.snapshot(&bucket, ".rekey-backup/").len(), 2, "each original kept under the backup prefix first");

    // Rollback puts the originals back, byte for byte.
    for prefix in ["a", "b"] {
        env.ok(&["rollback", "--journal", &format!("{prefix}.journal"), "--json"]);
    }
    let back: BTreeMap<String, Value> = ["a/", "b/"].iter().flat_map(|p| env.snapshot(&bucket, p)).collect();
    same_except(&before, &back, &["ETag"]);
}

/// Seals `n` small documents under `key` and puts them under `prefix` (unversioned bucket).
fn put_envelopes(env: &Env, bucket: &str, prefix: &str, n: usize, key: &str, sse_key: &str) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let (plain, sealed) = (format!("{prefix}doc{i}"), format!("{prefix}doc{i}.rky").replace('/', "_"));
        let plain = plain.replace('/', "_");
        std::fs::write(env.path(&plain), format!("document {i} of {prefix}")).expect("write");
        let out =
            env.rekey_via(&env.endpoint, &["encrypt", "--key", key, "--context", "app=vault", &plain, "-o", &sealed]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let object = format!("{prefix}doc{i}.rky");
        env.fixtures(&["put-file", bucket, &object, env.path(&sealed).to_str().expect("utf-8"), sse_key]);
        names.push(object);
    }
    names
}

/// Whether the object decrypts with `key` alone.
fn opens_with(env: &Env, bucket: &str, object: &str, key: &str) -> bool {
    let got = env.path("opens_with.got");
    env.fixtures(&["get", bucket, object, got.to_str().expect("utf-8")]);
    let out = env.rekey_via(
        &env.endpoint,
        &[
            "decrypt",
            "--key",
            key,
            "--context",
            "app=vault",
            got.to_str().expect("utf-8"),
            "-o",
            "opens_with.clear",
            "--force",
        ],
    );
    if !out.status.success() {
        eprintln!("{object} does not open with {key}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn two_reencryptions_in_a_row_keep_both_runs_backups_and_roll_back_to_the_first_key() {
    // Issue 24: the second run copied its originals over the first run's
    // backups (same `.rekey-backup/KEY`), and `rollback j1` then copied
    // k2-sealed "backups" back, reporting "3 restored" with 0 objects under k1.
    let env = Env::new();
    let (k1, k2, k3, sse) = (env.create_key(), env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let (k1, k2, k3) = (format!("kms:{k1}"), format!("kms:{k2}"), format!("kms:{k3}"));
    let objects = put_envelopes(&env, &bucket, "t/", 3, &k1, &sse);
    let url = format!("s3://{bucket}/t/");
    for (from, to, journal) in [(&k1, &k2, "j1"), (&k2, &k3, "j2")] {
        let s =
            env.ok(&["reencrypt", &url, "--from", from, "--to", to, "--journal", journal, "--json", "--no-progress"]);
        assert_eq!((s["reencrypted"].as_u64(), s["failed"].as_u64()), (Some(3), Some(0)), "{journal}: {s}");
    }
    let r = env.ok(&["rollback", "--journal", "j2", "--json"]);
    assert_eq!(r["restored"], 3, "{r}");
    for object in &objects {
        assert!(opens_with(&env, &bucket, object, &k2), "{object} is back under k2");
    }
    let r = env.ok(&["rollback", "--journal", "j1", "--json"]);
    assert_eq!(r["restored"], 3, "{r}");
    for object in &objects {
        assert!(opens_with(&env, &bucket, object, &k1), "{object} is back under k1");
    }
    assert_eq!(env.snapshot(&bucket, ".rekey-backup/").len(), 6, "each run kept its own backups");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn rollback_refuses_a_backup_that_is_not_the_original_and_restores_the_others() {
    let env = Env::new();
    let (k1, k2, sse) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let (k1, k2) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let objects = put_envelopes(&env, &bucket, "t/", 3, &k1, &sse);
    let url = format!("s3://{bucket}/t/");
    let s = env.ok(&["reencrypt", &url, "--from", &k1, "--to", &k2, "--journal", "j", "--json", "--no-progress"]);
    assert_eq!(s["reencrypted"], 3, "{s}");
    // Someone (or an older rekey run) writes over one backup.
    let backups = env.snapshot(&bucket, ".rekey-backup/");
    let victim = backups.keys().find(|k| k.ends_with("t/doc1.rky")).expect("doc1's backup").clone();
    env.fixtures(&["put", &bucket, &victim, "not the original"]);
    let out = env.rekey_via(&env.endpoint, &["rollback", "--journal", "j", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((r["restored"].as_u64(), r["failed"].as_u64()), (Some(2), Some(1)), "{r}");
    assert!(stderr.contains("t/doc1.rky") && stderr.contains(&victim) && stderr.contains("SHA-256"), "{stderr}");
    assert!(opens_with(&env, &bucket, &objects[0], &k1) && opens_with(&env, &bucket, &objects[2], &k1));
    assert!(opens_with(&env, &bucket, &objects[1], &k2), "the object whose backup is wrong is left as it is");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn an_empty_or_overlapping_backup_prefix_is_refused_before_anything_is_written() {
    let env = Env::new();
    let (k1, k2, sse) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let (k1, k2) = (format!("kms:{k1}"), format!("kms:{k2}"));
    put_envelopes(&env, &bucket, "t/", 2, &k1, &sse);
    let before = env.snapshot(&bucket, "");
    let url = format!("s3://{bucket}/t/");
    for prefix in ["", "t/", "t/old/", "t"] {
        let out = env.rekey_via(
            &env.endpoint,
            &[
                "reencrypt",
                &url,
                "--from",
                &k1,
                "--to",
                &k2,
                "--backup-prefix",
                prefix,
                "--journal",
                "j",
                "--no-progress",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--backup-prefix {prefix:?}: {stderr}");
        assert!(stderr.contains("--backup-prefix") && stderr.contains("hint:"), "{stderr}");
        assert!(!env.path("j").exists(), "no journal for --backup-prefix {prefix:?}");
    }
    assert_eq!(env.snapshot(&bucket, ""), before, "nothing written");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn over_long_keys_in_an_object_list_are_failed_items_not_a_panic_and_lines_are_bounded() {
    // Issue 24: a 70,000-character key panicked inside the SDK (InvalidUri(TooLong)),
    // on the run and again on --resume; a 400 MB line without a newline was read whole.
    let env = Env::new();
    let (k1, k2) = (env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    env.fixtures(&["sse-objects", &bucket, "logs/", "3", &k1]);
    let huge = format!("logs/{}", "k".repeat(70_000));
    let just_over = format!("logs/{}", "j".repeat(1020));
    let mut list = format!("logs/log0000.txt\n{huge}\nlogs/log0001.txt\n{just_over}\nlogs/log0002.txt\nlogs/");
    list.push_str(&"z".repeat(100 << 20)); // the last line, 100 MiB, no newline
    std::fs::write(env.path("keys.txt"), list).expect("write");
    let url = format!("s3://{bucket}/logs/");
    for resume in [false, true] {
        let mut args = vec![
            "s3",
            "sse-rotate",
            &url,
            "--to",
            &k2,
            "--method",
            "copy",
            "--object-list",
            "keys.txt",
            "--journal",
            "j",
            "--json",
            "--no-progress",
        ];
        if resume {
            args.push("--resume");
        }
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o"])
            .arg(env.path("rss"))
            .arg(common::Env::bin())
            .args(&args)
            .current_dir(env.dir.path())
            .envs(aws_env(&env.endpoint))
            .output()
            .expect("rekey under /usr/bin/time");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "resume {resume}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let rotated = if resume { (Some(0), Some(3)) } else { (Some(3), Some(0)) };
        assert_eq!((s["rewrapped"].as_u64(), s["done_before"].as_u64()), rotated, "{s}");
        assert_eq!(s["failed"], 3, "{s}");
        let report = std::fs::read_to_string(env.path("j.failures.jsonl")).expect("failure report");
        assert!(report.contains("bad_input") && report.contains("S3 keys are at most 1,024 bytes"), "{report}");
        assert!(report.len() < 20_000, "reports name an over-long key by its start: {} bytes", report.len());
        // GNU time says "Command exited with non-zero status 6" first.
        let rss = std::fs::read_to_string(env.path("rss")).expect("rss");
        let rss: u64 = rss.lines().last().unwrap_or_default().trim().parse().expect("KiB");
        eprintln!("peak RSS with a 100 MiB list line: {rss} KiB");
        assert!(rss < 100 * 1024, "a 100 MiB line cost {rss} KiB");
    }
    let after = env.snapshot(&bucket, "logs/");
    assert!(after.values().all(|o| o["SSEKMSKeyId"].as_str() == Some(k2.as_str())), "{after:?}");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn on_a_versioned_bucket_rollback_copies_back_the_version_it_checked() {
    let env = Env::new();
    let (k1, k2, sse) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(true);
    let (k1, k2) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let objects = put_envelopes(&env, &bucket, "v/", 2, &k1, &sse);
    let url = format!("s3://{bucket}/v/");
    let s = env.ok(&["reencrypt", &url, "--from", &k1, "--to", &k2, "--journal", "j", "--json", "--no-progress"]);
    assert_eq!(s["reencrypted"], 2, "{s}");
    assert!(env.snapshot(&bucket, ".rekey-backup/").is_empty(), "the previous version is the backup");
    let r = env.ok(&["rollback", "--journal", "j", "--json"]);
    assert_eq!(r["restored"], 2, "{r}");
    for object in &objects {
        assert!(opens_with(&env, &bucket, object, &k1), "{object} is back under k1");
    }
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn backup_copies_are_conditional_on_a_free_name_and_work_where_that_is_not_implemented() {
    let env = Env::new();
    let (k1, k2, sse) = (env.create_key(), env.create_key(), env.create_key());
    let bucket = env.bucket(false);
    let (k1, k2) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let objects = put_envelopes(&env, &bucket, "c/", 2, &k1, &sse);
    let url = format!("s3://{bucket}/c/");
    for (mode, journal) in [("forward", "j1"), ("notimplemented", "j2")] {
        let record = env.path(&format!("{mode}.jsonl"));
        let (_proxy, via) = env.proxy(&record, &["--conditional-copy", mode]);
        let (from, to) = if journal == "j1" { (&k1, &k2) } else { (&k2, &k1) };
        let out = env.rekey_via(
            &via,
            &["reencrypt", &url, "--from", from, "--to", to, "--journal", journal, "--json", "--no-progress"],
        );
        assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        let backups: Vec<Value> = recorded(&record)
            .into_iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.contains("/.rekey-backup/")))
            .collect();
        // Each backup is first asked for with If-None-Match: * (a server without it
        // answers 501, and then the copy goes again without it).
        let mut first: BTreeMap<String, bool> = BTreeMap::new();
        for r in &backups {
            let path = r["path"].as_str().expect("path").to_owned();
            first.entry(path).or_insert(r["headers"]["if-none-match"] == "*");
        }
        assert_eq!(first.len(), 2, "{mode}: two backups");
        assert!(first.values().all(|c| *c), "{mode}: {first:?}");
        let retried = backups.len() - first.len();
        assert_eq!(retried, if mode == "forward" { 0 } else { 2 }, "{mode}");
    }
    for object in &objects {
        assert!(opens_with(&env, &bucket, object, &k1), "{object} went k1 -> k2 -> k1");
    }
    assert_eq!(env.snapshot(&bucket, ".rekey-backup/").len(), 4, "two runs, two backups each");
}

/// Issue 24, item 11: objects whose SSE key id was stored as an alias are
/// this run's when --from names that alias (they were counted "not
/// selected (--sample/--shard/--limit)" and left alone), and objects under
/// other keys are counted as outside --from, not outside flags never given.
#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn sse_objects_stored_under_an_alias_are_selected_by_it_and_the_others_counted_as_outside_from() {
    let env = Env::new();
    let (k1, k2, k3) = (env.create_key(), env.create_key(), env.create_key());
    let alias = format!("alias/logs-{}-{}", std::process::id(), BUCKETS.fetch_add(1, Ordering::Relaxed));
    env.run_py("kms_fixtures.py", &["create-alias", &alias, &k1]);
    let bucket = env.bucket(true);
    env.fixtures(&["sse-objects", &bucket, "logs/", "5", &alias]);
    env.fixtures(&["sse-objects", &bucket, "logs/other-", "3", &k3]);
    let url = format!("s3://{bucket}/logs/");
    let from = format!("kms:{alias}");
    let args = [
        "s3",
        "sse-rotate",
        &url,
        "--to",
        &k2,
        "--from",
        &from,
        "--method",
        "copy",
        "--journal",
        "a.journal",
        "--no-progress",
    ];
    let out = env.rekey_via(&env.endpoint, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("5 rewrapped, 0 failed"), "the alias's objects are this run's: {stdout}");
    assert!(stdout.contains("  not selected (under a key --from does not name): 3\n"), "{stdout}");
    assert!(!stdout.contains("--sample"), "{stdout}");
    let after = env.snapshot(&bucket, "logs/");
    for (key, a) in &after {
        let wanted = if key.contains("other-") { &k3 } else { &k2 };
        assert_eq!(a["SSEKMSKeyId"].as_str(), Some(wanted.as_str()), "{key}");
    }
}

//! DynamoDB targets against the local server (moto serves DynamoDB and KMS
//! on one endpoint), through the real binary. Fixtures and every check of
//! the result are made by boto3 (scripts/interop/dynamodb_fixtures.py),
//! independently of rekey. A race between the read and the update, which
//! moto cannot make on demand, is made by a proxy in front of it
//! (scripts/interop/dynamodb_race_proxy.py); throttling by the fault proxy.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use common::{endpoint, interop_script, python};
use serde_json::Value;

/// Items of the large test: 1,000 keeps it near a minute on moto (which serves
/// about 150 requests a second here); `REKEY_DYNAMODB_ITEMS=10000` runs the full size.
const MANY: &str = "1000";

fn aws_env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

static TABLES: AtomicU32 = AtomicU32::new(0);

struct Env {
    dir: tempfile::TempDir,
    endpoint: String,
}

/// A child process killed when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Env {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir"), endpoint: endpoint() }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn py(&self, script: &str, args: &[&str]) -> String {
        let out = Command::new(python())
            .arg(interop_script(script))
            .args(args)
            .envs(aws_env(&self.endpoint))
            .output()
            .expect("python");
        assert!(out.status.success(), "{script} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
    }

    fn fixtures(&self, args: &[&str]) -> String {
        self.py("dynamodb_fixtures.py", args)
    }

    fn create_key(&self) -> String {
        self.py("kms_fixtures.py", &["create-key"])
    }

    /// A fresh table of `n` items over 7 partition keys; returns its name
    /// and the data keys its blobs hold.
    fn table(&self, n: &str, key: &str) -> (String, BTreeMap<String, Value>) {
        let name = format!("rekey-{}-{}", std::process::id(), TABLES.fetch_add(1, Ordering::Relaxed));
        self.fixtures(&["create-table", &name]);
        let keys = self.path(&format!("{name}.keys.json"));
        self.fixtures(&["fill", &name, n, "7", key, keys.to_str().expect("utf-8")]);
        (name, read_json(&keys))
    }

    fn snapshot(&self, table: &str) -> BTreeMap<String, Value> {
        serde_json::from_str(&self.fixtures(&["snapshot", table])).expect("snapshot JSON")
    }

    fn decrypt(&self, table: &str, key: &str) -> BTreeMap<String, Value> {
        serde_json::from_str(&self.fixtures(&["decrypt", table, key])).expect("decrypt JSON")
    }

    fn rekey_via(&self, endpoint: &str, args: &[&str]) -> Output {
        self.command(endpoint, args).stdout(Stdio::piped()).stderr(Stdio::piped()).output().expect("run rekey")
    }

    fn command(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut c = Command::new(common::Env::bin());
        c.args(args)
            .current_dir(self.dir.path())
            .envs(aws_env(endpoint))
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) -> Value {
        let out = self.rekey_via(&self.endpoint, args);
        assert!(out.status.success(), "rekey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// A proxy script in front of moto; returns it and its URL.
    fn proxy(&self, script: &str, extra: &[&str]) -> (Killed, String) {
        let mut child = Command::new(python())
            .arg(interop_script(script))
            .arg(&self.endpoint)
            .args(extra)
            .envs(aws_env(&self.endpoint))
            .stdout(Stdio::piped())
            .spawn()
            .expect("proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port");
        (Killed(child), format!("http://127.0.0.1:{}", line.trim()))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> T {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON")
}

fn rewrap<'a>(url: &'a str, from: &'a str, to: &'a str, journal: &'a str) -> Vec<&'a str> {
    vec![
        "rewrap",
        url,
        "--items",
        "edk",
        "--from",
        from,
        "--to",
        to,
        "--attribute",
        "edk_b",
        "--attribute",
        "edk_s",
        "--journal",
        journal,
        "--json",
        "--no-progress",
    ]
}

/// Every item's attributes other than the two rotated ones.
fn untouched(snapshot: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    snapshot
        .iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            let o = v.as_object_mut().expect("item");
            o.remove("edk_b");
            o.remove("edk_s");
            (k.clone(), v)
        })
        .collect()
}

fn kinds(snapshot: &BTreeMap<String, Value>) -> BTreeMap<String, (bool, bool)> {
    snapshot.iter().map(|(k, v)| (k.clone(), (v["edk_b"].get("B").is_some(), v["edk_s"].get("S").is_some()))).collect()
}

/// Change entries per item, over journals.
fn changes(journals: &[PathBuf]) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for j in journals {
        // A running journal may not exist yet, and may end in a line being written.
        let text = std::fs::read_to_string(j).unwrap_or_default();
        for line in text.lines() {
            // Each line is a checksum, a space, then the entry.
            let entry = line.split_once(' ').map_or(line, |(_, e)| e);
            let Ok(v) = serde_json::from_str::<Value>(entry) else { continue };
            if v["type"] == "change" {
                *seen.entry(v["item"].as_str().expect("item").to_owned()).or_insert(0) += 1;
            }
        }
    }
    seen
}

#[test]
#[ignore = "needs the local KMS and DynamoDB server: bash scripts/test.sh"]
fn many_items_rewrapped_in_both_types_then_rolled_back_byte_for_byte() {
    let env = Env::new();
    let (k1, k2) = (env.create_key(), env.create_key());
    let n = std::env::var("REKEY_DYNAMODB_ITEMS").unwrap_or_else(|_| MANY.to_owned());
    let (table, keys) = env.table(&n, &k1);
    let before = env.snapshot(&table);
    let url = format!("dynamodb://{table}");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));

    // The scan counts by format and needs no key.
    let s = env.ok(&[
        "scan",
        &url,
        "--items",
        "edk",
        "--attribute",
        "edk_b",
        "--attribute",
        "edk_s",
        "--json",
        "--no-progress",
    ]);
    assert_eq!(s["bare_data_keys"].as_u64(), Some(2 * before.len() as u64), "{s}");

    let dry = env.ok(&[&rewrap(&url, &from, &to, "dry.journal")[..], &["--dry-run"]].concat());
    let iam = dry["iam_actions"].to_string();
    for action in ["dynamodb:Scan", "dynamodb:UpdateItem", "dynamodb:DescribeTable", "kms:ReEncryptFrom"] {
        assert!(iam.contains(action), "{action} missing from {iam}");
    }
    assert_eq!(env.snapshot(&table), before, "a dry run writes nothing");

    let s = env.ok(&rewrap(&url, &from, &to, "run.journal"));
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["rewrapped"].as_u64(), Some(2 * before.len() as u64), "{s}");
    assert_eq!(s["dynamodb_throttled_retries"], 0, "{s}");

    // boto3 opens every blob under K2 (and checks KMS says so) to the same data key.
    let after = env.snapshot(&table);
    let opened = env.decrypt(&table, &k2);
    assert_eq!(opened.len(), keys.len());
    for (item, wanted) in &keys {
        assert_eq!(&opened[item], wanted, "{item}");
    }
    assert_eq!(untouched(&after), untouched(&before), "other attributes unchanged");
    assert_eq!(kinds(&after), kinds(&before), "binary stays binary, text stays text");
    assert!(after.values().zip(before.values()).all(|(a, b)| a["edk_b"] != b["edk_b"] && a["edk_s"] != b["edk_s"]));

    // A rerun finds nothing under K1 and changes nothing.
    let rerun = env.ok(&rewrap(&url, &from, &to, "rerun.journal"));
    assert_eq!(rerun["rewrapped"], 0, "{rerun}");

    let r = env.ok(&["rollback", "--journal", "run.journal", "--json"]);
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(env.snapshot(&table), before, "rollback restores every item byte for byte");
}

#[test]
#[ignore = "needs the local KMS and DynamoDB server: bash scripts/test.sh"]
fn two_shards_beside_an_application_move_every_other_item_once_and_lose_no_write() {
    let env = Env::new();
    let (k1, k2) = (env.create_key(), env.create_key());
    let (table, keys) = env.table("1500", &k1);
    let url = format!("dynamodb://{table}");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let app_log = env.path("app.json");
    let app = Command::new(python())
        .arg(interop_script("dynamodb_fixtures.py"))
        .args(["app-writer", &table, &k1, "6", app_log.to_str().expect("utf-8")])
        .envs(aws_env(&env.endpoint))
        .spawn()
        .expect("app");
    let app = Killed(app);
    let shards: Vec<Child> = ["0/2", "1/2"]
        .iter()
        .enumerate()
        .map(|(i, shard)| {
            let journal = format!("shard{i}.journal");
            let mut args = rewrap(&url, &from, &to, &journal);
            args.extend(["--shard", shard, "--segments", "8", "--concurrency", "4"]);
            env.command(&env.endpoint, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("rekey")
        })
        .collect();
    let mut moved = 0;
    for child in shards {
        let out = child.wait_with_output().expect("rekey");
        let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        moved += s["rewrapped"].as_u64().unwrap_or_default();
    }
    let mut app = app;
    assert!(app.0.wait().expect("app").success());
    let written: BTreeMap<String, String> = read_json(&app_log);
    assert!(!written.is_empty(), "the application wrote nothing");

    // Every item the application left alone: moved exactly once, under K2, same data keys.
    let journals = [env.path("shard0.journal"), env.path("shard1.journal")];
    let per_item = changes(&journals);
    let mut left_alone = 0;
    for item in keys.keys().filter(|item| !written.contains_key(*item)) {
        let (pk, sk) = item.split_once('/').expect("pk/sk");
        let id = format!("{table} pk={pk},sk={sk}");
        left_alone += 1;
        assert_eq!(per_item.get(&id), Some(&1), "{item} moved {:?} times", per_item.get(&id));
    }
    assert!(left_alone > 1000, "{left_alone}");
    assert!(moved >= 2 * left_alone as u64, "{moved} < {left_alone} items x 2");
    // No application write lost: its last data key is what each item it wrote opens to, under K1 or K2.
    let last = rerun_until_clean(&env, &url, &from, &to);
    assert_eq!(last["failed"], 0, "{last}");
    let opened = env.decrypt(&table, &k2);
    for (item, data_key) in &written {
        assert_eq!(opened[item]["edk_s"], *data_key, "{item}: the application's write was lost");
    }
    for (item, wanted) in &keys {
        assert_eq!(opened[item]["edk_b"], wanted["edk_b"], "{item}");
        if !written.contains_key(item) {
            assert_eq!(opened[item]["edk_s"], wanted["edk_s"], "{item}");
        }
    }
}

/// A last, unsharded pass over what the shards left (items the application changed under them).
fn rerun_until_clean(env: &Env, url: &str, from: &str, to: &str) -> Value {
    env.ok(&rewrap(url, from, to, "final.journal"))
}

#[test]
#[ignore = "needs the local KMS and DynamoDB server: bash scripts/test.sh"]
fn killed_mid_run_resumed_then_rolled_back_byte_for_byte() {
    let env = Env::new();
    let (k1, k2) = (env.create_key(), env.create_key());
    let (table, keys) = env.table("1000", &k1);
    let before = env.snapshot(&table);
    let url = format!("dynamodb://{table}");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let mut args = rewrap(&url, &from, &to, "run.journal");
    args.extend(["--concurrency", "2", "--segments", "4"]);
    let mut child =
        env.command(&env.endpoint, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("rekey");
    // SIGKILL once some changes are journaled, well before the end.
    let journal = env.path("run.journal");
    let started = std::time::Instant::now();
    while changes(std::slice::from_ref(&journal)).len() < 150 {
        assert!(started.elapsed().as_secs() < 120, "the run made no progress");
        assert!(child.try_wait().expect("wait").is_none(), "the run ended before it was killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let done_before = changes(std::slice::from_ref(&journal)).len();
    assert!(done_before < before.len(), "killed too late: {done_before}");

    args.push("--resume");
    let s = env.ok(&args);
    assert_eq!(s["failed"], 0, "{s}");
    let opened = env.decrypt(&table, &k2);
    for (item, wanted) in &keys {
        assert_eq!(&opened[item], wanted, "{item}");
    }
    // Each item was changed at most once more by the resumed run.
    assert!(changes(std::slice::from_ref(&journal)).values().all(|n| *n <= 2));

    let r = env.ok(&["rollback", "--journal", "run.journal", "--json"]);
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(env.snapshot(&table), before, "rollback restores every item byte for byte");
}

#[test]
#[ignore = "needs the local KMS and DynamoDB server: bash scripts/test.sh"]
fn a_write_between_read_and_update_is_kept_and_reported() {
    let env = Env::new();
    let (k1, k2) = (env.create_key(), env.create_key());
    let (table, _) = env.table("20", &k1);
    let url = format!("dynamodb://{table}");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    // The proxy lets the first UpdateItem's item be rewritten by "the application" just before it.
    let record = env.path("race.json");
    let (_proxy, proxy_url) =
        env.proxy("dynamodb_race_proxy.py", &["--race-first", "3", "--record", record.to_str().expect("utf-8")]);
    let out = env.rekey_via(&proxy_url, &rewrap(&url, &from, &to, "run.journal"));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // One UpdateItem per item: both of a raced item's attributes are left for a rerun.
    assert_eq!(s["failed"], 6, "{s}");
    assert_eq!(s["rewrapped"], 34, "{s}");
    let failures = std::fs::read_to_string(env.path("run.journal.failures.jsonl")).expect("failures");
    assert_eq!(failures.matches("changed_during_rotation").count(), 6, "{failures}");
    // The application's values are what the items hold.
    let raced: BTreeMap<String, String> = read_json(&record);
    let now = env.snapshot(&table);
    assert_eq!(raced.len(), 3);
    for (item, value) in &raced {
        assert_eq!(now[item]["edk_s"]["S"], *value, "{item}: the application's write was overwritten");
    }
    // The rollback leaves them alone too.
    let r = env.ok(&["rollback", "--journal", "run.journal", "--json"]);
    assert_eq!(r["failed"], 0, "{r}");
    let now = env.snapshot(&table);
    for (item, value) in &raced {
        assert_eq!(now[item]["edk_s"]["S"], *value, "{item}");
    }
}

#[test]
#[ignore = "needs the local KMS and DynamoDB server: bash scripts/test.sh"]
fn throttling_slows_the_run_fails_nothing_and_is_counted() {
    let env = Env::new();
    let (k1, k2) = (env.create_key(), env.create_key());
    let (table, keys) = env.table("60", &k1);
    let url = format!("dynamodb://{table}");
    let (from, to) = (format!("kms:{k1}"), format!("kms:{k2}"));
    let (_proxy, proxy_url) = env.proxy(
        "fault_proxy.py",
        &[
            "--throttle-every",
            "4",
            "--only",
            "UpdateItem,Scan",
            "--throttle-code",
            "ProvisionedThroughputExceededException",
        ],
    );
    let out = env.rekey_via(&proxy_url, &rewrap(&url, &from, &to, "run.journal"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(s["failed"], 0, "{s}");
    assert!(s["dynamodb_throttled_retries"].as_u64().unwrap_or_default() >= 10, "{s}");
    let opened = env.decrypt(&table, &k2);
    for (item, wanted) in &keys {
        assert_eq!(&opened[item], wanted, "{item}");
    }
}

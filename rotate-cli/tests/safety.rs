//! The engine's safety properties, each attacked through the real binary
//! with local keys (no server): labels are not proof, a concurrent writer is
//! never overwritten, the journal survives what crashes do to it, two runs
//! never share a target, and nothing is written before validation.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Env, walk};
use envelope_core::hazmat::{Envelope, Materials, ParseOptions, decode_text, encode_text, seal};
use envelope_core::{EncryptedDataKey, EncryptionContext};

/// The envelope bytes of a file (binary or text form).
fn envelope_bytes(file: &Path) -> Vec<u8> {
    let raw = std::fs::read(file).expect("read");
    if raw.starts_with(b"RKY") { raw } else { decode_text(std::str::from_utf8(&raw).expect("utf-8")).expect("b64") }
}

/// Rewrites `file` with `edks` as its key list (header core and body unchanged), in text form.
fn set_edks(file: &Path, edks: &[EncryptedDataKey]) {
    let bytes = envelope_bytes(file);
    let envelope = Envelope::parse(&bytes, &ParseOptions::default()).expect("envelope");
    let spliced = envelope.with_encrypted_data_keys(edks).expect("encode");
    std::fs::write(file, encode_text(&spliced)).expect("write");
}

fn edks_of(file: &Path) -> (Vec<EncryptedDataKey>, EncryptionContext) {
    let bytes = envelope_bytes(file);
    let envelope = Envelope::parse(&bytes, &ParseOptions::default()).expect("envelope");
    (envelope.header().encrypted_data_keys.clone(), envelope.header().context.clone())
}

#[test]
fn a_wrapped_key_labelled_with_the_destination_is_not_proof() {
    let env = Env::with_keys(&["old", "new"]);
    std::fs::create_dir_all(env.path("a")).expect("mkdir");
    std::fs::create_dir_all(env.path("b")).expect("mkdir");
    for dir in ["a", "b"] {
        let file = env.path(&format!("{dir}/item.rky"));
        env.encrypt("local:old", b"the only copy", "app=x", &file, true);
        // Plant a wrapped key of another data key, under the destination key, labelled as such.
        let (mut edks, context) = edks_of(&file);
        let (_, planted) = env.keyring("new").generate_sync(&context).expect("planted");
        edks.push(planted);
        set_edks(&file, &edks);
    }
    let a = env.path("a/item.rky");
    let b = env.path("b/item.rky");

    // Rewrap: the old key may go only for a key this run made from it.
    env.ok(&["rewrap", "--to", "local:new", "--from", "local:old", "--verify", "a"]);
    assert_eq!(env.decrypt(&a, &["local:new"]).expect("decrypts with the new key alone"), b"the only copy");

    // Remove: nothing proves the planted key opens the item, so the old one stays.
    let before = std::fs::read(&b).expect("read");
    let out = env.run(&["rewrap", "--to", "local:new", "--remove", "local:old", "--from", "local:new", "--json", "b"]);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&b).expect("read"), before, "the item is untouched");
    assert_eq!(env.decrypt(&b, &["local:old"]).expect("still decrypts"), b"the only copy");
    let report = std::fs::read_to_string(env.path("b.rekey-journal.failures.jsonl")).expect("failure report");
    assert!(report.contains("unproven_keys"), "{report}");
}

#[test]
fn rewrap_without_from_over_kms_items_is_a_usage_error_before_any_write() {
    let env = Env::with_keys(&["old", "new"]);
    std::fs::create_dir_all(env.path("vault")).expect("mkdir");
    let file = env.path("vault/item.rky");
    env.encrypt("local:old", b"x", "app=x", &file, true);
    let kms =
        EncryptedDataKey::new("aws-kms", "arn:aws:kms:us-east-1:111122223333:key/1234", vec![7; 96]).expect("edk");
    set_edks(&file, &[kms]);
    let stderr = env.fails(&["rewrap", "--to", "local:new", "vault"], 2);
    assert!(stderr.contains("--from"), "{stderr}");
    assert!(!env.path("vault.rekey-journal").exists(), "nothing written before the preflight");
}

#[test]
fn a_concurrent_writer_is_never_overwritten() {
    let env = Env::with_keys(&["old", "new"]);
    let n = 1500;
    std::fs::create_dir_all(env.path("vault")).expect("mkdir");
    // One envelope made by the binary, then copies: the application's data.
    env.encrypt("local:old", b"original", "app=x", &env.path("vault/seed"), true);
    let seed = std::fs::read(env.path("vault/seed")).expect("seed");
    std::fs::remove_file(env.path("vault/seed")).expect("rm");
    for i in 0..n {
        std::fs::write(env.path(&format!("vault/{i:05}.rky")), &seed).expect("write");
    }
    let keyring = env.keyring("old");
    let context = EncryptionContext::from_pairs([("app", "x")]).expect("context");
    let (data_key, edk) = keyring.generate_sync(&context).expect("generate");
    let materials = Materials { data_key, encrypted_data_keys: vec![edk] };

    let mut child = env
        .cmd(&["rewrap", "--to", "local:new", "--concurrency", "8", "--no-progress", "vault"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // The application: atomically replaces random files while the run goes on.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, dir) = (Arc::clone(&stop), env.path("vault"));
        std::thread::spawn(move || {
            let mut written: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut seed = 0x2545_f491_4f6c_dd1d_u64;
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                round += 1;
                let name = format!("{:05}.rky", seed % n as u64);
                let plaintext = format!("application write {round}").into_bytes();
                let sealed = seal(&materials, &context, &plaintext).expect("seal");
                let temp = dir.join(format!(".app-{round}"));
                std::fs::write(&temp, encode_text(&sealed)).expect("write");
                std::fs::rename(&temp, dir.join(&name)).expect("rename");
                written.insert(name, plaintext);
            }
            written
        })
    };
    let status = child.wait().expect("wait");
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(matches!(status.code(), Some(0 | 6)), "{status:?}");
    assert!(written.len() > 50, "the application wrote during the run ({} files)", written.len());
    for (name, plaintext) in &written {
        let got = env.decrypt_quick(&env.path(&format!("vault/{name}")));
        assert_eq!(got.as_deref(), Some(plaintext.as_slice()), "{name}: the application's write was lost");
    }
}

#[test]
fn a_torn_journal_is_repaired_on_resume_and_rollback_restores_everything() {
    let env = Env::with_keys(&["old", "new"]);
    env.vault(40);
    let before = env.snapshot("vault");
    env.ok(&["rewrap", "--to", "local:new", "--limit", "20", "--no-progress", "vault"]);
    // A crash in the middle of an append: the last line is cut short.
    let journal = env.path("vault.rekey-journal");
    let bytes = std::fs::read(&journal).expect("journal");
    std::fs::write(&journal, &bytes[..bytes.len() - 9]).expect("tear");
    env.ok(&["rewrap", "--to", "local:new", "--resume", "--no-progress", "vault"]);
    for file in walk(&env.path("vault")) {
        assert_eq!(env.key_ids(&file), ["new/v1"], "{}", file.display());
    }
    env.ok(&["rollback", "--journal", "vault.rekey-journal"]);
    assert_eq!(env.snapshot("vault"), before, "every file back byte for byte");

    // A damaged line that is not the last one is loud: resume refuses, rollback names it and fails.
    let mut bytes = std::fs::read(&journal).expect("journal");
    let second_line = bytes.iter().position(|b| *b == b'\n').expect("line") + 40;
    bytes[second_line] ^= 0x01;
    std::fs::write(&journal, &bytes).expect("damage");
    let stderr = env.fails(&["rewrap", "--to", "local:new", "--resume", "--no-progress", "vault"], 1);
    assert!(stderr.contains("line 2 was altered"), "{stderr}");
    let stderr = env.fails(&["rollback", "--journal", "vault.rekey-journal"], 6);
    assert!(stderr.contains("line 2 was altered"), "{stderr}");
}

/// Issue 24: an append that failed part-way (a full disk) left a fragment,
/// the run went on appending after it, and rollback then refused the whole
/// journal as "altered". Rollback restores every change of the intact lines
/// and names the torn one.
#[test]
fn rollback_reads_past_a_torn_middle_line_restores_everything_and_names_it() {
    let env = Env::with_keys(&["old", "new"]);
    env.vault(12);
    let before = env.snapshot("vault");
    env.ok(&["reencrypt", "--to", "local:new", "--concurrency", "1", "--no-progress", "vault"]);
    let journal = env.path("vault.rekey-journal");
    let bytes = std::fs::read(&journal).expect("journal");
    let starts: Vec<usize> =
        std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
    // The first half of line 4 written again just before line 6, as a failed append leaves it.
    let fragment = bytes[starts[3]..starts[3] + (starts[4] - starts[3]) / 2].to_vec();
    let torn = [&bytes[..starts[5]], &fragment[..], &bytes[starts[5]..]].concat();
    std::fs::write(&journal, &torn).expect("tear");
    let out = env.run(&["rollback", "--journal", "vault.rekey-journal", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("line 6 is torn") && !stderr.contains("altered"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((summary["restored"].as_u64(), summary["failed"].as_u64()), (Some(12), Some(1)), "{summary}");
    assert_eq!(env.snapshot("vault"), before, "every file back byte for byte");
}

/// Issue 24: a full disk in the middle of a journal append. The run used to
/// count the item failed and go on appending after the fragment; now the
/// partial entry is cut off and the run stops, and `--resume` finishes it.
/// The disk is made full by a file-size limit (`ulimit -f`, with SIGXFSZ
/// ignored, so the write fails part-way with EFBIG as on a full disk).
#[test]
fn a_journal_that_cannot_be_written_stops_the_run_and_resume_finishes_it() {
    let env = Env::with_keys(&["old", "new"]);
    env.vault(40);
    let before = env.snapshot("vault");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f 8; exec "$0" "$@""#)
        .arg(Env::bin())
        .args(["reencrypt", "--to", "local:new", "--concurrency", "1", "--no-progress", "--json", "vault"])
        .current_dir(env.dir.path())
        .env("REKEY_KEYSTORE", env.path("keys"))
        .stdin(Stdio::null())
        .output()
        .expect("rekey under a file-size limit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "the run stops on the journal's error: {stderr}");
    assert!(stderr.contains("cannot write the journal") && stderr.contains("--resume"), "{stderr}");
    let bytes = std::fs::read(env.path("vault.rekey-journal")).expect("journal");
    assert!(bytes.len() <= 8192 && bytes.ends_with(b"\n"), "the journal ends with a whole entry");
    let summary = env.json(&["reencrypt", "--to", "local:new", "--resume", "--json", "--no-progress", "vault"]);
    assert_eq!(summary["failed"], 0, "{summary}");
    for file in walk(&env.path("vault")) {
        assert_eq!(env.key_ids(&file), ["new/v1"], "{}", file.display());
    }
    env.ok(&["rollback", "--journal", "vault.rekey-journal"]);
    assert_eq!(env.snapshot("vault"), before, "every file back byte for byte");
}

#[test]
fn the_journal_of_a_rewrap_keeps_key_lists_not_whole_items() {
    let env = Env::with_keys(&["old", "new"]);
    std::fs::create_dir_all(env.path("vault")).expect("mkdir");
    let big = vec![b'z'; 20_000];
    for i in 0..20 {
        env.encrypt("local:old", &big, &format!("n={i}"), &env.path(&format!("vault/{i}.rky")), false);
    }
    let before = env.snapshot("vault");
    let data: usize = before.values().map(Vec::len).sum();
    env.ok(&["rewrap", "--to", "local:new", "--no-progress", "vault"]);
    let journal = std::fs::metadata(env.path("vault.rekey-journal")).expect("journal").len();
    assert!(journal < data as u64 / 20, "journal {journal} bytes for {data} bytes of data");
    env.ok(&["rollback", "--journal", "vault.rekey-journal"]);
    assert_eq!(env.snapshot("vault"), before);
}

#[test]
fn two_runs_on_one_target_cannot_run_at_once() {
    let env = Env::with_keys(&["old", "new", "other"]);
    env.vault(3);
    let seed = std::fs::read(env.path("vault/item00001.rky")).expect("read");
    for i in 0..3000 {
        std::fs::write(env.path(&format!("vault/bulk{i:05}.rky")), &seed).expect("write");
    }
    let mut first = env
        .cmd(&["rewrap", "--to", "local:new", "--concurrency", "1", "--no-progress", "vault"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    let stderr = env.fails(&["rewrap", "--to", "local:other", "--journal", "other.journal", "vault"], 2);
    assert!(stderr.contains("another rekey run"), "{stderr}");
    assert!(!env.path("other.journal").exists());
    first.kill().expect("kill");
    first.wait().expect("wait");

    // And --resume must be the same command: another destination is refused, naming it.
    let stderr = env.fails(&["rewrap", "--to", "local:other", "--resume", "vault"], 2);
    assert!(
        stderr.contains("to: the journal has rekey-local:new/v1, this command has rekey-local:other/v1"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_stops_cleanly_and_resume_finishes() {
    let env = Env::with_keys(&["old", "new"]);
    let plaintexts = env.vault(4);
    for i in 0..3000 {
        std::fs::copy(env.path("vault/item00001.rky"), env.path(&format!("vault/bulk{i:05}.rky"))).expect("copy");
    }
    let child = env
        .cmd(&["rewrap", "--to", "local:new", "--concurrency", "2", "--no-progress", "vault"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(400));
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("rerun the same command with --resume"), "{stderr}");
    let summary = env.json(&["rewrap", "--to", "local:new", "--resume", "--json", "--no-progress", "vault"]);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["rewrapped"].as_u64().unwrap_or(0) + summary["done_before"].as_u64().unwrap_or(0), 3004);
    for (name, plaintext) in &plaintexts {
        assert_eq!(env.decrypt(&env.path(&format!("vault/{name}")), &["local:new"]).expect("new key"), *plaintext);
    }
}

#[test]
fn a_wrong_column_is_refused_before_anything_is_written() {
    let env = Env::with_keys(&["old", "new"]);
    std::fs::write(env.path("in.csv"), "id,card\n1,x\n").expect("write");
    let stderr = env.fails(&["rewrap", "--to", "local:new", "--column", "cadr", "in.csv", "-o", "out.csv"], 2);
    assert!(stderr.contains("its columns are: id, card"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(env.dir.path()).expect("ls").map(|e| e.expect("e").file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().starts_with("out.csv")), "{left:?}");
}

#[test]
fn record_streams_keep_bytes_modes_and_honour_the_sample() {
    let env = Env::with_keys(&["old", "new"]);
    let keyring = env.keyring("old");
    let context = EncryptionContext::new();
    let (data_key, edk) = keyring.generate_sync(&context).expect("generate");
    let materials = Materials { data_key, encrypted_data_keys: vec![edk] };
    let mut input = Vec::new();
    for i in 0..400 {
        let secret = encode_text(&seal(&materials, &context, format!("s{i}").as_bytes()).expect("seal"));
        // Spaces, CRLF endings and a number with a long mantissa: kept as written.
        input.extend_from_slice(format!("{{ \"id\" : {i}, \"x\": 1.50000, \"s\": \"{secret}\" }}\r\n").as_bytes());
    }
    input.extend_from_slice(b"{\"id\": 401, \"s\": null}");
    std::fs::write(env.path("in.jsonl"), &input).expect("write");
    #[cfg(unix)]
    std::fs::set_permissions(env.path("in.jsonl"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).expect("chmod");

    let out = env.run(&[
        "rewrap",
        "--to",
        "local:new",
        "--field",
        "/s",
        "--sample",
        "25",
        "--json",
        "in.jsonl",
        "-o",
        "out.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let (changed, left) = (summary["rewrapped"].as_u64().expect("n"), summary["not_selected"].as_u64().expect("n"));
    assert!((40..=160).contains(&changed), "about a quarter of 400 sampled: {changed}");
    assert!(left >= 200, "the rest are left alone: {left}");
    let output = std::fs::read(env.path("out.jsonl")).expect("output");
    let (ins, outs): (Vec<&[u8]>, Vec<&[u8]>) =
        (input.split_inclusive(|b| *b == b'\n').collect(), output.split_inclusive(|b| *b == b'\n').collect());
    assert_eq!(ins.len(), outs.len());
    let mut same = 0;
    for (a, b) in ins.iter().zip(&outs) {
        if a == b {
            same += 1;
        } else {
            // Only the item differs: the text before it is identical.
            let prefix = |l: &[u8]| l[..l.windows(6).position(|w| w == b"\"s\": \"").expect("field") + 6].to_vec();
            assert_eq!(prefix(a), prefix(b));
            assert!(b.ends_with(b"\" }\r\n"));
        }
    }
    assert_eq!(same as u64, 401 - changed, "every unchanged record is kept byte for byte");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("out.jsonl")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the output keeps the input's mode");
    }
}

#[test]
fn one_bad_csv_row_is_one_failure() {
    let env = Env::with_keys(&["old", "new"]);
    let keyring = env.keyring("old");
    let context = EncryptionContext::new();
    let (data_key, edk) = keyring.generate_sync(&context).expect("generate");
    let materials = Materials { data_key, encrypted_data_keys: vec![edk] };
    let mut csv = String::from("id,card,note\n");
    for i in 0..50 {
        let secret = encode_text(&seal(&materials, &context, format!("card {i}").as_bytes()).expect("seal"));
        if i == 20 {
            csv.push_str("20\n");
        } else {
            csv.push_str(&format!("{i},{secret},\"a, b\"\n"));
        }
    }
    std::fs::write(env.path("in.csv"), &csv).expect("write");
    let out = env.run(&["rewrap", "--to", "local:new", "--column", "card", "--json", "in.csv", "-o", "out.csv"]);
    assert_eq!(out.status.code(), Some(6));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((summary["rewrapped"].as_u64(), summary["failed"].as_u64()), (Some(49), Some(1)));
    let output = std::fs::read_to_string(env.path("out.csv")).expect("output");
    assert_eq!(output.lines().count(), 51);
    assert!(output.contains("\n20\n"), "the bad row is passed through as it was");
}

/// Runs rekey and returns its exit code and peak resident memory in KiB,
/// read from /proc while it runs.
#[cfg(target_os = "linux")]
fn run_measuring_rss(env: &Env, args: &[&str]) -> (Option<i32>, u64) {
    let mut child = env.cmd(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            peak = peak.max(line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0));
        }
        if let Some(status) = child.try_wait().expect("wait") {
            return (status.code(), peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
#[cfg(target_os = "linux")]
fn a_large_framed_file_is_streamed_in_constant_memory_and_keeps_its_form() {
    let env = Env::with_keys(&["old", "new"]);
    std::fs::create_dir_all(env.path("vault")).expect("mkdir");
    let plaintext: Vec<u8> = (0..64u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0]).collect();
    std::fs::write(env.path("big.bin"), &plaintext).expect("write");
    env.ok(&["encrypt", "--key", "local:old", "--frame-size", "1048576", "big.bin", "-o", "vault/big.rky"]);
    std::fs::remove_file(env.path("big.bin")).expect("rm");
    let original = std::fs::read(env.path("vault/big.rky")).expect("read");
    let frame_len =
        |bytes: &[u8]| match Envelope::parse(bytes, &ParseOptions::default()).expect("envelope").header().body_form {
            envelope_core::hazmat::BodyForm::Framed { frame_len } => frame_len,
            other => panic!("not framed: {other:?}"),
        };

    // Rewrap: the header is replaced, the body copied through.
    let (code, peak_kib) = run_measuring_rss(&env, &["rewrap", "--to", "local:new", "--journal", "j1", "vault"]);
    assert_eq!(code, Some(0));
    assert!(peak_kib < 48 * 1024, "rewrap of a 64 MiB file peaked at {peak_kib} KiB");
    assert_eq!(env.key_ids(&env.path("vault/big.rky")), ["new/v1"]);

    // Re-encrypt: a framed envelope again, same frame length, streamed.
    let (code, peak_kib) = run_measuring_rss(
        &env,
        &["reencrypt", "--to", "local:old", "--from", "local:new", "--verify", "--journal", "j2", "vault"],
    );
    assert_eq!(code, Some(0));
    // Holding the file would take at least 128 MiB (its plaintext and its new
    // ciphertext); the stream's window of 1 MiB frames on every worker, with
    // --verify's read-back, peaked at 40-55 MiB in debug builds here, so
    // 64 MiB tells the two apart without flaking under load.
    assert!(peak_kib < 64 * 1024, "re-encryption of a 64 MiB file peaked at {peak_kib} KiB");
    let reencrypted = std::fs::read(env.path("vault/big.rky")).expect("read");
    assert_eq!(frame_len(&reencrypted), 1 << 20, "the body keeps its form");
    let out = env.ok(&["decrypt", "--key", "local:old", "vault/big.rky", "-o", "back.bin"]);
    assert!(out.status.success());
    assert!(std::fs::read(env.path("back.bin")).expect("read") == plaintext, "same plaintext");
    let journal = std::fs::metadata(env.path("j2")).expect("journal").len();
    assert!(journal < 4096, "the journal names the kept original instead of holding it: {journal} bytes");

    // Undo both, latest first: byte for byte, and no backup left behind.
    env.ok(&["rollback", "--journal", "j2"]);
    env.ok(&["rollback", "--journal", "j1"]);
    assert!(std::fs::read(env.path("vault/big.rky")).expect("read") == original);
    let left: Vec<_> = walk(&env.path("vault")).into_iter().map(|p| p.display().to_string()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
#[cfg(unix)]
fn journals_and_failure_reports_are_private_and_never_followed_through_a_link() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::with_keys(&["old", "new"]);
    env.vault(3);
    std::fs::write(env.path("vault/garbage.rky"), "not an envelope").expect("write");
    // A journal path planted as a link to a file the attacker can read.
    std::fs::write(env.path("public.txt"), "").expect("write");
    std::os::unix::fs::symlink(env.path("public.txt"), env.path("linked.journal")).expect("symlink");
    env.fails(&["rewrap", "--to", "local:new", "--journal", "linked.journal", "vault"], 2);
    let stderr = env.fails(&["rewrap", "--to", "local:new", "--journal", "linked.journal", "--resume", "vault"], 4);
    assert!(stderr.contains("linked.journal"), "{stderr}");
    assert_eq!(std::fs::read(env.path("public.txt")).expect("read"), b"", "nothing written through the link");

    let umask_proof = std::process::Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(Env::bin())
        .args(["rewrap", "--to", "local:new", "--no-progress", "vault"])
        .current_dir(env.dir.path())
        .env("REKEY_KEYSTORE", env.path("keys"))
        .output()
        .expect("run");
    assert_eq!(umask_proof.status.code(), Some(6), "{}", String::from_utf8_lossy(&umask_proof.stderr));
    for file in ["vault.rekey-journal", "vault.rekey-journal.failures.jsonl"] {
        let mode = std::fs::metadata(env.path(file)).expect(file).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is private even with umask 000");
    }
}

/// Issue 24: a JSON Lines record holding `--field`'s key twice. Parsers
/// disagree on which one counts (serde and most take the last, some the
/// first), and only the last was rotated: the first stayed under the old key.
/// Such a record is a failed item naming the field, left as it is, and scan
/// counts them.
#[test]
fn a_json_record_with_the_field_twice_is_refused_and_counted_by_scan() {
    let env = Env::with_keys(&["old", "new"]);
    let secret = |s: &str| encode_text(&env.seal_local("old", &[], s.as_bytes()));
    let twice = format!("{{\"id\": 2, \"s\": \"{}\", \"s\": \"{}\"}}\n", secret("first"), secret("second"));
    let nested =
        format!("{{\"id\": 3, \"o\": {{\"s\": \"{}\", \"s\": \"{}\"}}, \"s\": null}}\n", secret("a"), secret("b"));
    let input = format!("{{\"id\": 1, \"s\": \"{}\"}}\n{twice}{nested}", secret("alone"));
    std::fs::write(env.path("in.jsonl"), &input).expect("write");
    // Under /o/s, records 1 and 2 have no such field: two more failures, missing_field.
    for (field, line, failed) in [("/s", 2, 1), ("/o/s", 3, 3)] {
        let out = env.run(&[
            "rewrap",
            "--to",
            "local:new",
            "--field",
            field,
            "--json",
            "--journal",
            field.replace('/', "_").as_str(),
            "in.jsonl",
            "-o",
            &format!("out{line}.jsonl"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{field}: {stderr}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(summary["failed"], failed, "{field}: {summary}");
        let output = std::fs::read_to_string(env.path(&format!("out{line}.jsonl"))).expect("output");
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines[line - 1], input.lines().nth(line - 1).expect("line"), "{field}: the record is left as it is");
        let report = std::fs::read_to_string(env.path(&format!("{}.failures.jsonl", field.replace('/', "_"))))
            .expect("failure report");
        assert!(report.contains("duplicate_field") && report.contains(&format!("record {line}")), "{report}");
        assert!(report.contains("more than once"), "{report}");
    }
    let scan = env.json(&["scan", "--field", "/s", "--json", "in.jsonl"]);
    assert_eq!(scan["duplicate_fields"], 1, "{scan}");
}

/// Issue 24 (item 3, for record streams): a record line was read whole
/// before its length was checked, so one 300 MiB line without a newline took
/// 300 MiB and more. It is read with the 64 MiB bound and refused.
#[test]
#[cfg(target_os = "linux")]
fn a_huge_record_line_is_refused_without_being_read_whole() {
    let env = Env::with_keys(&["old", "new"]);
    let mut input = b"{\"s\": null}\n{\"s\": \"".to_vec();
    input.resize(input.len() + (300 << 20), b'A');
    std::fs::write(env.path("in.jsonl"), &input).expect("write");
    drop(input);
    let (code, peak_kib) =
        run_measuring_rss(&env, &["rewrap", "--to", "local:new", "--field", "/s", "in.jsonl", "-o", "out.jsonl"]);
    assert_eq!(code, Some(1), "the record is refused as too long");
    eprintln!("peak RSS reading a 300 MiB record line: {peak_kib} KiB");
    assert!(peak_kib < 160 * 1024, "a 300 MiB line cost {peak_kib} KiB");
}

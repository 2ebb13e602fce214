//! What misled an operator (issue 24, items 7 to 11): doomed runs the
//! preflight let start, journals that blocked every next step, a dry run
//! whose forecast its own sample disproved, and the small things a first run
//! trips on. The real binary; each test was watched failing on the binary
//! from before its fix (`REKEY_BIN`).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::Env;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `n` bare data keys under local key `key`, made with `context`, base64 in
/// `dir/keyN.edk`.
fn bare_keys(env: &Env, key: &str, context: &[(&str, &str)], dir: &str, n: usize) {
    let context = envelope_core::EncryptionContext::from_pairs(context.iter().copied()).expect("context");
    std::fs::create_dir_all(env.path(dir)).expect("mkdir");
    let keyring = env.keyring(key);
    for i in 0..n {
        let (_, edk) = keyring.generate_sync(&context).expect("generate");
        std::fs::write(env.path(&format!("{dir}/key{i:02}.edk")), STANDARD.encode(edk.wrapped())).expect("write");
    }
}

/// Item 7: a wrong `--source-context` on bare keys fails every item alike;
/// the preflight stops the run before any journal, naming the context tried.
#[test]
fn a_wrong_source_context_stops_the_run_before_anything_is_written() {
    let env = Env::with_keys(&["old", "new"]);
    bare_keys(&env, "old", &[("purpose", "backup")], "edks", 6);
    let before = env.snapshot("edks");
    let args = [
        "rewrap",
        "--items",
        "edk",
        "--from",
        "local:old",
        "--to",
        "local:new",
        "--source-context",
        "purpose=backups",
        "edks",
    ];
    let out = env.run(&args);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert_ne!(out.status.code(), Some(6), "not a partial run: nothing may start\n{stderr}");
    assert!(stderr.contains("preflight: the first 3 items all fail the same way"), "{stderr}");
    assert!(stderr.contains("with the context purpose=backups"), "names the context tried: {stderr}");
    assert!(stderr.contains("hint: nothing was written; check --source-context"), "{stderr}");
    assert!(!env.path("edks.rekey-journal").exists(), "no journal for a doomed run");
    assert!(!env.path("edks.rekey-journal.failures.jsonl").exists());
    assert_eq!(env.snapshot("edks"), before);

    // The corrected command then runs at once: nothing blocks it.
    let mut fixed = args.to_vec();
    fixed[8] = "purpose=backup";
    fixed.push("--json");
    let s = env.json(&fixed);
    assert_eq!(s["rewrapped"], 6, "{s}");
}

/// Item 7: a mistyped `--field` fails every record alike ("missing"); the
/// preflight stops before an output or a journal exists, and names the
/// fields the first record does have.
#[test]
fn a_mistyped_field_stops_the_run_and_names_the_fields_there_are() {
    let env = Env::with_keys(&["old", "new"]);
    let mut lines = String::new();
    for i in 0..20 {
        let item = env.seal_local("old", &[], format!("4111-{i}").as_bytes());
        lines.push_str(&format!("{{\"id\":{i},\"card\":\"{}\"}}\n", STANDARD.encode(item)));
    }
    std::fs::write(env.path("cards.jsonl"), &lines).expect("write");
    let args =
        ["rewrap", "--from", "local:old", "--to", "local:new", "--field", "/cardd", "cards.jsonl", "-o", "out.jsonl"];
    let out = env.run(&args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("preflight: the first 3 items all fail the same way"), "{stderr}");
    assert!(stderr.contains("the field /cardd is missing"), "{stderr}");
    assert!(stderr.contains("this record's fields: /id, /card"), "{stderr}");
    assert!(stderr.contains("hint: nothing was written; check the spelling of --field"), "{stderr}");
    assert!(!env.path("out.jsonl").exists(), "no output for a doomed run");
    assert!(!env.path("out.jsonl.rekey-journal").exists(), "no journal for a doomed run");
}

/// Item 9: a dry run whose in-memory sample fails counts that failure in its
/// forecast and exits non-zero; it never promises "0 failed" beside it.
#[test]
fn a_dry_run_counts_its_failed_sample_and_exits_non_zero() {
    let env = Env::with_keys(&["old", "new"]);
    bare_keys(&env, "old", &[("purpose", "backup")], "edks", 4);
    let args = [
        "rewrap",
        "--items",
        "edk",
        "--from",
        "local:old",
        "--to",
        "local:new",
        "--source-context",
        "purpose=backups",
        "--dry-run",
        "--json",
        "edks",
    ];
    let out = env.run(&args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert!(s["sample"].as_str().is_some_and(|l| l.contains("FAILED")), "{s}");
    assert_eq!(s["failed"], 1, "the sample's failure is counted: {s}");
    assert_eq!(s["rewrapped"], 3, "{s}");
    assert!(stderr.contains("hint: fix its cause"), "{stderr}");

    // The text form says the same.
    let out = env.run(&args[..args.len() - 2].iter().chain(&["edks"]).copied().collect::<Vec<_>>());
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(6));
    assert!(stdout.contains("would be): 4 items") && stdout.contains("3 rewrapped, 1 failed"), "{stdout}");

    // A sample that works changes nothing of the forecast, and exits 0.
    let mut good = args.to_vec();
    good[8] = "purpose=backup";
    let s = env.json(&good);
    assert_eq!((s["rewrapped"].as_u64(), s["failed"].as_u64()), (Some(4), Some(0)), "{s}");
}

/// Item 8: a run that changed nothing (every item failed) leaves a journal;
/// each refusal it causes names the way out, and rollback retires it so the
/// corrected command runs.
#[test]
fn a_journal_that_changed_nothing_is_retired_by_rollback() {
    let env = Env::with_keys(&["old", "new"]);
    bare_keys(&env, "old", &[("purpose", "backup")], "edks", 5);
    let before = env.snapshot("edks");
    let wrong = [
        "rewrap",
        "--items",
        "edk",
        "--from",
        "local:old",
        "--to",
        "local:new",
        "--source-context",
        "purpose=backups",
        "edks",
    ];
    // Past the preflight (as a mix of items could get), every item fails.
    let out = env.run(&[&wrong[..], &["--no-preflight"]].concat());
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(env.path("edks.rekey-journal").is_file());
    assert_eq!(env.snapshot("edks"), before);

    let mut fixed = wrong.to_vec();
    fixed[8] = "purpose=backup";
    let journal = env.path("edks.rekey-journal").display().to_string();
    let err = env.fails(&fixed, 2);
    assert!(err.contains("already exists, from a run that changed nothing"), "{err}");
    assert!(err.contains(&format!("hint: retire it with `rekey rollback --journal {journal}`")), "{err}");

    let err = env.fails(&[&fixed[..], &["--resume"]].concat(), 2);
    assert!(err.contains("--resume needs the same command"), "{err}");
    assert!(
        err.contains(&format!(
            "hint: that run changed nothing: retire its journal with `rekey rollback --journal {journal}`"
        )),
        "{err}"
    );

    let out = env.ok(&["rollback", "--journal", "edks.rekey-journal"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the run changed nothing; its journal is retired to edks.rekey-journal.retired"),
        "{stderr}"
    );
    assert!(!env.path("edks.rekey-journal").exists());
    assert!(env.path("edks.rekey-journal.retired").is_file(), "kept as a record");
    assert!(env.path("edks.rekey-journal.retired.failures.jsonl").is_file(), "its failure report goes with it");
    assert_eq!(env.snapshot("edks"), before, "nothing to undo");

    let s = env.json(&[&fixed[..], &["--json"]].concat());
    assert_eq!(s["rewrapped"], 5, "{s}");
    assert!(!env.path("edks.rekey-journal.failures.jsonl").exists(), "the new run starts a clean failure report");

    // A journal that did change something is never retired by rollback.
    let out = env.ok(&["rollback", "--journal", "edks.rekey-journal"]);
    assert!(!text(&out.stderr).contains("retired"), "{}", text(&out.stderr));
    assert!(env.path("edks.rekey-journal").is_file());
    assert_eq!(env.snapshot("edks"), before, "restored");
}

/// Item 11: `--from`'s help no longer says "default: all": KMS keys must be named.
#[test]
fn the_from_help_says_kms_keys_must_be_named() {
    let env = Env::with_keys(&[]);
    let help = text(&env.ok(&["rewrap", "--help"]).stdout);
    assert!(!help.contains("default: all"), "{help}");
    assert!(help.contains("KMS keys must be named here"), "{help}");
}

/// Item 11: a mistyped `local:` key gets a did-you-mean, as KMS aliases do.
#[test]
fn a_mistyped_local_key_gets_a_did_you_mean() {
    let env = Env::with_keys(&["orders-old", "orders-new"]);
    std::fs::create_dir_all(env.path("vault")).expect("mkdir");
    let err = env.fails(&["rewrap", "--to", "local:orders-nwe", "--from", "local:orders-old", "vault"], 4);
    assert!(err.contains("hint: did you mean local:orders-new?"), "{err}");
    let err = env.fails(&["rewrap", "--to", "local:orders-new", "--from", "local:ordersold", "vault"], 4);
    assert!(err.contains("hint: did you mean local:orders-old?"), "{err}");
    let err = env.fails(&["rewrap", "--to", "local:payments", "--from", "local:orders-old", "vault"], 4);
    assert!(err.contains("hint: the keystore holds orders-new, orders-old; `rekey keys list` shows them"), "{err}");
}

/// Item 11: a journal place that cannot be written names `--journal`.
#[test]
fn an_unusable_journal_place_names_the_journal_flag() {
    let env = Env::with_keys(&["old", "new"]);
    env.vault(2);
    let err = env.fails(&["rewrap", "--to", "local:new", "--from", "local:old", "--journal", "gone/run.j", "vault"], 4);
    assert!(err.contains("the journal's directory gone cannot be used"), "{err}");
    assert!(err.contains("hint: choose another place with --journal FILE"), "{err}");
}

/// Item 11: a keyset file others may read is used, with a warning; keys
/// swapped between its entries are named as an altered file, not a context.
#[test]
fn keyset_files_open_to_others_are_warned_about_and_swapped_keys_named() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::with_keys(&["k1"]);
    env.ok(&["keyset", "create", "--key", "local:k1", "app.keyset"]);
    std::fs::set_permissions(env.path("app.keyset"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = env.ok(&["keyset", "list", "app.keyset"]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("keyset file app.keyset is open to group or others (mode 0644)"), "{stderr}");
    assert!(stderr.contains("`chmod 600 app.keyset`"), "{stderr}");
    std::fs::set_permissions(env.path("app.keyset"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(text(&env.ok(&["keyset", "list", "app.keyset"]).stderr), "");

    env.ok(&["keyset", "rotate", "--key", "local:k1", "app.keyset"]);
    std::fs::write(env.path("in.txt"), "secret\n").expect("write");
    env.ok(&["keyset", "encrypt", "--keyset", "app.keyset", "--lines", "in.txt", "-o", "r.rec"]);
    let file = std::fs::read_to_string(env.path("app.keyset")).expect("read");
    let wraps: Vec<&str> = file.lines().filter(|l| l.starts_with("wrap ")).collect();
    std::fs::write(env.path("app.keyset"), file.replacen(wraps[1], wraps[0], 1)).expect("write");
    let err = env.fails(&["keyset", "decrypt", "--keyset", "app.keyset", "--lines", "r.rec"], 3);
    assert!(!err.contains("check --context"), "no --context is involved: {err}");
    assert!(
        err.contains("hint: the keyset file's wrapped keys do not match their entries: app.keyset was altered"),
        "{err}"
    );
}

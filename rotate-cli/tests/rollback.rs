//! `rekey rollback` of files counts files, not journal entries, and reports
//! its progress through the engine's `Progress`, one unit per file.

mod common;

use std::sync::Mutex;

use common::Env;
use rotate_cli::engine::Progress;
use rotate_cli::engine::journal::{self, Entry, Journal, Undo};

const N: usize = 24;

/// The tests of this file run one at a time. A journal's lock is an `flock`
/// on an open file, and a child that one test spawns holds a copy of every
/// descriptor open in this process until it execs: a journal the other test
/// had open at that moment would stay locked for that while ("another rekey
/// run is using ... right now"), which one CI run saw.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Rewraps a vault of `N` files, then adds to its journal what resumed and
/// retried runs leave: a second `Begin` of a file already done, a `Begin`
/// then `Abandoned` of a file rekey never replaced (changed by someone
/// else since), and two `Begin`s of a file since deleted.
fn rewrapped_vault_with_a_busy_journal(env: &Env) -> std::path::PathBuf {
    env.vault(N);
    env.ok(&["rewrap", "--to", "local:new", "--from", "local:old", "--sample", "50", "vault"]);
    env.ok(&["rewrap", "--to", "local:new", "--from", "local:old", "--resume", "vault"]);
    let path = env.path("vault.rekey-journal");
    let (_lock, entries) = journal::read_locked(&path).expect("journal");
    let Some(Entry::Run { params, .. }) = entries.first() else { panic!("no run entry") };
    let again = entries.iter().rev().find(|e| matches!(e, Entry::Begin { .. })).expect("a begin").clone();
    drop(_lock);
    let (journal, _) = Journal::open(&path, true, params).expect("reopen");
    let begin = |item: &str| Entry::Begin {
        item: env.path(item).display().to_string(),
        old_sha256: journal::sha256(b"before"),
        new_sha256: journal::sha256(b"after"),
        undo: Undo::Original { b64: journal::b64(b"before") },
        legacy: false,
    };
    std::fs::write(env.path("vault/untouched.rky"), b"someone else's").expect("write");
    let abandoned = Entry::Abandoned { item: env.path("vault/untouched.rky").display().to_string() };
    journal
        .append_all(
            [&again, &begin("vault/untouched.rky"), &abandoned, &begin("vault/gone.rky"), &begin("vault/gone.rky")],
            true,
        )
        .expect("append");
    path
}

#[test]
fn a_rollback_counts_files_not_journal_entries() {
    let _serial = one_at_a_time();
    let env = Env::with_keys(&["old", "new"]);
    let before = {
        env.vault(N);
        env.snapshot("vault")
    };
    std::fs::remove_dir_all(env.path("vault")).expect("clean");
    let path = rewrapped_vault_with_a_busy_journal(&env);
    let out = env.run(&["rollback", "--journal", path.to_str().expect("utf-8"), "--json"]);
    assert_eq!(out.status.code(), Some(6), "one file is gone: {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // N files restored, the deleted one failed once; the abandoned one is no item.
    assert_eq!(
        (summary["items"].as_u64(), summary["restored"].as_u64()),
        (Some(N as u64 + 1), Some(N as u64)),
        "{summary}"
    );
    assert_eq!(summary["failed"], 1, "{summary}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("rekey: rollback: {}: ", env.path("vault/gone.rky").display())), "{stderr}");
    let mut after = env.snapshot("vault");
    assert_eq!(after.remove("untouched.rky").as_deref(), Some(&b"someone else's"[..]));
    assert_eq!(after.len(), before.len());
    let text = env.run(&["rollback", "--journal", path.to_str().expect("utf-8")]);
    assert_eq!(
        String::from_utf8_lossy(&text.stdout).lines().next().map(|l| l
            .split(" in ")
            .next()
            .unwrap_or_default()
            .to_owned()),
        Some(format!("rollback: {} items", N + 1))
    );
}

/// What a rollback told its progress.
#[derive(Default)]
struct Recorder {
    totals: Mutex<Vec<u64>>,
    advanced: Mutex<u64>,
    finished: Mutex<bool>,
}

impl Progress for Recorder {
    fn total(&self, units: u64) {
        self.totals.lock().expect("lock").push(units);
    }
    fn advance(&self, units: u64, _failed: u64) {
        *self.advanced.lock().expect("lock") += units;
    }
    fn finish(&self) {
        *self.finished.lock().expect("lock") = true;
    }
}

#[test]
fn a_rollback_reports_progress_per_file() {
    let _serial = one_at_a_time();
    let env = Env::with_keys(&["old", "new"]);
    let path = rewrapped_vault_with_a_busy_journal(&env);
    let recorder = Recorder::default();
    let (summary, conflicts) = rotate_cli::engine::files::rollback(
        &rotate_cli::engine::journal::RollbackJournal::open(&path).expect("journal"),
        &recorder,
    )
    .expect("rollback");
    assert_eq!((summary.restored, summary.counts.failed, conflicts.len()), (N as u64, 1, 1));
    assert_eq!(*recorder.totals.lock().expect("lock"), [N as u64 + 1]);
    assert_eq!(*recorder.advanced.lock().expect("lock"), N as u64 + 1);
    assert!(*recorder.finished.lock().expect("lock"));
}

/// Issue 24: the journal recorded `"from":""` for local keys, so `--resume`
/// with another local `--from` went on under other keys than the run began
/// with. (Here, not in safety.rs: it holds a journal open in this process.) Every key-selecting parameter is recorded and compared; a journal
/// written before they were recorded still resumes.
#[test]
fn resume_with_another_local_from_is_refused_and_old_journals_still_resume() {
    let _serial = one_at_a_time();
    let env = Env::with_keys(&["old", "new", "other"]);
    env.vault(12);
    let base = ["rewrap", "--to", "local:new", "--no-progress", "vault"];
    let both = ["--from", "local:old", "--from", "local:other"];
    env.ok(&[&base[..], &both, &["--limit", "4"]].concat());
    let stderr = env.fails(&[&base[..], &["--from", "local:old", "--resume"]].concat(), 2);
    assert!(
        stderr.contains("source_keys: the journal has local:old,local:other, this command has local:old"),
        "{stderr}"
    );
    let stderr = env.fails(&[&base[..], &["--resume"]].concat(), 2);
    assert!(stderr.contains("source_keys"), "dropping --from is another run too: {stderr}");

    // The same journal as an older rekey wrote it: no source_keys, kms_discovery.
    let journal = env.path("vault.rekey-journal");
    let (lock, entries) = journal::read_locked(&journal).expect("journal");
    drop(lock);
    let Some(Entry::Run { params, .. }) = entries.first() else { panic!("no run") };
    let mut params = params.clone();
    assert!(params.remove("source_keys").is_some() && params.remove("kms_discovery").is_some());
    std::fs::remove_file(&journal).expect("rm");
    let (old, _) = Journal::open(&journal, false, &params).expect("old journal");
    old.append_all(&entries[1..], true).expect("entries");
    drop(old);
    let summary = env.json(&[&base[..], &both, &["--resume", "--json"]].concat());
    assert_eq!((summary["rewrapped"].as_u64(), summary["done_before"].as_u64()), (Some(8), Some(4)), "{summary}");
}

/// Issue 24: a rollback killed with SIGKILL leaves `.NAME.rekey-tmp.PID.N`
/// beside the files it was restoring, and a rerun left them there. A rerun
/// removes those of processes that are gone, and never a live one's.
#[test]
fn a_rollback_rerun_removes_the_temporaries_a_killed_one_left() {
    let _serial = one_at_a_time();
    let env = Env::with_keys(&["old", "new"]);
    env.vault(6);
    env.ok(&["rewrap", "--to", "local:new", "--from", "local:old", "vault"]);
    // PID 4194305 is above Linux's largest (pid_max, 2^22): a process that is gone.
    let gone = env.path("vault/.item00001.rky.rekey-tmp.4194305.0");
    let live = env.path(&format!("vault/.item00002.rky.rekey-tmp.{}.0", std::process::id()));
    let unrelated = env.path("vault/.notes.txt.rekey-tmp.4194305.0");
    for planted in [&gone, &live, &unrelated] {
        std::fs::write(planted, b"half a restored file").expect("plant");
    }
    env.ok(&["rollback", "--journal", "vault.rekey-journal"]);
    assert!(!gone.exists(), "the killed process's temporary is removed");
    assert!(live.exists() && unrelated.exists(), "a live process's, and one beside no file of the journal, stay");
}

/// Issue 24: one file that could not be restored (here: a write past the
/// file-size limit fails with EFBIG, as on a full disk) stopped the whole
/// rollback. It is that file's failure; the others are restored.
#[test]
fn one_file_that_cannot_be_restored_is_one_failure_and_the_rollback_goes_on() {
    let _serial = one_at_a_time();
    let env = Env::with_keys(&["old", "new"]);
    env.vault(6);
    // The last in walk order, so the first the rollback (latest first) restores.
    env.encrypt("local:old", &vec![b'x'; 40_000], "n=big", &env.path("vault/zz-big.rky"), false);
    let before = env.snapshot("vault");
    env.ok(&["reencrypt", "--to", "local:new", "--concurrency", "1", "vault"]);
    // And a rename that fails: an immutable file (chattr +i, where there is chattr) cannot be swapped out.
    let pinned = env.path("vault/item00002.rky");
    let immutable = Immutable::set(&pinned);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f 16; exec "$0" "$@""#)
        .arg(Env::bin())
        .args(["rollback", "--journal", "vault.rekey-journal", "--json"])
        .current_dir(env.dir.path())
        .env("REKEY_KEYSTORE", env.path("keys"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("rollback under a file-size limit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("zz-big.rky") && stderr.contains("File too large"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let failed = 1 + u64::from(immutable.is_some());
    assert_eq!(
        (summary["restored"].as_u64(), summary["failed"].as_u64()),
        (Some(7 - failed), Some(failed)),
        "{summary}"
    );
    if immutable.is_some() {
        assert!(stderr.contains("item00002.rky") && stderr.contains("Operation not permitted"), "{stderr}");
    }
    drop(immutable);
    let after = env.snapshot("vault");
    assert_eq!(after.len(), before.len(), "no temporary left behind");
    // Once the cause is gone, a rerun restores the last one.
    env.ok(&["rollback", "--journal", "vault.rekey-journal"]);
    assert_eq!(env.snapshot("vault"), before);
}

/// A file made immutable (`chattr +i`) for as long as this lives; `None`
/// where `chattr` is missing or the file system has no such attribute.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: &std::path::Path) -> Option<Self> {
        let ok = std::process::Command::new("chattr").arg("+i").arg(path).status().is_ok_and(|s| s.success());
        ok.then(|| Self(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

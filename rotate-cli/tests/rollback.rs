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
    let (summary, conflicts) = rotate_cli::engine::files::rollback(&path, &recorder).expect("rollback");
    assert_eq!((summary.restored, summary.counts.failed, conflicts.len()), (N as u64, 1, 1));
    assert_eq!(*recorder.totals.lock().expect("lock"), [N as u64 + 1]);
    assert_eq!(*recorder.advanced.lock().expect("lock"), N as u64 + 1);
    assert!(*recorder.finished.lock().expect("lock"));
}

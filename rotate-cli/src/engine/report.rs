//! Counting and reporting: per-item failures as JSON Lines, and the summary
//! of a run as text or JSON.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{Error, ErrorKind, ItemError};
use super::transform::ChangeKind;
use crate::fsio;

/// A whole number's digits with thousands separators, as people read
/// counts and rates: `1,912`.
fn grouped(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What happened to the items of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Items whose wrapped keys were replaced.
    pub rewrapped: u64,
    /// Items decrypted and encrypted again.
    pub reencrypted: u64,
    /// Of those, items that were legacy CBC records, never authenticated.
    #[serde(default)]
    pub from_legacy: u64,
    /// Of those, items lifted from a suite without key commitment to a committing one.
    #[serde(default)]
    pub lifted: u64,
    /// Items already in the wanted state.
    pub skipped: u64,
    /// Items that failed (see the failure report).
    pub failed: u64,
    /// Items finished by an earlier run of the same journal.
    #[serde(default)]
    pub done_before: u64,
    /// Items left alone because they are outside `--sample`, `--shard` or `--limit`.
    #[serde(default)]
    pub not_selected: u64,
    /// Empty values (NULL exports), left alone.
    #[serde(default)]
    pub empty: u64,
    /// Items that needed more than one attempt.
    #[serde(default)]
    pub retried: u64,
}

impl Counts {
    /// Every item looked at.
    pub fn items(&self) -> u64 {
        self.rewrapped + self.reencrypted + self.skipped + self.failed + self.done_before
    }

    /// Moves one change that was counted as done but could not be stored to the failures.
    pub fn unstored(&mut self, kind: ChangeKind) {
        match kind {
            ChangeKind::Rewrapped => self.rewrapped = self.rewrapped.saturating_sub(1),
            ChangeKind::Reencrypted => self.reencrypted = self.reencrypted.saturating_sub(1),
            ChangeKind::FromLegacy => {
                self.reencrypted = self.reencrypted.saturating_sub(1);
                self.from_legacy = self.from_legacy.saturating_sub(1);
            }
            ChangeKind::Lifted => {
                self.reencrypted = self.reencrypted.saturating_sub(1);
                self.lifted = self.lifted.saturating_sub(1);
            }
        }
        self.failed += 1;
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.rewrapped += other.rewrapped;
        self.reencrypted += other.reencrypted;
        self.from_legacy += other.from_legacy;
        self.lifted += other.lifted;
        self.skipped += other.skipped;
        self.failed += other.failed;
        self.done_before += other.done_before;
        self.not_selected += other.not_selected;
        self.empty += other.empty;
        self.retried += other.retried;
    }
}

/// The failure report: one JSON object per failed item, created (0600) on the first failure.
#[derive(Debug)]
pub struct FailureLog {
    path: Option<PathBuf>,
    writer: Mutex<Option<BufWriter<File>>>,
}

impl FailureLog {
    /// A report at `path`; `None` only logs failures.
    pub fn new(path: Option<PathBuf>) -> Self {
        Self { path, writer: Mutex::new(None) }
    }

    /// Where the report goes.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reports one failed item.
    ///
    /// # Errors
    /// I/O errors creating or writing the report.
    pub fn record(&self, item: &str, operation: &str, error: &ItemError, attempts: u32) -> Result<(), Error> {
        tracing::warn!(item, code = %error.code, "{}", error.message);
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut guard = self.writer.lock().map_err(|_| Error::new(ErrorKind::Io, "failure report lock poisoned"))?;
        if guard.is_none() {
            let file = fsio::open_private(path, true)
                .map_err(|e| Error::io(format!("cannot create {}", path.display()), &e))?;
            *guard = Some(BufWriter::new(file));
        }
        if let Some(writer) = guard.as_mut() {
            let line = json!({
                "item": item,
                "operation": operation,
                "error_code": error.code.as_str(),
                "message": error.message,
                "attempts": attempts,
            });
            writeln!(writer, "{line}").map_err(|e| Error::io("cannot write the failure report", &e))?;
        }
        Ok(())
    }

    /// Flushes the report.
    ///
    /// # Errors
    /// I/O errors writing it.
    pub fn finish(&self) -> Result<(), Error> {
        let mut guard = self.writer.lock().map_err(|_| Error::new(ErrorKind::Io, "failure report lock poisoned"))?;
        if let Some(writer) = guard.as_mut() {
            writer.flush().map_err(|e| Error::io("cannot write the failure report", &e))?;
            writer.get_ref().sync_data().map_err(|e| Error::io("cannot sync the failure report", &e))?;
        }
        Ok(())
    }
}

/// Why a run ended before its inventory did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `--max-failures` was reached.
    MaxFailures,
    /// SIGINT or SIGTERM.
    Interrupted,
}

/// What a run did.
#[derive(Debug)]
pub struct Summary {
    /// `rewrap`, `reencrypt`, `rollback`, `scan`.
    pub operation: &'static str,
    /// Nothing was written.
    pub dry_run: bool,
    /// The counts.
    pub counts: Counts,
    /// Units rolled back.
    pub restored: u64,
    /// Copies proven to hold what their originals hold (`rekey verify`).
    pub verified: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Why it ended early, if it did.
    pub stopped: Option<Stop>,
    /// Units in the inventory, when known.
    pub total: Option<u64>,
    /// KMS usage, from the binary.
    pub kms: Option<Value>,
    /// The journal.
    pub journal: Option<PathBuf>,
    /// The failure report.
    pub failures: Option<PathBuf>,
    /// More lines: name and value (dry-run plan, preflight).
    pub extra: Vec<(String, Value)>,
    /// Why units were not selected, as the text summary says it.
    pub not_selected_reason: &'static str,
}

impl Summary {
    /// An empty summary of `operation`.
    pub fn new(operation: &'static str) -> Self {
        Self {
            operation,
            dry_run: false,
            counts: Counts::default(),
            restored: 0,
            verified: 0,
            elapsed: Duration::ZERO,
            stopped: None,
            total: None,
            kms: None,
            journal: None,
            failures: None,
            extra: Vec::new(),
            not_selected_reason: "--sample/--shard/--limit",
        }
    }

    fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { (self.counts.items() + self.restored + self.verified) as f64 / secs } else { 0.0 }
    }

    /// The summary for machines.
    pub fn to_json(&self) -> Value {
        let c = &self.counts;
        let mut v = json!({
            "operation": self.operation,
            "dry_run": self.dry_run,
            "items": c.items() + self.restored + self.verified,
            "rewrapped": c.rewrapped,
            "reencrypted": c.reencrypted,
            "from_legacy": c.from_legacy,
            "lifted_to_key_commitment": c.lifted,
            "restored": self.restored,
            "verified": self.verified,
            "skipped": c.skipped,
            "failed": c.failed,
            "done_before": c.done_before,
            "not_selected": c.not_selected,
            "empty": c.empty,
            "retried": c.retried,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "items_per_second": self.rate(),
            "stopped": self.stopped.map(|s| match s {
                Stop::MaxFailures => "max_failures",
                Stop::Interrupted => "interrupted",
            }),
            "kms": self.kms,
            "journal": self.journal.as_ref().map(|p| p.display().to_string()),
            "failure_report": self.failures.as_ref().filter(|_| c.failed > 0).map(|p| p.display().to_string()),
        });
        if let Some(map) = v.as_object_mut() {
            for (k, val) in &self.extra {
                map.insert(k.clone(), val.clone());
            }
        }
        v
    }

    /// The summary for people.
    pub fn to_text(&self) -> String {
        let c = &self.counts;
        let named = [
            ("rewrapped", c.rewrapped),
            ("re-encrypted", c.reencrypted),
            ("restored", self.restored),
            ("verified", self.verified),
            ("already done", c.skipped),
            ("done by the earlier run", c.done_before),
        ];
        let mut parts: Vec<String> =
            named.iter().filter(|(_, n)| *n > 0).map(|(name, n)| format!("{n} {name}")).collect();
        parts.push(format!("{} failed", c.failed));
        let items = c.items() + self.restored + self.verified;
        let mut out = format!(
            "{}{}: {} {} in {:.2}s ({}/s): {}\n",
            self.operation,
            if self.dry_run { " (dry run: nothing written; would be)" } else { "" },
            grouped(&items.to_string()),
            if items == 1 { "item" } else { "items" },
            self.elapsed.as_secs_f64(),
            grouped(&format!("{:.0}", self.rate())),
            parts.join(", ")
        );
        if c.from_legacy > 0 {
            out.push_str(&format!(
                "  legacy: {} of the re-encrypted items were unauthenticated CBC records; their content could not be checked for tampering before migration\n",
                c.from_legacy
            ));
        }
        if c.lifted > 0 {
            out.push_str(&format!(
                "  lifted: {} of the re-encrypted items were on a suite without key commitment, now on a committing one\n",
                c.lifted
            ));
        }
        if c.not_selected > 0 {
            out.push_str(&format!("  not selected ({}): {}\n", self.not_selected_reason, c.not_selected));
        }
        if c.empty > 0 {
            out.push_str(&format!("  empty values left alone: {}\n", c.empty));
        }
        match self.stopped {
            Some(Stop::MaxFailures) => out.push_str("  stopped early: --max-failures was reached\n"),
            Some(Stop::Interrupted) => out.push_str("  stopped early: interrupted\n"),
            None => {}
        }
        for (k, v) in &self.extra {
            match v {
                Value::Array(lines) => {
                    out.push_str(&format!("  {k}:\n"));
                    for line in lines {
                        out.push_str(&format!(
                            "    {}\n",
                            line.as_str().map_or_else(|| line.to_string(), str::to_owned)
                        ));
                    }
                }
                _ => out.push_str(&format!("  {k}: {}\n", v.as_str().map_or_else(|| v.to_string(), str::to_owned))),
            }
        }
        if let Some(kms) = &self.kms {
            out.push_str(&format!("  KMS: {}\n", kms["text"].as_str().unwrap_or_default()));
        }
        if let Some(j) = &self.journal {
            out.push_str(&format!(
                "  journal: {} (undo with `rekey rollback --journal {}`)\n",
                j.display(),
                j.display()
            ));
        }
        if c.failed > 0
            && let Some(f) = &self.failures
        {
            out.push_str(&format!("  failures: {}\n", f.display()));
        }
        out
    }
}

//! Counting and reporting: per-item failures as JSON Lines, and the final
//! summary as text or JSON.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::transform::{ChangeKind, ItemError, Outcome};
use crate::exit::CliError;

/// Counters of a run.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) rewrapped: AtomicU64,
    pub(crate) reencrypted: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried_items: AtomicU64,
    /// In a dry run, the first item that would change: the preflight sample.
    pub(crate) sample: Mutex<Option<Vec<u8>>>,
}

impl Stats {
    /// Keeps `item` as the preflight sample if there is none yet.
    pub(crate) fn offer_sample(&self, item: Vec<u8>) {
        if let Ok(mut sample) = self.sample.lock()
            && sample.is_none()
        {
            *sample = Some(item);
        }
    }

    /// Counts one item's result and reports a failure; returns whether it failed.
    pub(crate) fn count(
        &self,
        failures: &FailureLog,
        item: &str,
        operation: &str,
        result: Result<Outcome, ItemError>,
        attempts: u32,
    ) -> Result<bool, CliError> {
        if attempts > 1 {
            self.retried_items.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match result {
            Ok(Outcome::Skipped) => {
                self.skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(false)
            }
            Ok(Outcome::Changed { kind, new }) => {
                // In a dry run `new` is the item itself: the preflight sample.
                if !new.is_empty() {
                    self.offer_sample(new);
                }
                self.changed(kind);
                Ok(false)
            }
            Err(e) => {
                self.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                failures.record(item, operation, &e, attempts)?;
                Ok(true)
            }
        }
    }

    pub(crate) fn changed(&self, kind: ChangeKind) {
        match kind {
            ChangeKind::Rewrapped => &self.rewrapped,
            ChangeKind::Reencrypted => &self.reencrypted,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The failure report: one JSON object per failed item.
pub(crate) struct FailureLog {
    path: Option<PathBuf>,
    writer: Mutex<Option<BufWriter<File>>>,
}

impl FailureLog {
    /// A report at `path`, created on the first failure.
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Self { path, writer: Mutex::new(None) }
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub(crate) fn record(&self, item: &str, operation: &str, error: &ItemError, attempts: u32) -> Result<(), CliError> {
        tracing::warn!(item, code = error.code, "{}", error.message);
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut guard =
            self.writer.lock().map_err(|_| CliError::new(crate::exit::Code::Io, "failure log lock poisoned"))?;
        if guard.is_none() {
            let file = File::create(path).map_err(|e| CliError::io(format!("cannot create {}", path.display()), e))?;
            *guard = Some(BufWriter::new(file));
        }
        if let Some(writer) = guard.as_mut() {
            let line = json!({"item": item, "operation": operation, "error_code": error.code, "message": error.message, "attempts": attempts});
            writeln!(writer, "{line}").map_err(|e| CliError::io("cannot write the failure report", e))?;
        }
        Ok(())
    }

    pub(crate) fn finish(&self) -> Result<(), CliError> {
        let mut guard =
            self.writer.lock().map_err(|_| CliError::new(crate::exit::Code::Io, "failure log lock poisoned"))?;
        if let Some(writer) = guard.as_mut() {
            writer.flush().map_err(|e| CliError::io("cannot write the failure report", e))?;
        }
        Ok(())
    }
}

/// What a run did.
pub(crate) struct Summary {
    /// The dry run's preflight sample (an item's original bytes).
    pub(crate) sample: Option<Vec<u8>>,
    pub(crate) operation: &'static str,
    pub(crate) dry_run: bool,
    pub(crate) rewrapped: u64,
    pub(crate) reencrypted: u64,
    pub(crate) restored: u64,
    pub(crate) skipped: u64,
    pub(crate) failed: u64,
    pub(crate) elapsed: Duration,
    pub(crate) kms: Option<Value>,
    pub(crate) journal: Option<PathBuf>,
    pub(crate) failures: Option<PathBuf>,
    pub(crate) extra: Vec<(String, Value)>,
}

impl Summary {
    pub(crate) fn from_stats(operation: &'static str, stats: &Stats, elapsed: Duration) -> Self {
        Self {
            sample: stats.sample.lock().ok().and_then(|mut s| s.take()),
            operation,
            dry_run: false,
            rewrapped: Stats::get(&stats.rewrapped),
            reencrypted: Stats::get(&stats.reencrypted),
            restored: 0,
            skipped: Stats::get(&stats.skipped),
            failed: Stats::get(&stats.failed),
            elapsed,
            kms: None,
            journal: None,
            failures: None,
            extra: Vec::new(),
        }
    }

    fn items(&self) -> u64 {
        self.rewrapped + self.reencrypted + self.restored + self.skipped + self.failed
    }

    pub(crate) fn to_json(&self) -> Value {
        let secs = self.elapsed.as_secs_f64();
        let mut v = json!({
            "operation": self.operation,
            "dry_run": self.dry_run,
            "items": self.items(),
            "rewrapped": self.rewrapped,
            "reencrypted": self.reencrypted,
            "restored": self.restored,
            "skipped": self.skipped,
            "failed": self.failed,
            "elapsed_seconds": secs,
            "items_per_second": if secs > 0.0 { self.items() as f64 / secs } else { 0.0 },
            "kms": self.kms,
            "journal": self.journal.as_ref().map(|p| p.display().to_string()),
            "failure_report": self.failures.as_ref().filter(|_| self.failed > 0).map(|p| p.display().to_string()),
        });
        if let Some(map) = v.as_object_mut() {
            for (k, val) in &self.extra {
                map.insert(k.clone(), val.clone());
            }
        }
        v
    }

    pub(crate) fn to_text(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let counts = [
            ("rewrapped", self.rewrapped),
            ("re-encrypted", self.reencrypted),
            ("restored", self.restored),
            ("skipped (already done)", self.skipped),
        ];
        let mut parts: Vec<String> =
            counts.iter().filter(|(_, n)| *n > 0).map(|(name, n)| format!("{n} {name}")).collect();
        parts.push(format!("{} failed", self.failed));
        let mut out = format!(
            "{}{}: {} items in {:.2}s ({:.0}/s): {}\n",
            self.operation,
            if self.dry_run { " (dry run: would be)" } else { "" },
            self.items(),
            secs,
            if secs > 0.0 { self.items() as f64 / secs } else { 0.0 },
            parts.join(", ")
        );
        for (k, v) in &self.extra {
            out.push_str(&format!("  {k}: {}\n", v.as_str().map_or_else(|| v.to_string(), str::to_owned)));
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
        if self.failed > 0
            && let Some(f) = &self.failures
        {
            out.push_str(&format!("  failures: {}\n", f.display()));
        }
        out
    }
}

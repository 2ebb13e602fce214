//! The rotation engine: one engine for every target. It streams the
//! inventory, runs a bounded number of items at once (keeping their order,
//! which record streams need), retries transient faults per item, reports
//! permanent failures and goes on, and counts everything for the summary.

mod files;
pub(crate) mod journal;
mod records;
mod report;
pub(crate) mod transform;

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub(crate) use self::files::{FileTargets, rollback_files};
pub(crate) use self::records::{RecordFormat, RecordStream};
pub(crate) use self::report::Summary;
use self::transform::{ItemError, Outcome, Transform};
use crate::exit::CliError;

/// Engine settings common to every target.
pub(crate) struct Settings {
    pub(crate) concurrency: usize,
    pub(crate) item_attempts: u32,
    pub(crate) max_failures: Option<u64>,
    pub(crate) sample_percent: Option<f64>,
    pub(crate) limit: Option<u64>,
    pub(crate) dry_run: bool,
    pub(crate) resume: bool,
    pub(crate) journal: Option<PathBuf>,
    pub(crate) failures: Option<PathBuf>,
    pub(crate) progress: bool,
}

impl Settings {
    /// Whether `id` is in the deterministic sample: the same items are
    /// chosen on every run, so a later full run finishes the rest.
    pub(crate) fn sampled(&self, id: &str) -> bool {
        self.sample_percent.is_none_or(|percent| {
            let digest = Sha256::digest(id.as_bytes());
            let bucket = u64::from(u16::from_be_bytes([digest[0], digest[1]])) % 10_000;
            (bucket as f64) < percent * 100.0
        })
    }
}

/// Runs `transform` on one item, retrying transient faults with backoff.
/// Returns the outcome and the attempts made.
pub(crate) async fn apply_with_retries(
    transform: &Transform,
    item: &[u8],
    attempts: u32,
) -> (Result<Outcome, ItemError>, u32) {
    let mut attempt = 1;
    loop {
        match transform.apply(item).await {
            Err(e) if e.transient && attempt < attempts => {
                let backoff = Duration::from_millis(100u64 << attempt.min(6));
                tracing::info!(code = e.code, attempt, "transient failure; retrying the item");
                tokio::time::sleep(backoff).await;
                attempt += 1;
            }
            result => return (result, attempt),
        }
    }
}

/// Runs `work` on every input with at most `concurrency` in flight, handing
/// results to `sink` in input order. `sink` returns false to stop early.
pub(crate) async fn ordered_pipeline<I, T, W, Fut, R>(
    inputs: I,
    concurrency: usize,
    work: W,
    mut sink: impl FnMut(R) -> Result<bool, CliError>,
) -> Result<(), CliError>
where
    I: Iterator<Item = Result<T, CliError>>,
    W: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let mut in_flight = VecDeque::with_capacity(concurrency);
    for input in inputs {
        if in_flight.len() >= concurrency.max(1) {
            let done: tokio::task::JoinHandle<R> = in_flight.pop_front().expect("the queue is full, so not empty");
            if !sink(join(done).await?)? {
                return Ok(());
            }
        }
        in_flight.push_back(tokio::spawn(work(input?)));
    }
    while let Some(done) = in_flight.pop_front() {
        if !sink(join(done).await?)? {
            return Ok(());
        }
    }
    Ok(())
}

async fn join<R>(handle: tokio::task::JoinHandle<R>) -> Result<R, CliError> {
    handle.await.map_err(|e| CliError::new(crate::exit::Code::Io, format!("internal error: a worker failed: {e}")))
}

/// A progress bar on stderr when it is a terminal: items/s, ETA, failures, throttles.
pub(crate) fn progress_bar(enabled: bool, total: Option<u64>) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(n) => (indicatif::ProgressBar::new(n), "{bar:30} {pos}/{len} items {per_sec} eta {eta} {msg}"),
        None => (indicatif::ProgressBar::new_spinner(), "{spinner} {pos} items {per_sec} {msg}"),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

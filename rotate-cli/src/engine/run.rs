//! One run: selection, resume, the preflight, bounded parallelism with
//! results kept in source order, retries, failures and the summary.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use super::item::{Item, Unit};
use super::journal::{self, Checkpoint, Entry, Journal};
use super::ports::{Progress, Rejected, Sink, Source};
use super::report::{Counts, FailureLog, Stop, Summary};
use super::settings::Settings;
use super::transform::{ChangeKind, Outcome, Transform};
/// One run of the engine.
pub struct Engine {
    /// `rewrap`, `reencrypt`, `scan`: names the run in reports.
    pub operation: &'static str,
    /// The settings.
    pub settings: Settings,
    /// What to do to each item; `None` only loads them (scans).
    pub transform: Option<Arc<Transform>>,
    /// Where failed items are reported.
    pub failures: Arc<FailureLog>,
    /// Progress reports.
    pub progress: Arc<dyn Progress>,
    /// Set (by a signal handler) to stop cleanly: no new units, in-flight ones finish.
    pub cancel: Arc<AtomicBool>,
}

/// Hash of a unit id, for the resume set: constant size whatever the id.
fn id_hash(id: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&Sha256::digest(id.as_bytes())[..16]);
    out
}

/// What an earlier run of the same journal finished.
#[derive(Default)]
struct Resume {
    done: HashSet<[u8; 16]>,
    checkpoint: Option<(Checkpoint, Counts)>,
}

impl Resume {
    fn from_entries(entries: &[Entry]) -> Result<Self, Error> {
        let mut resume = Self::default();
        for entry in entries {
            match entry {
                Entry::Done { item } => {
                    resume.done.insert(id_hash(item));
                }
                Entry::Checkpoint { at, counts } => {
                    resume.checkpoint = Some((at.clone(), *counts));
                }
                Entry::Complete { output } => {
                    return Err(Error::usage(format!("this run already finished and wrote {output}"))
                        .hint("there is nothing to resume; roll it back or choose another --journal"));
                }
                _ => {}
            }
        }
        Ok(resume)
    }
}

type Batch<P> = Vec<Unit<P>>;

impl Engine {
    /// Runs over every unit of `source`, writing through `sink`.
    ///
    /// # Errors
    /// A failure that stops the run: bad settings, the preflight, the
    /// journal, the inventory, or a sink's ordered write. Item failures do
    /// not stop it (unless `--max-failures`); they are counted and reported.
    pub async fn run<S, K>(&self, mut source: S, sink: Arc<K>) -> Result<Summary, Error>
    where
        S: Source,
        K: Sink<S::Payload>,
    {
        let start = Instant::now();
        self.settings.check()?;
        let mut summary = Summary::new(self.operation);
        summary.dry_run = self.settings.dry_run;
        summary.failures = self.failures.path().map(PathBuf::from);

        // What an earlier run did, read before anything is written.
        let journal_spec = self.settings.journal.as_ref().filter(|_| !self.settings.dry_run);
        let resume = match journal_spec {
            Some((path, _)) if self.settings.resume && std::fs::symlink_metadata(path).is_ok() => {
                Resume::from_entries(&journal::read_locked(path)?.1)?
            }
            _ => Resume::default(),
        };
        let mut counts = resume.checkpoint.as_ref().map(|(_, c)| *c).unwrap_or_default();
        if let Some((at, _)) = &resume.checkpoint {
            source.resume(at)?;
        }
        if let Some(total) = source.total() {
            self.progress.total(total);
        }

        // Select, and hold back the units up to the first selected one for the preflight.
        let mut selected = 0u64;
        let mut done_before = 0u64;
        let mut pending: VecDeque<Unit<S::Payload>> = VecDeque::new();
        let mut next = |source: &mut S| -> Result<Option<Unit<S::Payload>>, Error> {
            let Some(mut unit) = source.next_unit()? else {
                return Ok(None);
            };
            let done = !resume.done.is_empty() && resume.done.contains(&id_hash(&unit.id));
            unit.selected =
                !done && self.settings.selects(&unit.id) && self.settings.limit.is_none_or(|l| selected < l);
            if unit.selected {
                selected += 1;
            } else if done {
                done_before += 1;
            }
            Ok(Some(unit))
        };
        if self.settings.preflight
            && let Some(transform) = &self.transform
        {
            let mut tried = 0;
            let mut failures: Vec<(String, ItemError)> = Vec::new();
            while tried < PREFLIGHT_UNITS {
                let Some(mut unit) = next(&mut source)? else {
                    break;
                };
                if unit.selected {
                    tried += 1;
                    let tried_unit = preflight::<S>(transform, &mut unit, self.settings.item_attempts);
                    // A panic is this unit's own failure (a worker reports it), never the run's.
                    let checked = CatchUnwind(Box::pin(tried_unit)).await.unwrap_or_else(|_| {
                        unit.items.clear();
                        Ok(())
                    });
                    match checked {
                        Ok(()) => {
                            pending.push_back(unit);
                            failures.clear();
                            break;
                        }
                        Err(failure) => failures.push(failure),
                    }
                }
                pending.push_back(unit);
            }
            if let Some(e) = doomed(&failures) {
                return Err(e);
            }
        }

        // Now, and only now, the journal is created.
        let journal = match journal_spec {
            Some((path, params)) => {
                let (journal, _) = Journal::open(path, self.settings.resume, params)?;
                summary.journal = Some(path.clone());
                Some(Arc::new(journal))
            }
            None => None,
        };
        sink.start(journal.clone(), resume.checkpoint.as_ref().map(|(at, _)| at))?;

        let attempts = self.settings.item_attempts.max(1);
        // --concurrency tasks in flight, each a batch of units (one file, or
        // 64 records): the units of a batch run at once, so a record stream
        // keeps concurrency × 64 KMS requests in flight (1,024 by default,
        // enough for 100,000/s at a 10 ms round trip); the KMS client's
        // adaptive rate, not this window, keeps them under the quota.
        let window = self.settings.concurrency.max(2);
        let mut in_flight: VecDeque<tokio::task::JoinHandle<Batch<S::Payload>>> = VecDeque::new();
        let mut exhausted = false;
        let mut stop = None;
        // A journal that cannot be written stops the run: nothing done after
        // it could be undone. Units in flight finish (each journals first).
        let mut journal_failure = None;
        loop {
            // Keep the window full.
            while !exhausted && stop.is_none() && journal_failure.is_none() && in_flight.len() < window {
                if self.cancel.load(Ordering::Relaxed) {
                    stop = Some(Stop::Interrupted);
                    break;
                }
                let mut batch = Vec::with_capacity(S::BATCH);
                while batch.len() < S::BATCH {
                    let unit = match pending.pop_front() {
                        Some(u) => Some(u),
                        None => next(&mut source)?,
                    };
                    match unit {
                        Some(u) => batch.push(u),
                        None => {
                            exhausted = true;
                            break;
                        }
                    }
                }
                if batch.is_empty() {
                    break;
                }
                let transform = self.transform.clone();
                let sink = Arc::clone(&sink);
                in_flight.push_back(tokio::spawn(async move {
                    if batch.len() == 1 {
                        for unit in &mut batch {
                            process_caught::<S, K>(transform.as_deref(), &sink, unit, attempts).await;
                        }
                        return batch;
                    }
                    let units: Vec<_> = batch
                        .into_iter()
                        .map(|mut unit| {
                            let (transform, sink) = (transform.clone(), Arc::clone(&sink));
                            tokio::spawn(async move {
                                process_caught::<S, K>(transform.as_deref(), &sink, &mut unit, attempts).await;
                                unit
                            })
                        })
                        .collect();
                    let mut done = Vec::with_capacity(units.len());
                    for unit in units {
                        // Panics are caught per unit: a join error here is the runtime's.
                        done.push(unit.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
                    }
                    done
                }));
            }
            let Some(handle) = in_flight.pop_front() else {
                break;
            };
            let batch =
                handle.await.map_err(|e| Error::new(ErrorKind::Io, format!("internal error: a worker failed: {e}")))?;
            for unit in batch {
                self.count(&unit, &mut counts)?;
                let rejected = sink.commit(unit, &counts)?;
                self.reject(rejected, &mut counts)?;
                self.progress.advance(1, counts.failed);
            }
            if let Some((read, total)) = source.bytes() {
                self.progress.bytes(read, total);
            }
            if stop.is_none() && self.settings.max_failures.is_some_and(|m| counts.failed >= m) {
                stop = Some(Stop::MaxFailures);
            }
            if stop.is_none() && self.cancel.load(Ordering::Relaxed) {
                stop = Some(Stop::Interrupted);
            }
            if journal_failure.is_none() {
                journal_failure = journal.as_ref().and_then(|j| j.failure());
            }
        }
        if let Some(e) = journal_failure {
            self.failures.finish()?;
            self.progress.finish();
            return Err(e);
        }
        counts.done_before += done_before;
        counts.not_selected -= done_before.min(counts.not_selected);
        let complete = stop.is_none();
        let rejected = sink.finish(complete, &counts)?;
        self.reject(rejected, &mut counts)?;
        if let Some(journal) = &journal {
            journal.sync()?;
        }
        self.failures.finish()?;
        self.progress.finish();
        summary.counts = counts;
        summary.stopped = stop;
        summary.total = source.total();
        summary.elapsed = start.elapsed();
        Ok(summary)
    }

    /// Counts changes an ordered sink could not store as failures.
    fn reject(&self, rejected: Vec<Rejected>, counts: &mut Counts) -> Result<(), Error> {
        for r in rejected {
            counts.unstored(r.kind);
            self.failures.record(&r.item, self.operation, &r.error, 1)?;
        }
        Ok(())
    }

    /// Counts a unit's results and reports its failures.
    fn count<P>(&self, unit: &Unit<P>, counts: &mut Counts) -> Result<(), Error> {
        if !unit.selected {
            counts.not_selected += u64::from(!unit.items.is_empty() || unit.error.is_none());
            return Ok(());
        }
        if let Some(error) = &unit.error {
            counts.failed += 1;
            self.progress.unit_failed(&unit.id, error);
            return self.failures.record(&unit.id, self.operation, error, 1);
        }
        for item in &unit.items {
            if let Some(result) = &item.result {
                self.progress.item(item);
                // `-v`: what was done to each item, and under which key.
                let to = self.transform.as_ref().map(|t| t.destination_label());
                match result {
                    Ok(Outcome::Changed { kind, .. }) => {
                        let done = match kind {
                            ChangeKind::Rewrapped => "rewrapped",
                            ChangeKind::Reencrypted => "re-encrypted",
                            ChangeKind::FromLegacy => "re-encrypted from legacy CBC",
                            ChangeKind::Lifted => "re-encrypted onto a key-committing suite",
                        };
                        tracing::info!("{}: {}: {done} to {}", self.operation, item.name, to.unwrap_or("-"));
                    }
                    Ok(other) => tracing::info!(
                        "{}: {}: {}",
                        self.operation,
                        item.name,
                        match other {
                            Outcome::Empty => "empty, left alone",
                            _ => "already done",
                        }
                    ),
                    Err(_) => {}
                }
            }
            if item.attempts > 1 {
                counts.retried += 1;
            }
            match &item.result {
                None => {}
                Some(Ok(Outcome::Skipped)) => counts.skipped += 1,
                Some(Ok(Outcome::Empty)) => counts.empty += 1,
                Some(Ok(Outcome::Changed { kind, .. })) => match kind {
                    ChangeKind::Rewrapped => counts.rewrapped += 1,
                    ChangeKind::Reencrypted => counts.reencrypted += 1,
                    ChangeKind::FromLegacy => {
                        counts.reencrypted += 1;
                        counts.from_legacy += 1;
                    }
                    ChangeKind::Lifted => {
                        counts.reencrypted += 1;
                        counts.lifted += 1;
                    }
                },
                Some(Err(e)) => {
                    counts.failed += 1;
                    self.failures.record(&item.name, self.operation, e, item.attempts)?;
                }
            }
        }
        Ok(())
    }
}

/// Loads, transforms and writes one unit, in a worker.
async fn process<S: Source, K: Sink<S::Payload>>(
    transform: Option<&Transform>,
    sink: &K,
    unit: &mut Unit<S::Payload>,
    attempts: u32,
) {
    if !unit.selected {
        return;
    }
    if let Err(e) = S::load(unit).await {
        unit.error = Some(e);
        return;
    }
    if let Some(transform) = transform {
        // Items the source already failed (a missing field) keep their error.
        for item in unit.items.iter_mut().filter(|i| i.result.is_none()) {
            let (result, tries) = apply_with_retries(transform, item, attempts).await;
            item.result = Some(result);
            item.attempts = tries;
        }
    }
    if let Err(e) = sink.write(unit).await {
        // The write failed: every change of the unit failed with it.
        for item in &mut unit.items {
            if matches!(item.result, Some(Ok(Outcome::Changed { .. }))) {
                item.result = Some(Err(e.clone()));
            }
        }
    }
}

/// [`process`], with a panic turned into the unit's own failure: one
/// unit's panic (a bug, a library's assertion) never ends the run.
async fn process_caught<S: Source, K: Sink<S::Payload>>(
    transform: Option<&Transform>,
    sink: &K,
    unit: &mut Unit<S::Payload>,
    attempts: u32,
) {
    let processed = CatchUnwind(Box::pin(process::<S, K>(transform, sink, unit, attempts)));
    if let Err(panic) = processed.await {
        fail_panicked(unit, &*panic);
    }
}

/// A future whose panic is returned instead of unwinding further, so a
/// worker can fail the one unit that panicked and go on.
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(out)) => std::task::Poll::Ready(Ok(out)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

/// Marks a unit whose processing panicked as failed, as a whole: what it
/// wrote, if anything, its journal entries say.
fn fail_panicked<P>(unit: &mut Unit<P>, panic: &(dyn std::any::Any + Send)) {
    let why = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    let error = ItemError::new(
        ItemErrorCode::Io,
        format!("internal error while processing this item (a panic: {why}); the run went on without it"),
    );
    let mut marked = false;
    for item in &mut unit.items {
        if matches!(item.result, None | Some(Ok(Outcome::Changed { .. }))) {
            item.result = Some(Err(error.clone()));
            marked = true;
        }
    }
    if !marked {
        unit.error = Some(error);
    }
}

/// Units the preflight tries: the run stops only when all of them fail, for
/// a reason every item would share (a missing `--from`, a key it may not
/// use) or all the same way (a wrong context, a mistyped field), so one odd
/// or forged item cannot stop a run.
const PREFLIGHT_UNITS: usize = 3;

/// The preflight: one unit's first item transformed in memory. Returns the
/// item's name and why it failed (loading it, or transforming it).
async fn preflight<S: Source>(
    transform: &Transform,
    unit: &mut Unit<S::Payload>,
    attempts: u32,
) -> Result<(), (String, ItemError)> {
    if let Err(e) = S::load(unit).await {
        return Err((unit.id.clone(), e));
    }
    let Some(item) = unit.items.iter().find(|i| i.result.is_none()) else {
        // Every item already failed as the source read it (a missing field).
        return match unit.items.iter().find_map(|i| match &i.result {
            Some(Err(e)) => Some((i.name.clone(), e.clone())),
            _ => None,
        }) {
            Some(failure) => Err(failure),
            None => Ok(()),
        };
    };
    let (result, _) = apply_with_retries(transform, item, attempts).await;
    match result {
        Err(e) => Err((item.name.clone(), e)),
        Ok(_) => {
            // Loaded again by the worker; the keyring caches make that cheap.
            unit.items.clear();
            Ok(())
        }
    }
}

/// Whether the preflight's failures doom the run: every unit tried failed,
/// and either all for a reason every item would share (a key or permission
/// problem), or, two or more, all the same way (every one a wrong context,
/// a field no record has). Then the run stops before
/// anything is written, naming the cause. A mix of reasons, or a transient
/// fault, lets the run go on.
fn doomed(failures: &[(String, ItemError)]) -> Option<Error> {
    let (first_name, first) = failures.first()?;
    let all_systemic = failures.iter().all(|(_, e)| e.code.is_systemic());
    // Alike: two items at least, failing for a reason the operator's
    // parameters explain (a field, a context), not one an item can have on
    // its own (a directory's first files may well not be envelopes).
    let all_alike = failures.len() >= 2
        && matches!(
            first.code,
            ItemErrorCode::MissingField | ItemErrorCode::InvalidCiphertext | ItemErrorCode::ContextMismatch
        )
        && failures.iter().all(|(_, e)| e.code == first.code);
    if !(all_systemic || all_alike) {
        return None;
    }
    let (kind, hint) = match first.code {
        ItemErrorCode::MissingField => (
            ErrorKind::Usage,
            "nothing was written; check the spelling of --field/--column against the fields named above",
        ),
        ItemErrorCode::InvalidCiphertext | ItemErrorCode::ContextMismatch => (
            first.keyring.map_or(ErrorKind::Usage, ErrorKind::Keyring),
            "nothing was written; check --source-context (or --context): it must be the context the items were \
             encrypted with, and --from: the keys they are under",
        ),
        _ => (
            first.keyring.map_or(ErrorKind::Usage, ErrorKind::Keyring),
            "nothing was written; check --from, --source-context and the key permissions (a --dry-run shows the plan)",
        ),
    };
    let which = if failures.len() == 1 {
        format!("the first item ({first_name}) cannot be processed")
    } else {
        format!("the first {} items all fail the same way; the first, {first_name}", failures.len())
    };
    Some(Error::new(kind, format!("preflight: {which}: {}", first.message)).hint(hint))
}

/// Runs `transform` on one item, retrying transient faults with backoff.
/// Returns the outcome and the attempts made.
pub async fn apply_with_retries(
    transform: &Transform,
    item: &Item,
    attempts: u32,
) -> (Result<Outcome, ItemError>, u32) {
    let mut attempt = 1;
    loop {
        match transform.apply(item).await {
            Err(e) if e.code.is_transient() && attempt < attempts => {
                let backoff = Duration::from_millis(100u64 << attempt.min(6));
                tracing::info!(code = %e.code, attempt, "transient failure; retrying the item");
                tokio::time::sleep(backoff).await;
                attempt += 1;
            }
            result => return (result, attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::settings::Shard;

    #[test]
    fn shards_partition_the_units_exactly() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("item {i}")).collect();
        let mut seen = vec![0u32; ids.len()];
        for index in 0..4 {
            let settings = Settings { shard: Some(Shard { index, count: 4 }), ..Settings::default() };
            for (n, id) in ids.iter().enumerate() {
                if settings.selects(id) {
                    seen[n] += 1;
                }
            }
        }
        assert!(seen.iter().all(|n| *n == 1), "every unit in exactly one shard");
        assert!("4/4".parse::<Shard>().is_err() && "1/0".parse::<Shard>().is_err() && "x".parse::<Shard>().is_err());
    }
}

//! Files and directories of items, rewritten in place: the journal entry is
//! made durable first, then the replacement is written to a temporary file
//! beside the original, fsynced, renamed over it, and the directory fsynced.
//! A crash at any moment leaves each file either as it was or as it will be.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::journal::{self, Entry, Journal};
use super::report::{FailureLog, Stats, Summary};
use super::transform::{Outcome, Transform};
use super::{Settings, apply_with_retries, ordered_pipeline, progress_bar};
use crate::exit::{CliError, Code};
use crate::output::write_atomic;

/// Suffixes of files the engine writes itself and never treats as items.
const OWN_SUFFIXES: [&str; 3] = [".rekey-journal", ".failures.jsonl", ".rekey-partial"];

/// The file targets of a run.
pub(crate) struct FileTargets {
    roots: Vec<PathBuf>,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl FileTargets {
    pub(crate) fn new(roots: Vec<PathBuf>, include: &[String], exclude: &[String]) -> Result<Self, CliError> {
        for root in &roots {
            if !root.exists() {
                return Err(CliError::new(Code::Io, format!("target {} does not exist", root.display())));
            }
        }
        Ok(Self { roots, include: globs(include)?, exclude: globs(exclude)? })
    }

    /// The default journal: beside the first target, named after it.
    pub(crate) fn default_journal(&self) -> PathBuf {
        let root = &self.roots[0];
        let name = root.file_name().map_or_else(|| "rekey".into(), |n| n.to_string_lossy().into_owned());
        let parent = root
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        parent.join(format!("{name}.rekey-journal"))
    }

    /// Walks the targets lazily, in a stable order: `(item id, path)`.
    fn inventory<'a>(
        &'a self,
        settings: &'a Settings,
    ) -> impl Iterator<Item = Result<(String, PathBuf), CliError>> + 'a {
        let mut taken = 0u64;
        self.roots
            .iter()
            .flat_map(move |root| {
                walkdir::WalkDir::new(root).sort_by_file_name().into_iter().map(move |entry| (root, entry))
            })
            .filter_map(move |(root, entry)| {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        return Some(Err(CliError::new(Code::Io, format!("cannot list {}: {e}", root.display()))));
                    }
                };
                if !entry.file_type().is_file() {
                    return None;
                }
                let path = entry.path();
                let name = path.file_name()?.to_string_lossy();
                if name.contains(".rekey-tmp.") {
                    // The leftover of a write that was interrupted before its
                    // rename: the original beside it is intact. The journal
                    // lock rules out a live run owning it.
                    if let Err(e) = std::fs::remove_file(path) {
                        tracing::warn!("cannot remove the stale temporary {}: {e}", path.display());
                    }
                    return None;
                }
                if OWN_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                    return None;
                }
                let relative = path.strip_prefix(root).unwrap_or(path);
                let relative = if relative.as_os_str().is_empty() { Path::new(path.file_name()?) } else { relative };
                if self.include.as_ref().is_some_and(|g| !g.is_match(relative))
                    || self.exclude.as_ref().is_some_and(|g| g.is_match(relative))
                {
                    return None;
                }
                // Absolute, so a rollback from another directory finds the file.
                let id = path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).display().to_string();
                settings.sampled(&id).then_some(Ok((id, path.to_path_buf())))
            })
            .take_while(move |_| {
                taken += 1;
                settings.limit.is_none_or(|limit| taken <= limit)
            })
    }

    /// Counts the inventory, for the progress bar and dry runs.
    pub(crate) fn count(&self, settings: &Settings) -> Result<u64, CliError> {
        let mut n = 0;
        for item in self.inventory(settings) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Runs the transform over every file.
    pub(crate) async fn run(
        &self,
        transform: Arc<Transform>,
        settings: &Settings,
        operation: &'static str,
    ) -> Result<Summary, CliError> {
        let start = Instant::now();
        let stats = Arc::new(Stats::default());
        let journal_path = settings.journal.clone().unwrap_or_else(|| self.default_journal());
        // A dry run writes nothing, not even a failure report (failures are logged).
        let failures_path = settings.failures.clone().unwrap_or_else(|| with_suffix(&journal_path, ".failures.jsonl"));
        let failures = Arc::new(FailureLog::new((!settings.dry_run).then_some(failures_path)));
        // Open (and lock) the journal before walking: the walk removes stale temporaries.
        let journal = if settings.dry_run {
            None
        } else {
            let run = Entry::Run {
                operation: operation.to_owned(),
                targets: self.roots.iter().map(|r| r.display().to_string()).collect(),
                version: 1,
            };
            Some(Arc::new(Journal::open(&journal_path, settings.resume, &run)?))
        };
        let total = if settings.progress { self.count(settings).ok() } else { None };
        let bar = progress_bar(settings.progress, total);
        let attempts = settings.item_attempts.max(1);
        let dry_run = settings.dry_run;

        let work = |(id, path): (String, PathBuf)| {
            let transform = Arc::clone(&transform);
            let journal = journal.clone();
            async move {
                let original = match tokio::fs::read(&path).await {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        return (
                            id,
                            Err(super::transform::ItemError { code: "io", message: e.to_string(), transient: false }),
                            1,
                        );
                    }
                };
                let (result, attempts) = apply_with_retries(&transform, &original, attempts).await;
                let result = match (result, journal) {
                    (Ok(Outcome::Changed { new, kind }), Some(journal)) if !dry_run => {
                        let id2 = id.clone();
                        let written =
                            tokio::task::spawn_blocking(move || replace(&journal, &id2, &path, &original, &new)).await;
                        match written {
                            Ok(Ok(())) => Ok(Outcome::Changed { new: Vec::new(), kind }),
                            Ok(Err(e)) => Err(super::transform::ItemError {
                                code: "io",
                                message: e.to_string(),
                                transient: false,
                            }),
                            Err(e) => Err(super::transform::ItemError {
                                code: "io",
                                message: e.to_string(),
                                transient: false,
                            }),
                        }
                    }
                    (result, _) => result,
                };
                (id, result, attempts)
            }
        };

        let max_failures = settings.max_failures;
        let sink_stats = Arc::clone(&stats);
        let sink_failures = Arc::clone(&failures);
        let mut aborted = false;
        ordered_pipeline(self.inventory(settings), settings.concurrency, work, |(id, result, attempts)| {
            bar.inc(1);
            if sink_stats.count(&sink_failures, &id, operation, result, attempts)? {
                let failed = Stats::get(&sink_stats.failed);
                bar.set_message(format!("{failed} failed"));
                if max_failures.is_some_and(|max| failed >= max) {
                    aborted = true;
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
        bar.finish_and_clear();
        failures.finish()?;
        let mut summary = Summary::from_stats(operation, &stats, start.elapsed());
        summary.dry_run = dry_run;
        summary.journal = journal.as_ref().map(|j| j.path().to_path_buf());
        summary.failures = failures.path().map(Path::to_path_buf);
        if aborted {
            summary.extra.push(("stopped".into(), "early: --max-failures was reached".into()));
        }
        Ok(summary)
    }
}

/// Journal, then replace: the order that makes a crash recoverable.
fn replace(journal: &Journal, id: &str, path: &Path, original: &[u8], new: &[u8]) -> Result<(), CliError> {
    journal.begin(id, original, new)?;
    write_atomic(path, new, Some(path)).map_err(|e| CliError::io(format!("cannot replace {}", path.display()), e))?;
    journal.append(&Entry::Done { item: id.to_owned() }, false)
}

/// Puts every file a journal changed back as it was. A file that is neither
/// the recorded new version nor the original (changed since) is reported
/// and left alone.
pub(crate) fn rollback_files(journal_path: &Path) -> Result<Summary, CliError> {
    let start = Instant::now();
    let entries = journal::read(journal_path)?;
    let stats = Stats::default();
    let mut conflicts = Vec::new();
    let mut restored = 0;
    let mut seen = std::collections::HashSet::new();
    // Latest first, so an item changed twice (resumed runs) returns to its first original.
    for entry in entries.iter().rev() {
        if let Entry::Checkpoint { .. } | Entry::Complete { .. } = entry {
            return Err(CliError::usage("this journal is of a record stream, whose input was never modified")
                .hint("the original records are still in the input file; remove the output to undo"));
        }
        let Entry::Begin { item, old_sha256, new_sha256, original_b64 } = entry else {
            continue;
        };
        let path = Path::new(item);
        let current = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                conflicts.push(format!("{item}: {e}"));
                continue;
            }
        };
        let current_hash = journal::sha256(&current);
        if current_hash == *new_sha256 {
            let original = journal::decode_original(original_b64)?;
            if journal::sha256(&original) != *old_sha256 {
                return Err(CliError::new(Code::BadInput, format!("the journal's copy of {item} is damaged")));
            }
            write_atomic(path, &original, Some(path)).map_err(|e| CliError::io(format!("cannot restore {item}"), e))?;
            restored += 1;
            seen.insert(item.clone());
        } else if current_hash == *old_sha256 || seen.contains(item) {
            stats.skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            conflicts.push(format!("{item}: changed since the run; left as it is"));
        }
    }
    let mut summary = Summary::from_stats("rollback", &stats, start.elapsed());
    summary.restored = restored;
    for c in conflicts {
        eprintln!("rekey: rollback: {c}");
    }
    Ok(summary)
}

fn globs(patterns: &[String]) -> Result<Option<GlobSet>, CliError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(Glob::new(p).map_err(|e| CliError::usage(format!("bad glob {p:?}: {e}")))?);
    }
    builder.build().map(Some).map_err(|e| CliError::usage(format!("bad globs: {e}")))
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

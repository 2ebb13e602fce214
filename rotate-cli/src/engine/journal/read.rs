//! Reading a whole journal: to resume, to roll back, to retire one that changed nothing.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::entry::*;
use super::lines::*;
use crate::engine::error::{Error, ErrorKind};
use crate::fsio;

/// Whether a journal records no change at all (every item failed, or was
/// already done): it has nothing to undo.
pub fn changed_nothing(entries: &[Entry]) -> bool {
    entries.iter().all(|e| match e {
        Entry::Begin { .. } | Entry::Row { .. } | Entry::Object { .. } | Entry::Change { .. } => false,
        Entry::Checkpoint { counts, .. } => counts.rewrapped == 0 && counts.reencrypted == 0,
        _ => true,
    })
}

/// Retires the journal of a run that changed nothing, so it no longer
/// blocks the next run: it and its failure report are renamed to
/// `JOURNAL.retired` (`.retired.2`, … when taken), kept as a record.
/// Returns the new name, or `None` when the journal records a change.
///
/// # Errors
/// I/O errors, a journal in use by a run, a damaged journal.
pub fn retire_if_unchanged(path: &Path) -> Result<Option<PathBuf>, Error> {
    let (_lock, entries) = read_locked(path)?;
    if !changed_nothing(&entries) {
        return Ok(None);
    }
    let retired = (1..)
        .map(|n| {
            let suffix = if n == 1 { ".retired".to_owned() } else { format!(".retired.{n}") };
            suffixed(path, &suffix)
        })
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or_else(|| suffixed(path, ".retired"));
    std::fs::rename(path, &retired)
        .map_err(|e| Error::io(format!("cannot retire the journal {}", path.display()), &e))?;
    let failures = suffixed(path, ".failures.jsonl");
    if std::fs::symlink_metadata(&failures).is_ok() {
        std::fs::rename(&failures, suffixed(&retired, ".failures.jsonl"))
            .map_err(|e| Error::io(format!("cannot move the failure report {}", failures.display()), &e))?;
    }
    fsio::sync_dir(path).map_err(|e| Error::io("cannot sync the journal's directory", &e))?;
    Ok(Some(retired))
}

/// `path` with `suffix` appended to its file name.
pub(super) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Reads a journal for rollback, holding its lock for as long as the
/// returned file lives; a torn last line is ignored, any other damage is an error.
///
/// # Errors
/// I/O errors, a journal in use by a run, a damaged journal.
pub fn read_locked(path: &Path) -> Result<(File, Vec<Entry>), Error> {
    let mut file = fsio::open_private(path, false)
        .map_err(|e| Error::io(format!("cannot open journal {}", path.display()), &e))?;
    lock(&file, path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| Error::io("cannot read the journal", &e))?;
    let (entries, _) = parse(&bytes, path)?;
    if !matches!(entries.first(), Some(Entry::Run { .. })) {
        return Err(Error::new(ErrorKind::BadInput, format!("{} is not a rekey journal", path.display())));
    }
    Ok((file, entries))
}

/// Reads a journal for rollback like [`read_locked`], but past damaged
/// lines: every intact entry is returned, with a sentence for each line
/// skipped (torn or altered), so a rollback can restore what it can and
/// say what it could not.
///
/// # Errors
/// I/O errors, a journal in use by a run, a file that is not a journal.
pub fn read_for_rollback(path: &Path) -> Result<(File, Vec<Entry>, Vec<String>), Error> {
    let mut file = fsio::open_private(path, false)
        .map_err(|e| Error::io(format!("cannot open journal {}", path.display()), &e))?;
    lock(&file, path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| Error::io("cannot read the journal", &e))?;
    let read = read_lines(&bytes);
    if !matches!(read.entries.first(), Some(Entry::Run { .. })) {
        return Err(Error::new(ErrorKind::BadInput, format!("{} is not a rekey journal", path.display())));
    }
    let skipped = read
        .damaged
        .iter()
        .map(|d| {
            format!(
                "journal {}: {}; skipped: the change it recorded, if any, is not undone",
                path.display(),
                d.describe()
            )
        })
        .collect();
    Ok((file, read.entries, skipped))
}

/// A journal opened for rollback: read once, past damaged lines, and
/// locked until dropped.
#[derive(Debug)]
pub struct RollbackJournal {
    path: PathBuf,
    entries: Vec<Entry>,
    skipped: Vec<String>,
    _lock: File,
}

impl RollbackJournal {
    /// Opens, locks and reads `path` (see [`read_for_rollback`]).
    ///
    /// # Errors
    /// I/O errors, a journal in use by a run, a file that is not a journal.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let (lock, entries, skipped) = read_for_rollback(path)?;
        Ok(Self { path: path.to_path_buf(), entries, skipped, _lock: lock })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every intact entry, the run entry first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// A sentence for each damaged line skipped.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The run's parameters.
    pub fn params(&self) -> &RunParams {
        static NONE: RunParams = RunParams::new();
        match self.entries.first() {
            Some(Entry::Run { params, .. }) => params,
            _ => &NONE,
        }
    }

    /// The kind of target the run was on: its `target` parameter; journals
    /// of files and record streams did not record one, and are `files`
    /// (whose rollback recognises a stream's journal by its checkpoints).
    pub fn target_kind(&self) -> &str {
        self.params().get("target").map_or("files", String::as_str)
    }
}

//! Putting back the files a journal changed.

use std::fs::File;
use std::path::Path;

use std::io::{Seek, Write};

use sha2::{Digest, Sha256};

use super::base::*;
use crate::engine::error::{Error, ErrorKind};
use crate::engine::journal::{self, Entry, Undo};
use crate::engine::report::Summary;
use crate::fsio::{self, AtomicFile};

/// Writes the original of `path` beside it from its undo record and swaps
/// it in if the file is still `stamp`. Returns whether it was restored.
pub(super) fn restore(path: &Path, stamp: Stamp, undo: &Undo, old_sha256: &str) -> Result<bool, Error> {
    let item = path.display();
    let failed = |e: &dyn std::fmt::Display| Error::new(ErrorKind::Io, format!("cannot restore {item}: {e}"));
    let damaged = || Error::new(ErrorKind::BadInput, format!("the journal's undo record of {item} is damaged"));
    let still = |displaced: &Path| Stamp::of(displaced).ok() == Some(stamp);
    if let Undo::Backup { path: backup } = undo {
        if hash_file(Path::new(backup)).map_err(|e| failed(&e))? != old_sha256 {
            return Err(damaged());
        }
        return fsio::swap_in(Path::new(backup), path, still).map_err(|e| failed(&e));
    }
    let mut file = AtomicFile::create(path, Some(path)).map_err(|e| failed(&e))?;
    let mut hash = Sha256::new();
    let header = if stamp.len >= STREAM_FROM { read_framed_header(path).map_err(|e| failed(&e))? } else { None };
    match (undo, header) {
        (Undo::KeyList { edks_b64 }, Some(header)) => {
            let old_header =
                journal::with_key_list(&header, &journal::parse_key_list(edks_b64)?).ok_or_else(damaged)?;
            let mut body = File::open(path).map_err(|e| failed(&e))?;
            body.seek(std::io::SeekFrom::Start(header.len() as u64)).map_err(|e| failed(&e))?;
            let mut writer = HashingWriter { inner: &mut file, hash: &mut hash };
            writer.write_all(&old_header).map_err(|e| failed(&e))?;
            std::io::copy(&mut body, &mut writer).map_err(|e| failed(&e))?;
        }
        (Undo::KeyList { edks_b64 }, None) => {
            let current = std::fs::read(path).map_err(|e| failed(&e))?;
            let original = journal::with_key_list(&current, &journal::parse_key_list(edks_b64)?).ok_or_else(damaged)?;
            HashingWriter { inner: &mut file, hash: &mut hash }.write_all(&original).map_err(|e| failed(&e))?;
        }
        (Undo::Original { b64 }, _) => {
            HashingWriter { inner: &mut file, hash: &mut hash }
                .write_all(&journal::unb64(b64)?)
                .map_err(|e| failed(&e))?;
        }
        (Undo::Backup { .. }, _) => unreachable!("handled above"),
    }
    if journal::hex(&hash.finalize()) != old_sha256 {
        return Err(damaged());
    }
    file.commit_if_original(still).map_err(|e| failed(&e))
}

/// Puts every file a journal changed back as it was. A file that is
/// neither what rekey wrote nor the original (changed since) is reported
/// and left alone; the check and the replacement are as careful as the run's.
/// Counts files, not journal entries: a file begun in several runs, or
/// retried, is one item; a replacement the journal says was abandoned was
/// never made and is not an item. Reports its progress, one unit per file,
/// to `progress`.
///
/// # Errors
/// A journal that cannot be read, is in use, or is of a record stream.
pub fn rollback(
    journal: &journal::RollbackJournal,
    progress: &dyn crate::engine::ports::Progress,
) -> Result<(Summary, Vec<String>), Error> {
    let start = std::time::Instant::now();
    let (entries, skipped_lines) = (journal.entries(), journal.skipped());
    if entries.iter().any(|e| matches!(e, Entry::Checkpoint { .. } | Entry::Complete { .. })) {
        return Err(Error::usage("this journal is of a record stream, whose input was never modified")
            .hint("the original records are still in the input file; remove the output to undo"));
    }
    // Latest first: an `Abandoned` entry cancels the `Begin` before it.
    let mut abandoned = std::collections::HashSet::new();
    let mut changes: Vec<(&String, &String, &String, &Undo)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in entries.iter().rev() {
        match entry {
            Entry::Abandoned { item } => {
                abandoned.insert(item.as_str());
            }
            Entry::Begin { item, old_sha256, new_sha256, undo, .. } => {
                if abandoned.remove(item.as_str()) {
                    continue;
                }
                // The latest change of a file is the one its content can
                // show; an earlier `Begin` of it (a run stopped before the
                // replacement, then resumed) holds the same original.
                if seen.insert(item.as_str()) {
                    changes.push((item, old_sha256, new_sha256, undo));
                }
            }
            _ => {}
        }
    }
    // Temporaries that a killed run or rollback left beside the journal's files.
    let mut beside: std::collections::HashMap<&Path, std::collections::HashSet<std::ffi::OsString>> =
        std::collections::HashMap::new();
    for (item, ..) in &changes {
        let path = Path::new(item.as_str());
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            beside.entry(dir).or_default().insert(name.to_owned());
        }
    }
    for (dir, names) in beside {
        for temp in fsio::remove_stale_temps(dir, &names) {
            tracing::warn!("removed {}, a temporary file an interrupted rekey left", temp.display());
        }
    }
    progress.total(changes.len() as u64);
    let mut summary = Summary::new("rollback");
    let mut conflicts = Vec::new();
    for (item, old_sha256, new_sha256, undo) in changes {
        let path = Path::new(item);
        match Stamp::of(path).and_then(|stamp| Ok((stamp, hash_file(path)?))) {
            Err(e) => {
                summary.counts.failed += 1;
                conflicts.push(format!("{item}: {e}"));
            }
            Ok((stamp, current)) if current == *new_sha256 => match restore(path, stamp, undo, old_sha256) {
                Ok(true) => summary.restored += 1,
                Ok(false) => {
                    summary.counts.failed += 1;
                    conflicts.push(format!("{item}: changed during the rollback; left as it is"));
                }
                // One file that cannot be put back (a full disk, an I/O error) is that file's
                // failure; the others are still restored.
                Err(e) => {
                    summary.counts.failed += 1;
                    // `e` names the file ("cannot restore FILE: why").
                    conflicts.push(format!("{e}; left as rekey wrote it (rerun the rollback once fixed)"));
                }
            },
            Ok((_, current)) if current == *old_sha256 => summary.counts.skipped += 1,
            Ok(_) => {
                summary.counts.failed += 1;
                conflicts.push(format!("{item}: changed since the run; left as it is"));
            }
        }
        progress.advance(1, summary.counts.failed);
    }
    progress.finish();
    // Lines that could not be read are failures too: what they recorded is not undone.
    summary.counts.failed += skipped_lines.len() as u64;
    conflicts.extend_from_slice(skipped_lines);
    summary.elapsed = start.elapsed();
    Ok((summary, conflicts))
}

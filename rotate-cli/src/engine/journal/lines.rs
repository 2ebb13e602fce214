//! Journal lines: a checksum and JSON each; a torn last line told from a damaged middle one.

use std::fs::File;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::codec::*;
use super::entry::*;
use crate::engine::error::{Error, ErrorKind};

pub(super) fn lock(file: &File, path: &Path) -> Result<(), Error> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(Error::usage(format!("another rekey run is using {} right now", path.display()))
                .hint("wait for it to finish (or stop it), then rerun with --resume"))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("cannot lock {}", path.display()), &e)),
    }
}

/// One line: 16 hex digits of SHA-256 over the JSON, a space, the JSON.
pub(super) fn encode_line(entry: &Entry) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_vec(entry).map_err(|e| Error::new(ErrorKind::Io, format!("journal: {e}")))?;
    let mut line = Vec::with_capacity(json.len() + 18);
    line.extend_from_slice(checksum(&json).as_bytes());
    line.push(b' ');
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

pub(super) fn checksum(json: &[u8]) -> String {
    hex(&Sha256::digest(json)[..8])
}

/// Parses every line; returns the entries and the length of the intact
/// prefix. Only the last line may be damaged (a crash mid-append).
pub(super) fn parse(bytes: &[u8], path: &Path) -> Result<(Vec<Entry>, usize), Error> {
    let read = read_lines(bytes);
    if let Some(damage) = read.damaged.first() {
        return Err(damage.error(path));
    }
    Ok((read.entries, read.good_len))
}

/// What [`read_lines`] found.
pub(super) struct Lines {
    /// Every entry read, in order (also those after a damaged line).
    pub(super) entries: Vec<Entry>,
    /// The length up to the first damaged line, a torn last line left out.
    pub(super) good_len: usize,
    /// Damaged lines other than a torn last one.
    pub(super) damaged: Vec<Damage>,
}

/// A line in the middle of a journal that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Damage {
    /// Its number, from 1.
    line: usize,
    /// Torn (a fragment of an append that failed part-way, the next
    /// append's entry after it) rather than altered (not what was written).
    torn: bool,
}

impl Damage {
    /// What it means, for a person.
    pub(super) fn describe(self) -> String {
        if self.torn {
            format!(
                "line {} is torn: an append that failed part-way (a full disk, say) left a fragment there, and \
                 later entries follow it",
                self.line
            )
        } else {
            format!("line {} was altered after it was written (its checksum does not match its content)", self.line)
        }
    }

    /// The error that stops a resume.
    fn error(self, path: &Path) -> Error {
        let what = format!("journal {}: {}", path.display(), self.describe());
        if self.torn {
            Error::new(ErrorKind::BadInput, what).hint(format!(
                "a run cannot continue this journal; `rekey rollback --journal {}` restores every change its \
                 intact lines name and lists the lines it skips; then start the rotation again with a new journal",
                path.display()
            ))
        } else {
            Error::new(ErrorKind::BadInput, what).hint(
                "restore the journal from a backup before resuming; `rekey rollback` skips the altered line, naming it",
            )
        }
    }
}

/// Reads every line it can. A damaged last line is a crash's torn append
/// (left out of `good_len`); a damaged line elsewhere is recorded, and an
/// intact entry found right after a fragment on the same line (the append
/// that followed a failed one) is read too.
pub(super) fn read_lines(bytes: &[u8]) -> Lines {
    let mut read = Lines { entries: Vec::new(), good_len: 0, damaged: Vec::new() };
    let mut offset = 0;
    let mut lines = bytes.split_inclusive(|b| *b == b'\n').peekable();
    let mut number = 0;
    while let Some(line) = lines.next() {
        number += 1;
        let last = lines.peek().is_none();
        if let Some(entry) = decode_line(line) {
            read.entries.push(entry);
            if read.damaged.is_empty() {
                offset += line.len();
                read.good_len = offset;
            }
            continue;
        }
        if last {
            break;
        }
        // Appends only ever tear the last line; a fragment in the middle is
        // followed, on the same line, by the next append's whole entry. A
        // damaged line without one was altered.
        let starts_entry = |at: usize| {
            line.get(at..at + 17).is_some_and(|h| h[..16].iter().all(u8::is_ascii_hexdigit) && h[16] == b' ')
        };
        let following = (1..line.len()).filter(|at| starts_entry(*at)).find_map(|at| decode_line(&line[at..]));
        read.damaged.push(Damage { line: number, torn: following.is_some() });
        read.entries.extend(following);
    }
    if read.damaged.is_empty() {
        read.good_len = offset;
    }
    read
}

pub(super) fn decode_line(line: &[u8]) -> Option<Entry> {
    let line = line.strip_suffix(b"\n")?;
    let (sum, json) = line.split_at_checked(16)?;
    let json = json.strip_prefix(b" ")?;
    if sum != checksum(json).as_bytes() {
        return None;
    }
    serde_json::from_slice(json).ok()
}

//! The journal open for a run: locked, checked against the run, appended to whole lines at a time.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::entry::*;
use super::lines::*;
use super::read::*;
use super::resume::*;
use crate::engine::error::{Error, ErrorKind};
use crate::fsio;

/// An open, locked journal, shared by the workers.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    /// Why an append failed: the journal takes no more entries, and the
    /// engine stops the run (see [`Journal::failure`]).
    failed: Mutex<Option<String>>,
}

impl Journal {
    /// Opens `path` for a run and locks it. An existing journal is continued
    /// with `resume`, and refused without it, so a finished run's undo record
    /// is never overwritten by accident. Returns the entries already there.
    ///
    /// # Errors
    /// Usage errors for an existing journal without `resume`, a journal held
    /// by another run, or other parameters; I/O errors; a damaged journal.
    pub fn open(path: &Path, resume: bool, params: &RunParams) -> Result<(Self, Vec<Entry>), Error> {
        let exists = std::fs::symlink_metadata(path).is_ok();
        if exists && !resume {
            let shown = path.display();
            // Read only to say which way out fits; a journal in use says so here.
            let nothing = read_locked(path).is_ok_and(|(_, entries)| changed_nothing(&entries));
            return Err(if nothing {
                Error::usage(format!("journal {shown} already exists, from a run that changed nothing")).hint(format!(
                    "retire it with `rekey rollback --journal {shown}` (there is nothing to undo), then rerun"
                ))
            } else {
                Error::usage(format!("journal {shown} already exists")).hint(format!(
                    "pass --resume to continue that run, `rekey rollback --journal {shown}` to undo it, or --journal to \
                     choose another file"
                ))
            });
        }
        let file = fsio::open_private(path, true).map_err(|e| {
            Error::io(format!("cannot open journal {}", path.display()), &e)
                .hint("choose a place you may write with --journal FILE")
        })?;
        lock(&file, path)?;
        let journal = Self { path: path.to_path_buf(), file: Mutex::new(file), failed: Mutex::new(None) };
        let entries = journal.read_for_resume()?;
        match entries.first() {
            None => {
                journal.append(&Entry::Run { version: FORMAT_VERSION, params: params.clone() }, true)?;
                fsio::sync_dir(path).map_err(|e| Error::io("cannot sync the journal's directory", &e))?;
            }
            Some(Entry::Run { params: before, version }) => check_same_run(before, &in_version_form(*version, params))
                .map_err(|e| {
                    if changed_nothing(&entries) {
                        e.hint(format!(
                            "that run changed nothing: retire its journal with `rekey rollback --journal {}`, then run \
                         the corrected command without --resume",
                            path.display()
                        ))
                    } else {
                        e
                    }
                })?,
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::BadInput,
                    format!("{} does not start with a run entry", path.display()),
                ));
            }
        }
        Ok((journal, entries))
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the entries, cutting a torn last line off the file.
    fn read_for_resume(&self) -> Result<Vec<Entry>, Error> {
        let mut file = self.file.lock().map_err(|_| Error::new(ErrorKind::Io, "journal lock poisoned"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| Error::io("cannot read the journal", &e))?;
        let (entries, good_len) = parse(&bytes, &self.path)?;
        if good_len < bytes.len() {
            tracing::warn!(journal = %self.path.display(), "cutting off a torn last line left by a crash");
            file.set_len(good_len as u64).map_err(|e| Error::io("cannot repair the journal", &e))?;
            file.sync_all().map_err(|e| Error::io("cannot sync the journal", &e))?;
        }
        Ok(entries)
    }

    /// Appends one entry; `sync` makes it durable before returning.
    ///
    /// # Errors
    /// I/O errors writing or syncing.
    pub fn append(&self, entry: &Entry, sync: bool) -> Result<(), Error> {
        self.append_encoded(&Encoded(encode_line(entry)?), sync)
    }

    /// Appends entries in one write (a batch of rows, say); `sync` makes
    /// them durable before returning.
    ///
    /// # Errors
    /// I/O errors writing or syncing.
    pub fn append_all<'a>(&self, entries: impl IntoIterator<Item = &'a Entry>, sync: bool) -> Result<(), Error> {
        self.append_encoded(&Encoded::new(entries)?, sync)
    }

    /// Appends entries encoded beforehand (on another thread, say) in one write.
    ///
    /// # Errors
    /// I/O errors writing or syncing.
    pub fn append_encoded(&self, lines: &Encoded, sync: bool) -> Result<(), Error> {
        let mut file = self.file.lock().map_err(|_| Error::new(ErrorKind::Io, "journal lock poisoned"))?;
        if let Some(e) = self.failure() {
            return Err(e);
        }
        append_to(&mut *file, &lines.0, sync).map_err(|e| self.fail(&e))
    }

    /// Makes everything appended so far durable.
    ///
    /// # Errors
    /// I/O errors syncing.
    pub fn sync(&self) -> Result<(), Error> {
        let file = self.file.lock().map_err(|_| Error::new(ErrorKind::Io, "journal lock poisoned"))?;
        if let Some(e) = self.failure() {
            return Err(e);
        }
        file.sync_data().map_err(|e| self.fail(&e))
    }

    /// Why the journal stopped taking entries, if it did: an append or a
    /// sync failed (a full disk, say). Nothing a run does after that could
    /// be undone, so the engine stops the run.
    pub fn failure(&self) -> Option<Error> {
        let failed = self.failed.lock().map_or_else(|p| p.into_inner().clone(), |f| f.clone());
        failed.map(|why| {
            Error::new(ErrorKind::Io, format!("cannot write the journal {}: {why}", self.path.display())).hint(
                "the run stopped; the journal ends with its last whole entry. Make room (or fix the disk), \
                 then rerun the same command with --resume",
            )
        })
    }

    /// Records a failed append or sync; returns the error to report.
    fn fail(&self, e: &std::io::Error) -> Error {
        let mut failed = self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failed.get_or_insert_with(|| e.to_string());
        drop(failed);
        self.failure().unwrap_or_else(|| Error::io("cannot write the journal", e))
    }
}

/// What appending needs of the journal file: the seam where tests inject
/// a disk that fills up part-way through a write.
pub(super) trait AppendTarget: Write {
    /// The current length.
    fn len(&self) -> std::io::Result<u64>;
    /// Cuts the file back to `len`.
    fn cut(&mut self, len: u64) -> std::io::Result<()>;
    /// Makes the data durable.
    fn sync(&self) -> std::io::Result<()>;
}

impl AppendTarget for File {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn cut(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// Appends whole lines, or nothing: a write that fails part-way (ENOSPC
/// after some bytes) or a failed sync cuts the file back to where it was,
/// so no fragment is ever left for later lines to follow.
pub(super) fn append_to(file: &mut impl AppendTarget, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let good = file.len()?;
    let written = file.write_all(bytes).and_then(|()| if sync { file.sync() } else { Ok(()) });
    if let Err(e) = written {
        if let Err(cut) = file.cut(good).and_then(|()| file.sync()) {
            return Err(std::io::Error::new(
                e.kind(),
                format!("{e}; cutting the partial entry off failed too ({cut}): rollback skips it, naming its line"),
            ));
        }
        return Err(e);
    }
    Ok(())
}

/// Journal lines ready to append: the encoding (JSON, checksums) done
/// where it is cheapest, the write where the order is kept.
#[derive(Debug, Default)]
pub struct Encoded(Vec<u8>);

impl Encoded {
    /// Encodes `entries`, one line each.
    ///
    /// # Errors
    /// An entry that does not serialize.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<Self, Error> {
        let mut lines = Vec::new();
        for entry in entries {
            lines.extend_from_slice(&encode_line(entry)?);
        }
        Ok(Self(lines))
    }
}

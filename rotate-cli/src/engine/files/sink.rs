//! Replacing a file in place: journaled, written beside it, checked, renamed.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use std::io::{Read, Write};

use envelope_core::EncryptedDataKey;

use sha2::{Digest, Sha256};

use super::base::*;
use super::source::FileUnit;
use super::stream::{link_backup, reencrypt_stream, verify_stream};
use crate::engine::error::{Error, ItemError, ItemErrorCode};
use crate::engine::item::Unit;
use crate::engine::journal::{self, Checkpoint, Entry, Journal, Undo};
use crate::engine::ports::{Rejected, Sink};
use crate::engine::report::Counts;
use crate::engine::transform::{ChangeKind, Outcome, StreamJob};
use crate::fsio::AtomicFile;

/// Replaces changed files in place, journal first.
#[derive(Debug, Default)]
pub struct InPlaceSink {
    journal: OnceLock<Arc<Journal>>,
}

impl Sink<FileUnit> for InPlaceSink {
    fn start(&self, journal: Option<Arc<Journal>>, _checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        let journal = journal.ok_or_else(|| Error::usage("rewriting files in place needs a journal"))?;
        let _ = self.journal.set(journal);
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<FileUnit>) -> Result<(), ItemError> {
        let Some(item) = unit.items.first_mut() else {
            return Ok(());
        };
        let Some(Ok(Outcome::Changed { new, kind, old_edks, job })) = &mut item.result else {
            return Ok(());
        };
        let journal = Arc::clone(self.journal.get().ok_or_else(|| ItemError::new(ItemErrorCode::Io, "no journal"))?);
        let change = Change {
            id: unit.id.clone(),
            path: unit.payload.path.clone(),
            stamp: unit.payload.stamp,
            original: std::mem::take(&mut item.bytes),
            new: std::mem::take(new),
            old_edks: old_edks.take(),
            job: job.take(),
            header_only: item.header_only,
            legacy: *kind == ChangeKind::FromLegacy,
        };
        tokio::task::spawn_blocking(move || change.apply(&journal))
            .await
            .map_err(|e| ItemError::new(ItemErrorCode::Io, e.to_string()))?
    }

    fn commit(&self, _unit: Unit<FileUnit>, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }
}

/// One file's replacement, done in a blocking thread.
pub(super) struct Change {
    id: String,
    path: PathBuf,
    stamp: Option<Stamp>,
    /// The item as read (only its header when `header_only`).
    original: Vec<u8>,
    /// The new item (only its header for a streamed rewrap; empty for a streamed re-encryption).
    new: Vec<u8>,
    old_edks: Option<Vec<EncryptedDataKey>>,
    job: Option<Arc<StreamJob>>,
    header_only: bool,
    legacy: bool,
}

pub(super) fn changed_under_us() -> ItemError {
    ItemError::new(
        ItemErrorCode::ChangedDuringRotation,
        "the file changed after it was read; the other writer's version was kept",
    )
}

impl Change {
    /// Journal, write beside, check the original is still the one read, swap.
    fn apply(self, journal: &Journal) -> Result<(), ItemError> {
        let mut file = AtomicFile::create(&self.path, Some(&self.path))
            .map_err(|e| io_error("cannot write beside the file", &e))?;
        let (begin, backup) =
            if self.header_only { self.write_streamed(&mut file)? } else { (self.write_whole(&mut file)?, None) };
        journal.append(&begin, true).map_err(|e| io_error("cannot write the journal", &e))?;
        let stamp = self.stamp;
        let swapped = file
            .commit_if_original(|displaced| Stamp::of(displaced).ok() == stamp)
            .map_err(|e| io_error("cannot replace the file", &e))?;
        if !swapped {
            if let Some(backup) = backup {
                let _ = std::fs::remove_file(backup);
            }
            let _ = journal.append(&Entry::Abandoned { item: self.id.clone() }, false);
            return Err(changed_under_us());
        }
        journal
            .append(&Entry::Done { item: self.id.clone() }, false)
            .map_err(|e| io_error("cannot write the journal", &e))
    }

    fn write_whole(&self, file: &mut AtomicFile) -> Result<Entry, ItemError> {
        file.write_all(&self.new).map_err(|e| io_error("cannot write beside the file", &e))?;
        Ok(Entry::Begin {
            item: self.id.clone(),
            old_sha256: journal::sha256(&self.original),
            new_sha256: journal::sha256(&self.new),
            undo: undo_record(&self.original, &self.new, self.old_edks.as_deref()),
            legacy: self.legacy,
        })
    }

    /// A framed envelope too large to hold: a rewrap writes the new header
    /// and copies the body; a re-encryption decrypts and seals frame by frame
    /// through a bounded pipe, keeping the original as a hard-linked backup
    /// for rollback (the journal only names it).
    fn write_streamed(&self, file: &mut AtomicFile) -> Result<(Entry, Option<PathBuf>), ItemError> {
        let source = File::open(&self.path).map_err(|e| io_error("cannot read", &e))?;
        let stamp = source.metadata().ok().map(|m| (m.len(), m.modified().ok()));
        if Stamp::of(&self.path).ok() != self.stamp || stamp.is_none() {
            return Err(changed_under_us());
        }
        let mut old_hash = Sha256::new();
        let mut new_hash = Sha256::new();
        let mut reader =
            HashingReader { inner: std::io::BufReader::with_capacity(1 << 16, source), hash: &mut old_hash };
        let mut writer = HashingWriter { inner: &mut *file, hash: &mut new_hash };
        let (undo, backup) = match &self.job {
            None => {
                // The header as read must be the header on disk: then copy the body through.
                let mut header = vec![0u8; self.original.len()];
                reader.read_exact(&mut header).map_err(|e| io_error("cannot read", &e))?;
                if header != self.original {
                    return Err(changed_under_us());
                }
                writer.write_all(&self.new).map_err(|e| io_error("cannot write beside the file", &e))?;
                std::io::copy(&mut reader, &mut writer).map_err(|e| io_error("cannot copy the body", &e))?;
                (undo_record(&self.original, &self.new, self.old_edks.as_deref()), None)
            }
            Some(job) => {
                reencrypt_stream(job, &mut reader, &mut writer)?;
                writer.flush().map_err(|e| io_error("cannot write beside the file", &e))?;
                file.sync().map_err(|e| io_error("cannot sync", &e))?;
                if job.verify {
                    verify_stream(job, file.temp_path())?;
                }
                let backup =
                    link_backup(&self.path).map_err(|e| io_error("cannot keep the original for rollback", &e))?;
                (Undo::Backup { path: backup.display().to_string() }, Some(backup))
            }
        };
        let begin = Entry::Begin {
            item: self.id.clone(),
            old_sha256: journal::hex(&old_hash.finalize()),
            new_sha256: journal::hex(&new_hash.finalize()),
            undo,
            legacy: self.legacy,
        };
        Ok((begin, backup))
    }
}

/// What rollback needs: the old key list when it rebuilds the original byte
/// for byte from the new item, the whole original otherwise.
pub(super) fn undo_record(original: &[u8], new: &[u8], old_edks: Option<&[EncryptedDataKey]>) -> Undo {
    if let Some(edks) = old_edks
        && journal::with_key_list(new, edks).as_deref() == Some(original)
    {
        return Undo::KeyList { edks_b64: journal::key_list(edks) };
    }
    Undo::Original { b64: journal::b64(original) }
}

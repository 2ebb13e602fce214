//! The journal: one JSON object per line, appended and fsynced before the
//! change it describes is made visible, so that after a crash at any moment
//! every changed item can be found and put back.
//!
//! It holds only ciphertext (the original items, which are envelopes, legacy
//! records or wrapped keys) and hashes; never a plaintext or a data key.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exit::{CliError, Code};

/// One journal line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// The first line: what run this is.
    Run { operation: String, targets: Vec<String>, version: u32 },
    /// Written and synced before an item is replaced.
    Begin { item: String, old_sha256: String, new_sha256: String, original_b64: String },
    /// The replacement is in place.
    Done { item: String },
    /// A record stream's progress: records consumed and output bytes written, both durable.
    Checkpoint { records: u64, output_bytes: u64 },
    /// A record stream finished and its output was renamed into place.
    Complete { output: String },
}

/// An open journal, shared by the workers.
pub(crate) struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Opens `path` for a run. An existing journal is continued with
    /// `resume`, and refused without it, so a finished run's undo record is
    /// never overwritten by accident.
    pub(crate) fn open(path: &Path, resume: bool, run: &Entry) -> Result<Self, CliError> {
        let exists = path.exists();
        if exists && !resume {
            return Err(CliError::new(Code::Usage, format!("journal {} already exists", path.display()))
                .hint("pass --resume to continue that run, `rekey rollback --journal FILE` to undo it, or --journal to choose another file"));
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file =
            options.open(path).map_err(|e| CliError::io(format!("cannot open journal {}", path.display()), e))?;
        let journal = Self { path: path.to_path_buf(), file: Mutex::new(file) };
        if !exists {
            journal.append(run, true)?;
            crate::output::sync_dir(path).map_err(|e| CliError::io("cannot sync the journal's directory", e))?;
        }
        Ok(journal)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry; `sync` makes it durable before returning.
    pub(crate) fn append(&self, entry: &Entry, sync: bool) -> Result<(), CliError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| CliError::new(Code::Io, format!("journal: {e}")))?;
        line.push(b'\n');
        let mut file = self.file.lock().map_err(|_| CliError::new(Code::Io, "journal lock poisoned"))?;
        file.write_all(&line).map_err(|e| CliError::io("cannot write the journal", e))?;
        if sync {
            file.sync_data().map_err(|e| CliError::io("cannot sync the journal", e))?;
        }
        Ok(())
    }

    /// Records that `item` is about to change from `old` to `new`.
    pub(crate) fn begin(&self, item: &str, old: &[u8], new: &[u8]) -> Result<(), CliError> {
        let entry = Entry::Begin {
            item: item.to_owned(),
            old_sha256: sha256(old),
            new_sha256: sha256(new),
            original_b64: STANDARD.encode(old),
        };
        self.append(&entry, true)
    }
}

/// Reads every entry of a journal.
pub(crate) fn read(path: &Path) -> Result<Vec<Entry>, CliError> {
    let file = File::open(path).map_err(|e| CliError::io(format!("cannot open journal {}", path.display()), e))?;
    let mut entries = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| CliError::io("cannot read the journal", e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(entry) => entries.push(entry),
            // A crash can cut the last line short; everything before it stands.
            Err(_) if n > 0 => break,
            Err(e) => {
                return Err(CliError::new(Code::BadInput, format!("{} is not a rekey journal: {e}", path.display())));
            }
        }
    }
    Ok(entries)
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn decode_original(b64: &str) -> Result<Vec<u8>, CliError> {
    STANDARD.decode(b64).map_err(|_| CliError::new(Code::BadInput, "the journal holds a damaged original"))
}

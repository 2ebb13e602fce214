//! The journal: one entry per line, each line `CHECKSUM JSON`, appended and
//! fsynced before the change it describes is made visible, so that after a
//! crash at any moment every changed item can be found and put back.
//!
//! What crashes do to it is expected: a torn last line is cut off when a run
//! resumes; a damaged line anywhere else is a loud error, never a silent end.
//! The file is locked for the whole run, so two runs can never share it.
//! The first entry records the run's parameters, and `--resume` with other
//! parameters is refused, naming the difference.
//!
//! It holds only ciphertext (old key lists, original items, which are
//! envelopes, legacy records or wrapped keys) and hashes: never a plaintext
//! or a data key.

mod appender;
mod codec;
mod entry;
mod lines;
mod read;
mod resume;
#[cfg(test)]
mod tests;

pub use self::appender::{Encoded, Journal};
pub use self::codec::{b64, hex, key_list, parse_key_list, sha256, unb64, with_key_list};
pub use self::entry::{Checkpoint, Entry, ObjectUndo, RunParams, Undo};
pub use self::read::{RollbackJournal, changed_nothing, read_for_rollback, read_locked, retire_if_unchanged};
pub use self::resume::context_param;

//! Files and directories of items, rewritten in place.
//!
//! Order of a replacement: the journal entry holding what rollback needs is
//! made durable; the new content is written to a temporary file beside the
//! original and fsynced; the original is checked to be the very file that
//! was read (device, inode, size, times), so a concurrent writer is never
//! overwritten; then the rename, and the directory fsync. A crash at any
//! moment leaves each file either as it was or as it will be.

mod base;
mod rollback;
mod sink;
mod source;
mod stream;
pub(crate) mod target;

pub(crate) use self::base::PIPE_CHUNKS;
pub use self::base::{globs, with_suffix};
pub use self::rollback::rollback;
pub use self::sink::InPlaceSink;
pub use self::source::{FileSource, FileUnit};
pub(crate) use self::stream::{PipeReader, reencrypt_stream};
pub use self::target::FileTarget;

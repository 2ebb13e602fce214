//! Record streams (database exports): JSON Lines with items in fields named
//! by JSON Pointer, or CSV with items in named columns.
//!
//! The input is never modified. A record whose items do not change is
//! written out byte for byte as it was read; a changed record differs only
//! in its item values where that can be done exactly, and keeps its line
//! ending. Output to a file goes to `OUT.rekey-partial`, checkpointed in the
//! journal (records consumed, output bytes durable, counts), and is renamed
//! into place at the end; `--resume` truncates the partial output to the
//! last checkpoint and carries on from there.

mod sink;
mod source;
mod target;

pub use self::sink::StreamSink;
pub use self::source::{RecordFormat, RecordSource, RecordUnit};
pub use self::target::RecordTarget;

//! Framed envelopes over `Read` and `Write` in constant memory
//! (docs/format.md §6.3).
//!
//! Frames are independent AES-GCM operations, so large inputs are sealed
//! and opened on several threads: the calling thread reads batches of
//! frames, worker threads (and the calling thread, when they are all busy)
//! encrypt or decrypt them in place, and the calling thread writes them back
//! in order. At most a fixed number of batches is in
//! flight, so memory stays constant whatever the input's size, and the bytes
//! written are exactly those of the one-thread loop (the tests compare them).

mod batches;
mod decrypt;
mod encrypt;
mod options;

pub use self::decrypt::StreamDecryptor;
pub(crate) use self::decrypt::open_frames;
#[cfg(any(test, feature = "internals"))]
pub(crate) use self::encrypt::encrypt_stream_with_options_and_message_id;
pub use self::encrypt::{encrypt_stream, encrypt_stream_with};
pub use self::options::{MAX_STREAMED_SINGLE_SHOT, StreamOptions};

//! How streams are cut and spread over threads: the limits every stream shares, and the caller's options.

use std::sync::OnceLock;

pub(super) const FINAL_FLAG: u32 = 1 << 31;
/// The length word before each frame.
pub(super) const WORD_LEN: usize = 4;
/// The most a single-shot body read from a stream may be; larger data
/// belongs in the framed form.
pub const MAX_STREAMED_SINGLE_SHOT: usize = 256 << 20;
/// Plaintext bytes a batch of frames aims at: large enough that handing a
/// batch to a thread costs nothing next to its encryption.
pub(super) const BATCH_BYTES: usize = 1 << 20;
/// The most frames in a batch, so that tiny frames do not make huge batches.
pub(super) const MAX_BATCH_FRAMES: usize = 1024;
/// Batches a worker holds at most: one being processed, the rest queued,
/// enough that it never waits while the calling thread, which also reads
/// and writes, opens or seals a batch of its own.
pub(super) const DEPTH: usize = 4;
/// The most batches between reading and writing, whatever the thread count:
/// the bound on a stream's memory (16 MiB of 1 MiB batches).
pub(super) const MAX_IN_FLIGHT: usize = 16;
/// The most worker threads a stream uses by default.
pub(super) const MAX_DEFAULT_THREADS: usize = 8;

/// How a framed stream is encrypted or decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    threads: usize,
}

impl StreamOptions {
    /// `threads` threads (at least 1): the calling thread, which also reads
    /// and writes, and `threads - 1` workers; 1 does all the work on the
    /// calling thread.
    pub fn with_threads(threads: usize) -> Self {
        Self { threads: threads.max(1) }
    }

    /// The number of threads that encrypt or decrypt frames.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Default for StreamOptions {
    /// One thread per available core, at most eight. Inputs of a single
    /// batch (up to 1 MiB) never start a thread.
    fn default() -> Self {
        // Asked once: on Linux the answer reads the cgroup limits from /proc,
        // which would cost more than a small message's encryption.
        static CORES: OnceLock<usize> = OnceLock::new();
        let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
        Self::with_threads(cores.min(MAX_DEFAULT_THREADS))
    }
}

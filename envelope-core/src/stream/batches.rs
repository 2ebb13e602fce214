//! Batches of frames spread over worker threads, at most a fixed number in flight, results kept in order.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::mpsc;

use super::options::{BATCH_BYTES, DEPTH, MAX_BATCH_FRAMES, MAX_IN_FLIGHT};
use crate::aead::Gcm;
use crate::error::Error;
use crate::plaintext::Plaintext;
use crate::suite::{FrameAad, FrameCipher};

/// Makes `buf` at least `needed` long, aiming at `target`, without leaving
/// a copy of its contents behind: a new zeroed buffer replaces it and the old
/// one is zeroized when dropped.
pub(super) fn grow(buf: &mut Plaintext, needed: usize, target: usize) {
    // The first frame gets a buffer of its own size, so a small message
    // does not pay for a whole batch.
    let len = if buf.is_empty() { needed } else { needed.max(target) };
    let mut bigger = Plaintext::zeroed(len);
    bigger.vec_mut()[..buf.len()].copy_from_slice(buf);
    *buf = bigger;
}

pub(super) fn frames_per_batch(frame_len: usize) -> usize {
    (BATCH_BYTES / frame_len.max(1)).clamp(1, MAX_BATCH_FRAMES)
}

/// Reads until `buf` is full or the input ends; returns how much was read.
pub(super) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What filling a batch found.
pub(super) struct Filled {
    /// No batch follows this one.
    pub(super) last: bool,
    /// An error met after the batch's frames: reported once they have been
    /// processed and drained, as the one-thread loop would.
    pub(super) error: Option<Error>,
}

/// The batch pipeline. `fill` reads the next batch from the input, `process`
/// encrypts or decrypts it, and `drain` writes it out, in input order,
/// receiving the processing result.
///
/// With one thread, or when the first batch is the last, everything runs on
/// the calling thread. Otherwise `threads - 1` workers are started and the
/// calling thread, which alone reads and writes, is the last of the
/// `threads`: each batch it reads goes to a worker with room in its queue
/// (`DEPTH` batches), or is processed on the spot when every worker is busy.
/// So no core waits while another has work, and the thread doing the I/O
/// takes only the share of the cipher work that its I/O leaves it time for.
/// Each worker answers in the order it was given batches, so reading the
/// answers in input order needs only a list of where each batch went.
pub(super) fn run_batches<B: Send>(
    threads: usize,
    cipher: &FrameCipher,
    mut new_batch: impl FnMut() -> B,
    mut fill: impl FnMut(&mut B) -> Result<Filled, Error>,
    process: impl Fn(&Gcm, &mut FrameAad, &mut B) -> Result<(), Error> + Sync,
    mut drain: impl FnMut(&mut B, Result<(), Error>) -> Result<(), Error>,
) -> Result<(), Error> {
    let (gcm, aad) = cipher.parts();
    let mut own_aad = aad.clone();
    let mut first = new_batch();
    let first_fill = fill(&mut first)?;
    if threads <= 1 || first_fill.last {
        let (mut batch, mut filled) = (first, first_fill);
        loop {
            let result = process(gcm, &mut own_aad, &mut batch);
            drain(&mut batch, result)?;
            if let Some(error) = filled.error {
                return Err(error);
            }
            if filled.last {
                return Ok(());
            }
            filled = fill(&mut batch)?;
        }
    }

    /// Where a batch in flight is: with a worker, or already processed here.
    enum InFlight<B> {
        Worker(usize),
        Done(B, Result<(), Error>),
    }

    std::thread::scope(|scope| {
        let process = &process;
        let workers = threads - 1;
        let mut jobs = Vec::with_capacity(workers);
        let mut results = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (job_tx, job_rx) = mpsc::channel::<B>();
            let (result_tx, result_rx) = mpsc::channel::<(B, Result<(), Error>)>();
            let mut aad = aad.clone();
            scope.spawn(move || {
                // Ends when the calling thread drops its sender, or stops listening.
                while let Ok(mut batch) = job_rx.recv() {
                    let result = process(gcm, &mut aad, &mut batch);
                    if result_tx.send((batch, result)).is_err() {
                        break;
                    }
                }
            });
            jobs.push(job_tx);
            results.push(result_rx);
        }

        // Batches between reading and writing: each worker's queue, and as
        // many for the calling thread, so it reads on while the oldest batch
        // is still with a worker.
        let window = (threads * DEPTH).min(MAX_IN_FLIGHT);
        let mut queued = vec![0usize; workers];
        let mut spare: Vec<B> = Vec::new();
        let mut next_batch = Some((first, first_fill));
        let mut read_error = None;
        let mut input_done = false;
        let mut in_flight = VecDeque::with_capacity(window);
        // A worker's answer belongs to the oldest batch it still holds.
        let settle = |in_flight: &mut VecDeque<InFlight<B>>, worker: usize, (batch, result)| {
            if let Some(slot) = in_flight.iter_mut().find(|slot| matches!(slot, InFlight::Worker(w) if *w == worker)) {
                *slot = InFlight::Done(batch, result);
            }
        };
        loop {
            // Every answer already there: the workers' queues as they are
            // now, and the oldest batches ready to be written.
            for (worker, answers) in results.iter().enumerate() {
                while let Ok(answer) = answers.try_recv() {
                    settle(&mut in_flight, worker, answer);
                    queued[worker] -= 1;
                }
            }
            while matches!(in_flight.front(), Some(InFlight::Done(..))) {
                if let Some(InFlight::Done(mut batch, result)) = in_flight.pop_front() {
                    drain(&mut batch, result)?;
                    spare.push(batch);
                }
            }
            if !input_done && in_flight.len() < window {
                let (mut batch, filled) = match next_batch.take() {
                    Some(ready) => ready,
                    None => {
                        let mut batch = spare.pop().unwrap_or_else(&mut new_batch);
                        let filled = fill(&mut batch)?;
                        (batch, filled)
                    }
                };
                input_done = filled.last || filled.error.is_some();
                read_error = filled.error;
                let least_busy = (0..workers).min_by_key(|&w| queued[w]).filter(|&w| queued[w] < DEPTH);
                match least_busy {
                    Some(worker) => {
                        jobs[worker].send(batch).map_err(|_| worker_gone())?;
                        queued[worker] += 1;
                        in_flight.push_back(InFlight::Worker(worker));
                    }
                    None => {
                        let result = process(gcm, &mut own_aad, &mut batch);
                        in_flight.push_back(InFlight::Done(batch, result));
                    }
                }
                continue;
            }
            // The input is done or the window full: wait for the oldest batch.
            match in_flight.front() {
                None => break,
                Some(&InFlight::Worker(worker)) => {
                    let answer = results[worker].recv().map_err(|_| worker_gone())?;
                    settle(&mut in_flight, worker, answer);
                    queued[worker] -= 1;
                }
                Some(InFlight::Done(..)) => {}
            }
        }
        read_error.map_or(Ok(()), Err)
    })
}

/// A worker thread ended without answering: only if it panicked, and the
/// scope re-raises that panic when it ends.
pub(super) fn worker_gone() -> Error {
    Error::Io(io::Error::other("a stream worker thread stopped"))
}

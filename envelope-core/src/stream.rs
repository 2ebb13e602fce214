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

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::{OnceLock, mpsc};

use crate::aead::tag_array;
use crate::aead::{Gcm, TAG_LEN};
use crate::context::EncryptionContext;
use crate::error::{Error, FormatError};
use crate::header::{BodyForm, Header, ParseOptions, begin_message};
use crate::key::DataKey;
use crate::keyring::Materials;
use crate::plaintext::Plaintext;
use crate::suite::{FrameAad, FrameCipher, MESSAGE_ID_LEN, MessageKeys};

const FINAL_FLAG: u32 = 1 << 31;
/// The length word before each frame.
const WORD_LEN: usize = 4;
/// The most a single-shot body read from a stream may be; larger data
/// belongs in the framed form.
pub const MAX_STREAMED_SINGLE_SHOT: usize = 256 << 20;
/// Plaintext bytes a batch of frames aims at: large enough that handing a
/// batch to a thread costs nothing next to its encryption.
const BATCH_BYTES: usize = 1 << 20;
/// The most frames in a batch, so that tiny frames do not make huge batches.
const MAX_BATCH_FRAMES: usize = 1024;
/// Batches a worker holds at most: one being processed, the rest queued,
/// enough that it never waits while the calling thread, which also reads
/// and writes, opens or seals a batch of its own.
const DEPTH: usize = 4;
/// The most batches between reading and writing, whatever the thread count:
/// the bound on a stream's memory (16 MiB of 1 MiB batches).
const MAX_IN_FLIGHT: usize = 16;
/// The most worker threads a stream uses by default.
const MAX_DEFAULT_THREADS: usize = 8;

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

/// Encrypts everything `reader` yields into a framed envelope on `writer`,
/// in constant memory, on every core for large inputs
/// ([`StreamOptions::default`]). Returns the plaintext length.
///
/// # Errors
/// [`Error::Format`] for a bad frame length or key list, [`Error::Io`] when
/// reading or writing fails. On error the output is incomplete and must be
/// discarded; the plaintext buffers are zeroized either way.
pub fn encrypt_stream(
    materials: &Materials,
    context: &EncryptionContext,
    frame_len: u32,
    reader: impl Read,
    writer: impl Write,
) -> Result<u64, Error> {
    encrypt_stream_with(materials, context, frame_len, &StreamOptions::default(), reader, writer)
}

/// [`encrypt_stream`] with chosen [`StreamOptions`].
///
/// # Errors
/// As [`encrypt_stream`].
pub fn encrypt_stream_with(
    materials: &Materials,
    context: &EncryptionContext,
    frame_len: u32,
    options: &StreamOptions,
    reader: impl Read,
    writer: impl Write,
) -> Result<u64, Error> {
    let message_id = crate::random::message_id()?;
    encrypt_stream_with_options_and_message_id(materials, context, frame_len, options, reader, writer, message_id)
}

/// [`encrypt_stream_with`] with a chosen message id: for tests only, through
/// the `internals` feature (MUST 3.3).
pub(crate) fn encrypt_stream_with_options_and_message_id(
    materials: &Materials,
    context: &EncryptionContext,
    frame_len: u32,
    options: &StreamOptions,
    mut reader: impl Read,
    mut writer: impl Write,
    message_id: [u8; MESSAGE_ID_LEN],
) -> Result<u64, Error> {
    let body_form = BodyForm::framed(frame_len)?;
    let mut head = Vec::new();
    let (keys, core_len) =
        begin_message(&materials.data_key, &materials.encrypted_data_keys, context, body_form, message_id, &mut head)?;
    let cipher = keys.frame_cipher(&head[..core_len]);
    writer.write_all(&head)?;

    let frame_len = usize::try_from(frame_len).map_err(|_| FormatError::BadFrameLength(frame_len))?;
    let mut source = FrameSource { reader: &mut reader, frame_len, lookahead: None, sequence: 0, done: false };
    let mut total = 0u64;
    run_batches(
        options.threads,
        &cipher,
        || SealBatch::new(frame_len),
        |batch| source.fill(batch),
        |cipher, aad, batch| batch.seal(cipher, aad),
        |batch, sealed| {
            sealed?;
            writer.write_all(batch.output())?;
            total += batch.plaintext_len as u64;
            Ok(())
        },
    )?;
    writer.flush()?;
    Ok(total)
}

/// A batch of frames to seal, laid out as they are written: for each frame
/// its length word, its plaintext (then ciphertext), its tag.
struct SealBatch {
    buf: Plaintext,
    frame_len: usize,
    first_sequence: u32,
    frames: usize,
    /// Plaintext length of the last frame, and whether it ends the message.
    last_len: usize,
    last_is_final: bool,
    plaintext_len: usize,
}

impl SealBatch {
    fn new(frame_len: usize) -> Self {
        Self {
            buf: Plaintext::zeroed(0),
            frame_len,
            first_sequence: 0,
            frames: 0,
            last_len: 0,
            last_is_final: false,
            plaintext_len: 0,
        }
    }

    fn slot(&self) -> usize {
        WORD_LEN + self.frame_len + TAG_LEN
    }

    fn seal(&mut self, cipher: &Gcm, aad: &mut FrameAad) -> Result<(), Error> {
        let slot = self.slot();
        for k in 0..self.frames {
            let last = k + 1 == self.frames;
            let len = if last { self.last_len } else { self.frame_len };
            let sequence = self.first_sequence + u32::try_from(k).map_err(|_| FormatError::BadFrame)?;
            let start = k * slot + WORD_LEN;
            let (plaintext, rest) = self.buf[start..].split_at_mut(len);
            let tag = aad.seal(cipher, sequence, last && self.last_is_final, plaintext)?;
            rest[..TAG_LEN].copy_from_slice(&tag);
        }
        Ok(())
    }

    fn output(&self) -> &[u8] {
        let end = match self.frames {
            0 => 0,
            n => (n - 1) * self.slot() + WORD_LEN + self.last_len + TAG_LEN,
        };
        &self.buf[..end]
    }
}

/// Reads plaintext into batches of frames.
struct FrameSource<'r, R> {
    reader: &'r mut R,
    frame_len: usize,
    /// The byte read past a full frame to learn whether it was the last.
    lookahead: Option<u8>,
    sequence: u32,
    done: bool,
}

impl<R: Read> FrameSource<'_, R> {
    fn fill(&mut self, batch: &mut SealBatch) -> Result<Filled, Error> {
        let per_batch = frames_per_batch(self.frame_len);
        let slot = batch.slot();
        batch.first_sequence = self.sequence;
        batch.frames = 0;
        batch.plaintext_len = 0;
        while !self.done && batch.frames < per_batch {
            let start = batch.frames * slot + WORD_LEN;
            // The frame, and one byte more that lands in the tag's place
            // until the tag is written: the look-ahead.
            let needed = start + self.frame_len + TAG_LEN;
            if batch.buf.len() < needed {
                grow(&mut batch.buf, needed, per_batch * slot);
            }
            let region = &mut batch.buf[start..=start + self.frame_len];
            let mut filled = 0;
            if let Some(byte) = self.lookahead.take() {
                region[0] = byte;
                filled = 1;
            }
            filled += read_full(self.reader, &mut region[filled..])?;
            let is_final = filled <= self.frame_len;
            let len = filled.min(self.frame_len);
            if !is_final {
                self.lookahead = Some(region[self.frame_len]);
            }
            let word = u32::try_from(len).map_err(|_| FormatError::BadFrame)? | if is_final { FINAL_FLAG } else { 0 };
            batch.buf[start - WORD_LEN..start].copy_from_slice(&word.to_be_bytes());
            batch.frames += 1;
            batch.last_len = len;
            batch.last_is_final = is_final;
            batch.plaintext_len += len;
            if is_final {
                self.done = true;
            } else {
                self.sequence = self
                    .sequence
                    .checked_add(1)
                    .ok_or(FormatError::Invalid("message length (more than 2^32 frames)"))?; // MUST 6.4
            }
        }
        Ok(Filled { last: self.done, error: None })
    }
}

/// Makes `buf` at least `needed` long, aiming at `target`, without leaving
/// a copy of its contents behind: a new zeroed buffer replaces it and the old
/// one is zeroized when dropped.
fn grow(buf: &mut Plaintext, needed: usize, target: usize) {
    // The first frame gets a buffer of its own size, so a small message
    // does not pay for a whole batch.
    let len = if buf.is_empty() { needed } else { needed.max(target) };
    let mut bigger = Plaintext::zeroed(len);
    bigger.vec_mut()[..buf.len()].copy_from_slice(buf);
    *buf = bigger;
}

fn frames_per_batch(frame_len: usize) -> usize {
    (BATCH_BYTES / frame_len.max(1)).clamp(1, MAX_BATCH_FRAMES)
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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
struct Filled {
    /// No batch follows this one.
    last: bool,
    /// An error met after the batch's frames: reported once they have been
    /// processed and drained, as the one-thread loop would.
    error: Option<Error>,
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
fn run_batches<B: Send>(
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
fn worker_gone() -> Error {
    Error::Io(io::Error::other("a stream worker thread stopped"))
}

/// An envelope whose header has been read from a stream and whose body has not.
pub struct StreamDecryptor<R> {
    header: Header,
    core: Vec<u8>,
    /// Body bytes read past the header while looking for its end.
    pending: Vec<u8>,
    reader: R,
}

impl<R: Read> StreamDecryptor<R> {
    /// Reads the header, pulling from `reader` only as much as it needs
    /// (the header is bounded by the format's limits).
    ///
    /// # Errors
    /// [`Error::Format`] for a malformed or truncated header, [`Error::Io`]
    /// when reading fails.
    pub fn new(mut reader: R, options: &ParseOptions) -> Result<Self, Error> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match Header::parse_prefix(&buf, options) {
                Ok((header, core_len, header_len)) => {
                    let pending = buf.split_off(header_len);
                    buf.truncate(core_len);
                    return Ok(Self { header, core: buf, pending, reader });
                }
                Err(FormatError::Truncated(field)) => {
                    let n = reader
                        .read(&mut chunk)
                        .or_else(|e| if e.kind() == io::ErrorKind::Interrupted { Ok(usize::MAX) } else { Err(e) })?;
                    match n {
                        0 if buf.is_empty() => {
                            return Err(FormatError::Invalid("input (it is empty)").into());
                        }
                        0 => return Err(FormatError::Truncated(field).into()),
                        usize::MAX => {}
                        n => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Checks the commitment, then decrypts the body to `writer` frame by
    /// frame, each frame only after its tag verifies. Returns the plaintext length.
    ///
    /// A framed body is decrypted in constant memory. If it fails part way,
    /// earlier frames have been written: the caller must discard the output.
    ///
    /// # Errors
    /// [`Error::Authentication`] for a wrong key or tampering, [`Error::Format`]
    /// for truncation, extension or malformed frames, [`Error::Io`] for I/O.
    pub fn decrypt_to(self, data_key: &DataKey, writer: impl Write) -> Result<u64, Error> {
        self.decrypt_to_with(data_key, &StreamOptions::default(), writer)
    }

    /// [`StreamDecryptor::decrypt_to`] with chosen [`StreamOptions`]. A framed
    /// body larger than one batch is decrypted on `options.threads()` threads;
    /// the plaintext written, and the error on bad input, are those of one
    /// thread: frames are released in order, each only after its tag verifies.
    ///
    /// # Errors
    /// As [`StreamDecryptor::decrypt_to`].
    pub fn decrypt_to_with(
        self,
        data_key: &DataKey,
        options: &StreamOptions,
        mut writer: impl Write,
    ) -> Result<u64, Error> {
        let keys = MessageKeys::derive(self.header.suite, data_key, &self.header.message_id);
        keys.check_commitment(&self.header.commitment)?;
        let mut cipher = keys.frame_cipher(&self.core);
        let mut body = io::Cursor::new(self.pending).chain(self.reader);
        match self.header.body_form {
            BodyForm::Framed { frame_len } => {
                decrypt_frames(&cipher, frame_len, options.threads, &mut body, &mut writer)
            }
            BodyForm::SingleShot => {
                let mut sealed = Plaintext::zeroed(0);
                let limit = MAX_STREAMED_SINGLE_SHOT as u64 + TAG_LEN as u64;
                body.by_ref().take(limit + 1).read_to_end(sealed.vec_mut())?;
                if sealed.len() as u64 > limit {
                    return Err(FormatError::TooLong {
                        field: "single-shot body",
                        len: sealed.len(),
                        max: MAX_STREAMED_SINGLE_SHOT,
                    }
                    .into());
                }
                let plain_len = sealed.len().checked_sub(TAG_LEN).ok_or(FormatError::Truncated("body"))?;
                let (plaintext, tag) = sealed.split_at_mut(plain_len);
                cipher.open(0, true, plaintext, &tag_array(tag))?;
                writer.write_all(plaintext)?;
                writer.flush()?;
                Ok(plain_len as u64)
            }
        }
    }
}

/// Decrypts a framed body held in memory (used by `Envelope::open`).
pub(crate) fn open_frames(cipher: &FrameCipher, frame_len: u32, body: &[u8]) -> Result<Plaintext, Error> {
    // Reserve the plaintext's upper bound so the vector never reallocates and
    // leaves a plaintext copy behind in freed memory.
    let mut out = Plaintext::with_capacity(body.len());
    decrypt_frames(cipher, frame_len, StreamOptions::default().threads, &mut &body[..], out.vec_mut())?;
    Ok(out)
}

/// A batch of frames to open: their sealed bytes back to back (ciphertext
/// then tag), decrypted in place.
struct OpenBatch {
    buf: Plaintext,
    frames: Vec<FrameAt>,
    /// Frames whose tags verified, from the first: the ones that may be written.
    verified: usize,
}

/// Where a frame sits in its batch, and its place in the message.
#[derive(Clone, Copy)]
struct FrameAt {
    start: usize,
    len: usize,
    sequence: u32,
    is_final: bool,
}

impl OpenBatch {
    fn open(&mut self, cipher: &Gcm, aad: &mut FrameAad) -> Result<(), Error> {
        self.verified = 0;
        for frame in &self.frames {
            let sealed = &mut self.buf[frame.start..frame.start + frame.len + TAG_LEN];
            let (plaintext, tag) = sealed.split_at_mut(frame.len);
            aad.open(cipher, frame.sequence, frame.is_final, plaintext, &tag_array(tag))?;
            self.verified += 1;
        }
        Ok(())
    }
}

/// Reads sealed frames into batches, checking the framing (MUST 6.2, 6.3).
struct SealedSource<'r, R> {
    reader: &'r mut R,
    max: usize,
    sequence: u32,
    done: bool,
}

impl<R: Read> SealedSource<'_, R> {
    fn fill(&mut self, batch: &mut OpenBatch) -> Result<Filled, Error> {
        let per_batch = frames_per_batch(self.max);
        batch.frames.clear();
        batch.verified = 0;
        let mut used = 0;
        while !self.done && batch.frames.len() < per_batch {
            match self.next_frame(batch, used, per_batch) {
                Ok((frame, after)) => {
                    used += frame.len + TAG_LEN;
                    batch.frames.push(frame);
                    if after.is_some() {
                        return Ok(Filled { last: true, error: after });
                    }
                }
                Err(error) => {
                    self.done = true;
                    return Ok(Filled { last: true, error: Some(error) });
                }
            }
        }
        Ok(Filled { last: self.done, error: None })
    }

    /// The next frame, read into the batch at `used`, and an error to report
    /// once it has been opened (bytes after the final frame).
    fn next_frame(
        &mut self,
        batch: &mut OpenBatch,
        used: usize,
        per_batch: usize,
    ) -> Result<(FrameAt, Option<Error>), Error> {
        let mut word = [0u8; 4];
        read_exact(self.reader, &mut word, "frame length")?;
        let word = u32::from_be_bytes(word);
        let is_final = word & FINAL_FLAG != 0;
        let len = usize::try_from(word & !FINAL_FLAG).map_err(|_| FormatError::BadFrame)?;
        if len > self.max || (!is_final && len != self.max) {
            return Err(FormatError::BadFrame.into());
        }
        let needed = used + len + TAG_LEN;
        if batch.buf.len() < needed {
            // Grown as frames arrive rather than to the declared frame length,
            // so a tiny input cannot make the reader allocate 16 MiB.
            grow(&mut batch.buf, needed, per_batch * (self.max + TAG_LEN));
        }
        read_exact(self.reader, &mut batch.buf[used..needed], "frame")?;
        let frame = FrameAt { start: used, len, sequence: self.sequence, is_final };
        if is_final {
            self.done = true;
            let mut extra = [0u8; 1];
            if read_full(self.reader, &mut extra)? != 0 {
                // Extension (MUST 6.3), reported after this frame has been
                // opened, so a forged final frame still fails authentication first.
                return Ok((frame, Some(FormatError::TrailingBytes.into())));
            }
        } else {
            self.sequence = self.sequence.checked_add(1).ok_or(FormatError::BadFrame)?;
        }
        Ok((frame, None))
    }
}

/// The frame loop shared by the in-memory and the streaming reader
/// (MUST 6.2, 6.3, 5.5): the output is written frame by frame, in order,
/// each frame only once its tag has verified.
fn decrypt_frames(
    cipher: &FrameCipher,
    frame_len: u32,
    threads: usize,
    body: &mut impl Read,
    writer: &mut impl Write,
) -> Result<u64, Error> {
    let max = usize::try_from(frame_len).map_err(|_| FormatError::BadFrameLength(frame_len))?;
    let mut source = SealedSource { reader: body, max, sequence: 0, done: false };
    let mut total = 0u64;
    run_batches(
        threads,
        cipher,
        || OpenBatch { buf: Plaintext::zeroed(0), frames: Vec::new(), verified: 0 },
        |batch| source.fill(batch),
        |cipher, aad, batch| batch.open(cipher, aad),
        |batch, opened| {
            let verified = &batch.frames[..batch.verified];
            let mut plaintexts: Vec<IoSlice<'_>> =
                verified.iter().map(|frame| IoSlice::new(&batch.buf[frame.start..frame.start + frame.len])).collect();
            write_all_vectored(writer, &mut plaintexts)?;
            total += verified.iter().map(|frame| frame.len as u64).sum::<u64>();
            opened
        },
    )?;
    writer.flush()?;
    Ok(total)
}

/// Writes every slice, in order: a batch's frames in one system call where
/// the writer can take them so (a file can), not one call per frame.
fn write_all_vectored(writer: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match writer.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_exact(reader: &mut impl Read, buf: &mut [u8], field: &'static str) -> Result<(), Error> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(FormatError::Truncated(field).into()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most a few bytes a call, from one slice or
    /// across several, and is interrupted now and then.
    struct Trickle {
        out: Vec<u8>,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let mut room = 7;
            for buf in bufs {
                let n = buf.len().min(room);
                self.out.extend_from_slice(&buf[..n]);
                room -= n;
                if room == 0 {
                    break;
                }
            }
            Ok(7 - room)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn vectored_writes_survive_short_writes_and_interruptions() {
        let parts: [&[u8]; 5] = [b"frame one", b"", b"2", b"the third frame, longer than the rest", b"end"];
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut writer = Trickle { out: Vec::new(), calls: 0 };
        write_all_vectored(&mut writer, &mut slices).expect("write");
        assert_eq!(writer.out, parts.concat());
    }
}

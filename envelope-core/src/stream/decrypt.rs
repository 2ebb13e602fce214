//! Opening a stream, frame by frame, and the frames of an envelope in memory.

use std::io::{self, IoSlice, Read, Write};

use super::batches::{Filled, frames_per_batch, grow, read_full, run_batches};
use super::options::{FINAL_FLAG, MAX_STREAMED_SINGLE_SHOT, StreamOptions};
use crate::aead::tag_array;
use crate::aead::{Gcm, TAG_LEN};
use crate::error::{Error, FormatError};
use crate::header::{BodyForm, Header, ParseOptions};
use crate::key::DataKey;
use crate::plaintext::Plaintext;
use crate::suite::{FrameAad, FrameCipher, MessageKeys};

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
                decrypt_frames(&cipher, frame_len, options.threads(), &mut body, &mut writer)
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
    decrypt_frames(cipher, frame_len, StreamOptions::default().threads(), &mut &body[..], out.vec_mut())?;
    Ok(out)
}

/// A batch of frames to open: their sealed bytes back to back (ciphertext
/// then tag), decrypted in place.
pub(super) struct OpenBatch {
    buf: Plaintext,
    frames: Vec<FrameAt>,
    /// Frames whose tags verified, from the first: the ones that may be written.
    verified: usize,
}

/// Where a frame sits in its batch, and its place in the message.
#[derive(Clone, Copy)]
pub(super) struct FrameAt {
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
pub(super) struct SealedSource<'r, R> {
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
pub(super) fn decrypt_frames(
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
pub(super) fn write_all_vectored(writer: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
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

pub(super) fn read_exact(reader: &mut impl Read, buf: &mut [u8], field: &'static str) -> Result<(), Error> {
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

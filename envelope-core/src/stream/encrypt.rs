//! Sealing a stream, frame by frame.

use std::io::{Read, Write};

use super::batches::{Filled, frames_per_batch, grow, read_full, run_batches};
use super::options::{FINAL_FLAG, StreamOptions, WORD_LEN};
use crate::aead::{Gcm, TAG_LEN};
use crate::context::EncryptionContext;
use crate::error::{Error, FormatError};
use crate::header::{BodyForm, begin_message};
use crate::keyring::Materials;
use crate::plaintext::Plaintext;
use crate::suite::{FrameAad, MESSAGE_ID_LEN};

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
        options.threads(),
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
pub(super) struct SealBatch {
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
pub(super) struct FrameSource<'r, R> {
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

//! Framed envelopes over `Read` and `Write` in constant memory
//! (docs/format.md §6.3): one frame buffer, whatever the input's size.

use std::io::{self, Read, Write};

use zeroize::Zeroizing;

use crate::aead::TAG_LEN;
use crate::context::EncryptionContext;
use crate::envelope::tag_array;
use crate::error::{Error, FormatError};
use crate::header::{BodyForm, Header, ParseOptions};
use crate::key::DataKey;
use crate::keyring::Materials;
use crate::suite::{FrameCipher, MESSAGE_ID_LEN, MessageKeys, Suite};

const FINAL_FLAG: u32 = 1 << 31;
/// The most a single-shot body read from a stream may be; larger data
/// belongs in the framed form.
pub const MAX_STREAMED_SINGLE_SHOT: usize = 256 << 20;

/// Encrypts everything `reader` yields into a framed envelope on `writer`,
/// holding one frame in memory. Returns the plaintext length.
///
/// # Errors
/// [`Error::Format`] for a bad frame length or key list, [`Error::Io`] when
/// reading or writing fails. On error the output is incomplete and must be
/// discarded; the plaintext buffer is zeroized either way.
pub fn encrypt_stream(
    materials: &Materials,
    context: &EncryptionContext,
    frame_len: u32,
    reader: impl Read,
    writer: impl Write,
) -> Result<u64, Error> {
    let mut message_id = [0u8; MESSAGE_ID_LEN];
    crate::random::fill(&mut message_id)?;
    encrypt_stream_with_message_id(materials, context, frame_len, reader, writer, message_id)
}

/// [`encrypt_stream`] with a chosen message id: for known-answer tests only
/// (MUST 3.3).
#[doc(hidden)]
pub fn encrypt_stream_with_message_id(
    materials: &Materials,
    context: &EncryptionContext,
    frame_len: u32,
    mut reader: impl Read,
    mut writer: impl Write,
    message_id: [u8; MESSAGE_ID_LEN],
) -> Result<u64, Error> {
    let body_form = BodyForm::framed(frame_len)?;
    let suite = Suite::Aes256GcmHkdfSha256Committing;
    let keys = MessageKeys::derive(suite, &materials.data_key, &message_id);
    let header = Header {
        suite,
        body_form,
        message_id,
        context: context.clone(),
        commitment: keys.commitment(),
        encrypted_data_keys: materials.encrypted_data_keys.clone(),
    };
    let mut head = Vec::new();
    header.encode_core(&mut head);
    let mut cipher = keys.frame_cipher(&head);
    crate::header::encode_edks(&header.encrypted_data_keys, &mut head)?;
    writer.write_all(&head)?;

    let frame_len = usize::try_from(frame_len).map_err(|_| FormatError::BadFrameLength(frame_len))?;
    let mut frame = Zeroizing::new(vec![0u8; frame_len + 1]);
    // The frame buffer holds one byte more than a frame: the look-ahead that
    // tells whether a full frame is the last one.
    let mut filled = read_full(&mut reader, &mut frame[..])?;
    let mut total = 0u64;
    let mut sequence = 0u32;
    loop {
        let is_final = filled <= frame_len;
        let len = filled.min(frame_len);
        let lookahead = frame[frame_len];
        let word = u32::try_from(len).map_err(|_| FormatError::BadFrame)? | if is_final { FINAL_FLAG } else { 0 };
        let tag = cipher.seal(sequence, is_final, &mut frame[..len])?;
        writer.write_all(&word.to_be_bytes())?;
        writer.write_all(&frame[..len])?;
        writer.write_all(&tag)?;
        total += len as u64;
        if is_final {
            writer.flush()?;
            return Ok(total);
        }
        sequence = sequence.checked_add(1).ok_or(FormatError::Invalid("message length (more than 2^32 frames)"))?; // MUST 6.4
        frame[0] = lookahead;
        filled = 1 + read_full(&mut reader, &mut frame[1..])?;
    }
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
    pub fn decrypt_to(self, data_key: &DataKey, mut writer: impl Write) -> Result<u64, Error> {
        let keys = MessageKeys::derive(self.header.suite, data_key, &self.header.message_id);
        keys.check_commitment(&self.header.commitment)?;
        let mut cipher = keys.frame_cipher(&self.core);
        let mut body = io::Cursor::new(self.pending).chain(self.reader);
        match self.header.body_form {
            BodyForm::Framed { frame_len } => decrypt_frames(&mut cipher, frame_len, &mut body, &mut writer),
            BodyForm::SingleShot => {
                let mut sealed = Zeroizing::new(Vec::new());
                let limit = MAX_STREAMED_SINGLE_SHOT as u64 + TAG_LEN as u64;
                body.by_ref().take(limit + 1).read_to_end(&mut sealed)?;
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

/// Decrypts a framed body held in memory into `out` (used by `Envelope::open`).
pub(crate) fn open_frames(
    cipher: &mut FrameCipher,
    frame_len: u32,
    body: &[u8],
    out: &mut Zeroizing<Vec<u8>>,
) -> Result<(), Error> {
    // Reserve the plaintext's upper bound so the vector never reallocates and
    // leaves a plaintext copy behind in freed memory.
    out.reserve_exact(body.len());
    decrypt_frames(cipher, frame_len, &mut &body[..], &mut **out).map(drop)
}

/// The frame loop shared by the in-memory and the streaming reader (MUST 6.2, 6.3).
fn decrypt_frames(
    cipher: &mut FrameCipher,
    frame_len: u32,
    body: &mut impl Read,
    writer: &mut impl Write,
) -> Result<u64, Error> {
    let max = usize::try_from(frame_len).map_err(|_| FormatError::BadFrameLength(frame_len))?;
    // Grown to the first frame's size rather than the declared maximum, so a
    // tiny input cannot make the reader allocate 16 MiB.
    let mut frame = Zeroizing::new(Vec::new());
    let mut total = 0u64;
    let mut sequence = 0u32;
    loop {
        let mut word = [0u8; 4];
        read_exact(body, &mut word, "frame length")?;
        let word = u32::from_be_bytes(word);
        let is_final = word & FINAL_FLAG != 0;
        let len = usize::try_from(word & !FINAL_FLAG).map_err(|_| FormatError::BadFrame)?;
        if len > max || (!is_final && len != max) {
            return Err(FormatError::BadFrame.into());
        }
        if frame.len() < len + TAG_LEN {
            // A fresh buffer rather than a resize, so the old one is zeroized, not left behind.
            frame = Zeroizing::new(vec![0u8; len + TAG_LEN]);
        }
        let sealed = &mut frame[..len + TAG_LEN];
        read_exact(body, sealed, "frame")?;
        let (plaintext, tag) = sealed.split_at_mut(len);
        cipher.open(sequence, is_final, plaintext, &tag_array(tag))?;
        writer.write_all(plaintext)?;
        total += len as u64;
        if is_final {
            let mut extra = [0u8; 1];
            if read_full(body, &mut extra)? != 0 {
                return Err(FormatError::TrailingBytes.into());
            }
            writer.flush()?;
            return Ok(total);
        }
        sequence = sequence.checked_add(1).ok_or(FormatError::BadFrame)?;
    }
}

fn read_exact(reader: &mut impl Read, buf: &mut [u8], field: &'static str) -> Result<(), Error> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(FormatError::Truncated(field).into()),
        Err(e) => Err(e.into()),
    }
}

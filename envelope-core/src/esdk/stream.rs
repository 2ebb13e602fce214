//! Streaming decryption: any size in constant memory (one frame at a time).

use std::io::{self, Chain, Cursor, Read, Write};

use crate::codec::Reader;
use crate::error::{Error, FormatError};
use crate::plaintext::Plaintext;

use super::body::{FINAL_FRAME_MARKER, MAX_NON_FRAMED_LEN, Piece, next_seq, read_frame};
use super::header::Header;
use super::header::{ContentType, HeaderInfo};
use super::keys::PlaintextDataKey;
use super::options::DecryptOptions;
use super::sign::Verifier;
use super::suite::{IV_LEN, TAG_LEN};

/// Bytes of the fixed fields of a header, both versions' largest.
const HEADER_FIXED: usize = 1 + 1 + 2 + 32 + 2 + 2 + 1 + 4 + 1 + 4 + 32 + IV_LEN + TAG_LEN;
/// Bytes of one wrapped key at most: three `u16`-prefixed fields.
const WRAPPED_KEY_MAX: usize = 3 * (2 + u16::MAX as usize);

/// Where a [`StreamDecryptor`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Header read, body not yet decrypted.
    Header,
    /// Body decrypted; footer and end of input not yet checked.
    Body,
    /// A step failed; nothing more may be done.
    Failed,
}

/// Decrypts an AWS Encryption SDK message from a reader to a writer,
/// holding one frame at a time (at most [`DecryptOptions::max_buffer_len`]).
///
/// ```no_run
/// # fn demo(file: std::fs::File, out: std::fs::File, key: &[u8]) -> Result<(), envelope_core::Error> {
/// use envelope_core::esdk::{DecryptOptions, RawAesKeyring, StreamDecryptor};
/// let mut decryptor = StreamDecryptor::new(file, &DecryptOptions::default())?;
/// let data_key = RawAesKeyring::new("ns", "name", key)?.unwrap(&decryptor.header())?;
/// let mut out = std::io::BufWriter::new(out);
/// decryptor.decrypt_to(&data_key, &mut out)?;
/// decryptor.finish()?; // only now is `out` verified: commit it (rename) here
/// # Ok(()) }
/// ```
///
/// **Output written before [`StreamDecryptor::finish`] returns `Ok` is not
/// verified.** Each frame is written once its own tag verifies, but the
/// end of the message (a dropped final frame is caught by the frame
/// structure; a signed suite's signature by `finish`) is only checked at
/// the end. Write to a temporary file and commit it only after `finish`.
pub struct StreamDecryptor<R> {
    input: Chain<Cursor<Vec<u8>>, R>,
    header: Vec<u8>,
    info: HeaderInfo,
    options: DecryptOptions,
    state: State,
    verifier: Option<Verifier>,
    written: u64,
}

impl<R: Read> StreamDecryptor<R> {
    /// Reads and parses the header (reading at most the largest header
    /// `options` allow, plus one buffer of the body).
    ///
    /// # Errors
    /// [`Error::Format`] for a malformed header, [`Error::Io`] for a read failure.
    pub fn new(mut input: R, options: &DecryptOptions) -> Result<Self, Error> {
        let max_keys = options.max_wrapped_keys.min(usize::from(u16::MAX));
        let max_header = WRAPPED_KEY_MAX
            .checked_mul(max_keys)
            .and_then(|n| n.checked_add(HEADER_FIXED + usize::from(u16::MAX)))
            .ok_or(FormatError::Invalid("max_wrapped_keys (too large)"))?;
        let mut buf = Vec::new();
        let mut want = 1024usize;
        let info = loop {
            let have = buf.len();
            let more = u64::try_from(want.saturating_sub(have)).unwrap_or(u64::MAX);
            let got = (&mut input).take(more).read_to_end(&mut buf)?;
            match HeaderInfo::parse(&buf, options) {
                Ok(info) => break info,
                Err(FormatError::Truncated(field)) => {
                    if got == 0 {
                        return Err(FormatError::Truncated(field).into());
                    }
                    if buf.len() >= max_header {
                        return Err(FormatError::TooLong { field: "header", len: buf.len(), max: max_header }.into());
                    }
                    want = want.saturating_mul(2).min(max_header);
                }
                Err(e) => return Err(e.into()),
            }
        };
        let rest = buf.split_off(info.len);
        Ok(Self {
            input: Cursor::new(rest).chain(input),
            header: buf,
            info,
            options: options.clone(),
            state: State::Header,
            verifier: None,
            written: 0,
        })
    }

    /// The parsed header (not yet authenticated), for the keyring.
    pub fn header(&self) -> Header<'_> {
        Header::new(&self.header, &self.info)
    }

    /// Checks the commitment and the header tag, then decrypts every frame
    /// to `output`, each once its tag verifies. Returns the bytes written.
    /// Call [`StreamDecryptor::finish`] next: until it returns `Ok` the
    /// output is unverified.
    ///
    /// # Errors
    /// As [`Message::decrypt`](super::Message::decrypt), plus [`Error::Io`]
    /// and [`FormatError::TooLong`] for a frame over `max_buffer_len`.
    pub fn decrypt_to(&mut self, data_key: &PlaintextDataKey, mut output: impl Write) -> Result<u64, Error> {
        if self.state != State::Header {
            return Err(FormatError::Invalid("stream use (decrypt_to runs once, after new)").into());
        }
        self.state = State::Failed;
        let info = &self.info;
        self.options.check_policy(info.suite)?;
        let cipher = info.suite.derive(data_key, info.message_id(), info.commitment())?;
        cipher.verify_aad(&info.iv, &self.header[..info.body_end], &info.tag)?;
        let mut verifier = if info.suite.is_signed() {
            let mut v = Verifier::new(&Header::new(&self.header, info))?;
            v.update(&self.header);
            Some(v)
        } else {
            None
        };
        let (mut frame_buf, mut plain) = (Vec::new(), Plaintext::new());
        let mut seq = 1u32;
        loop {
            read_frame_bytes(&mut self.input, info, self.options.max_buffer_len, &mut frame_buf)?;
            let frame = read_frame(&mut Reader::new(&frame_buf), info, seq)?;
            if let Some(v) = verifier.as_mut() {
                v.update(&frame_buf);
            }
            plain.set_len_zeroed(frame.content.len());
            cipher.open_to(
                &frame.iv,
                frame.aad(info.message_id()).as_bytes(),
                frame.content,
                &frame.tag,
                &mut plain,
            )?;
            output.write_all(&plain)?;
            // usize to u64 never truncates on the platforms Rust supports.
            self.written = self.written.checked_add(plain.len() as u64).ok_or(FormatError::BadFrame)?;
            if frame.piece != Piece::Regular {
                break;
            }
            seq = next_seq(seq)?;
        }
        output.flush()?;
        self.verifier = verifier;
        self.state = State::Body;
        Ok(self.written)
    }

    /// Reads the footer and checks the signature (signed suites), then that
    /// the input ends there. `Ok` means the whole message verified: only
    /// now may the output of [`StreamDecryptor::decrypt_to`] be used.
    /// Returns the plaintext length.
    ///
    /// # Errors
    /// [`Error::Authentication`] for a bad signature, [`Error::Format`] for
    /// a missing footer or trailing bytes, or when `decrypt_to` did not
    /// succeed first.
    pub fn finish(mut self) -> Result<u64, Error> {
        if self.state != State::Body {
            return Err(FormatError::Invalid("stream use (finish needs a successful decrypt_to)").into());
        }
        if let Some(verifier) = self.verifier.take() {
            let len = u16::from_be_bytes(read_array(&mut self.input, "signature length")?);
            let mut signature = Vec::with_capacity(usize::from(len));
            (&mut self.input).take(u64::from(len)).read_to_end(&mut signature)?;
            if signature.len() != usize::from(len) {
                return Err(FormatError::Truncated("signature").into());
            }
            verifier.verify(&signature)?;
        }
        let mut extra = [0u8; 1];
        loop {
            match self.input.read(&mut extra) {
                Ok(0) => return Ok(self.written),
                Ok(_) => return Err(FormatError::TrailingBytes.into()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Reads one frame's bytes (or the non-framed body) into `buf`, learning
/// the content length from the fixed fields first, and refusing one over
/// `max` before reading it. [`read_frame`] then checks what was read.
fn read_frame_bytes(input: &mut impl Read, info: &HeaderInfo, max: u32, buf: &mut Vec<u8>) -> Result<(), Error> {
    buf.clear();
    let len: u64 = match info.content_type {
        ContentType::NonFramed => {
            let fixed: [u8; IV_LEN + 8] = read_array(input, "body IV and length")?;
            buf.extend_from_slice(&fixed);
            let mut len = [0u8; 8];
            len.copy_from_slice(&fixed[IV_LEN..]);
            let len = u64::from_be_bytes(len);
            if len > MAX_NON_FRAMED_LEN {
                return Err(FormatError::Invalid("non-framed body length (over 2^36 - 32 bytes)").into());
            }
            len
        }
        ContentType::Framed => {
            let first: [u8; 4] = read_array(input, "frame sequence number")?;
            buf.extend_from_slice(&first);
            if u32::from_be_bytes(first) == FINAL_FRAME_MARKER {
                let fixed: [u8; 4 + IV_LEN + 4] = read_array(input, "final frame header")?;
                buf.extend_from_slice(&fixed);
                let mut len = [0u8; 4];
                len.copy_from_slice(&fixed[4 + IV_LEN..]);
                u64::from(u32::from_be_bytes(len))
            } else {
                let iv: [u8; IV_LEN] = read_array(input, "frame IV")?;
                buf.extend_from_slice(&iv);
                u64::from(info.frame_len)
            }
        }
    };
    if len > u64::from(max) {
        // usize from u64: saturates on 32-bit targets, only for the message.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        return Err(FormatError::TooLong { field: "frame (raise max_buffer_len)", len, max }.into());
    }
    // Grows with what arrives, so a lying length costs nothing.
    let want = len.checked_add(TAG_LEN as u64).ok_or(FormatError::BadFrame)?;
    input.take(want).read_to_end(buf)?;
    Ok(())
}

fn read_array<const N: usize>(input: &mut impl Read, field: &'static str) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    input.read_exact(&mut out).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::Format(FormatError::Truncated(field)),
        _ => Error::Io(e),
    })?;
    Ok(out)
}

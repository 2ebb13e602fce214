//! Whole messages in memory, and the body layout both readers share
//! (spec `data-format/message-body.md`, `message-body-aad.md`,
//! `message-footer.md`).

use std::ops::Range;

use crate::codec::Reader;
use crate::error::{Error, FormatError};
use crate::plaintext::Plaintext;

use super::header::Header;
use super::header::{ContentType, ContextPairs, HeaderInfo, WrappedKeys};
use super::keys::PlaintextDataKey;
use super::options::DecryptOptions;
use super::suite::{IV_LEN, Suite, TAG_LEN};

/// Marks the final frame where a regular frame has its sequence number.
pub(crate) const FINAL_FRAME_MARKER: u32 = u32::MAX;
/// Largest non-framed body the spec allows: 2^36 - 32 bytes.
pub(crate) const MAX_NON_FRAMED_LEN: u64 = (1 << 36) - 32;
/// Longest body AAD: a 32-byte id, the longest content string, 4 + 8 bytes.
const MAX_AAD_LEN: usize = 32 + 35 + 12;

/// Which body AAD content string a piece of the body uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    Regular,
    Final,
    NonFramed,
}

impl Piece {
    fn content_string(self) -> &'static [u8] {
        match self {
            Self::Regular => b"AWSKMSEncryptionClient Frame",
            Self::Final => b"AWSKMSEncryptionClient Final Frame",
            Self::NonFramed => b"AWSKMSEncryptionClient Single Block",
        }
    }
}

/// The AAD of one frame or of the non-framed body: message id ‖ content
/// string ‖ sequence number ‖ plaintext length, on the stack.
pub(crate) struct BodyAad {
    buf: [u8; MAX_AAD_LEN],
    len: usize,
}

impl BodyAad {
    pub(crate) fn new(message_id: &[u8], piece: Piece, seq: u32, len: u64) -> Self {
        let mut buf = [0u8; MAX_AAD_LEN];
        let mut at = 0;
        for part in [message_id, piece.content_string(), &seq.to_be_bytes(), &len.to_be_bytes()] {
            // At most 32 + 35 + 4 + 8 bytes in all: message ids are 16 or 32 bytes.
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Self { buf, len: at }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The nonce the writer uses for a frame: the sequence number, zero-padded
/// on the left (spec `client-apis/encrypt.md`).
pub(crate) fn frame_iv(seq: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[IV_LEN - 4..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// One frame (or the non-framed body), borrowed from the input.
pub(crate) struct Frame<'a> {
    pub(crate) piece: Piece,
    pub(crate) seq: u32,
    pub(crate) iv: [u8; IV_LEN],
    pub(crate) content: &'a [u8],
    pub(crate) tag: [u8; TAG_LEN],
}

impl Frame<'_> {
    pub(crate) fn aad(&self, message_id: &[u8]) -> BodyAad {
        // usize to u64 never truncates on the platforms Rust supports.
        BodyAad::new(message_id, self.piece, self.seq, self.content.len() as u64)
    }
}

/// Reads the next frame, checking its sequence number and lengths: regular
/// frames hold exactly the frame length, the final one at most that.
/// The IV is taken as stored, as the SDKs' readers do.
pub(crate) fn read_frame<'a>(r: &mut Reader<'a>, info: &HeaderInfo, seq: u32) -> Result<Frame<'a>, FormatError> {
    if info.content_type == ContentType::NonFramed {
        let iv = r.array("body IV")?;
        let len = r.array::<8>("body length").map(u64::from_be_bytes)?;
        if len > MAX_NON_FRAMED_LEN {
            return Err(FormatError::Invalid("non-framed body length (over 2^36 - 32 bytes)"));
        }
        let len = usize::try_from(len).map_err(|_| FormatError::Truncated("body"))?;
        let content = r.take(len, "body")?;
        let tag = r.array("body tag")?;
        return Ok(Frame { piece: Piece::NonFramed, seq: 1, iv, content, tag });
    }
    let first = r.u32("frame sequence number")?;
    let (piece, stored_seq) = if first == FINAL_FRAME_MARKER {
        (Piece::Final, r.u32("final frame sequence number")?)
    } else {
        (Piece::Regular, first)
    };
    if stored_seq != seq {
        return Err(FormatError::Invalid("frame sequence number (frames missing, repeated or out of order)"));
    }
    let iv = r.array("frame IV")?;
    let len = match piece {
        Piece::Final => {
            let len = r.u32("final frame length")?;
            if len > info.frame_len {
                return Err(FormatError::BadFrame);
            }
            len
        }
        _ => info.frame_len,
    };
    let len = usize::try_from(len).map_err(|_| FormatError::BadFrame)?;
    let content = r.take(len, "frame")?;
    let tag = r.array("frame tag")?;
    Ok(Frame { piece, seq, iv, content, tag })
}

/// The next sequence number, or an error once 2^32 - 1 frames are used up.
pub(crate) fn next_seq(seq: u32) -> Result<u32, FormatError> {
    seq.checked_add(1)
        .filter(|&s| s != FINAL_FRAME_MARKER)
        .ok_or(FormatError::Invalid("frame count (more than 2^32 - 1 frames)"))
}

/// An AWS Encryption SDK message in memory, parsed and checked for shape
/// (every length, every frame, the footer, no trailing bytes) but not yet
/// authenticated. Parsing copies nothing; the header's context and wrapped
/// keys are borrowed views of the input.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    bytes: &'a [u8],
    info: HeaderInfo,
    /// Header and body: what the signature covers.
    signed_end: usize,
    signature: Range<usize>,
    plaintext_len: usize,
    options: DecryptOptions,
}

impl<'a> Message<'a> {
    /// Parses a whole message with the default [`DecryptOptions`].
    ///
    /// # Errors
    /// [`Error::Format`] naming the field at fault.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::parse_with(bytes, &DecryptOptions::default())
    }

    /// Parses a whole message; `options` also govern [`Message::decrypt`].
    ///
    /// # Errors
    /// [`Error::Format`] naming the field at fault.
    pub fn parse_with(bytes: &'a [u8], options: &DecryptOptions) -> Result<Self, Error> {
        let info = HeaderInfo::parse(bytes, options)?;
        let mut r = Reader::new(bytes);
        r.take(info.len, "header")?;
        let mut plaintext_len = 0usize;
        let mut seq = 1;
        loop {
            let frame = read_frame(&mut r, &info, seq)?;
            plaintext_len = plaintext_len.checked_add(frame.content.len()).ok_or(FormatError::BadFrame)?;
            if frame.piece != Piece::Regular {
                break;
            }
            seq = next_seq(seq)?;
        }
        let signed_end = r.position();
        let signature = if info.suite.is_signed() {
            let sig = r.vec16("signature", usize::from(u16::MAX))?;
            // Cannot underflow: the reader has just consumed `sig`.
            let start = r.position() - sig.len();
            start..r.position()
        } else {
            signed_end..signed_end
        };
        if r.position() != bytes.len() {
            return Err(FormatError::TrailingBytes.into());
        }
        Ok(Self { bytes, info, signed_end, signature, plaintext_len, options: options.clone() })
    }

    /// The header, for the keyring that unwraps the data key.
    pub fn header(&self) -> Header<'_> {
        Header::new(self.bytes, &self.info)
    }

    /// The message format version, 1 or 2.
    pub fn version(&self) -> u8 {
        self.info.version()
    }

    /// The algorithm suite.
    pub fn suite(&self) -> Suite {
        self.info.suite
    }

    /// The message id (16 bytes in version 1, 32 in version 2).
    pub fn message_id(&self) -> &[u8] {
        self.info.message_id()
    }

    /// The encryption context (see [`Header::encryption_context`]).
    pub fn encryption_context(&self) -> ContextPairs<'_> {
        self.info.context_pairs(self.bytes)
    }

    /// The wrapped data keys.
    pub fn wrapped_keys(&self) -> WrappedKeys<'_> {
        self.info.wrapped_keys(self.bytes)
    }

    /// Non-framed or framed.
    pub fn content_type(&self) -> ContentType {
        self.info.content_type
    }

    /// The frame length (0 when non-framed).
    pub fn frame_length(&self) -> u32 {
        self.info.frame_len
    }

    /// The plaintext's length, known from the frame lengths.
    pub fn plaintext_len(&self) -> usize {
        self.plaintext_len
    }

    #[cfg(feature = "internals")]
    pub(crate) fn header_parts(&self) -> (&'a [u8], &HeaderInfo) {
        (self.bytes, &self.info)
    }

    /// Decrypts with the data key the caller's keyring unwrapped. Checks,
    /// in order: the commitment policy, the key commitment (constant time),
    /// the header tag, the signature (signed suites), then every frame;
    /// nothing is returned unless all of them pass.
    ///
    /// # Errors
    /// [`Error::NonCommittingSuite`] under the default policy for a legacy
    /// suite; [`Error::FeatureRequired`] for a signed suite without the
    /// `aws-lc` feature; [`Error::Authentication`] for a wrong key or any
    /// altered byte; [`Error::Format`] for a data key of the wrong length.
    pub fn decrypt(&self, data_key: &PlaintextDataKey) -> Result<Plaintext, Error> {
        let mut out = Plaintext::new();
        self.decrypt_into(data_key, &mut out)?;
        Ok(out)
    }

    /// [`Message::decrypt`] into a buffer the caller keeps, reusing its
    /// allocation when large enough (for many messages in a row).
    ///
    /// # Errors
    /// As [`Message::decrypt`]; `out` is then empty, its old contents wiped.
    pub fn decrypt_into(&self, data_key: &PlaintextDataKey, out: &mut Plaintext) -> Result<(), Error> {
        self.decrypt_unwiped(data_key, out).inspect_err(|_| out.clear())
    }

    fn decrypt_unwiped(&self, data_key: &PlaintextDataKey, out: &mut Plaintext) -> Result<(), Error> {
        let info = &self.info;
        self.options.check_policy(info.suite)?;
        let cipher = info.suite.derive(data_key, info.message_id(), info.commitment())?;
        cipher.verify_aad(&info.iv, &self.bytes[..info.body_end], &info.tag)?;
        if info.suite.is_signed() {
            let mut verifier = super::sign::Verifier::new(&self.header())?;
            verifier.update(&self.bytes[..self.signed_end]);
            verifier.verify(&self.bytes[self.signature.clone()])?;
        }
        out.set_len_zeroed(self.plaintext_len);
        let mut r = Reader::new(&self.bytes[info.len..self.signed_end]);
        let (mut seq, mut at) = (1u32, 0usize);
        loop {
            let frame = read_frame(&mut r, info, seq)?;
            let end = at.checked_add(frame.content.len()).ok_or(FormatError::BadFrame)?;
            let dest = out.get_mut(at..end).ok_or(FormatError::BadFrame)?;
            cipher.open_to(&frame.iv, frame.aad(info.message_id()).as_bytes(), frame.content, &frame.tag, dest)?;
            at = end;
            if frame.piece != Piece::Regular {
                return Ok(());
            }
            seq = next_seq(seq)?;
        }
    }
}

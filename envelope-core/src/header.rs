//! The envelope header (docs/format.md §3): parsed and encoded here, and
//! nowhere else.

use crate::codec::Reader;
use crate::context::EncryptionContext;
use crate::error::FormatError;
use crate::key::{DataKey, EncryptedDataKey};
use crate::suite::{COMMITMENT_LEN, MESSAGE_ID_LEN, MessageKeys, Suite};

/// The magic bytes every envelope starts with: ASCII `RKY`.
pub const MAGIC: [u8; 3] = *b"RKY";
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// The largest frame length (MUST 3.2).
pub const MAX_FRAME_LEN: u32 = 1 << 24;
/// The frame length writers use unless told otherwise.
pub const DEFAULT_FRAME_LEN: u32 = 1 << 16;
/// The most encrypted data keys the format can hold (MUST 3.4).
pub const MAX_ENCRYPTED_DATA_KEYS: usize = 255;
/// The default limit readers enforce on encrypted data keys (MUST 3.4).
pub const DEFAULT_MAX_ENCRYPTED_DATA_KEYS: usize = 16;

/// How the body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyForm {
    /// One AES-GCM operation over the whole plaintext: for records.
    SingleShot,
    /// Frames of `frame_len` plaintext bytes: for streams of any size.
    Framed {
        /// Plaintext bytes per frame, 1 to [`MAX_FRAME_LEN`].
        frame_len: u32,
    },
}

impl BodyForm {
    /// A framed form, checking the frame length (MUST 3.2).
    ///
    /// # Errors
    /// [`FormatError::BadFrameLength`] outside 1 to [`MAX_FRAME_LEN`].
    pub fn framed(frame_len: u32) -> Result<Self, FormatError> {
        if frame_len == 0 || frame_len > MAX_FRAME_LEN {
            return Err(FormatError::BadFrameLength(frame_len));
        }
        Ok(Self::Framed { frame_len })
    }
}

/// Limits a reader applies beyond the format's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// The most encrypted data keys accepted (MUST 3.4); at most 255.
    pub max_encrypted_data_keys: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self { max_encrypted_data_keys: DEFAULT_MAX_ENCRYPTED_DATA_KEYS }
    }
}

/// Everything an envelope says before its body; readable without any key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The algorithm suite.
    pub suite: Suite,
    /// Single-shot or framed.
    pub body_form: BodyForm,
    /// The random message id, the salt of the key schedule.
    pub message_id: [u8; MESSAGE_ID_LEN],
    /// The encryption context, authenticated with the body.
    pub context: EncryptionContext,
    /// The key commitment (MUST 5.1).
    pub commitment: [u8; COMMITMENT_LEN],
    /// The wrapped copies of the data key; not authenticated (format §7).
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
}

impl Header {
    /// Appends the header core, the authenticated part.
    pub(crate) fn encode_core(&self, out: &mut Vec<u8>) {
        encode_core(self.suite, self.body_form, &self.message_id, &self.context, &self.commitment, out);
    }

    /// Appends the whole header: core and EDK list.
    ///
    /// # Errors
    /// [`FormatError::NoEncryptedDataKeys`] or
    /// [`FormatError::TooManyEncryptedDataKeys`] when the list breaks MUST 3.4.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        self.encode_core(out);
        encode_edks(&self.encrypted_data_keys, out)
    }

    /// Reads a header from the start of `input`, returning it, the length of
    /// its core and the length of the whole header.
    ///
    /// # Errors
    /// A [`FormatError`] saying what is wrong; [`FormatError::Truncated`]
    /// when `input` ends inside the header, so a streaming caller can read more.
    pub fn parse_prefix(input: &[u8], options: &ParseOptions) -> Result<(Self, usize, usize), FormatError> {
        let view = HeaderView::parse(input, options)?;
        Ok((view.to_header(), view.core_len, view.len))
    }
}

/// A header checked in full without copying anything out: the fixed-size
/// fields, and the context and key list still encoded, borrowed from the
/// input. Opening a record needs nothing more, so it allocates nothing for
/// the header; [`HeaderView::to_header`] builds the owned [`Header`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderView<'a> {
    pub(crate) suite: Suite,
    pub(crate) body_form: BodyForm,
    pub(crate) message_id: [u8; MESSAGE_ID_LEN],
    pub(crate) commitment: [u8; COMMITMENT_LEN],
    /// The encoded context, from its pair count.
    context: &'a [u8],
    /// The encoded key list, after its count.
    encrypted_data_keys: &'a [u8],
    encrypted_data_key_count: usize,
    /// Lengths of the core and of the whole header.
    pub(crate) core_len: usize,
    pub(crate) len: usize,
}

impl<'a> HeaderView<'a> {
    /// Checks the header at the start of `input` against every rule of the
    /// format (as [`Header::parse_prefix`], which is built on it).
    pub(crate) fn parse(input: &'a [u8], options: &ParseOptions) -> Result<Self, FormatError> {
        let mut r = Reader::new(input);
        let magic: [u8; 3] = r.array("magic bytes").map_err(|_| not_envelope_or_truncated(input))?;
        if magic != MAGIC {
            return Err(FormatError::NotAnEnvelope);
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let suite = Suite::from_id(r.u16("suite id")?)?;
        let body_form = match r.u8("body form")? {
            1 => BodyForm::SingleShot,
            2 => BodyForm::framed(r.u32("frame length")?)?,
            other => return Err(FormatError::UnknownBodyForm(other)),
        };
        let message_id = r.array("message id")?;
        let context_start = r.position();
        EncryptionContext::check(&mut r)?;
        let context = &input[context_start..r.position()];
        let commitment = r.array("commitment")?;
        let core_len = r.position();

        let count = usize::from(r.u8("encrypted data key count")?);
        let max = options.max_encrypted_data_keys.min(MAX_ENCRYPTED_DATA_KEYS);
        if count > max {
            return Err(FormatError::TooManyEncryptedDataKeys { count, max });
        }
        if count == 0 {
            return Err(FormatError::NoEncryptedDataKeys);
        }
        let edks_start = r.position();
        for _ in 0..count {
            EncryptedDataKey::read_parts(&mut r)?;
        }
        Ok(Self {
            suite,
            body_form,
            message_id,
            commitment,
            context,
            encrypted_data_keys: &input[edks_start..r.position()],
            encrypted_data_key_count: count,
            core_len,
            len: r.position(),
        })
    }

    /// The owned header. Its parts passed [`HeaderView::parse`]'s checks,
    /// which are the same readers' own, so reading them again cannot fail.
    pub(crate) fn to_header(self) -> Header {
        const CHECKED: &str = "checked by HeaderView::parse";
        let context = EncryptionContext::read(&mut Reader::new(self.context)).expect(CHECKED);
        let mut r = Reader::new(self.encrypted_data_keys);
        let encrypted_data_keys =
            (0..self.encrypted_data_key_count).map(|_| EncryptedDataKey::read(&mut r).expect(CHECKED)).collect();
        Header {
            suite: self.suite,
            body_form: self.body_form,
            message_id: self.message_id,
            context,
            commitment: self.commitment,
            encrypted_data_keys,
        }
    }
}

/// Starts a new message: derives its keys from `data_key` and a fresh
/// message id, and appends its header to `out`: the core, which the body
/// authenticates, then the key list. Returns the keys and the core's length.
///
/// # Errors
/// [`FormatError`] when the key list breaks MUST 3.4.
pub(crate) fn begin_message(
    data_key: &DataKey,
    encrypted_data_keys: &[EncryptedDataKey],
    context: &EncryptionContext,
    body_form: BodyForm,
    message_id: [u8; MESSAGE_ID_LEN],
    out: &mut Vec<u8>,
) -> Result<(MessageKeys, usize), FormatError> {
    let suite = Suite::Aes256GcmHkdfSha256Committing;
    let keys = MessageKeys::derive(suite, data_key, &message_id);
    let start = out.len();
    encode_core(suite, body_form, &message_id, context, &keys.commitment(), out);
    let core_len = out.len() - start;
    encode_edks(encrypted_data_keys, out)?;
    Ok((keys, core_len))
}

/// Appends a header core from its fields (format §3).
fn encode_core(
    suite: Suite,
    body_form: BodyForm,
    message_id: &[u8; MESSAGE_ID_LEN],
    context: &EncryptionContext,
    commitment: &[u8; COMMITMENT_LEN],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&suite.id().to_be_bytes());
    match body_form {
        BodyForm::SingleShot => out.push(1),
        BodyForm::Framed { frame_len } => {
            out.push(2);
            out.extend_from_slice(&frame_len.to_be_bytes());
        }
    }
    out.extend_from_slice(message_id);
    context.encode(out);
    out.extend_from_slice(commitment);
}

/// Appends an EDK list (MUST 3.4).
pub(crate) fn encode_edks(edks: &[EncryptedDataKey], out: &mut Vec<u8>) -> Result<(), FormatError> {
    if edks.is_empty() {
        return Err(FormatError::NoEncryptedDataKeys);
    }
    let count = u8::try_from(edks.len())
        .map_err(|_| FormatError::TooManyEncryptedDataKeys { count: edks.len(), max: MAX_ENCRYPTED_DATA_KEYS })?;
    out.push(count);
    for edk in edks {
        edk.encode(out);
    }
    Ok(())
}

/// A prefix of the magic is a truncated envelope; anything else is not one.
fn not_envelope_or_truncated(input: &[u8]) -> FormatError {
    if MAGIC.starts_with(input) { FormatError::Truncated("magic bytes") } else { FormatError::NotAnEnvelope }
}

//! The message header, versions 1 and 2 (spec `data-format/message-header.md`):
//! parsed once into fixed fields and ranges over the input, so that reading
//! it copies nothing and the context and wrapped keys are handed out as
//! borrowed views.

use std::ops::Range;

use crate::codec::Reader;
use crate::error::FormatError;

use super::keys::WrappedKeyRef;
use super::options::DecryptOptions;
use super::suite::{COMMIT_LEN, IV_LEN, Suite, TAG_LEN};

/// Version 1's only message type, "customer authenticated encrypted data".
const TYPE_CUSTOMER_AED: u8 = 0x80;
/// The context key under which signed suites carry the verification key.
pub(crate) const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";
/// Any length a `u16` prefix can express.
const U16_MAX: usize = u16::MAX as usize;

/// How the body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentType {
    /// One IV, length, ciphertext and tag (content type 0x01).
    NonFramed,
    /// A sequence of frames of the header's frame length (content type 0x02).
    Framed,
}

/// The parsed header: fixed fields by value, variable ones as ranges of the
/// header bytes it was parsed from.
#[derive(Debug, Clone)]
pub(crate) struct HeaderInfo {
    pub(crate) suite: Suite,
    pub(crate) message_id: [u8; 32],
    /// The serialized context (count and pairs), empty for an empty context.
    pub(crate) context: Range<usize>,
    pub(crate) context_count: usize,
    /// The wrapped key entries, after their count.
    pub(crate) keys: Range<usize>,
    pub(crate) key_count: usize,
    pub(crate) content_type: ContentType,
    pub(crate) frame_len: u32,
    pub(crate) commitment: [u8; COMMIT_LEN],
    /// End of the header body: what the header tag authenticates.
    pub(crate) body_end: usize,
    pub(crate) iv: [u8; IV_LEN],
    pub(crate) tag: [u8; TAG_LEN],
    /// End of the whole header (body and authentication).
    pub(crate) len: usize,
}

impl HeaderInfo {
    pub(crate) fn version(&self) -> u8 {
        self.suite.message_version()
    }

    pub(crate) fn message_id(&self) -> &[u8] {
        &self.message_id[..self.suite.message_id_len()]
    }

    /// The stored commitment key (version 2), or nothing.
    pub(crate) fn commitment(&self) -> &[u8] {
        if self.suite.is_committing() { &self.commitment } else { &[] }
    }

    /// Parses a header at the start of `buf`. A header cut short fails with
    /// [`FormatError::Truncated`], which the streaming reader takes as "read more".
    pub(crate) fn parse(buf: &[u8], options: &DecryptOptions) -> Result<Self, FormatError> {
        let mut r = Reader::new(buf);
        let version = r.u8("message version")?;
        if version != 1 && version != 2 {
            return Err(FormatError::Invalid("AWS Encryption SDK message version (not 1 or 2)"));
        }
        if version == 1 && r.u8("message type")? != TYPE_CUSTOMER_AED {
            return Err(FormatError::Invalid("message type (not 0x80)"));
        }
        let suite = Suite::from_id(r.u16("algorithm suite id")?)?;
        if suite.message_version() != version {
            return Err(FormatError::Invalid("algorithm suite for this message format version"));
        }
        let mut message_id = [0u8; 32];
        message_id[..suite.message_id_len()].copy_from_slice(r.take(suite.message_id_len(), "message id")?);

        let aad_len = usize::from(r.u16("encryption context length")?);
        let context_start = r.position();
        let context_bytes = r.take(aad_len, "encryption context")?;
        let context_count = check_context(context_bytes)?;
        let context = context_start..r.position();

        let key_count = usize::from(r.u16("wrapped key count")?);
        if key_count == 0 {
            return Err(FormatError::NoEncryptedDataKeys);
        }
        if key_count > options.max_wrapped_keys {
            return Err(FormatError::TooManyEncryptedDataKeys { count: key_count, max: options.max_wrapped_keys });
        }
        let keys_start = r.position();
        for _ in 0..key_count {
            read_wrapped_key(&mut r)?;
        }
        let keys = keys_start..r.position();

        let content_type = match r.u8("content type")? {
            1 => ContentType::NonFramed,
            2 => ContentType::Framed,
            other => return Err(FormatError::UnknownBodyForm(other)),
        };
        if version == 1 {
            if r.take(4, "reserved field")? != [0; 4] {
                return Err(FormatError::Invalid("reserved field (must be zero)"));
            }
            if usize::from(r.u8("IV length")?) != IV_LEN {
                return Err(FormatError::Invalid("IV length (must be 12)"));
            }
        }
        let frame_len = r.u32("frame length")?;
        match content_type {
            ContentType::NonFramed if frame_len != 0 => return Err(FormatError::BadFrameLength(frame_len)),
            ContentType::Framed if frame_len == 0 => return Err(FormatError::BadFrameLength(0)),
            _ => {}
        }
        let mut commitment = [0u8; COMMIT_LEN];
        if version == 2 {
            commitment = r.array("commitment key")?;
        }
        let body_end = r.position();
        let iv = if version == 1 { r.array("header IV")? } else { [0; IV_LEN] };
        let tag = r.array("header tag")?;
        let info = Self {
            suite,
            message_id,
            context,
            context_count,
            keys,
            key_count,
            content_type,
            frame_len,
            commitment,
            body_end,
            iv,
            tag,
            len: r.position(),
        };
        info.check_public_key(buf)?;
        Ok(info)
    }

    /// A signed suite needs its verification key in the context; an
    /// unsigned one must not have one (spec `framework/default-cmm.md`).
    fn check_public_key(&self, buf: &[u8]) -> Result<(), FormatError> {
        let present = self.context_pairs(buf).any(|(k, _)| k == PUBLIC_KEY_CONTEXT_KEY);
        match (self.suite.is_signed(), present) {
            (true, false) => {
                Err(FormatError::Invalid("encryption context: a signed suite without aws-crypto-public-key"))
            }
            (false, true) => {
                Err(FormatError::Invalid("encryption context: aws-crypto-public-key in an unsigned suite"))
            }
            _ => Ok(()),
        }
    }

    /// The context's pairs; `buf` is the header this was parsed from.
    pub(crate) fn context_pairs<'a>(&self, buf: &'a [u8]) -> ContextPairs<'a> {
        let bytes = buf.get(self.context.clone()).unwrap_or_default();
        let mut reader = Reader::new(bytes);
        // Skips the pair count, checked at parse time.
        let _ = reader.u16("encryption context count");
        ContextPairs { reader, left: self.context_count }
    }

    /// The wrapped keys; `buf` is the header this was parsed from.
    pub(crate) fn wrapped_keys<'a>(&self, buf: &'a [u8]) -> WrappedKeys<'a> {
        WrappedKeys { reader: Reader::new(buf.get(self.keys.clone()).unwrap_or_default()), left: self.key_count }
    }

    /// Writes the header again from its parts: the fuzz target checks this
    /// reproduces the parsed bytes, and it is the layout the writer uses.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn encode(&self, buf: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
        let context: Vec<(&str, &str)> = self.context_pairs(buf).collect();
        let keys: Vec<WrappedKeyRef<'_>> = self.wrapped_keys(buf).collect();
        let start = out.len();
        encode_body(
            self.suite,
            self.message_id(),
            &context,
            &keys,
            self.content_type,
            self.frame_len,
            self.commitment(),
            out,
        )?;
        if out.len().checked_sub(start) != Some(self.body_end) {
            return Err(FormatError::Invalid("header (re-encoding differs in length)"));
        }
        if self.version() == 1 {
            out.extend_from_slice(&self.iv);
        }
        out.extend_from_slice(&self.tag);
        Ok(())
    }
}

/// Appends a header body (everything the header tag covers).
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_body(
    suite: Suite,
    message_id: &[u8],
    context: &[(&str, &str)],
    keys: &[WrappedKeyRef<'_>],
    content_type: ContentType,
    frame_len: u32,
    commitment: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let version = suite.message_version();
    out.push(version);
    if version == 1 {
        out.push(TYPE_CUSTOMER_AED);
    }
    out.extend_from_slice(&suite.id().to_be_bytes());
    out.extend_from_slice(message_id);
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    serialize_context(context.iter().copied(), out)?;
    let aad_len = out.len().checked_sub(len_at + 2).ok_or(FormatError::Invalid("encryption context"))?;
    let aad_len = u16::try_from(aad_len).map_err(|_| FormatError::TooLong {
        field: "encryption context",
        len: aad_len,
        max: U16_MAX,
    })?;
    out[len_at..len_at + 2].copy_from_slice(&aad_len.to_be_bytes());
    let count = u16::try_from(keys.len())
        .map_err(|_| FormatError::TooManyEncryptedDataKeys { count: keys.len(), max: U16_MAX })?;
    if count == 0 {
        return Err(FormatError::NoEncryptedDataKeys);
    }
    out.extend_from_slice(&count.to_be_bytes());
    for key in keys {
        put16(out, key.provider_id().as_bytes(), "provider id")?;
        put16(out, key.provider_info(), "provider info")?;
        put16(out, key.ciphertext(), "wrapped key")?;
    }
    out.push(match content_type {
        ContentType::NonFramed => 1,
        ContentType::Framed => 2,
    });
    if version == 1 {
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.push(12);
    }
    out.extend_from_slice(&frame_len.to_be_bytes());
    out.extend_from_slice(commitment);
    Ok(())
}

/// The SDK's context serialization (spec `framework/structures.md`,
/// "Serialization"): nothing for an empty context, else a count and the
/// pairs, which the caller gives sorted and without repeats. This is also
/// the raw AES keyring's associated data.
pub(crate) fn serialize_context<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    if pairs.len() == 0 {
        return Ok(());
    }
    let count = u16::try_from(pairs.len()).map_err(|_| FormatError::TooLong {
        field: "encryption context",
        len: pairs.len(),
        max: U16_MAX,
    })?;
    out.extend_from_slice(&count.to_be_bytes());
    for (k, v) in pairs {
        put16(out, k.as_bytes(), "encryption context key")?;
        put16(out, v.as_bytes(), "encryption context value")?;
    }
    Ok(())
}

fn put16(out: &mut Vec<u8>, bytes: &[u8], field: &'static str) -> Result<(), FormatError> {
    let len = u16::try_from(bytes.len()).map_err(|_| FormatError::TooLong { field, len: bytes.len(), max: U16_MAX })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Checks a serialized context: UTF-8, keys sorted by their bytes and
/// unique (the spec's MUSTs; every SDK writes them so, and the raw AES
/// keyring's AAD is this serialization, so a reader that re-sorted would
/// authenticate other bytes than the writer did). Returns the pair count.
fn check_context(bytes: &[u8]) -> Result<usize, FormatError> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let mut r = Reader::new(bytes);
    let count = usize::from(r.u16("encryption context count")?);
    if count == 0 {
        return Err(FormatError::Invalid("encryption context (a length but no pairs)"));
    }
    let mut previous: Option<&[u8]> = None;
    for _ in 0..count {
        let k = r.vec16("encryption context key", U16_MAX)?;
        let v = r.vec16("encryption context value", U16_MAX)?;
        if previous.is_some_and(|p| p >= k) {
            return Err(FormatError::ContextNotCanonical);
        }
        previous = Some(k);
        std::str::from_utf8(k).map_err(|_| FormatError::NotUtf8("encryption context key"))?;
        std::str::from_utf8(v).map_err(|_| FormatError::NotUtf8("encryption context value"))?;
    }
    if r.position() != bytes.len() {
        return Err(FormatError::Invalid("encryption context length (pairs end before it)"));
    }
    Ok(count)
}

fn read_wrapped_key<'a>(r: &mut Reader<'a>) -> Result<WrappedKeyRef<'a>, FormatError> {
    let provider = r.vec16("provider id", U16_MAX)?;
    let info = r.vec16("provider info", U16_MAX)?;
    let ciphertext = r.vec16("wrapped key", U16_MAX)?;
    let provider = std::str::from_utf8(provider).map_err(|_| FormatError::NotUtf8("provider id"))?;
    Ok(WrappedKeyRef::new(provider, info, ciphertext))
}

/// The encryption context of a parsed header: `(key, value)` pairs in the
/// order of the message, which is sorted by key.
#[derive(Debug, Clone)]
pub struct ContextPairs<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for ContextPairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        // Checked when the header was parsed: these reads cannot fail.
        let k = self.reader.vec16("encryption context key", U16_MAX).ok()?;
        let v = self.reader.vec16("encryption context value", U16_MAX).ok()?;
        Some((std::str::from_utf8(k).ok()?, std::str::from_utf8(v).ok()?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for ContextPairs<'_> {}

/// The wrapped keys of a parsed header, in message order.
#[derive(Debug, Clone)]
pub struct WrappedKeys<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for WrappedKeys<'a> {
    type Item = WrappedKeyRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        // Checked when the header was parsed: this read cannot fail.
        read_wrapped_key(&mut self.reader).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for WrappedKeys<'_> {}

/// A parsed message header, borrowed from the message or the stream that
/// held it. Nothing in it is authenticated until a decryption succeeds:
/// use it to find the data key, not to make decisions.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    bytes: &'a [u8],
    info: &'a HeaderInfo,
}

impl<'a> Header<'a> {
    pub(crate) fn new(bytes: &'a [u8], info: &'a HeaderInfo) -> Self {
        Self { bytes, info }
    }

    /// The message format version, 1 or 2.
    pub fn version(&self) -> u8 {
        self.info.version()
    }

    /// The algorithm suite.
    pub fn suite(&self) -> Suite {
        self.info.suite
    }

    /// The message id: 16 bytes in version 1, 32 in version 2.
    pub fn message_id(&self) -> &'a [u8] {
        // A copy inside `info`, which lives as long as `'a`.
        &self.info.message_id[..self.info.suite.message_id_len()]
    }

    /// The encryption context, pairs sorted by key. It is an ordered list
    /// of pairs rather than the crate's
    /// [`EncryptionContext`](crate::EncryptionContext), whose limits (64
    /// pairs of at most 1 KiB) are rekey's own: an SDK message may hold more.
    pub fn encryption_context(&self) -> ContextPairs<'a> {
        self.info.context_pairs(self.bytes)
    }

    /// The value of one context key.
    pub fn context_value(&self, key: &str) -> Option<&'a str> {
        self.encryption_context().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The context exactly as serialized in the header: what the raw AES
    /// keyring authenticates and what KMS receives as its context.
    pub fn serialized_context(&self) -> &'a [u8] {
        self.bytes.get(self.info.context.clone()).unwrap_or_default()
    }

    /// The wrapped data keys, in message order.
    pub fn wrapped_keys(&self) -> WrappedKeys<'a> {
        self.info.wrapped_keys(self.bytes)
    }

    /// Non-framed or framed.
    pub fn content_type(&self) -> ContentType {
        self.info.content_type
    }

    /// The frame length; 0 for a non-framed message.
    pub fn frame_length(&self) -> u32 {
        self.info.frame_len
    }

    /// The header's length in bytes, authentication included.
    pub fn len(&self) -> usize {
        self.info.len
    }

    /// Always false: a header has at least its fixed fields.
    pub fn is_empty(&self) -> bool {
        self.info.len == 0
    }
}

//! Writing version-2 messages on the committing suites, framed (spec
//! `client-apis/encrypt.md`): 0x0478, and 0x0578 with a fresh P-384 signing
//! key per message. Message ids come from the crate's random source and
//! nonces from the frame sequence numbers, so nothing here lets a caller
//! choose either.

use std::io::{Read, Write};

use crate::context::EncryptionContext;
use crate::error::{Error, FormatError};
use crate::plaintext::Plaintext;

use super::body::{BodyAad, FINAL_FRAME_MARKER, Piece, frame_iv, next_seq};
use super::header::{ContentType, PUBLIC_KEY_CONTEXT_KEY, encode_body};
use super::keys::{PlaintextDataKey, WrappedKey, WrappedKeyRef};
use super::options::DEFAULT_MAX_BUFFER_LEN;
use super::sign::Signer;
use super::suite::{Cipher, IV_LEN, Suite};

/// The frame length the SDKs default to, and [`Encryptor::new`]'s.
pub const DEFAULT_FRAME_LEN: u32 = 4096;
/// The context key prefix the SDKs reserve for themselves.
const RESERVED_PREFIX: &str = "aws-crypto-";

/// Writes one framed version-2 message.
///
/// Two steps, because a signed suite's context includes the message's own
/// public key, and the keyring must bind the data key to that context (the
/// raw AES keyring authenticates it, KMS takes it as its context):
///
/// ```no_run
/// # fn demo(wrapping_key: &[u8]) -> Result<(), envelope_core::Error> {
/// use envelope_core::EncryptionContext;
/// use envelope_core::esdk::{Encryptor, PlaintextDataKey, RawAesKeyring, Suite};
/// let suite = Suite::Aes256GcmHkdfSha512CommitEcdsaP384;
/// let context = EncryptionContext::from_pairs([("tenant", "acme")])?;
/// let encryptor = Encryptor::new(suite, &context)?;
/// let data_key = PlaintextDataKey::generate(suite)?;
/// let keyring = RawAesKeyring::new("my-namespace", "my-key", wrapping_key)?;
/// let wrapped = keyring.wrap(&data_key, encryptor.encryption_context())?;
/// let message = encryptor.encrypt(&data_key, &[wrapped], b"hello")?;
/// # Ok(()) }
/// ```
pub struct Encryptor {
    suite: Suite,
    context: EncryptionContext,
    frame_len: u32,
    signer: Option<Signer>,
}

impl Encryptor {
    /// An encryptor for `suite` (0x0478 or 0x0578) with frames of
    /// [`DEFAULT_FRAME_LEN`]. For 0x0578 it generates the message's signing
    /// key and adds its public key to the context.
    ///
    /// # Errors
    /// [`Error::Format`] for another suite; [`Error::Context`] when the
    /// context uses the reserved `aws-crypto-` prefix or is full;
    /// [`Error::FeatureRequired`] for 0x0578 without the `aws-lc` feature.
    pub fn new(suite: Suite, context: &EncryptionContext) -> Result<Self, Error> {
        if !suite.is_committing() {
            return Err(FormatError::Invalid("suite for writing (only 0x0478 and 0x0578 are written)").into());
        }
        if context.iter().any(|(k, _)| k.starts_with(RESERVED_PREFIX)) {
            return Err(Error::Context("keys starting with aws-crypto- are reserved by the AWS Encryption SDK"));
        }
        let mut context = context.clone();
        let signer = if suite.is_signed() {
            let signer = Signer::generate()?;
            context.insert(PUBLIC_KEY_CONTEXT_KEY, signer.public_key_base64()?)?;
            Some(signer)
        } else {
            None
        };
        Ok(Self { suite, context, frame_len: DEFAULT_FRAME_LEN, signer })
    }

    /// Sets the frame length: 1 byte to 64 MiB (what this crate's stream
    /// reader holds by default). The Python SDK writes only multiples of
    /// 128 but reads any.
    ///
    /// # Errors
    /// [`FormatError::BadFrameLength`] outside that range.
    pub fn with_frame_len(mut self, frame_len: u32) -> Result<Self, Error> {
        if frame_len == 0 || frame_len > DEFAULT_MAX_BUFFER_LEN {
            return Err(FormatError::BadFrameLength(frame_len).into());
        }
        self.frame_len = frame_len;
        Ok(self)
    }

    /// The context the message will carry, with the public key for a
    /// signed suite: wrap the data key under exactly this.
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.context
    }

    /// Encrypts `plaintext` into a message in memory.
    ///
    /// # Errors
    /// [`Error::Format`] for a data key of the wrong length, no wrapped
    /// key, or fields too long for the format.
    pub fn encrypt(
        self,
        data_key: &PlaintextDataKey,
        wrapped_keys: &[WrappedKey],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        let mut frames = self.begin(data_key, wrapped_keys, &mut out)?;
        // Full frames are regular; the final frame holds the rest, possibly
        // nothing (see `Frames`).
        // Room for every frame (40 bytes of fields and tag each) and the
        // footer, so the output is never copied while it grows.
        let frame_count = plaintext.len() / frames.frame_len + 1;
        out.reserve(plaintext.len().saturating_add(frame_count.saturating_mul(40)).saturating_add(256));
        let regular = plaintext.len() - plaintext.len() % frames.frame_len;
        for chunk in plaintext[..regular].chunks_exact(frames.frame_len) {
            frames.frame(chunk, false, &mut out)?;
        }
        frames.frame(&plaintext[regular..], true, &mut out)?;
        frames.end(&mut out)?;
        Ok(out)
    }

    /// Encrypts all of `input` to `output`, one frame at a time. Returns
    /// the bytes written.
    ///
    /// # Errors
    /// As [`Encryptor::encrypt`], and [`Error::Io`].
    pub fn encrypt_stream(
        self,
        data_key: &PlaintextDataKey,
        wrapped_keys: &[WrappedKey],
        mut input: impl Read,
        mut output: impl Write,
    ) -> Result<u64, Error> {
        let mut out = Vec::new();
        let mut frames = self.begin(data_key, wrapped_keys, &mut out)?;
        let mut written = 0u64;
        let mut flush = |out: &mut Vec<u8>| -> Result<(), Error> {
            output.write_all(out)?;
            // usize to u64 never truncates on the platforms Rust supports.
            written = written.checked_add(out.len() as u64).ok_or(FormatError::BadFrame)?;
            out.clear();
            Ok(())
        };
        flush(&mut out)?;
        let mut current = Plaintext::zeroed(frames.frame_len);
        loop {
            let len = fill(&mut input, &mut current)?;
            if len < frames.frame_len {
                frames.frame(&current[..len], true, &mut out)?;
                break;
            }
            frames.frame(&current, false, &mut out)?;
            flush(&mut out)?;
        }
        frames.end(&mut out)?;
        flush(&mut out)?;
        output.flush()?;
        Ok(written)
    }

    /// Writes the header into `out` and returns the frame writer.
    fn begin(
        self,
        data_key: &PlaintextDataKey,
        wrapped_keys: &[WrappedKey],
        out: &mut Vec<u8>,
    ) -> Result<Frames, Error> {
        let message_id = crate::random::message_id()?;
        let (cipher, commitment) = self.suite.derive_for_writing(data_key, &message_id)?;
        let context: Vec<(&str, &str)> = self.context.iter().collect();
        let keys: Vec<WrappedKeyRef<'_>> = wrapped_keys.iter().map(WrappedKey::as_ref).collect();
        let start = out.len();
        encode_body(self.suite, &message_id, &context, &keys, ContentType::Framed, self.frame_len, &commitment, out)?;
        // The header tag: AES-GCM over the header body with the all-zero IV
        // (version 2 stores no IV).
        let tag = cipher.seal_to(&[0; IV_LEN], &out[start..], &[], &mut [])?;
        out.extend_from_slice(&tag);
        let mut signer = self.signer;
        if let Some(s) = signer.as_mut() {
            s.update(&out[start..]);
        }
        let frame_len = usize::try_from(self.frame_len).map_err(|_| FormatError::BadFrameLength(self.frame_len))?;
        Ok(Frames { cipher, message_id, frame_len, seq: 1, signer })
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, Error> {
    let mut at = 0;
    while at < buf.len() {
        match input.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(at)
}

/// The body writer: frame sequence numbers (and so nonces) in order.
///
/// Every full frame is a regular frame, and the final frame holds what is
/// left, which is nothing when the plaintext is a whole number of frames.
/// The spec prefers a full final frame there (`message-body.md`, "Final
/// Frame": SHOULD, but MAY be 0), but the Python SDK 3.3 refuses a final
/// frame as long as the frame length, and writes an empty one itself; this
/// reader accepts both.
struct Frames {
    cipher: Cipher,
    message_id: [u8; 32],
    frame_len: usize,
    seq: u32,
    signer: Option<Signer>,
}

impl Frames {
    /// Appends one frame of `plaintext` (the frame length, or at most that
    /// when `last`) to `out`.
    fn frame(&mut self, plaintext: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        let piece = if last { Piece::Final } else { Piece::Regular };
        if last {
            out.extend_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
        }
        out.extend_from_slice(&self.seq.to_be_bytes());
        let iv = frame_iv(self.seq);
        out.extend_from_slice(&iv);
        let len = u32::try_from(plaintext.len()).map_err(|_| FormatError::BadFrame)?;
        if last {
            out.extend_from_slice(&len.to_be_bytes());
        }
        let aad = BodyAad::new(&self.message_id, piece, self.seq, u64::from(len));
        let body = out.len();
        out.resize(body + plaintext.len(), 0);
        let tag = self.cipher.seal_to(&iv, aad.as_bytes(), plaintext, &mut out[body..])?;
        out.extend_from_slice(&tag);
        if let Some(s) = self.signer.as_mut() {
            s.update(&out[start..]);
        }
        if !last {
            self.seq = next_seq(self.seq)?;
        }
        Ok(())
    }

    /// Appends the footer (signed suite) to `out`.
    fn end(self, out: &mut Vec<u8>) -> Result<(), Error> {
        if let Some(signer) = self.signer {
            let signature = signer.sign()?;
            let len = u16::try_from(signature.len()).map_err(|_| FormatError::Invalid("signature length"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&signature);
        }
        Ok(())
    }
}

//! Whole envelopes in memory: seal and open records, and the parsed form the
//! rotation engine works on (re-wrap the keys, or open and seal again).

use std::sync::OnceLock;

use zeroize::{Zeroize, Zeroizing};

use crate::aead::TAG_LEN;
use crate::context::EncryptionContext;
use crate::error::{Error, FormatError};
use crate::header::{BodyForm, Header, HeaderView, ParseOptions, begin_message, encode_edks};
use crate::key::{DataKey, EncryptedDataKey};
use crate::keyring::Materials;
use crate::suite::{MESSAGE_ID_LEN, MessageKeys};

/// Encrypts a record as a single-shot envelope.
///
/// # Errors
/// [`Error::Format`] when the materials have no or too many encrypted data
/// keys; [`Error::Io`] when the system random source fails.
pub fn seal(materials: &Materials, context: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    seal_into(materials, context, plaintext, &mut out)?;
    Ok(out)
}

/// [`seal`] into a buffer the caller keeps: `out`'s contents are replaced
/// by the envelope, and its allocation is reused when it is large enough.
///
/// For large records sealed one after another this is the fast way: a
/// fresh allocation of many megabytes must be zeroed (by the kernel, page
/// by page) before the cipher writes into it, which costs about as much as
/// the encryption itself.
///
/// # Errors
/// As [`seal`]; `out` is then empty.
pub fn seal_into(
    materials: &Materials,
    context: &EncryptionContext,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    seal_with_message_id(materials, context, plaintext, crate::random::message_id()?, out).inspect_err(|_| out.clear())
}

/// [`seal_into`] with a chosen message id: for known-answer tests only
/// (through the `internals` feature). Reusing a message id with the same
/// data key reuses nonces (MUST 3.3).
pub(crate) fn seal_with_message_id(
    materials: &Materials,
    context: &EncryptionContext,
    plaintext: &[u8],
    message_id: [u8; MESSAGE_ID_LEN],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let header = |out: &mut Vec<u8>| {
        begin_message(
            &materials.data_key,
            &materials.encrypted_data_keys,
            context,
            BodyForm::SingleShot,
            message_id,
            out,
        )
    };
    let in_place = plaintext.len() < LARGE;
    let (keys, core_len, body_start) = if in_place {
        // The header, then the plaintext, encrypted in place: one buffer, no zeroing.
        out.clear();
        out.reserve(HEADER_CAPACITY + plaintext.len() + TAG_LEN);
        let (keys, core_len) = header(out)?;
        let body_start = out.len();
        out.extend_from_slice(plaintext);
        out.extend_from_slice(&[0; TAG_LEN]);
        (keys, core_len, body_start)
    } else {
        // Encrypted from the caller's buffer into `out` in one pass, over
        // whatever `out` held: it is zeroed only where it has to grow.
        let mut head = Vec::with_capacity(HEADER_CAPACITY);
        let (keys, core_len) = header(&mut head)?;
        let total = head.len() + plaintext.len() + TAG_LEN;
        if out.capacity() < total {
            // A fresh zeroed allocation usually comes as untouched zero pages.
            *out = vec![0; total];
        } else {
            out.resize(total, 0);
        }
        out[..head.len()].copy_from_slice(&head);
        (keys, core_len, head.len())
    };
    let (head, rest) = out.split_at_mut(body_start);
    let (body, tag_slot) = rest.split_at_mut(plaintext.len());
    let tag = crate::suite::with_single_shot_aad(&head[..core_len], |nonce, aad| {
        if in_place {
            keys.cipher().seal_in_place(nonce, aad, body)
        } else {
            keys.cipher().seal_to(nonce, aad, plaintext, body)
        }
    })?;
    tag_slot.copy_from_slice(&tag);
    Ok(())
}

/// Room for a typical header (a few EDKs and context pairs) before the body.
const HEADER_CAPACITY: usize = 512;
/// From this size on, a body is sealed or opened between two buffers in one
/// pass rather than copied and processed in place.
const LARGE: usize = 64 << 10;

/// A parsed envelope borrowing its input: the header, the exact bytes of the
/// header core, and the body, untouched.
///
/// Parsing checks the whole header but copies nothing out: opening needs
/// only its fixed-size fields, and the owned [`Header`] (context, key list)
/// is built the first time [`Envelope::header`] asks for it.
#[derive(Clone)]
pub struct Envelope<'a> {
    view: HeaderView<'a>,
    header: OnceLock<Header>,
    core: &'a [u8],
    body: &'a [u8],
}

impl std::fmt::Debug for Envelope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope").field("header", self.header()).field("body_len", &self.body.len()).finish()
    }
}

impl<'a> Envelope<'a> {
    /// Parses a whole envelope, single-shot or framed. The body's frame
    /// structure is checked when it is opened, not here.
    ///
    /// # Errors
    /// A [`FormatError`] saying what is wrong with the header.
    pub fn parse(input: &'a [u8], options: &ParseOptions) -> Result<Self, FormatError> {
        let view = HeaderView::parse(input, options)?;
        let body = &input[view.len..];
        if view.body_form == BodyForm::SingleShot && body.len() < TAG_LEN {
            return Err(FormatError::Truncated("body")); // MUST 6.1
        }
        Ok(Self { view, header: OnceLock::new(), core: &input[..view.core_len], body })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        self.header.get_or_init(|| self.view.to_header())
    }

    /// The body's length in bytes.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Checks that `data_key` is the one this envelope was made with, by its
    /// commitment alone: no body is decrypted (MUST 5.2).
    ///
    /// # Errors
    /// [`Error::Authentication`] when it is not.
    pub fn verify_data_key(&self, data_key: &DataKey) -> Result<(), Error> {
        crate::suite::check_commitment_only(self.view.suite, data_key, &self.view.message_id, &self.view.commitment)
    }

    /// Decrypts the body with `data_key`, checking the commitment first.
    /// The plaintext is zeroized when dropped.
    ///
    /// # Errors
    /// [`Error::Authentication`] for a wrong key or any tampering;
    /// [`Error::Format`] for a framed body whose frames are malformed.
    ///
    /// [`Envelope::open_plaintext`] does the same and returns a [`Plaintext`],
    /// which is wiped many times faster when dropped: `zeroize` clears a
    /// `Vec<u8>`'s contents one volatile byte at a time.
    pub fn open(&self, data_key: &DataKey) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.open_plaintext(data_key).map(Plaintext::into_zeroizing)
    }

    /// Decrypts the body with `data_key`, checking the commitment first.
    ///
    /// # Errors
    /// [`Error::Authentication`] for a wrong key or any tampering;
    /// [`Error::Format`] for a framed body whose frames are malformed.
    pub fn open_plaintext(&self, data_key: &DataKey) -> Result<Plaintext, Error> {
        let mut plaintext = Plaintext::new();
        self.open_into(data_key, &mut plaintext)?;
        Ok(plaintext)
    }

    /// [`Envelope::open_plaintext`] into a buffer the caller keeps: `out`'s
    /// contents are replaced by the plaintext, and its allocation is reused
    /// when it is large enough (see [`seal_into`] for why that matters for
    /// large records). The old contents are wiped before any reallocation.
    ///
    /// # Errors
    /// As [`Envelope::open_plaintext`]; `out` is then empty, its old
    /// contents wiped.
    pub fn open_into(&self, data_key: &DataKey, out: &mut Plaintext) -> Result<(), Error> {
        self.open_into_unwiped(data_key, out).inspect_err(|_| out.clear())
    }

    fn open_into_unwiped(&self, data_key: &DataKey, out: &mut Plaintext) -> Result<(), Error> {
        let keys = MessageKeys::derive(self.view.suite, data_key, &self.view.message_id);
        keys.check_commitment(&self.view.commitment)?;
        match self.view.body_form {
            BodyForm::SingleShot => {
                let (ciphertext, tag) = self.body.split_at(self.body.len() - TAG_LEN);
                // Decrypted straight from the input: one pass, and no second
                // copy of the ciphertext.
                out.set_len_zeroed(ciphertext.len());
                crate::suite::with_single_shot_aad(self.core, |nonce, aad| {
                    keys.cipher().open_to(nonce, aad, ciphertext, &tag_array(tag), out)
                })
            }
            BodyForm::Framed { frame_len } => {
                let cipher = keys.frame_cipher(self.core);
                *out = crate::stream::open_frames(&cipher, frame_len, self.body)?;
                Ok(())
            }
        }
    }

    /// The same envelope with another list of encrypted data keys: header
    /// core and body byte for byte as they were. This is how a re-wrap is
    /// written; the caller is responsible for the new keys wrapping the same
    /// data key ([`Envelope::verify_data_key`] checks that).
    ///
    /// # Errors
    /// [`FormatError`] when the list is empty or longer than 255.
    pub fn with_encrypted_data_keys(&self, edks: &[EncryptedDataKey]) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::with_capacity(self.core.len() + 256 + self.body.len());
        out.extend_from_slice(self.core);
        encode_edks(edks, &mut out)?;
        out.extend_from_slice(self.body);
        Ok(out)
    }
}

/// A decrypted message, wiped from memory when dropped, in one bulk pass
/// (a memset the compiler may not remove). It has no `Clone`, and its
/// `Debug` shows only its length.
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// An empty buffer, for [`Envelope::open_into`] to fill.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// `len` zero bytes: a fresh allocation, so nothing of an earlier one is copied.
    pub(crate) fn zeroed(len: usize) -> Self {
        Self(vec![0; len])
    }

    /// An empty buffer with room for `capacity` bytes, which must not be
    /// exceeded: growing would leave a copy behind in freed memory.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    pub(crate) fn vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Makes the contents `len` bytes long, keeping the allocation when it
    /// is large enough: bytes already there stay until overwritten, new
    /// ones are zero. A buffer too small is wiped and replaced, never grown
    /// (growing would leave a copy behind in freed memory).
    pub(crate) fn set_len_zeroed(&mut self, len: usize) {
        if self.0.capacity() < len {
            *self = Self::zeroed(len);
        } else {
            self.0.resize(len, 0);
        }
    }

    /// Wipes the contents and empties the buffer, keeping its allocation.
    pub(crate) fn clear(&mut self) {
        wipe(&mut self.0);
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The same bytes as a [`Zeroizing`] vector, without a copy.
    pub fn into_zeroizing(mut self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(std::mem::take(&mut self.0))
    }
}

impl std::ops::Deref for Plaintext {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Plaintext {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Default for Plaintext {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Zeroes all of `buf`'s allocation, contents and spare capacity, with
/// `zeroize`'s bulk fill for byte slices, then empties it.
pub(crate) fn wipe(buf: &mut Vec<u8>) {
    buf.as_mut_slice().zeroize();
    buf.spare_capacity_mut().zeroize();
    buf.clear();
}

pub(crate) fn tag_array(tag: &[u8]) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag);
    out
}

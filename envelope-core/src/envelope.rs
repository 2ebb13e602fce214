//! Whole envelopes in memory: seal and open records, and the parsed form the
//! rotation engine works on (re-wrap the keys, or open and seal again).

use zeroize::Zeroizing;

use crate::aead::TAG_LEN;
use crate::context::EncryptionContext;
use crate::error::{Error, FormatError};
use crate::header::{BodyForm, Header, ParseOptions, encode_edks};
use crate::key::{DataKey, EncryptedDataKey};
use crate::keyring::Materials;
use crate::suite::{MESSAGE_ID_LEN, MessageKeys, Suite};

/// Encrypts a record as a single-shot envelope.
///
/// # Errors
/// [`Error::Format`] when the materials have no or too many encrypted data
/// keys; [`Error::Io`] when the system random source fails.
pub fn seal(materials: &Materials, context: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut message_id = [0u8; MESSAGE_ID_LEN];
    crate::random::fill(&mut message_id)?;
    seal_with_message_id(materials, context, plaintext, message_id)
}

/// [`seal`] with a chosen message id: for known-answer tests only. Reusing a
/// message id with the same data key reuses nonces (MUST 3.3).
#[doc(hidden)]
pub fn seal_with_message_id(
    materials: &Materials,
    context: &EncryptionContext,
    plaintext: &[u8],
    message_id: [u8; MESSAGE_ID_LEN],
) -> Result<Vec<u8>, Error> {
    let suite = Suite::Aes256GcmHkdfSha256Committing;
    let keys = MessageKeys::derive(suite, &materials.data_key, &message_id);
    let header = Header {
        suite,
        body_form: BodyForm::SingleShot,
        message_id,
        context: context.clone(),
        commitment: keys.commitment(),
        encrypted_data_keys: materials.encrypted_data_keys.clone(),
    };
    let mut out = Vec::with_capacity(256 + plaintext.len());
    header.encode_core(&mut out);
    let mut cipher = keys.frame_cipher(&out);
    encode_edks(&header.encrypted_data_keys, &mut out)?;
    let body_start = out.len();
    out.extend_from_slice(plaintext);
    let tag = cipher.seal(0, true, &mut out[body_start..])?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// A parsed envelope borrowing its input: the header, the exact bytes of the
/// header core, and the body, untouched.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    header: Header,
    core: &'a [u8],
    body: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Parses a whole envelope, single-shot or framed. The body's frame
    /// structure is checked when it is opened, not here.
    ///
    /// # Errors
    /// A [`FormatError`] saying what is wrong with the header.
    pub fn parse(input: &'a [u8], options: &ParseOptions) -> Result<Self, FormatError> {
        let (header, core_len, header_len) = Header::parse_prefix(input, options)?;
        let body = &input[header_len..];
        if header.body_form == BodyForm::SingleShot && body.len() < TAG_LEN {
            return Err(FormatError::Truncated("body")); // MUST 6.1
        }
        Ok(Self { header, core: &input[..core_len], body })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
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
        MessageKeys::derive(self.header.suite, data_key, &self.header.message_id)
            .check_commitment(&self.header.commitment)
    }

    /// Decrypts the body with `data_key`, checking the commitment first.
    /// The plaintext is zeroized when dropped.
    ///
    /// # Errors
    /// [`Error::Authentication`] for a wrong key or any tampering;
    /// [`Error::Format`] for a framed body whose frames are malformed.
    pub fn open(&self, data_key: &DataKey) -> Result<Zeroizing<Vec<u8>>, Error> {
        let keys = MessageKeys::derive(self.header.suite, data_key, &self.header.message_id);
        keys.check_commitment(&self.header.commitment)?;
        let mut cipher = keys.frame_cipher(self.core);
        match self.header.body_form {
            BodyForm::SingleShot => {
                let (ciphertext, tag) = self.body.split_at(self.body.len() - TAG_LEN);
                let mut plaintext = Zeroizing::new(ciphertext.to_vec());
                cipher.open(0, true, &mut plaintext, &tag_array(tag))?;
                Ok(plaintext)
            }
            BodyForm::Framed { frame_len } => {
                let mut plaintext = Zeroizing::new(Vec::new());
                crate::stream::open_frames(&mut cipher, frame_len, self.body, &mut plaintext)?;
                Ok(plaintext)
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

pub(crate) fn tag_array(tag: &[u8]) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag);
    out
}

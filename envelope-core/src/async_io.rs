//! Framed envelopes over tokio's `AsyncRead` and `AsyncWrite` (feature
//! `tokio`): the same bytes as the blocking stream code (docs/format.md
//! §6.3), one frame at a time on the calling task.
//!
//! Only tokio's I/O traits are used, no runtime: they are what the AWS SDK,
//! `tokio::fs` and `tokio::net` implement, and tokio is already in the
//! workspace for the CLI, whereas `futures-io` would be a new dependency and
//! still need an adapter for tokio's types.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::aead::TAG_LEN;
use crate::aead::tag_array;
use crate::blocking::Mode;
use crate::context::EncryptionContext;
use crate::encryptor::{Encryptor, Expect};
use crate::error::{Error, FormatError};
use crate::header::{BodyForm, Header, begin_message};
use crate::keyring::Materials;
use crate::plaintext::Plaintext;
use crate::stream::MAX_STREAMED_SINGLE_SHOT;
use crate::suite::{MESSAGE_ID_LEN, MessageKeys};

const FINAL_FLAG: u32 = 1 << 31;

impl Encryptor {
    /// [`Encryptor::encrypt_stream_sync`] over tokio's I/O traits, with any
    /// keyring: encrypts everything `reader` yields into a framed envelope
    /// on `writer`, one frame in memory at a time. Returns the plaintext length.
    ///
    /// # Errors
    /// As [`Encryptor::encrypt`], and [`Error::Io`] when reading or writing
    /// fails; the output is then incomplete and must be discarded.
    pub async fn encrypt_stream<R, W>(&self, context: &EncryptionContext, reader: R, writer: W) -> Result<u64, Error>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let materials = self.materials(Mode::Async, context, None).await?;
        let message_id = crate::random::message_id()?;
        seal_frames(&materials, context, self.frame_len(), message_id, reader, writer).await
    }

    /// [`Encryptor::decrypt_stream_sync`] over tokio's I/O traits, with any
    /// keyring. Frames are written as they verify: if this fails part way,
    /// discard what was written.
    ///
    /// # Errors
    /// As [`Encryptor::decrypt`], and [`Error::Io`] when reading or writing fails.
    pub async fn decrypt_stream<R, W>(&self, mut reader: R, mut writer: W, expected: Expect<'_>) -> Result<u64, Error>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let (header, core, pending) = read_header(&mut reader, self).await?;
        let mut reader = (&pending[..]).chain(reader);
        expected.check(&header.context)?;
        let key = self.checked_data_key(Mode::Async, &header).await?;
        let keys = MessageKeys::derive(header.suite, &key, &header.message_id);
        keys.check_commitment(&header.commitment)?; // MUST 5.2
        let cipher = keys.frame_cipher(&core);
        let (gcm, aad) = cipher.parts();
        let mut aad = aad.clone();
        match header.body_form {
            BodyForm::SingleShot => {
                let mut sealed = Plaintext::zeroed(0);
                let limit = MAX_STREAMED_SINGLE_SHOT + TAG_LEN;
                (&mut reader).take(limit as u64 + 1).read_to_end(sealed.vec_mut()).await?;
                if sealed.len() > limit {
                    let (field, len, max) = ("single-shot body", sealed.len(), MAX_STREAMED_SINGLE_SHOT);
                    return Err(FormatError::TooLong { field, len, max }.into());
                }
                let plain_len = sealed.len().checked_sub(TAG_LEN).ok_or(FormatError::Truncated("body"))?;
                let (plaintext, tag) = sealed.split_at_mut(plain_len);
                aad.open(gcm, 0, true, plaintext, &tag_array(tag))?;
                writer.write_all(plaintext).await?;
                writer.flush().await?;
                Ok(plain_len as u64)
            }
            BodyForm::Framed { frame_len } => {
                let max = usize::try_from(frame_len).map_err(|_| FormatError::BadFrameLength(frame_len))?;
                let mut buf = Plaintext::zeroed(0);
                let (mut sequence, mut total) = (0u32, 0u64);
                loop {
                    let mut word = [0u8; 4];
                    read_exact(&mut reader, &mut word, "frame length").await?;
                    let word = u32::from_be_bytes(word);
                    let is_final = word & FINAL_FLAG != 0;
                    let len = usize::try_from(word & !FINAL_FLAG).map_err(|_| FormatError::BadFrame)?;
                    if len > max || (!is_final && len != max) {
                        return Err(FormatError::BadFrame.into()); // MUST 6.2
                    }
                    if buf.len() < len + TAG_LEN {
                        // Grown to what frames need, not to the declared frame length.
                        buf = Plaintext::zeroed(len + TAG_LEN);
                    }
                    let sealed = &mut buf[..len + TAG_LEN];
                    read_exact(&mut reader, sealed, "frame").await?;
                    let (plaintext, tag) = sealed.split_at_mut(len);
                    aad.open(gcm, sequence, is_final, plaintext, &tag_array(tag))?; // MUST 5.5
                    writer.write_all(plaintext).await?;
                    total += len as u64;
                    if is_final {
                        let mut extra = [0u8; 1];
                        if reader.read(&mut extra).await? != 0 {
                            return Err(FormatError::TrailingBytes.into()); // MUST 6.3
                        }
                        writer.flush().await?;
                        return Ok(total);
                    }
                    sequence = sequence.checked_add(1).ok_or(FormatError::BadFrame)?;
                }
            }
        }
    }
}

/// Writes a framed envelope of everything `reader` yields (MUST 6.2, 6.4).
pub(crate) async fn seal_frames<R, W>(
    materials: &Materials,
    context: &EncryptionContext,
    frame_len: u32,
    message_id: [u8; MESSAGE_ID_LEN],
    mut reader: R,
    mut writer: W,
) -> Result<u64, Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let body_form = BodyForm::framed(frame_len)?;
    let mut head = Vec::new();
    let (keys, core_len) =
        begin_message(&materials.data_key, &materials.encrypted_data_keys, context, body_form, message_id, &mut head)?;
    let cipher = keys.frame_cipher(&head[..core_len]);
    writer.write_all(&head).await?;

    let (gcm, aad) = cipher.parts();
    let mut aad = aad.clone();
    let frame = usize::try_from(frame_len).map_err(|_| FormatError::BadFrameLength(frame_len))?;
    // Per frame: its plaintext, then one byte more to learn whether it is the
    // last, which lands where the tag goes; the tag is written separately.
    let mut buf = Plaintext::zeroed(frame + 1);
    let mut filled = 0usize;
    let (mut sequence, mut total) = (0u32, 0u64);
    loop {
        while filled < frame + 1 {
            match reader.read(&mut buf[filled..]).await? {
                0 => break,
                n => filled += n,
            }
        }
        let is_final = filled <= frame;
        let len = filled.min(frame);
        let word = u32::try_from(len).map_err(|_| FormatError::BadFrame)? | if is_final { FINAL_FLAG } else { 0 };
        let tag = aad.seal(gcm, sequence, is_final, &mut buf[..len])?;
        writer.write_all(&word.to_be_bytes()).await?;
        writer.write_all(&buf[..len]).await?;
        writer.write_all(&tag).await?;
        total += len as u64;
        if is_final {
            writer.flush().await?;
            return Ok(total);
        }
        buf[0] = buf[frame];
        filled = 1;
        sequence = sequence.checked_add(1).ok_or(FormatError::Invalid("message length (more than 2^32 frames)"))?; // MUST 6.4
    }
}

/// Reads the header: returns it, the bytes of its core, and the body bytes
/// read past it, which the caller reads before the rest of `reader`.
async fn read_header<R: AsyncRead + Unpin>(
    reader: &mut R,
    encryptor: &Encryptor,
) -> Result<(Header, Vec<u8>, Vec<u8>), Error> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match Header::parse_prefix(&buf, encryptor.parse_options()) {
            Ok((header, core_len, header_len)) => {
                let pending = buf.split_off(header_len);
                buf.truncate(core_len);
                return Ok((header, buf, pending));
            }
            Err(FormatError::Truncated(field)) => match reader.read(&mut chunk).await? {
                0 if buf.is_empty() => return Err(FormatError::Invalid("input (it is empty)").into()),
                0 => return Err(FormatError::Truncated(field).into()),
                n => buf.extend_from_slice(&chunk[..n]),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

async fn read_exact<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8], field: &'static str) -> Result<(), Error> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FormatError::Truncated(field).into()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocking::block_on;
    use crate::stream::StreamOptions;
    use crate::{LocalKey, LocalKeyring};

    /// The async writer produces the blocking writer's bytes exactly.
    #[test]
    fn same_bytes_as_the_blocking_stream() {
        let keyring = LocalKeyring::new(LocalKey::generate("k").expect("key"));
        let context = EncryptionContext::from_pairs([("a", "b")]).expect("context");
        let (data_key, edk) = keyring.generate_sync(&context).expect("generate");
        let materials = Materials { data_key, encrypted_data_keys: vec![edk] };
        for len in [0usize, 1, 15, 16, 17, 32, 33, 1000] {
            let plaintext: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).expect("below 251")).collect();
            let mut blocking = Vec::new();
            crate::stream::encrypt_stream_with_options_and_message_id(
                &materials,
                &context,
                16,
                &StreamOptions::with_threads(1),
                &plaintext[..],
                &mut blocking,
                [7; 32],
            )
            .expect("blocking");
            let mut asynchronous = Vec::new();
            block_on(seal_frames(&materials, &context, 16, [7; 32], &plaintext[..], &mut asynchronous)).expect("async");
            assert_eq!(blocking, asynchronous, "length {len}");
        }
    }
}

//! Not an API. Raw AES-GCM and AES-CBC, caller-chosen message ids and the
//! header core's encoding, for this workspace's own tests, benches and fuzz
//! targets (the `internals` feature). A message id chosen twice under one
//! data key repeats nonces (MUST 3.3): applications use
//! [`Encryptor`](crate::Encryptor) or [`seal`](crate::hazmat::seal), which draw a
//! fresh one every time.

use std::io::{Read, Write};

use crate::context::EncryptionContext;
use crate::error::Error;
use crate::header::Header;
use crate::keyring::Materials;
use crate::stream::StreamOptions;
use crate::suite::MESSAGE_ID_LEN;

pub use crate::aead::{Cbc, Gcm};

/// [`seal`](crate::hazmat::seal) with a chosen message id: known-answer tests.
///
/// # Errors
/// As [`seal`](crate::hazmat::seal).
pub fn seal_with_message_id(
    materials: &Materials,
    context: &EncryptionContext,
    plaintext: &[u8],
    message_id: [u8; MESSAGE_ID_LEN],
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    crate::envelope::seal_with_message_id(materials, context, plaintext, message_id, &mut out)?;
    Ok(out)
}

/// [`encrypt_stream`](crate::encrypt_stream) with a chosen message id:
/// known-answer tests.
///
/// # Errors
/// As [`encrypt_stream`](crate::encrypt_stream).
pub fn encrypt_stream_with_message_id(
    materials: &Materials,
    context: &EncryptionContext,
    frame_len: u32,
    reader: impl Read,
    writer: impl Write,
    message_id: [u8; MESSAGE_ID_LEN],
) -> Result<u64, Error> {
    let options = StreamOptions::default();
    encrypt_stream_with_options_and_message_id(materials, context, frame_len, &options, reader, writer, message_id)
}

/// [`encrypt_stream_with`](crate::encrypt_stream_with) with a chosen
/// message id: tests that compare the bytes of several thread counts.
///
/// # Errors
/// As [`encrypt_stream_with`](crate::encrypt_stream_with).
pub fn encrypt_stream_with_options_and_message_id(
    materials: &Materials,
    context: &EncryptionContext,
    frame_len: u32,
    options: &StreamOptions,
    reader: impl Read,
    writer: impl Write,
    message_id: [u8; MESSAGE_ID_LEN],
) -> Result<u64, Error> {
    crate::stream::encrypt_stream_with_options_and_message_id(
        materials, context, frame_len, options, reader, writer, message_id,
    )
}

/// Appends a header's core, the bytes every frame authenticates (MUST 5.4).
pub fn encode_header_core(header: &Header, out: &mut Vec<u8>) {
    header.encode_core(out);
}

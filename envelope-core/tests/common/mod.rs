//! Shared helpers for envelope-core's integration tests.
#![allow(dead_code, unreachable_pub)]

use envelope_core::{EncryptionContext, LocalKey, LocalKeyring};

use envelope_core::hazmat::{Materials, ParseOptions, StreamDecryptor};

pub fn keyring(name: &str) -> LocalKeyring {
    LocalKeyring::new(LocalKey::generate(name).expect("valid name"))
}

pub fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    EncryptionContext::from_pairs(pairs.iter().copied()).expect("valid context")
}

pub fn materials(keyring: &LocalKeyring, context: &EncryptionContext) -> Materials {
    let (data_key, edk) = keyring.generate_sync(context).expect("generate");
    Materials { data_key, encrypted_data_keys: vec![edk] }
}

/// Encrypts `plaintext` framed into a vector.
pub fn framed(materials: &Materials, context: &EncryptionContext, frame_len: u32, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    envelope_core::hazmat::encrypt_stream(materials, context, frame_len, plaintext, &mut out).expect("encrypt");
    out
}

/// Decrypts any envelope through the streaming reader with `keyring`.
pub fn stream_open(keyring: &LocalKeyring, input: &[u8]) -> Result<Vec<u8>, envelope_core::Error> {
    let decryptor = StreamDecryptor::new(input, &ParseOptions::default())?;
    let header = decryptor.header().clone();
    let key = keyring.unwrap_sync(&header.encrypted_data_keys, &header.context)?;
    let mut out = Vec::new();
    decryptor.decrypt_to(&key, &mut out)?;
    Ok(out)
}

/// Decrypts any envelope in memory with `keyring`.
pub fn memory_open(keyring: &LocalKeyring, input: &[u8]) -> Result<Vec<u8>, envelope_core::Error> {
    let envelope = envelope_core::hazmat::Envelope::parse(input, &ParseOptions::default())?;
    let header = envelope.header();
    let key = keyring.unwrap_sync(&header.encrypted_data_keys, &header.context)?;
    Ok(envelope.open(&key)?.to_vec())
}

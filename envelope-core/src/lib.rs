#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aead;
#[cfg(feature = "tokio")]
mod async_io;
mod backend;
mod cache;
mod codec;
mod context;
mod encryptor;
mod envelope;
mod error;
pub mod esdk;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod fuzzing;
mod header;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
mod key;
mod keyring;
pub mod keyset;
pub mod legacy;
mod local;
mod plaintext;
mod random;
mod stream;
mod suite;
mod text;

pub use aead::{NONCE_LEN, TAG_LEN};
pub use backend::AeadBackend;
pub use cache::CachePolicy;
pub use context::{EncryptionContext, MAX_CONTEXT_FIELD_LEN, MAX_CONTEXT_PAIRS};
pub use encryptor::{Encryptor, EncryptorBuilder, Expect};
pub use envelope::{Envelope, seal, seal_into};
pub use error::{Error, FormatError, KeyringError, KeyringErrorKind};
pub use header::{
    BodyForm, DEFAULT_FRAME_LEN, DEFAULT_MAX_ENCRYPTED_DATA_KEYS, Header, MAGIC, MAX_ENCRYPTED_DATA_KEYS,
    MAX_FRAME_LEN, ParseOptions, VERSION,
};
pub use key::{DATA_KEY_LEN, DataKey, EncryptedDataKey, MAX_KEY_ID_LEN, MAX_PROVIDER_ID_LEN, MAX_WRAPPED_KEY_LEN};
pub use keyring::{
    Keyring, KeyringFuture, Materials, Rewrapped, generate_materials, no_matching_key, unwrap_data_key,
    unwrap_data_key_checked, verify_commitment,
};
pub use local::{KeyInfo, Keystore, LOCAL_PROVIDER_ID, LocalKey, LocalKeyring};
pub use plaintext::Plaintext;
pub use stream::{MAX_STREAMED_SINGLE_SHOT, StreamDecryptor, StreamOptions, encrypt_stream, encrypt_stream_with};
pub use suite::{COMMITMENT_LEN, MESSAGE_ID_LEN, Suite};
pub use text::{decode_text, encode_text};

#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aead;
#[cfg(feature = "tokio")]
mod async_io;
mod backend;
mod blocking;
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
pub mod s3ec;
mod stream;
mod suite;
mod text;

pub use cache::CachePolicy;
pub use context::EncryptionContext;
pub use encryptor::{Encryptor, EncryptorBuilder, Expect};
pub use error::{Error, FormatError, KeyringError, KeyringErrorKind};
pub use key::{DataKey, EncryptedDataKey};
pub use keyring::{Keyring, KeyringFuture, Rewrapped};
pub use local::{KeyInfo, Keystore, LOCAL_PROVIDER_ID, LocalKey, LocalKeyring};
pub use plaintext::Plaintext;

/// Below the front door: the envelope format's parts (parse, seal and open
/// with a data key in hand, framed streams, the text form, limits) and the
/// building blocks of keyrings.
///
/// For tools that work on stored ciphertexts, such as rekey's rotation
/// engine, and for keyring implementations. Applications use
/// [`Encryptor`], which draws keys, caches them within
/// limits and checks contexts; here the caller does that, and
/// [`unwrap_data_key`](hazmat::unwrap_data_key) returns a data key that
/// nothing has yet checked against an envelope's key commitment
/// ([`verify_commitment`](hazmat::verify_commitment) does).
pub mod hazmat {
    pub use crate::aead::{NONCE_LEN, TAG_LEN};
    pub use crate::backend::AeadBackend;
    pub use crate::context::{MAX_CONTEXT_FIELD_LEN, MAX_CONTEXT_PAIRS};
    pub use crate::envelope::{Envelope, seal, seal_into};
    pub use crate::header::{
        BodyForm, DEFAULT_FRAME_LEN, DEFAULT_MAX_ENCRYPTED_DATA_KEYS, Header, MAGIC, MAX_ENCRYPTED_DATA_KEYS,
        MAX_FRAME_LEN, ParseOptions, VERSION,
    };
    pub use crate::key::{DATA_KEY_LEN, MAX_KEY_ID_LEN, MAX_PROVIDER_ID_LEN, MAX_WRAPPED_KEY_LEN};
    pub use crate::keyring::{
        Materials, generate_materials, no_matching_key, unwrap_data_key, unwrap_data_key_checked, verify_commitment,
    };
    pub use crate::stream::{
        MAX_STREAMED_SINGLE_SHOT, StreamDecryptor, StreamOptions, encrypt_stream, encrypt_stream_with,
    };
    pub use crate::suite::{COMMITMENT_LEN, MESSAGE_ID_LEN, Suite};
    pub use crate::text::{decode_text, encode_text};
}

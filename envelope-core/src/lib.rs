#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod context;
mod error;
mod key;
mod keyring;
mod random;

pub use context::{EncryptionContext, MAX_CONTEXT_FIELD_LEN, MAX_CONTEXT_PAIRS};
pub use error::{Error, FormatError, KeyringError, KeyringErrorKind};
pub use key::{DATA_KEY_LEN, DataKey, EncryptedDataKey, MAX_KEY_ID_LEN, MAX_PROVIDER_ID_LEN, MAX_WRAPPED_KEY_LEN};
pub use keyring::{Keyring, KeyringFuture, Materials, generate_materials, no_matching_key, unwrap_data_key};

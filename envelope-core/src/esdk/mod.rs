//! AWS Encryption SDK messages: read every suite the SDKs write (message
//! format versions 1 and 2), write version 2 on the committing suites, and
//! unwrap data keys wrapped by the SDKs' raw AES keyring.
//!
//! The format is the public specification at
//! github.com/awslabs/aws-encryption-sdk-specification (`data-format/`,
//! `framework/`, `client-apis/`); docs/format.md §14 says what rekey takes
//! from it and why it never re-wraps such a message in place.
//!
//! Reading is two steps, because the data key comes from the caller's
//! keyring (AWS KMS, a raw AES key, ...), which needs the header first:
//!
//! ```no_run
//! # fn demo(bytes: &[u8], wrapping_key: &[u8]) -> Result<(), envelope_core::Error> {
//! use envelope_core::esdk::{Message, RawAesKeyring};
//! let message = Message::parse(bytes)?;
//! let keyring = RawAesKeyring::new("my-namespace", "my-key", wrapping_key)?;
//! let data_key = keyring.unwrap(&message.header())?;
//! let plaintext = message.decrypt(&data_key)?;
//! # Ok(()) }
//! ```
//!
//! Security notes:
//! - Non-committing suites (every suite but 0x0478 and 0x0578) are refused
//!   unless [`DecryptOptions::allow_non_committing`] is set, as the SDKs'
//!   default policy `REQUIRE_ENCRYPT_REQUIRE_DECRYPT` does: without key
//!   commitment one message can decrypt to different plaintexts under
//!   different wrapped keys.
//! - The commitment key is checked in constant time before the header tag
//!   and before any plaintext exists; every tag, commitment and signature
//!   failure is the same [`Error::Authentication`].
//! - Signed suites' signatures are verified with aws-lc-rs: without the
//!   `aws-lc` feature a signed message is refused with an error that names it.
//! - [`StreamDecryptor`] writes each frame once its tag verifies, before
//!   the signature at the end is checked: hold its output back until
//!   [`StreamDecryptor::finish`] returns `Ok`.

mod body;
mod header;
mod raw_aes;
mod sign;
mod stream;
mod suite;
mod writer;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, FormatError};

pub use body::Message;
pub use header::{ContentType, ContextPairs, WrappedKeys};
pub use raw_aes::RawAesKeyring;
pub use stream::StreamDecryptor;
pub use suite::Suite;
pub use writer::{DEFAULT_FRAME_LEN, Encryptor};

pub(crate) use header::HeaderInfo;

/// The default of [`DecryptOptions::max_wrapped_keys`]: the SDKs' usual
/// configured limit.
pub const DEFAULT_MAX_WRAPPED_KEYS: usize = 10;
/// The default of [`DecryptOptions::max_buffer_len`]: 64 MiB.
pub const DEFAULT_MAX_BUFFER_LEN: u32 = 64 << 20;

/// What a reader accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecryptOptions {
    /// Most wrapped keys a header may list (default 10); more is
    /// [`FormatError::TooManyEncryptedDataKeys`]. Each costs the caller's
    /// keyring a try, so an attacker's long list is a denial of service.
    pub max_wrapped_keys: usize,
    /// Whether to decrypt the non-committing legacy suites (default no).
    pub allow_non_committing: bool,
    /// Largest frame (or non-framed body) [`StreamDecryptor`] holds in
    /// memory to check its tag before writing it (default 64 MiB). Larger
    /// ones are refused before anything is allocated for them.
    /// [`Message`] needs no such limit: its input is already in memory.
    pub max_buffer_len: u32,
}

impl Default for DecryptOptions {
    fn default() -> Self {
        Self {
            max_wrapped_keys: DEFAULT_MAX_WRAPPED_KEYS,
            allow_non_committing: false,
            max_buffer_len: DEFAULT_MAX_BUFFER_LEN,
        }
    }
}

impl DecryptOptions {
    /// The defaults, but decrypting the non-committing legacy suites too
    /// (the SDKs' `REQUIRE_ENCRYPT_ALLOW_DECRYPT`), for reading old messages.
    pub fn allowing_non_committing() -> Self {
        Self { allow_non_committing: true, ..Self::default() }
    }

    /// Refuses a suite the policy does not allow.
    pub(crate) fn check_policy(&self, suite: Suite) -> Result<(), Error> {
        if suite.is_committing() || self.allow_non_committing {
            Ok(())
        } else {
            Err(Error::NonCommittingSuite(suite.name()))
        }
    }
}

/// A message's plaintext data key (16, 24 or 32 bytes by suite), as the
/// caller's keyring unwrapped it. Zeroized on drop; no `Debug`, `Clone`
/// or `Display`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PlaintextDataKey {
    bytes: [u8; 32],
    len: usize,
}

impl PlaintextDataKey {
    /// Copies a key of 16, 24 or 32 bytes; the caller wipes its own copy.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] for any other length (the bytes are not echoed).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, FormatError> {
        if ![16, 24, 32].contains(&bytes.len()) {
            return Err(FormatError::Invalid("data key length (16, 24 or 32 bytes)"));
        }
        let mut key = Self { bytes: [0; 32], len: bytes.len() };
        key.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(key)
    }

    /// A fresh random key for `suite` from the operating system.
    ///
    /// # Errors
    /// [`Error::Io`] when the system random source fails.
    pub fn generate(suite: Suite) -> Result<Self, Error> {
        let mut key = Self { bytes: [0; 32], len: suite.data_key_len() };
        crate::random::fill(&mut key.bytes[..key.len])?;
        Ok(key)
    }

    /// The key bytes, for a key-wrapping call.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl From<crate::DataKey> for PlaintextDataKey {
    fn from(key: crate::DataKey) -> Self {
        Self { bytes: *key.expose_secret(), len: 32 }
    }
}

/// One wrapped (encrypted) data key of a message header, borrowed from it.
///
/// The crate's [`EncryptedDataKey`](crate::EncryptedDataKey) does not fit:
/// the SDK's provider info is bytes (the raw AES keyring puts a binary IV
/// in it), not a UTF-8 key id, and its fields may be up to 65,535 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrappedKeyRef<'a> {
    provider_id: &'a str,
    provider_info: &'a [u8],
    ciphertext: &'a [u8],
}

impl<'a> WrappedKeyRef<'a> {
    pub(crate) fn new(provider_id: &'a str, provider_info: &'a [u8], ciphertext: &'a [u8]) -> Self {
        Self { provider_id, provider_info, ciphertext }
    }

    /// The keyring family, such as `aws-kms` or a raw keyring's namespace.
    pub fn provider_id(&self) -> &'a str {
        self.provider_id
    }

    /// The provider's information: a KMS key ARN, or for raw AES the key
    /// name, tag length, IV length and IV.
    pub fn provider_info(&self) -> &'a [u8] {
        self.provider_info
    }

    /// The wrapped key.
    pub fn ciphertext(&self) -> &'a [u8] {
        self.ciphertext
    }

    /// An owned copy.
    pub fn to_owned(&self) -> WrappedKey {
        WrappedKey {
            provider_id: self.provider_id.to_owned(),
            provider_info: self.provider_info.to_vec(),
            ciphertext: self.ciphertext.to_vec(),
        }
    }
}

/// A wrapped data key to write into a message: what the caller's keyring
/// produced. Each field must be at most 65,535 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey {
    /// The keyring family (`aws-kms`, a raw keyring's namespace).
    pub provider_id: String,
    /// The provider's information (a KMS key ARN, raw AES's name and IV).
    pub provider_info: Vec<u8>,
    /// The wrapped key.
    pub ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// A borrowed view.
    pub fn as_ref(&self) -> WrappedKeyRef<'_> {
        WrappedKeyRef::new(&self.provider_id, &self.provider_info, &self.ciphertext)
    }
}

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

/// The fuzz target's entry: parse; if that succeeds, re-encode the header
/// and check the bytes match; then unwrap with the raw AES keys of the
/// committed vectors (tests/data/esdk/manifest.json), so that seeds made
/// from them get past the commitment and the header tag into the frames,
/// and decrypt both in memory and streamed.
#[cfg(feature = "internals")]
pub(crate) fn fuzz_message(data: &[u8]) {
    let mut options = DecryptOptions::allowing_non_committing();
    options.max_wrapped_keys = 255;
    let Ok(message) = Message::parse_with(data, &options) else { return };
    let (bytes, info) = message.header_parts();
    let mut again = Vec::new();
    info.encode(bytes, &mut again).expect("a parsed header re-encodes");
    assert_eq!(again, &data[..info.len], "re-encoding must reproduce the parsed header");
    let key_256: Vec<u8> = (0x40..0x60).collect();
    let key_128: Vec<u8> = (0x70..0x80).collect();
    for (name, key) in [("wrapping-key-256", key_256), ("wrapping-key-128", key_128)] {
        let keyring = RawAesKeyring::new("rekey-kat", name, &key).expect("valid key length");
        if let Ok(data_key) = keyring.unwrap(&message.header()) {
            let in_memory = message.decrypt(&data_key);
            let streamed = StreamDecryptor::new(data, &options).and_then(|mut d| {
                let mut out = Vec::new();
                d.decrypt_to(&data_key, &mut out)?;
                d.finish()?;
                Ok(out)
            });
            // The two readers must agree on every input.
            match (in_memory, streamed) {
                (Ok(a), Ok(b)) => assert!(a.as_bytes() == b.as_slice(), "readers disagree"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("one reader accepted what the other refused: {:?} / {:?}", a.err(), b.err()),
            }
            return;
        }
    }
}

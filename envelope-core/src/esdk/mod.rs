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
//!   failure is the same [`Error::Authentication`](crate::Error::Authentication).
//! - Signed suites' signatures are verified with aws-lc-rs: without the
//!   `aws-lc` feature a signed message is refused with an error that names it.
//! - [`StreamDecryptor`] writes each frame once its tag verifies, before
//!   the signature at the end is checked: hold its output back until
//!   [`StreamDecryptor::finish`] returns `Ok`.

mod body;
mod header;
mod keys;
mod options;
mod raw_aes;
mod sign;
mod stream;
mod suite;
mod writer;

pub use body::Message;
pub use header::Header;
pub use header::{ContentType, ContextPairs, WrappedKeys};
pub use keys::{PlaintextDataKey, WrappedKey, WrappedKeyRef};
pub use options::{DEFAULT_MAX_BUFFER_LEN, DEFAULT_MAX_WRAPPED_KEYS, DecryptOptions};
pub use raw_aes::RawAesKeyring;
pub use stream::StreamDecryptor;
pub use suite::Suite;
pub use writer::{DEFAULT_FRAME_LEN, Encryptor};

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

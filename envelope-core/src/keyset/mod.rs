//! Keysets and compact records (docs/format.md §12): the blog's "one stored
//! data key, many records" pattern, done with authentication, key commitment
//! and rotation.
//!
//! A [`Keyset`] holds a few data keys, each with a 4-byte [`KeyId`], each
//! wrapped by one or more keyrings (KMS, local), one of them the primary.
//! [`Keyset::unwrap`] turns it into a [`KeysetHandle`] that seals short
//! compact records under the primary and opens records of any of its keys:
//!
//! ```
//! # use envelope_core::{EncryptionContext, LocalKey, LocalKeyring, Keyring};
//! # use envelope_core::keyset::Keyset;
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let waker = std::task::Waker::noop();
//! #     let mut cx = std::task::Context::from_waker(&waker);
//! #     let mut f = std::pin::pin!(f);
//! #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
//! # }
//! # let keyring = LocalKeyring::new(LocalKey::generate("app").unwrap());
//! let keyrings: [&dyn Keyring; 1] = [&keyring];
//! let keyset = block_on(Keyset::create(&keyrings))?;   // store keyset.to_text()
//! let handle = block_on(keyset.unwrap(&keyrings))?;
//! let context = EncryptionContext::from_pairs([("column", "ssn")])?;
//! let record = handle.encrypt_text(b"i want to back to home", &context)?;
//! assert!(record.len() <= 88);
//! assert_eq!(&*handle.decrypt_text(&record, &context)?, b"i want to back to home");
//! # Ok::<(), envelope_core::Error>(())
//! ```
//!
//! # Nonces and the per-key limit
//!
//! A compact record is AES-256-GCM under the key's record key with a random
//! 96-bit nonce, like a Tink keyset record. Two records under one key
//! colliding on a nonce would leak the XOR of their plaintexts and GCM's
//! authentication key, so each data key MUST seal at most
//! [`MAX_RECORDS_PER_KEY`] = 2^32 records (NIST SP 800-38D §8.3): after q
//! records the chance of any collision is below q²/2^97, 2^-33 at the limit.
//! Rotate to a new primary ([`Keyset::rotate`]) well before; a new key starts
//! a new budget, old records stay readable. [`KeysetHandle::records_sealed`]
//! counts what this process sealed; the global count is the application's
//! to keep (docs/format.md §12.7 says why longer nonces were not chosen).
//!
//! # Key commitment without record bytes
//!
//! Each key's entry carries a commitment to its data key, and every wrapped
//! copy of the key is bound to the keyset id, the key id, the key's purpose
//! and that commitment (the KMS encryption context, the local keyring's
//! AAD). Unwrapping checks the commitment. So a keyset entry yields one data
//! key or none: a wrapped key moved from another entry, another keyset or
//! another application does not unwrap under this entry's context. A record
//! is opened only with the key its keyset assigns to its key id, and keys
//! are derived per keyset, so a record is bound to its data key, keyset,
//! key id and context. The trust model (who may write a keyset file) is in
//! docs/format.md §12.8.

mod file;
mod handle;
mod key;
mod record;
mod set;
mod store;

pub use self::file::{KEYSET_FILE_TAG, MAX_KEYSET_FILE_LEN};
pub use self::handle::KeysetHandle;
#[cfg(any(test, feature = "internals"))]
pub(crate) use self::handle::open_with_key;
pub use self::key::{
    CONTEXT_COMMITMENT, CONTEXT_KEY_ID, CONTEXT_KEYSET, CONTEXT_PURPOSE, KEY_COMMITMENT_LEN, KEYSET_ID_LEN, KeyId,
    KeyPurpose, KeysetId, KeysetKey, MAX_KEYSET_KEYS, MAX_RECORDS_PER_KEY, MAX_WRAPS_PER_KEY,
};
pub use self::record::{
    COMPACT_MAGIC, COMPACT_OVERHEAD, COMPACT_PREFIX_LEN, CompactRecord, MAX_COMPACT_PLAINTEXT,
    looks_like_compact_record,
};
pub use self::set::{Keyset, RewrapSummary};
pub use self::store::{FileKeysetStore, KeysetStore, MemoryKeysetStore, StoreFuture};

#[cfg(test)]
mod tests;

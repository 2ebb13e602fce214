//! What happens to one item: the single place where every rotation parses
//! an item with envelope-core and either replaces its wrapped keys
//! (rewrap) or decrypts and seals it again (reencrypt).
//!
//! Each kind of rotation is one [`Strategy`] type ([`Rewrap`],
//! [`RewrapBare`], [`Reencrypt`], [`ToKeyset`]); [`Transform`] runs one of
//! them with the state every strategy shares ([`Shared`]: the operator's
//! source keys and one keyring call per distinct wrapped key).
//!
//! Labels are not proof. A wrapped key's key id says which key it claims to
//! be under; nobody authenticated that claim. So:
//! - a wrapped key is re-wrapped only when a source keyring (the operator's
//!   `--from` allow-list) accepts it, and the destination keyring checks
//!   what KMS really used ([`Keyring::rewrap`]);
//! - a working wrapped key is dropped only when the item keeps a key this
//!   run made from that very wrapped key, or one checked against the
//!   envelope's key commitment;
//! - re-encryption skips an item only when the destination really opens it.

mod bare;
mod esdk;
mod keyset;
mod outcome;
mod reencrypt;
mod rewrap;
mod shared;
mod strategy;
#[cfg(test)]
mod tests;

pub use self::bare::RewrapBare;
pub use self::esdk::ReencryptEsdk;
pub use self::keyset::ToKeyset;
pub use self::outcome::{ChangeKind, Outcome, Proof, StreamJob};
pub use self::reencrypt::Reencrypt;
pub use self::rewrap::Rewrap;
pub use self::shared::Shared;
pub use self::strategy::{BoxFuture, Strategy, Transform};

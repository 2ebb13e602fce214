//! The local keyring: wrapping keys kept in files of a keystore directory
//! (docs/format.md §8), so everything works offline, without AWS.

mod key;
mod keyring;
mod keystore;

pub use self::key::{KeyInfo, LOCAL_PROVIDER_ID, LocalKey};
pub use self::keyring::LocalKeyring;
pub use self::keystore::Keystore;

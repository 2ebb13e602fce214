//! The CLI's one door to AWS KMS, through `kms-adapter`.

use envelope_core::Keyring;

use crate::cli::KmsArgs;
use crate::exit::CliError;
use crate::keys::KeySpec;

/// KMS settings, and the client built from them on first use.
pub(crate) struct Kms {
    args: KmsArgs,
}

impl Kms {
    pub(crate) fn new(args: KmsArgs) -> Self {
        Self { args }
    }

    /// A keyring wrapping under `key` that may also unwrap with the KMS keys of `also_unwrap`.
    pub(crate) async fn keyring(
        &self,
        key: &str,
        also_unwrap: &[KeySpec],
    ) -> Result<Box<dyn Keyring>, CliError> {
        let _ = (&self.args, key, also_unwrap);
        Err(CliError::usage("KMS keys are not wired in yet"))
    }

    /// A keyring that unwraps with `keys`, or with any key in discovery mode.
    pub(crate) async fn decrypting_keyring(
        &self,
        keys: &[String],
        discovery: bool,
    ) -> Result<Box<dyn Keyring>, CliError> {
        let _ = (keys, discovery);
        Err(CliError::usage("KMS keys are not wired in yet"))
    }
}

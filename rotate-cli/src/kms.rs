//! The CLI's one door to AWS KMS, through `kms-adapter`.

use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Keyring};

/// The provider id of KMS-wrapped data keys.
pub(crate) const PROVIDER_ID: &str = "aws-kms";

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
    pub(crate) async fn keyring(&self, key: &str, also_unwrap: &[KeySpec]) -> Result<Box<dyn Keyring>, CliError> {
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

    /// DescribeKey preflight: a line saying the key is usable, or an error.
    pub(crate) async fn preflight(&self, key: &str) -> Result<String, CliError> {
        let _ = key;
        Err(CliError::usage("KMS keys are not wired in yet"))
    }

    /// Decrypts a bare KMS ciphertext blob (the legacy data key).
    pub(crate) async fn decrypt_bare(
        &self,
        edk: &EncryptedDataKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, CliError> {
        let _ = (edk, context);
        Err(CliError::usage("KMS keys are not wired in yet"))
    }

    /// KMS calls, throttles and retries so far, for the summary; `None` if KMS was not used.
    pub(crate) fn usage(&self) -> Option<serde_json::Value> {
        None
    }
}

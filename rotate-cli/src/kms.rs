//! The CLI's one door to AWS KMS, through `kms-adapter`: the client is made
//! on first use, so commands that need no KMS never touch AWS configuration.

use std::time::Duration;

use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Keyring};
use kms_adapter::{DiscoveryFilter, Kms as KmsClient, KmsConfig, KmsErrorKind, KmsKeyring, RetryMode};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::cli::{self, DiscoveryArgs, KmsArgs};
use crate::exit::{CliError, Code, keyring_code};
use crate::key_spec::KeySpec;

pub(crate) use kms_adapter::PROVIDER_ID;

/// KMS settings, and the client built from them on first use.
pub(crate) struct Kms {
    args: KmsArgs,
    client: OnceCell<KmsClient>,
}

impl Kms {
    pub(crate) fn new(args: KmsArgs) -> Self {
        Self { args, client: OnceCell::new() }
    }

    async fn client(&self) -> Result<&KmsClient, CliError> {
        let seconds = |s: f64, name: &str| {
            if s.is_finite() && s > 0.0 {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(CliError::usage(format!("{name} must be a positive number of seconds")))
            }
        };
        let config = KmsConfig {
            max_attempts: self.args.kms_max_attempts.max(1),
            retry_mode: match self.args.kms_retry_mode {
                cli::RetryMode::Standard => RetryMode::Standard,
                cli::RetryMode::Adaptive => RetryMode::Adaptive,
            },
            attempt_timeout: seconds(self.args.kms_attempt_timeout, "--kms-attempt-timeout")?,
            operation_timeout: seconds(self.args.kms_operation_timeout, "--kms-operation-timeout")?,
            max_requests_per_second: match self.args.max_rps {
                rps if rps.is_finite() && rps > 0.0 => Some(rps),
                rps if rps.abs() < f64::EPSILON => None,
                _ => return Err(CliError::usage("--max-rps must be a positive number (0 for no limit)")),
            },
            ..KmsConfig::default()
        };
        Ok(self.client.get_or_init(|| KmsClient::from_env(&config)).await)
    }

    /// A keyring wrapping under `key` that may also unwrap with the KMS keys of `also_unwrap`.
    pub(crate) async fn keyring(&self, key: &str, also_unwrap: &[KeySpec]) -> Result<Box<dyn Keyring>, CliError> {
        let others: Vec<String> = crate::key_spec::kms_keys(also_unwrap);
        let keyring = KmsKeyring::new(self.client().await?.clone(), key, &others).await.map_err(kms_error)?;
        Ok(Box::new(keyring))
    }

    /// A keyring that unwraps with `keys`, or in discovery mode with any key
    /// the filter allows.
    pub(crate) async fn decrypting_keyring(
        &self,
        keys: &[String],
        discovery: Option<DiscoveryFilter>,
    ) -> Result<Box<dyn Keyring>, CliError> {
        let client = self.client().await?.clone();
        if let Some(filter) = discovery {
            return Ok(Box::new(KmsKeyring::discovery(client, filter)));
        }
        Ok(Box::new(KmsKeyring::decrypt_only(client, keys).await.map_err(kms_error)?))
    }

    /// DescribeKey preflight: a line saying the key is usable, or an error.
    /// Properties the server leaves out (local KMS servers do) are said to
    /// be unreported, not printed as `unknown`.
    pub(crate) async fn preflight(&self, key: &str) -> Result<String, CliError> {
        let d = self.client().await?.describe(key).await.map_err(kms_error)?;
        d.check_usable().map_err(kms_error)?;
        let mut known = vec![d.state.to_lowercase()];
        let mut unreported = Vec::new();
        for (name, value) in [("key spec", &d.spec), ("key usage", &d.usage)] {
            if value == "unknown" { unreported.push(name) } else { known.push(value.clone()) }
        }
        let named = if d.arn.ends_with(key) { String::new() } else { format!("kms:{key} is ") };
        let mut line = format!("{named}{}: {}", d.arn, known.join(", "));
        if !unreported.is_empty() {
            line.push_str(&format!(" ({} not reported by the server)", unreported.join(" and ")));
        }
        Ok(line)
    }

    /// Decrypts a bare KMS ciphertext blob (the legacy data key), once.
    pub(crate) async fn decrypt_bare(
        &self,
        edk: &EncryptedDataKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, CliError> {
        let (key, arn) = self.client().await?.decrypt(edk.wrapped(), None, context).await.map_err(kms_error)?;
        tracing::info!("legacy data key unwrapped with {arn}");
        Ok(key)
    }

    /// KMS calls, throttles and retries so far, for the summary; `None` if KMS was not used.
    pub(crate) fn usage(&self) -> Option<Value> {
        let metrics = self.client.get()?.metrics();
        if metrics.is_empty() {
            return None;
        }
        let calls: serde_json::Map<String, Value> =
            metrics.calls.iter().filter(|(_, n)| *n > 0).map(|(op, n)| ((*op).to_owned(), Value::from(*n))).collect();
        Some(
            json!({"calls": calls, "retries": metrics.retries, "throttles": metrics.throttles, "text": metrics.to_string()}),
        )
    }
}

fn kms_error(e: kms_adapter::KmsError) -> CliError {
    let hint = match (e.suggestion(), e.kind()) {
        (Some(key), _) => Some(format!("did you mean kms:{key}?")),
        (None, KmsErrorKind::KeyNotFound) => Some(
            "keys and aliases are per region and account: add ?region=REGION or ?profile=NAME to the key \
             reference (kms:alias/NAME?region=eu-west-1), or use the key's ARN"
                .to_owned(),
        ),
        _ => None,
    };
    let keyring: envelope_core::KeyringError = e.into();
    let code = match keyring_code(keyring.kind()) {
        Code::Authentication => Code::Authentication,
        Code::Usage => Code::Usage,
        _ => Code::Kms,
    };
    let error = CliError::new(code, keyring.to_string());
    match hint {
        Some(hint) => error.hint(hint),
        None => error,
    }
}

impl DiscoveryArgs {
    /// The discovery filter, `None` when discovery is off.
    ///
    /// # Errors
    /// A usage error when discovery is asked for without an account, or
    /// with a malformed account or partition.
    pub(crate) fn filter(&self) -> Result<Option<DiscoveryFilter>, CliError> {
        if !self.kms_discovery {
            return Ok(None);
        }
        if self.discovery_accounts.is_empty() {
            return Err(discovery_needs_accounts());
        }
        DiscoveryFilter::new(&self.discovery_partition, self.discovery_accounts.iter().cloned())
            .map(Some)
            .map_err(|e| CliError::usage(format!("--kms-discovery: {}", e.detail())))
    }
}

fn discovery_needs_accounts() -> CliError {
    CliError::usage("--kms-discovery needs --discovery-account: the AWS accounts whose KMS keys may decrypt")
        .hint("add --discovery-account 111122223333 (repeatable) and, outside the aws partition, --discovery-partition")
}

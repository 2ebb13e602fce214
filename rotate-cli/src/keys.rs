//! Key references on the command line and the keyrings they become.
//!
//! `local:NAME` names a key of the local keystore; `kms:KEY` an AWS KMS key
//! (key id, key ARN, `alias/NAME` or alias ARN). The keystore is found by
//! `--keystore`, then `REKEY_KEYSTORE`, then a per-user default.
//!
//! A KMS key is reached in its own region and profile: a key ARN names its
//! region, and any reference may end with a qualifier,
//! `kms:alias/app?region=eu-west-1&profile=prod` (either part alone works).
//! `?` cannot occur in a key id, alias or ARN, so the qualifier is never
//! ambiguous; kms-adapter's `KeyRef` parses it, and one run may use keys of
//! several regions and profiles, each through its own cached client.

use std::path::PathBuf;
use std::str::FromStr;

use envelope_core::{Keyring, Keystore, LocalKeyring};
use kms_adapter::DiscoveryFilter;

use crate::cli::DiscoveryArgs;
use crate::exit::{CliError, keystore_error};
use crate::kms::Kms;

/// A key named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySpec {
    /// A local keystore key, by name.
    Local(String),
    /// An AWS KMS key: id, ARN, alias or alias ARN.
    Kms(String),
}

impl FromStr for KeySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("local", name)) if !name.is_empty() => Ok(Self::Local(name.to_owned())),
            Some(("kms", key)) if !key.is_empty() => Ok(Self::Kms(key.to_owned())),
            _ => Err(format!(
                "{s:?} is not a key reference; use local:NAME or kms:KEY (key id, ARN or alias/NAME, \
                 optionally ?region=REGION&profile=NAME)"
            )),
        }
    }
}

impl std::fmt::Display for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(name) => write!(f, "local:{name}"),
            Self::Kms(key) => write!(f, "kms:{key}"),
        }
    }
}

/// The KMS key references among `specs`.
pub(crate) fn kms_keys(specs: &[KeySpec]) -> Vec<String> {
    specs.iter().filter_map(|s| if let KeySpec::Kms(k) = s { Some(k.clone()) } else { None }).collect()
}

/// Where the keys live and how to reach KMS; builds keyrings on demand.
pub(crate) struct Keys {
    keystore: Keystore,
    kms: Kms,
}

impl Keys {
    pub(crate) fn new(keystore: Option<PathBuf>, kms: Kms) -> Self {
        Self { keystore: Keystore::new(keystore.unwrap_or_else(default_keystore)), kms }
    }

    pub(crate) fn keystore(&self) -> &Keystore {
        &self.keystore
    }

    pub(crate) fn kms(&self) -> &Kms {
        &self.kms
    }

    /// A keyring that wraps under `spec` and may unwrap with `also_unwrap`.
    pub(crate) async fn wrapping(&self, spec: &KeySpec, also_unwrap: &[KeySpec]) -> Result<Box<dyn Keyring>, CliError> {
        match spec {
            KeySpec::Local(name) => {
                let key = self.keystore.load(name).map_err(keystore_error)?;
                let mut allowed = Vec::new();
                for other in also_unwrap {
                    if let KeySpec::Local(n) = other {
                        allowed.push(self.keystore.load(n).map_err(keystore_error)?);
                    }
                }
                Ok(Box::new(LocalKeyring::with_allowed(Some(key), allowed)))
            }
            KeySpec::Kms(key) => self.kms.keyring(key, also_unwrap).await,
        }
    }

    /// The keyrings to encrypt with: the first generates, the rest wrap too.
    pub(crate) async fn encrypting(&self, specs: &[KeySpec]) -> Result<Vec<Box<dyn Keyring>>, CliError> {
        let mut keyrings = Vec::with_capacity(specs.len());
        for spec in specs {
            keyrings.push(self.wrapping(spec, &[]).await?);
        }
        Ok(keyrings)
    }

    /// The keyrings to decrypt with. With an allow-list, exactly those keys;
    /// without, every key of the local keystore. KMS keys: those of the
    /// allow-list, or in discovery mode any key of the discovery filter's accounts.
    pub(crate) async fn decrypting(
        &self,
        allow: &[KeySpec],
        discovery: &DiscoveryArgs,
    ) -> Result<Vec<Box<dyn Keyring>>, CliError> {
        let filter = discovery.filter()?;
        let mut keyrings: Vec<Box<dyn Keyring>> = Vec::new();
        let local: Vec<_> =
            allow.iter().filter_map(|s| if let KeySpec::Local(n) = s { Some(n) } else { None }).collect();
        let local_keys = if allow.is_empty() {
            self.keystore.load_all().map_err(keystore_error)?
        } else {
            local.iter().map(|n| self.keystore.load(n)).collect::<Result<_, _>>().map_err(keystore_error)?
        };
        if !local_keys.is_empty() {
            keyrings.push(Box::new(LocalKeyring::with_allowed(None, local_keys)));
        }
        let kms: Vec<String> = kms_keys(allow);
        if !kms.is_empty() || filter.is_some() {
            keyrings.push(self.kms.decrypting_keyring(&kms, filter).await?);
        }
        Ok(keyrings)
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
            .map_err(|e| CliError::usage(format!("--kms-discovery: {}", e.detail)))
    }
}

fn discovery_needs_accounts() -> CliError {
    CliError::usage("--kms-discovery needs --discovery-account: the AWS accounts whose KMS keys may decrypt")
        .hint("add --discovery-account 111122223333 (repeatable) and, outside the aws partition, --discovery-partition")
}

/// `$XDG_DATA_HOME/rekey/keys`, else `~/.local/share/rekey/keys`.
fn default_keystore() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("rekey").join("keys")
}

/// Parses `k=v` pairs from `--context` into an encryption context.
pub(crate) fn parse_context(pairs: &[String]) -> Result<envelope_core::EncryptionContext, CliError> {
    let mut ctx = envelope_core::EncryptionContext::new();
    for pair in pairs {
        let (k, v) =
            pair.split_once('=').ok_or_else(|| CliError::usage(format!("--context {pair:?} is not KEY=VALUE")))?;
        ctx.insert(k, v).map_err(|e| CliError::usage(format!("--context {pair:?}: {e}")))?;
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs_parse() {
        assert_eq!("local:orders".parse(), Ok(KeySpec::Local("orders".into())));
        assert_eq!("kms:alias/app".parse(), Ok(KeySpec::Kms("alias/app".into())));
        assert_eq!(
            "kms:arn:aws:kms:us-east-1:111122223333:key/abc".parse(),
            Ok(KeySpec::Kms("arn:aws:kms:us-east-1:111122223333:key/abc".into()))
        );
        for bad in ["orders", "local:", "kms:", "vault:x"] {
            assert!(bad.parse::<KeySpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn discovery_needs_an_account() {
        let off = DiscoveryArgs::default();
        assert_eq!(off.filter().expect("off"), None);
        let mut on = DiscoveryArgs { kms_discovery: true, discovery_partition: "aws".into(), ..off };
        let err = on.filter().expect_err("no account");
        assert!(err.message.contains("--discovery-account"), "{}", err.message);
        on.discovery_accounts.push("12".into());
        assert!(on.filter().is_err(), "malformed account");
        on.discovery_accounts = vec!["111122223333".into()];
        let filter = on.filter().expect("valid").expect("on");
        assert_eq!((filter.partition(), filter.accounts()), ("aws", &["111122223333".to_owned()][..]));
    }

    #[test]
    fn contexts_parse() {
        let ctx = parse_context(&["a=1".into(), "b=x=y".into()]).expect("valid");
        assert_eq!(ctx.get("b"), Some("x=y"));
        assert!(parse_context(&["novalue".into()]).is_err());
        assert!(parse_context(&["a=1".into(), "a=2".into()]).is_err());
    }
}

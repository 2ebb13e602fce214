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

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use envelope_core::{DataKey, EncryptedDataKey, Keyring, Keystore, LocalKeyring};

use crate::cli::DiscoveryArgs;
use crate::exit::{CliError, keystore_error};
use crate::key_spec::{KeySpec, kms_keys};
use crate::kms::Kms;

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

    /// The local key `name`; a name not in the keystore gets the nearest one
    /// as a did-you-mean, as KMS aliases do.
    fn load_local(&self, name: &str) -> Result<envelope_core::LocalKey, CliError> {
        self.keystore.load(name).map_err(|e| {
            let missing = e.kind() == envelope_core::KeyringErrorKind::KeyNotFound;
            let err = keystore_error(e);
            if !missing {
                return err;
            }
            let names: Vec<String> =
                self.keystore.list().unwrap_or_default().into_iter().map(|info| info.name).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            match kms_adapter::closest(name, &refs) {
                Some(near) => err.hint(format!("did you mean local:{near}?")),
                None if names.is_empty() => err,
                None => err.hint(format!("the keystore holds {}; `rekey keys list` shows them", refs.join(", "))),
            }
        })
    }

    /// A keyring that wraps under `spec` and may unwrap with `also_unwrap`.
    pub(crate) async fn wrapping(&self, spec: &KeySpec, also_unwrap: &[KeySpec]) -> Result<Box<dyn Keyring>, CliError> {
        match spec {
            KeySpec::Local(name) => {
                let key = self.load_local(name)?;
                let mut allowed = Vec::new();
                for other in also_unwrap {
                    if let KeySpec::Local(n) = other {
                        allowed.push(self.load_local(n)?);
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
            local.iter().map(|n| self.load_local(n)).collect::<Result<_, _>>()?
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

/// The legacy data key from a raw key file, or from its KMS blob (a file,
/// raw or base64, or base64 text) with the context it was made with; shared
/// with `rekey keyset import-legacy`.
pub(crate) async fn legacy_data_key(
    keys: &Keys,
    legacy_key_file: Option<&Path>,
    legacy_edk: Option<&str>,
    legacy_context: &[String],
) -> Result<DataKey, CliError> {
    if let Some(path) = legacy_key_file {
        let bytes = zeroize::Zeroizing::new(
            std::fs::read(path).map_err(|e| CliError::io(format!("cannot read {}", path.display()), e))?,
        );
        return DataKey::try_from_slice(&bytes)
            .map_err(|_| CliError::usage("--legacy-key-file must hold exactly 32 bytes"));
    }
    let Some(edk) = legacy_edk else {
        return Err(CliError::usage(
            "legacy records need their data key: --legacy-edk FILE|BASE64 (or --legacy-key-file)",
        ));
    };
    let blob = match std::fs::read(edk) {
        Ok(bytes) => match std::str::from_utf8(&bytes).ok().and_then(|t| STANDARD.decode(t.trim_ascii()).ok()) {
            Some(decoded) => decoded,
            None => bytes,
        },
        Err(_) => STANDARD
            .decode(edk.trim())
            .map_err(|_| CliError::usage("--legacy-edk is neither a readable file nor base64"))?,
    };
    let context = parse_context(legacy_context)?;
    let edk = EncryptedDataKey::new(crate::kms::PROVIDER_ID, "", blob)
        .map_err(|e| CliError::usage(format!("--legacy-edk: {e}")))?;
    keys.kms().decrypt_bare(&edk, &context).await
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

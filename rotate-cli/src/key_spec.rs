//! Key references as the command line writes them: `local:NAME` for a key
//! of the local keystore, `kms:KEY` for an AWS KMS key (kms-adapter's
//! `KeyRef` parses what follows `kms:`, region and profile qualifiers included).

use std::str::FromStr;

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

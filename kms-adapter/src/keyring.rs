//! `KmsKeyring`: the envelope-core `Keyring` on AWS KMS.

use envelope_core::{
    DataKey, EncryptedDataKey, EncryptionContext, Keyring, KeyringError, KeyringErrorKind, KeyringFuture, Rewrapped,
};

use envelope_core::esdk::PlaintextDataKey;
use envelope_core::hazmat::{no_matching_key, unwrap_data_key};
use zeroize::Zeroizing;

use crate::client::Kms;
use crate::error::{KmsError, KmsErrorKind};
use crate::keyref::{KeyRef, arn_region, same_multi_region_key};

/// The provider id of KMS-wrapped data keys (the AWS Encryption SDK's too).
pub const PROVIDER_ID: &str = "aws-kms";

/// Which keys may unwrap.
#[derive(Debug, Clone)]
enum Allowed {
    /// Strict mode: only these keys (or, for a multi-Region key, its
    /// replicas).
    Keys(Vec<AllowedKey>),
    /// Discovery mode: any key of these accounts, in this partition, that
    /// KMS will use. Asked for explicitly.
    Discovery(DiscoveryFilter),
}

/// A key of the allow-list: its ARN, and the client for the profile it
/// was named with (requests go to the region of the ARN they name).
#[derive(Debug, Clone)]
struct AllowedKey {
    arn: String,
    kms: Kms,
}

impl AllowedKey {
    /// Whether a wrapped key labelled `arn` is this key: the same ARN, or
    /// a replica of the same multi-Region key (same partition, account and
    /// `mrk-` key id, another region).
    fn matches(&self, arn: &str) -> bool {
        self.arn == arn || same_multi_region_key(&self.arn, arn)
    }
}

/// The accounts (and partition) whose KMS keys discovery mode may use, as
/// the AWS Encryption SDK's discovery filter.
///
/// Without one, discovery would send any wrapped key an envelope names to
/// KMS, and accept any key in any account the caller's credentials reach
/// (cross-account grants included): whoever writes an envelope would choose
/// the key. With one, an encrypted data key whose key id is not a well-formed
/// key ARN in one of these accounts and this partition is skipped without a
/// call, and the key KMS reports having used is checked against the filter
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryFilter {
    partition: String,
    accounts: Vec<String>,
}

impl DiscoveryFilter {
    /// A filter for `accounts` (12-digit AWS account ids, at least one) in
    /// `partition` (`aws`, `aws-cn`, `aws-us-gov`, …).
    ///
    /// # Errors
    /// [`KmsErrorKind::Invalid`] for no account, a malformed account id or partition.
    pub fn new<I, S>(partition: &str, accounts: I) -> Result<Self, KmsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let bad = |value: &str, why: &str| KmsError::new(KmsErrorKind::Invalid, "discovery filter", value, why);
        if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(bad(partition, "not an AWS partition (such as aws, aws-cn, aws-us-gov)"));
        }
        let accounts: Vec<String> = accounts.into_iter().map(Into::into).collect();
        if accounts.is_empty() {
            return Err(bad("", "discovery needs at least one AWS account id to trust"));
        }
        for account in &accounts {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(account, "an AWS account id is 12 digits"));
            }
        }
        Ok(Self { partition: partition.to_owned(), accounts })
    }

    /// The partition.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The accounts.
    pub fn accounts(&self) -> &[String] {
        &self.accounts
    }

    /// Whether `key_id` is a well-formed KMS key ARN (not an alias, not a
    /// bare key id) in this partition and one of these accounts.
    pub fn allows(&self, key_id: &str) -> bool {
        key_arn_parts(key_id).is_some_and(|(partition, account)| {
            partition == self.partition && self.accounts.iter().any(|a| a == account)
        })
    }
}

/// The partition and account of a key ARN,
/// `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID`; `None` for anything else.
fn key_arn_parts(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (partition, service, region, account, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let key_id = resource.strip_prefix("key/")?;
    let well_formed = !partition.is_empty()
        && service == "kms"
        && !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !key_id.is_empty()
        && key_id.len() <= 128
        && key_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    well_formed.then_some((partition, account))
}

/// A keyring for one KMS key (to generate, wrap and re-wrap under) and an
/// allow-list of keys it may unwrap with.
///
/// Strict by default: an encrypted data key is only sent to KMS if its key is
/// on the allow-list, the Decrypt call is pinned to that key, and the key KMS
/// reports having used is checked against the list again.
#[derive(Debug, Clone)]
pub struct KmsKeyring {
    kms: Kms,
    key_arn: String,
    allowed: Allowed,
}

impl KmsKeyring {
    /// A keyring wrapping under `key` (resolved to its ARN and checked with
    /// DescribeKey: enabled, symmetric, for encryption) that may unwrap with
    /// that key and the keys in `also_allowed`.
    ///
    /// Each reference may say which region and profile reach its key (see
    /// [`KeyRef`]; a key ARN names its region): the keyring uses a client of
    /// `kms` for each, so one keyring can hold keys of several regions.
    ///
    /// # Errors
    /// A [`KmsError`] for a malformed reference, an unknown or unusable key.
    pub async fn new(kms: Kms, key: &str, also_allowed: &[String]) -> Result<Self, KmsError> {
        let key = KeyRef::parse(key)?;
        // Described as written, so an error names the reference with its
        // qualifiers (the request goes to the same scoped client).
        let description = kms.describe(key.as_str()).await?;
        let kms = kms.scoped(key.region(), key.profile()).await?;
        description.check_usable()?;
        let mut allowed = vec![AllowedKey { arn: description.arn.clone(), kms: kms.clone() }];
        for other in also_allowed {
            allowed.push(resolve(&kms, other).await?);
        }
        Ok(Self { kms, key_arn: description.arn, allowed: Allowed::Keys(allowed) })
    }

    /// A decrypt-only keyring, strict: only the listed keys may unwrap.
    ///
    /// # Errors
    /// A [`KmsError`] for a malformed reference or an alias that does not resolve.
    pub async fn decrypt_only(kms: Kms, allowed: &[String]) -> Result<Self, KmsError> {
        let mut keys = Vec::with_capacity(allowed.len());
        for key in allowed {
            keys.push(resolve(&kms, key).await?);
        }
        Ok(Self { kms, key_arn: String::new(), allowed: Allowed::Keys(keys) })
    }

    /// A decrypt-only keyring in discovery mode: any KMS key of the
    /// filter's accounts and partition that the caller may use can unwrap.
    /// Encrypted data keys outside the filter, or whose key id is not a
    /// well-formed key ARN, are skipped without calling KMS.
    pub fn discovery(kms: Kms, filter: DiscoveryFilter) -> Self {
        Self { kms, key_arn: String::new(), allowed: Allowed::Discovery(filter) }
    }

    /// The client, for its counters.
    pub fn kms(&self) -> &Kms {
        &self.kms
    }

    /// Whether the key KMS reports having used may unwrap.
    fn allows(&self, arn: &str) -> bool {
        match &self.allowed {
            Allowed::Keys(keys) => keys.iter().any(|k| k.matches(arn)),
            Allowed::Discovery(filter) => filter.allows(arn),
        }
    }

    /// Where to send the Decrypt of a wrapped key labelled `label`: the
    /// client and the key to pin. A key named on the allow-list is pinned
    /// as labelled, so the request goes to the label's region; a replica of
    /// an allowed multi-Region key is decrypted by the allowed key, in its
    /// region (KMS decrypts a multi-Region key's ciphertext with any of its
    /// replicas). Discovery pins the label, in its region.
    fn decrypt_target<'a>(&'a self, label: &'a str) -> (&'a Kms, Option<&'a str>) {
        match &self.allowed {
            Allowed::Keys(keys) => {
                if let Some(exact) = keys.iter().find(|k| k.arn == label) {
                    (&exact.kms, Some(label))
                } else if let Some(replica) = keys.iter().find(|k| k.matches(label)) {
                    (&replica.kms, Some(&replica.arn))
                } else {
                    (&self.kms, (!label.is_empty()).then_some(label))
                }
            }
            Allowed::Discovery(_) => (&self.kms, (!label.is_empty()).then_some(label)),
        }
    }

    fn wrapping_key(&self) -> Result<&str, KeyringError> {
        if self.key_arn.is_empty() {
            Err(KeyringError::new(
                KeyringErrorKind::Unsupported,
                "this KMS keyring only decrypts; name a key to encrypt with",
            ))
        } else {
            Ok(&self.key_arn)
        }
    }

    async fn unwrap_edks(
        &self,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        let mut last_error = None;
        for edk in edks.iter().filter(|e| self.can_unwrap(e)) {
            let (kms, pin) = self.decrypt_target(edk.key_id());
            match kms.decrypt_any_len(edk.wrapped(), pin, context).await {
                Ok((key, used)) if self.allows(&used) => return Ok(key),
                Ok((_key, used)) => {
                    last_error = Some(KmsError::new(
                        KmsErrorKind::KeyNotAllowed,
                        "Decrypt",
                        &used,
                        format!("KMS decrypted with key {used}, which is not allowed (allow-list or discovery filter)"),
                    ));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        KmsErrorKind::InvalidCiphertext | KmsErrorKind::KeyNotFound | KmsErrorKind::AccessDenied
                    ) =>
                {
                    last_error = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_error.map_or_else(|| no_matching_key(edks), KeyringError::from))
    }
}

/// An allowed key: its ARN and the client for its region and profile.
async fn resolve(kms: &Kms, key: &str) -> Result<AllowedKey, KmsError> {
    let key = KeyRef::parse(key)?;
    // Key ARNs need no lookup; ids and aliases are resolved so that the ARNs
    // KMS puts in responses can be checked against the allow-list.
    let arn = if key.is_key_arn() { key.key().to_owned() } else { kms.describe(key.as_str()).await?.arn };
    let kms = kms.scoped(key.region(), key.profile()).await?;
    Ok(AllowedKey { arn, kms })
}

impl Keyring for KmsKeyring {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_arn
    }

    fn can_unwrap(&self, edk: &EncryptedDataKey) -> bool {
        edk.provider_id() == PROVIDER_ID && self.allows(edk.key_id())
    }

    fn generate<'a>(&'a self, context: &'a EncryptionContext) -> KeyringFuture<'a, (DataKey, EncryptedDataKey)> {
        Box::pin(async move {
            let key = self.wrapping_key()?;
            let (data_key, blob, arn) = self.kms.generate_data_key(key, context).await?;
            Ok((data_key, edk(arn, blob)?))
        })
    }

    fn wrap<'a>(&'a self, key: &'a DataKey, context: &'a EncryptionContext) -> KeyringFuture<'a, EncryptedDataKey> {
        Box::pin(async move {
            let (blob, arn) = self.kms.encrypt(self.wrapping_key()?, key, context).await?;
            edk(arn, blob)
        })
    }

    fn unwrap<'a>(
        &'a self,
        edks: &'a [EncryptedDataKey],
        context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, DataKey> {
        Box::pin(async move {
            let secret = self.unwrap_edks(edks, context).await?;
            DataKey::try_from_slice(&secret).map_err(|_| {
                KeyringError::new(KeyringErrorKind::Invalid, "KMS returned a data key that is not 32 bytes")
            })
        })
    }

    /// The SDK's AES-128 and AES-192 suites' 16- and 24-byte keys as well.
    fn unwrap_esdk<'a>(
        &'a self,
        edks: &'a [EncryptedDataKey],
        context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, PlaintextDataKey> {
        Box::pin(async move {
            let secret = self.unwrap_edks(edks, context).await?;
            PlaintextDataKey::from_slice(&secret).map_err(|_| {
                KeyringError::new(KeyringErrorKind::Invalid, "KMS returned a data key that is not 16, 24 or 32 bytes")
            })
        })
    }

    /// KMS to KMS with ReEncrypt: the data key never enters this process.
    /// The source key is pinned to the key the wrapped key is labelled with,
    /// which must be allowed by `sources`, and the key KMS reports having
    /// decrypted with is checked against `sources` again before the result
    /// is used: a label is not proof. Other sources, and a KMS source in
    /// another region than the destination (ReEncrypt works within one
    /// region), unwrap here and wrap.
    fn rewrap<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        source_context: &'a EncryptionContext,
        destination_context: &'a EncryptionContext,
        sources: &'a [&'a dyn Keyring],
    ) -> KeyringFuture<'a, Rewrapped> {
        Box::pin(async move {
            let other_region = |label: &str| matches!((arn_region(label), arn_region(&self.key_arn)), (Some(from), Some(to)) if from != to);
            if edk.provider_id() != PROVIDER_ID || other_region(edk.key_id()) {
                let data_key = unwrap_data_key(sources, std::slice::from_ref(edk), source_context).await?;
                let edk = self.wrap(&data_key, destination_context).await?;
                return Ok(Rewrapped { edk, data_key: Some(data_key) });
            }
            if !sources.iter().any(|s| s.can_unwrap(edk)) {
                return Err(no_matching_key(std::slice::from_ref(edk)));
            }
            let destination = self.wrapping_key()?;
            let answer = self
                .kms
                .reencrypt(edk.wrapped(), Some(edk.key_id()), source_context, destination, destination_context)
                .await?;
            let used = EncryptedDataKey::new(PROVIDER_ID, answer.source_key.clone(), Vec::new()).map_err(|e| {
                KeyringError::new(KeyringErrorKind::Invalid, format!("KMS named an odd source key: {e}"))
            })?;
            if !sources.iter().any(|s| s.can_unwrap(&used)) {
                return Err(KmsError::new(
                    KmsErrorKind::KeyNotAllowed,
                    "ReEncrypt",
                    &answer.source_key,
                    format!(
                        "KMS re-encrypted from key {}, which is not an allowed source (the item named {}); \
                         the result was discarded",
                        answer.source_key,
                        edk.key_id()
                    ),
                )
                .into());
            }
            Ok(Rewrapped { edk: self::edk(answer.destination_key, answer.blob)?, data_key: None })
        })
    }
}

fn edk(arn: String, blob: Vec<u8>) -> Result<EncryptedDataKey, KeyringError> {
    EncryptedDataKey::new(PROVIDER_ID, arn, blob)
        .map_err(|e| KeyringError::new(KeyringErrorKind::Invalid, format!("KMS returned an unusable key: {e}")))
}

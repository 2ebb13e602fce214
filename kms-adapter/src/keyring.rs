//! `KmsKeyring`: the envelope-core `Keyring` on AWS KMS.

use envelope_core::{
    DataKey, EncryptedDataKey, EncryptionContext, Keyring, KeyringError, KeyringErrorKind, KeyringFuture, Rewrapped,
    no_matching_key, unwrap_data_key,
};

use crate::client::Kms;
use crate::error::{KmsError, KmsErrorKind};
use crate::keyref::KeyRef;

/// The provider id of KMS-wrapped data keys (the AWS Encryption SDK's too).
pub const PROVIDER_ID: &str = "aws-kms";

/// Which keys may unwrap.
#[derive(Debug, Clone)]
enum Allowed {
    /// Strict mode: only these key ARNs.
    Keys(Vec<String>),
    /// Discovery mode: any key KMS will use. Asked for explicitly.
    Discovery,
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
    /// # Errors
    /// A [`KmsError`] for a malformed reference, an unknown or unusable key.
    pub async fn new(kms: Kms, key: &str, also_allowed: &[String]) -> Result<Self, KmsError> {
        let key = KeyRef::parse(key)?;
        let description = kms.describe(key.as_str()).await?;
        description.check_usable()?;
        let mut allowed = vec![description.arn.clone()];
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
        let mut arns = Vec::with_capacity(allowed.len());
        for key in allowed {
            arns.push(resolve(&kms, key).await?);
        }
        Ok(Self { kms, key_arn: String::new(), allowed: Allowed::Keys(arns) })
    }

    /// A decrypt-only keyring in discovery mode: any KMS key the caller is
    /// allowed to use may unwrap. Use only where the data's origin is trusted.
    pub fn discovery(kms: Kms) -> Self {
        Self { kms, key_arn: String::new(), allowed: Allowed::Discovery }
    }

    /// The client, for its counters.
    pub fn kms(&self) -> &Kms {
        &self.kms
    }

    fn allows(&self, arn: &str) -> bool {
        match &self.allowed {
            Allowed::Keys(keys) => keys.iter().any(|k| k == arn),
            Allowed::Discovery => true,
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
    ) -> Result<DataKey, KeyringError> {
        let mut last_error = None;
        for edk in edks.iter().filter(|e| self.can_unwrap(e)) {
            let pin = (!edk.key_id().is_empty()).then_some(edk.key_id());
            match self.kms.decrypt(edk.wrapped(), pin, context).await {
                Ok((key, used)) if self.allows(&used) => return Ok(key),
                Ok((_key, used)) => {
                    last_error = Some(KmsError::new(
                        KmsErrorKind::KeyNotAllowed,
                        "Decrypt",
                        &used,
                        format!("KMS decrypted with key {used}, which is not on the allow-list"),
                    ));
                }
                Err(e)
                    if matches!(
                        e.kind,
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

async fn resolve(kms: &Kms, key: &str) -> Result<String, KmsError> {
    let key = KeyRef::parse(key)?;
    // Key ARNs need no lookup; ids and aliases are resolved so that the ARNs
    // KMS puts in responses can be checked against the allow-list.
    if key.as_str().starts_with("arn:") && !key.is_alias() {
        return Ok(key.as_str().to_owned());
    }
    Ok(kms.describe(key.as_str()).await?.arn)
}

impl Keyring for KmsKeyring {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_arn
    }

    fn can_unwrap(&self, edk: &EncryptedDataKey) -> bool {
        edk.provider_id() == PROVIDER_ID
            && match &self.allowed {
                Allowed::Keys(keys) => keys.iter().any(|k| k == edk.key_id()),
                Allowed::Discovery => true,
            }
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
        Box::pin(self.unwrap_edks(edks, context))
    }

    /// KMS to KMS with ReEncrypt: the data key never enters this process.
    /// The source key is pinned to the key the wrapped key is labelled with,
    /// which must be allowed by `sources`, and the key KMS reports having
    /// decrypted with is checked against `sources` again before the result
    /// is used: a label is not proof. Other sources unwrap here and wrap.
    fn rewrap<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        source_context: &'a EncryptionContext,
        destination_context: &'a EncryptionContext,
        sources: &'a [&'a dyn Keyring],
    ) -> KeyringFuture<'a, Rewrapped> {
        Box::pin(async move {
            if edk.provider_id() != PROVIDER_ID {
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

//! AWS Encryption SDK messages (docs/format.md §14): binary, or its base64
//! text. Version 1 starts `01 80` (version, message type), version 2 `02`
//! and a committing suite id (`04 78` or `05 78`). Those bytes alone are a
//! weak magic (a random-IV legacy record may start with them), so an item
//! is claimed only when its whole header parses.

use envelope_core::EncryptedDataKey;
use envelope_core::esdk::{DecryptOptions, Header, StreamDecryptor, Suite, WrappedKeyRef};

use super::base::{CiphertextFormat, Description, FormatId, Migrate};

/// The SDK's provider id for AWS KMS wrapped keys (also kms-adapter's).
pub const KMS_PROVIDER_ID: &str = "aws-kms";

/// What scan says of messages on a suite without key commitment.
pub const NON_COMMITTING: Migrate = Migrate {
    key: "esdk_non_committing",
    note: "of them with no key commitment: move them with `rekey reencrypt --items esdk`",
};

/// Whether `bytes` start like a message of version 1 or 2.
pub fn has_esdk_prefix(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x01, 0x80]) || bytes.starts_with(&[0x02, 0x04, 0x78]) || bytes.starts_with(&[0x02, 0x05, 0x78])
}

/// What a reader that only describes accepts: every suite, and as many
/// wrapped keys as the format holds (labels only; nothing is decrypted).
pub fn describe_options() -> DecryptOptions {
    let mut options = DecryptOptions::allowing_non_committing();
    options.max_wrapped_keys = usize::from(u16::MAX);
    options
}

/// Runs `f` on the header of `bytes` when they start with a message header
/// that parses (the body is not read).
pub fn with_header<T>(bytes: &[u8], f: impl FnOnce(&Header<'_>) -> T) -> Option<T> {
    if !has_esdk_prefix(bytes) {
        return None;
    }
    let decryptor = StreamDecryptor::new(bytes, &describe_options()).ok()?;
    Some(f(&decryptor.header()))
}

/// A wrapped key as reports name it: `aws-kms:ARN` for KMS, and for the
/// raw AES keyring `NAMESPACE:KEYNAME` (its provider info ends with the tag
/// length, IV length and IV, which are not part of the name).
pub fn wrapped_key_label(key: &WrappedKeyRef<'_>) -> String {
    let info = key.provider_info();
    let name = match info.len().checked_sub(20) {
        Some(end)
            if key.provider_id() != KMS_PROVIDER_ID
                && info[end..end + 4] == 128u32.to_be_bytes()
                && info[end + 4..end + 8] == 12u32.to_be_bytes() =>
        {
            &info[..end]
        }
        _ => info,
    };
    format!("{}:{}", key.provider_id(), String::from_utf8_lossy(name))
}

/// A message's AWS KMS wrapped keys as rekey's (provider `aws-kms`, key id
/// the ARN), which kms-adapter's keyring unwraps as the SDK's KMS keyring
/// does (Decrypt with the key pinned, the message's context as the KMS
/// context). Other keyrings' (raw AES, raw RSA) are left out: no rekey key
/// reference names them.
pub fn kms_wrapped_keys<'a>(keys: impl Iterator<Item = WrappedKeyRef<'a>>) -> Vec<EncryptedDataKey> {
    keys.filter(|k| k.provider_id() == KMS_PROVIDER_ID)
        .filter_map(|k| {
            let arn = std::str::from_utf8(k.provider_info()).ok()?;
            EncryptedDataKey::new(KMS_PROVIDER_ID, arn, k.ciphertext().to_vec()).ok()
        })
        .collect()
}

/// The suite as scan and inspect name it, with what it lacks spelled out.
pub fn suite_label(suite: Suite) -> String {
    let commitment = if suite.is_committing() { "key commitment" } else { "no key commitment" };
    let signed = if suite.is_signed() { "signed" } else { "unsigned" };
    format!("{} [{commitment}, {signed}]", suite.name())
}

pub(super) struct EsdkFormat;

impl CiphertextFormat for EsdkFormat {
    fn id(&self) -> FormatId {
        FormatId::Esdk
    }

    fn binary_signature(&self, item: &[u8]) -> bool {
        with_header(item, |_| ()).is_some()
    }

    fn recognises(&self, decoded: &[u8], _text: Option<&str>) -> bool {
        with_header(decoded, |_| ()).is_some()
    }

    fn describe(&self, decoded: &[u8]) -> Description {
        with_header(decoded, |header| Description {
            keys: header.wrapped_keys().map(|k| wrapped_key_label(&k)).collect(),
            malformed: false,
            suite: Some(suite_label(header.suite())),
            migrate: (!header.suite().is_committing()).then_some(NON_COMMITTING),
        })
        .unwrap_or(Description { malformed: true, ..Description::default() })
    }
}

//! KMS key references: a key id, a key ARN, `alias/NAME` or an alias ARN.

use crate::error::{KmsError, KmsErrorKind};

/// A validated reference to a KMS key, as the caller wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef(String);

impl KeyRef {
    /// Checks the reference's shape.
    ///
    /// # Errors
    /// [`KmsErrorKind::Invalid`] with an explanation of the accepted forms.
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        let ok = if let Some(rest) = s.strip_prefix("arn:") {
            // arn:PARTITION:kms:REGION:ACCOUNT:key/ID or :alias/NAME
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            parts.len() == 5
                && parts[1] == "kms"
                && (parts[4].strip_prefix("key/").is_some_and(|id| !id.is_empty())
                    || parts[4].strip_prefix("alias/").is_some_and(|n| !n.is_empty()))
        } else if let Some(name) = s.strip_prefix("alias/") {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
        } else {
            !s.is_empty() && s.len() <= 2048 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(KmsError::new(
                KmsErrorKind::Invalid,
                "key reference",
                s,
                "not a KMS key reference: use a key id, a key ARN, alias/NAME or an alias ARN",
            ))
        }
    }

    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it names an alias rather than a key.
    pub fn is_alias(&self) -> bool {
        self.0.starts_with("alias/") || self.0.contains(":alias/")
    }
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        for good in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/app-key",
            "arn:aws:kms:us-east-1:111122223333:alias/app-key",
        ] {
            assert!(KeyRef::parse(good).is_ok(), "{good}");
        }
        assert!(KeyRef::parse("alias/app").expect("ok").is_alias());
        for bad in ["", "alias/", "arn:aws:s3:::bucket", "arn:aws:kms:us-east-1:1:key/", "key id with spaces"] {
            let err = KeyRef::parse(bad).expect_err(bad);
            assert_eq!(err.kind, KmsErrorKind::Invalid);
        }
    }
}

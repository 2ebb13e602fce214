//! KMS key references: a key id, a key ARN, `alias/NAME` or an alias ARN,
//! optionally followed by `?region=REGION&profile=NAME` to say which client
//! reaches the key.
//!
//! The qualifier is written after a `?` as in a URL query, because no key
//! id, alias name or ARN may contain one, so a reference without a qualifier
//! means what it always meant. A key or alias ARN carries its region
//! already: `region=` may repeat it but not contradict it.

use crate::error::{KmsError, KmsErrorKind};

/// A validated reference to a KMS key, as the caller wrote it, split into
/// the part KMS is sent and the client qualifiers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    written: String,
    /// Length of the key part: `written[..key_len]`.
    key_len: usize,
    region: Option<String>,
    profile: Option<String>,
}

/// What the caller is told for a malformed reference.
const FORMS: &str = "not a KMS key reference: use a key id, a key ARN, alias/NAME or an alias ARN, \
                     optionally followed by ?region=REGION and/or &profile=NAME";

impl KeyRef {
    /// Checks the reference's shape and parses its qualifiers.
    ///
    /// # Errors
    /// [`KmsErrorKind::Invalid`] with an explanation of the accepted forms,
    /// or of what is wrong with the qualifier.
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        let invalid = |why: &str| KmsError::new(KmsErrorKind::Invalid, "key reference", s, why);
        let (key, query) = match s.split_once('?') {
            Some((key, query)) => (key, Some(query)),
            None => (s, None),
        };
        if !key_shape_ok(key) {
            return Err(invalid(FORMS));
        }
        let arn_region = arn_region(key);
        let (mut region, mut profile) = (None, None);
        if let Some(query) = query {
            if query.is_empty() {
                return Err(invalid("an empty qualifier after `?`: write ?region=REGION, ?profile=NAME or both"));
            }
            for pair in query.split('&') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let slot = match name {
                    "region" => &mut region,
                    "profile" => &mut profile,
                    _ => {
                        return Err(invalid(&format!(
                            "unknown qualifier {name:?}: only region=REGION and profile=NAME are accepted"
                        )));
                    }
                };
                let valid = match name {
                    "region" => is_region(value),
                    _ => is_profile(value),
                };
                if !valid {
                    return Err(invalid(&format!(
                        "{name}={value:?} is not a valid {}",
                        if name == "region" { "AWS region (such as eu-west-1)" } else { "profile name" }
                    )));
                }
                if slot.replace(value.to_owned()).is_some() {
                    return Err(invalid(&format!("{name}= is given twice")));
                }
            }
        }
        if let (Some(asked), Some(in_arn)) = (&region, arn_region)
            && asked != in_arn
        {
            return Err(invalid(&format!(
                "the ARN is in {in_arn} but the qualifier says region={asked}: a key lives in one region; \
                 drop region= or use the ARN of the key (or replica) in {asked}"
            )));
        }
        Ok(Self {
            written: s.to_owned(),
            key_len: key.len(),
            region: region.or_else(|| arn_region.map(str::to_owned)),
            profile,
        })
    }

    /// The reference as written, qualifiers included.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The key part, as KMS is sent it: without the qualifiers.
    pub fn key(&self) -> &str {
        &self.written[..self.key_len]
    }

    /// The qualifiers as written, with their `?` (empty when there are none).
    pub fn qualifiers(&self) -> &str {
        &self.written[self.key_len..]
    }

    /// The region whose KMS holds the key: the `region=` qualifier, or the
    /// region of an ARN; `None` for the client's default region.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The AWS profile named by `profile=`; `None` for the default chain.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// Whether it names an alias rather than a key.
    pub fn is_alias(&self) -> bool {
        let key = self.key();
        key.starts_with("alias/") || key.contains(":alias/")
    }

    /// Whether the key part is a key ARN (not an alias ARN).
    pub fn is_key_arn(&self) -> bool {
        self.key().starts_with("arn:") && !self.is_alias()
    }

    /// Whether the key part is a key id: a UUID, or `mrk-` and 32 hex
    /// digits for a multi-Region key.
    pub fn is_key_id(&self) -> bool {
        is_key_id(self.key())
    }

    /// Neither an ARN, a key id nor `alias/…`: most often an alias name
    /// written without its `alias/` prefix.
    pub fn is_bare_name(&self) -> bool {
        !self.key().starts_with("arn:") && !self.is_alias() && !self.is_key_id()
    }
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

fn key_shape_ok(key: &str) -> bool {
    if let Some(rest) = key.strip_prefix("arn:") {
        // arn:PARTITION:kms:REGION:ACCOUNT:key/ID or :alias/NAME
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        parts.len() == 5
            && parts[1] == "kms"
            && (parts[4].strip_prefix("key/").is_some_and(|id| !id.is_empty())
                || parts[4].strip_prefix("alias/").is_some_and(|n| !n.is_empty()))
    } else if let Some(name) = key.strip_prefix("alias/") {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    } else {
        !key.is_empty() && key.len() <= 2048 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }
}

/// The region of a KMS key or alias ARN, `None` for anything else or an
/// empty region.
pub(crate) fn arn_region(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("arn:")?;
    let mut parts = rest.splitn(4, ':');
    let (_partition, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    (service == "kms" && is_region(region)).then_some(region)
}

/// The key id of a key ARN or the key id itself, for comparing keys
/// across regions.
fn key_id_of(key: &str) -> &str {
    key.rsplit_once(":key/").map_or(key, |(_, id)| id)
}

/// Whether two key ARNs name the same multi-Region key (in the same
/// partition and account), possibly in different regions.
pub(crate) fn same_multi_region_key(a: &str, b: &str) -> bool {
    let prefix = |arn: &str| {
        let rest = arn.strip_prefix("arn:")?;
        let mut parts = rest.splitn(5, ':');
        let (partition, service, _region, account) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        (service == "kms").then_some((partition.to_owned(), account.to_owned()))
    };
    let (id_a, id_b) = (key_id_of(a), key_id_of(b));
    id_a.starts_with("mrk-") && id_a == id_b && prefix(a).is_some() && prefix(a) == prefix(b)
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

fn is_profile(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+@/".contains(&b))
}

fn is_key_id(s: &str) -> bool {
    let hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    // KMS writes multi-Region ids as mrk- and 32 hex digits; local servers
    // as mrk- and a UUID.
    let s = match s.strip_prefix("mrk-") {
        Some(rest) if rest.len() == 32 => return hex(rest),
        Some(rest) => rest,
        None => s,
    };
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && hex(g))
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
            let key = KeyRef::parse(good).expect(good);
            assert_eq!((key.key(), key.qualifiers(), key.profile()), (good, "", None));
        }
        assert!(KeyRef::parse("alias/app").expect("ok").is_alias());
        for bad in ["", "alias/", "arn:aws:s3:::bucket", "arn:aws:kms:us-east-1:1:key/", "key id with spaces"] {
            let err = KeyRef::parse(bad).expect_err(bad);
            assert_eq!(err.kind(), KmsErrorKind::Invalid);
        }
    }

    #[test]
    fn regions_come_from_arns_and_qualifiers() {
        let arn = KeyRef::parse("arn:aws:kms:eu-west-1:111122223333:key/k?profile=prod").expect("arn");
        assert_eq!(
            (arn.key(), arn.region(), arn.profile()),
            ("arn:aws:kms:eu-west-1:111122223333:key/k", Some("eu-west-1"), Some("prod"))
        );
        assert!(arn.is_key_arn());
        let alias = KeyRef::parse("alias/app?region=eu-west-1&profile=prod").expect("alias");
        assert_eq!((alias.key(), alias.region(), alias.profile()), ("alias/app", Some("eu-west-1"), Some("prod")));
        assert_eq!(alias.qualifiers(), "?region=eu-west-1&profile=prod");
        assert_eq!(alias.as_str(), "alias/app?region=eu-west-1&profile=prod");
        let id = KeyRef::parse("mrk-1234abcd12ab34cd56ef1234567890ab?region=ap-south-1").expect("id");
        assert_eq!((id.region(), id.profile()), (Some("ap-south-1"), None));
        assert_eq!(KeyRef::parse("alias/app").expect("plain").region(), None);
        let same = KeyRef::parse("arn:aws:kms:eu-west-1:111122223333:alias/a?region=eu-west-1").expect("same");
        assert_eq!(same.region(), Some("eu-west-1"));
    }

    #[test]
    fn bad_qualifiers_say_what_is_wrong() {
        for (bad, why) in [
            ("alias/app?", "an empty qualifier"),
            ("alias/app?zone=a", "unknown qualifier \"zone\""),
            ("alias/app?region=", "region=\"\" is not a valid AWS region"),
            ("alias/app?region=EU WEST", "not a valid AWS region"),
            ("alias/app?profile=a&profile=b", "profile= is given twice"),
            ("alias/app?profile=a b", "not a valid profile name"),
            ("arn:aws:kms:us-east-1:111122223333:key/k?region=eu-west-1", "the ARN is in us-east-1"),
        ] {
            let err = KeyRef::parse(bad).expect_err(bad);
            assert_eq!(err.kind(), KmsErrorKind::Invalid);
            assert!(err.detail.contains(why), "{bad}: {}", err.detail);
        }
    }

    #[test]
    fn kinds() {
        assert!(KeyRef::parse("ux-key1").expect("bare").is_bare_name());
        assert!(KeyRef::parse("ux-key1?region=eu-west-1").expect("bare").is_bare_name());
        assert!(!KeyRef::parse("1234abcd-12ab-34cd-56ef-1234567890ab").expect("id").is_bare_name());
        assert!(!KeyRef::parse("mrk-1234abcd12ab34cd56ef1234567890ab").expect("mrk").is_bare_name());
        assert!(!KeyRef::parse("mrk-1234abcd-12ab-34cd-56ef-1234567890ab").expect("local mrk").is_bare_name());
        assert!(!KeyRef::parse("alias/x").expect("alias").is_bare_name());
        assert!(KeyRef::parse("mrk-1234").expect("short mrk").is_bare_name());
    }

    #[test]
    fn multi_region_keys_match_across_regions_only() {
        let east = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        let west = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        assert!(same_multi_region_key(east, west));
        assert!(!same_multi_region_key(east, &west.replace("111122223333", "444455556666")));
        assert!(!same_multi_region_key(
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert_eq!(arn_region(west), Some("eu-west-1"));
        assert_eq!(arn_region("alias/x"), None);
    }
}

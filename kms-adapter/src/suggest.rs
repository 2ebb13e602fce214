//! Why a key reference was not found, for a person: a bare name is most
//! often an alias written without `alias/`, and a mistyped alias is found
//! among the aliases that exist, when the caller may list them.

use crate::client::Kms;
use crate::error::{KmsError, KmsErrorKind};
use crate::keyref::KeyRef;

/// Aliases named in a message at most; the rest are counted.
const SHOWN: usize = 20;

impl Kms {
    /// Adds what can be found out to a DescribeKey "not found" error for
    /// `key` (as the caller wrote it), through this client (the one the
    /// request went to). One ListAliases call, for `alias/NAME` references.
    pub(crate) async fn explain_not_found(&self, key: &str, mut err: KmsError) -> KmsError {
        let Ok(parsed) = KeyRef::parse(key) else {
            return err;
        };
        if parsed.is_bare_name() {
            let name = parsed.key();
            err.help = Some(format!(
                "{name} is neither a key id, a key ARN nor an alias name: an alias is written alias/{name}"
            ));
            err.suggestion = Some(format!("alias/{name}{}", parsed.qualifiers()));
            return err;
        }
        // Only `alias/NAME`: an alias ARN may be in an account whose aliases
        // ListAliases does not show.
        let Some(wanted) = parsed.key().strip_prefix("alias/") else {
            return err;
        };
        let region = self.region().unwrap_or("the default region");
        match self.alias_names().await {
            Ok((names, more_pages)) => {
                // AWS managed aliases (alias/aws/…) belong to AWS services.
                let mut names: Vec<&str> =
                    names.iter().filter_map(|n| n.strip_prefix("alias/")).filter(|n| !n.starts_with("aws/")).collect();
                names.sort_unstable();
                err.help = Some(describe_aliases(&names, more_pages, region));
                err.suggestion = closest(wanted, &names).map(|n| format!("alias/{n}{}", parsed.qualifiers()));
            }
            Err(e) if e.kind() == KmsErrorKind::AccessDenied => {
                err.help =
                    Some(format!("the caller may not list the aliases of {region} (kms:ListAliases) to suggest one"));
            }
            Err(e) => {
                tracing::debug!("ListAliases for a suggestion failed: {e}");
            }
        }
        err
    }
}

fn describe_aliases(names: &[&str], more_pages: bool, region: &str) -> String {
    if names.is_empty() {
        return if more_pages {
            format!("no customer aliases on the first page of {region}'s aliases")
        } else {
            format!("there are no aliases in {region}")
        };
    }
    let shown: Vec<String> = names.iter().take(SHOWN).map(|n| format!("alias/{n}")).collect();
    let mut text = format!("the aliases in {region} are {}", shown.join(", "));
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    if more_pages {
        text.push_str(" (first page only)");
    }
    text
}

/// The name nearest to `wanted` by edit distance, if near enough to be a
/// typo: at most a third of its length, and at least two edits allowed.
/// The CLI suggests local key names with it too, as it does KMS aliases.
pub fn closest<'a>(wanted: &str, names: &[&'a str]) -> Option<&'a str> {
    let limit = (wanted.chars().count() / 3).max(2);
    names
        .iter()
        .map(|n| (edit_distance(wanted, n), *n))
        .filter(|(d, _)| *d > 0 && *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance over characters: insertions, deletions and
/// substitutions each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        for (a, b, d) in
            [("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3), ("ux-kye1", "ux-key1", 2), ("a", "a", 0)]
        {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
            assert_eq!(edit_distance(b, a), d, "{b} {a}");
        }
    }

    #[test]
    fn the_closest_near_name_is_suggested() {
        let names = ["orders", "ux-key1", "ux-key2-long"];
        assert_eq!(closest("ux-kye1", &names), Some("ux-key1"));
        assert_eq!(closest("order", &names), Some("orders"));
        assert_eq!(closest("billing", &names), None);
        assert_eq!(closest("orders", &names), None, "an exact name is not a suggestion");
    }

    #[test]
    fn alias_lists_read_as_sentences() {
        assert_eq!(describe_aliases(&[], false, "eu-west-1"), "there are no aliases in eu-west-1");
        assert_eq!(describe_aliases(&["a", "b"], false, "eu-west-1"), "the aliases in eu-west-1 are alias/a, alias/b");
        let many: Vec<String> = (0..25).map(|i| format!("k{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let text = describe_aliases(&many, true, "r");
        assert!(text.ends_with("alias/k19 and 5 more (first page only)"), "{text}");
    }
}

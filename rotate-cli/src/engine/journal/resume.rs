//! `--resume` needs the same run: parameters compared one by one, old journals in their own form.

use std::collections::BTreeMap;

use super::entry::*;
use crate::engine::error::Error;

/// The parameters holding an encryption context.
pub(super) const CONTEXT_PARAMS: [&str; 3] = ["source_context", "dest_context", "context"];

/// Parameters journals did not always record: a journal without one was
/// written before, and is not compared on it (so it can still be resumed).
pub(super) const RECORDED_LATER: [&str; 4] = ["source_keys", "kms_discovery", "legacy_key", "legacy_context"];

pub(super) fn check_same_run(before: &RunParams, now: &RunParams) -> Result<(), Error> {
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(now.keys()).collect();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|k| before.contains_key(*k) || !RECORDED_LATER.contains(&k.as_str()))
        .filter(|k| before.get(*k) != now.get(*k))
        .map(|k| {
            format!(
                "{k}: the journal has {}, this command has {}",
                before.get(k).map_or("nothing", String::as_str),
                now.get(k).map_or("nothing", String::as_str)
            )
        })
        .collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(Error::usage(format!("--resume needs the same command as the run it continues; {}", differences.join("; ")))
        .hint("rerun exactly the command that made this journal, or roll it back first"))
}

/// An encryption context as a run parameter: a JSON object, keys sorted.
pub fn context_param<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let map: BTreeMap<&str, &str> = pairs.into_iter().collect();
    serde_json::to_string(&map).unwrap_or_default()
}

/// `params` as a journal of `version` recorded them, for comparison.
pub(super) fn in_version_form(version: u32, params: &RunParams) -> RunParams {
    if version >= 3 { params.clone() } else { in_version_2_form(params) }
}

/// `params` with each context in version 2's form: the debug form of the
/// context (`{"k": "v"}`); `--context` of a re-encryption to a key was
/// optional there (`None`, `Some({...})`), a keyset run's was not.
pub(super) fn in_version_2_form(params: &RunParams) -> RunParams {
    let mut old = params.clone();
    let optional = !params.contains_key("keyset");
    for name in CONTEXT_PARAMS {
        let Some(value) = old.get_mut(name) else { continue };
        if name == "context" && optional && value.is_empty() {
            *value = "None".into();
            continue;
        }
        let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(value) else { continue };
        *value = if name == "context" && optional { format!("Some({map:?})") } else { format!("{map:?}") };
    }
    old
}

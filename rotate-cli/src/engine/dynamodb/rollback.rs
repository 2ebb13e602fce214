//! Putting back what a DynamoDB journal changed: each item only where it
//! still holds what rekey wrote, by a conditional `UpdateItem`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use super::client::{DynamoClient, describe, item_error};
use super::spec::{key_from_json, value_bytes, value_from_json};
use crate::engine::error::{Error, ErrorKind, ItemErrorCode};
use crate::engine::journal::{self, Entry, RollbackJournal};
use crate::engine::report::Summary;

/// Items restored at once.
const IN_FLIGHT: usize = 32;

/// One attribute to put back.
struct Restore {
    attribute: String,
    /// `None`: the attribute did not exist (a shadow): remove it.
    old: Option<AttributeValue>,
    new_sha256: String,
}

/// One journal entry's changes to one item.
struct Undo {
    table: String,
    key: HashMap<String, AttributeValue>,
    set: Vec<Restore>,
}

fn parse_undo(item: &str, undo: &Value) -> Result<Undo, Error> {
    let damaged = || Error::new(ErrorKind::BadInput, format!("the journal's undo record of {item} is damaged"));
    let set = undo["set"].as_array().ok_or_else(damaged)?;
    let set = set
        .iter()
        .map(|s| {
            let old = match &s["old"] {
                Value::Null => None,
                v => Some(value_from_json(v).ok_or_else(damaged)?),
            };
            Ok(Restore {
                attribute: s["attribute"].as_str().ok_or_else(damaged)?.to_owned(),
                old,
                new_sha256: s["new_sha256"].as_str().ok_or_else(damaged)?.to_owned(),
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Undo { table: undo["table"].as_str().ok_or_else(damaged)?.to_owned(), key: key_from_json(&undo["key"])?, set })
}

/// What became of one item.
enum Fate {
    Restored,
    AlreadyOriginal,
    Conflict(String),
}

/// Puts one item back through its entries, latest first: an item changed
/// twice (a resumed run) goes back step by step to its first original.
async fn restore_item(client: &DynamoClient, version: Option<&str>, name: &str, undos: Vec<Undo>) -> Fate {
    let mut outcome = Fate::AlreadyOriginal;
    for undo in undos {
        match restore_one(client, version, &undo).await {
            Ok(true) => outcome = Fate::Restored,
            Ok(false) => {}
            Err(why) => return Fate::Conflict(format!("{name}: {why}")),
        }
    }
    outcome
}

/// Restores one entry's attributes; `false` when the item already holds the originals.
async fn restore_one(client: &DynamoClient, version: Option<&str>, undo: &Undo) -> Result<bool, String> {
    let mut read: Vec<String> = undo.set.iter().map(|r| r.attribute.clone()).collect();
    read.extend(version.map(str::to_owned));
    let (tags, names) = super::spec::placeholders(&read);
    let now = client
        .client
        .get_item()
        .table_name(&undo.table)
        .set_key(Some(undo.key.clone()))
        .consistent_read(true)
        .projection_expression(tags.join(", "))
        .set_expression_attribute_names(Some(names))
        .send()
        .await
        .map_err(|e| format!("cannot read the item: {}", describe(&e)))?;
    let Some(now) = now.item else {
        return Err("the item is gone".into());
    };
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let (mut sets, mut removes, mut conditions) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in undo.set.iter().enumerate() {
        let current = now.get(&r.attribute);
        let hash = current.and_then(value_bytes).map(journal::sha256);
        let original = r.old.as_ref().and_then(value_bytes).map(journal::sha256);
        if hash.as_deref() != Some(r.new_sha256.as_str()) {
            if hash == original {
                continue;
            }
            return Err("changed since the run; left as it is".into());
        }
        let Some(current) = current else { continue };
        names.insert(format!("#a{i}"), r.attribute.clone());
        values.insert(format!(":w{i}"), current.clone());
        conditions.push(format!("#a{i} = :w{i}"));
        match &r.old {
            Some(old) => {
                values.insert(format!(":o{i}"), old.clone());
                sets.push(format!("#a{i} = :o{i}"));
            }
            None => removes.push(format!("#a{i}")),
        }
    }
    if conditions.is_empty() {
        return Ok(false);
    }
    if let Some(v) = version
        && let Some(AttributeValue::N(n)) = now.get(v)
        && let Ok(n) = n.parse::<i128>()
    {
        // The application's optimistic locking sees the change too.
        names.insert("#v".into(), v.to_owned());
        values.insert(":v".into(), AttributeValue::N(n.to_string()));
        values.insert(":v1".into(), AttributeValue::N((n + 1).to_string()));
        conditions.push("#v = :v".into());
        sets.push("#v = :v1".into());
    }
    let mut expression = String::new();
    if !sets.is_empty() {
        expression.push_str(&format!("SET {}", sets.join(", ")));
    }
    if !removes.is_empty() {
        expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
    }
    client
        .client
        .update_item()
        .table_name(&undo.table)
        .set_key(Some(undo.key.clone()))
        .update_expression(expression.trim())
        .condition_expression(conditions.join(" AND "))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .send()
        .await
        .map_err(|e| {
            let e = item_error("UpdateItem", &e);
            if e.code == ItemErrorCode::ChangedDuringRotation {
                "changed during the rollback; left as it is".to_owned()
            } else {
                e.message
            }
        })?;
    Ok(true)
}

/// Puts every item a DynamoDB journal changed back as it was, where the
/// item still holds what rekey wrote; items changed since are reported
/// and left alone.
///
/// # Errors
/// A damaged undo record.
pub async fn rollback(client: &DynamoClient, journal: &RollbackJournal) -> Result<(Summary, Vec<String>), Error> {
    let start = std::time::Instant::now();
    let entries = journal.entries();
    let version = journal.params().get("version_attribute").filter(|v| !v.is_empty()).cloned();
    // Latest first, grouped by item; abandoned changes never happened.
    let mut abandoned: HashSet<&str> = HashSet::new();
    let mut order: Vec<&str> = Vec::new();
    let mut per_item: HashMap<&str, Vec<Undo>> = HashMap::new();
    for entry in entries.iter().rev() {
        match entry {
            Entry::Abandoned { item } => {
                abandoned.insert(item);
            }
            Entry::Change { item, target, undo } if target == super::spec::KIND => {
                if abandoned.remove(item.as_str()) {
                    continue;
                }
                let undos = per_item.entry(item).or_default();
                if undos.is_empty() {
                    order.push(item);
                }
                undos.push(parse_undo(item, undo)?);
            }
            _ => {}
        }
    }
    let mut summary = Summary::new("rollback");
    let mut conflicts = Vec::new();
    let client = Arc::new(client.clone());
    let version = Arc::new(version);
    let mut tasks = tokio::task::JoinSet::new();
    let mut tally = |r: Fate, summary: &mut Summary| match r {
        Fate::Restored => summary.restored += 1,
        Fate::AlreadyOriginal => summary.counts.skipped += 1,
        Fate::Conflict(why) => {
            summary.counts.failed += 1;
            conflicts.push(why);
        }
    };
    for item in order {
        let undos = per_item.remove(item).unwrap_or_default();
        let (client, version, name) = (Arc::clone(&client), Arc::clone(&version), item.to_owned());
        tasks.spawn(async move { restore_item(&client, version.as_deref(), &name, undos).await });
        while tasks.len() >= IN_FLIGHT {
            if let Some(Ok(r)) = tasks.join_next().await {
                tally(r, &mut summary);
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.map_err(|e| Error::new(ErrorKind::Io, format!("internal error: a rollback task failed: {e}")))?;
        tally(r, &mut summary);
    }
    // Lines that could not be read are failures too: what they recorded is not undone.
    summary.counts.failed += journal.skipped().len() as u64;
    conflicts.extend(journal.skipped().iter().cloned());
    summary.elapsed = start.elapsed();
    Ok((summary, conflicts))
}

//! The sink that changes items: journal first, then one conditional
//! `UpdateItem` per DynamoDB item, and checkpoints in scan order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};

use super::client::item_error;
use super::source::{DynamoUnit, Table, position_json};
use super::spec::{key_to_json, value_to_json};
use crate::engine::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use crate::engine::item::Unit;
use crate::engine::journal::{self, Checkpoint, Entry, Journal};
use crate::engine::ports::{Rejected, Sink};
use crate::engine::report::Counts;
use crate::engine::table::{Cell, fit};
use crate::engine::transform::{ChangeKind, Outcome};

/// One attribute's change, as the journal keeps it for rollback.
struct Change {
    /// The attribute written (the original, or the `--into` shadow).
    attribute: String,
    /// The attribute whose value must still be the one read.
    guard: String,
    /// The value read.
    old: AttributeValue,
    /// The value written.
    new: AttributeValue,
    legacy: bool,
}

/// Writes changed items back, each only if unchanged since it was read.
#[derive(Debug, Default)]
pub struct DynamoSink {
    journal: OnceLock<Arc<Journal>>,
    /// Where each segment's scan may resume, as of the units committed.
    positions: Mutex<BTreeMap<u32, String>>,
    segments: u32,
}

impl DynamoSink {
    /// A sink for a table scanned in `segments` segments.
    pub fn new(segments: u32) -> Arc<Self> {
        Arc::new(Self { segments, ..Self::default() })
    }
}

/// The new value in the type the attribute had: binary stays binary, text stays text.
fn fitted(old: &AttributeValue, new: Vec<u8>, kind: ChangeKind) -> Result<AttributeValue, ItemError> {
    let cell = match old {
        AttributeValue::B(b) => Cell::Blob(b.as_ref().to_vec()),
        _ => Cell::Text(Vec::new()),
    };
    match fit(&cell, new, kind)? {
        Cell::Blob(b) => Ok(AttributeValue::B(Blob::new(b))),
        Cell::Text(t) => {
            Ok(AttributeValue::S(String::from_utf8(t).map_err(|_| ItemError::input("the new value is not text"))?))
        }
        Cell::Null => Err(ItemError::input("internal error: an empty new value")),
    }
}

/// The journal's undo record of one item's changes.
fn undo(unit: &Unit<DynamoUnit>, changes: &[Change], version: Option<&AttributeValue>) -> Value {
    let into = unit.payload.table.spec.into.is_some();
    let set: Vec<Value> = changes
        .iter()
        .map(|c| {
            let new = super::spec::value_bytes(&c.new).unwrap_or_default();
            json!({
                "attribute": c.attribute,
                // A shadow attribute did not exist before: rollback removes it.
                "old": if into { Value::Null } else { value_to_json(&c.old) },
                "new_sha256": journal::sha256(new),
                "legacy": c.legacy,
            })
        })
        .collect();
    json!({
        "table": unit.payload.table.spec.table,
        "key": key_to_json(&unit.payload.key),
        "set": set,
        "version": version.map(value_to_json),
    })
}

/// The version attribute's next value: one more than `read`.
fn bumped(read: &AttributeValue) -> Result<AttributeValue, ItemError> {
    let n =
        read.as_n().ok().and_then(|n| n.parse::<i128>().ok()).ok_or_else(|| {
            ItemError::new(ItemErrorCode::BadInput, "the version attribute is not an integer number (N)")
        })?;
    Ok(AttributeValue::N((n + 1).to_string()))
}

/// One UpdateItem: sets every change (and bumps the version), only if the
/// item still holds what was read.
async fn update(
    table: &Table,
    key: &HashMap<String, AttributeValue>,
    changes: &[Change],
    version: Option<&AttributeValue>,
) -> Result<(), ItemError> {
    let spec = &table.spec;
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut sets = Vec::new();
    let mut conditions = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        names.insert(format!("#s{i}"), c.attribute.clone());
        names.insert(format!("#g{i}"), c.guard.clone());
        values.insert(format!(":n{i}"), c.new.clone());
        values.insert(format!(":o{i}"), c.old.clone());
        sets.push(format!("#s{i} = :n{i}"));
        conditions.push(format!("#g{i} = :o{i}"));
        if c.attribute != c.guard {
            conditions.push(format!("attribute_not_exists(#s{i})"));
        }
    }
    if let Some(name) = &spec.version_attribute {
        names.insert("#v".into(), name.clone());
        match version {
            Some(read) => {
                values.insert(":v".into(), read.clone());
                values.insert(":v1".into(), bumped(read)?);
                conditions.push("#v = :v".into());
                sets.push("#v = :v1".into());
            }
            None => conditions.push("attribute_not_exists(#v)".into()),
        }
    }
    table
        .client
        .client
        .update_item()
        .table_name(&spec.table)
        .set_key(Some(key.clone()))
        .update_expression(format!("SET {}", sets.join(", ")))
        .condition_expression(conditions.join(" AND "))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| item_error("UpdateItem", &e))
}

impl Sink<DynamoUnit> for DynamoSink {
    fn start(&self, journal: Option<Arc<Journal>>, checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        let journal = journal.ok_or_else(|| Error::usage("changing DynamoDB items needs a journal"))?;
        let _ = self.journal.set(journal);
        // A resumed run keeps the positions of the segments it does not reach again.
        if let Some(position) = checkpoint.and_then(|c| c.position.as_deref())
            && let Ok(v) = serde_json::from_str::<Value>(position)
            && let Some(at) = v["at"].as_object()
        {
            let mut positions = self.positions.lock().map_err(|_| poisoned())?;
            for (segment, at) in at {
                if let Ok(segment) = segment.parse() {
                    positions.insert(segment, at.as_str().map_or_else(|| at.to_string(), str::to_owned));
                }
            }
        }
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<DynamoUnit>) -> Result<(), ItemError> {
        let spec = &unit.payload.table.spec;
        if let Some(probe) = &unit.payload.table.probe {
            for item in &mut unit.items {
                probe.rescue(item).await;
            }
        }
        let mut changes = Vec::new();
        for (i, item) in unit.items.iter_mut().enumerate() {
            let Some(Ok(Outcome::Changed { new, kind, .. })) = &mut item.result else {
                continue;
            };
            let kind = *kind;
            let Some(old) = unit.payload.values[i].clone() else {
                continue;
            };
            match fitted(&old, std::mem::take(new), kind) {
                Ok(value) => {
                    let guard = spec.attributes[i].clone();
                    let attribute = spec.into.clone().unwrap_or_else(|| guard.clone());
                    changes.push(Change { attribute, guard, old, new: value, legacy: kind == ChangeKind::FromLegacy });
                }
                Err(e) => item.result = Some(Err(e)),
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let journal = self.journal.get().ok_or_else(|| ItemError::new(ItemErrorCode::Io, "no journal"))?;
        let version = unit.payload.version.as_ref();
        let entry = Entry::Change {
            item: unit.id.clone(),
            target: super::spec::KIND.into(),
            undo: undo(unit, &changes, version),
        };
        let io = |e: Error| ItemError::new(ItemErrorCode::Io, format!("cannot write the journal: {e}"));
        journal.append(&entry, true).map_err(io)?;
        match update(&unit.payload.table, &unit.payload.key, &changes, version).await {
            Ok(()) => journal.append(&Entry::Done { item: unit.id.clone() }, false).map_err(io),
            Err(e) => {
                if e.code == ItemErrorCode::ChangedDuringRotation {
                    journal.append(&Entry::Abandoned { item: unit.id.clone() }, false).map_err(io)?;
                }
                Err(e)
            }
        }
    }

    fn commit(&self, unit: Unit<DynamoUnit>, counts: &Counts) -> Result<Vec<Rejected>, Error> {
        if unit.payload.positions.is_empty() {
            return Ok(Vec::new());
        }
        // Units commit in scan order: every item of these pages is written or failed.
        let mut positions = self.positions.lock().map_err(|_| poisoned())?;
        positions.extend(unit.payload.positions);
        let at = Checkpoint {
            records: counts.items() + counts.not_selected,
            output_bytes: 0,
            position: Some(position_json(self.segments, &positions)),
        };
        if let Some(journal) = self.journal.get() {
            journal.append(&Entry::Checkpoint { at, counts: *counts }, false)?;
        }
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        if let Some(journal) = self.journal.get() {
            journal.sync()?;
        }
        Ok(Vec::new())
    }
}

fn poisoned() -> Error {
    Error::new(ErrorKind::Io, "internal error: the checkpoint lock is poisoned")
}

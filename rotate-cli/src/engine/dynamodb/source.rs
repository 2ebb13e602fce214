//! The items of a table, by parallel `Scan`: one task per segment of this
//! shard, each a page at a time, handing items to the engine through one
//! bounded channel (a slow engine slows the scans, memory stays bounded).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use envelope_core::EncryptionContext;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::client::{DynamoClient, run_error};
use super::spec::{DynamoSpec, item_id, key_from_json, key_to_json, placeholders, type_name, value_bytes};
use crate::engine::Shard;
use crate::engine::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use crate::engine::item::{Item, Unit};
use crate::engine::journal::Checkpoint;
use crate::engine::ports::Source;
use crate::engine::s3::Probe;
use crate::engine::transform::Outcome;

/// Items waiting between the scans and the engine.
const QUEUE: usize = 4096;

/// Where a segment's scan is: after this last evaluated key, or finished.
pub(super) const SEGMENT_DONE: &str = "done";

/// The table as a run sees it.
#[derive(Debug)]
pub(super) struct Table {
    pub(super) client: DynamoClient,
    pub(super) spec: DynamoSpec,
    /// The key attributes, partition key first.
    pub(super) key_names: Vec<String>,
    /// A rewrap of bare data keys: tells blobs under the destination already (a rerun) from failures.
    pub(super) probe: Option<Probe>,
}

/// What a unit (one DynamoDB item) carries.
#[derive(Debug)]
pub struct DynamoUnit {
    pub(super) table: Arc<Table>,
    /// The item's key attributes.
    pub(super) key: HashMap<String, AttributeValue>,
    /// The rotated attributes' values as read, in `--attribute` order (`None`: absent).
    pub(super) values: Vec<Option<AttributeValue>>,
    /// The version attribute's value as read.
    pub(super) version: Option<AttributeValue>,
    /// The context attributes' values as text (`None`: absent or not a string or number).
    context: Vec<Option<String>>,
    /// With `--into`: the shadow attribute is filled already.
    shadow_filled: bool,
    /// Scan pages that end before this unit: once it is committed, their
    /// segments may resume after these keys.
    pub(super) positions: Vec<(u32, String)>,
}

enum Msg {
    Item(HashMap<String, AttributeValue>),
    PageEnd(u32, String),
    Failed(Error),
}

/// The items of one table, scanned in parallel segments.
pub struct DynamoSource {
    table: Arc<Table>,
    /// This process's segments and where each starts (`None`: at the beginning).
    segments: BTreeMap<u32, Option<HashMap<String, AttributeValue>>>,
    rx: Option<mpsc::Receiver<Msg>>,
    /// Page ends seen since the last unit handed out.
    positions: Vec<(u32, String)>,
}

impl DynamoSource {
    /// Reads the table's key schema (DescribeTable) and checks the spec
    /// against it; `shard` takes every Nth segment. `probe` (a rewrap of
    /// bare data keys) lets a rerun skip blobs under the destination.
    ///
    /// # Errors
    /// Usage errors (a key attribute named as rotated, more shards than
    /// segments), or DynamoDB's (no such table, access denied).
    pub async fn open(
        client: DynamoClient,
        spec: DynamoSpec,
        shard: Option<Shard>,
        probe: Option<Probe>,
    ) -> Result<Self, Error> {
        spec.check()?;
        let described = client
            .client
            .describe_table()
            .table_name(&spec.table)
            .send()
            .await
            .map_err(|e| run_error(&format!("cannot describe table {}", spec.table), &e))?;
        let schema = described.table().map(|t| t.key_schema()).unwrap_or_default();
        let mut key_names: Vec<(bool, String)> =
            schema.iter().map(|k| (k.key_type().as_str() != "HASH", k.attribute_name().to_owned())).collect();
        key_names.sort();
        let key_names: Vec<String> = key_names.into_iter().map(|(_, n)| n).collect();
        if key_names.is_empty() {
            return Err(Error::new(ErrorKind::Io, format!("DynamoDB gave no key schema for table {}", spec.table)));
        }
        if let Some(name) = spec.written().iter().find(|n| key_names.contains(n)) {
            return Err(Error::usage(format!("{name:?} is a key attribute of {}; keys cannot be rotated", spec.table)));
        }
        let total = u64::from(spec.segments);
        if let Some(s) = shard
            && s.count > total
        {
            return Err(Error::usage(format!("--shard {s} needs at least {} --segments", s.count))
                .hint("every shard process scans its own segments: give them all the same --segments N >= shards"));
        }
        let segments = (0..spec.segments).filter(|s| shard.is_none_or(|sh| u64::from(*s) % sh.count == sh.index));
        let segments = segments.map(|s| (s, None)).collect();
        let table = Arc::new(Table { client, spec, key_names, probe });
        Ok(Self { table, segments, rx: None, positions: Vec::new() })
    }

    /// Starts one scan task per segment of this process.
    fn start(&mut self) -> Result<(), Error> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::new(ErrorKind::Io, "internal error: a DynamoDB scan outside the runtime"))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        for (segment, start) in std::mem::take(&mut self.segments) {
            handle.spawn(scan_segment(Arc::clone(&self.table), segment, start, tx.clone()));
        }
        self.rx = Some(rx);
        Ok(())
    }

    fn unit(&mut self, mut item: HashMap<String, AttributeValue>) -> Unit<DynamoUnit> {
        let table = Arc::clone(&self.table);
        let spec = &table.spec;
        let key: HashMap<String, AttributeValue> =
            table.key_names.iter().filter_map(|k| item.remove_entry(k)).collect();
        let id = item_id(&spec.table, &table.key_names, &key);
        let context = spec
            .context_attributes
            .iter()
            .map(|n| match item.get(n) {
                Some(AttributeValue::S(s) | AttributeValue::N(s)) => Some(s.clone()),
                _ => key.get(n).and_then(|v| v.as_s().or_else(|_| v.as_n()).ok().cloned()),
            })
            .collect();
        let values = spec.attributes.iter().map(|n| item.remove(n)).collect();
        let shadow_filled = spec.into.as_ref().is_some_and(|n| item.contains_key(n));
        let version = spec.version_attribute.as_ref().and_then(|n| item.remove(n));
        let positions = std::mem::take(&mut self.positions);
        Unit::new(id, DynamoUnit { table, key, values, version, context, shadow_filled, positions })
    }
}

/// Scans one segment from `start`, page by page, into `tx`.
async fn scan_segment(
    table: Arc<Table>,
    segment: u32,
    mut start: Option<HashMap<String, AttributeValue>>,
    tx: mpsc::Sender<Msg>,
) {
    let mut read: Vec<String> = table.key_names.clone();
    read.extend(table.spec.written());
    read.extend(table.spec.context_attributes.iter().filter(|n| !table.key_names.contains(n)).cloned());
    let (tags, names) = placeholders(&read);
    let projection = tags.join(", ");
    loop {
        let page = table
            .client
            .client
            .scan()
            .table_name(&table.spec.table)
            .segment(i32::try_from(segment).unwrap_or(i32::MAX))
            .total_segments(i32::try_from(table.spec.segments).unwrap_or(i32::MAX))
            .projection_expression(&projection)
            .set_expression_attribute_names(Some(names.clone()))
            // A stale read would only fail its update's condition; a consistent one avoids that.
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                let what = format!("cannot scan segment {segment} of {}", table.spec.table);
                let e = run_error(&what, &e).hint("the pages before are checkpointed: rerun with --resume");
                let _ = tx.send(Msg::Failed(e)).await;
                return;
            }
        };
        for item in page.items.unwrap_or_default() {
            if tx.send(Msg::Item(item)).await.is_err() {
                return;
            }
        }
        let position =
            page.last_evaluated_key.as_ref().map_or_else(|| SEGMENT_DONE.to_owned(), |k| key_to_json(k).to_string());
        if tx.send(Msg::PageEnd(segment, position)).await.is_err() {
            return;
        }
        match page.last_evaluated_key {
            Some(k) => start = Some(k),
            None => return,
        }
    }
}

/// A checkpoint's position: the segment count and where each segment is.
pub(super) fn position_json(segments: u32, at: &BTreeMap<u32, String>) -> String {
    let at: serde_json::Map<String, Value> = at
        .iter()
        .map(|(s, p)| {
            let v =
                if p == SEGMENT_DONE { json!(SEGMENT_DONE) } else { serde_json::from_str(p).unwrap_or(Value::Null) };
            (s.to_string(), v)
        })
        .collect();
    json!({ "segments": segments, "at": at }).to_string()
}

impl Source for DynamoSource {
    type Payload = DynamoUnit;
    const BATCH: usize = 32;

    fn next_unit(&mut self) -> Result<Option<Unit<DynamoUnit>>, Error> {
        if self.rx.is_none() {
            self.start()?;
        }
        loop {
            let Some(rx) = self.rx.as_mut() else {
                return Ok(None);
            };
            let msg = crate::engine::s3::blocking(|| rx.blocking_recv());
            match msg {
                Some(Msg::Item(item)) => return Ok(Some(self.unit(item))),
                Some(Msg::PageEnd(segment, position)) => self.positions.push((segment, position)),
                Some(Msg::Failed(e)) => return Err(e),
                None => return Ok(None),
            }
        }
    }

    fn resume(&mut self, checkpoint: &Checkpoint) -> Result<(), Error> {
        let Some(position) = &checkpoint.position else {
            return Ok(());
        };
        let damaged =
            || Error::new(ErrorKind::BadInput, format!("the journal holds a damaged scan position: {position}"));
        let v: Value = serde_json::from_str(position).map_err(|_| damaged())?;
        if v["segments"].as_u64() != Some(u64::from(self.table.spec.segments)) {
            return Err(Error::usage(format!("the run being resumed scanned {} segments", v["segments"]))
                .hint("resume with the same --segments"));
        }
        let Some(at) = v["at"].as_object() else {
            return Err(damaged());
        };
        for (segment, at) in at {
            let segment: u32 = segment.parse().map_err(|_| damaged())?;
            if at.as_str() == Some(SEGMENT_DONE) {
                self.segments.remove(&segment);
            } else if let Some(start) = self.segments.get_mut(&segment) {
                *start = Some(key_from_json(at)?);
            }
        }
        Ok(())
    }

    async fn load(unit: &mut Unit<DynamoUnit>) -> Result<(), ItemError> {
        let payload = &unit.payload;
        let spec = &payload.table.spec;
        let mut context = EncryptionContext::new();
        let mut context_error = None;
        for (name, value) in spec.context_attributes.iter().zip(&payload.context) {
            match value {
                Some(v) => {
                    if let Err(e) = context.insert(name.clone(), v.clone()) {
                        context_error = Some(format!("context attribute {name}: {e}"));
                    }
                }
                None => {
                    context_error = Some(format!(
                        "context attribute {name} is absent (or not a string or number): the item cannot be bound to it"
                    ));
                }
            }
        }
        unit.items = spec
            .attributes
            .iter()
            .zip(&payload.values)
            .map(|(name, value)| {
                let bytes = value.as_ref().and_then(value_bytes).map(<[u8]>::to_vec).unwrap_or_default();
                let mut item = Item::new(format!("{} {name}", unit.id), bytes);
                item.context = context.clone();
                if payload.shadow_filled {
                    item.result = Some(Ok(Outcome::Skipped));
                } else if let Some(v) = value.as_ref().filter(|v| value_bytes(v).is_none()) {
                    item.result = Some(Err(ItemError::new(
                        ItemErrorCode::BadInput,
                        format!(
                            "attribute {name} is {}; rekey rotates binary (B) and string (S) attributes",
                            type_name(v)
                        ),
                    )));
                } else if let Some(message) = &context_error
                    && value.is_some()
                {
                    item.result = Some(Err(ItemError::new(ItemErrorCode::MissingField, message.clone())));
                }
                item
            })
            .collect();
        if let Some(probe) = &unit.payload.table.probe {
            for item in &mut unit.items {
                probe.skip_if_done(item).await;
            }
        }
        Ok(())
    }
}

//! Reading records: JSON Lines or CSV, one unit per record, items found by pointer or column.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::engine::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use crate::engine::item::{Item, Unit};
use crate::engine::ports::Source;

/// Time between durable checkpoints: a crash costs at most this much work again.
pub(super) const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest record accepted.
pub(super) const MAX_RECORD: usize = 64 << 20;

/// How records are laid out.
#[derive(Debug, Clone)]
pub enum RecordFormat {
    /// JSON Lines; the items are string values at these JSON Pointers.
    JsonLines(Vec<String>),
    /// CSV with a header row; the items are in these columns.
    Csv(Vec<String>),
}

/// Where the items of a record are.
#[derive(Debug)]
pub(super) enum Fields {
    Json(Vec<String>),
    /// Column names and their indexes.
    Csv(Vec<(String, usize)>),
}

/// What a record unit carries.
#[derive(Debug)]
pub struct RecordUnit {
    pub(super) number: u64,
    /// The record exactly as read, line ending included.
    pub(super) raw: Vec<u8>,
    pub(super) fields: Arc<Fields>,
    /// Per JSON field: where its value's literal is in `raw`, when it is a
    /// plain top-level string (then a change is spliced in exactly).
    pub(super) spans: Vec<Option<Range<usize>>>,
    /// The changed record, when an item changed.
    pub(super) output: Option<Vec<u8>>,
}

/// Reads records one by one, keeping their exact bytes.
pub struct RecordSource {
    input: BufReader<Box<dyn Read + Send>>,
    /// The input's size, when it is a file; bytes read so far.
    size: Option<u64>,
    read: u64,
    csv: bool,
    fields: Arc<Fields>,
    header: Option<Vec<u8>>,
    number: u64,
    _lock: Option<File>,
}

impl RecordSource {
    /// Opens `input` (`-` for stdin) and checks the format: for CSV, the
    /// header row must name every column asked for. Locks an input file
    /// for the run, so two runs cannot work on one stream at once.
    ///
    /// # Errors
    /// An unreadable input, a bad JSON Pointer, a missing column (listing
    /// the real ones), or an input another run holds.
    pub fn open(input: &Path, format: &RecordFormat) -> Result<Self, Error> {
        let size = std::fs::metadata(input).ok().filter(std::fs::Metadata::is_file).map(|m| m.len());
        let (reader, lock): (Box<dyn Read + Send>, _) = if input == Path::new("-") {
            (Box::new(io::stdin()), None)
        } else {
            let file = File::open(input).map_err(|e| Error::io(format!("cannot open {}", input.display()), &e))?;
            let lock = file.try_clone().map_err(|e| Error::io("cannot lock the input", &e))?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::usage(format!("another rekey run is reading {} right now", input.display()))
                        .hint("two runs on one target cannot run at once: wait for it, or stop it and rerun with --resume"));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("cannot lock the input", &e)),
            }
            (Box::new(file), Some(lock))
        };
        let mut source = Self {
            input: BufReader::with_capacity(1 << 16, reader),
            size: if input == Path::new("-") { None } else { size },
            read: 0,
            csv: matches!(format, RecordFormat::Csv(_)),
            fields: Arc::new(Fields::Json(Vec::new())),
            header: None,
            number: 0,
            _lock: lock,
        };
        source.fields = Arc::new(match format {
            RecordFormat::JsonLines(pointers) => {
                for p in pointers {
                    if !p.starts_with('/') {
                        return Err(Error::usage(format!(
                            "--field {p:?} is not a JSON Pointer; write it as /name or /outer/inner"
                        )));
                    }
                }
                Fields::Json(pointers.clone())
            }
            RecordFormat::Csv(columns) => {
                let header = source
                    .read_raw()?
                    .ok_or_else(|| Error::new(ErrorKind::BadInput, "the CSV input is empty: no header row"))?;
                let names = parse_csv(&header)
                    .map_err(|e| Error::new(ErrorKind::BadInput, format!("cannot read the CSV header: {e}")))?;
                let mut indexes = Vec::new();
                for c in columns {
                    let index = names.iter().position(|h| h == c.as_bytes()).ok_or_else(|| {
                        let real: Vec<String> = names.iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
                        Error::usage(format!("the CSV has no column {c:?}; its columns are: {}", real.join(", ")))
                    })?;
                    indexes.push((c.clone(), index));
                }
                source.header = Some(header);
                Fields::Csv(indexes)
            }
        });
        Ok(source)
    }

    /// The CSV header row as read, which the output starts with.
    pub fn header(&self) -> Option<&[u8]> {
        self.header.as_deref()
    }

    /// The next record's exact bytes: a line, or for CSV a row whose quoted
    /// fields may span lines.
    fn read_raw(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut raw = Vec::new();
        let mut quotes = 0usize;
        loop {
            let start = raw.len();
            // At most one byte past the limit: a longer line is never read into memory whole.
            let room = (MAX_RECORD + 1).saturating_sub(raw.len()) as u64;
            let n = (&mut self.input)
                .take(room)
                .read_until(b'\n', &mut raw)
                .map_err(|e| Error::io("cannot read the input", &e))?;
            self.read += n as u64;
            if n == 0 {
                return Ok((!raw.is_empty()).then_some(raw));
            }
            if raw.len() > MAX_RECORD {
                return Err(Error::new(
                    ErrorKind::BadInput,
                    format!("record {} is longer than 64 MiB", self.number + 1),
                ));
            }
            if !self.csv {
                return Ok(Some(raw));
            }
            quotes += raw[start..].iter().filter(|b| **b == b'"').count();
            if quotes.is_multiple_of(2) {
                return Ok(Some(raw));
            }
        }
    }
}

impl Source for RecordSource {
    type Payload = RecordUnit;
    const BATCH: usize = 64;

    fn next_unit(&mut self) -> Result<Option<Unit<RecordUnit>>, Error> {
        let Some(raw) = self.read_raw()? else {
            return Ok(None);
        };
        self.number += 1;
        let unit =
            RecordUnit { number: self.number, raw, fields: Arc::clone(&self.fields), spans: Vec::new(), output: None };
        Ok(Some(Unit::new(format!("record {}", self.number), unit)))
    }

    fn bytes(&self) -> Option<(u64, u64)> {
        self.size.map(|size| (self.read, size))
    }

    async fn load(unit: &mut Unit<RecordUnit>) -> Result<(), ItemError> {
        let record = &mut unit.payload;
        let body = strip_line_ending(&record.raw);
        let number = record.number;
        let name = |field: &str| format!("record {number} {field}");
        unit.items = match &*record.fields {
            Fields::Json(pointers) => match top_level_fields(body, pointers) {
                // The common case: top-level fields, read in place, their spans kept.
                Some(fields) => {
                    let mut items = Vec::with_capacity(pointers.len());
                    record.spans = Vec::with_capacity(pointers.len());
                    for (p, field) in pointers.iter().zip(fields) {
                        let (item, span) = match field {
                            Field::Plain(span) => {
                                (Item::new(name(p), body[span.start + 1..span.end - 1].to_vec()), Some(span))
                            }
                            Field::Escaped(text) => (Item::new(name(p), text.into_bytes()), None),
                            Field::Null => (Item::new(name(p), Vec::new()), None),
                            Field::Missing => (missing_field(name(p), p, body), None),
                            Field::Duplicate => (duplicate_item(name(p), p), None),
                        };
                        items.push(item);
                        record.spans.push(span);
                    }
                    items
                }
                None => {
                    let value: serde_json::Value = serde_json::from_slice(body)
                        .map_err(|e| ItemError::input(format!("the record is not JSON: {e}")))?;
                    pointers
                        .iter()
                        .map(|p| match value.pointer(p) {
                            _ if duplicated_on_path(body, p) => duplicate_item(name(p), p),
                            Some(serde_json::Value::String(s)) => Item::new(name(p), s.clone().into_bytes()),
                            Some(serde_json::Value::Null) => Item::new(name(p), Vec::new()),
                            _ => missing_field(name(p), p, body),
                        })
                        .collect()
                }
            },
            Fields::Csv(columns) => {
                let row = parse_csv(body).map_err(|e| ItemError::input(format!("bad CSV row: {e}")))?;
                columns
                    .iter()
                    .map(|(column, index)| match row.get(*index) {
                        Some(value) => Item::new(name(column), value.clone()),
                        None => failed_item(
                            name(column),
                            &format!("the row has {} fields; column {column:?} is field {}", row.len(), index + 1),
                        ),
                    })
                    .collect()
            }
        };
        Ok(())
    }
}

/// A top-level string field of a JSON record.
pub(super) enum Field {
    /// A literal without escapes, at this span (quotes included).
    Plain(Range<usize>),
    /// A literal with escapes, decoded.
    Escaped(String),
    Null,
    /// Missing, or not a string.
    Missing,
    /// The object holds the key more than once.
    Duplicate,
}

/// The fields at one-segment pointers (`/name`) of a JSON object, read in
/// place without building the whole value; `None` when a pointer is deeper,
/// a key is escaped or the record is not a plain object (the caller then
/// parses the whole value, and reports what is wrong with it).
pub(super) fn top_level_fields(body: &[u8], pointers: &[String]) -> Option<Vec<Field>> {
    let keys: Vec<&str> =
        pointers.iter().map(|p| p.strip_prefix('/').filter(|k| !k.contains(['/', '~']))).collect::<Option<_>>()?;
    let map: Entries<&str> = serde_json::from_slice(body).ok()?;
    let base = body.as_ptr() as usize;
    Some(
        keys.iter()
            .map(|key| match map.get(key).map(|raw| raw.get()) {
                _ if map.count(key) > 1 => Field::Duplicate,
                Some("null") => Field::Null,
                Some(text) if text.starts_with('"') && !text.contains('\\') => {
                    let start = text.as_ptr() as usize - base;
                    Field::Plain(start..start + text.len())
                }
                Some(text) if text.starts_with('"') => {
                    serde_json::from_str(text).map_or(Field::Missing, Field::Escaped)
                }
                _ => Field::Missing,
            })
            .collect(),
    )
}

/// A JSON object's entries in order, duplicates kept: a map would keep
/// only the last of a key written twice, and so hide it.
pub(super) struct Entries<'de, K>(Vec<(K, &'de serde_json::value::RawValue)>);

impl<'de, K: AsRef<str>> Entries<'de, K> {
    /// The last value of `key` (as serde and most parsers read it).
    fn get(&self, key: &str) -> Option<&'de serde_json::value::RawValue> {
        self.0.iter().rev().find(|(k, _)| k.as_ref() == key).map(|(_, v)| *v)
    }

    /// How many times `key` occurs.
    fn count(&self, key: &str) -> usize {
        self.0.iter().filter(|(k, _)| k.as_ref() == key).count()
    }
}

impl<'de, K: serde::Deserialize<'de>> serde::Deserialize<'de> for Entries<'de, K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<K>(std::marker::PhantomData<K>);
        impl<'de, K: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<K> {
            type Value = Entries<'de, K>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// Whether an object on the way to `pointer` (or the last one) holds the
/// next key more than once.
pub(super) fn duplicated_on_path(body: &[u8], pointer: &str) -> bool {
    let mut at = body;
    for segment in pointer.split('/').skip(1) {
        let key = segment.replace("~1", "/").replace("~0", "~");
        let Ok(object) = serde_json::from_slice::<Entries<String>>(at) else {
            return false; // an array, or the end of the path
        };
        if object.count(&key) > 1 {
            return true;
        }
        match object.get(&key) {
            Some(next) => at = next.get().as_bytes(),
            None => return false,
        }
    }
    false
}

/// A field the record holds more than once.
pub(super) fn duplicate_item(name: String, pointer: &str) -> Item {
    let mut item = Item::new(name, Vec::new());
    item.result = Some(Err(ItemError::new(
        ItemErrorCode::DuplicateField,
        format!(
            "the record holds the field {pointer} more than once; parsers disagree on which one counts, so the \
             record is left as it is (keep one, then rerun)"
        ),
    )));
    item
}

/// A JSON string literal of `value`: quotes around it as it is when nothing
/// in it needs escaping (base64 text never does), serde's encoding otherwise.
pub(super) fn json_literal(value: &[u8]) -> Result<Vec<u8>, String> {
    if value.iter().all(|b| (0x20..0x7f).contains(b) && *b != b'"' && *b != b'\\') {
        let mut out = Vec::with_capacity(value.len() + 2);
        out.push(b'"');
        out.extend_from_slice(value);
        out.push(b'"');
        return Ok(out);
    }
    let text = std::str::from_utf8(value).map_err(|_| "a binary item cannot go into a JSON field")?;
    serde_json::to_vec(text).map_err(|e| e.to_string())
}

/// An item whose field the record lacks: the message names the fields the
/// record does have, so a mistyped `--field` shows itself.
pub(super) fn missing_field(name: String, pointer: &str, body: &[u8]) -> Item {
    const SHOWN: usize = 20;
    let fields = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => {
            let mut names: Vec<String> =
                map.keys().take(SHOWN).map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1"))).collect();
            if map.len() > SHOWN {
                names.push(format!("and {} more", map.len() - SHOWN));
            }
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        }
        _ => "none: it is not a JSON object".to_owned(),
    };
    failed_item(name, &format!("the field {pointer} is missing or not a string (this record's fields: {fields})"))
}

pub(super) fn failed_item(name: String, message: &str) -> Item {
    let mut item = Item::new(name, Vec::new());
    item.result = Some(Err(ItemError::new(ItemErrorCode::MissingField, message)));
    item
}

pub(super) fn strip_line_ending(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

pub(super) fn line_ending(raw: &[u8]) -> &[u8] {
    &raw[strip_line_ending(raw).len()..]
}

pub(super) fn parse_csv(row: &[u8]) -> Result<Vec<Vec<u8>>, csv::Error> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(row);
    let mut record = csv::ByteRecord::new();
    reader.read_byte_record(&mut record)?;
    Ok(record.iter().map(<[u8]>::to_vec).collect())
}

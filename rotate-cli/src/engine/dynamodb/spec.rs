//! What a DynamoDB run names: the table, its attributes, and how item keys
//! and values travel through journals and checkpoints.

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::engine::error::{Error, ErrorKind};
use crate::engine::journal;

/// What to rotate: a table's attributes, where new values go, what binds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoSpec {
    /// The table's name.
    pub table: String,
    /// The top-level attributes holding the items (`B` or `S`).
    pub attributes: Vec<String>,
    /// Write new values into this attribute and leave the original alone.
    pub into: Option<String>,
    /// Attributes whose values bind each item to its DynamoDB item in the encryption context.
    pub context_attributes: Vec<String>,
    /// A numeric attribute the application bumps on every write: updates
    /// also require it unchanged, and bump it themselves.
    pub version_attribute: Option<String>,
    /// Parallel scan segments of the whole table (every shard process must use the same number).
    pub segments: u32,
}

/// The journal's `target` for DynamoDB runs.
pub const KIND: &str = "dynamodb";

/// Scan segments unless told otherwise: the same on every machine whatever
/// its `--concurrency`, so shard processes agree on them by default.
pub const DEFAULT_SEGMENTS: u32 = 16;

/// The scheme of a DynamoDB target.
const SCHEME: &str = "dynamodb://";

/// Whether a command-line target names a DynamoDB table (`dynamodb://TABLE`).
pub fn is_dynamodb_url(target: &str) -> bool {
    target.starts_with(SCHEME)
}

/// The table a `dynamodb://TABLE` URL names.
///
/// # Errors
/// A usage error for anything else.
pub fn parse_url(target: &str) -> Result<String, Error> {
    let table = target.strip_prefix(SCHEME).unwrap_or_default().trim_end_matches('/');
    // DynamoDB's rule for table names: 3 to 255 of a-z A-Z 0-9 _ - .
    let valid =
        (3..=255).contains(&table.len()) && table.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !is_dynamodb_url(target) || !valid {
        return Err(Error::usage(format!("{target:?} is not a DynamoDB target"))
            .hint("write dynamodb://TABLE (3 to 255 letters, digits, '_', '-' or '.')"));
    }
    Ok(table.to_owned())
}

impl DynamoSpec {
    /// Checks what can be checked without the table.
    ///
    /// # Errors
    /// A usage error naming the problem.
    pub fn check(&self) -> Result<(), Error> {
        if self.attributes.is_empty() {
            return Err(Error::usage("a DynamoDB target needs at least one --attribute NAME"));
        }
        if self.into.is_some() && self.attributes.len() != 1 {
            return Err(Error::usage("--into takes exactly one --attribute: the one whose shadow it is"));
        }
        if self.segments == 0 || self.segments > 1_000_000 {
            return Err(Error::usage("--segments is from 1 to 1000000 (DynamoDB's limit)"));
        }
        let mut seen = HashSet::new();
        for name in self.attributes.iter().chain(&self.into).chain(&self.version_attribute) {
            if !seen.insert(name.as_str()) {
                return Err(Error::usage(format!("attribute {name:?} is named twice")));
            }
        }
        for name in self.written().iter().chain(&self.context_attributes) {
            if name.is_empty() || name.contains(['.', '[']) {
                return Err(Error::usage(format!("{name:?} is not a top-level attribute name"))
                    .hint("name top-level attributes; nested document paths are not supported yet"));
            }
        }
        Ok(())
    }

    /// Every attribute a run reads or writes besides the key.
    pub(super) fn written(&self) -> Vec<String> {
        self.attributes.iter().chain(&self.into).chain(&self.version_attribute).cloned().collect()
    }

    /// The default journal, in the current directory: `dynamodb-TABLE.rekey-journal`.
    pub fn default_journal(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("dynamodb-{}.rekey-journal", self.table))
    }

    /// The parameters a run records, compared on `--resume` and read by rollback.
    pub fn run_params(&self) -> journal::RunParams {
        journal::RunParams::from([
            ("target".into(), KIND.into()),
            ("table".into(), self.table.clone()),
            ("attributes".into(), self.attributes.join(",")),
            ("into".into(), self.into.clone().unwrap_or_default()),
            ("context_attributes".into(), self.context_attributes.join(",")),
            ("version_attribute".into(), self.version_attribute.clone().unwrap_or_default()),
            ("segments".into(), self.segments.to_string()),
        ])
    }
}

/// An item's key (or a scan's last evaluated key) as the journal keeps it:
/// `{"pk": {"S": "..."}, "sk": {"N": "12"}}`, binary values in base64.
pub(super) fn key_to_json(key: &HashMap<String, AttributeValue>) -> Value {
    let sorted: BTreeMap<&String, Value> = key.iter().map(|(k, v)| (k, value_to_json(v))).collect();
    json!(sorted)
}

/// The key written by [`key_to_json`].
pub(super) fn key_from_json(value: &Value) -> Result<HashMap<String, AttributeValue>, Error> {
    let damaged = || Error::new(ErrorKind::BadInput, format!("the journal holds a damaged DynamoDB key: {value}"));
    let Value::Object(map) = value else {
        return Err(damaged());
    };
    map.iter().map(|(k, v)| Ok((k.clone(), value_from_json(v).ok_or_else(damaged)?))).collect()
}

/// A key or rotated attribute's value as JSON; `null` for types rekey never keeps.
pub(super) fn value_to_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": STANDARD.encode(b.as_ref()) }),
        _ => Value::Null,
    }
}

/// The value written by [`value_to_json`].
pub(super) fn value_from_json(value: &Value) -> Option<AttributeValue> {
    let Value::Object(map) = value else {
        return None;
    };
    match (map.get("S"), map.get("N"), map.get("B")) {
        (Some(Value::String(s)), None, None) => Some(AttributeValue::S(s.clone())),
        (None, Some(Value::String(n)), None) => Some(AttributeValue::N(n.clone())),
        (None, None, Some(Value::String(b))) => STANDARD.decode(b).ok().map(|b| AttributeValue::B(Blob::new(b))),
        _ => None,
    }
}

/// The bytes of a rotated attribute's value: a binary's bytes, a string's UTF-8.
pub(super) fn value_bytes(value: &AttributeValue) -> Option<&[u8]> {
    match value {
        AttributeValue::B(b) => Some(b.as_ref()),
        AttributeValue::S(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A DynamoDB type's name for messages.
pub(super) fn type_name(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::B(_) => "binary (B)",
        AttributeValue::S(_) => "string (S)",
        AttributeValue::N(_) => "number (N)",
        AttributeValue::Bool(_) => "boolean (BOOL)",
        AttributeValue::Null(_) => "null (NULL)",
        AttributeValue::M(_) => "map (M)",
        AttributeValue::L(_) => "list (L)",
        AttributeValue::Ss(_) | AttributeValue::Ns(_) | AttributeValue::Bs(_) => "set",
        _ => "an unknown type",
    }
}

/// How reports name an item: `TABLE pk=a,sk=12`, key attributes in key-schema order.
pub(super) fn item_id(table: &str, key_names: &[String], key: &HashMap<String, AttributeValue>) -> String {
    let parts: Vec<String> = key_names
        .iter()
        .map(|name| {
            let shown = match key.get(name) {
                Some(AttributeValue::S(s))
                    if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "-_.:@/".contains(c)) =>
                {
                    s.clone()
                }
                Some(AttributeValue::S(s)) => format!("{s:?}"),
                Some(AttributeValue::N(n)) => n.clone(),
                Some(AttributeValue::B(b)) => format!("x'{}'", journal::hex(b.as_ref())),
                _ => "?".to_owned(),
            };
            format!("{name}={shown}")
        })
        .collect();
    format!("{table} {}", parts.join(","))
}

/// Expression attribute names for `names`: `#a0`, `#a1`, ... in order.
pub(super) fn placeholders(names: &[String]) -> (Vec<String>, HashMap<String, String>) {
    let tags: Vec<String> = (0..names.len()).map(|i| format!("#a{i}")).collect();
    let map = tags.iter().cloned().zip(names.iter().cloned()).collect();
    (tags, map)
}

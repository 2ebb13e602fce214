//! `--metadata-output` for the rotation commands: one JSON line per item
//! the engine counted (item, outcome, sizes, the new envelope's key ids and
//! context), written from the engine's per-item hook. Never content.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use envelope_core::hazmat::{Header, ParseOptions, decode_text};
use rotate_cli::engine::transform::{ChangeKind, Outcome};
use rotate_cli::engine::{Item, ItemError, Progress};
use serde_json::{Value, json};

use crate::exit::CliError;

/// Progress reports passed on, and each item's line written.
struct Audit {
    inner: Arc<dyn Progress>,
    operation: &'static str,
    writer: Mutex<BufWriter<File>>,
}

/// `progress` with the audit lines of `path` added, when asked for.
pub(crate) fn wrap(
    progress: Arc<dyn Progress>,
    path: Option<&Path>,
    operation: &'static str,
) -> Result<Arc<dyn Progress>, CliError> {
    let Some(path) = path else { return Ok(progress) };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| CliError::io(format!("cannot open the metadata output {}", path.display()), e))?;
    Ok(Arc::new(Audit { inner: progress, operation, writer: Mutex::new(BufWriter::new(file)) }))
}

impl Audit {
    fn write(&self, line: &Value) {
        if let Ok(mut writer) = self.writer.lock()
            && let Err(e) = writeln!(writer, "{line}")
        {
            tracing::error!("cannot write the metadata output: {e}");
        }
    }
}

/// The key ids and context of an envelope, binary or text form.
fn header_facts(bytes: &[u8]) -> Option<(Vec<String>, Value)> {
    let decoded;
    let raw = if bytes.starts_with(b"UktZ") {
        decoded = decode_text(std::str::from_utf8(bytes).ok()?).ok()?;
        &decoded[..]
    } else {
        bytes
    };
    let (header, _, _) = Header::parse_prefix(raw, &ParseOptions::default()).ok()?;
    let ids = header.encrypted_data_keys.iter().map(|e| format!("{}:{}", e.provider_id(), e.key_id())).collect();
    let context: serde_json::Map<String, Value> =
        header.context.iter().map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
    Some((ids, Value::Object(context)))
}

impl Progress for Audit {
    fn total(&self, units: u64) {
        self.inner.total(units);
    }

    fn advance(&self, units: u64, failed: u64) {
        self.inner.advance(units, failed);
    }

    fn bytes(&self, read: u64, total: u64) {
        self.inner.bytes(read, total);
    }

    fn item(&self, item: &Item) {
        let mut line = json!({"operation": self.operation, "item": item.name, "input_bytes": item.bytes.len()});
        if let Some((ids, _)) = header_facts(&item.bytes) {
            line["old_key_ids"] = json!(ids);
        }
        match &item.result {
            Some(Ok(Outcome::Changed { new, kind, old_edks, .. })) => {
                if let Some(old) = old_edks {
                    line["old_key_ids"] =
                        json!(old.iter().map(|e| format!("{}:{}", e.provider_id(), e.key_id())).collect::<Vec<_>>());
                }
                line["outcome"] = json!(match kind {
                    ChangeKind::Rewrapped => "rewrapped",
                    ChangeKind::Reencrypted => "reencrypted",
                    ChangeKind::FromLegacy => "reencrypted_from_legacy",
                    ChangeKind::Lifted => "reencrypted_lifted_to_key_commitment",
                });
                line["output_bytes"] = json!(new.len());
                if let Some((ids, context)) = header_facts(new) {
                    line["key_ids"] = json!(ids);
                    line["context"] = context;
                }
            }
            Some(Ok(Outcome::Skipped)) => line["outcome"] = json!("already_done"),
            Some(Ok(Outcome::Empty)) => line["outcome"] = json!("empty"),
            Some(Err(e)) => {
                line["outcome"] = json!("failed");
                line["error_code"] = json!(e.code.as_str());
            }
            None => return,
        }
        self.write(&line);
    }

    fn unit_failed(&self, id: &str, error: &ItemError) {
        self.write(
            &json!({"operation": self.operation, "item": id, "outcome": "failed", "error_code": error.code.as_str()}),
        );
    }

    fn finish(&self) {
        self.inner.finish();
        if let Ok(mut writer) = self.writer.lock()
            && let Err(e) = writer.flush()
        {
            tracing::error!("cannot write the metadata output: {e}");
        }
    }
}

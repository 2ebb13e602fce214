//! `rekey scan s3://…`: objects counted per key and kind, no key needed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::object::{ObjectUnit, S3Job};
use crate::engine::error::{Error, ErrorKind, ItemError};
use crate::engine::item::Unit;
use crate::engine::journal::{Checkpoint, Journal};
use crate::engine::ports::{Rejected, Sink};
use crate::engine::report::Counts;

/// `rekey scan s3://...`: objects per SSE-KMS key, per server-side
/// encryption, and the metadata data keys.
#[derive(Debug, Default)]
pub struct S3ScanSink {
    pub(super) report: Mutex<S3ScanReport>,
}

/// What a scan of objects found.
#[derive(Debug, Default, Clone)]
pub struct S3ScanReport {
    /// Objects per SSE-KMS key id.
    pub sse_kms_keys: BTreeMap<String, u64>,
    /// Objects per server-side encryption (`aws:kms`, `AES256`, `none`).
    pub sse: BTreeMap<String, u64>,
    /// Metadata data keys per KMS key, where the value names its key (a rekey
    /// envelope); bare KMS blobs name their key only to KMS.
    pub metadata_keys: BTreeMap<String, u64>,
    /// Objects with the metadata entry holding a bare KMS blob.
    pub metadata_bare: u64,
    /// Objects without the metadata entry.
    pub metadata_missing: u64,
    /// Objects that could not be read.
    pub unreadable: u64,
    /// S3 Encryption Client objects, per what their metadata shows.
    pub s3ec: S3ecCounts,
}

/// S3 Encryption Client objects found by a scan (from each object's own
/// metadata: the V1/V2 objects whose metadata is all in an instruction
/// file show only as instruction files).
#[derive(Debug, Default, Clone)]
pub struct S3ecCounts {
    /// Per KMS key: the legacy `kms` wrapping names it (`kms_cmk_id`);
    /// `kms+context` keys are known only to KMS; raw keyrings by name.
    pub keys: BTreeMap<String, u64>,
    /// Per format version (V1, V2, V3).
    pub versions: BTreeMap<String, u64>,
    /// Per content cipher.
    pub ciphers: BTreeMap<String, u64>,
    /// CBC objects: unauthenticated, to migrate.
    pub unauthenticated: u64,
    /// Objects whose wrapped key is in an instruction file (V3 marks them).
    pub key_in_instruction_file: u64,
    /// Instruction files (`*.instruction`, or marked `x-amz-crypto-instr-file`).
    pub instruction_files: u64,
    /// Objects with S3 Encryption Client entries that do not parse.
    pub malformed: u64,
}

impl S3ecCounts {
    /// Counts one object's metadata.
    pub fn add(&mut self, key: &str, metadata: &BTreeMap<String, String>) {
        use envelope_core::s3ec::{self, Status, Wrapping};
        if metadata.contains_key(s3ec::INSTRUCTION_FILE_MARK) || key.ends_with(s3ec::DEFAULT_INSTRUCTION_SUFFIX) {
            self.instruction_files += 1;
            return;
        }
        match s3ec::parse(metadata) {
            Ok(Status::NotMarked) => {}
            Ok(Status::InstructionFile) => self.key_in_instruction_file += 1,
            Ok(Status::Complete(meta)) => {
                let key = match &meta.wrapping {
                    Wrapping::KmsContext => "kms+context (the key is known only to KMS)".to_owned(),
                    Wrapping::KmsLegacy => format!(
                        "kms (legacy) {}",
                        meta.stored_context.get(s3ec::KMS_CMK_ID_CONTEXT_KEY).map_or("?", String::as_str)
                    ),
                    Wrapping::Raw(name) => format!("raw keyring {name}"),
                };
                *self.keys.entry(key).or_default() += 1;
                *self.versions.entry(meta.version.to_string()).or_default() += 1;
                let mut cipher = meta.cipher.to_string();
                if !meta.cipher.authenticated() {
                    cipher.push_str(" (unauthenticated, migrate)");
                    self.unauthenticated += 1;
                }
                *self.ciphers.entry(cipher).or_default() += 1;
            }
            Err(_) => self.malformed += 1,
        }
    }

    /// Whether anything was found.
    pub fn any(&self) -> bool {
        !self.versions.is_empty() || self.key_in_instruction_file + self.instruction_files + self.malformed > 0
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "objects": self.versions.values().sum::<u64>() + self.key_in_instruction_file,
            "keys": self.keys,
            "format_versions": self.versions,
            "content_ciphers": self.ciphers,
            "unauthenticated_migrate": self.unauthenticated,
            "key_in_instruction_file": self.key_in_instruction_file,
            "instruction_files": self.instruction_files,
            "malformed": self.malformed,
        })
    }

    /// As text for a person.
    pub fn to_text(&self) -> String {
        let mut out = String::from("S3 Encryption Client objects per key:\n");
        let section = |out: &mut String, map: &BTreeMap<String, u64>| {
            for (name, n) in map {
                out.push_str(&format!("  {n:>10}  {name}\n"));
            }
        };
        section(&mut out, &self.keys);
        out.push_str("S3 Encryption Client objects per format version:\n");
        section(&mut out, &self.versions);
        out.push_str("S3 Encryption Client objects per content cipher:\n");
        section(&mut out, &self.ciphers);
        if self.unauthenticated > 0 {
            out.push_str(&format!(
                "  {:>10}  unauthenticated (AES/CBC), migrate: re-encrypt them as V3 objects\n",
                self.unauthenticated
            ));
        }
        out.push_str(&format!(
            "  {:>10}  objects whose key is in an instruction file (V3)\n  {:>10}  instruction files\n",
            self.key_in_instruction_file, self.instruction_files
        ));
        if self.malformed > 0 {
            out.push_str(&format!(
                "  {:>10}  objects with S3 Encryption Client entries that do not parse\n",
                self.malformed
            ));
        }
        out
    }
}

impl S3ScanSink {
    /// An empty report.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The report so far.
    pub fn report(&self) -> S3ScanReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl S3ScanReport {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "sse_kms_keys": self.sse_kms_keys,
            "server_side_encryption": self.sse,
            "metadata_keys": self.metadata_keys,
            "metadata_bare_data_keys": self.metadata_bare,
            "metadata_missing": self.metadata_missing,
            "unreadable": self.unreadable,
            "s3_encryption_client": self.s3ec.to_json(),
        })
    }

    /// As text for a person.
    pub fn to_text(&self, metadata_key: Option<&str>) -> String {
        let mut out = String::from("objects per SSE-KMS key:\n");
        if self.sse_kms_keys.is_empty() {
            out.push_str("  (none)\n");
        }
        for (key, n) in &self.sse_kms_keys {
            out.push_str(&format!("  {n:>10}  {key}\n"));
        }
        out.push_str("objects per server-side encryption:\n");
        for (sse, n) in &self.sse {
            out.push_str(&format!("  {n:>10}  {sse}\n"));
        }
        if let Some(name) = metadata_key {
            out.push_str(&format!("metadata data keys ({name}):\n"));
            for (key, n) in &self.metadata_keys {
                out.push_str(&format!("  {n:>10}  {key}\n"));
            }
            out.push_str(&format!(
                "  {:>10}  bare KMS blobs (they name their key only to KMS)\n  {:>10}  objects without the entry\n",
                self.metadata_bare, self.metadata_missing
            ));
        }
        if self.s3ec.any() {
            out.push_str(&self.s3ec.to_text());
        }
        if self.unreadable > 0 {
            out.push_str(&format!("{:>12}  unreadable\n", self.unreadable));
        }
        out
    }
}

impl Sink<ObjectUnit> for S3ScanSink {
    fn start(&self, _journal: Option<Arc<Journal>>, _checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<ObjectUnit>) -> Result<(), ItemError> {
        let Some(head) = &unit.payload.head else {
            return Ok(());
        };
        let mut report = self.report.lock().map_err(|_| ItemError::input("internal: scan lock poisoned"))?;
        if let Some(key) = head.kms_key() {
            *report.sse_kms_keys.entry(key.to_owned()).or_default() += 1;
        }
        let sse = head.sse.as_ref().map_or("none", |s| s.as_str()).to_owned();
        *report.sse.entry(sse).or_default() += 1;
        report.s3ec.add(&unit.payload.key, &head.metadata);
        if let S3Job::Scan { metadata_key: Some(_) } = &unit.payload.shared.job {
            match unit.items.first().map(|i| i.bytes.as_slice()) {
                None | Some([]) => report.metadata_missing += 1,
                Some(bytes) => {
                    let keys: Option<Vec<String>> = std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|t| envelope_core::hazmat::decode_text(t.trim_ascii()).ok())
                        .and_then(|b| {
                            let parsed = envelope_core::hazmat::Envelope::parse(
                                &b,
                                &envelope_core::hazmat::ParseOptions::default(),
                            )
                            .ok()?;
                            let header = parsed.header();
                            Some(
                                header
                                    .encrypted_data_keys
                                    .iter()
                                    .map(|edk| format!("{}:{}", edk.provider_id(), edk.key_id()))
                                    .collect(),
                            )
                        });
                    match keys {
                        Some(keys) => {
                            for key in keys {
                                *report.metadata_keys.entry(key).or_default() += 1;
                            }
                        }
                        None => report.metadata_bare += 1,
                    }
                }
            }
        }
        Ok(())
    }

    fn commit(&self, unit: Unit<ObjectUnit>, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        if unit.error.is_some() {
            let mut report = self.report.lock().map_err(|_| Error::new(ErrorKind::Io, "scan lock poisoned"))?;
            report.unreadable += 1;
        }
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }
}

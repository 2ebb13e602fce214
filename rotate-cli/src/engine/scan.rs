//! `rekey scan`: the engine with a counting sink. Every item is read and
//! classified from its header alone, with no key and no KMS call, so an
//! operator can show that no item is left under a key before retiring it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use envelope_core::{Envelope, ParseOptions, decode_text};
use serde_json::{Value, json};

use super::error::{Error, ErrorKind, ItemError};
use super::journal::{Checkpoint, Journal};
use super::report::Counts;
use super::{Rejected, Sink, Unit};

/// What the items are said to be, when they cannot tell themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expect {
    /// Envelopes, or whatever the bytes show.
    #[default]
    Auto,
    /// Bare KMS ciphertext blobs.
    BareKeys,
}

/// What a scan found.
#[derive(Debug, Default, Clone)]
pub struct ScanReport {
    /// Envelopes per wrapping key (`provider:key id`); an item with several keys counts under each.
    pub per_key: BTreeMap<String, u64>,
    /// Envelopes.
    pub envelopes: u64,
    /// Legacy CBC records (or, without a key, bare blobs that look the same).
    pub legacy: u64,
    /// Bare KMS ciphertext blobs.
    pub bare_keys: u64,
    /// Compact keyset records (docs/format.md §12.6), also counted per key
    /// id in `per_key` as `keyset-key:ID`.
    pub compact: u64,
    /// Envelopes whose header does not parse.
    pub malformed: u64,
    /// Items that are none of these.
    pub not_envelopes: u64,
    /// Empty values.
    pub empty: u64,
    /// Units that could not be read (unreadable files, records that are not JSON).
    pub unreadable: u64,
    /// JSON records holding a scanned field more than once (which one counts is ambiguous).
    pub duplicate_fields: u64,
}

impl ScanReport {
    /// The report for machines.
    pub fn to_json(&self) -> Value {
        json!({
            "per_key": self.per_key,
            "envelopes": self.envelopes,
            "legacy_cbc": self.legacy,
            "bare_data_keys": self.bare_keys,
            "compact_records": self.compact,
            "malformed": self.malformed,
            "not_envelopes": self.not_envelopes,
            "empty": self.empty,
            "unreadable": self.unreadable,
            "duplicate_fields": self.duplicate_fields,
        })
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::from("items per wrapping key:\n");
        if self.per_key.is_empty() {
            out.push_str("  (none)\n");
        }
        for (key, n) in &self.per_key {
            out.push_str(&format!("  {n:>10}  {key}\n"));
        }
        for (name, n) in [
            ("envelopes", self.envelopes),
            ("legacy CBC records (unauthenticated; move them with `rekey reencrypt --items legacy`)", self.legacy),
            ("bare data keys", self.bare_keys),
            ("compact keyset records (`rekey keyset list` names their keys)", self.compact),
            ("malformed envelopes", self.malformed),
            ("not envelopes", self.not_envelopes),
            ("empty", self.empty),
            ("unreadable", self.unreadable),
            ("records with the field twice (rotation refuses them; keep one)", self.duplicate_fields),
        ] {
            if n > 0 || name == "envelopes" {
                out.push_str(&format!("{n:>12}  {name}\n"));
            }
        }
        out
    }

    fn classify(&mut self, bytes: &[u8], expect: Expect) {
        if bytes.is_empty() {
            self.empty += 1;
            return;
        }
        let text = std::str::from_utf8(bytes).ok().map(str::trim_ascii);
        if expect == Expect::BareKeys {
            self.bare_keys += 1;
            return;
        }
        let envelope = if bytes.starts_with(&envelope_core::MAGIC) {
            Some(bytes.to_vec())
        } else {
            text.and_then(|t| decode_text(t).ok()).filter(|b| b.starts_with(&envelope_core::MAGIC))
        };
        if let Some(envelope) = envelope {
            match Envelope::parse(&envelope, &ParseOptions { max_encrypted_data_keys: 255 }) {
                Ok(parsed) => {
                    self.envelopes += 1;
                    for edk in &parsed.header().encrypted_data_keys {
                        *self.per_key.entry(format!("{}:{}", edk.provider_id(), edk.key_id())).or_default() += 1;
                    }
                }
                Err(_) => self.malformed += 1,
            }
            return;
        }
        // Before the legacy test: a compact record's 0xC1 first byte is
        // never the blog's ASCII IV (only a random-IV record may start so).
        if let Some(record) = text
            .and_then(|t| decode_text(t).ok())
            .filter(|b| envelope_core::keyset::looks_like_compact_record(b))
            .and_then(|b| envelope_core::keyset::CompactRecord::parse(&b).ok().map(|r| r.key_id()))
        {
            self.compact += 1;
            *self.per_key.entry(format!("keyset-key:{record}")).or_default() += 1;
            return;
        }
        match text {
            Some(t) if envelope_core::legacy::looks_like_legacy_record(t) => self.legacy += 1,
            _ => self.not_envelopes += 1,
        }
    }
}

/// Counts what every item is.
#[derive(Debug, Default)]
pub struct ScanSink {
    expect: Expect,
    report: Mutex<ScanReport>,
}

impl ScanSink {
    /// A scan expecting `expect`.
    pub fn new(expect: Expect) -> Arc<Self> {
        Arc::new(Self { expect, report: Mutex::default() })
    }

    /// What was found.
    pub fn report(&self) -> ScanReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl<P: Send + 'static> Sink<P> for ScanSink {
    fn start(&self, _journal: Option<Arc<Journal>>, _checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<P>) -> Result<(), ItemError> {
        let mut report = ScanReport::default();
        for item in &unit.items {
            match &item.result {
                None => report.classify(&item.bytes, self.expect),
                Some(Err(e)) if e.code == super::error::ItemErrorCode::DuplicateField => report.duplicate_fields += 1,
                Some(_) => {}
            }
        }
        let mut total = self.report.lock().map_err(|_| ItemError::input("internal: scan lock poisoned"))?;
        for (key, n) in report.per_key {
            *total.per_key.entry(key).or_default() += n;
        }
        total.envelopes += report.envelopes;
        total.legacy += report.legacy;
        total.bare_keys += report.bare_keys;
        total.compact += report.compact;
        total.malformed += report.malformed;
        total.not_envelopes += report.not_envelopes;
        total.empty += report.empty;
        total.duplicate_fields += report.duplicate_fields;
        Ok(())
    }

    fn commit(&self, unit: Unit<P>, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        if unit.error.is_some() {
            let mut total = self.report.lock().map_err(|_| Error::new(ErrorKind::Io, "scan lock poisoned"))?;
            total.unreadable += 1;
        }
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }
}

/// A dry run: the plan is counted by the engine; nothing is written.
#[derive(Debug, Default)]
pub struct DryRun {
    journal_bytes: Mutex<u64>,
    sample: Mutex<Option<Vec<u8>>>,
}

impl DryRun {
    /// A dry-run sink.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The first item that would change, to try for real in memory.
    pub fn sample(&self) -> Option<Vec<u8>> {
        self.sample.lock().ok().and_then(|mut s| s.take())
    }

    /// About how large the journal of the real run would be, in bytes.
    pub fn journal_bytes(&self) -> u64 {
        self.journal_bytes.lock().map_or(0, |n| *n)
    }
}

impl<P: Send + 'static> Sink<P> for DryRun {
    fn start(&self, _journal: Option<Arc<Journal>>, _checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<P>) -> Result<(), ItemError> {
        // Per changed item: a begin line with hashes and an undo record (at
        // most the item in base64; a rewrap's is its key list), and a done line.
        let estimate: u64 = unit
            .items
            .iter()
            .filter(|i| matches!(i.result, Some(Ok(super::transform::Outcome::Changed { .. }))))
            .map(|i| 300 + (i.bytes.len() as u64).div_ceil(3) * 4)
            .sum();
        if let Ok(mut n) = self.journal_bytes.lock() {
            *n += estimate;
        }
        if estimate > 0
            && let Ok(mut sample) = self.sample.lock()
            && sample.is_none()
        {
            *sample = unit
                .items
                .iter()
                .find(|i| matches!(i.result, Some(Ok(super::transform::Outcome::Changed { .. }))))
                .map(|i| i.bytes.clone());
        }
        Ok(())
    }

    fn commit(&self, _unit: Unit<P>, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }
}

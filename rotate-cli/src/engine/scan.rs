//! `rekey scan`: the engine with a counting sink. Every item is read and
//! classified from its header alone, with no key and no KMS call, so an
//! operator can show that no item is left under a key before retiring it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::error::{Error, ErrorKind, ItemError};
use super::format::{self, FormatId, Migrate};
use super::item::{Item, Unit};
use super::journal::{Checkpoint, Journal};
use super::ports::{Rejected, Sink};
use super::report::Counts;

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
///
/// Per-format counts are keyed by [`FormatId`], whose `report_key` and
/// `report_label` name them: a new format is counted, in text and JSON,
/// without touching this file.
#[derive(Debug, Default, Clone)]
pub struct ScanReport {
    /// Items per wrapping key (`provider:key id`); an item with several keys counts under each.
    pub per_key: BTreeMap<String, u64>,
    /// Items per format. Legacy CBC records include, without a key, bare
    /// blobs that look the same; compact keyset records are also counted per
    /// key id in `per_key` as `keyset-key:ID`.
    pub per_format: BTreeMap<FormatId, u64>,
    /// Items per algorithm suite, for formats that have several (SDK messages).
    pub per_suite: BTreeMap<String, u64>,
    /// Items that should move, per reason (SDK messages without key commitment).
    pub to_migrate: BTreeMap<Migrate, u64>,
    /// Items with a known format's magic whose header does not parse.
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
    /// How many items of `format` were found.
    pub fn count(&self, format: FormatId) -> u64 {
        self.per_format.get(&format).copied().unwrap_or(0)
    }

    /// The report for machines.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "per_key": self.per_key,
            "per_suite": self.per_suite,
            "malformed": self.malformed,
            "not_envelopes": self.not_envelopes,
            "empty": self.empty,
            "unreadable": self.unreadable,
            "duplicate_fields": self.duplicate_fields,
        });
        for format in FormatId::ALL {
            v[format.report_key()] = json!(self.count(format));
        }
        for (reason, n) in &self.to_migrate {
            v[reason.key] = json!(n);
        }
        v
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
        if !self.per_suite.is_empty() {
            out.push_str("items per algorithm suite:\n");
            for (suite, n) in &self.per_suite {
                out.push_str(&format!("  {n:>10}  {suite}\n"));
            }
        }
        for format in FormatId::ALL {
            let n = self.count(format);
            if n > 0 || format == FormatId::Envelope {
                out.push_str(&format!("{n:>12}  {}\n", format.report_label()));
            }
        }
        for (reason, n) in &self.to_migrate {
            out.push_str(&format!("{n:>12}  {}\n", reason.note));
        }
        for (name, n) in [
            ("malformed (a known format's magic, but damaged)", self.malformed),
            ("not envelopes", self.not_envelopes),
            ("empty", self.empty),
            ("unreadable", self.unreadable),
            ("records with the field twice (rotation refuses them; keep one)", self.duplicate_fields),
        ] {
            if n > 0 {
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
        if expect == Expect::BareKeys {
            *self.per_format.entry(FormatId::BareKey).or_default() += 1;
            return;
        }
        let Some(detected) = format::detect(bytes) else {
            self.not_envelopes += 1;
            return;
        };
        let description = detected.describe();
        if description.malformed {
            self.malformed += 1;
            return;
        }
        *self.per_format.entry(detected.format).or_default() += 1;
        for key in description.keys {
            *self.per_key.entry(key).or_default() += 1;
        }
        if let Some(suite) = description.suite {
            *self.per_suite.entry(suite).or_default() += 1;
        }
        if let Some(reason) = description.migrate {
            *self.to_migrate.entry(reason).or_default() += 1;
        }
    }

    /// Adds `other`'s counts to these.
    fn add(&mut self, other: ScanReport) {
        fn merge<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
            for (k, n) in from {
                *into.entry(k).or_default() += n;
            }
        }
        merge(&mut self.per_key, other.per_key);
        merge(&mut self.per_format, other.per_format);
        merge(&mut self.per_suite, other.per_suite);
        merge(&mut self.to_migrate, other.to_migrate);
        self.malformed += other.malformed;
        self.not_envelopes += other.not_envelopes;
        self.empty += other.empty;
        self.unreadable += other.unreadable;
        self.duplicate_fields += other.duplicate_fields;
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
        total.add(report);
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
    sample: Mutex<Option<Item>>,
    /// The first item that would fail, and why: the sample line names it
    /// when no item would change, so it never reads as all clear.
    first_failure: Mutex<Option<(String, String)>>,
}

impl DryRun {
    /// A dry-run sink.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The first item that would change, to try for real in memory.
    pub fn sample(&self) -> Option<Item> {
        self.sample.lock().ok().and_then(|mut s| s.take())
    }

    /// The first item that would fail, and its error.
    pub fn first_failure(&self) -> Option<(String, String)> {
        self.first_failure.lock().ok().and_then(|f| f.clone())
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
        if let Ok(mut first) = self.first_failure.lock()
            && first.is_none()
        {
            *first = unit.items.iter().find_map(|i| match &i.result {
                Some(Err(e)) => Some((i.name.clone(), e.message.clone())),
                _ => None,
            });
        }
        if estimate > 0
            && let Ok(mut sample) = self.sample.lock()
            && sample.is_none()
        {
            *sample = unit
                .items
                .iter()
                .find(|i| matches!(i.result, Some(Ok(super::transform::Outcome::Changed { .. }))))
                .map(|i| {
                    let mut sample = Item::new(i.name.clone(), i.bytes.clone());
                    sample.context = i.context.clone();
                    sample.header_only = i.header_only;
                    sample
                });
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

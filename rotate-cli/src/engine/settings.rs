//! What a run is told: how many units at once, which units, whether to write.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::error::Error;
use super::journal::RunParams;

/// A deterministic partition of the units: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u64,
    /// How many shards.
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a shard; write I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Engine settings common to every target.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Units in flight at once.
    pub concurrency: usize,
    /// Attempts per item for transient faults.
    pub item_attempts: u32,
    /// Stop after this many failed items.
    pub max_failures: Option<u64>,
    /// Only this percentage of units, chosen by a hash of their id.
    pub sample_percent: Option<f64>,
    /// Only this shard of the units, chosen by a hash of their id.
    pub shard: Option<Shard>,
    /// Only the first N selected units.
    pub limit: Option<u64>,
    /// Plan only: no keyring calls, no writes.
    pub dry_run: bool,
    /// Continue the run recorded in the journal.
    pub resume: bool,
    /// Transform one item in memory before writing anything, and stop if it
    /// fails for a reason every item would share (a key or permission problem).
    pub preflight: bool,
    /// The journal, with the run's parameters; `None` for dry runs and scans.
    pub journal: Option<(PathBuf, RunParams)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            item_attempts: 3,
            max_failures: None,
            sample_percent: None,
            shard: None,
            limit: None,
            dry_run: false,
            resume: false,
            preflight: true,
            journal: None,
        }
    }
}

impl Settings {
    /// Whether a unit is in the sample and the shard. The same units are
    /// chosen on every run and every machine, so a later full run finishes
    /// the rest and N shards cover every unit exactly once.
    pub fn selects(&self, id: &str) -> bool {
        if self.sample_percent.is_none() && self.shard.is_none() {
            return true;
        }
        let digest = Sha256::digest(id.as_bytes());
        let in_sample = self.sample_percent.is_none_or(|percent| {
            let bucket = u64::from(u16::from_be_bytes([digest[0], digest[1]])) % 10_000;
            (bucket as f64) < percent * 100.0
        });
        let in_shard = self.shard.is_none_or(|s| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&digest[8..16]);
            u64::from_be_bytes(word) % s.count == s.index
        });
        in_sample && in_shard
    }

    pub(super) fn check(&self) -> Result<(), Error> {
        if self.concurrency == 0 {
            return Err(Error::usage("--concurrency must be at least 1"));
        }
        if let Some(p) = self.sample_percent
            && !(0.0..=100.0).contains(&p)
        {
            return Err(Error::usage("--sample is a percentage from 0 to 100"));
        }
        Ok(())
    }
}

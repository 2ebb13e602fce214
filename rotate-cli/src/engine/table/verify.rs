//! `rekey verify`: every value of a shadow column checked against its
//! original before the columns are swapped (the operations guide's "fill,
//! verify, then replace"). Nothing is written.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::spec::{Cell, RowUnit};
use crate::engine::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use crate::engine::item::Unit;
use crate::engine::journal::{Checkpoint, Journal};
use crate::engine::ports::{Rejected, Sink};
use crate::engine::report::Counts;
use crate::engine::transform::{Outcome, Proof, Transform};

/// How many copies were proven, and how.
#[derive(Debug, Default, Clone, Copy)]
pub struct CopyTally {
    /// Copies proven without decrypting a body (re-wrapped: same body, same data key).
    pub same_data_key: u64,
    /// Copies decrypted and compared with their decrypted original.
    pub same_plaintext: u64,
}

impl CopyTally {
    /// Every copy proven.
    pub fn verified(&self) -> u64 {
        self.same_data_key + self.same_plaintext
    }

    /// The tally for machines.
    pub fn to_json(&self) -> Value {
        json!({
            "verified": self.verified(),
            "same_data_key": self.same_data_key,
            "same_plaintext": self.same_plaintext,
        })
    }
}

/// A sink that writes nothing: it checks each row's shadow value against
/// the original with the keys of the run that made it. A missing copy is
/// `not_copied`, a different one `verify_failed`; both go to the failure
/// report like any other item failure.
pub struct CopyCheck {
    transform: Arc<Transform>,
    tally: Mutex<CopyTally>,
}

impl CopyCheck {
    /// Checks copies made by `transform` (built from the same arguments as the run that filled the column).
    pub fn new(transform: Arc<Transform>) -> Arc<Self> {
        Arc::new(Self { transform, tally: Mutex::new(CopyTally::default()) })
    }

    /// What was proven so far.
    pub fn tally(&self) -> CopyTally {
        self.tally.lock().map_or_else(|p| *p.into_inner(), |t| *t)
    }

    fn count(&self, proof: Proof) {
        if let Ok(mut tally) = self.tally.lock() {
            match proof {
                Proof::SameDataKey => tally.same_data_key += 1,
                Proof::SamePlaintext => tally.same_plaintext += 1,
            }
        }
    }
}

impl Sink<RowUnit> for CopyCheck {
    fn start(&self, _journal: Option<Arc<Journal>>, _checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<RowUnit>) -> Result<(), ItemError> {
        let copy = &unit.payload.row.shadow;
        for item in &mut unit.items {
            // A row the source could not bind to its context keeps that error.
            if matches!(item.result, Some(Err(_))) {
                continue;
            }
            item.result = Some(match (item.bytes.is_empty(), copy) {
                (true, Cell::Null) => Ok(Outcome::Empty),
                (true, _) => {
                    Err(ItemError::new(ItemErrorCode::VerifyFailed, "the copy exists but the original is empty"))
                }
                (false, Cell::Null) => Err(ItemError::new(ItemErrorCode::NotCopied, "the shadow column is empty")),
                (false, Cell::Text(c) | Cell::Blob(c)) => {
                    self.transform.check_copy(item, c).await.map(|proof| {
                        self.count(proof);
                        // Counted by the engine as an item left as it is.
                        Outcome::Skipped
                    })
                }
            });
        }
        Ok(())
    }

    fn commit(&self, _unit: Unit<RowUnit>, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        Ok(Vec::new())
    }

    fn finish(&self, _complete: bool, _counts: &Counts) -> Result<Vec<Rejected>, Error> {
        if self.tally.is_poisoned() {
            return Err(Error::new(ErrorKind::Io, "internal error: the tally lock was poisoned"));
        }
        Ok(Vec::new())
    }
}

//! What a strategy makes of an item.

use std::sync::Arc;

use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext};

use envelope_core::hazmat::Materials;

/// What a transform did to an item.
#[derive(Debug)]
pub enum Outcome {
    /// Already in the wanted state; nothing to write.
    Skipped,
    /// An empty value (a NULL in an export): left alone.
    Empty,
    /// The item's replacement.
    Changed {
        /// The new item (in a dry run, the item itself).
        new: Vec<u8>,
        /// What kind of change.
        kind: ChangeKind,
        /// For a rewrap, the old key list: with the new item's unchanged
        /// header core and body it rebuilds the original (a small undo record).
        old_edks: Option<Vec<EncryptedDataKey>>,
        /// For an item too large to hold (only its header was read): the
        /// re-encryption the sink streams from the stored item.
        job: Option<Arc<StreamJob>>,
    },
}

/// A re-encryption streamed by the sink, frame by frame in constant memory:
/// the keys are resolved here (they may need KMS), the bytes move there.
pub struct StreamJob {
    /// The item's data key, checked against its commitment.
    pub data_key: Arc<DataKey>,
    /// The new data key and its wrapped copies.
    pub materials: Arc<Materials>,
    /// The new envelope's context.
    pub context: EncryptionContext,
    /// The new envelope's frame length: the old one's.
    pub frame_len: u32,
    /// Decrypt the new envelope after writing it and compare (`--verify`).
    pub verify: bool,
}

impl std::fmt::Debug for StreamJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key material: only what the job does.
        f.debug_struct("StreamJob")
            .field("context", &self.context)
            .field("frame_len", &self.frame_len)
            .finish_non_exhaustive()
    }
}

/// How a copy was shown to hold what its original holds ([`Transform::check_copy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The same body under the same data key (checked against the commitment): nothing was decrypted.
    SameDataKey,
    /// Both were decrypted, to the same plaintext.
    SamePlaintext,
}

/// What kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The wrapped keys were replaced.
    Rewrapped,
    /// Decrypted and sealed again.
    Reencrypted,
    /// A legacy CBC record, never authenticated, sealed as an envelope.
    FromLegacy,
    /// Decrypted from a suite without key commitment (an AWS Encryption SDK
    /// legacy suite) and encrypted again on a committing one.
    Lifted,
}

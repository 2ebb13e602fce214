//! Opt-in data key caching for [`Encryptor`](crate::Encryptor), in the spirit
//! of the AWS Encryption SDK's caching materials manager.
//!
//! **Encrypt side**: one data key (and its wrapped copies) serves several
//! messages with the same encryption context, within limits of age, message
//! count and bytes. Concurrent misses for one context are coalesced: the
//! first caller asks the keyrings, the others wait for its answer without
//! blocking a thread (async callers) and share it, so N tasks starting at once
//! cost one KMS `GenerateDataKey`, not N.
//!
//! **Decrypt side**: unwrapped data keys are kept by their encrypted data key
//! list and context, so reading many records made with one cached data key
//! costs one KMS `Decrypt`. A cached key is used only for an envelope whose
//! key commitment it matches (MUST 5.2); otherwise the keyrings are asked as
//! if there were no cache.
//!
//! # Why reusing a data key is safe
//!
//! Every message derives its own body key and commitment from the data key
//! and its own 32-byte random message id (docs/format.md §5 and §13, MUST 3.3
//! and 13.1: `seal` draws a fresh id for every message, cached key or not), so
//! two messages under one data key share AES-GCM keys and nonces only if
//! their message ids collide. For `n` messages under one data key the
//! chance that any two ids collide is at most `n(n-1)/2 · 2^-256 < n²/2^257`:
//! 2^-193 for the default limit of 2^32 messages, 2^-129 even at 2^64. The
//! per-message AES-GCM limits apply to each message's own key, so the byte
//! limit is a policy (how much data one leaked data key exposes), not a
//! cryptographic need. What caching does change: a data key lives longer in
//! memory, and one KMS call's key covers more data; the limits bound both.
//!
//! Entries hold [`DataKey`]s, which are zeroized when an entry is evicted or
//! the cache dropped (and the last message using it has finished).

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::context::EncryptionContext;
use crate::error::KeyringError;
use crate::key::{DataKey, EncryptedDataKey};
use crate::keyring::Materials;

mod flight;
mod hash;

use self::flight::{Flight, Outcome, Wait, lock};
use self::hash::{PassThrough, Seeded, seed, wrapped_hash};

/// Entries kept on each side (encrypt, decrypt) unless told otherwise.
const DEFAULT_CAPACITY: usize = 1000;
/// The AWS Encryption SDK's default message limit; see the module docs for the bound.
const DEFAULT_MAX_MESSAGES: u64 = 1 << 32;

/// Limits of a data key cache: how long, for how many messages and bytes a
/// data key is reused, and how many entries are kept.
///
/// ```
/// use std::time::Duration;
/// use envelope_core::CachePolicy;
///
/// let policy = CachePolicy::new(Duration::from_secs(300)).max_messages(10_000).max_bytes(1 << 30);
/// assert_eq!(policy.max_messages_per_key(), 10_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    capacity: usize,
    max_age: Duration,
    max_messages: u64,
    max_bytes: u64,
}

impl CachePolicy {
    /// A policy that reuses a data key for at most `max_age` (there is no
    /// default: how long a key may live is the caller's decision), 2^32
    /// messages and any number of bytes, keeping up to 1,000 entries a side.
    pub fn new(max_age: Duration) -> Self {
        Self { capacity: DEFAULT_CAPACITY, max_age, max_messages: DEFAULT_MAX_MESSAGES, max_bytes: u64::MAX }
    }

    /// At most `messages` messages per data key (at least 1).
    #[must_use]
    pub fn max_messages(mut self, messages: u64) -> Self {
        self.max_messages = messages.max(1);
        self
    }

    /// At most `bytes` plaintext bytes per data key, all its messages
    /// together. A message longer than this gets a data key of its own.
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// At most `entries` data keys kept on each side (at least 1); the least
    /// recently used goes first.
    #[must_use]
    pub fn capacity(mut self, entries: usize) -> Self {
        self.capacity = entries.max(1);
        self
    }

    /// How long a data key is reused.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// How many messages one data key encrypts at most.
    pub fn max_messages_per_key(&self) -> u64 {
        self.max_messages
    }

    /// How many plaintext bytes one data key encrypts at most.
    pub fn max_bytes_per_key(&self) -> u64 {
        self.max_bytes
    }

    /// How many entries each side keeps.
    pub fn entries(&self) -> usize {
        self.capacity
    }
}

/// Monotonic time since some fixed origin.
type Clock = Box<dyn Fn() -> Duration + Send + Sync>;

/// The cache's clock: the kernel's coarse monotonic clock on Linux (a few
/// milliseconds' resolution, plenty for ages of seconds to hours, and a
/// quarter of the cost of `Instant::now`, which was a fifth of a cache
/// hit), `Instant` elsewhere.
fn coarse_now() -> Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let nanos = u32::try_from(t.tv_nsec).unwrap_or(0);
        Duration::new(secs, nanos)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        ORIGIN.get_or_init(std::time::Instant::now).elapsed()
    }
}

/// The cache an [`Encryptor`](crate::Encryptor) owns. It belongs to one
/// encryptor and its fixed keyrings, so its keys are the context (encrypt)
/// and the encrypted data keys with the context (decrypt).
pub(crate) struct Cache {
    policy: CachePolicy,
    clock: Clock,
    encrypt: Mutex<EncryptSide>,
    decrypt: Mutex<DecryptSide>,
}

struct EncryptSide {
    entries: HashMap<EncryptionContext, Slot, Seeded>,
    /// A use counter: the least recently used entry has the lowest stamp.
    tick: u64,
}

enum Slot {
    Ready(Reusable),
    /// A caller is asking the keyrings; others wait for it.
    Pending(Arc<Flight>),
}

struct Reusable {
    materials: Arc<Materials>,
    created: Duration,
    messages: u64,
    bytes: u64,
    last_used: u64,
}

impl Reusable {
    fn admits(&self, now: Duration, len: u64, policy: &CachePolicy) -> bool {
        now.saturating_sub(self.created) < policy.max_age
            && self.messages < policy.max_messages
            && self.bytes.checked_add(len).is_some_and(|b| b <= policy.max_bytes)
    }
}

struct DecryptSide {
    /// Entries by a hash of their key; a bucket's entries are compared in full.
    buckets: HashMap<u64, Vec<Unwrapped>, BuildHasherDefault<PassThrough>>,
    len: usize,
    tick: u64,
    seed: u64,
}

struct Unwrapped {
    edks: Vec<EncryptedDataKey>,
    context: EncryptionContext,
    key: DataKey,
    created: Duration,
    last_used: u64,
}

/// What the encrypt side does next, decided under its lock.
enum Step {
    Hit(Arc<Materials>),
    Wait(Arc<Flight>),
    Lead(Arc<Flight>),
}

impl Cache {
    pub(crate) fn new(policy: CachePolicy) -> Self {
        Self::with_clock(policy, Box::new(coarse_now))
    }

    pub(crate) fn with_clock(policy: CachePolicy, clock: Clock) -> Self {
        Self {
            policy,
            clock,
            encrypt: Mutex::new(EncryptSide { entries: HashMap::with_hasher(Seeded(seed())), tick: 0 }),
            decrypt: Mutex::new(DecryptSide { buckets: HashMap::default(), len: 0, tick: 0, seed: seed() }),
        }
    }

    /// Materials for one message of `len` plaintext bytes (`None`: unknown,
    /// a stream) under `context`: a cached data key within its limits, or
    /// fresh ones from `generate`, asked once however many callers miss together.
    pub(crate) async fn materials<F, Fut>(
        &self,
        context: &EncryptionContext,
        len: Option<u64>,
        mut generate: F,
    ) -> Result<Arc<Materials>, KeyringError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Materials, KeyringError>>,
    {
        // A stream's length is not known before it is encrypted, so its
        // bytes cannot be counted against a key's limit: it gets its own key.
        let Some(len) = len.filter(|&l| l <= self.policy.max_bytes) else {
            return generate().await.map(Arc::new);
        };
        loop {
            let flight = match self.step(context, len) {
                Step::Hit(materials) => return Ok(materials),
                Step::Wait(flight) => {
                    if let Some(error) = (Wait { flight }).await {
                        return Err(error);
                    }
                    // Done or abandoned: look again (the new key may already
                    // be used up by the others, then someone leads again).
                    continue;
                }
                Step::Lead(flight) => flight,
            };
            let mut leading = Leading { cache: self, context, flight, finished: false };
            let result = generate().await;
            return leading.finish(result, len);
        }
    }

    /// A cached data key for one more message of `len` bytes, if one is
    /// within its limits: the fast path, with no future and no keyring.
    pub(crate) fn reuse(&self, context: &EncryptionContext, len: u64) -> Option<Arc<Materials>> {
        if len > self.policy.max_bytes {
            return None;
        }
        let now = (self.clock)();
        let mut side = lock(&self.encrypt);
        side.tick += 1;
        let tick = side.tick;
        match side.entries.get_mut(context) {
            Some(Slot::Ready(entry)) if entry.admits(now, len, &self.policy) => {
                entry.messages += 1;
                entry.bytes += len;
                entry.last_used = tick;
                Some(Arc::clone(&entry.materials))
            }
            _ => None,
        }
    }

    fn step(&self, context: &EncryptionContext, len: u64) -> Step {
        let now = (self.clock)();
        let mut side = lock(&self.encrypt);
        side.tick += 1;
        let tick = side.tick;
        match side.entries.get_mut(context) {
            Some(Slot::Ready(entry)) if entry.admits(now, len, &self.policy) => {
                entry.messages += 1;
                entry.bytes += len;
                entry.last_used = tick;
                return Step::Hit(Arc::clone(&entry.materials));
            }
            Some(Slot::Pending(flight)) => return Step::Wait(Arc::clone(flight)),
            // Expired or used up: replaced below, its data key dropped (zeroized).
            Some(Slot::Ready(_)) | None => {}
        }
        let flight = Arc::new(Flight::default());
        side.entries.insert(context.clone(), Slot::Pending(Arc::clone(&flight)));
        self.evict_encrypt(&mut side, now);
        Step::Lead(flight)
    }

    /// Keeps the encrypt side within capacity: expired entries first, then
    /// the least recently used. Pending entries stay (their callers wait).
    fn evict_encrypt(&self, side: &mut EncryptSide, now: Duration) {
        if side.entries.len() <= self.policy.capacity {
            return;
        }
        let max_age = self.policy.max_age;
        side.entries.retain(|_, slot| match slot {
            Slot::Ready(entry) => now.saturating_sub(entry.created) < max_age,
            Slot::Pending(_) => true,
        });
        while side.entries.len() > self.policy.capacity {
            let oldest = side
                .entries
                .iter()
                .filter_map(|(context, slot)| match slot {
                    Slot::Ready(entry) => Some((entry.last_used, context)),
                    Slot::Pending(_) => None,
                })
                .min_by_key(|(used, _)| *used)
                .map(|(_, context)| context.clone());
            match oldest {
                Some(context) => side.entries.remove(&context),
                None => break,
            };
        }
    }

    /// A cached data key for these encrypted data keys and context, if one
    /// is there and not too old. The caller checks it against the envelope's
    /// commitment before use.
    pub(crate) fn unwrapped(&self, edks: &[EncryptedDataKey], context: &EncryptionContext) -> Option<DataKey> {
        let now = (self.clock)();
        let mut side = lock(&self.decrypt);
        let hash = wrapped_hash(side.seed, edks);
        side.tick += 1;
        let tick = side.tick;
        let max_age = self.policy.max_age;
        let bucket = side.buckets.get_mut(&hash)?;
        let at = bucket.iter().position(|e| e.edks == edks && e.context == *context)?;
        if now.saturating_sub(bucket[at].created) >= max_age {
            bucket.swap_remove(at);
            if bucket.is_empty() {
                side.buckets.remove(&hash);
            }
            side.len -= 1;
            return None;
        }
        bucket[at].last_used = tick;
        Some(bucket[at].key.duplicate())
    }

    /// Remembers an unwrapped data key (already checked against a commitment).
    pub(crate) fn remember(&self, edks: &[EncryptedDataKey], context: &EncryptionContext, key: &DataKey) {
        let now = (self.clock)();
        let mut side = lock(&self.decrypt);
        let hash = wrapped_hash(side.seed, edks);
        side.tick += 1;
        let tick = side.tick;
        let bucket = side.buckets.entry(hash).or_default();
        if let Some(entry) = bucket.iter_mut().find(|e| e.edks == edks && e.context == *context) {
            entry.key = key.duplicate();
            entry.created = now;
            entry.last_used = tick;
            return;
        }
        bucket.push(Unwrapped {
            edks: edks.to_vec(),
            context: context.clone(),
            key: key.duplicate(),
            created: now,
            last_used: tick,
        });
        side.len += 1;
        self.evict_decrypt(&mut side, now);
    }

    fn evict_decrypt(&self, side: &mut DecryptSide, now: Duration) {
        if side.len <= self.policy.capacity {
            return;
        }
        let max_age = self.policy.max_age;
        for bucket in side.buckets.values_mut() {
            bucket.retain(|e| now.saturating_sub(e.created) < max_age);
        }
        side.buckets.retain(|_, bucket| !bucket.is_empty());
        side.len = side.buckets.values().map(Vec::len).sum();
        while side.len > self.policy.capacity {
            let oldest = side
                .buckets
                .iter()
                .flat_map(|(hash, bucket)| bucket.iter().enumerate().map(move |(i, e)| (e.last_used, *hash, i)))
                .min_by_key(|(used, _, _)| *used);
            let Some((_, hash, i)) = oldest else { break };
            if let Some(bucket) = side.buckets.get_mut(&hash) {
                bucket.swap_remove(i);
                if bucket.is_empty() {
                    side.buckets.remove(&hash);
                }
            }
            side.len -= 1;
        }
    }

    /// Entries held now: (encrypt side, decrypt side).
    pub(crate) fn len(&self) -> (usize, usize) {
        (lock(&self.encrypt).entries.len(), lock(&self.decrypt).len)
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (encrypt, decrypt) = self.len();
        f.debug_struct("Cache")
            .field("policy", &self.policy)
            .field("encrypt_entries", &encrypt)
            .field("decrypt_entries", &decrypt)
            .finish()
    }
}

/// The caller that asks the keyrings for a context. If its future is
/// dropped before the answer (a cancelled task), the pending entry is
/// removed and the waiters are told to look again, so none waits forever.
struct Leading<'a> {
    cache: &'a Cache,
    context: &'a EncryptionContext,
    flight: Arc<Flight>,
    finished: bool,
}

impl Leading<'_> {
    fn finish(&mut self, result: Result<Materials, KeyringError>, len: u64) -> Result<Arc<Materials>, KeyringError> {
        self.finished = true;
        let now = (self.cache.clock)();
        let mut side = lock(&self.cache.encrypt);
        side.tick += 1;
        let tick = side.tick;
        let ours = matches!(side.entries.get(self.context), Some(Slot::Pending(f)) if Arc::ptr_eq(f, &self.flight));
        match result {
            Ok(materials) => {
                let materials = Arc::new(materials);
                if ours {
                    let entry = Reusable {
                        materials: Arc::clone(&materials),
                        created: now,
                        messages: 1,
                        bytes: len,
                        last_used: tick,
                    };
                    side.entries.insert(self.context.clone(), Slot::Ready(entry));
                }
                drop(side);
                self.flight.finish(Outcome::Retry);
                Ok(materials)
            }
            Err(error) => {
                if ours {
                    side.entries.remove(self.context);
                }
                drop(side);
                self.flight.finish(Outcome::Failed(error.kind(), error.message().to_owned()));
                Err(error)
            }
        }
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        {
            let mut side = lock(&self.cache.encrypt);
            if matches!(side.entries.get(self.context), Some(Slot::Pending(f)) if Arc::ptr_eq(f, &self.flight)) {
                side.entries.remove(self.context);
            }
        }
        self.flight.finish(Outcome::Retry);
    }
}

#[cfg(test)]
mod tests;

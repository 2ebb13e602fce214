//! Randomness. Keys come straight from the operating system; message ids
//! come from a per-thread generator seeded from it, because a system call
//! for every record costs more than the rest of sealing a small one.
//!
//! The generator is AES-256 in counter mode with fast key erasure: each
//! refill encrypts a run of counter blocks, the first two blocks become the
//! next key at once, and the rest are handed out and wiped as they go, so a
//! later compromise of the state does not reveal ids already handed out. It
//! reseeds from the OS on first use in a thread, every [`RESEED_AFTER`] ids,
//! and after every fork: a forked child starts with a copy of its parent's
//! state and must not repeat its ids, since a repeated id under a cached data
//! key repeats the body key and its nonces (MUST 3.3).
//!
//! Forks are detected without a system call per id. Asking for the process
//! id each time (what this module did before) costs 140-290 ns on the VMs
//! this was measured on, more than sealing a short record; and this crate
//! forbids the `unsafe` that registering a fork handler or a
//! `MADV_WIPEONFORK` page takes. rand 0.8's `ReseedingRng` registers one
//! (`pthread_atfork`, bumping a global counter in the prepare, parent and
//! child handlers) and checks that counter before producing each block of
//! output, behind a safe API: [`ForkEpoch`] wraps it around a one-value
//! "generator" whose value is taken afresh from a counter each time rand
//! reseeds it, so it reads a new epoch exactly when a fork has happened since
//! the last read. Every id is drawn only after reading the epoch, and the
//! generator is replaced from the OS when the epoch differs from the one it
//! was seeded under, so no buffered id crosses a fork. The limit is that of
//! every `pthread_atfork`-based check (OpenSSL's among them): a child made
//! by a raw `clone` system call that bypasses libc's `fork` is not seen;
//! `posix_spawn`, `vfork` and `fork` followed by `exec` never run this
//! code in the child.

use std::cell::RefCell;

use aes::Aes256Enc;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;

/// Fills `buf` from the OS random source.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|e| Error::Io(std::io::Error::other(format!("system random source failed: {e}"))))
}

/// A fresh message id from this thread's generator (MUST 3.3).
pub(crate) fn message_id() -> Result<[u8; 32], Error> {
    let mut id = [[0u8; ID_LEN]];
    message_ids(&mut id)?;
    Ok(id[0])
}

/// Fills `out` with fresh ids.
pub(crate) fn message_ids(out: &mut [[u8; 32]]) -> Result<(), Error> {
    STATE.with(|state| {
        let state = &mut *state.borrow_mut();
        for id in out {
            // Read before every id: a fork between two ids of one call is
            // impossible on this thread, but reading it costs nothing.
            let epoch = state.epoch.current();
            let generator = match &mut state.generator {
                Some(g) if g.epoch == epoch && g.ids_left > 0 => g,
                slot => slot.insert(Generator::seeded(epoch)?),
            };
            *id = generator.next();
        }
        Ok(())
    })
}

/// Ids handed out between two reseeds from the OS.
const RESEED_AFTER: u32 = 1 << 16;
/// Counter blocks per refill: two for the next key, the rest for ids.
const BLOCKS: usize = 128;
const KEY_BLOCKS: usize = 2;
const ID_LEN: usize = 32;
const IDS_PER_REFILL: usize = (BLOCKS - KEY_BLOCKS) * 16 / ID_LEN;

/// A thread's fork epoch and its generator, if it has one yet.
struct State {
    epoch: ForkEpoch,
    generator: Option<Generator>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State { epoch: ForkEpoch::new(), generator: None });
}

#[cfg(unix)]
use fork_epoch::ForkEpoch;

/// The fork epoch on a platform without `fork`: it never changes.
#[cfg(not(unix))]
struct ForkEpoch;

#[cfg(not(unix))]
impl ForkEpoch {
    fn new() -> Self {
        Self
    }

    fn current(&mut self) -> u64 {
        0
    }
}

#[cfg(unix)]
mod fork_epoch {
    use std::sync::atomic::{AtomicU64, Ordering};

    use rand_core06::block::BlockRngCore;
    use rand08::rngs::adapter::ReseedingRng;
    use rand08::{RngCore, SeedableRng};

    /// Epochs handed out in this process (and, copied by fork, its
    /// children): only ever increases, so a thread's new epoch always
    /// differs from its old one.
    static EPOCHS: AtomicU64 = AtomicU64::new(1);

    /// A number that changes after the process forks (see the module docs).
    pub(super) struct ForkEpoch(ReseedingRng<Epoch, NextEpoch>);

    impl ForkEpoch {
        pub(super) fn new() -> Self {
            // Threshold 0: reseeded on fork only, never after a byte count.
            Self(ReseedingRng::new(Epoch(next()), 0, NextEpoch))
        }

        /// This thread's epoch; a different one after every fork since the last call.
        pub(super) fn current(&mut self) -> u64 {
            // Each call takes exactly one block of `Epoch`'s output (eight
            // bytes), so rand checks its fork counter on every call.
            let mut bytes = [0u8; 8];
            self.0.fill_bytes(&mut bytes);
            u64::from_le_bytes(bytes)
        }
    }

    fn next() -> u64 {
        EPOCHS.fetch_add(1, Ordering::Relaxed)
    }

    /// A "generator" of one value, repeated: the epoch it was seeded with.
    pub(super) struct Epoch(u64);

    impl BlockRngCore for Epoch {
        type Item = u32;
        type Results = [u32; 2];

        fn generate(&mut self, results: &mut [u32; 2]) {
            // The two halves, low first, as `fill_bytes` reads them back.
            let bytes = self.0.to_le_bytes();
            results[0] = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            results[1] = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        }
    }

    impl SeedableRng for Epoch {
        type Seed = [u8; 8];

        fn from_seed(seed: [u8; 8]) -> Self {
            Self(u64::from_le_bytes(seed))
        }
    }

    /// What rand "reseeds" [`Epoch`] from after a fork: the next epoch. Infallible.
    pub(super) struct NextEpoch;

    impl RngCore for NextEpoch {
        fn next_u32(&mut self) -> u32 {
            let bytes = next().to_le_bytes();
            u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
        }

        fn next_u64(&mut self) -> u64 {
            next()
        }

        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for chunk in dest.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes()[..chunk.len()]);
            }
        }

        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand08::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
}

struct Generator {
    cipher: Aes256Enc,
    /// Output not yet handed out; the first `used` ids are already wiped.
    ids: [[u8; ID_LEN]; IDS_PER_REFILL],
    used: usize,
    /// The fork epoch it was seeded in.
    epoch: u64,
    ids_left: u32,
}

impl Generator {
    fn seeded(epoch: u64) -> Result<Self, Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        fill(seed.as_mut())?;
        let cipher = Aes256Enc::new(&(*seed).into());
        let ids = [[0; ID_LEN]; IDS_PER_REFILL];
        Ok(Self { cipher, ids, used: IDS_PER_REFILL, epoch, ids_left: RESEED_AFTER })
    }

    fn next(&mut self) -> [u8; ID_LEN] {
        if self.used == IDS_PER_REFILL {
            self.refill();
        }
        let id = self.ids[self.used];
        self.ids[self.used].as_mut_slice().zeroize();
        self.used += 1;
        self.ids_left -= 1;
        id
    }

    fn refill(&mut self) {
        let mut blocks = [[0u8; 16]; BLOCKS];
        for (counter, block) in (0u64..).zip(blocks.iter_mut()) {
            block[..8].copy_from_slice(&counter.to_le_bytes());
        }
        self.cipher.encrypt_blocks(aes::Block::cast_slice_from_core_mut(&mut blocks[..]));
        // Fast key erasure: the old key is gone before any output is used.
        let mut key = Zeroizing::new([0u8; 32]);
        key[..16].copy_from_slice(&blocks[0]);
        key[16..].copy_from_slice(&blocks[1]);
        self.cipher = Aes256Enc::new(&(*key).into());
        for (id, pair) in self.ids.iter_mut().zip(blocks[KEY_BLOCKS..].chunks_exact(2)) {
            id[..16].copy_from_slice(&pair[0]);
            id[16..].copy_from_slice(&pair[1]);
        }
        // Slices are wiped in one bulk fill; arrays one element at a time.
        blocks.as_flattened_mut().zeroize();
        self.used = 0;
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.ids.as_flattened_mut().zeroize();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_do_not_repeat_across_refills_and_reseeds() {
        let n = usize::try_from(RESEED_AFTER).expect("fits") + 3 * IDS_PER_REFILL;
        let ids: HashSet<[u8; 32]> = (0..n).map(|_| message_id().expect("id")).collect();
        assert_eq!(ids.len(), n);
        assert!(!ids.contains(&[0; 32]));
    }

    #[test]
    fn threads_get_different_ids() {
        let ids: Vec<[u8; 32]> = (0..4)
            .map(|_| std::thread::spawn(|| message_id().expect("id")))
            .map(|h| h.join().expect("thread"))
            .collect();
        let distinct: HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn a_changed_epoch_reseeds() {
        let before = message_id().expect("id");
        // Pretend this thread's generator was seeded before a fork.
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let g = s.generator.as_mut().expect("seeded by the call above");
            g.epoch = g.epoch.wrapping_add(1);
        });
        let after = message_id().expect("id");
        assert_ne!(before, after);
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let epoch = s.epoch.current();
            let g = s.generator.as_ref().expect("seeded");
            assert_eq!(g.epoch, epoch);
            assert_eq!(g.used, 1, "a fresh state handed out one id");
        });
    }

    #[test]
    fn the_epoch_stays_put_without_a_fork_and_differs_between_threads() {
        let mut epoch = ForkEpoch::new();
        let first = epoch.current();
        assert!((0..100).all(|_| epoch.current() == first));
        let other = std::thread::spawn(|| ForkEpoch::new().current()).join().expect("thread");
        assert_ne!(first, other);
    }
}

//! Randomness. Keys come straight from the operating system; message ids
//! come from a per-thread generator seeded from it, because a system call
//! for every record costs more than the rest of sealing a small one.
//!
//! The generator is AES-256 in counter mode with fast key erasure: each
//! refill encrypts a run of counter blocks, the first two blocks become the
//! next key at once, and the rest are handed out and wiped as they go, so a
//! later compromise of the state does not reveal ids already handed out. It
//! reseeds from the OS on first use in a thread, every [`RESEED_AFTER`] ids,
//! and whenever the process id has changed: a forked child starts with a copy
//! of its parent's state and must not repeat its ids, since a repeated id
//! under a cached data key repeats the body key and its nonces (MUST 3.3).

use std::cell::RefCell;

use aes::Aes256;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;

/// Fills `buf` from the OS random source.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|e| Error::Io(std::io::Error::other(format!("system random source failed: {e}"))))
}

/// A fresh message id from this thread's generator (MUST 3.3).
pub(crate) fn message_id() -> Result<[u8; 32], Error> {
    GENERATOR.with(|generator| {
        let mut generator = generator.borrow_mut();
        let pid = std::process::id();
        let generator = match &mut *generator {
            Some(g) if g.pid == pid && g.ids_left > 0 => g,
            slot => slot.insert(Generator::seeded(pid)?),
        };
        Ok(generator.next())
    })
}

/// Fills `out` with fresh ids, checking the process id once for all of
/// them: the check is a system call that costs more than sealing a short
/// record, so a caller sealing many records in one call asks for them together.
pub(crate) fn message_ids(out: &mut [[u8; 32]]) -> Result<(), Error> {
    GENERATOR.with(|generator| {
        let mut generator = generator.borrow_mut();
        let pid = std::process::id();
        for id in out {
            let g = match &mut *generator {
                Some(g) if g.pid == pid && g.ids_left > 0 => g,
                slot => slot.insert(Generator::seeded(pid)?),
            };
            *id = g.next();
        }
        Ok(())
    })
}

/// Ids handed out between two reseeds from the OS.
const RESEED_AFTER: u32 = 1 << 16;
/// Counter blocks per refill: two for the next key, the rest for ids.
const BLOCKS: usize = 32;
const KEY_BLOCKS: usize = 2;
const ID_LEN: usize = 32;
const IDS_PER_REFILL: usize = (BLOCKS - KEY_BLOCKS) * 16 / ID_LEN;

thread_local! {
    static GENERATOR: RefCell<Option<Generator>> = const { RefCell::new(None) };
}

struct Generator {
    cipher: Aes256,
    /// Output not yet handed out; the first `used` ids are already wiped.
    ids: Zeroizing<[[u8; ID_LEN]; IDS_PER_REFILL]>,
    used: usize,
    pid: u32,
    ids_left: u32,
}

impl Generator {
    fn seeded(pid: u32) -> Result<Self, Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        fill(seed.as_mut())?;
        let cipher = Aes256::new(&(*seed).into());
        let ids = Zeroizing::new([[0; ID_LEN]; IDS_PER_REFILL]);
        Ok(Self { cipher, ids, used: IDS_PER_REFILL, pid, ids_left: RESEED_AFTER })
    }

    fn next(&mut self) -> [u8; ID_LEN] {
        if self.used == IDS_PER_REFILL {
            self.refill();
        }
        let id = self.ids[self.used];
        self.ids[self.used].zeroize();
        self.used += 1;
        self.ids_left -= 1;
        id
    }

    fn refill(&mut self) {
        let mut blocks = Zeroizing::new([[0u8; 16]; BLOCKS]);
        for (counter, block) in (0u64..).zip(blocks.iter_mut()) {
            block[..8].copy_from_slice(&counter.to_le_bytes());
        }
        self.cipher.encrypt_blocks(aes::Block::cast_slice_from_core_mut(&mut blocks[..]));
        // Fast key erasure: the old key is gone before any output is used.
        let mut key = Zeroizing::new([0u8; 32]);
        key[..16].copy_from_slice(&blocks[0]);
        key[16..].copy_from_slice(&blocks[1]);
        self.cipher = Aes256::new(&(*key).into());
        for (id, pair) in self.ids.iter_mut().zip(blocks[KEY_BLOCKS..].chunks_exact(2)) {
            id[..16].copy_from_slice(&pair[0]);
            id[16..].copy_from_slice(&pair[1]);
        }
        self.used = 0;
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
    fn a_changed_process_id_reseeds() {
        let before = message_id().expect("id");
        // Pretend this thread's state was inherited from another process.
        GENERATOR.with(|g| {
            let mut g = g.borrow_mut();
            let g = g.as_mut().expect("seeded by the call above");
            g.pid = g.pid.wrapping_add(1);
        });
        let after = message_id().expect("id");
        assert_ne!(before, after);
        GENERATOR.with(|g| {
            let g = g.borrow();
            let g = g.as_ref().expect("seeded");
            assert_eq!(g.pid, std::process::id());
            assert_eq!(g.used, 1, "a fresh state handed out one id");
        });
    }
}

//! Who is attached to a mapshare file, and whether they are still alive.
//!
//! Each process that opens a mapshare file takes a slot in the file's lease
//! table and holds an exclusive OFD lock on that slot's *lock byte* (one
//! byte per slot, far past the data, see [`lock_byte`]). The kernel drops
//! the lock when the process dies, however it dies, so "is slot N alive?" is
//! one `F_OFD_GETLK` away. A slot carries a generation that grows each time
//! the slot is taken; a lock word that names (slot, generation) can never be
//! mistaken for a later owner of the same slot, nor for a new process that
//! happens to get the same PID.
//!
//! # Slot layout (64 bytes, native words, one cache line)
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | generation | 1..2^21, wraps skipping 0 |
//! | 4 | state | 0 free, 1 attached (a hint for `info` and scanning) |
//! | 8 | pid | of the last taker |
//! | 16 | since | milliseconds since the Unix epoch when taken |
//!
//! Everything in a slot is written by other processes and is validated
//! before use; the lock, not the slot's bytes, is the proof of life.
//!
//! # `fork()`
//!
//! A forked child shares its parent's open file descriptions and so its OFD
//! locks: the lock alone would let the child pass for its parent after the
//! parent died. Liveness therefore also asks whether the slot's recorded
//! PID exists (`kill(pid, 0)`); once the parent is gone its slot is dead,
//! whatever the child holds. The child itself cannot act under the parent's
//! lease: operations that record an owner check the PID and return
//! [`Error::ForkedChild`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::format::{LEASE_SLOT_LEN, MAX_LEASE_SLOTS};
use crate::region::{Region, GUARD_BYTE};
use crate::sys;
use crate::sys::lock::LockKind;

/// The byte the create-or-open protocol locks while a file is initialized.
pub const INIT_BYTE: u64 = GUARD_BYTE - 1;
/// The first slot's lock byte; slot `i` locks `LEASE_LOCK_BASE + i`.
pub const LEASE_LOCK_BASE: u64 = INIT_BYTE - 1 - MAX_LEASE_SLOTS as u64;

const SLOT_BITS: u32 = 10;
const GEN_BITS: u32 = 21;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;
const FREE: u32 = 0;
const ATTACHED: u32 = 1;

/// The lock byte of slot `slot`.
pub fn lock_byte(slot: u32) -> u64 {
    LEASE_LOCK_BASE + u64::from(slot)
}

/// (slot, generation) packed into 31 bits: the identity a lock word stores.
/// Never 0 (generations start at 1), and bit 31 is always clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(u32);

impl Token {
    /// Packs a slot and generation.
    pub fn new(slot: u32, generation: u32) -> Token {
        Token((generation & GEN_MASK) << SLOT_BITS | (slot & ((1 << SLOT_BITS) - 1)))
    }

    /// Unpacks a token read from shared memory; `None` if it cannot be one.
    #[inline]
    pub fn from_raw(raw: u32) -> Option<Token> {
        let t = Token(raw);
        (raw & (1 << 31) == 0 && t.generation() != 0).then_some(t)
    }

    /// The raw value stored in lock words.
    #[inline]
    pub fn raw(self) -> u32 {
        self.0
    }

    /// The slot.
    pub fn slot(self) -> u32 {
        self.0 & ((1 << SLOT_BITS) - 1)
    }

    /// The slot's generation when taken.
    pub fn generation(self) -> u32 {
        self.0 >> SLOT_BITS
    }
}

/// This process's attachment to a file: the slot it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    token: Token,
    pid: u32,
    /// `sys::fork_generation()` when attached: a cheap fork check.
    forks: u64,
}

impl Lease {
    /// The identity this process stores in lock words.
    #[inline]
    pub fn token(&self) -> Token {
        self.token
    }

    /// The process that attached.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails with [`Error::ForkedChild`] in a forked child of the process
    /// that attached.
    #[inline]
    pub fn check_owner(&self, region: &Region) -> Result<()> {
        if sys::fork_generation() == self.forks {
            return Ok(());
        }
        self.check_pid(region)
    }

    #[cold]
    fn check_pid(&self, region: &Region) -> Result<()> {
        let pid = sys::pid();
        if pid != self.pid {
            return Err(Error::ForkedChild {
                origin: region.origin().clone(),
                owner: self.pid,
                pid,
            });
        }
        Ok(())
    }
}

/// One row of [`LeaseTable::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// Slot number.
    pub slot: u32,
    /// Its generation.
    pub generation: u32,
    /// Process id recorded in the slot.
    pub pid: u32,
    /// When the slot was taken.
    pub since: SystemTime,
    /// Whether the process is alive (lock held and PID exists).
    pub alive: bool,
}

/// What [`LeaseTable::liveness`] found about an owner token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The owner is this very lease.
    Me,
    /// Another live process.
    Alive {
        /// Its PID, as recorded in its slot.
        pid: u32,
    },
    /// The owner is gone (or its slot was reused since).
    Dead {
        /// The PID last recorded in the slot.
        pid: u32,
    },
}

/// The lease table of a mapped mapshare file.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTable<'r> {
    region: &'r Region,
    offset: u64,
    slots: u32,
}

struct Slot<'r> {
    generation: &'r AtomicU32,
    state: &'r AtomicU32,
    pid: &'r AtomicU32,
    since_ms: &'r AtomicU64,
}

impl<'r> LeaseTable<'r> {
    /// The table of `slots` slots at `offset` of `region` (from a validated
    /// header).
    #[inline]
    pub fn new(region: &'r Region, offset: u64, slots: u32) -> LeaseTable<'r> {
        LeaseTable {
            region,
            offset,
            slots: slots.min(MAX_LEASE_SLOTS),
        }
    }

    /// Slots in the table.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    fn slot_offset(&self, i: u32) -> u64 {
        self.offset + u64::from(i) * LEASE_SLOT_LEN
    }

    fn slot(&self, i: u32) -> Result<Slot<'r>> {
        let base = self.slot_offset(i);
        Ok(Slot {
            generation: self.region.atomic_u32(base)?,
            state: self.region.atomic_u32(base + 4)?,
            pid: self.region.atomic_u32(base + 8)?,
            since_ms: self.region.atomic_u64(base + 16)?,
        })
    }

    fn try_take(&self, i: u32) -> Result<Option<Lease>> {
        let file = self.region.file();
        let locked = sys::lock::try_lock(file, LockKind::Exclusive, lock_byte(i), 1)
            .map_err(|e| Error::io(self.region.origin(), "lock lease slot", e))?;
        if !locked {
            return Ok(None);
        }
        let slot = self.slot(i)?;
        // We hold the slot's lock: nobody else writes its generation now.
        let mut generation = slot.generation.load(Ordering::Relaxed).wrapping_add(1) & GEN_MASK;
        if generation == 0 {
            generation = 1;
        }
        sys::watch_forks();
        let forks = sys::fork_generation();
        let pid = sys::pid();
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64;
        slot.pid.store(pid, Ordering::Relaxed);
        slot.since_ms.store(since, Ordering::Relaxed);
        slot.state.store(ATTACHED, Ordering::Relaxed);
        slot.generation.store(generation, Ordering::Release);
        Ok(Some(Lease {
            token: Token::new(i, generation),
            pid,
            forks,
        }))
    }

    /// Takes a slot for this process. Free slots are used first; when the
    /// table is full, slots whose holders died are reclaimed.
    pub fn attach(&self) -> Result<Lease> {
        // Pass 1: slots marked free. Pass 2: any slot whose lock is free,
        // i.e. whose holder died without releasing it.
        for pass in 0..2 {
            for i in 0..self.slots {
                if pass == 0 && self.slot(i)?.state.load(Ordering::Relaxed) != FREE {
                    continue;
                }
                if let Some(lease) = self.try_take(i)? {
                    return Ok(lease);
                }
            }
        }
        Err(Error::LeaseTableFull {
            origin: self.region.origin().clone(),
            slots: self.slots,
        })
    }

    /// Gives the slot back: marks it free and drops its lock.
    pub fn release(&self, lease: &Lease) -> Result<()> {
        if lease.pid != sys::pid() {
            // A forked child must not free its parent's slot.
            return Ok(());
        }
        let slot = self.slot(lease.token.slot())?;
        slot.state.store(FREE, Ordering::Release);
        sys::lock::unlock(self.region.file(), lock_byte(lease.token.slot()), 1)
            .map_err(|e| Error::io(self.region.origin(), "unlock lease slot", e))
    }

    /// Whether the owner named by `token` is alive, as seen by `me` (or by
    /// an observer with no lease).
    pub fn liveness(&self, token: Token, me: Option<&Lease>) -> Result<Liveness> {
        if me.is_some_and(|m| m.token == token) {
            return Ok(Liveness::Me);
        }
        let i = token.slot();
        if i >= self.slots {
            return Err(Error::Corrupted {
                origin: self.region.origin().clone(),
                what: "owner token",
                why: format!("slot {i} does not exist (the table has {})", self.slots),
            });
        }
        let base = self.slot_offset(i);
        let pid = self.region.load_u32(base + 8, Ordering::Relaxed)?;
        if self.region.load_u32(base, Ordering::Acquire)? != token.generation() {
            return Ok(Liveness::Dead { pid });
        }
        if !self.slot_locked(i)? || !sys::process_exists(pid) {
            return Ok(Liveness::Dead { pid });
        }
        Ok(Liveness::Alive { pid })
    }

    /// Whether some *other* open file description holds slot `i`'s lock.
    fn slot_locked(&self, i: u32) -> Result<bool> {
        let holder = sys::lock::holder(self.region.file(), LockKind::Exclusive, lock_byte(i), 1)
            .map_err(|e| Error::io(self.region.origin(), "query lease slot", e))?;
        Ok(holder.is_some())
    }

    /// Every slot that is attached or whose lock is held, with its liveness.
    pub fn list(&self, me: Option<&Lease>) -> Result<Vec<Attached>> {
        let mut out = Vec::new();
        for i in 0..self.slots {
            let base = self.slot_offset(i);
            let generation = self.region.load_u32(base, Ordering::Acquire)?;
            let state = self.region.load_u32(base + 4, Ordering::Relaxed)?;
            let mine = me.is_some_and(|m| m.token.slot() == i);
            let locked = mine || self.slot_locked(i)?;
            if state == FREE && !locked {
                continue;
            }
            let pid = self.region.load_u32(base + 8, Ordering::Relaxed)?;
            let since_ms = self.region.load_u64(base + 16, Ordering::Relaxed)?;
            let since = UNIX_EPOCH
                .checked_add(Duration::from_millis(since_ms))
                .unwrap_or(UNIX_EPOCH);
            out.push(Attached {
                slot: i,
                generation,
                pid,
                since,
                alive: mine || (locked && sys::process_exists(pid)),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_pack_and_unpack() {
        let t = Token::new(1023, GEN_MASK);
        assert_eq!(t.slot(), 1023);
        assert_eq!(t.generation(), GEN_MASK);
        assert_eq!(t.raw() & (1 << 31), 0);
        assert_eq!(Token::from_raw(t.raw()), Some(t));
        assert_eq!(Token::from_raw(0), None);
        assert_eq!(Token::from_raw(5), None, "generation 0 is never issued");
        assert_eq!(Token::from_raw(1 << 31 | 1 << 10), None);
    }

    #[test]
    fn lock_bytes_do_not_collide() {
        assert!(lock_byte(MAX_LEASE_SLOTS - 1) < INIT_BYTE);
        const { assert!(INIT_BYTE < GUARD_BYTE) };
    }
}

//! Who is attached to a mapshare file, and whether they are still alive.
//!
//! Each process that opens a mapshare file takes a slot in the file's lease
//! table and holds an exclusive OFD lock on that slot's *lock byte* (one
//! byte per slot, far past the data, see [`lock_byte`]). The kernel drops
//! the lock when the process dies, however it dies and in whatever PID
//! namespace it runs, so "is slot N alive?" is one `F_OFD_GETLK` away: **the
//! lock is the proof of life.** A slot carries a generation that grows each
//! time the slot is taken; a lock word that names (slot, generation) is
//! never mistaken for a later owner of the same slot.
//!
//! # Shared locks on lease bytes
//!
//! Holders lock exclusively, so a *shared* lock on a lease byte is never
//! a holder's: any process that may only read the file can take one (a
//! whole-file `lockf` read lock does). It cannot keep a dead holder alive
//! ([`LeaseTable::liveness`] counts exclusive locks only), but it does
//! refuse the exclusive lock an attacher needs, and nothing can change
//! that: a proof of life a reader cannot imitate must be an exclusive
//! lock. So an attacher skips such slots like live ones, and when none
//! is left says why ([`Error::LeaseSlotsBlocked`], not
//! [`Error::LeaseTableFull`]).
//!
//! # Slot layout (64 bytes, native words, one cache line)
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | generation (`u64`) | 1..2^53, wraps skipping 0; written last, with release |
//! | 8 | state (`u32`) | 0 free, 1 attached (a hint for `info` and scanning) |
//! | 12 | pid (`u32`) | of the last taker, in *its* PID namespace |
//! | 16 | since (`u64`) | milliseconds since the Unix epoch when taken |
//! | 24 | ns dev (`u64`) | device of the taker's `/proc/self/ns/pid` (0: unknown) |
//! | 32 | ns ino (`u64`) | inode of the same (0: unknown) |
//! | 40 | start (`u64`) | the taker's start time, clock ticks after boot as its time namespace shows it (0: unknown) |
//! | 48 | time ns dev (`u64`) | device of the taker's `/proc/self/ns/time` (0: unknown) |
//! | 56 | time ns ino (`u64`) | inode of the same (0: unknown) |
//!
//! Everything in a slot is written by other processes and is validated
//! before use; only the lock proves anything.
//!
//! # Tokens cannot come back
//!
//! A [`Token`] is 64 bits: slot in bits 0..10, generation in bits 10..63
//! (never 0), bit 63 clear (lock words use it as their waiters bit). A stale
//! token in some lock word could only name a live process again if the same
//! slot were taken 2^53 − 1 ≈ 9.0 × 10^15 more times while that word sat
//! unchanged. Each take is at least an `open`, an `mmap` and an `fcntl`
//! lock, well over 1 µs; even at 1 µs per take the wrap needs
//! 9.0 × 10^9 s, about 285 years of doing nothing else. So a token whose
//! slot generation matches names the process that took it.
//!
//! # PID namespaces and `fork()`
//!
//! A forked child shares its parent's open file descriptions and so its OFD
//! locks: the lock alone would let the child pass for its parent after the
//! parent died. So when the checker shares the holder's PID namespace
//! (compared by the namespace's device and inode, stored in the slot), the
//! recorded PID must also name a running process with the recorded start
//! time: a dead, zombie or reused PID means the holder is dead, whatever the
//! child holds (see [`crate::sys::proc::probe`]; `/proc` mounted from
//! another namespace, or hiding other users' processes with `hidepid`, is
//! detected and a pidfd used instead). The start time is compared only
//! when the checker also shares the holder's *time* namespace (stored
//! too): `/proc/<pid>/stat` shifts it by the reader's boot-time offset. Across PID
//! namespaces a PID means nothing to the checker, so only the lock counts
//! there: a holder in a container is never declared dead while it lives.
//! The one case that errs is a forked child outliving its parent in another
//! namespace than the checker's: the holder then looks alive until the
//! child exits too. Wrongly alive only delays a takeover; wrongly dead
//! would put two processes inside one lock.
//!
//! The child itself cannot act under the parent's lease: operations that
//! record an owner check the fork counter ([`crate::sys::fork_generation`])
//! and return [`Error::ForkedChild`], and drops that would release
//! something compare it too.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::format::{LEASE_SLOT_LEN, MAX_LEASE_SLOTS};
use crate::region::{Region, GUARD_BYTE};
use crate::sys;
use crate::sys::lock::LockKind;
use crate::sys::proc::{Identity, Probe};

/// The byte the create-or-open protocol locks while a file is initialized.
pub const INIT_BYTE: u64 = GUARD_BYTE - 1;
/// The first slot's lock byte; slot `i` locks `LEASE_LOCK_BASE + i`.
pub const LEASE_LOCK_BASE: u64 = INIT_BYTE - 1 - MAX_LEASE_SLOTS as u64;

const SLOT_BITS: u32 = 10;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const GEN_BITS: u32 = 53;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
const FREE: u32 = 0;
const ATTACHED: u32 = 1;

const GENERATION_AT: u64 = 0;
const STATE_AT: u64 = 8;
const PID_AT: u64 = 12;
const SINCE_AT: u64 = 16;
const NS_DEV_AT: u64 = 24;
const NS_INO_AT: u64 = 32;
const START_AT: u64 = 40;
const TIME_DEV_AT: u64 = 48;
const TIME_INO_AT: u64 = 56;
const _: () = assert!(TIME_INO_AT + 8 <= LEASE_SLOT_LEN);

/// The lock byte of slot `slot`.
pub fn lock_byte(slot: u32) -> u64 {
    LEASE_LOCK_BASE + u64::from(slot)
}

/// (slot, generation) packed into 63 bits: the identity a lock word stores.
/// Never 0 (generations start at 1), and bit 63 is always clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(u64);

impl Token {
    /// Packs a slot (low 10 bits kept) and generation (low 53 bits kept).
    pub fn new(slot: u32, generation: u64) -> Token {
        Token((generation & GEN_MASK) << SLOT_BITS | (u64::from(slot) & SLOT_MASK))
    }

    /// Unpacks a token read from shared memory; `None` if it cannot be one.
    #[inline]
    pub fn from_raw(raw: u64) -> Option<Token> {
        let t = Token(raw);
        (raw & (1 << 63) == 0 && t.generation() != 0).then_some(t)
    }

    /// The raw value stored in lock words.
    #[inline]
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The slot.
    pub fn slot(self) -> u32 {
        (self.0 & SLOT_MASK) as u32
    }

    /// The slot's generation when taken.
    pub fn generation(self) -> u64 {
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

    /// Whether the caller is the process that attached (not a forked child
    /// of it): one relaxed load, no system call. Drops that write shared
    /// state must do nothing when this is false.
    #[inline]
    pub fn is_mine(&self) -> bool {
        sys::fork_generation() == self.forks
    }

    /// Fails with [`Error::ForkedChild`] in a forked child of the process
    /// that attached.
    #[inline]
    pub fn check_owner(&self, region: &Region) -> Result<()> {
        if self.is_mine() {
            return Ok(());
        }
        self.forked_child(region)
    }

    /// The fork counter moved: only a forked child sees that (the counter
    /// is bumped by a child-side `pthread_atfork` handler). No PID
    /// comparison: a child that is PID 1 of a new PID namespace, of a
    /// parent that was PID 1 of its own, would pass one.
    #[cold]
    fn forked_child(&self, region: &Region) -> Result<()> {
        Err(Error::ForkedChild {
            origin: region.origin().clone(),
            owner: self.pid,
            pid: sys::pid(),
        })
    }
}

/// One row of [`LeaseTable::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// Slot number.
    pub slot: u32,
    /// Its generation.
    pub generation: u64,
    /// Process id recorded in the slot, in the holder's PID namespace.
    pub pid: u32,
    /// Whether the holder's PID namespace is the observer's (so `pid`
    /// means the same process to both).
    pub same_pid_namespace: bool,
    /// When the slot was taken.
    pub since: SystemTime,
    /// Whether the process is alive (see [`LeaseTable::liveness`]).
    pub alive: bool,
}

/// What [`LeaseTable::liveness`] found about an owner token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The owner is this very lease.
    Me,
    /// Another live process.
    Alive {
        /// Its PID, as recorded in its slot (in its own PID namespace).
        pid: u32,
    },
    /// The owner is gone (or its slot was reused since).
    Dead {
        /// The PID last recorded in the slot.
        pid: u32,
    },
}

/// The lease table of a mapped mapshare file.
///
/// Public for inspection only: a process cannot give up the lease of a
/// file it still has open (a holder of one of its mutexes would look dead):
///
/// ```compile_fail
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir().unwrap();
/// let pair = mapshare::Shared::<u64>::open_or_create(dir.path().join("v"), &0)?;
/// let _guard = pair.lock().expect("fresh");
/// pair.file().leases().release(pair.file().lease())?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LeaseTable<'r> {
    region: &'r Region,
    offset: u64,
    slots: u32,
}

/// What [`LeaseTable::census`] found.
#[derive(Default)]
struct Census {
    /// Slots nobody locks (any more).
    free: u32,
    /// Slots whose lock byte only shared locks hold.
    blocked: u32,
    /// The PID behind one of those, if it is a classic POSIX lock.
    pid: Option<u32>,
}

/// A slot's fields as read from shared memory (untrusted).
struct SlotView {
    generation: u64,
    state: u32,
    pid: u32,
    since_ms: u64,
    ns: (u64, u64),
    start: u64,
    time_ns: (u64, u64),
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

    /// Reads slot `i`: the generation with acquire first, so the other
    /// fields are at least as new as the generation seen.
    fn read(&self, i: u32) -> Result<SlotView> {
        let base = self.slot_offset(i);
        let r = self.region;
        Ok(SlotView {
            generation: r.load_u64(base + GENERATION_AT, Ordering::Acquire)?,
            state: r.load_u32(base + STATE_AT, Ordering::Relaxed)?,
            pid: r.load_u32(base + PID_AT, Ordering::Relaxed)?,
            since_ms: r.load_u64(base + SINCE_AT, Ordering::Relaxed)?,
            ns: (
                r.load_u64(base + NS_DEV_AT, Ordering::Relaxed)?,
                r.load_u64(base + NS_INO_AT, Ordering::Relaxed)?,
            ),
            start: r.load_u64(base + START_AT, Ordering::Relaxed)?,
            time_ns: (
                r.load_u64(base + TIME_DEV_AT, Ordering::Relaxed)?,
                r.load_u64(base + TIME_INO_AT, Ordering::Relaxed)?,
            ),
        })
    }

    fn try_take(&self, i: u32) -> Result<Option<Lease>> {
        let file = self.region.file();
        let locked = sys::lock::try_lock(file, LockKind::Exclusive, lock_byte(i), 1)
            .map_err(|e| Error::io(self.region.origin(), "lock lease slot", e))?;
        if !locked {
            return Ok(None);
        }
        let base = self.slot_offset(i);
        let r = self.region;
        let gen_word: &AtomicU64 = r.atomic64(base + GENERATION_AT)?;
        // We hold the slot's lock: nobody else writes its generation now.
        let mut generation = gen_word.load(Ordering::Relaxed).wrapping_add(1) & GEN_MASK;
        if generation == 0 {
            generation = 1;
        }
        sys::watch_forks();
        let forks = sys::fork_generation();
        let me = Identity::current();
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64;
        r.atomic32(base + PID_AT)?.store(me.pid, Ordering::Relaxed);
        r.atomic64(base + SINCE_AT)?.store(since, Ordering::Relaxed);
        r.atomic64(base + NS_DEV_AT)?
            .store(me.ns_dev, Ordering::Relaxed);
        r.atomic64(base + NS_INO_AT)?
            .store(me.ns_ino, Ordering::Relaxed);
        r.atomic64(base + START_AT)?
            .store(me.start, Ordering::Relaxed);
        r.atomic64(base + TIME_DEV_AT)?
            .store(me.time_dev, Ordering::Relaxed);
        r.atomic64(base + TIME_INO_AT)?
            .store(me.time_ino, Ordering::Relaxed);
        r.atomic32(base + STATE_AT)?
            .store(ATTACHED, Ordering::Relaxed);
        gen_word.store(generation, Ordering::Release);
        Ok(Some(Lease {
            token: Token::new(i, generation),
            pid: me.pid,
            forks,
        }))
    }

    /// Takes a slot for this process among `range` (clamped to the
    /// table): a kind of object may keep slots for one role (log segments
    /// keep their first slots for writers). Free slots are used first;
    /// when none is, slots whose holders died are reclaimed.
    ///
    /// A slot whose lock byte another description holds *shared* is
    /// skipped like a live one: no mapshare holder locks shared, so it is
    /// another program's lock (one that may only read the file can take
    /// it), and the slot cannot be taken until it is released. If no slot
    /// can be taken and some were blocked that way, the error is
    /// [`Error::LeaseSlotsBlocked`], naming the cause, not
    /// [`Error::LeaseTableFull`].
    ///
    /// Crate-private: a slot's lock never conflicts with this process's
    /// own, so in a full table a second attach re-takes this process's
    /// own live slot and bumps its generation; every mutex it holds then
    /// looks dead to other lockers (two holders). Only `SharedFile`
    /// attaches, once per open.
    pub(crate) fn attach_within(&self, range: Range<u32>) -> Result<Lease> {
        let range = range.start.min(self.slots)..range.end.min(self.slots);
        // A slot freed between the passes and the census sends us round
        // again; a few rounds, then the census's verdict stands.
        for _round in 0..4 {
            // Pass 1: slots marked free. Pass 2: any slot whose lock is
            // free, i.e. whose holder died without releasing it.
            for pass in 0..2 {
                for i in range.clone() {
                    if pass == 0
                        && self
                            .region
                            .load_u32(self.slot_offset(i) + STATE_AT, Ordering::Relaxed)?
                            != FREE
                    {
                        continue;
                    }
                    if let Some(lease) = self.try_take(i)? {
                        return Ok(lease);
                    }
                }
            }
            let census = self.census(range.clone())?;
            if census.free > 0 {
                continue;
            }
            if census.blocked > 0 {
                return Err(Error::LeaseSlotsBlocked {
                    origin: self.region.origin().clone(),
                    slots: range.len() as u32,
                    blocked: census.blocked,
                    pid: census.pid,
                });
            }
            break;
        }
        Err(Error::LeaseTableFull {
            origin: self.region.origin().clone(),
            slots: range.len() as u32,
        })
    }

    /// Why the slots of `range` could not be taken: counts those whose
    /// lock byte is free now (a race), and those only shared locks block.
    #[cold]
    fn census(&self, range: Range<u32>) -> Result<Census> {
        let mut census = Census::default();
        for i in range {
            let holder =
                sys::lock::holder(self.region.file(), LockKind::Exclusive, lock_byte(i), 1)
                    .map_err(|e| Error::io(self.region.origin(), "query lease slot", e))?;
            match holder {
                None => census.free += 1,
                Some(h) if h.kind == LockKind::Shared => {
                    census.blocked += 1;
                    census.pid = census.pid.or(h.pid);
                }
                Some(_) => {}
            }
        }
        Ok(census)
    }

    /// Gives the slot back: marks it free and drops its lock.
    ///
    /// Crate-private: only a `SharedFile` that is going away may drop its
    /// proof of life. Safe code that released the lease of a file whose
    /// mutex it holds would let another process take the mutex over as
    /// if the holder had died (two holders, and two `&mut T`).
    pub(crate) fn release(&self, lease: &Lease) -> Result<()> {
        if !lease.is_mine() || lease.pid != sys::pid() {
            // A forked child must not free its parent's slot. Told by the
            // fork counter: a PID alone is fooled by a child that is PID 1
            // of a new PID namespace, of a parent that was PID 1 of its own
            // (found in review: such a child's drop of an inherited `Log`
            // freed the parent's lease, and the parent's tether with it).
            return Ok(());
        }
        let slot = self
            .region
            .atomic32(self.slot_offset(lease.token.slot()) + STATE_AT)?;
        slot.store(FREE, Ordering::Release);
        sys::lock::unlock(self.region.file(), lock_byte(lease.token.slot()), 1)
            .map_err(|e| Error::io(self.region.origin(), "unlock lease slot", e))
    }

    /// Whether the owner named by `token` is alive, as seen by `me` (or by
    /// an observer with no lease).
    ///
    /// Dead when the slot's generation moved on, or nobody holds the slot's
    /// lock, or (only when the checker shares the holder's PID namespace)
    /// the recorded PID no longer names the running process that took the
    /// slot (exited, zombie, or reused: the start time differs). Alive
    /// otherwise. See the module docs for why this never declares a live
    /// holder dead.
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
        let slot = self.read(i)?;
        let pid = slot.pid;
        if slot.generation != token.generation() || !self.slot_locked(i)? {
            return Ok(Liveness::Dead { pid });
        }
        // The fields read belong to this generation only if it did not
        // move on while we read them.
        let again = self
            .region
            .load_u64(self.slot_offset(i) + GENERATION_AT, Ordering::Acquire)?;
        if again != token.generation() {
            return Ok(Liveness::Dead { pid });
        }
        if pid_test_applies(&slot) && sys::proc::probe(pid, start_to_check(&slot)) == Probe::Gone {
            return Ok(Liveness::Dead { pid });
        }
        Ok(Liveness::Alive { pid })
    }

    /// Whether some *other* open file description holds slot `i`'s lock.
    ///
    /// Only an exclusive lock counts: holders lock their byte exclusively,
    /// and an exclusive lock excludes every shared one, so a shared lock
    /// is never a holder's. Without this, a process that may only read
    /// the file could take shared locks on the lease bytes and make dead
    /// holders look alive for ever (found in review).
    fn slot_locked(&self, i: u32) -> Result<bool> {
        let holder = sys::lock::holder(self.region.file(), LockKind::Exclusive, lock_byte(i), 1)
            .map_err(|e| Error::io(self.region.origin(), "query lease slot", e))?;
        Ok(holder.is_some_and(|h| h.kind == LockKind::Exclusive))
    }

    /// Every slot that is attached or whose lock is held, with its liveness.
    pub fn list(&self, me: Option<&Lease>) -> Result<Vec<Attached>> {
        let mut out = Vec::new();
        for i in 0..self.slots {
            let slot = self.read(i)?;
            let mine = me.is_some_and(|m| m.token.slot() == i);
            let locked = mine || self.slot_locked(i)?;
            if slot.state == FREE && !locked {
                continue;
            }
            let since = UNIX_EPOCH
                .checked_add(Duration::from_millis(slot.since_ms))
                .unwrap_or(UNIX_EPOCH);
            let same_ns = same_namespace(&slot);
            let alive = mine
                || (locked
                    && !(same_ns
                        && sys::proc::probe(slot.pid, start_to_check(&slot)) == Probe::Gone));
            out.push(Attached {
                slot: i,
                generation: slot.generation,
                pid: slot.pid,
                same_pid_namespace: same_ns,
                since,
                alive,
            });
        }
        Ok(out)
    }
}

/// Whether the slot's recorded PID namespace is known and is the caller's.
fn same_namespace(slot: &SlotView) -> bool {
    if slot.ns == (0, 0) {
        return false;
    }
    sys::proc::pid_namespace().is_ok_and(|mine| mine == slot.ns)
}

/// The recorded start time if the caller reads start times as the holder
/// did (same time namespace, known), else 0: do not compare. Another time
/// namespace may shift `/proc/<pid>/stat`'s start time by another boot-time
/// offset, and a mismatch would declare a live holder dead.
fn start_to_check(slot: &SlotView) -> u64 {
    if slot.time_ns == (0, 0) {
        return 0;
    }
    match sys::proc::time_namespace() {
        Ok(mine) if mine == slot.time_ns => slot.start,
        _ => 0,
    }
}

/// Whether a PID test may judge the slot's holder.
fn pid_test_applies(slot: &SlotView) -> bool {
    same_namespace(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_pack_and_unpack() {
        let t = Token::new(1023, GEN_MASK);
        assert_eq!(t.slot(), 1023);
        assert_eq!(t.generation(), GEN_MASK);
        assert_eq!(t.raw() & (1 << 63), 0, "bit 63 is the lock's waiters bit");
        assert_eq!(Token::from_raw(t.raw()), Some(t));
        assert_eq!(Token::from_raw(0), None);
        assert_eq!(Token::from_raw(5), None, "generation 0 is never issued");
        assert_eq!(Token::from_raw(1 << 63 | 1 << 10), None);
        // Generations above 2^21 and 2^32 (the old widths) survive.
        let big = Token::new(7, (1 << 40) + 3);
        assert_eq!((big.slot(), big.generation()), (7, (1 << 40) + 3));
    }

    #[test]
    fn lock_bytes_do_not_collide() {
        assert!(lock_byte(MAX_LEASE_SLOTS - 1) < INIT_BYTE);
        const { assert!(INIT_BYTE < GUARD_BYTE) };
    }
}

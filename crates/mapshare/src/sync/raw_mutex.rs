//! The robust lock-word algorithm, independent of where the words live.
//!
//! # Words
//!
//! | offset | word | |
//! |---|---|---|
//! | 0 | lock (`u64`) | owner token \| `WAITERS` |
//! | 8 | sequence (`u32`) | bumped by every unlock that may have waiters; waiters park on it |
//! | 12 | state (`u32`) | recovery state, below |
//!
//! # Lock word
//!
//! | bits | value | meaning |
//! |---|---|---|
//! | 63 | `WAITERS` | someone may be parked on the sequence word: unlock must wake |
//! | 0..=62 | `0` | free |
//! | 0..=62 | owner token | held by the lease (slot, generation) it names |
//!
//! | word | state | allowed transitions |
//! |---|---|---|
//! | `0` | free, no waiters | lock: CAS to `me` |
//! | `W` | free, waiters may be parked (a past holder left it) | lock: CAS to `me \| W` |
//! | `T` | held by T | unlock by T: CAS to `0`; waiter: CAS to `T \| W`; takeover if T is dead: CAS to `me \| W` |
//! | `T \| W` | held by T, waiters parked | unlock by T: CAS to `0`, bump sequence, wake one; takeover as above |
//!
//! The owner token names a *process* (its lease), not a thread: threads of
//! one process share it. A waiter that finds its own token in the word
//! waits like any other (another thread of this process holds the lock),
//! so a thread that locks twice deadlocks, as with `std::sync::Mutex`.
//!
//! **No lost wake-up.** A waiter reads the sequence (acquire) *before* it
//! makes sure `W` is set on the word it saw, then parks while the sequence
//! still has that value. An unlock that clears a word with `W` set bumps
//! the sequence (release) before waking. Either the unlock comes after the
//! waiter saw `W` (then it bumps and wakes, and the futex compare fails or
//! the wake reaches the parked waiter), or before (then the waiter's CAS
//! or re-check of the word fails and it retries). A waiter that has parked
//! once always locks with `W` set (glibc's "state 2"), so a chain of
//! waiters is woken one by one and none is left parked until its timeout.
//!
//! # State word
//!
//! | value | meaning | allowed transitions |
//! |---|---|---|
//! | `0` CONSISTENT | normal | holder panics: → POISONED; takeover: → OWNER_DIED |
//! | `1` OWNER_DIED | the lock was taken over from a dead owner; the data may be half-updated | holder marks consistent: → CONSISTENT; holder drops unrepaired: → NOT_RECOVERABLE |
//! | `2` NOT_RECOVERABLE | a taker gave up: terminal for lockers | only a deliberate repair (`shared::repair`, `Reset`) → CONSISTENT |
//! | `3` POISONED | a holder panicked | holder marks consistent: → CONSISTENT; takeover: → OWNER_DIED |
//!
//! Only the lock holder writes the state; a takeover changes it with a CAS
//! that never leaves NOT_RECOVERABLE. Any other value is corruption. The
//! algorithm is the futex mutex of Drepper's "Futexes Are Tricky" (mutex
//! 3) with a separate sequence word to park on (as in Rust std's futex
//! `Condvar`), owner identity in the word for robustness as in the kernel's
//! robust-futex list, but liveness decided by leases (see `lease`) instead
//! of the kernel's per-thread list, which does not survive across libcs,
//! files or reboots.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use super::word::{spin_until, Park, Spin, Wake, Word, Word64};

/// Bit 63 of the lock word: waiters may be parked.
pub const WAITERS: u64 = 1 << 63;
/// State: normal.
pub const CONSISTENT: u32 = 0;
/// State: taken over from a dead owner, not yet repaired.
pub const OWNER_DIED: u32 = 1;
/// State: given up on; every lock fails.
pub const NOT_RECOVERABLE: u32 = 2;
/// State: a holder panicked.
pub const POISONED: u32 = 3;

/// How often a parked waiter wakes to check whether the owner is alive.
/// Bounds the time from an owner's death to `OwnerDied` (plus one check).
pub const OWNER_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// What the owner named in a lock word is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A live process (this one included: another thread holds it).
    Alive,
    /// Gone: the lock may be taken over.
    Dead,
    /// Not a valid owner (garbage written by a peer).
    Invalid,
}

/// How a lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// Normally.
    Clean,
    /// From a dead owner (now, or an earlier taker died before repairing).
    OwnerDied,
    /// After a holder panicked.
    Poisoned,
}

/// Why a lock was not acquired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `try_lock`: held by a live owner (possibly another thread of ours).
    WouldBlock,
    /// The deadline passed.
    Timeout,
    /// The mutex was given up on.
    NotRecoverable,
    /// The shared words hold impossible values.
    Corrupted(String),
}

/// A lock word, its sequence word and its state word, wherever they live.
pub struct RawMutex<'a, L: Word64, W: Word> {
    /// The lock word.
    pub word: &'a L,
    /// The sequence word waiters park on.
    pub seq: &'a W,
    /// The state word.
    pub state: &'a W,
}

impl<L: Word64, W: Word> RawMutex<'_, L, W> {
    fn check_state(&self) -> Result<u32, Refused> {
        match self.state.load(Acquire) {
            NOT_RECOVERABLE => Err(Refused::NotRecoverable),
            s @ (CONSISTENT | OWNER_DIED | POISONED) => Ok(s),
            other => Err(Refused::Corrupted(format!("mutex state {other:#x}"))),
        }
    }

    /// Called with the lock held: reports how it was acquired, or releases
    /// it again if the mutex is not usable.
    #[inline]
    pub(crate) fn acquired(&self, me: u64, park: &impl Park<W>) -> Result<Acquired, Refused> {
        match self.check_state() {
            Ok(CONSISTENT) => Ok(Acquired::Clean),
            Ok(OWNER_DIED) => Ok(Acquired::OwnerDied),
            Ok(_) => Ok(Acquired::Poisoned),
            Err(e) => {
                self.unlock(me, park);
                Err(e)
            }
        }
    }

    /// Takes over from a dead owner: `cur` is the word as last seen.
    /// `None`: the word changed, look again.
    fn take_over(
        &self,
        cur: u64,
        me: u64,
        park: &impl Park<W>,
    ) -> Option<Result<Acquired, Refused>> {
        self.word
            .compare_exchange(cur, me | WAITERS, Acquire, Relaxed)
            .ok()?;
        // The dead owner's changes may be half done. Never leave
        // NOT_RECOVERABLE: that is for a deliberate repair only.
        let mut s = self.state.load(Acquire);
        loop {
            match s {
                NOT_RECOVERABLE => {
                    self.unlock(me, park);
                    return Some(Err(Refused::NotRecoverable));
                }
                CONSISTENT | OWNER_DIED | POISONED => {}
                other => {
                    self.unlock(me, park);
                    return Some(Err(Refused::Corrupted(format!("mutex state {other:#x}"))));
                }
            }
            match self.state.compare_exchange(s, OWNER_DIED, Release, Acquire) {
                Ok(_) => return Some(Ok(Acquired::OwnerDied)),
                Err(now) => s = now,
            }
        }
    }

    /// One attempt, no waiting. `owner` decides liveness of a holder.
    pub fn try_lock(
        &self,
        me: u64,
        owner: impl Fn(u64) -> Owner,
        park: &impl Park<W>,
    ) -> Result<Acquired, Refused> {
        self.check_state()?;
        loop {
            let cur = self.word.load(Relaxed);
            let holder = cur & !WAITERS;
            if holder == 0 {
                if self
                    .word
                    .compare_exchange(cur, me | (cur & WAITERS), Acquire, Relaxed)
                    .is_ok()
                {
                    return self.acquired(me, park);
                }
                continue;
            }
            return match owner(holder) {
                Owner::Alive => Err(Refused::WouldBlock),
                Owner::Invalid => Err(Refused::Corrupted(format!("lock word {cur:#x}"))),
                Owner::Dead => match self.take_over(cur, me, park) {
                    Some(r) => r,
                    None => continue,
                },
            };
        }
    }

    /// Locks, waiting until `deadline` (`None`: forever).
    #[inline]
    pub fn lock(
        &self,
        me: u64,
        deadline: Option<Instant>,
        spin: Spin,
        owner: impl Fn(u64) -> Owner,
        park: &impl Park<W>,
    ) -> Result<Acquired, Refused> {
        if self.word.compare_exchange(0, me, Acquire, Relaxed).is_ok() {
            return self.acquired(me, park);
        }
        self.lock_slow(me, deadline, spin, owner, park)
    }

    #[cold]
    fn lock_slow(
        &self,
        me: u64,
        deadline: Option<Instant>,
        spin: Spin,
        owner: impl Fn(u64) -> Owner,
        park: &impl Park<W>,
    ) -> Result<Acquired, Refused> {
        self.check_state()?;
        // Spin while a live owner is likely to release soon.
        spin_until(spin, deadline, || self.word.load(Relaxed) & !WAITERS == 0);
        let mut parked = false;
        let mut next_check: Option<Instant> = None;
        loop {
            let cur = self.word.load(Relaxed);
            let holder = cur & !WAITERS;
            if holder == 0 {
                let keep = if parked { WAITERS } else { cur & WAITERS };
                if self
                    .word
                    .compare_exchange(cur, me | keep, Acquire, Relaxed)
                    .is_ok()
                {
                    return self.acquired(me, park);
                }
                continue;
            }
            let now = Instant::now();
            if next_check.is_none_or(|t| now >= t) {
                match owner(holder) {
                    Owner::Alive => {}
                    Owner::Invalid => {
                        return Err(Refused::Corrupted(format!("lock word {cur:#x}")))
                    }
                    Owner::Dead => match self.take_over(cur, me, park) {
                        Some(r) => return r,
                        None => continue,
                    },
                }
                next_check = Some(now + OWNER_CHECK_INTERVAL);
            }
            let mut timeout = OWNER_CHECK_INTERVAL;
            if let Some(d) = deadline {
                if now >= d {
                    return Err(Refused::Timeout);
                }
                timeout = timeout.min(d - now);
            }
            // The ticket first, then make sure `W` is on the word we saw.
            let ticket = self.seq.load(Acquire);
            if cur & WAITERS == 0 {
                if self
                    .word
                    .compare_exchange(cur, cur | WAITERS, Relaxed, Relaxed)
                    .is_err()
                {
                    continue;
                }
            } else if self.word.load(Relaxed) != cur {
                continue;
            }
            parked = true;
            if park.wait(self.seq, ticket, Some(timeout)) == Wake::TimedOut {
                // Check the owner on the next round whatever the schedule.
                next_check = None;
            }
        }
    }

    /// Releases the lock if `me` holds it; wakes one waiter if any may be
    /// parked. Returns `false` (and changes nothing) if `me` does not hold
    /// it, which only a misbehaving peer can cause.
    #[inline]
    pub fn unlock(&self, me: u64, park: &impl Park<W>) -> bool {
        // Fast path: held by us, nobody parked.
        if self.word.compare_exchange(me, 0, Release, Relaxed).is_ok() {
            return true;
        }
        self.unlock_slow(me, park)
    }

    #[cold]
    fn unlock_slow(&self, me: u64, park: &impl Park<W>) -> bool {
        let mut cur = self.word.load(Relaxed);
        loop {
            if cur & !WAITERS != me {
                return false;
            }
            match self.word.compare_exchange(cur, 0, Release, Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur & WAITERS != 0 {
            self.seq.fetch_add(1, Release);
            park.wake(self.seq, 1);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::HeapPark;
    use std::sync::atomic::{AtomicU32, AtomicU64};
    use std::sync::Arc;

    fn alive(_: u64) -> Owner {
        Owner::Alive
    }

    struct Words {
        word: AtomicU64,
        seq: AtomicU32,
        state: AtomicU32,
        data: AtomicU32,
    }

    fn words(word: u64) -> Words {
        Words {
            word: AtomicU64::new(word),
            seq: AtomicU32::new(0),
            state: AtomicU32::new(0),
            data: AtomicU32::new(0),
        }
    }

    fn raw(w: &Words) -> RawMutex<'_, AtomicU64, AtomicU32> {
        RawMutex {
            word: &w.word,
            seq: &w.seq,
            state: &w.state,
        }
    }

    #[test]
    fn uncontended() {
        let w = words(0);
        let m = raw(&w);
        let park = HeapPark::default();
        assert_eq!(
            m.lock(5, None, Spin::NONE, alive, &park),
            Ok(Acquired::Clean)
        );
        assert_eq!(w.word.load(Relaxed), 5);
        assert_eq!(m.try_lock(6, alive, &park), Err(Refused::WouldBlock));
        assert_eq!(
            m.try_lock(5, alive, &park),
            Err(Refused::WouldBlock),
            "another thread of the holder's process waits too"
        );
        assert!(!m.unlock(6, &park), "only the holder unlocks");
        assert!(m.unlock(5, &park));
        assert_eq!(w.word.load(Relaxed), 0);
        assert_eq!(w.seq.load(Relaxed), 0, "no waiters, no bump");
    }

    #[test]
    fn dead_owner_is_taken_over_and_state_is_checked() {
        let w = words(9);
        let m = raw(&w);
        let park = HeapPark::default();
        let dead = |t: u64| if t == 9 { Owner::Dead } else { Owner::Alive };
        assert_eq!(
            m.lock(5, None, Spin::NONE, dead, &park),
            Ok(Acquired::OwnerDied)
        );
        assert_eq!(w.state.load(Relaxed), OWNER_DIED);
        assert!(m.unlock(5, &park));
        // The taker did not repair: the next locker hears about it too.
        assert_eq!(m.try_lock(6, alive, &park), Ok(Acquired::OwnerDied));
        w.state.store(NOT_RECOVERABLE, Relaxed);
        assert!(m.unlock(6, &park));
        assert_eq!(m.try_lock(7, alive, &park), Err(Refused::NotRecoverable));
        w.state.store(77, Relaxed);
        assert!(matches!(
            m.try_lock(7, alive, &park),
            Err(Refused::Corrupted(_))
        ));
        w.state.store(CONSISTENT, Relaxed);
        w.word.store(0x1234, Relaxed);
        assert!(matches!(
            m.lock(7, None, Spin::NONE, |_| Owner::Invalid, &park),
            Err(Refused::Corrupted(_))
        ));
    }

    #[test]
    fn takeover_never_undoes_not_recoverable() {
        // A holder that died while the state was already terminal (a
        // peer gave up while it was queued): the takeover must not turn
        // NOT_RECOVERABLE back into OWNER_DIED, and must not keep the lock.
        let w = words(9);
        w.state.store(NOT_RECOVERABLE, Relaxed);
        let m = raw(&w);
        let park = HeapPark::default();
        let dead = |_: u64| Owner::Dead;
        assert_eq!(m.take_over(9, 5, &park), Some(Err(Refused::NotRecoverable)));
        assert_eq!(w.state.load(Relaxed), NOT_RECOVERABLE);
        assert_eq!(w.word.load(Relaxed), 0, "released again");
        w.word.store(9, Relaxed);
        assert_eq!(m.try_lock(5, dead, &park), Err(Refused::NotRecoverable));
        assert_eq!(w.state.load(Relaxed), NOT_RECOVERABLE);
        // Poisoned by a holder that then died: owner died wins.
        w.state.store(POISONED, Relaxed);
        w.word.store(9, Relaxed);
        assert_eq!(m.try_lock(5, dead, &park), Ok(Acquired::OwnerDied));
        assert_eq!(w.state.load(Relaxed), OWNER_DIED);
    }

    #[test]
    fn timeout_on_a_live_owner() {
        let w = words(9);
        let m = raw(&w);
        let park = HeapPark::default();
        let deadline = Instant::now() + Duration::from_millis(30);
        assert_eq!(
            m.lock(5, Some(deadline), Spin::default(), alive, &park),
            Err(Refused::Timeout)
        );
        assert_eq!(w.word.load(Relaxed), 9 | WAITERS);
    }

    fn hammer(tokens: &[u64], rounds: u32) {
        let w = Arc::new(words(0));
        let park = Arc::new(HeapPark::default());
        let threads: Vec<_> = tokens
            .iter()
            .map(|&me| {
                let (w, park) = (w.clone(), park.clone());
                std::thread::spawn(move || {
                    let m = raw(&w);
                    for _ in 0..rounds {
                        assert_eq!(
                            m.lock(me, None, Spin::default(), alive, &*park),
                            Ok(Acquired::Clean)
                        );
                        // A non-atomic-style read-modify-write under the lock.
                        let v = w.data.load(Relaxed);
                        w.data.store(v + 1, Relaxed);
                        assert!(m.unlock(me, &*park));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.data.load(Relaxed), rounds * tokens.len() as u32);
        assert_eq!(w.word.load(Relaxed) & !WAITERS, 0);
    }

    #[test]
    fn threads_count_exactly() {
        hammer(&[1, 2, 3, 4], if cfg!(miri) { 20 } else { 5000 });
    }

    #[test]
    fn threads_sharing_one_token_count_exactly() {
        // Two processes with two threads each: threads of one process
        // share their lease's token.
        hammer(&[1, 1, 2, 2], if cfg!(miri) { 20 } else { 5000 });
    }
}

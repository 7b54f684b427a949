//! The robust lock-word algorithm, independent of where the word lives.
//!
//! # Lock word (`u32`, native order)
//!
//! | bits | value | meaning |
//! |---|---|---|
//! | 31 | `WAITERS` | someone may be parked on the word: unlock must wake |
//! | 0..=30 | `0` | free |
//! | 0..=30 | owner token | held by the lease (slot, generation) it names |
//!
//! | word | state | allowed transitions |
//! |---|---|---|
//! | `0` | free, no waiters | lock: CAS to `me` |
//! | `W` | free, waiters may be parked (a past holder left it) | lock: CAS to `me \| W` |
//! | `T` | held by T | unlock by T: CAS to `0`; waiter: CAS to `T \| W`; takeover if T is dead: CAS to `me \| W` |
//! | `T \| W` | held by T, waiters parked | unlock by T: CAS to `0`, then wake one; takeover as above |
//!
//! A waiter that has parked once always locks with `W` set (as glibc's
//! "state 2" does), so a chain of waiters is woken one by one and none is
//! left parked until its timeout.
//!
//! # State word (`u32`, next to the lock word)
//!
//! | value | meaning |
//! |---|---|
//! | `0` CONSISTENT | normal |
//! | `1` OWNER_DIED | the lock was taken over from a dead owner; the data may be half-updated. The taker holds it until it marks it consistent |
//! | `2` NOT_RECOVERABLE | a taker gave up (dropped its guard without marking consistent): terminal |
//! | `3` POISONED | a holder panicked; cleared by marking consistent |
//!
//! Any other value is corruption. The algorithm is the futex mutex of
//! Drepper's "Futexes Are Tricky" (mutex 3), with owner identity in the
//! word for robustness as in the kernel's robust-futex list, but liveness
//! decided by leases (see `lease`) instead of the kernel's per-thread list,
//! which does not survive across libcs, files or reboots.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use super::word::{spin_until, Park, Spin, Wake, Word};

/// Bit 31 of the lock word: waiters may be parked.
pub const WAITERS: u32 = 1 << 31;
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
    /// A live process other than the caller.
    Alive,
    /// Gone: the lock may be taken over.
    Dead,
    /// The caller itself: locking again would deadlock.
    Me,
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
    /// `try_lock`: held by a live owner.
    WouldBlock,
    /// The deadline passed.
    Timeout,
    /// The mutex was given up on.
    NotRecoverable,
    /// The caller already holds it.
    Deadlock,
    /// The shared words hold impossible values.
    Corrupted(String),
}

/// A lock word and its state word, wherever they live.
pub struct RawMutex<'a, W: Word> {
    /// The lock word.
    pub word: &'a W,
    /// The state word.
    pub state: &'a W,
}

impl<W: Word> RawMutex<'_, W> {
    fn check_state(&self) -> Result<u32, Refused> {
        match self.state.load(Acquire) {
            NOT_RECOVERABLE => Err(Refused::NotRecoverable),
            s @ (CONSISTENT | OWNER_DIED | POISONED) => Ok(s),
            other => Err(Refused::Corrupted(format!("mutex state {other:#x}"))),
        }
    }

    /// Called with the lock held: reports how it was acquired, or releases
    /// it again if the mutex is not usable.
    fn acquired(&self, me: u32, park: &impl Park<W>) -> Result<Acquired, Refused> {
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
    fn take_over(&self, cur: u32, me: u32) -> bool {
        if self
            .word
            .compare_exchange(cur, me | WAITERS, Acquire, Relaxed)
            .is_ok()
        {
            // The dead owner's changes may be half done.
            self.state.store(OWNER_DIED, Release);
            return true;
        }
        false
    }

    /// One attempt, no waiting. `owner` decides liveness of a holder.
    pub fn try_lock(
        &self,
        me: u32,
        owner: impl Fn(u32) -> Owner,
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
                Owner::Me => Err(Refused::Deadlock),
                Owner::Invalid => Err(Refused::Corrupted(format!("lock word {cur:#x}"))),
                Owner::Dead => {
                    if self.take_over(cur, me) {
                        return Ok(Acquired::OwnerDied);
                    }
                    continue;
                }
            };
        }
    }

    /// Locks, waiting until `deadline` (`None`: forever).
    #[inline]
    pub fn lock(
        &self,
        me: u32,
        deadline: Option<Instant>,
        spin: Spin,
        owner: impl Fn(u32) -> Owner,
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
        me: u32,
        deadline: Option<Instant>,
        spin: Spin,
        owner: impl Fn(u32) -> Owner,
        park: &impl Park<W>,
    ) -> Result<Acquired, Refused> {
        self.check_state()?;
        // Spin while a live owner is likely to release soon.
        spin_until(spin, || self.word.load(Relaxed) & !WAITERS == 0);
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
                    Owner::Me => return Err(Refused::Deadlock),
                    Owner::Invalid => {
                        return Err(Refused::Corrupted(format!("lock word {cur:#x}")))
                    }
                    Owner::Dead => {
                        if self.take_over(cur, me) {
                            return Ok(Acquired::OwnerDied);
                        }
                        continue;
                    }
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
            if cur & WAITERS == 0
                && self
                    .word
                    .compare_exchange(cur, cur | WAITERS, Relaxed, Relaxed)
                    .is_err()
            {
                continue;
            }
            parked = true;
            if park.wait(self.word, cur | WAITERS, Some(timeout)) == Wake::TimedOut {
                // Check the owner on the next round whatever the schedule.
                next_check = None;
            }
        }
    }

    /// Releases the lock if `me` holds it; wakes one waiter if any may be
    /// parked. Returns `false` (and changes nothing) if `me` does not hold
    /// it, which only a misbehaving peer can cause.
    #[inline]
    pub fn unlock(&self, me: u32, park: &impl Park<W>) -> bool {
        // Fast path: held by us, nobody parked.
        if self.word.compare_exchange(me, 0, Release, Relaxed).is_ok() {
            return true;
        }
        self.unlock_slow(me, park)
    }

    #[cold]
    fn unlock_slow(&self, me: u32, park: &impl Park<W>) -> bool {
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
            park.wake(self.word, 1);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::HeapPark;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    fn alive(_: u32) -> Owner {
        Owner::Alive
    }

    #[test]
    fn uncontended() {
        let (w, s) = (AtomicU32::new(0), AtomicU32::new(0));
        let m = RawMutex {
            word: &w,
            state: &s,
        };
        let park = HeapPark::default();
        assert_eq!(
            m.lock(5, None, Spin::NONE, alive, &park),
            Ok(Acquired::Clean)
        );
        assert_eq!(w.load(Relaxed), 5);
        assert_eq!(m.try_lock(6, alive, &park), Err(Refused::WouldBlock));
        assert_eq!(m.try_lock(6, |_| Owner::Me, &park), Err(Refused::Deadlock));
        assert!(!m.unlock(6, &park), "only the holder unlocks");
        assert!(m.unlock(5, &park));
        assert_eq!(w.load(Relaxed), 0);
    }

    #[test]
    fn dead_owner_is_taken_over_and_state_is_checked() {
        let (w, s) = (AtomicU32::new(9), AtomicU32::new(0));
        let m = RawMutex {
            word: &w,
            state: &s,
        };
        let park = HeapPark::default();
        let dead = |t: u32| if t == 9 { Owner::Dead } else { Owner::Alive };
        assert_eq!(
            m.lock(5, None, Spin::NONE, dead, &park),
            Ok(Acquired::OwnerDied)
        );
        assert_eq!(s.load(Relaxed), OWNER_DIED);
        assert!(m.unlock(5, &park));
        // The taker did not repair: the next locker hears about it too.
        assert_eq!(m.try_lock(6, alive, &park), Ok(Acquired::OwnerDied));
        s.store(NOT_RECOVERABLE, Relaxed);
        assert!(m.unlock(6, &park));
        assert_eq!(m.try_lock(7, alive, &park), Err(Refused::NotRecoverable));
        s.store(77, Relaxed);
        assert!(matches!(
            m.try_lock(7, alive, &park),
            Err(Refused::Corrupted(_))
        ));
        s.store(CONSISTENT, Relaxed);
        w.store(0x1234, Relaxed);
        assert!(matches!(
            m.lock(7, None, Spin::NONE, |_| Owner::Invalid, &park),
            Err(Refused::Corrupted(_))
        ));
    }

    #[test]
    fn timeout_on_a_live_owner() {
        let (w, s) = (AtomicU32::new(9), AtomicU32::new(0));
        let m = RawMutex {
            word: &w,
            state: &s,
        };
        let park = HeapPark::default();
        let deadline = Instant::now() + Duration::from_millis(30);
        assert_eq!(
            m.lock(5, Some(deadline), Spin::default(), alive, &park),
            Err(Refused::Timeout)
        );
        assert_eq!(w.load(Relaxed), 9 | WAITERS);
    }

    #[test]
    fn threads_count_exactly() {
        let words = Arc::new((AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)));
        let park = Arc::new(HeapPark::default());
        let threads: Vec<_> = (1..=4u32)
            .map(|me| {
                let (words, park) = (words.clone(), park.clone());
                std::thread::spawn(move || {
                    let m = RawMutex {
                        word: &words.0,
                        state: &words.1,
                    };
                    for _ in 0..if cfg!(miri) { 20 } else { 5000 } {
                        assert_eq!(
                            m.lock(me, None, Spin::default(), alive, &*park),
                            Ok(Acquired::Clean)
                        );
                        // A non-atomic-style read-modify-write under the lock.
                        let v = words.2.load(Relaxed);
                        words.2.store(v + 1, Relaxed);
                        assert!(m.unlock(me, &*park));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(words.2.load(Relaxed), if cfg!(miri) { 80 } else { 20000 });
    }
}

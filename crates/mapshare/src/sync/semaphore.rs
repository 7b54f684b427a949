//! A counting semaphore living in shared memory.
//!
//! # Words (native `u32`s, 8 bytes in all)
//!
//! | offset | word | |
//! |---|---|---|
//! | 0 | count | permits available |
//! | 4 | sleepers | waiters that may be parked on `count` |
//!
//! `post` adds to `count`, then wakes one sleeper if `sleepers` is non-zero;
//! a waiter adds itself to `sleepers`, then re-reads `count` before parking
//! on it. Both halves are `SeqCst` read-modify-writes of `sleepers` (the
//! Dekker pattern; the argument is at `word::sleepers`), which makes at
//! least one of them see the other: no wake-up is lost. The
//! futex wait itself re-checks `count == 0` atomically with going to sleep.
//! A waiter that dies while counted in `sleepers` costs later posts a
//! needless wake call, nothing more. A semaphore has no owner, so a dead
//! process's permits are not returned: use a `Mutex` for ownership.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use super::word::{sleepers, spin_until, Futex, Park, Spin, Word};
use crate::error::{Error, Result};
use crate::region::Region;

/// Bytes a semaphore occupies.
pub const SEMAPHORE_LEN: u64 = 8;

/// The semaphore algorithm over any two words.
pub struct RawSemaphore<'a, W: Word> {
    /// Permits available.
    pub count: &'a W,
    /// Waiters that may be parked.
    pub sleepers: &'a W,
}

impl<W: Word> RawSemaphore<'_, W> {
    /// Takes a permit if one is available.
    #[inline]
    pub fn try_wait(&self) -> bool {
        let mut c = self.count.load(Relaxed);
        while c > 0 {
            match self.count.compare_exchange(c, c - 1, SeqCst, Relaxed) {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// Adds `n` permits and wakes up to `n` sleepers. Fails (adding
    /// nothing) if the count would overflow.
    pub fn post(&self, n: u32, park: &impl Park<W>) -> std::result::Result<(), u32> {
        let mut c = self.count.load(Relaxed);
        loop {
            let Some(next) = c.checked_add(n) else {
                return Err(c);
            };
            match self.count.compare_exchange(c, next, SeqCst, Relaxed) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        if sleepers::present(self.sleepers) {
            park.wake(self.count, n);
        }
        Ok(())
    }

    /// Takes a permit, waiting until `deadline`; `false` on timeout.
    pub fn wait(&self, deadline: Option<Instant>, spin: Spin, park: &impl Park<W>) -> bool {
        if self.try_wait() || spin_until(spin, deadline, || self.try_wait()) {
            return true;
        }
        sleepers::enter(self.sleepers);
        let got = loop {
            if self.try_wait() {
                break true;
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break false;
                    }
                    Some(d - now)
                }
            };
            park.wait(self.count, 0, timeout);
        };
        sleepers::leave(self.sleepers);
        got
    }
}

/// A counting semaphore at an offset of a region, shared by every process
/// that maps it. Zero-filled memory is a semaphore with no permits.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::{sync::Semaphore, Region};
/// let region = Region::anonymous(4096)?;
/// // SAFETY: bytes 64..72 of this private region are used only as this
/// // semaphore.
/// let sem = unsafe { Semaphore::at(&region, 64)? };
/// sem.post()?;
/// assert!(sem.try_wait());
/// assert!(!sem.try_wait());
/// # Ok(()) }
/// ```
pub struct Semaphore<'r> {
    region: &'r Region,
    /// The two words, checked once in `at`.
    raw: RawSemaphore<'r, std::sync::atomic::AtomicU32>,
    spin: Spin,
}

impl<'r> Semaphore<'r> {
    /// The semaphore whose 8 bytes start at `offset` (4-aligned) of `region`.
    /// Fails if they do not fit the mapping or are misaligned.
    ///
    /// # Safety
    ///
    /// Those 8 bytes must be used only as a semaphore's words, by every
    /// process that maps them, for as long as this `Semaphore` lives:
    /// nothing may access them non-atomically (a
    /// [`MutexGuard`](crate::sync::MutexGuard)'s `&mut T`, a queue
    /// `Record` or `Grant`, a typed view, `Region::read_at` or
    /// `write_at`) or atomically with another size (`Region::load_u64`
    /// over both words: mixed-size atomics), and they must not also be a
    /// `Mutex`, `Event` or queue. Several `Semaphore`s over the same bytes
    /// are fine: that is how processes share one. A layout that gives the
    /// semaphore bytes of its own (a file whose object is a struct with a
    /// semaphore field at a fixed offset) meets this by construction.
    pub unsafe fn at(region: &'r Region, offset: u64) -> Result<Semaphore<'r>> {
        Ok(Semaphore {
            region,
            raw: RawSemaphore {
                count: region.atomic32(offset)?,
                sleepers: region.atomic32(offset + 4)?,
            },
            spin: Spin::default(),
        })
    }

    /// Sets how long waits spin before parking.
    pub fn with_spin(mut self, spin: Spin) -> Self {
        self.spin = spin;
        self
    }

    fn raw(&self) -> &RawSemaphore<'r, std::sync::atomic::AtomicU32> {
        &self.raw
    }

    /// Permits available now (a snapshot).
    pub fn count(&self) -> u32 {
        self.raw().count.load(Relaxed)
    }

    /// Sets the count outright, e.g. in a file's initializer.
    pub fn set_count(&self, count: u32) {
        self.raw().count.store(count, SeqCst);
    }

    /// Adds one permit, waking a waiter if any.
    pub fn post(&self) -> Result<()> {
        self.post_n(1)
    }

    /// Adds `n` permits, waking up to `n` waiters. If the count would
    /// pass `u32::MAX`, nothing is added and the post is refused with
    /// [`Error::InvalidArgument`]: the count is fine, the post is not.
    pub fn post_n(&self, n: u32) -> Result<()> {
        self.raw()
            .post(n, &Futex)
            .map_err(|count| Error::InvalidArgument {
                origin: self.region.origin().clone(),
                what: "semaphore post",
                why: format!(
                    "posting {n} to a count of {count} would overflow; the count holds at most {}",
                    u32::MAX
                ),
            })
    }

    /// Takes a permit if one is available, without waiting.
    pub fn try_wait(&self) -> bool {
        self.raw().try_wait()
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn wait(&self) {
        self.raw().wait(None, self.spin, &Futex);
    }

    /// Takes a permit, waiting at most `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        if self
            .raw()
            .wait(start.checked_add(timeout), self.spin, &Futex)
        {
            return Ok(());
        }
        Err(Error::Timeout {
            origin: self.region.origin().clone(),
            what: "waiting for a semaphore permit",
            waited: start.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::HeapPark;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    #[test]
    fn counts_are_exact_across_threads() {
        let words = Arc::new((AtomicU32::new(0), AtomicU32::new(0)));
        let park = Arc::new(HeapPark::default());
        let n = if cfg!(miri) { 30 } else { 20_000 };
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (words, park) = (words.clone(), park.clone());
                std::thread::spawn(move || {
                    let s = RawSemaphore {
                        count: &words.0,
                        sleepers: &words.1,
                    };
                    for _ in 0..n {
                        assert!(s.wait(None, Spin::NONE, &*park));
                    }
                })
            })
            .collect();
        let s = RawSemaphore {
            count: &words.0,
            sleepers: &words.1,
        };
        for _ in 0..2 * n {
            s.post(1, &*park).unwrap();
        }
        for c in consumers {
            c.join().unwrap();
        }
        assert_eq!(words.0.load(SeqCst), 0);
        assert_eq!(words.1.load(SeqCst), 0);
    }

    #[test]
    fn overflow_and_timeout() {
        let (c, w) = (AtomicU32::new(u32::MAX), AtomicU32::new(0));
        let s = RawSemaphore {
            count: &c,
            sleepers: &w,
        };
        let park = HeapPark::default();
        assert_eq!(s.post(1, &park), Err(u32::MAX));
        c.store(0, SeqCst);
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(!s.wait(Some(deadline), Spin::default(), &park));
        assert_eq!(w.load(SeqCst), 0);
    }
}

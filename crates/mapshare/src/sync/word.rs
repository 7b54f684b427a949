//! The seam between the synchronization algorithms and the memory and
//! kernel they run on.
//!
//! [`Word`] is a 32-bit atomic: `std`'s `AtomicU32` over shared memory in
//! real use, loom's under `--cfg loom`, so the same algorithm is model-
//! checked. [`Park`] is futex wait/wake: the shared futex in real use, a
//! test double in models and heap-memory tests.

use std::sync::atomic::Ordering;
use std::time::Duration;

pub use crate::sys::futex::Wake;

/// A 32-bit atomic word the algorithms operate on.
pub trait Word {
    /// `load`.
    fn load(&self, order: Ordering) -> u32;
    /// `store`.
    fn store(&self, value: u32, order: Ordering);
    /// `compare_exchange` (strong).
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    /// `fetch_add`.
    fn fetch_add(&self, value: u32, order: Ordering) -> u32;
    /// `fetch_sub`.
    fn fetch_sub(&self, value: u32, order: Ordering) -> u32;
    /// A sequentially consistent fence from the same atomics family.
    fn fence_seq_cst();
}

macro_rules! impl_word {
    ($t:ty, $fence:path) => {
        impl Word for $t {
            #[inline]
            fn load(&self, order: Ordering) -> u32 {
                <$t>::load(self, order)
            }
            #[inline]
            fn store(&self, value: u32, order: Ordering) {
                <$t>::store(self, value, order)
            }
            #[inline]
            fn compare_exchange(
                &self,
                current: u32,
                new: u32,
                success: Ordering,
                failure: Ordering,
            ) -> Result<u32, u32> {
                <$t>::compare_exchange(self, current, new, success, failure)
            }
            #[inline]
            fn fetch_add(&self, value: u32, order: Ordering) -> u32 {
                <$t>::fetch_add(self, value, order)
            }
            #[inline]
            fn fetch_sub(&self, value: u32, order: Ordering) -> u32 {
                <$t>::fetch_sub(self, value, order)
            }
            #[inline]
            fn fence_seq_cst() {
                $fence(Ordering::SeqCst)
            }
        }
    };
}

impl_word!(std::sync::atomic::AtomicU32, full_fence);
#[cfg(loom)]
impl_word!(loom::sync::atomic::AtomicU32, loom::sync::atomic::fence);

/// A 64-bit atomic position word (queue positions).
pub trait Word64 {
    /// `load`.
    fn load(&self, order: Ordering) -> u64;
    /// `store`.
    fn store(&self, value: u64, order: Ordering);
    /// `compare_exchange` (strong).
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
}

macro_rules! impl_word64 {
    ($t:ty) => {
        impl Word64 for $t {
            #[inline]
            fn load(&self, order: Ordering) -> u64 {
                <$t>::load(self, order)
            }
            #[inline]
            fn store(&self, value: u64, order: Ordering) {
                <$t>::store(self, value, order)
            }
            #[inline]
            fn compare_exchange(
                &self,
                current: u64,
                new: u64,
                success: Ordering,
                failure: Ordering,
            ) -> Result<u64, u64> {
                <$t>::compare_exchange(self, current, new, success, failure)
            }
        }
    };
}

impl_word64!(std::sync::atomic::AtomicU64);
#[cfg(loom)]
impl_word64!(loom::sync::atomic::AtomicU64);

/// A sequentially consistent fence, cheaper than `mfence` on x86-64.
///
/// On x86-64 any `lock`-prefixed instruction is a full barrier, and a
/// `lock cmpxchg` on a local is several times cheaper than `mfence` on
/// many CPUs (notably AMD's). crossbeam-epoch's `full_fence` does the same
/// for the same reason; Linux's `smp_mb()` uses `lock; addl` on x86. Other
/// targets use `fence(SeqCst)`.
#[inline]
pub(crate) fn full_fence(order: Ordering) {
    debug_assert_eq!(order, Ordering::SeqCst);
    #[cfg(target_arch = "x86_64")]
    {
        let local = std::sync::atomic::AtomicUsize::new(0);
        let _ = local.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
    }
    #[cfg(not(target_arch = "x86_64"))]
    std::sync::atomic::fence(order);
}

/// Sleep on a word until woken, and wake sleepers: futex semantics. `wait`
/// must check `word == expected` and go to sleep atomically with respect to
/// `wake`, or wake-ups are lost.
pub trait Park<W: Word + ?Sized> {
    /// Sleeps while `word == expected`, at most `timeout`.
    fn wait(&self, word: &W, expected: u32, timeout: Option<Duration>) -> Wake;
    /// Wakes up to `count` sleepers on `word`.
    fn wake(&self, word: &W, count: u32);
}

/// The shared futex ([`crate::sys::futex`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Futex;

impl Park<std::sync::atomic::AtomicU32> for Futex {
    fn wait(
        &self,
        word: &std::sync::atomic::AtomicU32,
        expected: u32,
        timeout: Option<Duration>,
    ) -> Wake {
        // A failed futex call (EFAULT, EINVAL: impossible for a valid
        // mapped word) is treated as a spurious wake-up; callers re-check.
        crate::sys::futex::wait(word, expected, timeout).unwrap_or(Wake::Woken)
    }

    fn wake(&self, word: &std::sync::atomic::AtomicU32, count: u32) {
        let _ = crate::sys::futex::wake(word, count);
    }
}

/// How long a waiter spins before it parks.
///
/// A hand-off between cores costs ~60 ns while a futex wake-up of a parked
/// process costs tens of microseconds, so spinning a few microseconds
/// catches short critical sections without a syscall on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spin {
    /// Upper bound on time spent spinning per wait.
    pub limit: Duration,
}

impl Spin {
    /// No spinning: park at once.
    pub const NONE: Spin = Spin {
        limit: Duration::ZERO,
    };

    /// Spin up to `limit` before parking.
    pub fn for_duration(limit: Duration) -> Spin {
        Spin { limit }
    }
}

impl Default for Spin {
    /// 20 µs: about the cost of one futex wake-up on a VM.
    fn default() -> Spin {
        Spin {
            limit: Duration::from_micros(20),
        }
    }
}

/// Spins until `done()` or the spin budget runs out; returns `done()`'s
/// last answer. The clock is first read after 64 spins (most hand-offs
/// finish sooner, and a clock read costs as much as a cache-line
/// transfer on a VM), then every 64 spins.
#[inline]
pub(crate) fn spin_until(spin: Spin, mut done: impl FnMut() -> bool) -> bool {
    if spin.limit.is_zero() {
        return done();
    }
    let mut start = None;
    let mut i = 0u32;
    loop {
        if done() {
            return true;
        }
        i = i.wrapping_add(1);
        if i % 64 == 0 {
            let t = *start.get_or_insert_with(std::time::Instant::now);
            if t.elapsed() >= spin.limit {
                return done();
            }
        }
        std::hint::spin_loop();
    }
}

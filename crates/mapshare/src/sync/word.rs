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
}

macro_rules! impl_word {
    ($t:ty) => {
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
        }
    };
}

impl_word!(std::sync::atomic::AtomicU32);
#[cfg(loom)]
impl_word!(loom::sync::atomic::AtomicU32);

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
    /// `swap`.
    fn swap(&self, value: u64, order: Ordering) -> u64;
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
            #[inline]
            fn swap(&self, value: u64, order: Ordering) -> u64 {
                <$t>::swap(self, value, order)
            }
        }
    };
}

impl_word64!(std::sync::atomic::AtomicU64);
#[cfg(loom)]
impl_word64!(loom::sync::atomic::AtomicU64);

/// The sleeper handshake of [`Event`](super::Event) and
/// [`Semaphore`](super::Semaphore): a waiter counts itself in a `sleepers`
/// word, then re-checks its condition, then parks; a notifier changes the
/// condition, then asks whether anyone sleeps, and skips the wake-up call
/// if not. This is the store-buffering (Dekker) shape, where plain
/// release/acquire lets both sides miss each other.
///
/// Both halves are read-modify-writes of `sleepers` (no fence), and that
/// is enough in the C++/Rust model: RMWs of one word are totally ordered
/// (its modification order), and each reads the value just before it.
///
/// - The waiter's increment comes first: the notifier's RMW reads a count
///   that includes it (the waiter's own decrement comes later still), so
///   the notifier wakes.
/// - The notifier's RMW comes first: it is a release heading a release
///   sequence of RMWs, which the waiter's acquire increment reads from, so
///   everything the notifier did before (the new condition) happens-before
///   the waiter's re-check, which sees it.
///
/// The argument is pairwise, so it holds for any number of waiters and
/// notifiers. `SeqCst` (not just `AcqRel`) also orders the waiter's ticket
/// read before the notifier's sequence bump, so the futex compare sees the
/// bump. On x86-64 each half is one `lock`ed instruction on a line the
/// notifier usually owns already: no `mfence`, and no dependence on how
/// the compiler lowers a fence. (A `lock cmpxchg` on a *local*, the trick
/// this replaces, orders nothing in the language model: Miri and loom
/// both found the lost wake-up.)
pub(crate) mod sleepers {
    use super::Word;
    use std::sync::atomic::Ordering::SeqCst;

    /// Waiter: counts itself in, before re-checking the condition.
    #[inline]
    pub(crate) fn enter<W: Word>(sleepers: &W) {
        sleepers.fetch_add(1, SeqCst);
    }

    /// Waiter: counts itself out, after it stopped waiting.
    #[inline]
    pub(crate) fn leave<W: Word>(sleepers: &W) {
        sleepers.fetch_sub(1, SeqCst);
    }

    /// Notifier, after changing the condition: whether a waiter may be
    /// parked. A strong CAS of 0 to 0 is an RMW when it succeeds (what the
    /// argument needs) and a harmless "yes" when it fails; LLVM would turn
    /// the obvious `fetch_add(0)` into a fence and a load, which is
    /// `mfence` on older compilers.
    #[inline]
    pub(crate) fn present<W: Word>(sleepers: &W) -> bool {
        sleepers.compare_exchange(0, 0, SeqCst, SeqCst).is_err()
    }
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

/// Spins until `done()`, the spin budget runs out or `deadline` passes;
/// returns `done()`'s last answer. The clock is first read after 64
/// spins (most hand-offs finish sooner, and a clock read costs as much as
/// a cache-line transfer on a VM), then every 64 spins: so a wait spins
/// at most 64 spins (~1.6 µs here) past its deadline, never its whole
/// budget (found in review: `recv_timeout(0)` spun the 20 µs default).
#[inline]
pub(crate) fn spin_until(
    spin: Spin,
    deadline: Option<std::time::Instant>,
    mut done: impl FnMut() -> bool,
) -> bool {
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
        if i.is_multiple_of(64) {
            let now = std::time::Instant::now();
            let t = *start.get_or_insert(now);
            if now.duration_since(t) >= spin.limit || deadline.is_some_and(|d| now >= d) {
                return done();
            }
        }
        std::hint::spin_loop();
    }
}

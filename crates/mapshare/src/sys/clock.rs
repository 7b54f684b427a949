//! A cheap wall clock, for the timestamp of every log record.
//!
//! `clock_gettime(CLOCK_REALTIME)` costs ~35 ns on this project's VMs, a
//! third of a whole log append. Where the kernel itself keeps time with
//! the CPU's time-stamp counter (its clocksource is `tsc`: the counter
//! runs at a constant rate, never stops, and agrees across CPUs, or the
//! kernel would not use it), [`now_ns`] reads the counter (~10 ns) and
//! extrapolates from an *anchor*: a (counter, wall clock) pair this thread
//! took with the system call, at the rate measured between its last two
//! anchors. A thread takes a new anchor every [`REANCHOR`] of counter
//! time, so
//!
//! - extrapolation errs by at most the rate's error over 10 ms: the rate
//!   is measured over at least [`MIN_BASE`] (1 ms) between two system
//!   calls whose own jitter is tens of ns, so well under a microsecond;
//! - a step of the wall clock (NTP, `settimeofday`) shows within 10 ms; a
//!   rate measured across a step is refused (implausible, or 0.1% off the
//!   previous one), and the thread reads the system clock until it has a
//!   clean millisecond again.
//!
//! Like `SystemTime::now()` itself, it is not monotonic: a new anchor may
//! land a few ns before the last extrapolated value, and a wall-clock step
//! back goes back. Elsewhere (another clocksource, another architecture,
//! Miri) it is `SystemTime::now()`. If the kernel stops trusting the
//! counter after the first call (it switches clocksource), this process
//! goes on extrapolating with rates it keeps re-measuring every 10 ms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Counter time between anchors.
pub const REANCHOR: Duration = Duration::from_millis(10);
/// The shortest interval a rate is measured over.
pub const MIN_BASE: Duration = Duration::from_millis(1);

/// Wall-clock nanoseconds since the Unix epoch, from the system call (0
/// before 1970).
pub fn system_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Wall-clock nanoseconds since the Unix epoch, cheaply where the
/// kernel's clocksource is the TSC (see the module docs).
#[inline]
pub fn now_ns() -> u64 {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if tsc::usable() {
        return tsc::now_ns();
    }
    system_ns()
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod tsc {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

    use super::{system_ns, MIN_BASE, REANCHOR};

    /// One thread's anchor and rate.
    #[derive(Clone, Copy)]
    struct Anchor {
        /// Counter and wall clock (ns) read together; `tsc == 0`: none yet.
        tsc: u64,
        ns: u64,
        /// Nanoseconds per tick, 32.32 fixed point; 0: not measured.
        mult: u64,
        /// Ticks after `tsc` at which to take the next anchor.
        limit: u64,
    }

    thread_local! {
        static ANCHOR: Cell<Anchor> = const {
            Cell::new(Anchor { tsc: 0, ns: 0, mult: 0, limit: 0 })
        };
    }

    /// 0: not checked yet, 1: no, 2: yes.
    static USABLE: AtomicU8 = AtomicU8::new(0);

    /// Whether the kernel keeps time with the TSC (checked once).
    #[inline]
    pub(super) fn usable() -> bool {
        match USABLE.load(Relaxed) {
            0 => {
                let yes = std::fs::read_to_string(
                    "/sys/devices/system/clocksource/clocksource0/current_clocksource",
                )
                .is_ok_and(|s| s.trim() == "tsc");
                USABLE.store(if yes { 2 } else { 1 }, Relaxed);
                yes
            }
            v => v == 2,
        }
    }

    #[inline]
    pub(super) fn now_ns() -> u64 {
        ANCHOR.with(|cell| {
            let a = cell.get();
            // SAFETY: every x86-64 CPU has `rdtsc`; it reads a counter.
            let t = unsafe { std::arch::x86_64::_rdtsc() };
            let dt = t.wrapping_sub(a.tsc);
            if a.mult != 0 && dt < a.limit {
                return a.ns + ((u128::from(dt) * u128::from(a.mult)) >> 32) as u64;
            }
            let ns = system_ns();
            cell.set(anchor(a, t, ns));
            ns
        })
    }

    /// The anchor after reading `(t, ns)` with the system call at anchor
    /// `a`: a new one with a new rate if `a` is at least [`MIN_BASE`] old
    /// and the rate is plausible; `a` itself if it is younger (keep
    /// measuring from it); a fresh one with no rate if time went back.
    #[cold]
    fn anchor(a: Anchor, t: u64, ns: u64) -> Anchor {
        let fresh = Anchor {
            tsc: t,
            ns,
            mult: 0,
            limit: 0,
        };
        if a.tsc == 0 || t <= a.tsc || ns <= a.ns {
            return fresh;
        }
        let (dt, dns) = (t - a.tsc, ns - a.ns);
        if u128::from(dns) < MIN_BASE.as_nanos() {
            return a;
        }
        let mult = ((u128::from(dns) << 32) / u128::from(dt)) as u64;
        // A counter between 100 MHz and 20 GHz; a rate 0.1% off the last
        // one means the wall clock stepped during the interval.
        let plausible = ((1u64 << 32) / 20..(10u64 << 32)).contains(&mult)
            && (a.mult == 0 || mult.abs_diff(a.mult) <= a.mult / 1000);
        if !plausible {
            return fresh;
        }
        let limit = ((REANCHOR.as_nanos() << 32) / u128::from(mult)) as u64;
        Anchor {
            tsc: t,
            ns,
            mult,
            limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each extrapolated value lies between two system-clock reads taken
    /// around it (give or take a few µs of extrapolation error), across
    /// many anchors.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn agrees_with_the_system_clock() {
        let slack = 20_000; // ns
        let end = std::time::Instant::now() + Duration::from_millis(60);
        let mut n = 0u64;
        while std::time::Instant::now() < end {
            let before = system_ns();
            let ours = now_ns();
            let after = system_ns();
            assert!(
                before.saturating_sub(slack) <= ours && ours <= after + slack,
                "{before} <= {ours} <= {after}"
            );
            n += 1;
        }
        assert!(n > 1000);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn threads_keep_their_own_anchors() {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(agrees_with_the_system_clock);
            }
        });
    }
}

//! A cheap wall clock, for the timestamp of every log record.
//!
//! `clock_gettime(CLOCK_REALTIME)` costs ~35 ns on this project's VMs, a
//! third of a whole log append. Where the kernel itself keeps time with
//! the CPU's time-stamp counter (its clocksource is `tsc`: the counter
//! runs at a constant rate, never stops, and agrees across CPUs, or the
//! kernel would not use it), [`now_ns`] reads the counter (~10 ns) and
//! extrapolates from an *anchor*: a (counter, wall clock) pair this thread
//! took, at a *confirmed* rate.
//!
//! - **Anchors are bracketed.** The counter is read between two system
//!   calls, and the pair is kept only if the two are at most
//!   [`MAX_BRACKET`] apart (a thread preempted, or a vCPU descheduled, in
//!   between would pair the counter with the wrong time); the wall time
//!   is their midpoint.
//! - **Rates are confirmed.** A rate is measured between two anchors at
//!   least [`MIN_BASE`] apart and used only once a second measurement
//!   agrees with it within 0.1%, or it agrees with the rate in use. A
//!   disagreement (a wall-clock step, a rate from a bad interval) drops
//!   the rate: the thread reads the system clock until two measurements
//!   agree again. A confirmed rate is shared with the process's other
//!   threads, which then extrapolate from their first anchor on.
//! - **Anchors are renewed** every [`REANCHOR`] of counter time.
//!
//! So a value errs by at most half a bracket plus the rate's error over
//! 10 ms: typically well under a microsecond, at worst a few (a rate
//! measured over 5 ms between anchors that are each within 1 µs). A
//! wall-clock step shows at the next anchor, within 10 ms; steps under
//! 0.1% of the interval (10 µs) pass as a rate change for one interval.
//! Like `SystemTime::now()` itself it is not monotonic: a new anchor may
//! land slightly before the last extrapolated value, and a step back goes
//! back. A thread that reads it less often than every 10 ms takes the
//! slow path each time (three system calls, ~110 ns). Elsewhere (another
//! clocksource, another architecture, Miri) it is `SystemTime::now()`.
//! The clocksource is checked once per process: if the kernel later
//! stops trusting the counter, this goes on re-measuring its rate every
//! 10 ms against the system clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Counter time between anchors.
pub const REANCHOR: Duration = Duration::from_millis(10);
/// The shortest interval a rate is measured over.
pub const MIN_BASE: Duration = Duration::from_millis(5);
/// The widest bracket of system-clock reads an anchor may come from.
pub const MAX_BRACKET: Duration = Duration::from_micros(2);

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

/// A cheap interval counter, for the per-sample timing of mapshare's own
/// benchmarks: the CPU's time-stamp counter where [`now_ns`] uses it
/// (~10 ns a read on this project's VMs, against ~25 ns for
/// `Instant::now`, which a per-sample clock adds to every sample and so
/// pulls every same-run ratio towards 1), else monotonic nanoseconds.
/// Compare only values read on one thread; turn differences into time
/// with a [`TickRate`].
#[inline]
pub fn ticks() -> u64 {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if tsc::usable() {
        return tsc::rdtsc();
    }
    monotonic_ns()
}

/// Nanoseconds of a monotonic clock since its first use in this process.
fn monotonic_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// The rate of [`ticks`], measured against `Instant` over a whole run
/// (start it before the samples, read it after them): over a run of
/// milliseconds the two clocks' reads at its ends err by well under 0.1%.
#[derive(Debug, Clone, Copy)]
pub struct TickRate {
    start: std::time::Instant,
    ticks: u64,
}

impl TickRate {
    /// Starts measuring.
    pub fn start() -> TickRate {
        TickRate {
            start: std::time::Instant::now(),
            ticks: ticks(),
        }
    }

    /// Nanoseconds per tick since [`TickRate::start`] (1.0 if no tick
    /// passed, or no time: nothing to measure).
    pub fn ns_per_tick(&self) -> f64 {
        let ns = self.start.elapsed().as_nanos() as f64;
        let t = ticks().wrapping_sub(self.ticks);
        if t == 0 || ns == 0.0 {
            1.0
        } else {
            ns / t as f64
        }
    }
}

/// One thread's anchor and rates; pure logic, so that tests can feed it
/// any sequence of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Anchor {
    /// Counter and wall clock (ns) of the last anchor; `tsc == 0`: none.
    tsc: u64,
    ns: u64,
    /// The confirmed rate, ns per tick in 32.32 fixed point; 0: none
    /// (the system clock is read).
    mult: u64,
    /// A measured rate waiting for a second one to agree; 0: none.
    candidate: u64,
    /// Ticks after `tsc` at which to take the next anchor.
    limit: u64,
}

impl Anchor {
    const NONE: Anchor = Anchor {
        tsc: 0,
        ns: 0,
        mult: 0,
        candidate: 0,
        limit: 0,
    };

    /// The extrapolated wall time at counter `t`, if this anchor may
    /// answer for it.
    #[inline]
    fn extrapolate(&self, t: u64) -> Option<u64> {
        let dt = t.wrapping_sub(self.tsc);
        (self.mult != 0 && dt < self.limit)
            .then(|| self.ns + ((u128::from(dt) * u128::from(self.mult)) >> 32) as u64)
    }

    /// An anchor at `(t, ns)` with confirmed rate `mult` (0: none).
    fn at(t: u64, ns: u64, mult: u64, candidate: u64) -> Anchor {
        let limit = if mult == 0 {
            0
        } else {
            u64::try_from((REANCHOR.as_nanos() << 32) / u128::from(mult)).unwrap_or(u64::MAX)
        };
        Anchor {
            tsc: t,
            ns,
            mult,
            candidate,
            limit,
        }
    }

    /// The state after a bracketed sample `(t, ns)`, given the process's
    /// shared confirmed rate (`shared`, 0: none). Returns the new state
    /// and a rate to share, if one was confirmed.
    fn next(self, t: u64, ns: u64, shared: u64) -> (Anchor, Option<u64>) {
        if self.tsc == 0 || t <= self.tsc || ns <= self.ns {
            // First sample, or time went back: start over from here, with
            // the process's rate if it has one.
            return (Anchor::at(t, ns, shared, 0), None);
        }
        let (dt, dns) = (t - self.tsc, ns - self.ns);
        if u128::from(dns) < MIN_BASE.as_nanos() {
            // Too short a base: keep measuring from the old anchor.
            return (self, None);
        }
        let Some(rate) = rate(dt, dns) else {
            return (Anchor::at(t, ns, 0, 0), None);
        };
        let reference = if self.mult != 0 {
            self.mult
        } else {
            self.candidate
        };
        if reference != 0 && rate.abs_diff(reference) <= reference / 1000 {
            (Anchor::at(t, ns, rate, 0), Some(rate))
        } else {
            (Anchor::at(t, ns, 0, rate), None)
        }
    }
}

/// Nanoseconds per tick (32.32) of `dns` over `dt` ticks, if plausible: a
/// counter between 100 MHz and 20 GHz.
fn rate(dt: u64, dns: u64) -> Option<u64> {
    let mult = u64::try_from((u128::from(dns) << 32) / u128::from(dt)).ok()?;
    ((1u64 << 32) / 20..(10u64 << 32))
        .contains(&mult)
        .then_some(mult)
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod tsc {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::OnceLock;

    use super::{system_ns, Anchor, MAX_BRACKET};

    thread_local! {
        static ANCHOR: Cell<Anchor> = const { Cell::new(Anchor::NONE) };
    }

    /// The last rate any thread confirmed (0: none).
    static SHARED: AtomicU64 = AtomicU64::new(0);

    /// Whether the kernel keeps time with the TSC (checked once).
    #[inline]
    pub(super) fn usable() -> bool {
        static USABLE: OnceLock<bool> = OnceLock::new();
        *USABLE.get_or_init(|| {
            std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|s| s.trim() == "tsc")
        })
    }

    #[inline]
    pub(super) fn rdtsc() -> u64 {
        // SAFETY: every x86-64 CPU has `rdtsc`; it reads a counter.
        unsafe { std::arch::x86_64::_rdtsc() }
    }

    #[inline]
    pub(super) fn now_ns() -> u64 {
        ANCHOR.with(|cell| {
            let a = cell.get();
            match a.extrapolate(rdtsc()) {
                Some(ns) => ns,
                None => slow(cell, a),
            }
        })
    }

    /// A bracketed sample, folded into this thread's state; the system
    /// clock's answer.
    #[cold]
    fn slow(cell: &Cell<Anchor>, a: Anchor) -> u64 {
        for _ in 0..3 {
            let before = system_ns();
            let t = rdtsc();
            let after = system_ns();
            if after >= before && u128::from(after - before) <= MAX_BRACKET.as_nanos() {
                let ns = before + (after - before) / 2;
                let (next, confirmed) = a.next(t, ns, SHARED.load(Relaxed));
                if let Some(rate) = confirmed {
                    SHARED.store(rate, Relaxed);
                }
                cell.set(next);
                return ns;
            }
        }
        // Preempted three times over: answer, and anchor another time.
        system_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3 GHz counter: 3 ticks per ns; wall time starts at `W`.
    const W: u64 = 1_700_000_000_000_000_000;
    const T: u64 = 1_000_000_000;
    fn tick(ns: u64) -> u64 {
        T + 3 * ns
    }
    const MS: u64 = 1_000_000;

    #[test]
    #[cfg_attr(miri, ignore = "sleeps")]
    fn ticks_at_their_measured_rate_agree_with_instant() {
        let rate = TickRate::start();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (t0, i0) = (ticks(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(30));
        let (t1, i1) = (ticks(), std::time::Instant::now());
        let by_ticks = t1.wrapping_sub(t0) as f64 * rate.ns_per_tick();
        let by_instant = (i1 - i0).as_nanos() as f64;
        assert!(by_instant >= 30e6);
        // The rate is measured over a longer interval that contains this
        // one; only a read between the paired clock reads can differ.
        let err = (by_ticks - by_instant).abs();
        assert!(
            err < by_instant * 0.01 + 200e3,
            "{by_ticks} ns by ticks, {by_instant} ns by Instant"
        );
    }

    #[test]
    fn a_rate_is_used_only_once_a_second_one_agrees() {
        let a = Anchor::NONE.next(tick(0), W, 0).0;
        assert_eq!(a.extrapolate(tick(10)), None, "no rate yet");
        // Too short a base keeps the anchor.
        assert_eq!(a.next(tick(MS), W + MS, 0).0, a);
        let (a, shared) = a.next(tick(5 * MS), W + 5 * MS, 0);
        assert_eq!((a.extrapolate(tick(5 * MS + 10)), shared), (None, None));
        let (a, shared) = a.next(tick(10 * MS), W + 10 * MS, 0);
        assert!(shared.is_some(), "two agreeing rates");
        let got = a.extrapolate(tick(15 * MS)).expect("a confirmed rate");
        assert!(got.abs_diff(W + 15 * MS) < 10, "{got}");
        // Past the re-anchor limit: the slow path again.
        assert_eq!(a.extrapolate(tick(21 * MS)), None);
    }

    /// The reviewer's case: a first rate measured across a pause between
    /// the counter and the clock (no bracket would pass it, but the rate
    /// logic alone must not use it either).
    #[test]
    fn a_wrong_first_rate_is_never_used() {
        let a = Anchor::NONE.next(tick(0), W, 0).0;
        // 5.9 ms on the counter, 6.9 ms on the clock (1 ms lost between).
        let (mut a, _) = a.next(tick(5_900_000), W + 6_900_000, 0);
        assert_eq!(a.extrapolate(tick(6 * MS)), None);
        // The next measurement starts from the bad anchor, so it is off
        // too, and disagrees: still none; then a clean one, which
        // disagrees with that: none.
        for at in [12 * MS, 18 * MS] {
            let (b, shared) = a.next(tick(at), W + at, 0);
            assert_eq!((b.extrapolate(tick(at + 5)), shared), (None, None));
            a = b;
        }
        // A fourth agrees with the third: used, and right.
        let (a, _) = a.next(tick(24 * MS), W + 24 * MS, 0);
        let got = a.extrapolate(tick(26 * MS)).expect("confirmed");
        assert!(got.abs_diff(W + 26 * MS) < 10, "{got}");
    }

    #[test]
    fn a_wall_clock_step_drops_the_rate_until_two_agree_again() {
        let mut a = Anchor::NONE.next(tick(0), W, 0).0;
        for k in 1..=2 {
            a = a.next(tick(k * 5 * MS), W + k * 5 * MS, 0).0;
        }
        assert!(a.mult != 0);
        // 5 ms forward during the next 10 ms.
        let step = 5 * MS;
        let (b, _) = a.next(tick(20 * MS), W + 20 * MS + step, 0);
        assert_eq!(b.extrapolate(tick(20 * MS + 10)), None, "refused");
        let (b, _) = b.next(tick(30 * MS), W + 30 * MS + step, 0);
        let (b, _) = b.next(tick(40 * MS), W + 40 * MS + step, 0);
        let got = b.extrapolate(tick(45 * MS)).expect("confirmed again");
        assert!(got.abs_diff(W + 45 * MS + step) < 10, "{got}");
        // A step back starts over from the new time.
        let (c, _) = b.next(tick(50 * MS), W, 0);
        assert_eq!(c.extrapolate(tick(50 * MS + 10)), None);
    }

    #[test]
    fn a_new_thread_uses_the_shared_rate_at_once() {
        let mult = rate(3 * MS, MS).unwrap();
        let (a, _) = Anchor::NONE.next(tick(0), W, mult);
        let got = a.extrapolate(tick(MS)).expect("shared rate");
        assert!(got.abs_diff(W + MS) < 10, "{got}");
    }

    #[test]
    fn implausible_or_huge_rates_are_refused() {
        assert_eq!(rate(1, u64::MAX / 2), None, "would overflow 64 bits");
        assert_eq!(rate(1_000, 1_000_000), None, "a 1 MHz counter");
        assert_eq!(rate(1_000_000, 1_000), None, "a 1 THz counter");
        assert!(rate(3_000, 1_000).is_some());
    }

    /// Each value lies between two system-clock reads taken around it
    /// (give or take a few µs), across many anchors.
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

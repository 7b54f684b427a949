//! An event (an "eventcount") living in shared memory: waiters sleep until
//! a notifier says something changed.
//!
//! # Words (native `u32`s, 8 bytes in all)
//!
//! | offset | word | |
//! |---|---|---|
//! | 0 | sequence | bumped by every notify; waiters park on it |
//! | 4 | sleepers | waiters that may be parked |
//!
//! The check-then-wait race is closed by taking a [`Ticket`] (the sequence
//! number) *before* checking the condition: a notify after the ticket
//! changes the sequence, so the wait returns at once instead of sleeping
//! through it. Notifiers bump the sequence (or change the condition), then
//! wake only if `sleepers` is non-zero; waiters count themselves in
//! `sleepers`, then re-read the sequence (or the condition). That is the
//! store-buffering (Dekker) pattern: both halves are `SeqCst`
//! read-modify-writes of `sleepers`, which guarantees at least one side
//! sees the other (the argument is at `word::sleepers`), so a notifier
//! that skips the wake call is one that no waiter missed. This is the
//! eventcount of Reed and Kanodia (1979), as in Dmitry Vyukov's and
//! folly's versions.
//!
//! Wake-ups may be spurious; re-check the condition after every wait, as
//! [`Event::wait_while`] does.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use super::fence::Fences;
use super::word::{sleepers, spin_until, Futex, Park, Spin, Word};
use crate::error::{Error, Result};
use crate::region::Region;

/// Bytes an event occupies.
pub const EVENT_LEN: u64 = 8;

/// The sequence number seen before checking a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(pub u32);

/// The event algorithm over any two words.
pub struct RawEvent<'a, W: Word> {
    /// Bumped by every notify.
    pub seq: &'a W,
    /// Waiters that may be parked.
    pub sleepers: &'a W,
}

impl<W: Word> RawEvent<'_, W> {
    /// Takes a ticket; call before checking the condition.
    #[inline]
    pub fn listen(&self) -> Ticket {
        Ticket(self.seq.load(SeqCst))
    }

    /// Bumps the sequence and wakes up to `count` sleepers.
    #[inline]
    pub fn notify(&self, count: u32, park: &impl Park<W>) {
        self.seq.fetch_add(1, SeqCst);
        if sleepers::present(self.sleepers) {
            park.wake(self.seq, count);
        }
    }

    /// Wakes up to `count` sleepers if there are any, for a notifier that
    /// has just changed the condition the waiters check in
    /// [`RawEvent::wait_until`]. When nobody sleeps this costs what
    /// `fences` charges the notifier (one locked instruction with
    /// [`Symmetric`](super::Symmetric), a plain load with the asymmetric
    /// pair), on a line only waiters that park write: no system call.
    #[inline]
    pub fn notify_if_sleeping(&self, count: u32, park: &impl Park<W>, fences: &impl Fences) {
        if fences.sleepers_present(self.sleepers) {
            self.seq.fetch_add(1, SeqCst);
            park.wake(self.seq, count);
        }
    }

    /// Parks until `ready()` or `deadline`; returns `ready()`'s last answer.
    /// No spinning: callers spin before calling this.
    ///
    /// Pairs with [`RawEvent::notify_if_sleeping`]: the waiter reads the
    /// sequence, counts itself in `sleepers`, fences (per `fences`),
    /// checks `ready()`; the notifier changes the condition, then checks
    /// `sleepers` (per the same `fences`). Either the waiter sees the
    /// change or the notifier sees the sleeper and bumps the sequence,
    /// which makes the futex wait return.
    pub fn wait_until(
        &self,
        mut ready: impl FnMut() -> bool,
        deadline: Option<Instant>,
        park: &impl Park<W>,
        fences: &impl Fences,
    ) -> bool {
        loop {
            let ticket = self.listen();
            sleepers::enter(self.sleepers);
            fences.after_enter();
            if ready() {
                sleepers::leave(self.sleepers);
                return true;
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        sleepers::leave(self.sleepers);
                        return false;
                    }
                    Some(d - now)
                }
            };
            park.wait(self.seq, ticket.0, timeout);
            sleepers::leave(self.sleepers);
            if ready() {
                return true;
            }
        }
    }

    /// Waits until a notify after `ticket` or `deadline`; `true` if
    /// notified.
    pub fn wait(
        &self,
        ticket: Ticket,
        deadline: Option<Instant>,
        spin: Spin,
        park: &impl Park<W>,
    ) -> bool {
        let changed = || self.seq.load(SeqCst) != ticket.0;
        if changed() || spin_until(spin, deadline, changed) {
            return true;
        }
        sleepers::enter(self.sleepers);
        let notified = loop {
            if changed() {
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
            park.wait(self.seq, ticket.0, timeout);
        };
        sleepers::leave(self.sleepers);
        notified
    }
}

/// An event at an offset of a region, shared by every process that maps
/// it. Zero-filled memory is a fresh event.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::{sync::Event, Region};
/// use std::time::Duration;
/// let region = Region::anonymous(4096)?;
/// // SAFETY: bytes 0..4 of this private region are only this flag.
/// let ready = unsafe { region.atomic_u32(0)? };
/// // SAFETY: bytes 8..16 of this private region are used only as this
/// // event (`ready` is bytes 0..4).
/// let event = unsafe { Event::at(&region, 8)? };
///
/// // Another process would do this part:
/// ready.store(1, std::sync::atomic::Ordering::Release);
/// event.notify_all();
///
/// event.wait_while(|| ready.load(std::sync::atomic::Ordering::Acquire) == 0, Duration::from_secs(1))?;
/// # Ok(()) }
/// ```
pub struct Event<'r> {
    region: &'r Region,
    /// The two words, checked once in `at`.
    raw: RawEvent<'r, std::sync::atomic::AtomicU32>,
    spin: Spin,
}

impl<'r> Event<'r> {
    /// The event whose 8 bytes start at `offset` (4-aligned) of `region`.
    /// Fails if they do not fit the mapping or are misaligned.
    ///
    /// # Safety
    ///
    /// Those 8 bytes must be used only as an event's words, by every
    /// process that maps them, for as long as this `Event` lives: nothing
    /// may access them non-atomically (a
    /// [`MutexGuard`](crate::sync::MutexGuard)'s `&mut T`, a queue
    /// `Record` or `Grant`, a typed view, `Region::read_at` or
    /// `write_at`) or atomically with another size (`Region::load_u64`
    /// over both words: mixed-size atomics), and they must not also be a
    /// `Mutex`, `Semaphore` or queue. Several `Event`s over the same bytes
    /// are fine: that is how processes share one. A layout that gives the
    /// event bytes of its own (a file whose object is a struct with an
    /// event field at a fixed offset) meets this by construction.
    pub unsafe fn at(region: &'r Region, offset: u64) -> Result<Event<'r>> {
        Ok(Event {
            region,
            raw: RawEvent {
                seq: region.atomic32(offset)?,
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

    fn raw(&self) -> &RawEvent<'r, std::sync::atomic::AtomicU32> {
        &self.raw
    }

    /// Takes a ticket: call before checking the condition you will wait for.
    pub fn listen(&self) -> Ticket {
        self.raw().listen()
    }

    /// Wakes at least one waiter (any that have not parked yet return too).
    pub fn notify_one(&self) {
        self.raw().notify(1, &Futex);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.raw().notify(i32::MAX as u32, &Futex);
    }

    /// Waits for a notify after `ticket`, at most `timeout`.
    pub fn wait(&self, ticket: Ticket, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        if self
            .raw()
            .wait(ticket, start.checked_add(timeout), self.spin, &Futex)
        {
            return Ok(());
        }
        Err(self.timeout(start))
    }

    /// Waits, with no time limit, for a notify after `ticket`.
    pub fn wait_forever(&self, ticket: Ticket) {
        self.raw().wait(ticket, None, self.spin, &Futex);
    }

    /// Waits while `condition()` holds, at most `timeout` in all.
    pub fn wait_while(&self, mut condition: impl FnMut() -> bool, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        // `None`: past what the clock holds, that is no limit.
        let deadline = start.checked_add(timeout);
        loop {
            let ticket = self.listen();
            if !condition() {
                return Ok(());
            }
            if !self.raw().wait(ticket, deadline, self.spin, &Futex) {
                return if condition() {
                    Err(self.timeout(start))
                } else {
                    Ok(())
                };
            }
        }
    }

    fn timeout(&self, start: Instant) -> Error {
        Error::Timeout {
            origin: self.region.origin().clone(),
            what: "waiting for an event",
            waited: start.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fence::Symmetric;
    use crate::sync::testing::{HeapPark, ModelAsymmetric};
    use crate::sync::word::sleepers;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn no_lost_wakeups_in_a_ping_pong() {
        let words = Arc::new((AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)));
        let park = Arc::new(HeapPark::default());
        let rounds = if cfg!(miri) { 10 } else { 2000 };
        let other = {
            let (words, park) = (words.clone(), park.clone());
            std::thread::spawn(move || {
                let ev = RawEvent {
                    seq: &words.0,
                    sleepers: &words.1,
                };
                for i in 0..rounds {
                    // Wait for an odd value, answer with the next even one.
                    loop {
                        let t = ev.listen();
                        if words.2.load(Ordering::SeqCst) == 2 * i + 1 {
                            break;
                        }
                        ev.wait(t, None, Spin::NONE, &*park);
                    }
                    words.2.store(2 * i + 2, Ordering::SeqCst);
                    ev.notify(u32::MAX, &*park);
                }
            })
        };
        let ev = RawEvent {
            seq: &words.0,
            sleepers: &words.1,
        };
        for i in 0..rounds {
            words.2.store(2 * i + 1, Ordering::SeqCst);
            ev.notify(u32::MAX, &*park);
            loop {
                let t = ev.listen();
                if words.2.load(Ordering::SeqCst) == 2 * i + 2 {
                    break;
                }
                ev.wait(t, None, Spin::NONE, &*park);
            }
        }
        other.join().unwrap();
    }

    /// The store-buffering litmus of the sleeper handshake, without
    /// parking: the notifier publishes then asks for sleepers, the waiter
    /// counts itself in then looks; at least one must see the other. The
    /// relaxed `done` flag (it orders nothing) makes the telling
    /// interleaving likely: the notifier finishes before the waiter starts.
    /// Under Miri, which explores weak-memory outcomes, the former fence (a
    /// `SeqCst` CAS on a local) lost this.
    #[test]
    fn litmus_a_waiter_or_its_notifier_sees_the_other() {
        litmus(&Symmetric);
        litmus(&ModelAsymmetric);
    }

    fn litmus(fences: &(impl Fences + Sync)) {
        use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
        let rounds = if cfg!(miri) { 32 } else { 1000 };
        for round in 0..rounds {
            let (ready, waiting, done) = (AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0));
            let (notifier_saw, waiter_saw) = std::thread::scope(|s| {
                let notifier = s.spawn(|| {
                    ready.store(1, Release);
                    let saw = fences.sleepers_present(&waiting);
                    done.store(1, Relaxed);
                    saw
                });
                while done.load(Relaxed) == 0 && !notifier.is_finished() {
                    std::thread::yield_now();
                }
                sleepers::enter(&waiting);
                fences.after_enter();
                let waiter_saw = ready.load(Acquire) == 1;
                (notifier.join().unwrap(), waiter_saw)
            });
            assert!(
                notifier_saw || waiter_saw,
                "round {round}: both sides missed each other (a lost wake-up)"
            );
        }
    }

    /// The queue's handshake with parking: publish then
    /// `notify_if_sleeping`, against `wait_until`, with the waiter again
    /// starting after the notifier is done (see the litmus above). A lost
    /// wake-up leaves the waiter parked until its generous deadline, and
    /// the test fails.
    #[test]
    fn notify_if_sleeping_never_strands_a_waiter() {
        never_strands(&Symmetric);
        never_strands(&ModelAsymmetric);
    }

    fn never_strands(fences: &(impl Fences + Sync)) {
        use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
        let rounds = if cfg!(miri) { 16 } else { 500 };
        for round in 0..rounds {
            let (ready, s, w) = (AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0));
            let done = AtomicU32::new(0);
            let ev = RawEvent {
                seq: &s,
                sleepers: &w,
            };
            let park = HeapPark::default();
            std::thread::scope(|scope| {
                let notifier = scope.spawn(|| {
                    ready.store(1, Release);
                    ev.notify_if_sleeping(1, &park, fences);
                    done.store(1, Relaxed);
                });
                while done.load(Relaxed) == 0 && !notifier.is_finished() {
                    std::thread::yield_now();
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                assert!(
                    ev.wait_until(|| ready.load(Acquire) == 1, Some(deadline), &park, fences),
                    "round {round}: the notify was lost"
                );
            });
            assert_eq!(w.load(Ordering::SeqCst), 0);
        }
    }

    #[test]
    fn a_notify_before_the_wait_is_not_lost() {
        let (s, w) = (AtomicU32::new(0), AtomicU32::new(0));
        let ev = RawEvent {
            seq: &s,
            sleepers: &w,
        };
        let park = HeapPark::default();
        let t = ev.listen();
        ev.notify(1, &park);
        assert!(ev.wait(t, None, Spin::NONE, &park));
        let t = ev.listen();
        assert!(!ev.wait(
            t,
            Some(Instant::now() + Duration::from_millis(10)),
            Spin::NONE,
            &park
        ));
    }
}

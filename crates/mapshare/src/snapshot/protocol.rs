//! The snapshot's pin/validate/publish protocol over any [`Word64`], so
//! that loom (`tests/loom.rs`) and Miri (the tests below, over heap memory
//! with threads) check the very code the mapped snapshot runs.
//!
//! Three kinds of words take part: the **current** word (the published
//! version: `generation << 8 | slot`, 0 before the first publish), one
//! **pin** word per reader entry (the version that reader uses, 0 for
//! none), and the slots' bytes. See the [module docs](super) for the
//! state table and the argument; in short:
//!
//! - reader: `c = current`; `pin = c`; `current == c`? then slot
//!   `c & 0xff` holds generation `c >> 8` until `pin = 0`. Otherwise
//!   retry: the version was replaced while we pinned it.
//! - writer: stores `current` (publish), later loads every pin and writes
//!   only into a slot that is neither current nor pinned.
//!
//! The reader's store-pin-then-load-current against the writer's
//! store-current-then-load-pins is the store-buffering shape. The writer
//! puts a `SeqCst` **fence** between its store and its load; the reader
//! pins with a `SeqCst` swap and reloads with a `SeqCst` load, and the
//! single total order of `SeqCst` operations and fences guarantees that
//! one side sees the other's store (C++20 [atomics.order]; the argument is
//! at [`pin`]). loom models `SeqCst` fences but treats `SeqCst` accesses
//! as acquire/release (its models of the swap would report false alarms),
//! so under `cfg(loom)` the reader pins with a store and a fence instead,
//! and Miri's litmus tests (which model `SeqCst` accesses) check the swap.
//! The writer's fence is passed in as a [`Fence`] so that loom's replaces
//! std's in the models.

#[cfg(not(loom))]
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::Ordering::{Acquire, Release};

use crate::sync::Word64;

/// A `SeqCst` fence: std's in real use, loom's in models.
pub trait Fence {
    /// `fence(SeqCst)`.
    fn seq_cst();
}

/// [`std::sync::atomic::fence`].
#[derive(Debug, Clone, Copy)]
pub struct StdFence;

impl Fence for StdFence {
    #[inline]
    fn seq_cst() {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// `loom::sync::atomic::fence`, for models.
#[cfg(loom)]
#[derive(Debug, Clone, Copy)]
pub struct LoomFence;

#[cfg(loom)]
impl Fence for LoomFence {
    fn seq_cst() {
        loom::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Bits of the slot number in a version word.
pub const SLOT_BITS: u32 = 8;
/// Slots a snapshot can have (a `u64` bit mask of busy slots covers
/// them).
pub const MAX_SLOTS: u32 = 64;
/// The largest generation: 2^56 − 1 (at one publish per 100 ns, 228
/// years of publishing).
pub const MAX_GENERATION: u64 = (1 << (64 - SLOT_BITS)) - 1;
/// How many times a reader re-pins before it reports the writer as too
/// fast ([`Pinned::Contended`]). Each failed attempt means a publish
/// happened between two loads a few nanoseconds apart.
pub const PIN_TRIES: u32 = 1 << 16;

/// A published version: which slot holds which generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// The generation (1, 2, ...).
    pub generation: u64,
    /// The slot that holds it (`< MAX_SLOTS`).
    pub slot: u32,
}

impl Version {
    /// The word stored in `current` and in pins.
    #[inline]
    pub fn pack(self) -> u64 {
        self.generation << SLOT_BITS | u64::from(self.slot)
    }

    /// Reads a version word: `Ok(None)` for 0 (nothing published),
    /// `Err` for a value no writer stores (a slot out of range, or
    /// generation 0 with a slot).
    #[inline]
    pub fn unpack(word: u64) -> Result<Option<Version>, String> {
        if word == 0 {
            return Ok(None);
        }
        let v = Version {
            generation: word >> SLOT_BITS,
            slot: (word & ((1 << SLOT_BITS) - 1)) as u32,
        };
        if v.generation == 0 || v.slot >= MAX_SLOTS {
            return Err(format!(
                "version word {word:#x} (generation {}, slot {}) names no version",
                v.generation, v.slot
            ));
        }
        Ok(Some(v))
    }
}

/// What [`pin`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// Nothing was ever published; nothing is pinned.
    Nothing,
    /// This version word is pinned and was current after the pin: its
    /// slot stays untouched until [`unpin`].
    Version(u64),
    /// The writer published between pin and check `PIN_TRIES` times in a
    /// row; nothing is pinned.
    Contended,
}

/// Reader: pins the current version in `pin` (this reader's entry) and
/// validates that it is still current. On `Pinned::Version(c)`, the slot
/// of `c` holds `c`'s generation, complete, and the writer will not write
/// it until `unpin(pin)`; the bytes may be read in place.
///
/// `pin` must be this reader's own entry and hold 0 (no other pin) on
/// entry.
#[inline]
pub fn pin<W: Word64>(current: &W, pin: &W) -> Pinned {
    for _ in 0..PIN_TRIES {
        let c = current.load(Acquire);
        if c == 0 {
            return Pinned::Nothing;
        }
        // A SeqCst read-modify-write, then a SeqCst reload, against the
        // writer's SeqCst fence between its store of `current` and its pin
        // scan (`pinned_slots`): both of ours are in the single total
        // order S. If our reload comes after the writer's fence in S, it
        // sees the writer's `current`; otherwise our swap, before the
        // reload, precedes the fence in S, and the writer's scan, after the
        // fence, sees the pin ([atomics.order]: a load sequenced after a
        // SeqCst fence sees a SeqCst modification that precedes the fence
        // in S, or a later one). Either way one side sees the other.
        // (Release is part of SeqCst: a writer whose scan reads this pin
        // also sees our last unpin and the reads it ended.) On x86-64 this
        // is one `xchg` and a plain load, where a store and a fence cost
        // an `mfence`: about 1 ns of a 12-17 ns read here (docs/snapshot.md).
        //
        // loom treats SeqCst accesses as acquire/release (it models SeqCst
        // fences only), so its models run the equivalent store + fence;
        // Miri, which models SeqCst accesses, runs this code.
        #[cfg(not(loom))]
        {
            pin.swap(c, SeqCst);
            if current.load(SeqCst) == c {
                return Pinned::Version(c);
            }
        }
        #[cfg(loom)]
        {
            pin.store(c, Release);
            LoomFence::seq_cst();
            if current.load(Acquire) == c {
                return Pinned::Version(c);
            }
        }
    }
    pin.store(0, Release);
    Pinned::Contended
}

/// Reader: drops the pin. Release: every read of the pinned bytes
/// happens before the writer's load that sees 0 and reuses the slot.
#[inline]
pub fn unpin<W: Word64>(pin: &W) {
    pin.store(0, Release);
}

/// Writer: the slots named by any of the pins that `pins()` yields (bit
/// `slot` set), called after a `SeqCst` fence that follows the writer's
/// last store of `current`. `pins` runs after the fence too: anything it
/// loads to decide which entries to scan (the reader high-water mark) is
/// then as fresh as the pins. A pin word that is no version (garbage) pins
/// nothing: the writer never writes slots out of range anyway.
#[inline]
pub fn pinned_slots<'a, W: Word64 + 'a, F: Fence, I: IntoIterator<Item = &'a W>>(
    pins: impl FnOnce() -> I,
) -> u64 {
    F::seq_cst();
    let mut busy = 0u64;
    for p in pins() {
        // Acquire: pairs with the reader's release unpin (and pin).
        if let Ok(Some(v)) = Version::unpack(p.load(Acquire)) {
            busy |= 1 << v.slot;
        }
    }
    busy
}

/// Writer: a slot among `0..slots` that is neither `busy` nor the current
/// one, preferring the lowest.
#[inline]
pub fn free_slot(busy: u64, current: Option<Version>, slots: u32) -> Option<u32> {
    let mut taken = busy;
    if let Some(c) = current {
        taken |= 1 << c.slot;
    }
    let usable = if slots >= 64 {
        u64::MAX
    } else {
        (1u64 << slots) - 1
    };
    let free = !taken & usable;
    (free != 0).then(|| free.trailing_zeros())
}

/// Writer: makes `v` current. Release: everything written into `v`'s
/// slot before happens-before a reader's (acquire) load that sees it.
#[inline]
pub fn publish<W: Word64>(current: &W, v: Version) {
    current.store(v.pack(), Release);
}

/// Read-only reader (no pin): after copying slot `c`'s bytes out with
/// acquire loads (or relaxed loads and an acquire fence), whether the copy
/// is whole: `current` still names the same version word `c`.
/// Generations only grow, so an unchanged word means the writer never
/// left that version, and it writes only slots that are not current.
/// (The writer's stores into a slot are release stores, or plain writes
/// after a release fence, that follow its store of a newer `current`: a
/// copy that read any of them sees that newer word here.)
#[inline]
pub fn still_current<W: Word64>(current: &W, c: u64) -> bool {
    current.load(Acquire) == c
}

#[cfg(test)]
mod tests {
    //! Miri runs these (`cargo +nightly miri test -p mapshare --lib
    //! snapshot` with `-Zmiri-many-seeds`): its data-race detector checks
    //! that the in-place reads of pinned bytes (plain, non-atomic) never
    //! race the writer's plain writes.

    use super::*;
    use std::cell::UnsafeCell;
    use std::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering::{Relaxed, SeqCst};

    const SLOTS: u32 = 4;
    const WORDS: usize = 4;

    /// Heap stand-in for a snapshot: current, pins, slots of plain words.
    struct Model {
        current: AtomicU64,
        pins: Vec<AtomicU64>,
        slots: Vec<UnsafeCell<[u64; WORDS]>>,
        /// Read-only readers copy these with atomic loads; the writer
        /// stores them with release (see `still_current`).
        atomic_slots: Vec<[AtomicU64; WORDS]>,
    }

    // SAFETY: the protocol under test is what makes the cells' accesses
    // race-free; Miri checks exactly that.
    unsafe impl Sync for Model {}

    impl Model {
        fn new(readers: usize) -> Model {
            Model {
                current: AtomicU64::new(0),
                pins: (0..readers).map(|_| AtomicU64::new(0)).collect(),
                slots: (0..SLOTS).map(|_| UnsafeCell::new([0; WORDS])).collect(),
                atomic_slots: (0..SLOTS)
                    .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                    .collect(),
            }
        }

        fn publish(&self, generation: u64) {
            let cur = Version::unpack(self.current.load(SeqCst)).unwrap();
            let busy = pinned_slots::<_, StdFence, _>(|| &self.pins);
            let slot = free_slot(busy, cur, SLOTS).expect("a free slot: readers pin one each");
            // SAFETY: not current, not pinned: no reader reads it (the
            // claim under test).
            unsafe {
                let cell = &mut *self.slots[slot as usize].get();
                for (i, w) in cell.iter_mut().enumerate() {
                    *w = generation * 100 + i as u64;
                }
            }
            for (i, w) in self.atomic_slots[slot as usize].iter().enumerate() {
                w.store(generation * 100 + i as u64, Release);
            }
            publish(&self.current, Version { generation, slot });
        }

        /// In-place read through a pin; returns the generation seen.
        fn read_pinned(&self, me: usize) -> Option<u64> {
            let c = match pin(&self.current, &self.pins[me]) {
                Pinned::Version(c) => c,
                Pinned::Nothing => return None,
                Pinned::Contended => panic!("contended"),
            };
            let v = Version::unpack(c).unwrap().unwrap();
            // SAFETY: pinned and validated: the writer leaves the slot alone.
            let words = unsafe { *self.slots[v.slot as usize].get() };
            for (i, w) in words.iter().enumerate() {
                assert_eq!(*w, v.generation * 100 + i as u64, "torn read of {v:?}");
            }
            unpin(&self.pins[me]);
            Some(v.generation)
        }

        /// Seqlock copy-out, as a read-only reader does.
        fn read_copied(&self) -> Option<u64> {
            loop {
                let c = self.current.load(SeqCst);
                let v = Version::unpack(c).unwrap()?;
                let words: Vec<u64> = self.atomic_slots[v.slot as usize]
                    .iter()
                    .map(|w| w.load(Acquire))
                    .collect();
                if !still_current(&self.current, c) {
                    continue;
                }
                for (i, w) in words.iter().enumerate() {
                    assert_eq!(*w, v.generation * 100 + i as u64, "torn copy of {v:?}");
                }
                return Some(v.generation);
            }
        }
    }

    #[test]
    fn version_words_round_trip_and_garbage_is_refused() {
        let v = Version {
            generation: 7,
            slot: 3,
        };
        assert_eq!(Version::unpack(v.pack()), Ok(Some(v)));
        assert_eq!(Version::unpack(0), Ok(None));
        assert!(Version::unpack(5).is_err(), "generation 0 with a slot");
        assert!(Version::unpack(1 << SLOT_BITS | 200).is_err(), "slot 200");
        assert_eq!(free_slot(0b101, None, 3), Some(1));
        assert_eq!(
            free_slot(
                0b001,
                Some(Version {
                    generation: 1,
                    slot: 1
                }),
                3
            ),
            Some(2)
        );
        assert_eq!(
            free_slot(
                0b011,
                Some(Version {
                    generation: 1,
                    slot: 2
                }),
                3
            ),
            None
        );
        assert_eq!(free_slot(0, None, 64), Some(0));
        assert_eq!(free_slot(u64::MAX >> 1, None, 64), Some(63));
    }

    /// Two readers pin and read in place while the writer publishes into
    /// three slots; every read is whole, and each reader's generations
    /// never go back. Under Miri, a missing happens-before between the
    /// writer's plain writes and a reader's plain reads is reported.
    #[test]
    fn pinned_reads_are_never_torn_and_never_go_back() {
        let publishes = if cfg!(miri) { 12 } else { 20_000 };
        let reads = if cfg!(miri) { 12 } else { 20_000 };
        let m = Model::new(2);
        let stop = AtomicU64::new(0);
        std::thread::scope(|s| {
            for me in 0..2 {
                let (m, stop) = (&m, &stop);
                s.spawn(move || {
                    let mut last = 0;
                    for _ in 0..reads {
                        if let Some(g) = m.read_pinned(me) {
                            assert!(g >= last, "went back from {last} to {g}");
                            last = g;
                        }
                        if let Some(g) = m.read_copied() {
                            assert!(g >= 1);
                        }
                        if stop.load(Relaxed) == 1 {
                            break;
                        }
                    }
                });
            }
            for g in 1..=publishes {
                m.publish(g);
            }
            stop.store(1, Relaxed);
        });
    }

    /// A `current` word that runs `between` right after the reader's first
    /// load: the writer's two publishes land exactly in mmap-sync's window
    /// (after the version was loaded, before the pin is stored).
    struct Staged<'a> {
        word: &'a AtomicU64,
        loads: std::cell::Cell<u32>,
        between: std::cell::RefCell<Option<Box<dyn FnOnce() + 'a>>>,
    }

    impl Word64 for Staged<'_> {
        fn load(&self, order: std::sync::atomic::Ordering) -> u64 {
            let v = self.word.load(order);
            self.loads.set(self.loads.get() + 1);
            if self.loads.get() == 1 {
                if let Some(f) = self.between.borrow_mut().take() {
                    f();
                }
            }
            v
        }
        fn store(&self, value: u64, order: std::sync::atomic::Ordering) {
            self.word.store(value, order)
        }
        fn compare_exchange(
            &self,
            current: u64,
            new: u64,
            success: std::sync::atomic::Ordering,
            failure: std::sync::atomic::Ordering,
        ) -> Result<u64, u64> {
            self.word.compare_exchange(current, new, success, failure)
        }
        fn swap(&self, value: u64, order: std::sync::atomic::Ordering) -> u64 {
            self.word.swap(value, order)
        }
    }

    /// The mmap-sync race, staged through `pin` itself: the reader loads
    /// the version, the writer publishes twice (reusing that version's
    /// slot, which nobody pinned yet), then the reader pins. The
    /// validation sees the newer word, and the reader pins the newest
    /// version instead; the slot it first loaded is never used.
    #[test]
    fn load_then_two_publishes_then_pin_is_caught() {
        let m = Model::new(1);
        m.publish(1);
        let first = m.current.load(SeqCst);
        let staged = Staged {
            word: &m.current,
            loads: std::cell::Cell::new(0),
            between: std::cell::RefCell::new(Some(Box::new(|| {
                m.publish(2);
                m.publish(3); // reuses generation 1's slot
            }))),
        };
        let my_pin = Staged {
            word: &m.pins[0],
            loads: std::cell::Cell::new(0),
            between: std::cell::RefCell::new(None),
        };
        let Pinned::Version(c) = pin(&staged, &my_pin) else {
            panic!("nothing pinned");
        };
        assert_ne!(c, first, "pinned a version whose slot was rewritten");
        let v = Version::unpack(c).unwrap().unwrap();
        assert_eq!(v.generation, 3);
        assert!(staged.loads.get() >= 3, "validated, retried, validated");
        unpin(&my_pin);
    }

    /// A pinned slot stays untouched however many versions follow.
    #[test]
    fn a_pinned_slot_is_never_chosen() {
        let m = Model::new(1);
        m.publish(1);
        let Pinned::Version(c) = pin(&m.current, &m.pins[0]) else {
            panic!("nothing pinned")
        };
        let v = Version::unpack(c).unwrap().unwrap();
        for g in 2..50 {
            m.publish(g);
            let cur = Version::unpack(m.current.load(SeqCst)).unwrap().unwrap();
            assert_ne!(cur.slot, v.slot);
        }
        // SAFETY: still pinned.
        let words = unsafe { *m.slots[v.slot as usize].get() };
        assert_eq!(words[0], 100);
        unpin(&m.pins[0]);
    }

    /// Review (issue 9): the store-buffering litmus of the pin itself.
    /// A reader pins version 1 with `pin` while the writer publishes
    /// version 2 into another slot and scans the pins (`publish`, then
    /// `pinned_slots`, as `Writer::publish` does). Forbidden: the reader
    /// keeps version 1 (its reload saw no publish) and the writer's scan
    /// missed that pin (it would reuse slot 0 under the reader). Under
    /// `MIRIFLAGS="-Zmiri-many-seeds=0..32"` this fails when the reader's
    /// swap and reload are `Release`/`Acquire` (checked by hand), and
    /// passes with `SeqCst`.
    #[test]
    fn pin_and_the_writers_scan_never_miss_each_other() {
        let rounds = if cfg!(miri) { 64 } else { 5_000 };
        let old = Version {
            generation: 1,
            slot: 0,
        };
        for _ in 0..rounds {
            let current = AtomicU64::new(old.pack());
            let my_pin = AtomicU64::new(0);
            let (pinned, busy) = std::thread::scope(|s| {
                // The pin stays until the round ends (a guard held).
                let r = s.spawn(|| pin(&current, &my_pin));
                let w = s.spawn(|| {
                    publish(
                        &current,
                        Version {
                            generation: 2,
                            slot: 1,
                        },
                    );
                    pinned_slots::<_, StdFence, _>(|| std::iter::once(&my_pin))
                });
                (r.join().unwrap(), w.join().unwrap())
            });
            if pinned == Pinned::Version(old.pack()) {
                assert_ne!(
                    busy & 1,
                    0,
                    "the reader kept slot 0 and the writer saw no pin"
                );
            }
        }
    }
}

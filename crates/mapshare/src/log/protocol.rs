//! The segment protocol over any memory of 64-bit words: reservation,
//! claim, commit, abort, the reader's step, and the repair of holes left
//! by dead writers. The words, their encodings and the state table are
//! documented in the [module documentation](super); this file is the
//! algorithm, generic over [`Mem`] so that loom and Miri run it over heap
//! words and the library over a mapped segment.
//!
//! Every word read here may have been written by a hostile peer: each is
//! loaded once, decoded into a local, validated against the segment's
//! immutable geometry ([`Geometry`], from the checksummed file header, not
//! from shared words), and only then used. A violation is a [`Violation`]
//! (the caller turns it into [`crate::Error::Corrupted`]); every loop is
//! bounded by the segment's size.

use std::sync::atomic::Ordering::{self, Acquire, Relaxed, Release};

/// 64-bit words at byte offsets of one segment object.
///
/// Out-of-range or misaligned offsets must not be undefined behaviour: a
/// load returns [`BAD_WORD`] (which decodes as a violation) and a store or
/// read-modify-write does nothing (a CAS fails with [`BAD_WORD`]).
pub trait Mem {
    /// Loads the word at `at`.
    fn load(&self, at: u64, order: Ordering) -> u64;
    /// Stores `v` at `at`.
    fn store(&self, at: u64, v: u64, order: Ordering);
    /// Compare-and-swap (`AcqRel` on success, `Acquire` on failure).
    fn cas(&self, at: u64, current: u64, new: u64) -> Result<u64, u64>;
    /// Fetch-add (`AcqRel`).
    fn add(&self, at: u64, v: u64) -> u64;
}

/// What an out-of-range load returns: state 7, which no word has.
pub const BAD_WORD: u64 = u64::MAX;

/// The segment object's control words (byte offsets in the object).
pub const TAIL: u64 = 0;
/// First sequence number of the segment (immutable after creation).
pub const BASE: u64 = 8;
/// The segment's number in its log (immutable).
pub const NUMBER: u64 = 16;
/// Data bytes (immutable; must match the header's object length).
pub const CAPACITY: u64 = 24;
/// `SEALED | count` once the segment is closed, else 0.
pub const END: u64 = 32;
/// Creation time, milliseconds since the Unix epoch (for retention).
pub const CREATED: u64 = 40;
/// The writer registry: [`REGISTRY_SLOTS`] pairs `(token, pending)`, one
/// per cache line (each writer's pending count is written twice per
/// append; neighbours must not share its line).
pub const REGISTRY: u64 = 64;
/// Registry entries: one per writer lease slot of the segment file (its
/// first `REGISTRY_SLOTS` slots; readers take the slots after them).
pub const REGISTRY_SLOTS: u32 = 256;
/// The seek index follows the registry.
pub const INDEX: u64 = REGISTRY + REGISTRY_STRIDE * REGISTRY_SLOTS as u64;
/// Bytes per registry entry.
pub const REGISTRY_STRIDE: u64 = 64;

/// Record header bytes: commit word, token, sequence number, timestamp,
/// checksum word.
pub const HDR: u64 = 40;
/// Offsets inside a record header.
pub const R_TOKEN: u64 = 8;
/// The record's full sequence number.
pub const R_SEQ: u64 = 16;
/// Nanoseconds since the Unix epoch when claimed.
pub const R_TIME: u64 = 24;
/// CRC32C of the payload in the low 32 bits.
pub const R_CRC: u64 = 32;

/// A record is indexed when its index within the segment is a multiple
/// of this.
pub const INDEX_EVERY: u64 = 256;
/// Bits of the tail word that hold the byte offset.
pub const OFF_BITS: u32 = 40;
const OFF_MASK: u64 = (1 << OFF_BITS) - 1;
/// Largest segment data area: keeps the record count of a segment (plus
/// any writers racing past its end) below 2^24, the tail's count field.
pub const MAX_CAPACITY: u64 = 256 << 20;
/// Largest payload of one record.
pub const MAX_RECORD: u64 = 16 << 20;
/// Sealed flag of the `END` control word.
pub const SEALED: u64 = 1 << 63;

/// Commit-word states (bits 61..64).
pub const EMPTY: u64 = 0;
/// Space reserved and the claim published; payload being written.
pub const CLAIMED: u64 = 1;
/// The record is complete.
pub const COMMITTED: u64 = 2;
/// The claimer died (or gave up): skip `len`.
pub const ABORTED: u64 = 3;
/// Reservations of dead writers that never published a claim: skip
/// `span` bytes.
pub const HOLE: u64 = 4;
/// No record fits after this point: the segment ends here, with `count`
/// records.
pub const ENDED: u64 = 5;

const STATE_SHIFT: u32 = 61;
const IDX_SHIFT: u32 = 32;
const IDX_MASK: u64 = (1 << 29) - 1;

/// A word that breaks the protocol, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

fn bad<T>(why: impl Into<String>) -> Result<T, Violation> {
    Err(Violation(why.into()))
}

/// Packs a commit word.
#[inline]
pub fn word(state: u64, idx: u64, low: u32) -> u64 {
    state << STATE_SHIFT | (idx & IDX_MASK) << IDX_SHIFT | u64::from(low)
}

/// Splits a commit word into (state, idx, low 32 bits).
#[inline]
pub fn split(w: u64) -> (u64, u64, u32) {
    (w >> STATE_SHIFT, (w >> IDX_SHIFT) & IDX_MASK, w as u32)
}

/// Bytes a record with `len` payload bytes occupies (8-aligned).
#[inline]
pub fn span(len: u64) -> u64 {
    (HDR + len + 7) & !7
}

/// Splits a tail word into (byte offset in the data area, reservations).
#[inline]
pub fn tail_parts(t: u64) -> (u64, u64) {
    (t & OFF_MASK, t >> OFF_BITS)
}

/// The segment's immutable shape, from the file header (never from a
/// shared word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Object offset of the data area.
    pub data: u64,
    /// Data bytes.
    pub capacity: u64,
}

impl Geometry {
    /// Index entries a segment of `capacity` data bytes has.
    pub fn index_entries(capacity: u64) -> u64 {
        capacity / (HDR * INDEX_EVERY) + 1
    }

    /// The geometry of a segment with `capacity` data bytes.
    pub fn new(capacity: u64) -> Geometry {
        let end = INDEX + 8 * Self::index_entries(capacity);
        Geometry {
            data: (end + 4095) & !4095,
            capacity,
        }
    }

    /// Bytes of the whole object.
    pub fn object_len(&self) -> u64 {
        self.data + self.capacity
    }

    /// Records must end at or before this data offset, so that an
    /// `ENDED` word always fits after the last one.
    #[inline]
    pub fn usable(&self) -> u64 {
        self.capacity - 8
    }

    /// Largest payload a record of this segment can have.
    pub fn max_record(&self) -> u64 {
        (self.usable() - HDR).min(MAX_RECORD)
    }

    /// Object offset of data offset `p`.
    #[inline]
    pub fn at(&self, p: u64) -> u64 {
        self.data + p
    }

    /// Object offset of the index entry for record index `idx`.
    #[inline]
    pub fn index_at(&self, idx: u64) -> Option<u64> {
        let e = idx / INDEX_EVERY;
        (e < Self::index_entries(self.capacity)).then_some(INDEX + 8 * e)
    }
}

/// Object offset of registry entry `slot`'s token (its pending count is
/// 8 bytes further).
#[inline]
pub fn registry_at(slot: u32) -> u64 {
    REGISTRY + REGISTRY_STRIDE * u64::from(slot)
}

/// What [`reserve`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// `[off, off + span)` of the data area is ours, as record `idx`.
    Ok {
        /// Data offset.
        off: u64,
        /// Index in the segment.
        idx: u64,
    },
    /// The record does not fit, and ours was the first reservation that
    /// did not: we must close the segment at `off` with `idx` records.
    Closer {
        /// Data offset of the `ENDED` word.
        off: u64,
        /// Records in the segment.
        idx: u64,
    },
    /// The segment is (being) closed by someone else.
    Full,
}

/// Reserves `total` bytes (the spans of `n` records) with one atomic add
/// on the tail; the records get consecutive indexes. The caller has
/// already counted itself as pending in its registry entry (see
/// [`resolve`]).
pub fn reserve<M: Mem>(m: &M, g: &Geometry, total: u64, n: u64) -> Reserve {
    let (off, _) = tail_parts(m.load(TAIL, Relaxed));
    if off > g.usable() {
        // Closed: adding again would only push the tail further.
        return Reserve::Full;
    }
    let old = m.add(TAIL, total | n << OFF_BITS);
    let (off, idx) = tail_parts(old);
    if off + total <= g.usable() {
        Reserve::Ok { off, idx }
    } else if off <= g.usable() {
        Reserve::Closer { off, idx }
    } else {
        Reserve::Full
    }
}

/// Publishes the claim of a reservation: the commit word first (it is the
/// first byte of the reservation anyone can see), then the claimer's
/// token, sequence number, timestamp, and the index entry. `false` if the
/// commit word was not empty (someone else wrote there: a violation the
/// caller reports).
#[allow(clippy::too_many_arguments)]
pub fn publish_claim<M: Mem>(
    m: &M,
    g: &Geometry,
    off: u64,
    idx: u64,
    len: u32,
    token: u64,
    seq: u64,
    time: u64,
) -> bool {
    let at = g.at(off);
    if m.cas(at, EMPTY, word(CLAIMED, idx, len)).is_err() {
        return false;
    }
    m.store(at + R_SEQ, seq, Relaxed);
    m.store(at + R_TIME, time, Relaxed);
    // Release: whoever sees the token sees the claim word and the rest.
    m.store(at + R_TOKEN, token, Release);
    if idx.is_multiple_of(INDEX_EVERY) {
        if let Some(e) = g.index_at(idx) {
            // Offset + 1, so that 0 means "not written".
            m.store(e, off + 1, Release);
        }
    }
    true
}

/// Commits a claimed record: the checksum, then the commit word from
/// `CLAIMED` to `COMMITTED` with release order (the payload written
/// before is visible to whoever acquires the word). `false` if the claim
/// was aborted meanwhile (we were judged dead).
pub fn commit<M: Mem>(m: &M, g: &Geometry, off: u64, idx: u64, len: u32, crc: u32) -> bool {
    let at = g.at(off);
    m.store(at + R_CRC, u64::from(crc), Relaxed);
    m.cas(at, word(CLAIMED, idx, len), word(COMMITTED, idx, len))
        .is_ok()
}

/// Aborts a claimed record (its writer gave up, or is dead): `CLAIMED` to
/// `ABORTED`. `false` if it was no longer claimed.
pub fn abort<M: Mem>(m: &M, g: &Geometry, off: u64, idx: u64, len: u32) -> bool {
    m.cas(g.at(off), word(CLAIMED, idx, len), word(ABORTED, idx, len))
        .is_ok()
}

/// What a reader finds at a data offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing reserved here yet: the end of the log for now.
    Empty,
    /// Reserved, but the claim is not published (`token == 0`) or the
    /// payload not committed.
    Pending {
        /// The raw commit word (0 if not yet claimed).
        word: u64,
        /// The claimer's lease token, if published.
        token: u64,
    },
    /// A committed record.
    Record {
        /// Payload bytes.
        len: u32,
        /// Its index in the segment.
        idx: u64,
    },
    /// Skip `span` bytes; the next record index is `next_idx`.
    Skip {
        /// Bytes to skip.
        span: u64,
        /// Index of the first reservation after the skipped span (for an
        /// aborted record `idx + 1`; for a hole, as its word says).
        next_idx: u64,
    },
    /// The segment ends here with `count` records.
    End {
        /// Records in the segment.
        count: u64,
    },
}

/// Reads the commit word at data offset `p`, where the reader expects
/// record index `idx`, and validates it. `Acquire`: a committed record's
/// payload and header words are visible after this.
pub fn step<M: Mem>(m: &M, g: &Geometry, p: u64, idx: u64) -> Result<Step, Violation> {
    if !p.is_multiple_of(8) || p > g.usable() || idx > IDX_MASK {
        return bad(format!("reader position {p} is outside the data area"));
    }
    let w = m.load(g.at(p), Acquire);
    let (state, widx, low) = split(w);
    let check_record = |len: u32| -> Result<(), Violation> {
        if widx != idx {
            return bad(format!("record at {p} has index {widx}, expected {idx}"));
        }
        if u64::from(len) > g.max_record() || p + span(u64::from(len)) > g.usable() {
            return bad(format!("record at {p} of {len} bytes overruns the segment"));
        }
        Ok(())
    };
    match state {
        EMPTY if w == 0 => {
            let (toff, _) = tail_parts(m.load(TAIL, Acquire));
            if toff <= p {
                Ok(Step::Empty)
            } else {
                Ok(Step::Pending { word: 0, token: 0 })
            }
        }
        CLAIMED => {
            check_record(low)?;
            Ok(Step::Pending {
                word: w,
                token: m.load(g.at(p) + R_TOKEN, Acquire),
            })
        }
        COMMITTED => {
            check_record(low)?;
            Ok(Step::Record { len: low, idx })
        }
        ABORTED => {
            check_record(low)?;
            Ok(Step::Skip {
                span: span(u64::from(low)),
                next_idx: idx + 1,
            })
        }
        HOLE => {
            let sp = u64::from(low);
            if widx <= idx || sp == 0 || sp % 8 != 0 || p + sp > g.usable() {
                return bad(format!(
                    "hole at {p} ({sp} bytes, next index {widx}) is invalid"
                ));
            }
            Ok(Step::Skip {
                span: sp,
                next_idx: widx,
            })
        }
        ENDED => {
            if widx != idx || low != 0 {
                return bad(format!(
                    "end of segment at {p} says {widx} records, expected {idx}"
                ));
            }
            Ok(Step::End { count: idx })
        }
        _ => bad(format!("commit word {w:#x} at {p} has no valid state")),
    }
}

/// What [`resolve`] did about a reservation that has no published claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// A live writer may still publish it: wait.
    Busy,
    /// The word changed meanwhile: step again.
    Retry,
    /// Marked as a hole (or the segment's end): step again.
    Done,
}

/// Repairs the unclaimed reservation at data offset `p` (commit word 0,
/// tail past `p`), expected record index `idx`, once no live writer has a
/// reservation without a published claim (`quiet()`, which checks the
/// writer registry and the lease of every entry with a pending count).
///
/// Why this is safe: a writer counts itself pending *before* its atomic
/// add on the tail and uncounts itself only *after* its commit word and
/// token are published (release). We load the tail first, then ask
/// `quiet()` (acquire loads of the counts, plus the kernel's lease lock,
/// which a dead writer's exit released after its last store), then load
/// the commit word again. If it is still 0, the reservation at `p`
/// belongs to a dead writer, which wrote nothing at all (the commit word
/// is the first store of every reservation). Every reservation between
/// `p` and the loaded tail either has a visible commit word (a live or
/// finished writer) or is all zeros (a dead one), so the first non-zero
/// word after `p` is the commit word of the next real reservation, and
/// `[p, there)` is a run of dead, empty reservations: one `HOLE` covers
/// it, naming the index of the reservation after it (the claim found, or
/// the tail's count). When the run reaches the end of a full segment (the tail passed
/// the usable end), the dead closer never wrote its `ENDED`: we write
/// `ENDED` at `p` with `idx` records (the dead reservations' indexes, in
/// no record anyone can read, are not used). Both stores are a CAS from
/// 0, so racing repairers agree on one outcome.
pub fn resolve<M: Mem, E>(
    m: &M,
    g: &Geometry,
    p: u64,
    idx: u64,
    quiet: impl FnOnce() -> Result<bool, E>,
) -> Result<Result<Resolved, Violation>, E> {
    let (toff, tcount) = tail_parts(m.load(TAIL, Acquire));
    if toff <= p {
        return Ok(Ok(Resolved::Retry));
    }
    if !quiet()? {
        return Ok(Ok(Resolved::Busy));
    }
    if m.load(g.at(p), Acquire) != 0 {
        return Ok(Ok(Resolved::Retry));
    }
    let limit = toff.min(g.usable() + 8);
    let mut q = p + 8;
    while q < limit {
        let w = m.load(g.at(q), Acquire);
        if w != 0 {
            let (state, widx, _) = split(w);
            if !(CLAIMED..=ENDED).contains(&state) || widx <= idx {
                return Ok(bad(format!(
                    "word {w:#x} at {q} after an unclaimed reservation at {p} is no claim"
                )));
            }
            let hole = word(HOLE, widx, (q - p) as u32);
            return Ok(Ok(match m.cas(g.at(p), 0, hole) {
                Ok(_) => Resolved::Done,
                Err(_) => Resolved::Retry,
            }));
        }
        q += 8;
    }
    let mark = if toff > g.usable() {
        word(ENDED, idx, 0)
    } else if tcount > idx {
        word(HOLE, tcount, (toff - p) as u32)
    } else {
        return Ok(bad(format!(
            "the tail counts {tcount} reservations, but the reader expects index {idx} at {p}"
        )));
    };
    if m.cas(g.at(p), 0, mark).is_err() {
        return Ok(Ok(Resolved::Retry));
    }
    if toff > g.usable() {
        let _ = m.cas(END, 0, SEALED | idx);
    }
    Ok(Ok(Resolved::Done))
}

/// Closes the segment as the closer: `ENDED` at `off` with `idx` records,
/// then the `END` control word. `false` if the word at `off` was not
/// empty (a violation).
pub fn close<M: Mem>(m: &M, g: &Geometry, off: u64, idx: u64) -> bool {
    if m.cas(g.at(off), 0, word(ENDED, idx, 0)).is_err() {
        return false;
    }
    let _ = m.cas(END, 0, SEALED | idx);
    true
}

/// The `END` control word: `Some(records)` once the segment is closed.
pub fn ended<M: Mem>(m: &M) -> Option<u64> {
    let e = m.load(END, Acquire);
    (e & SEALED != 0).then_some(e & !SEALED)
}

/// Adds `delta` (1 or `u64::MAX` for -1) to registry entry `slot`'s
/// pending count.
pub fn pending_add<M: Mem>(m: &M, slot: u32, delta: u64) {
    m.add(registry_at(slot) + 8, delta);
}

/// Checks a segment's control block as read from a file: `capacity`,
/// `number` and `base` words against the header's object length and the
/// number the file name says. Returns the geometry.
pub fn check_control(
    capacity: u64,
    number: u64,
    base: u64,
    object_len: u64,
    expected_number: u64,
) -> Result<Geometry, Violation> {
    if !(4096..=MAX_CAPACITY).contains(&capacity) || !capacity.is_multiple_of(8) {
        return bad(format!("segment capacity {capacity} is out of range"));
    }
    let g = Geometry::new(capacity);
    if g.object_len() != object_len {
        return bad(format!(
            "a segment of {capacity} data bytes has {} object bytes, not {object_len}",
            g.object_len()
        ));
    }
    if number != expected_number || base > u64::MAX / 2 {
        return bad(format!(
            "segment {expected_number} says number {number}, base {base}"
        ));
    }
    Ok(g)
}

/// Heap words for tests, models and fuzzing: a `Vec` of atomics.
pub mod heap {
    use super::*;
    #[cfg(loom)]
    use loom::sync::atomic::AtomicU64;
    #[cfg(not(loom))]
    use std::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering::AcqRel;

    /// `len / 8` words, all 0.
    pub struct Heap(pub Vec<AtomicU64>);

    impl Heap {
        /// A zeroed object of `len` bytes.
        pub fn new(len: u64) -> Heap {
            Heap((0..len / 8).map(|_| AtomicU64::new(0)).collect())
        }
        fn get(&self, at: u64) -> Option<&AtomicU64> {
            if !at.is_multiple_of(8) {
                return None;
            }
            self.0.get((at / 8) as usize)
        }
    }

    impl Mem for Heap {
        fn load(&self, at: u64, order: Ordering) -> u64 {
            self.get(at).map_or(BAD_WORD, |w| w.load(order))
        }
        fn store(&self, at: u64, v: u64, order: Ordering) {
            if let Some(w) = self.get(at) {
                w.store(v, order)
            }
        }
        fn cas(&self, at: u64, current: u64, new: u64) -> Result<u64, u64> {
            match self.get(at) {
                Some(w) => w.compare_exchange(current, new, AcqRel, Acquire),
                None => Err(BAD_WORD),
            }
        }
        fn add(&self, at: u64, v: u64) -> u64 {
            self.get(at).map_or(BAD_WORD, |w| w.fetch_add(v, AcqRel))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::heap::Heap;
    use super::*;

    fn seg(capacity: u64) -> (Heap, Geometry) {
        let g = Geometry::new(capacity);
        (Heap::new(g.object_len()), g)
    }

    fn claim(m: &Heap, g: &Geometry, len: u32) -> (u64, u64) {
        match reserve(m, g, span(u64::from(len)), 1) {
            Reserve::Ok { off, idx } => {
                assert!(publish_claim(m, g, off, idx, len, 7 << 10 | 1, idx, 0));
                (off, idx)
            }
            other => panic!("no room: {other:?}"),
        }
    }

    #[test]
    fn commits_out_of_order_are_read_in_reservation_order() {
        let (m, g) = seg(4096);
        let a = claim(&m, &g, 3);
        let b = claim(&m, &g, 9);
        assert_eq!((a.1, b.1), (0, 1));
        assert!(commit(&m, &g, b.0, b.1, 9, 0));
        // The first record is still in progress: the reader waits there.
        assert!(matches!(step(&m, &g, 0, 0), Ok(Step::Pending { token, .. }) if token != 0));
        assert!(commit(&m, &g, a.0, a.1, 3, 0));
        assert_eq!(step(&m, &g, 0, 0), Ok(Step::Record { len: 3, idx: 0 }));
        assert_eq!(
            step(&m, &g, span(3), 1),
            Ok(Step::Record { len: 9, idx: 1 })
        );
        assert_eq!(step(&m, &g, span(3) + span(9), 2), Ok(Step::Empty));
    }

    #[test]
    fn an_aborted_claim_is_skipped_and_cannot_be_committed() {
        let (m, g) = seg(4096);
        let (off, idx) = claim(&m, &g, 5);
        assert!(abort(&m, &g, off, idx, 5));
        assert!(!commit(&m, &g, off, idx, 5, 0));
        assert_eq!(
            step(&m, &g, 0, 0),
            Ok(Step::Skip {
                span: span(5),
                next_idx: 1
            })
        );
    }

    #[test]
    fn unclaimed_reservations_become_one_hole_only_when_quiet() {
        let (m, g) = seg(4096);
        // Two dead reservations (nothing published), then a live claim.
        for _ in 0..2 {
            assert!(matches!(reserve(&m, &g, span(16), 1), Reserve::Ok { .. }));
        }
        let (off, idx) = claim(&m, &g, 1);
        assert_eq!(idx, 2);
        assert_eq!(step(&m, &g, 0, 0), Ok(Step::Pending { word: 0, token: 0 }));
        // A live writer between reservation and claim: wait.
        assert_eq!(
            resolve(&m, &g, 0, 0, || Ok::<_, ()>(false)),
            Ok(Ok(Resolved::Busy))
        );
        assert_eq!(
            resolve(&m, &g, 0, 0, || Ok::<_, ()>(true)),
            Ok(Ok(Resolved::Done))
        );
        assert_eq!(
            step(&m, &g, 0, 0),
            Ok(Step::Skip {
                span: off,
                next_idx: 2
            })
        );
        // The live claim after the hole is untouched.
        assert!(commit(&m, &g, off, idx, 1, 0));
        assert_eq!(step(&m, &g, off, 2), Ok(Step::Record { len: 1, idx: 2 }));
    }

    #[test]
    fn a_hole_up_to_the_tail_names_the_next_index() {
        let (m, g) = seg(4096);
        assert!(matches!(reserve(&m, &g, span(0), 1), Reserve::Ok { .. }));
        assert_eq!(
            resolve(&m, &g, 0, 0, || Ok::<_, ()>(true)),
            Ok(Ok(Resolved::Done))
        );
        assert_eq!(
            step(&m, &g, 0, 0),
            Ok(Step::Skip {
                span: span(0),
                next_idx: 1
            })
        );
        let (off, idx) = claim(&m, &g, 0);
        assert_eq!((off, idx), (span(0), 1));
    }

    #[test]
    fn the_first_reservation_that_does_not_fit_closes_the_segment() {
        let (m, g) = seg(4096);
        let big = (g.usable() - HDR - 100) as u32;
        let (off, idx) = claim(&m, &g, big);
        assert!(commit(&m, &g, off, idx, big, 0));
        let closer = reserve(&m, &g, span(200), 1);
        assert_eq!(
            closer,
            Reserve::Closer {
                off: span(u64::from(big)),
                idx: 1
            }
        );
        // A racer past the end only rolls.
        assert_eq!(reserve(&m, &g, span(8), 1), Reserve::Full);
        assert!(close(&m, &g, span(u64::from(big)), 1));
        assert_eq!(ended(&m), Some(1));
        assert_eq!(
            step(&m, &g, span(u64::from(big)), 1),
            Ok(Step::End { count: 1 })
        );
    }

    #[test]
    fn a_dead_closer_is_replaced_by_whoever_repairs() {
        let (m, g) = seg(4096);
        let (off, idx) = claim(&m, &g, 8);
        assert!(commit(&m, &g, off, idx, 8, 0));
        // A dead reservation that fits, then a dead closer.
        assert!(matches!(reserve(&m, &g, span(8), 1), Reserve::Ok { .. }));
        assert!(matches!(
            reserve(&m, &g, g.usable(), 1),
            Reserve::Closer { .. }
        ));
        let at = span(8);
        assert_eq!(
            resolve(&m, &g, at, 1, || Ok::<_, ()>(true)),
            Ok(Ok(Resolved::Done))
        );
        assert_eq!(step(&m, &g, at, 1), Ok(Step::End { count: 1 }));
        assert_eq!(ended(&m), Some(1));
    }

    #[test]
    fn garbage_words_are_violations_not_panics() {
        let (m, g) = seg(4096);
        for w in [
            BAD_WORD,
            word(COMMITTED, 5, 1),
            word(COMMITTED, 0, u32::MAX),
            word(HOLE, 0, 8),
            word(HOLE, 3, 7),
            word(ENDED, 1, 0),
            word(6, 0, 0),
            1,
        ] {
            m.store(g.at(0), w, Relaxed);
            m.store(TAIL, 64, Relaxed);
            assert!(step(&m, &g, 0, 0).is_err(), "{w:#x}");
        }
        assert!(step(&m, &g, 3, 0).is_err());
        assert!(step(&m, &g, g.capacity, 0).is_err());
        // An unclaimed reservation followed by garbage.
        let (m, g) = seg(4096);
        m.store(TAIL, 256, Relaxed);
        m.store(g.at(64), 12345, Relaxed);
        assert!(matches!(
            resolve(&m, &g, 0, 0, || Ok::<_, ()>(true)),
            Ok(Err(_))
        ));
    }

    #[test]
    fn batches_get_consecutive_indexes() {
        let (m, g) = seg(4096);
        let total = span(1) + span(2) + span(3);
        assert_eq!(reserve(&m, &g, total, 3), Reserve::Ok { off: 0, idx: 0 });
        assert_eq!(tail_parts(m.load(TAIL, Relaxed)), (total, 3));
    }

    /// Writers and a reader on real threads (run under Miri with many
    /// seeds): every record read once, whole, in reservation order, each
    /// writer's in its order.
    #[test]
    fn threads_append_and_read_in_one_order() {
        let (m, g) = seg(4096);
        let per = if cfg!(miri) { 6 } else { 40 };
        std::thread::scope(|s| {
            for w in 0..2u64 {
                let (m, g) = (&m, &g);
                s.spawn(move || {
                    for i in 0..per {
                        pending_add(m, w as u32, 1);
                        let Reserve::Ok { off, idx } = reserve(m, g, span(8), 1) else {
                            panic!("no room");
                        };
                        assert!(publish_claim(m, g, off, idx, 8, 1 << 10 | w, idx, 0));
                        pending_add(m, w as u32, u64::MAX);
                        m.store(g.at(off) + HDR, w << 32 | i, Relaxed);
                        assert!(commit(m, g, off, idx, 8, 0));
                    }
                });
            }
            let (mut p, mut idx) = (0, 0);
            let mut next = [0u64; 2];
            while idx < 2 * per {
                match step(&m, &g, p, idx).unwrap() {
                    Step::Record { len, .. } => {
                        let v = m.load(g.at(p) + HDR, Relaxed);
                        let (w, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                        assert_eq!(i, next[w]);
                        next[w] += 1;
                        p += span(u64::from(len));
                        idx += 1;
                    }
                    Step::Pending { .. } | Step::Empty => std::thread::yield_now(),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(next, [per, per]);
        });
    }
}

//! The position protocol of the single-producer single-consumer ring,
//! independent of where its words and bytes live (so loom and Miri can run
//! it over heap memory).
//!
//! # Positions
//!
//! Positions are byte offsets into the stream that only grow (64 bits:
//! they do not wrap in the life of any machine); the ring offset of a
//! position is `pos % capacity`. Three are shared:
//!
//! - `write`: the end of the committed records, stored by the producer
//!   after each commit. The consumer never needs it (the records say
//!   whether they are committed); it is there for a restarting producer,
//!   for `mapshare info` and for `pending_bytes`.
//! - `read`: the consumer's *released* position, stored on every release.
//!   A restarted consumer resumes here, so it re-delivers only records it
//!   had not released. The producer loads it only just before it parks.
//! - `space`: `read` as published to the producer, **lazily**: when
//!   enough bytes were released since the last publication
//!   ([`publish_every`]), when the consumer finds the ring empty, or when
//!   the producer sleeps. A producer that finds the ring full spins on this
//!   word, so the consumer's per-record store of `read` stays on a line
//!   nobody else reads.
//!
//! Invariants, checked on every load of the *other* side's position,
//! because the other side is another program: multiples of 8; `read <=
//! write <= read + capacity`; `write <= MAX_POSITION` (2^63), so that no
//! sum of a position and a record size can overflow.
//!
//! # Records, and the commit inside each
//!
//! A record is an 8-byte header word followed by its payload, padded to a
//! multiple of 8, never split across the end of the ring: a record that
//! does not fit in the space left before the end is preceded by a *pad*
//! covering that space. The header word (native `u64`, always accessed
//! atomically) is:
//!
//! | bits | field |
//! |---|---|
//! | 0..32 | payload length (pads: the bytes they cover, less 8) |
//! | 32..60 | bits 3..31 of the record's own position (a header written for another position within 2 GiB of this one cannot pass) |
//! | 60..64 | kind: `0xD` data, `0xA` pad |
//!
//! A header word of 0 ([`EMPTY`]) means "nothing committed here yet".
//! The producer writes the payload, then **clears the header slot just
//! after the record**, then stores the record's header with release
//! order: that store is the commit. A consumer loads the header at its
//! position with acquire order: a non-empty header is a complete record,
//! and (because of the clear, which happens-before the commit) the slot
//! after it holds either [`EMPTY`] or a later commit, never a header or
//! payload bytes from an earlier lap. So the consumer reads one cache line
//! per small record, and never the producer's `write`.
//!
//! The clear needs the slot after the record to be free: a record of
//! `size` bytes needs `size + 8` free bytes ([`room`]), so at most
//! `capacity - 8` bytes are ever pending.
//!
//! After each publish the producer also zeroes one word per cache line of
//! the free space just ahead ([`Ring::clear_ahead`]). The protocol does
//! not rely on it (a zero is an empty slot); it is there so that the next
//! records go into lines the producer's core already holds.
//!
//! A producer killed mid-write leaves nothing visible (its header slot is
//! still [`EMPTY`]). One killed between a commit and its store of `write`
//! leaves `write` behind the last commit; the next producer walks the
//! committed headers from `write` to the first empty slot
//! ([`Ring::recover_write`]).
//!
//! # Waiting
//!
//! The consumer spins, then parks on the data event, re-checking the
//! header at its position; the producer spins on `space`, then parks on
//! the space event, re-checking the durable `read`. Each side's notify
//! costs what its [`Fences`] charge: with the asymmetric pair, a compiler
//! fence and a plain load per record; the heavy half (`membarrier`) is
//! paid by the side about to sleep.

use std::sync::atomic::Ordering::{self, Acquire, Relaxed, Release};

use crate::sync::{Fences, Park, RawEvent, Word, Word64};

/// Bytes of a record header.
pub const HEADER: u64 = 8;
/// The header word of a slot where nothing is committed.
pub const EMPTY: u64 = 0;
/// Header kind: data.
pub const DATA: u32 = 0xD;
/// Header kind: padding to the end of the ring.
pub const PAD: u32 = 0xA;
/// Bits of the position kept in a header word.
const POS_MASK: u32 = 0x0FFF_FFFF;
/// How far past the end of its last record the producer keeps the ring's
/// lines taken at least ([`Ring::clear_ahead`]): twice the last record,
/// from this much up to [`CLEAR_AHEAD_MAX`].
pub const CLEAR_AHEAD: u64 = 256;
/// How far at most (a large record's lines are taken by its own copy).
pub const CLEAR_AHEAD_MAX: u64 = 1024;
/// A cache line: the stride of [`Ring::clear_ahead`]'s stores.
pub const LINE: u64 = 64;

/// The ring offset of position `pos`: `pos % capacity`, with a mask
/// instead of a division when the capacity is a power of two (a division
/// costs tens of cycles, several times per record).
#[inline]
pub fn offset(pos: u64, capacity: u64) -> u64 {
    if capacity.is_power_of_two() {
        pos & (capacity - 1)
    } else {
        pos % capacity
    }
}

/// The first multiple of `line` (a power of two) after `pos`.
#[inline]
fn next_line(pos: u64, line: u64) -> u64 {
    (pos | (line - 1)) + 1
}

/// Free bytes a write of `bytes` (records and pads) needs: those, and the
/// header slot after them, which the commit clears.
#[inline]
pub fn room(bytes: u64) -> u64 {
    bytes + HEADER
}

/// Bytes a record of `len` payload bytes occupies.
#[inline]
pub fn record_size(len: u64) -> u64 {
    HEADER + len.div_ceil(8) * 8
}

/// The header word of a record of `kind` with `len` (payload bytes, or
/// for a pad the bytes it covers less 8) at position `pos`.
#[inline]
pub fn header(kind: u32, len: u32, pos: u64) -> u64 {
    let mark = kind << 28 | ((pos >> 3) as u32 & POS_MASK);
    u64::from(mark) << 32 | u64::from(len)
}

/// Splits a header word into `(kind, len, position bits)`.
#[inline]
pub fn parse_header(word: u64) -> (u32, u32, u32) {
    let mark = (word >> 32) as u32;
    (mark >> 28, word as u32, mark & POS_MASK)
}

/// Positions never exceed this (2^63 bytes: 290 years at 1 GB/s). Every
/// sum of a position and a record size (at most 2^32 + 8) then fits in a
/// `u64`, so a position near `u64::MAX` written by a hostile peer is a
/// [`Violation`], never an overflow.
pub const MAX_POSITION: u64 = 1 << 63;

/// How many released bytes the consumer keeps to itself before it
/// publishes them to the producer (besides the other occasions, see the
/// module docs): a quarter of the ring, so a producer that waits for
/// space gets it in large pieces, and a line the producer spins on is
/// written four times a lap.
#[inline]
pub fn publish_every(capacity: u64) -> u64 {
    capacity / 4
}

/// Checks one position read from shared memory: a multiple of 8, at most
/// `MAX_POSITION`.
#[inline]
pub fn check_position(pos: u64) -> Result<(), Violation> {
    if !pos.is_multiple_of(8) || pos > MAX_POSITION {
        return Err(Violation(format!(
            "position {pos} is not a multiple of 8 below 2^63"
        )));
    }
    Ok(())
}

/// Checks a (read, write) pair read from shared memory against a ring of
/// `capacity` bytes: multiples of 8, `read <= write <= read + capacity`,
/// `write <= MAX_POSITION`.
#[inline]
pub fn check_positions(read: u64, write: u64, capacity: u64) -> Result<(), Violation> {
    if !(read | write).is_multiple_of(8)
        || read > write
        || write - read > capacity
        || write > MAX_POSITION
    {
        return Err(Violation(format!(
            "positions read {read} / write {write} do not fit a ring of {capacity} bytes \
             (multiples of 8, read <= write <= read + capacity, write <= 2^63)"
        )));
    }
    Ok(())
}

/// Validates the header `word` found at position `read` of a ring of
/// `capacity` bytes (see [`Ring::next`]).
#[inline]
pub fn parse(capacity: u64, word: u64, read: u64, limit: u64) -> Result<Next, Violation> {
    let at = offset(read, capacity);
    let (kind, len, mark) = parse_header(word);
    if mark != (read >> 3) as u32 & POS_MASK {
        return Err(Violation(format!(
            "the header at {read} ({word:#018x}) belongs to another position"
        )));
    }
    let next = match kind {
        PAD => {
            let size = capacity - at;
            if u64::from(len) != size - HEADER {
                return Err(Violation(format!(
                    "pad at {read} claims {len} bytes; {size} remain to the end"
                )));
            }
            Next::Pad { size }
        }
        DATA => {
            let size = record_size(u64::from(len));
            if len == 0 || at + size > capacity {
                return Err(Violation(format!(
                    "record at {read} claims {len} bytes; {} to the end of the ring",
                    capacity - at
                )));
            }
            Next::Record {
                at: at + HEADER,
                len,
                size,
            }
        }
        other => {
            return Err(Violation(format!(
                "the header at {read} has kind {other:#x}, neither data nor pad"
            )))
        }
    };
    if read + next.size() > limit {
        return Err(Violation(format!(
            "the record at {read} ({} bytes) runs past what the consumer may read ({limit})",
            next.size()
        )));
    }
    Ok(next)
}

/// [`parse`], kept out of the consumer's hot path.
#[cold]
#[inline(never)]
fn parse_cold(capacity: u64, word: u64, read: u64, limit: u64) -> Result<Next, Violation> {
    parse(capacity, word, read, limit)
}

/// The ring's bytes: reads and writes of ranges that the caller guarantees
/// lie within `0..capacity`, and atomic header words at 8-aligned offsets.
pub trait Bytes {
    /// Copies `buf.len()` bytes from ring offset `at`.
    fn read(&self, at: u64, buf: &mut [u8]);
    /// Copies `data` to ring offset `at`.
    fn write(&self, at: u64, data: &[u8]);
    /// Loads the header word at `at` (8-aligned) with acquire order.
    fn load_header(&self, at: u64) -> u64;
    /// Stores the header word at `at` (8-aligned) with `order`.
    fn store_header(&self, at: u64, word: u64, order: Ordering);
    /// Zeroes the 8-byte word at ring offset `at` (8-aligned): free space
    /// the producer clears ahead of itself ([`Ring::clear_ahead`]).
    fn zero_word(&self, at: u64);
}

/// What the consumer found at its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Padding of `size` bytes to skip.
    Pad {
        /// Bytes to skip.
        size: u64,
    },
    /// A record: payload at ring offset `at`, `len` bytes, `size` in all.
    Record {
        /// Ring offset of the payload.
        at: u64,
        /// Payload length.
        len: u32,
        /// Bytes the record occupies, header included.
        size: u64,
    },
}

impl Next {
    /// Bytes the record or pad occupies.
    #[inline]
    pub fn size(&self) -> u64 {
        match *self {
            Next::Pad { size } | Next::Record { size, .. } => size,
        }
    }
}

/// A violated invariant: what the shared state says that cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

/// The ring: three positions, two events, the bytes, and the capacity
/// (which comes from the checksummed header, never from shared memory).
pub struct Ring<'a, P: Word64, W: Word, D: Bytes> {
    /// End of the committed records (producer stores).
    pub write: &'a P,
    /// Released position, durable (consumer stores on every release).
    pub read: &'a P,
    /// Released position as published to the producer (lazily).
    pub space: &'a P,
    /// The consumer sleeps here; the producer notifies after a commit.
    pub data_event: RawEvent<'a, W>,
    /// The producer sleeps here; the consumer notifies after publishing.
    pub space_event: RawEvent<'a, W>,
    /// The ring's bytes.
    pub bytes: &'a D,
    /// Capacity in bytes, a multiple of 8.
    pub capacity: u64,
    /// Bytes between the stores of [`Ring::clear_ahead`]: a cache line
    /// ([`LINE`]) over a mapping, where one store takes the line; models
    /// use 8, so that every free word ahead is zeroed, and a zeroing of a
    /// word the consumer may still read fails them.
    pub line: u64,
}

impl<P: Word64, W: Word, D: Bytes> Ring<'_, P, W, D> {
    /// Largest payload a record may carry: the ring less its header and
    /// the slot after it.
    pub fn max_record(&self) -> u64 {
        self.capacity - 2 * HEADER
    }

    /// Checks a (read, write) pair read from shared memory.
    #[inline]
    pub fn check(&self, read: u64, write: u64) -> Result<(), Violation> {
        check_positions(read, write, self.capacity)
    }

    /// Producer: the position the consumer published (the spinning
    /// check), loaded and validated; `known` is the newest released
    /// position the producer has seen, which this never goes below (the
    /// published position lags the durable one).
    #[inline]
    pub fn load_space(&self, write: u64, known: u64) -> Result<u64, Violation> {
        self.newer(self.space.load(Acquire), write, known)
    }

    /// Producer: the consumer's durable released position (the check
    /// before parking, which pairs with the consumer's check for sleepers
    /// after each release), loaded and validated as in
    /// [`Ring::load_space`].
    #[inline]
    pub fn load_read(&self, write: u64, known: u64) -> Result<u64, Violation> {
        self.newer(self.read.load(Acquire), write, known)
    }

    /// `max(loaded, known)`, where `loaded` is a released position read
    /// from shared memory: a multiple of 8, never past our `write` (and
    /// `known` is within a ring of it, by the producer's own accounting).
    #[inline]
    fn newer(&self, loaded: u64, write: u64, known: u64) -> Result<u64, Violation> {
        if !loaded.is_multiple_of(8) || loaded > write {
            return Err(Violation(format!(
                "released position {loaded} is not a multiple of 8 at most the write position {write}"
            )));
        }
        Ok(loaded.max(known))
    }

    /// Producer: bytes of padding needed before a record of `size` bytes at
    /// position `write` (0 if it fits before the end of the ring).
    #[inline]
    pub fn pad_before(&self, write: u64, size: u64) -> u64 {
        let tail = self.capacity - offset(write, self.capacity);
        if size <= tail {
            0
        } else {
            tail
        }
    }

    /// Producer: commits `size` bytes at `pos` under `header`: clears the
    /// slot after them, then stores the header with release order. The
    /// caller checked that the bytes and the slot after them are free.
    #[inline]
    fn commit(&self, pos: u64, size: u64, header: u64) {
        self.bytes
            .store_header(offset(pos + size, self.capacity), EMPTY, Relaxed);
        self.bytes
            .store_header(offset(pos, self.capacity), header, Release);
    }

    /// Producer: commits a pad at `write` covering `pad` bytes (to the end
    /// of the ring).
    #[inline]
    pub fn commit_pad(&self, write: u64, pad: u64) {
        self.commit(write, pad, header(PAD, (pad - HEADER) as u32, write));
    }

    /// Producer: commits the `len`-byte record at `write`, whose payload is
    /// written.
    #[inline]
    pub fn commit_record(&self, write: u64, len: u32) {
        self.commit(write, record_size(u64::from(len)), header(DATA, len, write));
    }

    /// Producer, in a run of records committed together: stores the
    /// header of the `len`-byte record at `write` without committing
    /// anything (the run's first header, stored last, does; see
    /// [`Ring::commit_run`]).
    #[inline]
    pub fn write_header(&self, write: u64, len: u32) {
        self.bytes.store_header(
            offset(write, self.capacity),
            header(DATA, len, write),
            Relaxed,
        );
    }

    /// Producer: commits the run of records from `start` to `end` whose
    /// later headers were stored with [`Ring::write_header`]: clears the
    /// slot at `end`, then stores the first header (`len` bytes) with
    /// release order. A consumer that sees it sees the whole run.
    #[inline]
    pub fn commit_run(&self, start: u64, len: u32, end: u64) {
        self.bytes
            .store_header(offset(end, self.capacity), EMPTY, Relaxed);
        self.bytes.store_header(
            offset(start, self.capacity),
            header(DATA, len, start),
            Release,
        );
    }

    /// Producer, after publishing records that end at `end` (`last`
    /// bytes of them in its last commit): takes the lines of the free
    /// space ahead, so that the next records are written into lines this
    /// core already holds. It zeroes one word per [`Ring::line`], from
    /// the line after the one `end` is in up to twice `last` past `end`
    /// (at least [`CLEAR_AHEAD`], at most [`CLEAR_AHEAD_MAX`]), in chunks
    /// of at least half that distance: `cleared` is where the last call
    /// stopped, and the return value is the next call's. It never zeroes
    /// at or past `free_end` (the released position the producer knows,
    /// plus the capacity: below that, nothing the consumer may still read
    /// lies ahead of `end`).
    ///
    /// The protocol relies on none of it (a zero is an empty slot, and
    /// each commit still clears the slot after its record). It takes work
    /// off the path of the next record: otherwise the commit waits until
    /// this core has taken each line of the record, and the consumer,
    /// polling the first, takes that one back meanwhile. Measured
    /// (docs/benchmarks.md): one-way 64-byte latency 100–115 → 75–90 ns,
    /// 64-byte records per `send` 0.72–0.81 → 1.01–1.29 of rtrb.
    #[inline]
    pub fn clear_ahead(&self, cleared: u64, end: u64, free_end: u64, last: u64) -> u64 {
        let ahead = (2 * last).clamp(CLEAR_AHEAD, CLEAR_AHEAD_MAX);
        if cleared >= end + ahead / 2 {
            // Far enough: small records take lines in chunks, not a
            // word per record.
            return cleared;
        }
        self.zero_ahead(cleared, end, (end + ahead).min(free_end))
    }

    #[cold]
    fn zero_ahead(&self, cleared: u64, end: u64, to: u64) -> u64 {
        // From the line after the one `end` is in: that line holds the
        // next header, which the consumer polls; a store there now would
        // take it from the consumer still reading the record just
        // published. One word per line is enough to take the line.
        let from = cleared.max(next_line(end, self.line));
        if from >= to {
            // Nothing free there yet (found in review: returning `from`
            // would skip those lines once they are).
            return cleared;
        }
        let mut at = from;
        while at < to {
            self.bytes.zero_word(offset(at, self.capacity));
            at = next_line(at, self.line);
        }
        at
    }

    /// Producer: stores `write` (for restarts and observers) and wakes the
    /// consumer if it sleeps.
    #[inline]
    pub fn publish(&self, write: u64, park: &impl Park<W>, fences: &impl Fences) {
        self.write.store(write, Release);
        self.data_event.notify_if_sleeping(1, park, fences);
    }

    /// Consumer: the record or pad at `read`, or `None` if nothing is
    /// committed there yet. `limit` is where the bytes the consumer may
    /// read end (its released position plus the capacity): a header that
    /// claims more is a [`Violation`], as is one whose kind, length or
    /// position mark is wrong.
    #[inline]
    pub fn next(&self, read: u64, limit: u64) -> Result<Option<Next>, Violation> {
        let at = offset(read, self.capacity);
        let word = self.bytes.load_header(at);
        if word == EMPTY {
            return Ok(None);
        }
        // The common case in a few instructions: a data record of its own
        // position that fits the ring and the limit. The same checks as
        // `parse`'s for it; anything else (pads, and every violation with
        // its message) is left to `parse`, out of line.
        let (kind, len, mark) = parse_header(word);
        let size = record_size(u64::from(len));
        if kind == DATA
            && mark == (read >> 3) as u32 & POS_MASK
            && len != 0
            && at + size <= self.capacity
            && read + size <= limit
        {
            return Ok(Some(Next::Record {
                at: at + HEADER,
                len,
                size,
            }));
        }
        parse_cold(self.capacity, word, read, limit).map(Some)
    }

    /// Consumer, about to wait: polls the header word at `read` up to
    /// `polls` times, with a pause between; whether something was
    /// committed there (the caller reads it with [`Ring::next`]).
    #[inline]
    pub fn poll(&self, read: u64, polls: u32) -> bool {
        let at = offset(read, self.capacity);
        for _ in 0..polls {
            if self.bytes.load_header(at) != EMPTY {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Producer, when it attaches: the end of the committed records, found
    /// by walking the headers from `write` (the position stored last) to
    /// the first empty slot. `read` is the consumer's durable position.
    /// At most `capacity / 8` steps.
    pub fn recover_write(&self, write: u64, read: u64) -> Result<u64, Violation> {
        if !(read | write).is_multiple_of(8) || read > MAX_POSITION || write > MAX_POSITION {
            return Err(Violation(format!(
                "positions read {read} / write {write} are not multiples of 8 below 2^63"
            )));
        }
        let limit = read + self.capacity - HEADER;
        if write > limit || read - write.min(read) > self.capacity {
            return Err(Violation(format!(
                "write {write} is more than a ring away from read {read}"
            )));
        }
        let mut end = write;
        while let Some(next) = self.next(end, limit)? {
            end += next.size();
        }
        if end < read {
            return Err(Violation(format!(
                "the records end at {end}, before the consumer's position {read}"
            )));
        }
        Ok(end)
    }

    /// Consumer: stores the durable released position (every release).
    #[inline]
    pub fn release(&self, read: u64) {
        self.read.store(read, Release);
    }

    /// Consumer, after [`Ring::release`]: whether the producer may be
    /// asleep waiting for space (then publish now).
    #[inline]
    pub fn producer_sleeping(&self, fences: &impl Fences) -> bool {
        fences.sleepers_present(self.space_event.sleepers)
    }

    /// Consumer: publishes `read` to the producer and wakes it if it
    /// sleeps.
    #[inline]
    pub fn publish_space(&self, read: u64, park: &impl Park<W>, fences: &impl Fences) {
        self.space.store(read, Release);
        self.space_event.notify_if_sleeping(1, park, fences);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fence::Symmetric;
    use crate::sync::testing::{HeapPark, ModelAsymmetric};
    use crate::sync::Spin;
    use std::sync::atomic::{AtomicU32, AtomicU64};

    /// Heap words shared by two threads. Everything is accessed as
    /// 8-byte atomics (payload bytes with relaxed order), so the ordering
    /// under test is the protocol's release/acquire on the header words:
    /// Miri's weak-memory emulation hands a relaxed load any store the
    /// protocol does not order before it, and a wrong payload fails the
    /// test. (Plain payload copies, as in the mapping, would mix atomic and
    /// non-atomic accesses to one location across laps, which Miri's
    /// weak-memory emulation does not support.)
    struct Heap {
        words: Vec<AtomicU64>,
    }

    impl Heap {
        fn new(len: usize) -> Heap {
            Heap {
                words: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
            }
        }
        fn word(&self, at: u64) -> &AtomicU64 {
            assert!(at.is_multiple_of(8));
            &self.words[at as usize / 8]
        }
    }

    impl Bytes for Heap {
        fn read(&self, at: u64, buf: &mut [u8]) {
            for (i, chunk) in buf.chunks_mut(8).enumerate() {
                let w = self.word(at + 8 * i as u64).load(Relaxed).to_ne_bytes();
                chunk.copy_from_slice(&w[..chunk.len()]);
            }
        }
        fn write(&self, at: u64, data: &[u8]) {
            for (i, chunk) in data.chunks(8).enumerate() {
                let word = self.word(at + 8 * i as u64);
                let mut w = word.load(Relaxed).to_ne_bytes();
                w[..chunk.len()].copy_from_slice(chunk);
                word.store(u64::from_ne_bytes(w), Relaxed);
            }
        }
        fn load_header(&self, at: u64) -> u64 {
            self.word(at).load(Acquire)
        }
        fn store_header(&self, at: u64, word: u64, order: Ordering) {
            self.word(at).store(word, order)
        }
        fn zero_word(&self, at: u64) {
            self.word(at).store(0, Relaxed);
        }
    }

    struct Words {
        write: AtomicU64,
        read: AtomicU64,
        space: AtomicU64,
        ev: [AtomicU32; 4],
    }

    fn ring<'a>(
        w: &'a Words,
        bytes: &'a Heap,
        capacity: u64,
    ) -> Ring<'a, AtomicU64, AtomicU32, Heap> {
        Ring {
            write: &w.write,
            read: &w.read,
            space: &w.space,
            data_event: RawEvent {
                seq: &w.ev[0],
                sleepers: &w.ev[1],
            },
            space_event: RawEvent {
                seq: &w.ev[2],
                sleepers: &w.ev[3],
            },
            bytes,
            capacity,
            line: 8,
        }
    }

    fn words() -> Words {
        Words {
            write: AtomicU64::new(0),
            read: AtomicU64::new(0),
            space: AtomicU64::new(0),
            ev: Default::default(),
        }
    }

    /// Producer and consumer threads stream variable-length records through
    /// a tiny ring with both kinds of fences, the consumer publishing its
    /// position lazily as the queue does; every record arrives intact, in
    /// order, and nothing waits forever.
    #[test]
    fn stream_through_a_small_ring() {
        stream(&Symmetric);
        stream(&ModelAsymmetric);
    }

    fn stream(fences: &(impl Fences + Sync)) {
        const CAP: u64 = 64;
        let w = words();
        let heap = Heap::new(CAP as usize);
        let park = HeapPark::default();
        let n: u32 = if cfg!(miri) { 40 } else { 20_000 };
        let spin = Spin::for_duration(std::time::Duration::from_micros(5));
        std::thread::scope(|s| {
            s.spawn(|| {
                let r = ring(&w, &heap, CAP);
                let mut write = 0u64;
                let mut seen = 0u64;
                // As the producer does after each publish: what is free
                // ahead is zeroed (the consumer must never see it).
                let mut cleared = 0u64;
                let need = |write: u64, bytes: u64, seen: &mut u64| {
                    let need = room(bytes);
                    let fits = |read: u64| CAP - (write - read) >= need;
                    if fits(*seen) {
                        return;
                    }
                    let known = *seen;
                    let space = || r.load_space(write, known).unwrap();
                    if crate::sync::spin_until(spin, None, || fits(space())) {
                        *seen = space();
                        return;
                    }
                    r.space_event.wait_until(
                        || fits(r.load_read(write, known).unwrap()),
                        None,
                        &park,
                        fences,
                    );
                    *seen = r.load_read(write, known).unwrap();
                };
                for i in 0..n {
                    let len = 1 + (i as u64 * 7) % 40;
                    let size = record_size(len);
                    let pad = r.pad_before(write, size);
                    if pad + size + HEADER > CAP {
                        need(write, pad, &mut seen);
                        r.commit_pad(write, pad);
                        write += pad;
                        r.publish(write, &park, fences);
                    } else if pad > 0 {
                        need(write, pad + size, &mut seen);
                        r.commit_pad(write, pad);
                        write += pad;
                    }
                    need(write, size, &mut seen);
                    let payload: Vec<u8> = (0..len).map(|j| (i as u64 + j) as u8).collect();
                    r.bytes.write(write % CAP + HEADER, &payload);
                    r.commit_record(write, len as u32);
                    write += size;
                    r.publish(write, &park, fences);
                    cleared = r.clear_ahead(cleared, write, seen + CAP, size);
                }
            });
            let r = ring(&w, &heap, CAP);
            let (mut read, mut published) = (0u64, 0u64);
            let mut i = 0u32;
            while i < n {
                let found = match r.next(read, read + CAP).unwrap() {
                    Some(next) => next,
                    None => {
                        if published != read {
                            published = read;
                            r.publish_space(read, &park, fences);
                        }
                        // As the consumer waits: its header word alone
                        // first, then the general spin and park.
                        let arrived = || r.next(read, read + CAP).unwrap().is_some();
                        if r.poll(read, 4) {
                            continue;
                        }
                        if !crate::sync::spin_until(spin, None, arrived) {
                            r.data_event.wait_until(arrived, None, &park, fences);
                        }
                        continue;
                    }
                };
                match found {
                    Next::Pad { size } => read += size,
                    Next::Record { at, len, size } => {
                        let expect_len = 1 + (i as u64 * 7) % 40;
                        assert_eq!(u64::from(len), expect_len);
                        let mut buf = vec![0u8; len as usize];
                        r.bytes.read(at, &mut buf);
                        let expect: Vec<u8> =
                            (0..expect_len).map(|j| (i as u64 + j) as u8).collect();
                        assert_eq!(buf, expect);
                        read += size;
                        i += 1;
                    }
                }
                r.release(read);
                if read - published >= publish_every(CAP) || r.producer_sleeping(fences) {
                    published = read;
                    r.publish_space(read, &park, fences);
                }
            }
        });
    }

    /// Runs of records committed together (as `send_batch` does): the
    /// consumer sees each run whole or not at all, in order, across laps
    /// and pads.
    #[test]
    fn runs_become_visible_together() {
        const CAP: u64 = 128;
        let w = words();
        let heap = Heap::new(CAP as usize);
        let park = HeapPark::default();
        let fences = ModelAsymmetric;
        let n: u32 = if cfg!(miri) { 30 } else { 20_000 };
        let spin = Spin::for_duration(std::time::Duration::from_micros(5));
        std::thread::scope(|s| {
            s.spawn(|| {
                let r = ring(&w, &heap, CAP);
                let (mut write, mut seen, mut cleared) = (0u64, 0u64, 0u64);
                let mut run: Option<(u64, u32)> = None;
                let mut i = 0u32;
                while i < n {
                    let len = 8 + (i as u64 % 3) * 8;
                    let size = record_size(len);
                    let pad = r.pad_before(write, size);
                    let need = room(pad + size);
                    if run.is_some() && (CAP - (write - seen) < need || i.is_multiple_of(4)) {
                        let (start, l) = run.take().unwrap();
                        r.commit_run(start, l, write);
                        r.publish(write, &park, &fences);
                        cleared = r.clear_ahead(cleared, write, seen + CAP, write - start);
                    }
                    while CAP - (write - seen) < need {
                        let fits = |read: u64| CAP - (write - read) >= need;
                        let space = || r.load_space(write, seen).unwrap();
                        if !crate::sync::spin_until(spin, None, || fits(space())) {
                            r.space_event.wait_until(
                                || fits(r.load_read(write, seen).unwrap()),
                                None,
                                &park,
                                &fences,
                            );
                        }
                        seen = r.load_read(write, seen).unwrap();
                    }
                    if pad > 0 {
                        r.commit_pad(write, pad);
                        write += pad;
                    }
                    r.bytes
                        .write(offset(write, CAP) + HEADER, &vec![i as u8; len as usize]);
                    match run {
                        Some(_) => r.write_header(write, len as u32),
                        None => run = Some((write, len as u32)),
                    }
                    write += size;
                    i += 1;
                }
                if let Some((start, l)) = run {
                    r.commit_run(start, l, write);
                    r.publish(write, &park, &fences);
                }
            });
            let r = ring(&w, &heap, CAP);
            let (mut read, mut published, mut i) = (0u64, 0u64, 0u32);
            while i < n {
                match r.next(read, read + CAP).unwrap() {
                    None => {
                        if published != read {
                            published = read;
                            r.publish_space(read, &park, &fences);
                        }
                        // As the consumer waits: its header word alone
                        // first, then the general spin and park.
                        let arrived = || r.next(read, read + CAP).unwrap().is_some();
                        if r.poll(read, 4) {
                            continue;
                        }
                        if !crate::sync::spin_until(spin, None, arrived) {
                            r.data_event.wait_until(arrived, None, &park, &fences);
                        }
                        continue;
                    }
                    Some(Next::Pad { size }) => read += size,
                    Some(Next::Record { at, len, size }) => {
                        assert_eq!(u64::from(len), 8 + (i as u64 % 3) * 8);
                        let mut buf = vec![0u8; len as usize];
                        r.bytes.read(at, &mut buf);
                        assert!(buf.iter().all(|&b| b == i as u8), "record {i}");
                        read += size;
                        i += 1;
                    }
                }
                r.release(read);
                if read - published >= publish_every(CAP) || r.producer_sleeping(&fences) {
                    published = read;
                    r.publish_space(read, &park, &fences);
                }
            }
        });
    }

    #[test]
    fn violations_are_reported() {
        const CAP: u64 = 64;
        let w = words();
        let heap = Heap::new(CAP as usize);
        let r = ring(&w, &heap, CAP);
        assert!(r.check(0, 72).is_err(), "more than a ring ahead");
        assert!(r.check(8, 0).is_err(), "write behind read");
        assert!(r.check(3, 8).is_err(), "unaligned");
        assert!(r.check(8, 16).is_ok());
        assert!(
            r.check(u64::MAX - 7, u64::MAX - 7).is_err(),
            "near u64::MAX"
        );
        assert!(r.check(MAX_POSITION - 8, MAX_POSITION).is_ok());
        assert!(r.check(MAX_POSITION, MAX_POSITION + 8).is_err());
        // Nothing committed yet.
        assert_eq!(r.next(0, CAP), Ok(None));
        // Garbage headers.
        heap.store_header(0, u64::MAX, Relaxed);
        assert!(r.next(0, CAP).is_err());
        heap.store_header(0, header(DATA, 100, 0), Relaxed);
        assert!(r.next(0, CAP).is_err(), "longer than the ring");
        heap.store_header(0, header(DATA, 16, 64), Relaxed);
        assert!(r.next(0, CAP).is_err(), "a header of the next lap");
        heap.store_header(0, header(DATA, 0, 0), Relaxed);
        assert!(r.next(0, CAP).is_err(), "an empty record");
        heap.store_header(0, header(7, 16, 0), Relaxed);
        assert!(r.next(0, CAP).is_err(), "neither data nor pad");
        r.commit_record(0, 16);
        assert!(r.next(0, 16).is_err(), "past what the consumer may read");
        assert_eq!(
            r.next(0, 24),
            Ok(Some(Next::Record {
                at: 8,
                len: 16,
                size: 24
            }))
        );
        assert_eq!(
            r.next(24, CAP),
            Ok(None),
            "the commit cleared the next slot"
        );
        r.commit_pad(48, 16);
        assert_eq!(r.next(48, 48 + CAP), Ok(Some(Next::Pad { size: 16 })));
        heap.store_header(48, header(PAD, 0, 48), Relaxed);
        assert!(r.next(48, 48 + CAP).is_err(), "pad not reaching the end");
    }

    /// A producer that died between a commit and its store of `write`:
    /// the next one finds the end of the records by their headers, and a
    /// walk over garbage stops with a violation.
    #[test]
    fn a_restarting_producer_finds_the_last_commit() {
        const CAP: u64 = 64;
        let w = words();
        let heap = Heap::new(CAP as usize);
        let r = ring(&w, &heap, CAP);
        r.commit_record(0, 8);
        r.commit_record(16, 20);
        assert_eq!(r.recover_write(0, 0), Ok(48));
        assert_eq!(r.recover_write(16, 0), Ok(48));
        assert_eq!(r.recover_write(48, 0), Ok(48));
        // The consumer already took both records.
        assert_eq!(r.recover_write(0, 48), Ok(48));
        heap.store_header(48, 0xdead_beef, Relaxed);
        assert!(r.recover_write(0, 0).is_err());
        assert!(r.recover_write(0, 1 << 40).is_err(), "read far ahead");
        assert!(r.recover_write(3, 0).is_err(), "unaligned");
    }

    /// `next`'s inline check of a data record and `parse` accept and
    /// refuse the same headers, with the same result, over every edge:
    /// data, pad and other kinds, lengths around the ring's end and the
    /// limit, the right position mark and a wrong one, at positions
    /// through two laps of rings whose capacity is a power of two and not.
    #[test]
    // Arithmetic on one thread, ~2 million cases: nothing for Miri to
    // find that the concurrent models do not cover, in hours.
    #[cfg_attr(miri, ignore)]
    fn next_agrees_with_parse() {
        let (lens, limits): (Vec<u32>, Vec<u64>) = ((0..90).collect(), (0..110).collect());
        for capacity in [64u64, 72] {
            let w = words();
            let heap = Heap::new(capacity as usize);
            let r = ring(&w, &heap, capacity);
            for read in (0..2 * capacity).step_by(8) {
                for kind in [DATA, PAD, 0x3] {
                    for len in lens.iter().copied().chain([u32::MAX]) {
                        for mark_pos in [read, read + 8, read + (1 << 31)] {
                            let word = header(kind, len, mark_pos);
                            heap.store_header(offset(read, capacity), word, Relaxed);
                            for limit in limits.iter().map(|l| read + l) {
                                let want = parse(capacity, word, read, limit).map(Some);
                                assert_eq!(
                                    r.next(read, limit),
                                    want,
                                    "capacity {capacity} read {read} word {word:#x} limit {limit}"
                                );
                            }
                        }
                    }
                }
            }
            heap.store_header(0, EMPTY, Relaxed);
            assert_eq!(r.next(0, 0), Ok(None));
        }
    }

    /// `poll` sees a commit at the position it polls, and nothing else.
    #[test]
    fn poll_sees_only_its_own_slot() {
        const CAP: u64 = 64;
        let w = words();
        let heap = Heap::new(CAP as usize);
        let r = ring(&w, &heap, CAP);
        assert!(!r.poll(0, 3), "empty ring");
        r.commit_record(0, 8);
        assert!(!r.poll(16, 3), "the slot after the record");
        assert!(r.poll(0, 1));
        assert!(r.poll(CAP, 1), "the same slot a lap later");
        assert!(!r.poll(0, 0), "no polls, no look");
    }
}

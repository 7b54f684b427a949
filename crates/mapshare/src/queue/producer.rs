//! The writing end: [`Producer`], [`Grant`] and [`SendError`].

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::{Duration, Instant};

use super::ring::{self, record_size, HEADER};
use super::{open_existing, open_or_create, wait_ended, Role, Shared, Wait, Watch};
use crate::error::{Error, Result};
use crate::file::SharedFile;
use crate::sync::{Futex, Spin};

/// Why a send did not happen; carries the record back.
#[derive(Debug)]
pub enum SendError<T> {
    /// `try_send`: no space now.
    Full(T),
    /// The deadline passed.
    Timeout(T),
    /// The queue is full and the consumer of this producer's session is
    /// gone (it left, or died), so no one will make space.
    Disconnected(T),
    /// Anything else (the record is too large, corrupted shared state, the
    /// file was deleted, a forked child).
    Failed(Error, T),
}

impl<T> SendError<T> {
    /// The record that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(t)
            | SendError::Timeout(t)
            | SendError::Disconnected(t)
            | SendError::Failed(_, t) => t,
        }
    }
}

impl<T> std::fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full(_) => write!(f, "the queue is full"),
            SendError::Timeout(_) => write!(f, "timed out waiting for space in the queue"),
            SendError::Disconnected(_) => write!(f, "the consumer is gone and the queue is full"),
            SendError::Failed(e, _) => write!(f, "{e}"),
        }
    }
}

impl<T: std::fmt::Debug> std::error::Error for SendError<T> {}

/// The writing end of a queue.
///
/// Either end may start first. A producer with no consumer waits for space
/// when the ring is full; it reports `Disconnected` only when a consumer
/// of its session (live when it attached, or attached since) is gone. See
/// the [module docs](super) for the session rules.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::queue::{Consumer, Producer};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("q");
/// let mut tx = Producer::open_or_create(&path, 64 * 1024)?;
/// let mut rx = Consumer::open(&path)?;
///
/// let mut grant = tx.reserve(5)?;      // write in place...
/// grant.copy_from_slice(b"hello");
/// grant.commit();                      // ...and publish
/// tx.send(b"world").map_err(|e| e.to_string())?;
///
/// assert_eq!(&*rx.recv()?, b"hello");  // read in place, released on drop
/// assert_eq!(&*rx.recv()?, b"world");
/// drop(tx);                            // a clean end of the session:
/// assert!(matches!(rx.recv(), Err(mapshare::Error::Disconnected { .. })));
/// # Ok(()) }
/// ```
pub struct Producer {
    q: Shared,
    /// Our write position (authoritative; the shared copy is only stored).
    write: u64,
    /// The consumer's position as last loaded.
    read_cache: u64,
    /// Up to where the free space ahead of `write` was last taken (see
    /// `Ring::clear_ahead`).
    cleared: u64,
    spin: Spin,
    /// Our session number (the producer `sessions` word after our claim).
    session: u64,
    /// What we know of the consumers of our session.
    watch: Watch,
}

/// Space reserved for one record. Write it through `DerefMut`, then
/// [`Grant::commit`]; dropping it uncommitted publishes nothing.
///
/// The `&mut [u8]` points into the shared mapping. It is exclusive only
/// while the consumer follows the queue protocol (it never reads a
/// record's bytes before the record is committed); see "Soundness of in-place access" in the
/// [module docs](super).
pub struct Grant<'p> {
    producer: &'p mut Producer,
    at: u64,
    len: usize,
}

impl Producer {
    fn from_file(file: SharedFile) -> Result<Producer> {
        let a = Shared::attach(file, Role::Producer)?;
        Ok(Producer {
            q: a.q,
            write: a.write,
            read_cache: a.read,
            cleared: a.write,
            spin: Spin::default(),
            session: a.session,
            watch: a.watch,
        })
    }

    /// Opens the queue at `path` as its producer, creating it with
    /// `capacity` bytes if it does not exist.
    pub fn open_or_create(path: impl AsRef<Path>, capacity: u64) -> Result<Producer> {
        Producer::from_file(open_or_create(path, capacity)?)
    }

    /// Opens an existing queue as its producer.
    pub fn open(path: impl AsRef<Path>) -> Result<Producer> {
        Producer::from_file(open_existing(path)?)
    }

    /// Sets how long a blocked send spins before parking ([`Spin::NONE`]:
    /// park at once; a long spin: "busy mode").
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// Ring capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.q.capacity
    }

    /// Largest record payload (`capacity - 16`: the record's header and
    /// the slot after it, which each commit clears, take the rest). A
    /// record this large needs the whole ring: it goes through when the
    /// ring is empty and a consumer is attached to release the padding
    /// before it.
    pub fn max_record(&self) -> u64 {
        self.q.capacity - 2 * HEADER
    }

    /// The queue file.
    pub fn file(&self) -> &SharedFile {
        &self.q.file
    }

    /// After publishing: takes the free lines just ahead (see
    /// `Ring::clear_ahead`), up to what the consumer is known to have
    /// released.
    #[inline]
    fn clear_ahead(&mut self, last: u64) {
        let free_end = self.read_cache + self.q.capacity;
        self.cleared = self
            .q
            .ring()
            .clear_ahead(self.cleared, self.write, free_end, last);
    }

    #[inline]
    fn free(&self) -> u64 {
        self.q.capacity - (self.write - self.read_cache)
    }

    /// Waits until `bytes` (and the slot after them, see `ring`) are free
    /// at our position (and, if `need_consumer`, a live consumer is
    /// attached). Spins on the position the consumer publishes; before
    /// parking, checks its durable position (which pairs with the
    /// consumer's check for a sleeping producer). `Ok(false)` if `wait`
    /// ran out.
    #[inline]
    fn make_room(&mut self, bytes: u64, wait: Wait, need_consumer: bool) -> Result<bool> {
        let need = ring::room(bytes);
        if self.free() >= need && !need_consumer {
            return Ok(true);
        }
        let q = &self.q;
        let ring = q.ring();
        let (write, cap) = (self.write, q.capacity);
        let seen = Cell::new(self.read_cache);
        let ok = q.wait_for(
            &ring.space_event,
            self.spin,
            wait,
            Role::Consumer,
            &mut self.watch,
            |parking| {
                let loaded = if parking {
                    ring.load_read(write, seen.get())
                } else {
                    ring.load_space(write, seen.get())
                };
                let r = loaded.map_err(|v| q.corrupted(v))?;
                seen.set(r);
                Ok(cap - (write - r) >= need && (!need_consumer || q.peer_live(Role::Consumer)?))
            },
        );
        self.read_cache = seen.get();
        ok
    }

    /// Makes room for a `len`-byte record per `wait`; its position, or
    /// `None` if `wait` ran out.
    #[inline(always)]
    fn reserve_inner(&mut self, len: usize, wait: Wait) -> Result<Option<u64>> {
        // The common case in a few instructions: the same checks as
        // `reserve_slow`'s for a record that fits, with no pad, in space
        // known to be free. Anything else (and every error) goes there.
        // The size only once the length is known to be in range: near
        // `usize::MAX` it overflows (found in review: a panic in debug
        // builds, where the old code said `TooLarge`).
        if self.q.file.lease().is_mine()
            && len != 0
            && len as u64 <= self.max_record()
            && self.write <= ring::MAX_POSITION - 2 * self.q.capacity
        {
            let size = record_size(len as u64);
            if self.q.ring().pad_before(self.write, size) == 0
                && self.free() >= ring::room(size)
                && self.q.file.fault_free()
            {
                return Ok(Some(self.write));
            }
        }
        self.reserve_slow(len, wait)
    }

    /// [`Producer::reserve_inner`], every case.
    #[inline(never)]
    fn reserve_slow(&mut self, len: usize, wait: Wait) -> Result<Option<u64>> {
        // A forked child must not write as its parent's producer.
        self.q.file.lease().check_owner(self.q.file.region())?;
        // A record written since the last call may have gone into a page
        // an outside truncate cut away: report it now.
        self.q.check_faults()?;
        let max = self.max_record();
        if len == 0 {
            // The record format has no empty record: consumers of format
            // v3 refuse a data header of length 0 as corrupted.
            return Err(Error::ZeroLength {
                origin: self.q.origin().clone(),
                what: "queue record",
            });
        }
        if len as u64 > max {
            return Err(Error::TooLarge {
                origin: self.q.origin().clone(),
                what: "queue record",
                len: len as u64,
                max,
            });
        }
        let cap = self.q.capacity;
        let size = record_size(len as u64);
        // pad + size <= 2 * capacity: with this, no sum below overflows
        // and the consumer never sees a position past MAX_POSITION.
        if self.write > ring::MAX_POSITION - 2 * cap {
            return Err(Error::Corrupted {
                origin: self.q.origin().clone(),
                what: "queue state",
                why: format!("write position {} is exhausted", self.write),
            });
        }
        let pad = self.q.ring().pad_before(self.write, size);
        if pad > 0 {
            if ring::room(pad + size) <= cap {
                // Room for both first, so a send that fails writes
                // nothing; the record follows the pad at once.
                if !self.make_room(pad + size, wait, false)? {
                    return Ok(None);
                }
                self.q.ring().commit_pad(self.write, pad);
                self.write += pad;
            } else {
                // The record needs the ring's start and more than what the
                // pad leaves: the pad must be published and released on its
                // own. Write it only with a live consumer to release it, so
                // that without one smaller records still fit.
                if !self.make_room(pad, wait, true)? {
                    return Ok(None);
                }
                let ring = self.q.ring();
                ring.commit_pad(self.write, pad);
                self.write += pad;
                ring.publish(self.write, &Futex, &self.q.pair());
            }
        }
        if !self.make_room(size, wait, false)? {
            return Ok(None);
        }
        Ok(Some(self.write))
    }

    #[inline]
    fn grant(&mut self, at: u64, len: usize) -> Grant<'_> {
        Grant {
            producer: self,
            at,
            len,
        }
    }

    /// Reserves space for a `len`-byte record, waiting as long as it takes.
    /// `len` must be `1..=`[`max_record`](Self::max_record)
    /// ([`Error::ZeroLength`], [`Error::TooLarge`]).
    #[inline(always)]
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_>> {
        match self.reserve_inner(len, Wait::Forever)? {
            Some(at) => Ok(self.grant(at, len)),
            None => Err(wait_ended(self.q.origin())),
        }
    }

    /// Reserves space if there is some now; `Ok(None)` if the queue is full.
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<Option<Grant<'_>>> {
        Ok(self
            .reserve_inner(len, Wait::No)?
            .map(|at| self.grant(at, len)))
    }

    /// Reserves space, waiting at most `timeout`.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Grant<'_>> {
        let start = Instant::now();
        match self.reserve_inner(len, Wait::after(start, timeout))? {
            Some(at) => Ok(self.grant(at, len)),
            None => Err(Error::Timeout {
                origin: self.q.origin().clone(),
                what: "waiting for space in the queue",
                waited: start.elapsed(),
            }),
        }
    }

    #[inline]
    fn send_inner<'d>(
        &mut self,
        data: &'d [u8],
        wait: Wait,
    ) -> std::result::Result<(), SendError<&'d [u8]>> {
        match self.reserve_inner(data.len(), wait) {
            Ok(Some(at)) => {
                let g = self.grant(at, data.len());
                g.fill(data);
                let published = g.publish().is_some();
                // A fault so far is the record's own: it was not sent.
                if let Err(e) = self.q.check_faults() {
                    return Err(SendError::Failed(e, data));
                }
                // Then the stores ahead: a fault in them (a page cut past
                // the record) is the next call's to report, not this
                // delivered record's (found in review).
                if published {
                    self.clear_ahead(record_size(data.len() as u64));
                }
                Ok(())
            }
            Ok(None) if matches!(wait, Wait::No) => Err(SendError::Full(data)),
            Ok(None) => Err(SendError::Timeout(data)),
            Err(Error::Disconnected { .. }) => Err(SendError::Disconnected(data)),
            Err(e) => Err(SendError::Failed(e, data)),
        }
    }

    /// Sends a copy of `data` as one record, waiting for space.
    #[inline]
    pub fn send<'d>(&mut self, data: &'d [u8]) -> std::result::Result<(), SendError<&'d [u8]>> {
        self.send_inner(data, Wait::Forever)
    }

    /// Sends if there is space now.
    #[inline]
    pub fn try_send<'d>(&mut self, data: &'d [u8]) -> std::result::Result<(), SendError<&'d [u8]>> {
        self.send_inner(data, Wait::No)
    }

    /// Sends, waiting at most `timeout` for space.
    pub fn send_timeout<'d>(
        &mut self,
        data: &'d [u8],
        timeout: Duration,
    ) -> std::result::Result<(), SendError<&'d [u8]>> {
        self.send_inner(data, Wait::after(Instant::now(), timeout))
    }

    /// Sends every record of `records`, waiting for space as `send` does.
    /// The records of a run that fits without waiting become visible
    /// together: the run's later headers are written first and its first
    /// header last, as the run's one commit, so a consumer does not chase
    /// the producer record by record through lines it is still writing;
    /// the write position's store and the check for a sleeping consumer
    /// happen once per run too. On an error, `Err((n, e))`: the first `n`
    /// records were sent and published, the others not. After an outside
    /// truncate ([`Error::Truncated`]) the record being written when the
    /// fault was noticed may have been published too, as with `send`, but
    /// it is not counted: its bytes may be zeros.
    pub fn send_batch(&mut self, records: &[&[u8]]) -> std::result::Result<(), (usize, Error)> {
        let mut run = None;
        let result = self.send_batch_inner(records, &mut run);
        // Whatever happened, what was written is published: the count
        // reported is the count the consumer gets.
        let start = run.map(|(start, _)| start);
        self.commit_run(&mut run);
        // Only now the stores ahead (as in `send`: a fault in them is
        // the next call's); not after the runs published mid-batch, where
        // a fault would be taken for the next record's.
        if let Some(start) = start {
            self.clear_ahead(self.write - start);
        }
        result
    }

    /// Commits a run of records whose first header (at `start`, `len`
    /// bytes) was held back, and publishes it.
    fn commit_run(&mut self, run: &mut Option<(u64, u32)>) {
        if let Some((start, len)) = run.take() {
            let ring = self.q.ring();
            ring.commit_run(start, len, self.write);
            ring.publish(self.write, &Futex, &self.q.pair());
        }
    }

    fn send_batch_inner(
        &mut self,
        records: &[&[u8]],
        run: &mut Option<(u64, u32)>,
    ) -> std::result::Result<(), (usize, Error)> {
        for (sent, r) in records.iter().enumerate() {
            let size = record_size(r.len() as u64);
            let pad = self.q.ring().pad_before(self.write, size);
            if run.is_some() && self.free() < pad + size + HEADER {
                // About to wait (or wrap): publish what we have first.
                self.commit_run(run);
            }
            let at = match self.reserve_inner(r.len(), Wait::Forever) {
                Ok(Some(at)) => at,
                Ok(None) => return Err((sent, wait_ended(self.q.origin()))),
                Err(e) => return Err((sent, e)),
            };
            // `reserve_inner` checked that we are not a forked child.
            self.grant(at, r.len()).fill(r);
            let len = r.len() as u32;
            if run.is_some() {
                self.q.ring().write_header(at, len);
            } else {
                *run = Some((at, len));
            }
            self.write = at + size;
            // As `send`: a record written into a page an outside truncate
            // cut away is not counted as sent (checked here, not only by
            // the next reservation, which the batch's last record lacks).
            if let Err(e) = self.q.check_faults() {
                return Err((sent, e));
            }
        }
        Ok(())
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // Closes the session cleanly (nothing in a forked child).
        self.q.leave(Role::Producer, self.session);
    }
}

impl<'p> Grant<'p> {
    /// Copies `data` (exactly the grant's length) into the record, small
    /// records in 8-byte words (see `copy::to_padded`).
    #[inline]
    fn fill(&self, data: &[u8]) {
        // SAFETY: the grant's bytes and the record's padding after them
        // (up to the next multiple of 8) are reserved for us (see
        // `Deref`), 8-aligned (the ring is, and records start on
        // multiples of 8), and not `data`'s (a caller's buffer).
        unsafe { crate::copy::to_padded(self.slice_ptr(), data) };
    }

    #[inline]
    fn slice_ptr(&self) -> *mut u8 {
        let q = &self.producer.q;
        q.bytes.ptr(ring::offset(self.at, q.capacity) + HEADER)
    }

    /// Commits the record (the consumer can see it from now on) and
    /// advances our position, without storing it or waking the consumer;
    /// `None` (and nothing written) in a forked child.
    #[inline(always)]
    fn finish(self) -> Option<&'p mut Producer> {
        let Grant { producer, at, len } = self;
        if !producer.q.is_owner() {
            return None;
        }
        producer.q.ring().commit_record(at, len as u32);
        producer.write = at + record_size(len as u64);
        Some(producer)
    }

    /// [`Grant::finish`], then stores our position and wakes the
    /// consumer if it sleeps.
    #[inline(always)]
    fn publish(self) -> Option<&'p mut Producer> {
        let p = self.finish()?;
        p.q.ring().publish(p.write, &Futex, &p.q.pair());
        Some(p)
    }

    /// Commits the record: the consumer can see it from now on, and is
    /// woken if it sleeps. (In a forked child that inherited the grant,
    /// does nothing.)
    #[inline(always)]
    pub fn commit(self) {
        let size = record_size(self.len as u64);
        if let Some(p) = self.publish() {
            // A fault in the stores ahead shows at the next call.
            p.clear_ahead(size);
        }
    }

    /// Publishes only the first `len` bytes (at most the reserved length);
    /// `len == 0` publishes nothing.
    #[inline]
    pub fn commit_len(mut self, len: usize) {
        if len == 0 {
            return;
        }
        self.len = len.min(self.len);
        self.commit();
    }
}

impl Deref for Grant<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the reserved range lies inside the ring (checked when
        // reserved), in free space past the last commit, so a consumer
        // that follows the protocol does not read it and no one else
        // writes it until we commit: an exclusive grant (see the module
        // docs for a peer that does not follow it). The borrow of `&self`
        // ties it to the grant.
        unsafe { std::slice::from_raw_parts(self.slice_ptr(), self.len) }
    }
}

impl DerefMut for Grant<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes it unique in-process.
        unsafe { std::slice::from_raw_parts_mut(self.slice_ptr(), self.len) }
    }
}

//! The reading end: [`Consumer`], [`Record`] and [`Batch`].

use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};

use super::ring::{self, Next, HEADER};
use super::{open_existing, open_or_create, wait_ended, Role, Shared, Wait, Watch};
use crate::error::{Error, Result};
use crate::file::SharedFile;
use crate::sync::{Futex, Spin};

/// The reading end of a queue.
///
/// Either end may start first. A consumer waits for records until a
/// producer of its session (live when it attached, attached since, or the
/// writer of records pending when it attached) is gone and every record is
/// received; then it reports [`Error::Disconnected`] if that producer left
/// cleanly, [`Error::PeerDied`] if it died. A producer of an earlier run
/// does not end it. See the [module docs](super) for the session rules.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::queue::{Consumer, Producer};
/// use std::time::Duration;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("q");
/// let mut rx = Consumer::open_or_create(&path, 4096)?; // may start first
/// assert!(rx.try_recv()?.is_none());                  // nothing yet
///
/// let mut tx = Producer::open(&path)?;
/// for word in ["one", "two", "three"] {
///     tx.send(word.as_bytes()).map_err(|e| e.to_string())?;
/// }
/// drop(tx);
///
/// // In place: the record stays in the ring until it is dropped.
/// assert_eq!(&*rx.recv_timeout(Duration::from_secs(1))?, b"one");
/// // Copied out with atomic loads (sound whatever a peer does).
/// let mut buf = Vec::new();
/// assert_eq!(rx.recv_into(&mut buf)?, 3);
/// assert_eq!(buf, b"two");
/// let batch = rx.recv_batch(10, Duration::from_secs(1))?;
/// assert_eq!(batch.iter().collect::<Vec<_>>(), [b"three"]);
/// drop(batch);
/// // Drained, and the producer closed its session.
/// assert!(matches!(rx.recv(), Err(mapshare::Error::Disconnected { .. })));
/// # Ok(()) }
/// ```
pub struct Consumer {
    q: Shared,
    /// Our scan position (authoritative): the next record to look at.
    read: u64,
    /// What we stored to the shared (durable) read position. Equal to
    /// `read` except while records are borrowed in place ([`Record`],
    /// [`Batch`]).
    released: u64,
    /// What we published to the producer (`space`, see `ring`): at most
    /// `released`, behind it by less than `publish_every` bytes.
    published: u64,
    spin: Spin,
    /// Our session number.
    session: u64,
    /// What we know of the producers of our session.
    watch: Watch,
}

/// Pauses (`spin_loop`) a waiting consumer makes before its first look at
/// an empty position: ~50 ns on this project's Zen 4 VMs (a `pause` costs
/// ~25 ns there). When the producer streams right behind the consumer, an
/// immediate look lands while the next record is being written, so the
/// record's line crosses twice more. In a ping-pong the record cannot
/// come back before two line transfers (~90 ns), so 2 pauses cost it
/// nothing, where 4 (~100 ns) delayed every first look past the record's
/// arrival (docs/benchmarks.md, session 19).
/// Not when the consumer's spin is zero: it parks at once.
const FIRST_LOOK_PAUSES: u32 = 2;

/// Polls of the header word alone (a pause between) before a waiting
/// consumer enters the general wait (`Shared::wait_for`, which reads the
/// clock, checks the deadline and the peer): ~1.6 µs here. The general
/// wait's extra work per poll and on the way out cost a 64-byte hand-off
/// ~10 ns (docs/benchmarks.md, session 19).
const QUICK_POLLS: u32 = 64;

/// What one of those polls is taken to cost, in nanoseconds, when they
/// are counted against the spin limit (a pause and a load: ~26 ns here).
const POLL_NS: u128 = 32;

/// A record borrowed in place; released to the producer on drop.
///
/// The `&[u8]` it derefs to points into the shared mapping. It is
/// immutable only while the producer follows the queue protocol (it never
/// writes before the released read position): a buggy or hostile producer,
/// or one wrongly judged dead whose role was taken over while it still
/// runs, can change the bytes under the reference, which is undefined
/// behaviour. Against such a peer use [`Record::copy_to`] or
/// [`Consumer::recv_into`] instead of `Deref`.
pub struct Record<'c> {
    /// The consumer; its `read` is this record's position (the payload
    /// is 8 bytes further, and the next record after `record_size(len)`).
    consumer: &'c mut Consumer,
    len: usize,
}

/// Records borrowed in place by [`Consumer::recv_batch`]; all released on
/// drop, with one store. The same caveat as for [`Record`] holds for
/// [`Batch::iter`]; [`Batch::copy_to`] is the copy-out path.
pub struct Batch<'c> {
    consumer: &'c mut Consumer,
    records: Vec<(u64, usize)>,
    next: u64,
}

impl Consumer {
    fn from_file(file: SharedFile) -> Result<Consumer> {
        let a = Shared::attach(file, Role::Consumer)?;
        Ok(Consumer {
            q: a.q,
            read: a.read,
            released: a.read,
            published: a.read,
            spin: Spin::default(),
            session: a.session,
            watch: a.watch,
        })
    }

    /// Opens the queue at `path` as its consumer, creating it with
    /// `capacity` bytes if it does not exist.
    pub fn open_or_create(path: impl AsRef<Path>, capacity: u64) -> Result<Consumer> {
        Consumer::from_file(open_or_create(path, capacity)?)
    }

    /// Opens an existing queue as its consumer.
    pub fn open(path: impl AsRef<Path>) -> Result<Consumer> {
        Consumer::from_file(open_existing(path)?)
    }

    /// Sets how long a blocked receive spins before parking.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The queue file.
    pub fn file(&self) -> &SharedFile {
        &self.q.file
    }

    /// Committed bytes not yet released (a snapshot, from the position
    /// the producer stored last).
    pub fn pending_bytes(&self) -> Result<u64> {
        let w = self
            .q
            .ring()
            .write
            .load(std::sync::atomic::Ordering::Acquire);
        Ok(w.saturating_sub(self.released))
    }

    /// Gives everything before `pos` back to the producer: stores it as
    /// the durable position at once (a restart resumes there), and
    /// publishes it to the producer once enough has been released or if
    /// the producer sleeps waiting for space.
    #[inline]
    fn release(&mut self, pos: u64) {
        self.released = pos;
        let ring = self.q.ring();
        ring.release(pos);
        if pos - self.published >= ring::publish_every(self.q.capacity)
            || ring.producer_sleeping(&self.q.pair())
        {
            self.publish();
        }
    }

    /// Publishes the released position to the producer (and wakes it if
    /// it sleeps).
    fn publish(&mut self) {
        self.published = self.released;
        self.q
            .ring()
            .publish_space(self.released, &Futex, &self.q.pair());
    }

    /// Finds the next record at our position, skipping pads; waits per
    /// `wait`. `Ok(None)`: nothing arrived in time.
    ///
    /// A skipped pad is released at once (the producer may be waiting for
    /// that space) unless `borrowed`: then records before it are still
    /// borrowed in place, and releasing past them would hand their bytes
    /// back to the producer; the caller releases everything later.
    #[inline]
    fn next_record(&mut self, wait: Wait, borrowed: bool) -> Result<Option<(u64, usize, u64)>> {
        self.q.file.lease().check_owner(self.q.file.region())?;
        loop {
            let limit = self.released + self.q.capacity;
            let found = self
                .q
                .ring()
                .next(self.read, limit)
                .map_err(|v| self.q.corrupted(v))?;
            match found {
                None => {
                    if !self.wait_for_record(wait)? {
                        return Ok(None);
                    }
                }
                Some(Next::Pad { size }) => {
                    self.read += size;
                    if !borrowed {
                        self.release(self.read);
                    }
                }
                Some(Next::Record { at, len, size }) => {
                    self.q.check_faults()?;
                    return Ok(Some((at, len as usize, self.read + size)));
                }
            }
        }
    }

    /// Waits per `wait` until something is committed at our position;
    /// `Ok(false)` if nothing came in time. Publishes what we released
    /// first: a producer may be waiting for it.
    #[cold]
    fn wait_for_record(&mut self, wait: Wait) -> Result<bool> {
        if self.published != self.released {
            self.publish();
        }
        let mut spin = self.spin;
        if !matches!(wait, Wait::No) && !spin.limit.is_zero() {
            // Let a producer that streams right behind us finish the
            // record before we first look: a look while it writes takes
            // the line from it mid-record, and it must take it back (see
            // FIRST_LOOK_PAUSES).
            for _ in 0..FIRST_LOOK_PAUSES {
                std::hint::spin_loop();
            }
            // Then poll the header word alone for a while, before the
            // general wait with its clock, deadline and peer checks.
            // They count against the spin limit (fewer under a limit
            // shorter than they take, at most ~32 ns each here).
            let polls = (spin.limit.as_nanos() / POLL_NS).min(u128::from(QUICK_POLLS)) as u32;
            if self.q.ring().poll(self.read, polls) {
                return Ok(true);
            }
            spin.limit = spin
                .limit
                .saturating_sub(Duration::from_nanos(u64::from(polls) * POLL_NS as u64));
        }
        let q = &self.q;
        let ring = q.ring();
        let (read, limit) = (self.read, self.released + q.capacity);
        q.wait_for(
            &ring.data_event,
            spin,
            wait,
            Role::Producer,
            &mut self.watch,
            |_| match ring.next(read, limit) {
                Ok(found) => Ok(found.is_some()),
                Err(v) => Err(q.corrupted(v)),
            },
        )
    }

    #[inline]
    fn record(&mut self, len: usize) -> Record<'_> {
        // Two words, so that the record comes back in registers.
        Record {
            consumer: self,
            len,
        }
    }

    /// Receives the next record, waiting as long as it takes. Fails with
    /// [`Error::Disconnected`] (or [`Error::PeerDied`]) once the queue is
    /// drained and the producer of this session is gone.
    #[inline]
    pub fn recv(&mut self) -> Result<Record<'_>> {
        match self.next_record(Wait::Forever, false)? {
            Some((_, len, _)) => Ok(self.record(len)),
            None => Err(wait_ended(self.q.origin())),
        }
    }

    /// Receives a record if one is there; `Ok(None)` if the queue is empty
    /// (and the producer of this session alive or not yet seen).
    #[inline]
    pub fn try_recv(&mut self) -> Result<Option<Record<'_>>> {
        Ok(self
            .next_record(Wait::No, false)?
            .map(|(_, len, _)| self.record(len)))
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Record<'_>> {
        let start = Instant::now();
        match self.next_record(Wait::after(start, timeout), false)? {
            Some((_, len, _)) => Ok(self.record(len)),
            None => Err(Error::Timeout {
                origin: self.q.origin().clone(),
                what: "waiting for a record",
                waited: start.elapsed(),
            }),
        }
    }

    /// Copies the next record into `buf` (replacing its contents) and
    /// releases it; returns its length. Waits as [`Consumer::recv`] does.
    ///
    /// Unlike the in-place [`Record`], this is sound whatever the producer
    /// does: the shared bytes are read with atomic loads only, and the
    /// record's header is checked again after the copy (a change is
    /// [`Error::Corrupted`], and nothing is released).
    #[inline]
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        match self.recv_into_inner(Wait::Forever, buf)? {
            Some(len) => Ok(len),
            None => Err(wait_ended(self.q.origin())),
        }
    }

    /// [`Consumer::recv_into`] if a record is there now; `Ok(None)` if the
    /// queue is empty.
    #[inline]
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>> {
        self.recv_into_inner(Wait::No, buf)
    }

    /// [`Consumer::recv_into`], waiting at most `timeout`.
    pub fn recv_into_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        let start = Instant::now();
        match self.recv_into_inner(Wait::after(start, timeout), buf)? {
            Some(len) => Ok(len),
            None => Err(Error::Timeout {
                origin: self.q.origin().clone(),
                what: "waiting for a record",
                waited: start.elapsed(),
            }),
        }
    }

    #[inline]
    fn recv_into_inner(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<Option<usize>> {
        let Some((at, len, next)) = self.next_record(wait, false)? else {
            return Ok(None);
        };
        self.q.bytes.copy_out(at, len, buf);
        self.q.check_faults()?;
        self.check_unchanged(at, len, next)?;
        self.read = next;
        self.release(next);
        Ok(Some(len))
    }

    /// Checks that the record header before `at` still describes the
    /// record found there (`len` bytes, ending at `next`).
    #[inline]
    fn check_unchanged(&self, at: u64, len: usize, next: u64) -> Result<()> {
        let start = next - super::ring::record_size(len as u64);
        match self.q.ring().next(start, next) {
            Ok(Some(Next::Record { at: a, len: l, .. })) if a == at && l as usize == len => Ok(()),
            // A truncate since the copy's fault check zeroes the header
            // too: `Truncated` then, not `Corrupted` (found in review).
            _ => Err(self.q.corrupted_as(
                "queue record",
                format!(
                    "the header of the record at {} changed while it was read",
                    at - HEADER
                ),
            )),
        }
    }

    /// Receives up to `max` records that are already there (waiting up to
    /// `timeout` for the first), borrowed in place and released together.
    /// A session end or deletion met after the first record ends the batch
    /// early; it is reported by the next call.
    pub fn recv_batch(&mut self, max: usize, timeout: Duration) -> Result<Batch<'_>> {
        let mut records = Vec::new();
        let mut wait = Wait::after(Instant::now(), timeout);
        while records.len() < max {
            match self.next_record(wait, !records.is_empty()) {
                Ok(Some((at, len, next))) => {
                    records.push((at, len));
                    // Look past this record without releasing it yet.
                    self.read = next;
                    wait = Wait::No;
                }
                Ok(None) => break,
                Err(
                    Error::Disconnected { .. } | Error::PeerDied { .. } | Error::Deleted { .. },
                ) if !records.is_empty() => break,
                Err(e) => {
                    // Back to the first unreleased byte: never behind a
                    // pad already released (the producer may reuse it).
                    self.read = self.released;
                    return Err(e);
                }
            }
        }
        let next = self.read;
        self.read = self.released;
        if records.is_empty() {
            let origin = self.q.origin().clone();
            return Err(Error::Timeout {
                origin,
                what: "waiting for a record",
                waited: timeout,
            });
        }
        Ok(Batch {
            consumer: self,
            records,
            next,
        })
    }
}

impl Drop for Consumer {
    #[inline]
    fn drop(&mut self) {
        // Hands a spinning producer what we released (not in a forked
        // child: it must not store its parent's positions).
        if self.published != self.released && self.q.is_owner() {
            self.publish();
        }
        // Closes the session cleanly (nothing in a forked child).
        self.q.leave(Role::Consumer, self.session);
    }
}

impl Record<'_> {
    /// Ring offset of the payload.
    #[inline]
    fn at(&self) -> u64 {
        ring::offset(self.consumer.read, self.consumer.q.capacity) + HEADER
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: records carry at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the payload into `buf` (replacing its contents) with atomic
    /// loads only: sound whatever the producer does, unlike `Deref`. The
    /// record is still released on drop, so a caller can release it only
    /// after it has put the copy somewhere safe. Fails with
    /// [`Error::Truncated`] if a page of the queue was cut away by an
    /// outside truncate (the copy would hold zeros).
    #[inline]
    pub fn copy_to(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.consumer.q.bytes.copy_out(self.at(), self.len, buf);
        self.consumer.q.check_faults()
    }
}

impl Deref for Record<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // An inherited record in a forked child: its parent may release
        // it at any time (as for a snapshot guard).
        if !self.consumer.q.is_owner() {
            return &[];
        }
        // SAFETY: validated to lie inside the ring, and its header is
        // committed (loaded with acquire order); until we release it a producer that follows the
        // protocol does not write there: an exclusive grant by the protocol
        // (see the type's docs for a peer that does not follow it).
        unsafe { std::slice::from_raw_parts(self.consumer.q.bytes.ptr(self.at()), self.len) }
    }
}

impl Drop for Record<'_> {
    #[inline]
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        let next = c.read + ring::record_size(self.len as u64);
        c.read = next;
        // A forked child must not release what its parent holds.
        if c.q.is_owner() {
            c.release(next);
        }
    }
}

impl Batch<'_> {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch is empty (never: `recv_batch` errs instead).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, in order, in place.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let bytes = &self.consumer.q.bytes;
        // Nothing for a forked child (see `Record`'s `Deref`).
        let n = if self.consumer.q.is_owner() {
            self.records.len()
        } else {
            0
        };
        self.records[..n].iter().map(move |&(at, len)| {
            // SAFETY: as for `Record`: validated, committed, not yet
            // released.
            unsafe { std::slice::from_raw_parts(bytes.ptr(at), len) }
        })
    }

    /// Copies record `index` into `buf` (replacing its contents) with
    /// atomic loads only, as [`Record::copy_to`]; `Ok(false)` if there is
    /// no such record, [`Error::Truncated`] if a page of the queue was cut
    /// away by an outside truncate.
    pub fn copy_to(&self, index: usize, buf: &mut Vec<u8>) -> Result<bool> {
        match self.records.get(index) {
            Some(&(at, len)) => {
                self.consumer.q.bytes.copy_out(at, len, buf);
                self.consumer.q.check_faults()?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl Drop for Batch<'_> {
    #[inline]
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        c.read = self.next;
        // A forked child must not release what its parent holds.
        if c.q.is_owner() {
            c.release(self.next);
        }
    }
}

//! Writers: reserve, claim, write in place, commit (see the state table
//! in the [module documentation](super)).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering::Acquire;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cursor;
use super::pretouch::Pretoucher;
use super::protocol::{self as p, Mem, Reserve};
use super::segment::{Role, Segment};
use super::Log;
use crate::error::{Error, Origin, Result};
use crate::sys::clock::now_ns;

/// Rolls one reservation may go through before giving up (each roll
/// starts an empty segment, where a record that passed the size check
/// fits unless other writers fill it first).
const MAX_ROLLS: usize = 64;

/// A handle that appends records to a [`Log`]. Any number of handles, in
/// any number of processes, append at once; the records of one handle
/// keep its order.
///
/// ```
/// # fn main() -> mapshare::Result<()> {
/// use mapshare::log::{Log, Options};
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::create(dir.path(), &Options::default())?;
/// let mut w = log.writer()?;
/// assert_eq!(w.append(b"a")?, 0);
/// assert_eq!(w.append_batch([&b"b"[..], b"c"])?, vec![1, 2]);
/// # Ok(()) }
/// ```
pub struct Writer {
    log: Log,
    /// Shared with the pretoucher, if one runs.
    seg: Arc<Segment>,
    /// Our registry entry (our lease slot) in `seg`.
    slot: u32,
    /// Longest wait for a tethered reader.
    tether_wait: Duration,
    /// The helper thread that maps our segment in ahead of us, if
    /// started ([`Writer::start_pretouch`]).
    pretouch: Option<Pretoucher>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("log", &self.log)
            .field("segment", &self.seg.number)
            .finish()
    }
}

impl Writer {
    pub(crate) fn new(log: Log) -> Result<Writer> {
        let last = log.last_number()?;
        let base = if last == 0 { Some(0) } else { None };
        let seg = match base {
            Some(b) => Segment::open_or_create(log.dir(), 0, b, log.segment_size()?, Role::Writer)?,
            None => Segment::open(log.dir(), last, Role::Writer)?,
        };
        let slot = seg.register_writer()?;
        Ok(Writer {
            log,
            seg: Arc::new(seg),
            slot,
            tether_wait: Duration::from_secs(5),
            pretouch: None,
        })
    }

    /// Starts a pretoucher: a helper thread that maps this writer's
    /// segment in ahead of its appends, so that they never wait for the
    /// kernel to provide fresh pages (about 40% of a 64-byte append on
    /// this project's VMs; docs/log.md, "A pretoucher"). Worth it when the
    /// process has a core to spare: the thread runs on `cpu` if given,
    /// else wherever the calling thread may run (so a thread pinned to
    /// one core starts a pretoucher that shares it; pass another core).
    /// It stops when the writer is dropped or [`Writer::stop_pretouch`]
    /// is called. Starting it again restarts it.
    pub fn start_pretouch(&mut self, cpu: Option<usize>) -> Result<()> {
        self.seg
            .file()
            .lease()
            .check_owner(self.seg.file().region())?;
        self.stop_pretouch();
        let p = Pretoucher::start(&self.seg, cpu)
            .map_err(|e| Error::io(&Origin::path(self.log.dir()), "start a pretouch thread", e))?;
        self.pretouch = Some(p);
        Ok(())
    }

    /// Stops the pretoucher, if one runs; the writer then maps pages in
    /// itself again.
    pub fn stop_pretouch(&mut self) {
        if let Some(mut p) = self.pretouch.take() {
            p.stop(self.seg.file().lease().is_mine());
        }
    }

    /// How long an append waits for a tethered reader
    /// ([`Start::Tethered`](super::Start::Tethered)) that is too far
    /// behind before it fails with [`Error::Timeout`] (5 s by default).
    pub fn set_tether_wait(&mut self, wait: Duration) {
        self.tether_wait = wait;
    }

    /// Waits while a live tethered reader is too far behind for `n` more
    /// records. One relaxed load when no reader is tethered. Several
    /// writers checking at once may overshoot a limit by the records they
    /// have in flight.
    fn wait_for_tethers(&self, n: u64) -> Result<()> {
        // The first step of every append: a forked child is refused at
        // once, not after waiting out a tether for its parent.
        self.seg
            .file()
            .lease()
            .check_owner(self.seg.file().region())?;
        // No tether, nothing to wait for: one relaxed load of `meta`
        // first. The full check (the tail word, then a scan that returns
        // the holder's name) cost ~7 ns of a ~42 ns append when it ran
        // every time (docs/benchmarks.md).
        if !cursor::any_tether(&self.log.meta)? {
            return Ok(());
        }
        // The clock is read only once a tether holds us back: a clock
        // read costs as much as the rest of an append on a VM.
        let mut start = None;
        let mut pause = Duration::from_micros(20);
        loop {
            let (_, count) = p::tail_parts(self.seg.load(p::TAIL, Acquire));
            let last = self.seg.base + count + n.max(1) - 1;
            if cursor::holding_back(&self.log.meta, last)?.is_none() {
                return Ok(());
            }
            let waited = start.get_or_insert_with(Instant::now).elapsed();
            if waited >= self.tether_wait {
                return Err(Error::Timeout {
                    origin: Origin::path(self.log.dir()),
                    what: "a tethered reader to catch up (see `mapshare log info`)",
                    waited,
                });
            }
            std::thread::sleep(pause.min(self.tether_wait - waited));
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// The largest payload one record can have.
    pub fn max_record(&self) -> usize {
        self.seg.geo.max_record() as usize
    }

    fn check_len(&self, len: u64) -> Result<()> {
        if len > self.seg.geo.max_record() {
            return Err(Error::TooLarge {
                origin: self.seg.origin().clone(),
                what: "log record",
                len,
                max: self.seg.geo.max_record(),
            });
        }
        Ok(())
    }

    /// Reserves `total` bytes for `n` records; on success we are counted
    /// as pending in `self.seg` (the caller publishes its claims, then
    /// uncounts).
    fn reserve(&mut self, total: u64, n: u64) -> Result<(u64, u64)> {
        self.seg
            .file()
            .lease()
            .check_owner(self.seg.file().region())?;
        for _ in 0..MAX_ROLLS {
            p::pending_add(&*self.seg, self.slot, 1);
            match p::reserve(&*self.seg, &self.seg.geo, total, n) {
                Reserve::Ok { off, idx } => return Ok((off, idx)),
                Reserve::Closer { off, idx } => {
                    let closed = p::close(&*self.seg, &self.seg.geo, off, idx);
                    p::pending_add(&*self.seg, self.slot, u64::MAX);
                    self.log.meta.notify();
                    if !closed {
                        return Err(self.seg.corrupted(format!(
                            "the end of the segment at {off} was written over"
                        )));
                    }
                }
                Reserve::Full => p::pending_add(&*self.seg, self.slot, u64::MAX),
            }
            let next = self.next_segment()?;
            self.slot = next.register_writer()?;
            self.seg = Arc::new(next);
            if let Some(p) = &self.pretouch {
                p.switch(&self.seg);
            }
        }
        Err(Error::Busy {
            origin: self.seg.origin().clone(),
            why: "other writers filled every new segment before this record fit".into(),
        })
    }

    /// Maps the segment in ahead of `end` (the end of the record just
    /// committed; see [`Segment::populate_ahead`]). Called after a
    /// commit, never inside a reservation: readers wait at an open
    /// reservation, and populating takes ~0.35 ms (review found reader
    /// latency behind a second writer tripled when it ran between
    /// reserve and commit).
    #[inline]
    fn populate_ahead(&self, end: u64) {
        match &self.pretouch {
            Some(p) => p.ahead(end),
            None => self.seg.populate_ahead(end, true),
        }
    }

    /// The segment to append to once ours is full: the newest one if
    /// others already rolled past ours (a writer that was descheduled
    /// may be many segments behind; its records keep its order since
    /// later segments come later), else the one after ours, created from
    /// our segment's record count if nobody has yet.
    fn next_segment(&self) -> Result<Segment> {
        let last = self.log.last_number()?;
        if last > self.seg.number {
            match Segment::open(self.log.dir(), last, Role::Writer) {
                Ok(s) => return Ok(s),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let count = self.log.end_of(&self.seg)?;
        self.log.follow(&self.seg, count)
    }

    /// Publishes the claim of record `idx` at `off`, stamped `time`;
    /// `Corrupted` if its commit word was not empty.
    fn publish(&self, off: u64, idx: u64, len: u64, time: u64) -> Result<u64> {
        let seq = self.seg.base + idx;
        let token = self.seg.file().lease().token().raw();
        if !p::publish_claim(
            &*self.seg,
            &self.seg.geo,
            off,
            idx,
            len as u32,
            token,
            seq,
            time,
        ) {
            return Err(self
                .seg
                .corrupted(format!("reserved space at {off} was not empty")));
        }
        Ok(seq)
    }

    /// Reserves a record of `len` bytes to be written in place; the
    /// [`Grant`] derefs to its bytes (zeros). Commit it to publish it;
    /// dropping it aborts it (readers skip it).
    pub fn claim(&mut self, len: usize) -> Result<Grant<'_>> {
        let len = len as u64;
        self.check_len(len)?;
        self.wait_for_tethers(1)?;
        let (off, idx) = self.reserve(p::span(len), 1)?;
        let seq = self.publish(off, idx, len, now_ns());
        p::pending_add(&*self.seg, self.slot, u64::MAX);
        let seq = seq?;
        Ok(Grant {
            writer: self,
            off,
            idx,
            len: len as u32,
            seq,
            done: false,
        })
    }

    /// For crash tests only: reserves a record of `len` bytes and
    /// publishes nothing, leaving this handle counted as pending, exactly
    /// as a writer killed between its atomic add and its claim leaves it.
    /// Returns the sequence number the record would have had.
    #[doc(hidden)]
    pub fn __reserve_unclaimed(&mut self, len: usize) -> Result<u64> {
        let len = len as u64;
        self.check_len(len)?;
        let (_, idx) = self.reserve(p::span(len), 1)?;
        Ok(self.seg.base + idx)
    }

    /// Appends one record; returns its sequence number.
    ///
    /// The steps of [`Writer::claim`] and [`Grant::commit`], reordered
    /// for speed: the checksum and the clock come before the reservation,
    /// and the claim, the payload and the commit follow each other with
    /// nothing in between (we stay counted pending until after the
    /// commit). So the writes to the record's first line come in one
    /// burst, and a reader polling that line takes it from us once or
    /// twice per record instead of at each step (docs/benchmarks.md). The
    /// order hole repair relies on is kept: the claim is the
    /// reservation's first store, and the payload comes after it.
    pub fn append(&mut self, data: &[u8]) -> Result<u64> {
        let len = data.len() as u64;
        self.check_len(len)?;
        self.wait_for_tethers(1)?;
        let crc = crate::crc::checksum(data);
        let time = now_ns();
        let (off, idx) = self.reserve(p::span(len), 1)?;
        let seq = self.write_whole(off, idx, data, crc, time);
        p::pending_add(&*self.seg, self.slot, u64::MAX);
        let seq = seq?;
        self.committed()?;
        self.populate_ahead(off + p::span(len));
        Ok(seq)
    }

    /// [`Writer::append`]'s burst: claim, payload, commit.
    fn write_whole(&self, off: u64, idx: u64, data: &[u8], crc: u32, time: u64) -> Result<u64> {
        let seq = self.publish(off, idx, data.len() as u64, time)?;
        let ptr = self.seg.data_ptr(off + p::HDR);
        // SAFETY: the payload and its padding lie inside our reservation
        // (`span` counts them), claimed by us just now: no process that
        // follows the protocol writes or reads it before it is committed;
        // it is 8-aligned; `data` is the caller's buffer, not the
        // reservation.
        unsafe { crate::copy::to_padded(ptr, data) };
        self.commit(off, idx, data.len() as u32, crc, seq)?;
        Ok(seq)
    }

    /// Commits claimed record `seq` (index `idx` at `off`, `len` bytes,
    /// checksum `crc`); `Corrupted` if it was aborted meanwhile.
    fn commit(&self, off: u64, idx: u64, len: u32, crc: u32, seq: u64) -> Result<()> {
        if !p::commit(&*self.seg, &self.seg.geo, off, idx, len, crc) {
            return Err(self.seg.corrupted(format!(
                "record {seq} was aborted before its commit (its writer was judged dead)"
            )));
        }
        Ok(())
    }

    /// After a commit: wake parked readers, and report a page of the
    /// segment that an outside truncate cut away (its reads and writes
    /// went to zeros: the record is not appended; found in review).
    fn committed(&self) -> Result<()> {
        self.log.meta.notify();
        self.seg.check_faults()
    }

    /// Appends records with as few reservations as possible (one atomic
    /// add per group that fits a segment); records of one group get
    /// consecutive sequence numbers. Returns their sequence numbers.
    pub fn append_batch<'d>(
        &mut self,
        records: impl IntoIterator<Item = &'d [u8]>,
    ) -> Result<Vec<u64>> {
        let records: Vec<&[u8]> = records.into_iter().collect();
        for r in &records {
            self.check_len(r.len() as u64)?;
        }
        let mut seqs = Vec::with_capacity(records.len());
        let limit = self.seg.geo.usable() / 2;
        let mut i = 0;
        while i < records.len() {
            // A group: at least one record, at most half a segment.
            let mut total = p::span(records[i].len() as u64);
            let mut j = i + 1;
            while j < records.len() && total + p::span(records[j].len() as u64) <= limit {
                total += p::span(records[j].len() as u64);
                j += 1;
            }
            self.wait_for_tethers((j - i) as u64)?;
            let (off0, idx0) = self.reserve(total, (j - i) as u64)?;
            let mut claims = Vec::with_capacity(j - i);
            let mut off = off0;
            let mut failed = None;
            for (k, r) in records[i..j].iter().enumerate() {
                let idx = idx0 + k as u64;
                match self.publish(off, idx, r.len() as u64, now_ns()) {
                    Ok(seq) => claims.push((off, idx, *r, seq)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                off += p::span(r.len() as u64);
            }
            p::pending_add(&*self.seg, self.slot, u64::MAX);
            let mut end = None;
            for (off, idx, r, seq) in claims {
                let mut g = Grant {
                    writer: self,
                    off,
                    idx,
                    len: r.len() as u32,
                    seq,
                    done: false,
                };
                if failed.is_some() {
                    // Dropping the grant aborts it: after a failure, no
                    // claim of the group stays open under our live lease
                    // (readers would wait at it until we exit).
                    continue;
                }
                g.fill(r);
                match g.finish() {
                    Ok(s) => {
                        seqs.push(s);
                        end = Some(off + p::span(r.len() as u64));
                    }
                    Err(e) => failed = Some(e),
                }
            }
            // Only now: populating inside the group would make readers
            // wait at its open claims.
            if let Some(end) = end {
                self.populate_ahead(end);
            }
            if let Some(e) = failed {
                return Err(e);
            }
            i = j;
        }
        Ok(seqs)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop_pretouch();
    }
}

/// A claimed record being written in place: derefs to its payload bytes,
/// which belong to this writer alone until [`Grant::commit`]. Dropped
/// without a commit, the record is aborted and readers skip it.
pub struct Grant<'w> {
    writer: &'w Writer,
    off: u64,
    idx: u64,
    len: u32,
    seq: u64,
    done: bool,
}

impl Grant<'_> {
    /// The sequence number this record will have.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Publishes the record: checksum, then the commit word with release
    /// order, then one wake-up call if a reader sleeps. Returns its
    /// sequence number. Fails if the claim was aborted meanwhile (this
    /// process was judged dead) or in a forked child.
    pub fn commit(mut self) -> Result<u64> {
        let seq = self.finish()?;
        let end = self.off + p::span(u64::from(self.len));
        self.writer.populate_ahead(end);
        Ok(seq)
    }

    /// [`Grant::commit`] without populating ahead (`append_batch`
    /// populates once, after its group's last commit).
    fn finish(&mut self) -> Result<u64> {
        let seg = &self.writer.seg;
        seg.file().lease().check_owner(seg.file().region())?;
        let crc = crate::crc::checksum(self);
        self.done = true;
        let w = &self.writer;
        w.commit(self.off, self.idx, self.len, crc, self.seq)?;
        w.committed()?;
        Ok(self.seq)
    }

    /// Copies `data` (exactly the grant's length) into the record, small
    /// records in 8-byte words (see `copy::to_padded`).
    fn fill(&self, data: &[u8]) {
        debug_assert_eq!(data.len(), self.len as usize);
        let ptr = self.writer.seg.data_ptr(self.off + p::HDR);
        // SAFETY: the payload and its padding to 8 bytes lie inside the
        // reservation (`span` counts them), which is this grant's alone
        // (see `Deref`); records and the data area are 8-aligned; `data`
        // is the caller's buffer, not the reservation.
        unsafe { crate::copy::to_padded(ptr, data) };
    }
}

impl Deref for Grant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let ptr = self.writer.seg.data_ptr(self.off + p::HDR);
        // SAFETY: the reservation `off..off + span(len)` lies inside the
        // data area (checked by `reserve`) and belongs to this grant
        // alone until it is committed or aborted: no process that
        // follows the protocol reads or writes these payload bytes
        // meanwhile (readers stop at the uncommitted commit word). See
        // "Soundness of in-place access" in the module docs.
        unsafe { std::slice::from_raw_parts(ptr, self.len as usize) }
    }
}

impl DerefMut for Grant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let ptr = self.writer.seg.data_ptr(self.off + p::HDR);
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(ptr, self.len as usize) }
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        let seg = &self.writer.seg;
        // Not in a forked child: the claim is its parent's.
        if self.done || !seg.file().lease().is_mine() {
            return;
        }
        if p::abort(&**seg, &seg.geo, self.off, self.idx, self.len) {
            self.writer.log.meta.notify();
        }
    }
}

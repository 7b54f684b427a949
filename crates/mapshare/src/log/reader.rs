//! Readers: independent positions, zero-copy and copy-out reads, waiting
//! on the log's one futex word, durable cursors and seeking.

use std::sync::atomic::Ordering::Acquire;
use std::time::{Duration, Instant};

use super::protocol::{self as p, Mem};
use super::segment::{Role, Segment};
use super::{cursor, scan, Found, Log, Pos, Start, CHECK_EVERY, FIRST};
use crate::error::{Error, Origin, Result};
use crate::sync::{spin_until, Futex, Spin, Symmetric};

/// A reader's own position in a [`Log`]. Readers are independent: each
/// sees every record, in the log's one order, whatever the others do.
///
/// ```
/// # fn main() -> mapshare::Result<()> {
/// use mapshare::log::{Log, Options, Start};
/// use std::time::Duration;
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::create(dir.path(), &Options::default())?;
/// let mut reader = log.reader(Start::Cursor("audit".into()))?;
/// log.writer()?.append(b"event")?;
/// let r = reader.next_timeout(Duration::from_secs(5))?.expect("a record");
/// assert_eq!(r.bytes(), b"event");
/// reader.commit()?; // a restarted "audit" reader resumes after it
/// assert_eq!(log.reader(Start::Cursor("audit".into()))?.position(), 1);
/// # Ok(()) }
/// ```
pub struct Reader {
    log: Log,
    seg: Segment,
    pos: Pos,
    /// Records below this sequence number are skipped (seeking).
    floor: u64,
    /// The next sequence number this reader delivers (or skips past).
    next_seq: u64,
    /// Reported by the next read: records lost to retention.
    lagged: Option<(u64, u64)>,
    /// Our durable cursor slot, if any.
    cursor: Option<u64>,
    /// Whether that slot's tether is ours.
    tethered: bool,
    /// When the writer of a stuck record may be checked again.
    next_check: Option<(u64, Instant)>,
    /// The position (as `here` in `advance`) where the last read found
    /// nothing: a read there again looks at the segment's tail (see
    /// `scan`'s `quick`).
    empty_at: Option<u64>,
    /// Whether the last read that found nothing may have looked only at
    /// the commit word (`scan`'s `quick`): a wait then looks again in full
    /// before it parks, or a hole a dead writer left there, with a record
    /// committed after it, would keep it parked for a whole slice (found
    /// in review: 20 ms).
    looked_quickly: bool,
    spin: Spin,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("segment", &self.seg.number)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

/// A committed record, read in place. It borrows the reader, which
/// cannot move on while the record lives.
pub struct Record<'r> {
    seg: &'r Segment,
    at: u64,
    len: u32,
    seq: u64,
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("seq", &self.seq)
            .field("len", &self.len)
            .finish()
    }
}

impl Record<'_> {
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// When it was claimed, in nanoseconds since the Unix epoch (as the
    /// writer's clock said).
    pub fn timestamp_ns(&self) -> u64 {
        self.seg.load(self.seg.geo.at(self.at) + p::R_TIME, Acquire)
    }

    /// The payload, in place. Sound while every process follows the log
    /// protocol (a committed record is never written again, and this
    /// reader's lease pins the segment); see [`Record::copy_to`] for a
    /// read that a hostile peer cannot make unsound.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `at + HDR + len` lies inside the data area (validated
        // by `protocol::step`); the record is committed, so no process
        // that follows the protocol writes these bytes again, and the
        // segment stays mapped while `self.seg` lives. See "Soundness of
        // in-place access" in the module docs.
        unsafe {
            std::slice::from_raw_parts(self.seg.data_ptr(self.at + p::HDR), self.len as usize)
        }
    }

    /// Copies the payload into `out` (replacing its contents) with atomic
    /// loads only.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        self.seg.copy_out(self.at, self.len as usize, out);
    }

    /// Checks that the segment file still holds this record:
    /// [`Error::Truncated`] if a program that ignores mapshare cut the
    /// file since (or while) the record was read, in which case
    /// [`Record::bytes`] may have shown zeros where the pages were (the
    /// process does not die of `SIGBUS`). One `fstat`. Call it after
    /// using the bytes, before acting on them.
    pub fn check(&self) -> Result<()> {
        self.seg.file().region().check()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let (true, Some(slot)) = (self.tethered, self.cursor) {
            cursor::untether(&self.log.meta, slot);
        }
    }
}

impl Reader {
    pub(crate) fn new(log: Log, start: Start) -> Result<Reader> {
        let mut cursor_slot = None;
        let mut tether = None;
        let target = match start {
            Start::Earliest => None,
            Start::Latest => return Reader::at_latest(log),
            Start::Seq(s) => Some(s),
            Start::Cursor(name) => {
                // A new cursor starts at the first record still there.
                let first = log.first_segment()?.base;
                let (slot, pos) = cursor::find_or_create(&log.meta, &name, first)?;
                cursor_slot = Some(slot);
                Some(pos)
            }
            Start::Tethered { name, max_lag } => {
                let first = log.first_segment()?.base;
                let (slot, pos) = cursor::find_or_create(&log.meta, &name, first)?;
                cursor_slot = Some(slot);
                tether = Some((slot, pos, max_lag));
                Some(pos)
            }
        };
        let mut r = Reader::at_earliest(log)?;
        r.cursor = cursor_slot;
        if let Some(seq) = target {
            r.seek(seq)?;
        }
        if let Some((slot, pos, max_lag)) = tether {
            cursor::tether(&r.log.meta, slot, pos, max_lag)?;
            r.tethered = true;
        }
        Ok(r)
    }

    fn with(log: Log, seg: Segment, pos: Pos) -> Reader {
        let next_seq = seg.base + pos.idx;
        Reader {
            log,
            seg,
            pos,
            floor: 0,
            next_seq,
            lagged: None,
            cursor: None,
            tethered: false,
            next_check: None,
            empty_at: None,
            looked_quickly: false,
            spin: Spin::default(),
        }
    }

    fn at_earliest(log: Log) -> Result<Reader> {
        let seg = log.first_segment()?;
        Ok(Reader::with(log, seg, Pos { p: 0, idx: 0 }))
    }

    fn at_latest(log: Log) -> Result<Reader> {
        let mut seg = Segment::open(log.dir(), log.last_number()?, Role::Reader)?;
        for _ in 0..64 {
            let (off, count) = p::tail_parts(seg.load(p::TAIL, Acquire));
            if off <= seg.geo.usable() {
                return Ok(Reader::with(log, seg, Pos { p: off, idx: count }));
            }
            let count = log.end_of(&seg)?;
            seg = log.follow(&seg, count)?;
        }
        Err(Error::Busy {
            origin: seg.origin().clone(),
            why: "segments keep filling while looking for the end".into(),
        })
    }

    /// Moves to sequence number `seq` (or the first record after it):
    /// finds its segment, jumps to the nearest index entry at or before
    /// it, and skips at most `INDEX_EVERY` records. Records already
    /// deleted make the next read report [`Error::Lagged`].
    pub fn seek(&mut self, seq: u64) -> Result<()> {
        self.seg
            .file()
            .lease()
            .check_owner(self.seg.file().region())?;
        let first = self.log.first_segment()?;
        if seq < first.base {
            self.lagged = Some((first.base - seq, first.base));
        }
        let (_, last) = self.log.range()?;
        let mut seg = first;
        // The last segment whose base is at or below `seq`.
        let mut n = last;
        while n > seg.number {
            match Segment::open(self.log.dir(), n, Role::Reader) {
                Ok(s) if s.base <= seq => {
                    seg = s;
                    break;
                }
                Ok(_) | Err(Error::NotFound { .. }) => n -= 1,
                Err(e) => return Err(e),
            }
        }
        let mut pos = Pos { p: 0, idx: 0 };
        if seq > seg.base {
            // No segment holds more records than it has 8-byte words: a
            // target past that (a far sequence number, a scribbled cursor)
            // starts the walk at the last entry that can exist (found in
            // review: the walk from the target's own entry never ended).
            let target = (seq - seg.base).min(seg.geo.usable() / 8);
            let mut e = target / p::INDEX_EVERY * p::INDEX_EVERY;
            while e > 0 {
                if let Some(at) = seg.geo.index_at(e) {
                    let v = seg.load(at, Acquire);
                    if v != 0 && v - 1 <= seg.geo.usable() && (v - 1) % 8 == 0 {
                        let (state, widx, _) = p::split(seg.load(seg.geo.at(v - 1), Acquire));
                        if (p::CLAIMED..=p::ABORTED).contains(&state) && widx == e {
                            pos = Pos { p: v - 1, idx: e };
                            break;
                        }
                    }
                }
                e -= p::INDEX_EVERY;
            }
        }
        self.next_seq = seg.base + pos.idx;
        self.seg = seg;
        self.pos = pos;
        self.floor = seq;
        Ok(())
    }

    /// The next sequence number this reader will deliver (or skip past,
    /// if it was aborted): what [`Reader::commit`] stores.
    pub fn position(&self) -> u64 {
        self.next_seq.max(self.floor)
    }

    /// Stores this reader's position under its durable cursor's name
    /// (readers not opened with [`Start::Cursor`] have none: an error).
    pub fn commit(&mut self) -> Result<()> {
        self.seg
            .file()
            .lease()
            .check_owner(self.seg.file().region())?;
        match self.cursor {
            Some(slot) => cursor::store(&self.log.meta, slot, self.position()),
            None => Err(Error::Unsupported {
                origin: Origin::path(self.log.dir()),
                what: "commit",
                why: "this reader has no durable cursor (open it with Start::Cursor)",
            }),
        }
    }

    /// Steps to the next committed record at or above the floor; returns
    /// its data offset, length and sequence number, and moves past it.
    /// Marks the records of dead writers (at most once per
    /// [`CHECK_EVERY`] at one position: the check asks the kernel).
    fn advance(&mut self) -> Result<Option<(u64, u32, u64)>> {
        // Every read goes through here: a forked child's copy of a reader
        // is its parent's (its position, its tether), never to be moved.
        self.seg
            .file()
            .lease()
            .check_owner(self.seg.file().region())?;
        if let Some((skipped, resume_at)) = self.lagged.take() {
            return Err(Error::Lagged {
                origin: Origin::path(self.log.dir()),
                skipped,
                resume_at,
            });
        }
        for _ in 0..1 << 20 {
            let here = self.here();
            // Whether the dead-writer check may run here, and when it was
            // asked: the clock is read only for a pending record.
            let mut asked: Option<(Instant, bool)> = None;
            let next_check = self.next_check;
            let repair = || {
                let now = Instant::now();
                let ok = !matches!(next_check, Some((at, t)) if at == here && now < t);
                asked = Some((now, ok));
                ok
            };
            let quick = self.empty_at != Some(here);
            match scan(&self.log.meta, &self.seg, &mut self.pos, quick, repair)? {
                Found::Record { len } => {
                    let seq = self.seg.base + self.pos.idx;
                    let at = self.pos.p;
                    let stored = self.seg.load(self.seg.geo.at(at) + p::R_SEQ, Acquire);
                    if stored != seq {
                        return Err(self.seg.corrupted(format!(
                            "record at {at} says sequence {stored}, expected {seq}"
                        )));
                    }
                    self.pos.p += p::span(u64::from(len));
                    self.pos.idx += 1;
                    self.next_seq = seq + 1;
                    if seq < self.floor {
                        continue;
                    }
                    if self.tethered {
                        if let Some(slot) = self.cursor {
                            cursor::tether_moved(&self.log.meta, slot, seq + 1);
                        }
                    }
                    // After the tether moved: a writer it holds back
                    // does not wait for this.
                    self.seg.populate_ahead(self.pos.p, false);
                    return Ok(Some((at, len, seq)));
                }
                Found::End { count } => {
                    if self.seg.number + 1 < self.log.meta.load(FIRST)? {
                        // Retention deleted the next segment while we
                        // were in this one (we opened it in the instant
                        // before its own deletion): never re-create it.
                        let end = self.seg.base + count;
                        let first = self.log.first_segment()?;
                        let resume_at = first.base;
                        self.seg = first;
                        self.pos = Pos { p: 0, idx: 0 };
                        self.next_seq = resume_at;
                        return Err(Error::Lagged {
                            origin: Origin::path(self.log.dir()),
                            skipped: resume_at.saturating_sub(end),
                            resume_at,
                        });
                    }
                    let next = self.log.follow(&self.seg, count)?;
                    self.seg = next;
                    self.pos = Pos { p: 0, idx: 0 };
                    self.next_seq = self.seg.base;
                }
                Found::Empty => {
                    // Zeros from a page an outside truncate cut away look
                    // like "nothing written yet": say which.
                    self.seg.check_faults()?;
                    self.next_seq = self.seg.base + self.pos.idx;
                    self.empty_at = Some(self.here());
                    self.looked_quickly = quick;
                    self.tether_caught_up();
                    // Map ahead while there is nothing to read, so that a
                    // read seldom pays for it.
                    self.seg.populate_ahead(self.pos.p, false);
                    return Ok(None);
                }
                Found::Pending => {
                    self.seg.check_faults()?;
                    self.next_seq = self.seg.base + self.pos.idx;
                    self.empty_at = Some(self.here());
                    self.looked_quickly = false;
                    self.tether_caught_up();
                    if let Some((now, true)) = asked {
                        self.next_check = Some((here, now + CHECK_EVERY));
                    }
                    return Ok(None);
                }
            }
        }
        Err(self
            .seg
            .corrupted("too many records skipped in one read".into()))
    }

    /// Our position as one word (segment number and data offset), for
    /// `next_check` and `empty_at`.
    fn here(&self) -> u64 {
        (self.seg.number << 40) ^ self.pos.p
    }

    /// A tethered reader with nothing to read has also passed what it
    /// skipped (aborted records, holes): its tether moves there too, or
    /// writers would wait for it though it is caught up (found in review).
    fn tether_caught_up(&self) {
        if self.tethered {
            if let Some(slot) = self.cursor {
                cursor::tether_moved(&self.log.meta, slot, self.next_seq.max(self.floor));
            }
        }
    }

    fn checked(&self, at: u64, len: u32, bytes: &[u8]) -> Result<()> {
        let crc = self.seg.load(self.seg.geo.at(at) + p::R_CRC, Acquire) as u32;
        if crate::crc::checksum(bytes) != crc {
            return Err(self
                .seg
                .corrupted(format!("record at {at} ({len} bytes) fails its checksum")));
        }
        Ok(())
    }

    /// The next record, in place, or `None` if there is none yet. (Not
    /// an `Iterator`: the record borrows the reader, and reads can fail.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'_>>> {
        let Some((at, len, seq)) = self.advance()? else {
            return Ok(None);
        };
        let rec = Record {
            seg: &self.seg,
            at,
            len,
            seq,
        };
        self.checked(at, len, rec.bytes())?;
        Ok(Some(rec))
    }

    /// Copies the next record into `out` with atomic loads only (sound
    /// against any peer) and returns its sequence number; `None` if there
    /// is none yet.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Result<Option<u64>> {
        let Some((at, len, seq)) = self.advance()? else {
            return Ok(None);
        };
        self.seg.copy_out(at, len as usize, out);
        self.checked(at, len, out)?;
        Ok(Some(seq))
    }

    /// Whether the word at our position says something a read would act
    /// on (cheap: one load, no system call).
    fn ready(&self) -> bool {
        let w = self.seg.load(self.seg.geo.at(self.pos.p), Acquire);
        let (state, _, _) = p::split(w);
        state >= p::COMMITTED
    }

    /// Waits until a record may be there, up to `deadline`: spins, then
    /// parks on the log's futex word in slices of [`CHECK_EVERY`] (after
    /// each, the next read checks stuck writers' leases). After a quick
    /// look it only spins: the caller's next read looks in full first.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<()> {
        if spin_until(self.spin, deadline, || self.ready()) || self.looked_quickly {
            return Ok(());
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(());
        }
        let slice = deadline.map_or(now + CHECK_EVERY, |d| d.min(now + CHECK_EVERY));
        let ev = self.log.meta.event()?;
        ev.wait_until(|| self.ready(), Some(slice), &Futex, &Symmetric);
        Ok(())
    }

    /// After a read found nothing: `false` once `timeout` has passed since
    /// the first such read (whose clock read sets `deadline`; `None` in
    /// it: a timeout too long for the clock, that is forever), else waits
    /// a while and says `true`.
    fn wait_more(
        &mut self,
        deadline: &mut Option<Option<Instant>>,
        timeout: Duration,
    ) -> Result<bool> {
        let now = Instant::now();
        let d = *deadline.get_or_insert(now.checked_add(timeout));
        if d.is_some_and(|d| now >= d) {
            return Ok(false);
        }
        self.wait(d)?;
        Ok(true)
    }

    /// The next record, waiting up to `timeout` for one (`None` then).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Record<'_>>> {
        // The clock is read only once there is nothing to read: on a VM
        // a clock read costs a third of a hand-off between cores.
        let mut deadline = None;
        let found = loop {
            if let Some(f) = self.advance()? {
                break f;
            }
            if !self.wait_more(&mut deadline, timeout)? {
                return Ok(None);
            }
        };
        let (at, len, seq) = found;
        let rec = Record {
            seg: &self.seg,
            at,
            len,
            seq,
        };
        self.checked(at, len, rec.bytes())?;
        Ok(Some(rec))
    }

    /// [`Reader::next_into`], waiting up to `timeout`.
    pub fn next_into_timeout(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<Option<u64>> {
        let mut deadline = None;
        loop {
            if let Some(seq) = self.next_into(out)? {
                return Ok(Some(seq));
            }
            if !self.wait_more(&mut deadline, timeout)? {
                return Ok(None);
            }
        }
    }

    /// Sets how long a wait ([`Reader::next_timeout`]) spins before it
    /// parks (20 µs by default). Readers that outnumber the cores are
    /// better off parking at once: a spinning reader holds a core that a
    /// woken one is waiting for.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The first sequence number still in the log (for telling how far
    /// behind retention a position is).
    pub fn first_seq(&self) -> Result<u64> {
        Ok(self.log.first_segment()?.base)
    }
}

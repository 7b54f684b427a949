//! The [`Writer`]: the one process that publishes versions.

use std::path::Path;
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

use super::protocol::{self, StdFence, Version, MAX_GENERATION, MAX_SLOTS};
use super::{
    checksum, first_capacity, init, round_up_page, spec, Control, Segments, DEFAULT_CAPACITY,
    FIRST_CAPACITY, MAX_VALUE, RO_RECHECK, RO_WAIT_BYTE, SEG_CAPACITY, SEG_OFFSET, SLOT_GENERATION,
    SLOT_LEN,
};
use crate::crc::copy_with_checksum;
use crate::error::{Error, Result};
use crate::file::SharedFile;
use crate::region::Access;
use crate::shared::Persistent;
use crate::sync::{Futex, Park, Symmetric};
use crate::sys::lock::LockKind;
use crate::{role, sys};

/// What the writer does when every slot in use is current or pinned by a
/// live reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowReaders {
    /// Add a slot (a new segment), up to `max` slots in all (at most 64);
    /// beyond that, fail with [`Error::Busy`]. The default, with 64.
    AddSlots {
        /// Most slots.
        max: u32,
    },
    /// Keep the slots there are (at least 2) and wait up to `timeout` for
    /// a reader to unpin one, checking for dead readers meanwhile; then
    /// [`Error::Timeout`]. The wait polls (sleeps of 50 µs to 1 ms):
    /// unpinning stays a plain store, with no wake-up call on the reader's
    /// side.
    Wait {
        /// Longest wait per publish.
        timeout: Duration,
    },
    /// Keep the slots there are (at least 2) and fail at once with
    /// [`Error::Busy`].
    Fail,
}

impl Default for SlowReaders {
    fn default() -> Self {
        SlowReaders::AddSlots { max: MAX_SLOTS }
    }
}

/// How a [`Writer`] opens or creates its file.
#[derive(Debug, Clone)]
pub struct Options {
    /// Capacity of each slot's first segment, if the file is created here
    /// (rounded up to a page; larger values grow it).
    pub capacity: u64,
    /// The slow-readers policy.
    pub slow_readers: SlowReaders,
    /// Permission bits if the file is created (0644 lets other users read
    /// it with a [`ReadOnlyReader`](super::ReadOnlyReader)); `0o000..=0o777`
    /// only: setuid, setgid and sticky are [`Error::InvalidArgument`].
    pub mode: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            capacity: DEFAULT_CAPACITY,
            slow_readers: SlowReaders::default(),
            mode: 0o600,
        }
    }
}

/// The one writer of a snapshot. The role is held through this process's
/// lease: a second live writer is refused ([`Error::RoleTaken`] with its
/// PID); a dead writer's role is taken over.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::snapshot::{Reader, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("config");
///
/// let mut w = Writer::open(&path)?;
/// let g = w.publish(b"mode=fast")?;
///
/// let mut r = Reader::open(&path)?;
/// let v = r.read()?.expect("published");
/// assert_eq!((v.generation(), &*v), (g, &b"mode=fast"[..]));
/// # Ok(()) }
/// ```
pub struct Writer {
    file: SharedFile,
    c: Control,
    segments: Segments,
    policy: SlowReaders,
    /// Lease tokens known dead (a dead lease never comes back).
    dead: Vec<u64>,
    /// Read-only waiters seen at the last check, and when to check again.
    ro_waiters: bool,
    ro_check: Option<Instant>,
    /// The reader high-water mark as this writer has seen it: it only
    /// grows, so a lowered shared word cannot hide live entries.
    high_water: u32,
    /// Segments `(offset, capacity)` per slot as this writer last checked
    /// them against the others (for overlap); a changed entry is checked
    /// again.
    checked: [(u64, u64); MAX_SLOTS as usize],
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("origin", &self.c.origin)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Opens the snapshot at `path` as its writer, creating it (with
    /// [`Options::default`]) if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Writer> {
        Writer::open_with(path, &Options::default())
    }

    /// Opens or creates the snapshot at `path` as its writer.
    pub fn open_with(path: impl AsRef<Path>, options: &Options) -> Result<Writer> {
        let path = path.as_ref();
        let origin = crate::error::Origin::path(path);
        let capacity = first_capacity(&origin, options.capacity)?;
        let mut spec = spec();
        spec.mode = options.mode;
        let file = SharedFile::open_or_create(path, &spec, |r, h| init(r, h, capacity))?;
        Writer::attach(file, options.slow_readers)
    }

    pub(super) fn attach(file: SharedFile, policy: SlowReaders) -> Result<Writer> {
        let c = Control::new(file.region(), file.header())?;
        file.lease().check_owner(file.region())?;
        role::claim(&file, c.writer_role(), "snapshot writer")?;
        let segments = match Segments::new(file.region().file(), &c.origin, Access::ReadWrite) {
            Ok(s) => s,
            Err(e) => {
                role::unclaim(&file, c.writer_role());
                return Err(e);
            }
        };
        let w = Writer {
            file,
            c,
            segments,
            policy,
            dead: Vec::new(),
            ro_waiters: false,
            ro_check: None,
            high_water: 0,
            checked: [(0, 0); MAX_SLOTS as usize],
        };
        if let Err(e) = w.c.load_current().and(w.slots_in_use().map(|_| ())) {
            role::unclaim(&w.file, w.c.writer_role());
            return Err(e);
        }
        Ok(w)
    }

    /// Sets the slow-readers policy.
    pub fn set_slow_readers(&mut self, policy: SlowReaders) {
        self.policy = policy;
    }

    /// The last published generation (0 if none; a cut file is
    /// [`Error::Truncated`]).
    pub fn generation(&self) -> Result<u64> {
        let g = self.c.load_current().map(|v| v.map_or(0, |v| v.generation));
        self.file.region().check_faults()?;
        g
    }

    /// Publishes `value` as a new version; returns its generation.
    ///
    /// The copy into the slot and the checksum are one pass over `value`
    /// where the CPU allows (see [`checksum`](super::checksum)).
    pub fn publish(&mut self, value: &[u8]) -> Result<u64> {
        self.publish_filled(value.len(), |buf| copy_with_checksum(value, buf))
    }

    /// Publishes a typed value's bytes.
    pub fn publish_value<T: Persistent>(&mut self, value: &T) -> Result<u64> {
        self.publish(value.as_bytes())
    }

    /// Publishes a new version of `len` bytes that `fill` writes in place.
    /// Nothing is published if `fill` panics; the previous version stays
    /// current.
    ///
    /// `fill` gets the slot's bytes as they were (an older version's, or
    /// zeros). Read-only readers of the file may be copying those bytes
    /// while `fill` runs; they discard such copies (see the module docs).
    pub fn publish_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<u64> {
        self.publish_filled(len, |buf| {
            fill(buf);
            checksum(buf)
        })
    }

    /// Publishes a new version of `len` bytes that `fill` writes in place
    /// and returns the checksum of. Words read from pages an outside
    /// truncate cut away are zeros: any failure is reported as
    /// [`Error::Truncated`] when a page vanished (never "role taken by
    /// process 0" or a corrupted word), and nothing is published then.
    fn publish_filled(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> u32) -> Result<u64> {
        let published = self.publish_checked(len, fill);
        if published.is_err() {
            self.file.region().check_faults()?;
            self.segments.check_faults()?;
        }
        published
    }

    fn publish_checked(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> u32) -> Result<u64> {
        self.file.lease().check_owner(self.file.region())?;
        // A cut seen before (sticky until the file is reopened).
        self.file.region().check_faults()?;
        if !role::holds(&self.file, self.c.writer_role()) {
            return Err(self.taken_over());
        }
        let len64 = len as u64;
        if len64 > MAX_VALUE {
            return Err(Error::TooLarge {
                origin: self.c.origin.clone(),
                what: "snapshot value",
                len: len64,
                max: MAX_VALUE,
            });
        }
        let cur = self.c.load_current()?;
        let generation = cur.map_or(1, |v| v.generation + 1);
        if generation > MAX_GENERATION {
            return Err(self.c.corrupted(
                "snapshot generation",
                format!("{generation} is past the last"),
            ));
        }
        let slot = self.choose_slot(cur)?;
        let (offset, capacity) = self.ensure_segment(slot, len64)?;
        // Read-only readers may still be copying this slot's previous
        // contents: order our writes after the store of `current` that
        // moved away from it (see `protocol::still_current`).
        fence(Release);
        let region = self.segments.get(&self.c, offset, capacity)?;
        let ptr = region.as_mut_ptr()?;
        // SAFETY: the segment mapping holds `capacity >= len` writable
        // bytes; the slot is neither current nor pinned by a live reader,
        // so no reader of this protocol reads them (read-only readers read
        // with atomic loads and discard what they read here), and this
        // process reaches them only through this slice.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        let crc = fill(buf);
        self.segments.check_faults()?;
        self.file.region().check_faults()?;
        self.c.slot_word(slot, SLOT_LEN).store(len64, Relaxed);
        self.c.slot_crc(slot).store(crc, Relaxed);
        self.c
            .slot_word(slot, SLOT_GENERATION)
            .store(generation, Relaxed);
        protocol::publish(self.c.current(), Version { generation, slot });
        self.wake_readers();
        Ok(generation)
    }

    /// Wakes parked readers: one wake-all, only if someone sleeps (or a
    /// read-only waiter is registered).
    fn wake_readers(&mut self) {
        let read_only = self.read_only_waiters();
        let ev = self.c.event();
        if read_only {
            ev.seq.fetch_add(1, SeqCst);
            Futex.wake(ev.seq, i32::MAX as u32);
        } else {
            ev.notify_if_sleeping(i32::MAX as u32, &Futex, &Symmetric);
        }
    }

    /// Whether a read-only reader waits (holds its lock byte), checked at
    /// most every `RO_RECHECK`.
    fn read_only_waiters(&mut self) -> bool {
        let now = Instant::now();
        if self.ro_check.is_some_and(|t| now < t) {
            return self.ro_waiters;
        }
        self.ro_check = Some(now + RO_RECHECK);
        self.ro_waiters = matches!(
            sys::lock::holder(
                self.file.region().file(),
                LockKind::Exclusive,
                RO_WAIT_BYTE,
                1
            ),
            Ok(Some(_)) | Err(_)
        );
        self.ro_waiters
    }

    fn taken_over(&self) -> Error {
        let token = self.c.writer_role().load(Acquire);
        let pid = role::liveness(&self.file, token, "snapshot writer role").map_or(0, |l| l.0);
        Error::RoleTaken {
            origin: self.c.origin.clone(),
            role: "snapshot writer",
            pid,
        }
    }

    fn slots_in_use(&self) -> Result<u32> {
        let n = self.c.slots_in_use().load(Acquire);
        if n > u64::from(MAX_SLOTS) {
            return Err(self.c.corrupted(
                "snapshot slot count",
                format!("{n} slots (at most {MAX_SLOTS})"),
            ));
        }
        Ok(n as u32)
    }

    /// A slot that is neither current nor pinned by a live reader, per
    /// the slow-readers policy.
    fn choose_slot(&mut self, cur: Option<Version>) -> Result<u32> {
        let n = self.slots_in_use()?;
        if let Some(c) = cur.filter(|c| c.slot >= n) {
            return Err(self.c.corrupted(
                "snapshot slot count",
                format!("{n} slots in use, but slot {} is current", c.slot),
            ));
        }
        // The high-water mark is loaded after the fence, like the pins: a
        // reader that raised it before pinning is scanned. It only grows.
        let mut entries = 0;
        let seen = self.high_water;
        let busy = protocol::pinned_slots::<_, StdFence, _>(|| {
            entries = self.c.entries_in_use().max(seen);
            (0..entries).map(|e| self.c.pin(e))
        });
        self.high_water = entries;
        if let Some(s) = protocol::free_slot(busy, cur, n) {
            return Ok(s);
        }
        let start = Instant::now();
        let mut nap = Duration::from_micros(50);
        loop {
            // Slow path: pins of dead readers do not count.
            let busy = self.live_pins(entries)?;
            if let Some(s) = protocol::free_slot(busy, cur, n) {
                return Ok(s);
            }
            let may_add = match self.policy {
                SlowReaders::AddSlots { max } => n < max.clamp(2, MAX_SLOTS),
                _ => n < 2,
            };
            if may_add {
                // A live pin on a slot past the count means the count was
                // lowered behind our back: never hand that slot out.
                if busy >> n != 0 {
                    return Err(self.c.corrupted(
                        "snapshot slot count",
                        format!("{n} slots in use, but a live reader pins one past them"),
                    ));
                }
                self.c.slots_in_use().store(u64::from(n) + 1, Release);
                return Ok(n);
            }
            let deadline = match self.policy {
                SlowReaders::Wait { timeout } => start.checked_add(timeout),
                _ => Some(start),
            };
            // A deadline past what `Instant` can hold: wait for ever.
            let deadline = deadline.unwrap_or_else(|| start + Duration::from_secs(1 << 32));
            let now = Instant::now();
            if now >= deadline {
                return Err(match self.policy {
                    SlowReaders::Wait { .. } => Error::Timeout {
                        origin: self.c.origin.clone(),
                        what: "waiting for a reader to unpin a slot",
                        waited: now - start,
                    },
                    _ => Error::Busy {
                        origin: self.c.origin.clone(),
                        why: format!(
                            "all {n} slots are current or pinned by live readers (slow-readers policy {:?})",
                            self.policy
                        ),
                    },
                });
            }
            std::thread::sleep(nap.min(deadline - now));
            nap = (nap * 2).min(Duration::from_millis(1));
        }
    }

    /// The slots pinned by live readers. Each entry's owner is loaded
    /// after its pin: a pin stored by a new owner of the entry is then
    /// never attributed to the dead one it replaced. (Called after
    /// `pinned_slots`, whose fence orders these loads after our last store
    /// of `current`.)
    fn live_pins(&mut self, entries: u32) -> Result<u64> {
        let mut busy = 0u64;
        for e in 0..entries {
            let pin = self.c.pin(e).load(Acquire);
            let Ok(Some(v)) = Version::unpack(pin) else {
                continue;
            };
            let owner = self.c.owner(e).load(Acquire);
            if owner != 0 && self.is_dead(owner)? {
                continue;
            }
            busy |= 1 << v.slot;
        }
        Ok(busy)
    }

    fn is_dead(&mut self, token: u64) -> Result<bool> {
        if self.dead.contains(&token) {
            return Ok(true);
        }
        // A word that is no token pins conservatively (as if alive).
        let alive = match role::liveness(&self.file, token, "snapshot reader entry") {
            Ok((_, alive)) => alive,
            Err(Error::Corrupted { .. }) => true,
            Err(e) => return Err(e),
        };
        if !alive {
            if self.dead.len() >= 1024 {
                self.dead.clear();
            }
            self.dead.push(token);
        }
        Ok(!alive)
    }

    /// Slot `slot`'s segment, grown to hold `len` bytes: `(offset,
    /// capacity)`. The slot is free (not current, not pinned).
    fn ensure_segment(&mut self, slot: u32, len: u64) -> Result<(u64, u64)> {
        let offset = self.c.slot_word(slot, SEG_OFFSET).load(Acquire);
        let capacity = self.c.slot_word(slot, SEG_CAPACITY).load(Acquire);
        let have = offset != 0 || capacity != 0;
        if have {
            self.c.check_segment(offset, capacity)?;
            if self.checked[slot as usize] != (offset, capacity) {
                self.check_no_overlap(slot, offset, capacity)?;
                self.checked[slot as usize] = (offset, capacity);
            }
            if capacity >= len {
                self.segments.get(&self.c, offset, capacity)?;
                return Ok((offset, capacity));
            }
        }
        let first = self.c.u64_at(FIRST_CAPACITY).load(Acquire);
        let first = match round_up_page(first.max(1)) {
            Some(f) if f <= MAX_VALUE => f,
            _ => DEFAULT_CAPACITY,
        };
        let need = round_up_page(len.max(1))
            .and_then(u64::checked_next_power_of_two)
            .unwrap_or(2 * MAX_VALUE);
        let new_cap = need.max(first).max(if have { 2 * capacity } else { 0 });
        let at = self.allocate(new_cap)?;
        // Offset first: a writer dying between the two stores leaves the
        // new offset with the old, smaller capacity, which lies inside the
        // new segment.
        self.c.slot_word(slot, SEG_OFFSET).store(at, Release);
        self.c.slot_word(slot, SEG_CAPACITY).store(new_cap, Release);
        self.segments.get(&self.c, at, new_cap)?;
        Ok((at, new_cap))
    }

    /// Fails with `Corrupted` if slot `slot`'s segment overlaps another
    /// slot's (a slot table changed behind our back would otherwise have
    /// us write into a version a reader holds).
    fn check_no_overlap(&self, slot: u32, offset: u64, capacity: u64) -> Result<()> {
        for other in (0..MAX_SLOTS).filter(|&o| o != slot) {
            let o = self.c.slot_word(other, SEG_OFFSET).load(Acquire);
            let c = self.c.slot_word(other, SEG_CAPACITY).load(Acquire);
            if c != 0 && o < offset.saturating_add(capacity) && offset < o.saturating_add(c) {
                return Err(self.c.corrupted(
                    "snapshot segment",
                    format!(
                        "slot {slot}'s segment ({capacity} bytes at {offset}) overlaps slot {other}'s ({c} bytes at {o})"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The end of the furthest slot segment.
    fn segments_end(&self) -> u64 {
        (0..MAX_SLOTS)
            .map(|s| {
                let o = self.c.slot_word(s, SEG_OFFSET).load(Acquire);
                let c = self.c.slot_word(s, SEG_CAPACITY).load(Acquire);
                o.saturating_add(c)
            })
            .max()
            .unwrap_or(0)
    }

    /// Reserves `len` bytes at the data end and moves the data end past
    /// them (before any slot names them). A data end before a slot's
    /// segment end was lowered behind our back: `Corrupted`, never a new
    /// segment over a version a reader holds.
    fn allocate(&mut self, len: u64) -> Result<u64> {
        let end = self.c.data_end().load(Acquire);
        let size = self.file.region().file_len()?;
        let segments_end = self.segments_end();
        if segments_end > size && segments_end <= end {
            // A segment the writer reserved (space first, then the data
            // end, then the slot) is gone: the file was cut behind our
            // back. A data end past the file with every segment inside it
            // is a corrupted word instead.
            return Err(Error::Truncated {
                origin: self.c.origin.clone(),
                expected: segments_end,
                actual: size,
            });
        }
        if end < self.c.data_start
            || !end.is_multiple_of(super::page())
            || end > size
            || end < segments_end
        {
            return Err(self.c.corrupted(
                "snapshot data end",
                format!(
                    "{end} (segments start at {}, the file has {size} bytes)",
                    self.c.data_start
                ),
            ));
        }
        let new_end = end.checked_add(len).filter(|&e| e <= i64::MAX as u64 / 2);
        let Some(new_end) = new_end else {
            return Err(Error::TooLarge {
                origin: self.c.origin.clone(),
                what: "snapshot value",
                len,
                max: MAX_VALUE,
            });
        };
        sys::reserve(self.file.region().file(), end, len).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC) => Error::NoSpace {
                origin: self.c.origin.clone(),
                len,
                source: e,
            },
            _ => Error::io(&self.c.origin, "fallocate", e),
        })?;
        self.c.data_end().store(new_end, Release);
        Ok(end)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Gives the role back (not in a forked child: it names the parent).
        role::unclaim(&self.file, self.c.writer_role());
    }
}

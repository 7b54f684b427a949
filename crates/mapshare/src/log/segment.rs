//! One segment file: a mapshare file of kind `log-segment` whose object is
//! the control block, the writer registry, the seek index and the data
//! area (see the layout table in the [module documentation](super)).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{self, AcqRel, Acquire, Relaxed};
use std::sync::atomic::{AtomicU64, Ordering::Release};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::protocol::{self as p, Geometry, Mem, BAD_WORD};
use crate::error::{Error, Origin, Result};
use crate::file::{SharedFile, SlotChoice, Spec};
use crate::format::{Fingerprint, Kind, MAX_LEASE_SLOTS};
use crate::lease::{Liveness, Token};

/// How far ahead of its position a writer or reader keeps its mapping of
/// a segment populated ([`Segment::populate_ahead`]).
pub(crate) const POPULATE_AHEAD: u64 = 1 << 20;

/// The segment format's fingerprint.
pub(crate) fn fingerprint() -> Fingerprint {
    Fingerprint::new("mapshare::log-segment/v1", p::HDR, 8)
}

/// Who attaches to a segment. Its lease table's first
/// [`REGISTRY_SLOTS`](p::REGISTRY_SLOTS) slots are the writers' (a
/// writer's slot is its registry entry); everyone else (readers,
/// retention, `info`) takes the slots after them, so no number of readers
/// can lock a writer out. New segments have [`MAX_LEASE_SLOTS`] slots:
/// 256 for writers, 768 for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Appends: registers in the writer registry.
    Writer,
    /// Reads, or looks (retention, `info`): pins the segment only.
    Reader,
}

impl Role {
    /// The lease slots this role may take in a table of `n` slots. A
    /// segment made before the split (256 slots, as many as registry
    /// entries) has no slots past the writers': readers share the table
    /// there, as they always did.
    fn slots(self) -> SlotChoice {
        match self {
            Role::Writer => |n| 0..n.min(p::REGISTRY_SLOTS),
            Role::Reader => |n| {
                if n > p::REGISTRY_SLOTS {
                    p::REGISTRY_SLOTS..n
                } else {
                    0..n
                }
            },
        }
    }
}

/// Smallest data area accepted.
pub const MIN_CAPACITY: u64 = 4096;

/// The path of segment `number` in `dir`.
pub(crate) fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.seg"))
}

/// Where a segment size to check came from.
#[derive(Clone, Copy)]
pub(crate) enum Given {
    /// The caller's options: a bad one is [`Error::InvalidArgument`].
    ByCaller,
    /// A shared word or a header: a bad one is [`Error::Corrupted`].
    Stored,
}

/// Checks a data capacity.
pub(crate) fn check_capacity(origin: &Origin, capacity: u64, given: Given) -> Result<()> {
    if !(MIN_CAPACITY..=p::MAX_CAPACITY).contains(&capacity) || !capacity.is_multiple_of(8) {
        let origin = origin.clone();
        let what = "log segment size";
        let why = format!(
            "{capacity} bytes; a segment holds a multiple of 8 between {MIN_CAPACITY} and {} bytes",
            p::MAX_CAPACITY
        );
        return Err(match given {
            Given::ByCaller => Error::InvalidArgument { origin, what, why },
            Given::Stored => Error::Corrupted { origin, what, why },
        });
    }
    Ok(())
}

/// A mapped segment. Holding one pins the file: this process's lease in
/// it is what retention checks before deleting it.
pub(crate) struct Segment {
    file: SharedFile,
    /// The object's first byte (page-aligned).
    obj: *mut u8,
    /// Bytes of the object, from the checksummed header.
    len: u64,
    pub geo: Geometry,
    pub number: u64,
    /// First sequence number (validated against the previous segment by
    /// whoever follows the chain).
    pub base: u64,
    /// Whose lease slot this handle holds (the next segment is opened in
    /// the same role).
    pub role: Role,
    /// Data offset up to which this mapping is populated (this process's
    /// own note; see [`Segment::populate_ahead`]).
    populated: AtomicU64,
}

// SAFETY: `obj` points into `file`'s mapping, which moves with the
// segment and is never remapped (nobody gets `&mut` to its region); all
// shared words are accessed atomically, and payload bytes only under the
// log protocol (see the module docs).
unsafe impl Send for Segment {}
// SAFETY: as for `Send`: `&Segment` only gives atomic access to words.
unsafe impl Sync for Segment {}

/// A segment as [`Segment::peek`] reads it (see `SegmentInfo`).
pub(crate) struct Peek {
    pub base: u64,
    pub reserved: u64,
    pub used: u64,
    pub capacity: u64,
    pub closed: bool,
    pub file_len: u64,
    pub writers: u32,
}

impl Segment {
    /// Opens segment `number` of `dir`, creating it with first sequence
    /// number `base` and `capacity` data bytes if it does not exist. An
    /// existing one must have that base (else `Corrupted`).
    pub fn open_or_create(
        dir: &Path,
        number: u64,
        base: u64,
        capacity: u64,
        role: Role,
    ) -> Result<Segment> {
        let path = path(dir, number);
        let origin = Origin::path(&path);
        // The caller checked an option as such; a bad value here came
        // from the log's shared `meta`.
        check_capacity(&origin, capacity, Given::Stored)?;
        let geo = Geometry::new(capacity);
        let mut spec = Spec::new(Kind::LogSegment, fingerprint(), geo.object_len());
        spec.lease_slots = MAX_LEASE_SLOTS;
        // An append into a page cut inside must not be reported stored.
        spec.guard_page = true;
        let file =
            SharedFile::open_or_create_within(&path, &spec, role.slots(), |region, header| {
                let o = header.object_offset;
                let now = now_ms();
                region.write_at(o + p::BASE, &base.to_ne_bytes())?;
                region.write_at(o + p::NUMBER, &number.to_ne_bytes())?;
                region.write_at(o + p::CAPACITY, &capacity.to_ne_bytes())?;
                region.write_at(o + p::CREATED, &now.to_ne_bytes())
            })?;
        let seg = Segment::attach(file, number, role)?;
        if seg.base != base {
            return Err(seg.corrupted(format!(
                "segment {number} starts at sequence {}, its predecessor ends at {base}",
                seg.base
            )));
        }
        Ok(seg)
    }

    /// Opens existing segment `number` of `dir` (`NotFound` if there is
    /// none).
    pub fn open(dir: &Path, number: u64, role: Role) -> Result<Segment> {
        let file = SharedFile::open_within(
            path(dir, number),
            Kind::LogSegment,
            &fingerprint(),
            Duration::from_secs(5),
            role.slots(),
        )?;
        Segment::attach(file, number, role)
    }

    fn attach(file: SharedFile, number: u64, role: Role) -> Result<Segment> {
        let origin = file.region().origin().clone();
        let o = file.object_offset();
        let r = file.region();
        let capacity = r.load_u64(o + p::CAPACITY, Acquire)?;
        let stored = r.load_u64(o + p::NUMBER, Acquire)?;
        let base = r.load_u64(o + p::BASE, Acquire)?;
        let geo =
            p::check_control(capacity, stored, base, file.object_len(), number).map_err(|v| {
                Error::Corrupted {
                    origin: origin.clone(),
                    what: "log segment",
                    why: v.0,
                }
            })?;
        if !o.is_multiple_of(8) || o + geo.object_len() > r.len() as u64 {
            return Err(Error::Truncated {
                origin,
                expected: o + geo.object_len(),
                actual: r.len() as u64,
            });
        }
        if role == Role::Writer && file.lease().token().slot() >= p::REGISTRY_SLOTS {
            return Err(Error::Corrupted {
                origin,
                what: "log segment",
                why: "a writer's lease slot outside the writer registry".into(),
            });
        }
        let obj = r.as_mut_ptr()?.wrapping_add(o as usize);
        Ok(Segment {
            populated: AtomicU64::new(0),
            len: geo.object_len(),
            file,
            obj,
            geo,
            number,
            base,
            role,
        })
    }

    pub fn file(&self) -> &SharedFile {
        &self.file
    }

    pub fn origin(&self) -> &Origin {
        self.file.region().origin()
    }

    /// The word at object offset `at`, if it is in bounds and aligned.
    #[inline]
    fn word(&self, at: u64) -> Option<&AtomicU64> {
        if !at.is_multiple_of(8) || at.checked_add(8)? > self.len {
            return None;
        }
        // SAFETY: `obj` is page-aligned plus 8-aligned `at`, and
        // `at..at + 8` lies inside the object, which lies inside the
        // mapping (checked in `attach`); the mapping lives as long as
        // `self`. Log words are only ever accessed as `AtomicU64`s.
        Some(unsafe { AtomicU64::from_ptr(self.obj.add(at as usize).cast()) })
    }

    /// A pointer to data offset `p` (in bounds when `p + len <= capacity`,
    /// which callers check).
    #[inline]
    pub fn data_ptr(&self, p: u64) -> *mut u8 {
        self.obj.wrapping_add(self.geo.at(p) as usize)
    }

    /// Keeps this mapping of the data area populated up to
    /// [`POPULATE_AHEAD`] past `end` (a handle's position), writable for a
    /// writer, for reading for a reader: the handle that passes the
    /// halfway mark of what is populated maps the next ~512 KiB with one
    /// system call, about once per 5,000 records of 64 bytes. A page fault
    /// traps into the kernel, which on this project's VMs costs more than
    /// the ~40 records of 64 bytes that share a page (a writer's first
    /// segment: up to 60% of an append in `perf`; a reader's p99.9: 2.4–3.7
    /// µs with faults, 0.3–0.7 µs without, `peers --log`). The note of how
    /// far it got belongs to the mapping, so a handle that opens the
    /// segment again (a seek, the next segment) starts over. Best effort
    /// ([`Region::populate_hint`](crate::Region)): a page that cannot be
    /// populated shows at its first access, as it would have anyway.
    #[inline]
    pub fn populate_ahead(&self, end: u64, write: bool) {
        if end + POPULATE_AHEAD / 2 > self.populated.load(Relaxed) {
            self.populate_from(end, write);
        }
    }

    #[cold]
    fn populate_from(&self, end: u64, write: bool) {
        let page = crate::sys::page_size() as u64;
        self.populate_range(end / page * page, end + POPULATE_AHEAD, write);
    }

    /// Data offset up to which this mapping is populated.
    pub fn populated(&self) -> u64 {
        self.populated.load(Relaxed)
    }

    /// Populates `[max(from, populated), to)` of the data area (clamped to
    /// it) and notes `to` as populated (also for a pretoucher: see
    /// `log::pretouch`).
    pub fn populate_range(&self, from: u64, to: u64, write: bool) {
        let from = self.populated.load(Relaxed).max(from);
        let to = to.min(self.geo.capacity);
        if from < to {
            let at = self.file().object_offset() + self.geo.at(from);
            let _ = self
                .file()
                .region()
                .populate_hint(at, (to - from) as usize, write);
            self.populated.store(to, Relaxed);
        }
    }

    /// Copies `len` payload bytes of the record at data offset `p` into
    /// `out` with atomic loads only (sound whatever a peer writes).
    pub fn copy_out(&self, p: u64, len: usize, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(len);
        let start = self.geo.at(p) + p::HDR;
        let mut off = 0usize;
        while off < len {
            let w = self.load(start + off as u64, Relaxed).to_ne_bytes();
            let n = (len - off).min(8);
            out.extend_from_slice(&w[..n]);
            off += 8;
        }
    }

    /// `Truncated` if an outside truncate cut the segment (see
    /// [`SharedFile::check_faults`]).
    #[inline]
    pub fn check_faults(&self) -> Result<()> {
        self.file.check_faults()
    }

    pub fn corrupted(&self, why: String) -> Error {
        if let Err(e) = self.check_faults() {
            return e;
        }
        Error::Corrupted {
            origin: self.origin().clone(),
            what: "log segment",
            why,
        }
    }

    pub fn violation(&self, v: p::Violation) -> Error {
        self.corrupted(v.0)
    }

    /// Registers this handle in the writer registry (its pending count
    /// cleared first, then its token): entry = our lease slot.
    pub fn register_writer(&self) -> Result<u32> {
        self.file.lease().check_owner(self.file.region())?;
        let token = self.file.lease().token();
        let slot = token.slot();
        if self.role != Role::Writer || slot >= p::REGISTRY_SLOTS {
            return Err(self.corrupted(format!(
                "lease slot {slot} of a {:?} handle has no writer registry entry",
                self.role
            )));
        }
        let at = p::registry_at(slot);
        self.store(at + 8, 0, Release);
        self.store(at, token.raw(), Release);
        Ok(slot)
    }

    /// Liveness of a lease token read from the segment (untrusted: a
    /// word that is no token counts as dead).
    pub fn alive(&self, token: u64) -> Result<bool> {
        let Some(t) = Token::from_raw(token) else {
            return Ok(false);
        };
        if t.slot() >= p::REGISTRY_SLOTS {
            return Ok(false);
        }
        Ok(!matches!(
            self.file.leases().liveness(t, Some(self.file.lease()))?,
            Liveness::Dead { .. }
        ))
    }

    /// Whether no live writer has a reservation without a published claim
    /// (see `protocol::resolve`).
    pub fn quiet(&self) -> Result<bool> {
        for slot in 0..p::REGISTRY_SLOTS {
            let at = p::registry_at(slot);
            if self.load(at + 8, Acquire) == 0 {
                continue;
            }
            if self.alive(self.load(at, Acquire))? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What `Log::info` shows of segment `number`, read through a
    /// read-only map that takes no lease: for a segment whose reader slots
    /// are all taken (a look must not need one of them).
    pub fn peek(dir: &Path, number: u64, count_writers: bool) -> Result<Peek> {
        let insp = crate::file::Inspection::open(path(dir, number))?;
        let (r, h) = (&insp.region, &insp.header);
        if h.kind != Kind::LogSegment {
            return Err(Error::WrongKind {
                origin: r.origin().clone(),
                expected: format!("{:?}", Kind::LogSegment),
                found: format!("{:?}", h.kind),
            });
        }
        let o = h.object_offset;
        let word = |at: u64| r.load_u64(o + at, Acquire);
        let capacity = word(p::CAPACITY)?;
        let base = word(p::BASE)?;
        let geo = p::check_control(capacity, word(p::NUMBER)?, base, h.object_len, number)
            .map_err(|v| Error::Corrupted {
                origin: r.origin().clone(),
                what: "log segment",
                why: v.0,
            })?;
        let (used, reserved) = p::tail_parts(word(p::TAIL)?);
        let end = word(p::END)?;
        let end = (end & p::SEALED != 0).then_some(end & !p::SEALED);
        let leases = crate::lease::LeaseTable::new(r, h.lease_offset, h.lease_slots);
        let mut writers = 0;
        for slot in (0..p::REGISTRY_SLOTS).filter(|_| count_writers) {
            let token = word(p::registry_at(slot))?;
            let live = Token::from_raw(token)
                .filter(|t| t.slot() < p::REGISTRY_SLOTS)
                .map(|t| leases.liveness(t, None))
                .transpose()?
                .is_some_and(|l| !matches!(l, Liveness::Dead { .. }));
            writers += u32::from(live);
        }
        Ok(Peek {
            base,
            reserved: end.unwrap_or(reserved),
            used: used.min(geo.capacity),
            capacity: geo.capacity,
            closed: end.is_some(),
            file_len: r.len() as u64,
            writers,
        })
    }

    /// What `Log::info` shows of this segment (live writers counted only
    /// if asked: each is a lock probe).
    pub fn look(&self, count_writers: bool) -> Result<Peek> {
        let (used, reserved) = p::tail_parts(self.load(p::TAIL, Acquire));
        let end = p::ended(self);
        Ok(Peek {
            base: self.base,
            reserved: end.unwrap_or(reserved),
            used: used.min(self.geo.capacity),
            capacity: self.geo.capacity,
            closed: end.is_some(),
            file_len: self.file.region().len() as u64,
            writers: if count_writers { self.writers()? } else { 0 },
        })
    }

    /// Live writer handles registered in this segment.
    pub fn writers(&self) -> Result<u32> {
        let mut n = 0;
        for slot in 0..p::REGISTRY_SLOTS {
            let token = self.load(p::registry_at(slot), Acquire);
            if token != 0 && self.alive(token)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Milliseconds since the epoch when the segment was created.
    pub fn created_ms(&self) -> u64 {
        self.load(p::CREATED, Relaxed)
    }

    /// Whether a live process other than this handle is attached.
    pub fn pinned_by_others(&self) -> Result<bool> {
        let me = self.file.lease();
        Ok(self
            .file
            .leases()
            .list(Some(me))?
            .iter()
            .any(|a| a.alive && a.slot != me.token().slot()))
    }
}

impl Mem for Segment {
    #[inline]
    fn load(&self, at: u64, order: Ordering) -> u64 {
        self.word(at).map_or(BAD_WORD, |w| w.load(order))
    }
    #[inline]
    fn store(&self, at: u64, v: u64, order: Ordering) {
        if let Some(w) = self.word(at) {
            w.store(v, order)
        }
    }
    #[inline]
    fn cas(&self, at: u64, current: u64, new: u64) -> std::result::Result<u64, u64> {
        match self.word(at) {
            Some(w) => w.compare_exchange(current, new, AcqRel, Acquire),
            None => Err(BAD_WORD),
        }
    }
    #[inline]
    fn add(&self, at: u64, v: u64) -> u64 {
        self.word(at).map_or(BAD_WORD, |w| w.fetch_add(v, AcqRel))
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

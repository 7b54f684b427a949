//! A persistent broadcast log: many writer processes append records, many
//! independent readers each read all of them, in one total order, from
//! wherever they like (the start, the end, a sequence number, or a named
//! durable cursor stored in the log).
//!
//! ```
//! # fn main() -> mapshare::Result<()> {
//! use mapshare::log::{Log, Options, Start};
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::create(dir.path().join("events"), &Options::default())?;
//!
//! let mut writer = log.writer()?;
//! assert_eq!(writer.append(b"hello")?, 0);
//! let mut grant = writer.claim(5)?; // zero-copy: write in place
//! grant.copy_from_slice(b"world");
//! assert_eq!(grant.commit()?, 1);
//!
//! let mut reader = log.reader(Start::Earliest)?;
//! let mut got = Vec::new();
//! assert_eq!(reader.next_into(&mut got)?, Some(0)); // copy-out read
//! assert_eq!(got, b"hello");
//! let record = reader.next()?.expect("a second record");
//! assert_eq!((record.seq(), record.bytes()), (1, &b"world"[..]));
//! # Ok(()) }
//! ```
//!
//! # Files
//!
//! A log is a directory holding `meta` (a small mapshare file: the wake-up
//! event, the configuration, the segment range and the durable cursors)
//! and segment files `NNNNNNNNNNNNNNNNNNNN.seg` (mapshare files of kind
//! `log-segment`, numbered from 0). Every file is created whole (see
//! [`SharedFile`]) with its space reserved by
//! `fallocate`, so a full disk is an error at the roll, never a SIGBUS.
//!
//! ## `meta` object (native words)
//!
//! | offset | word | |
//! |---|---|---|
//! | 0 | event sequence (`u32`) | the one futex word readers park on |
//! | 4 | event sleepers (`u32`) | readers that may be parked |
//! | 8 | segment data bytes (`u64`) | for new segments |
//! | 16 | retain bytes (`u64`, 0: no limit) | |
//! | 24 | retain segments (`u64`, 0: no limit) | |
//! | 32 | retain age in ms (`u64`, 0: no limit) | |
//! | 40 | first segment number (`u64`) | moved by retention |
//! | 48 | last segment number (`u64`) | a hint, raised by each roll |
//! | 56 | tethers set (`u64`) | while 0, writers skip the tether check |
//! | 128 | 64 durable cursors of 128 bytes | see `cursor` |
//!
//! ## Segment object
//!
//! | offset | word | |
//! |---|---|---|
//! | 0 | tail (`u64`): reservations `<< 40` \| data bytes reserved | atomic add by writers |
//! | 8 | base: the first sequence number | immutable |
//! | 16 | segment number | immutable |
//! | 24 | data bytes (capacity) | immutable, must match the header |
//! | 32 | end: `1 << 63 \| records` once closed, else 0 | |
//! | 40 | creation time (ms since the epoch) | retention by age |
//! | 64 | writer registry: 256 × (lease token, pending count), one per 64-byte line | one entry per writer lease slot (slots 0..256) |
//! | 16448 | seek index: data offset + 1 of every 256th record | written at claim |
//! | page-aligned | data area: records | |
//!
//! ## Records (8-byte aligned, in the data area)
//!
//! | offset | field |
//! |---|---|
//! | 0 | commit word: state (bits 61..64), index in the segment (bits 32..61), payload length (bits 0..32) |
//! | 8 | the claimer's lease token (in this segment file) |
//! | 16 | sequence number = segment base + index |
//! | 24 | timestamp, ns since the epoch |
//! | 32 | CRC32C of the payload (low 32 bits) |
//! | 40 | payload, padded to 8 bytes |
//!
//! # Claim, commit, abort (commit-word state table)
//!
//! | state | written by | meaning | next |
//! |---|---|---|---|
//! | 0 (whole word 0) | nobody yet | below the tail: reserved, claim not published; at or past it: the end of the log | `CLAIMED`, `HOLE`, `ENDED` |
//! | `CLAIMED` (1) | the claimer, by CAS from 0 | the claim is published; the payload is being written | `COMMITTED` (claimer), `ABORTED` |
//! | `COMMITTED` (2) | the claimer, by CAS with release | complete; immutable from now on | — |
//! | `ABORTED` (3) | the claimer (grant dropped) or anyone once the claimer's lease is dead | skip the record; its sequence number is never delivered | — |
//! | `HOLE` (4) | anyone, once no live writer is between reservation and claim | a run of reservations of dead writers that published nothing; the index field is the index of the next reservation, the low bits its length | — |
//! | `ENDED` (5) | the closer, or anyone if it is dead | no record after this in the segment; the index field is the segment's record count | — |
//!
//! **Reservation and sequence numbers.** A writer counts itself pending
//! in its registry entry, then reserves with **one atomic add** of
//! `span + (1 << 40)` on the tail word: the old value gives both its data
//! offset and its index in the segment, so *the sequence number is
//! assigned at reservation*, as `base + index`, dense, in tail order.
//! Commits may complete in any order; readers read in tail order and wait
//! at each record until it is committed (or aborted), so the total order
//! is the reservation order, and a writer's records keep its order
//! because it reserves them one after another. A batch is one add for
//! `n` records (consecutive numbers). The writer then publishes its claim
//! (commit word by CAS from 0, then its token with release), uncounts
//! itself, writes the payload in place, and commits: CRC, then CAS of the
//! commit word to `COMMITTED` with release.
//!
//! **The segment's end.** A reservation that does not fit before the end
//! of the data area (less 8 bytes, so that an `ENDED` word always fits) is
//! the *closer* if it starts inside the data area (exactly one does): it
//! writes `ENDED` with its own index as the record count, stores the end
//! word, and the next segment starts at `base + count`. Writers whose
//! reservation starts past the end only roll. Any process that follows
//! the chain creates the next segment if it does not exist yet, from the
//! end word, so a closer that dies after `ENDED` stalls nobody.
//!
//! **Dead writers.** A reader (or rolling writer) stuck at a record that
//! is not committed decides by leases, never by time:
//! - `CLAIMED` with a token: if that lease is dead, CAS to `ABORTED`.
//! - 0 below the tail, or `CLAIMED` without a token yet: if no registry
//!   entry with a pending count belongs to a live lease, the claimer is
//!   dead (a live one stays pending until its claim and token are
//!   published). The run of empty reservations up to the next non-zero
//!   commit word becomes one `HOLE`, or `ENDED` at the end of a full
//!   segment (`protocol::resolve` has the argument).
//! - Otherwise the writer is alive: wait. A live, slow writer's record is
//!   never skipped, and a commit by a writer that was wrongly aborted
//!   fails (the CAS finds `ABORTED`) instead of publishing.
//!
//! Holes and aborted records consume sequence numbers that are never
//! delivered: readers see increasing, not always consecutive, numbers.
//!
//! # Readers and cursors
//!
//! A [`Reader`] holds a position (segment, data offset, index) of its own;
//! nothing a reader does is seen by writers, so a writer's cost does not
//! depend on how many readers there are. Readers park on the one event in
//! `meta`; a writer's commit wakes them all with one `FUTEX_WAKE` and only
//! if one sleeps ([`RawEvent::notify_if_sleeping`](crate::sync::RawEvent)).
//! A named durable cursor is a slot in `meta` holding the next sequence
//! number to deliver; [`Reader::commit`] stores it.
//!
//! # Retention and pinning
//!
//! Every reader and writer holds a lease in the segment file it is in,
//! from separate slot ranges of its 1024-slot lease table: writers take
//! slots 0..256 (a writer's slot is its registry entry), readers (and
//! retention and [`Log::info`] while they look) take slots 256..1024. So
//! no number of readers locks a writer out; the 769th reader of one
//! segment gets [`Error::LeaseTableFull`]. (A segment made before the
//! split has 256 slots, which readers and writers share as before.)
//! [`Log::retain`] (run by whoever creates a segment) deletes the oldest
//! segments while the configured limits are exceeded, but stops at the
//! first segment in which another live process holds a lease, and moves
//! `first` before unlinking. A segment is only ever unlinked, never
//! truncated, so even a reader that opened it in the instant before the
//! unlink keeps valid pages. A reader that asks for records already
//! deleted (by number or by a durable cursor) gets
//! [`Error::Lagged`] once, with the exact count, and
//! then reads on from the first record still there.
//!
//! A [`Start::Tethered`] reader back-pressures writers instead: a writer
//! waits, up to [`Writer::set_tether_wait`], while it is too far ahead of
//! a live tethered reader; a dead one is released through its lease
//! (see `cursor`). While no reader is tethered, the check is one relaxed
//! load.
//!
//! # Soundness of in-place access
//!
//! [`Record`] and [`Grant`] hand out `&[u8]` / `&mut [u8]` into the
//! mapping. A committed record is never written again by any process
//! that follows the protocol, and its segment stays mapped while the
//! reader holds it; a grant's bytes belong to its claimer alone until it
//! commits. A hostile or broken peer can still write those bytes: use the
//! copy-out reads ([`Reader::next_into`], [`Record::copy_to`]) where peers
//! are not trusted: they read with atomic loads only.
//!
//! # Fork
//!
//! A forked child's `Log`, `Writer`, `Reader` and `Grant` copies write
//! nothing when dropped (no abort, no wake-up, no lease released). In the
//! child, appends, claims, commits, reads and seeks fail with
//! [`Error::ForkedChild`], and so does making a writer or a reader from
//! an inherited `Log`; `info`, `retention` and `retain` act as the child
//! (with leases of its own, respecting the parent's pins). A child opens
//! the log again ([`Log::open`]): that handle has its own lease.

mod cursor;
mod pretouch;
pub(crate) mod protocol;
mod reader;
mod segment;
mod writer;

pub use reader::{Reader, Record};
pub use writer::{Grant, Writer};

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Origin, Result};
use crate::file::{SharedFile, Spec};
use crate::format::{Fingerprint, Kind, MAX_LEASE_SLOTS};
use crate::sync::{Futex, RawEvent, Symmetric};
use protocol::{Mem, Resolved, Step};
use segment::{Role, Segment};

const EVENT: u64 = 0;
const SEGMENT_SIZE: u64 = 8;
const RETAIN_BYTES: u64 = 16;
const RETAIN_SEGMENTS: u64 = 24;
const RETAIN_AGE: u64 = 32;
const FIRST: u64 = 40;
const LAST: u64 = 48;
/// Tethers set (see `cursor`).
const TETHERS: u64 = 56;
const CURSORS: u64 = 128;
/// Durable cursor slots.
pub const MAX_CURSORS: u64 = 64;
const CURSOR_LEN: u64 = 128;
const META_LEN: u64 = CURSORS + MAX_CURSORS * CURSOR_LEN;
/// Most segments a log has at once (bounds every loop over them).
pub const MAX_SEGMENTS: u64 = 1 << 20;
/// How often a stuck reader asks the kernel whether a writer lives.
const CHECK_EVERY: Duration = Duration::from_millis(20);
/// How long a roll waits for a live closer before reporting `Timeout`.
const ROLL_WAIT: Duration = Duration::from_secs(30);

fn meta_fingerprint() -> Fingerprint {
    Fingerprint::new("mapshare::log-meta/v1", META_LEN, 8)
}

/// What a log keeps: limits past which [`Log::retain`] deletes the oldest
/// segments (each `None`: no limit). The segment being written is never
/// deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Total segment bytes.
    pub bytes: Option<u64>,
    /// Number of segments.
    pub segments: Option<u64>,
    /// Age of the oldest segment.
    pub age: Option<Duration>,
}

/// How a new log is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Data bytes per segment (a multiple of 8, 4 KiB to 256 MiB).
    pub segment_size: u64,
    /// Retention limits.
    pub retain: Retention,
}

impl Default for Options {
    /// 16 MiB segments, keep everything.
    fn default() -> Options {
        Options {
            segment_size: 16 << 20,
            retain: Retention::default(),
        }
    }
}

/// Where a new reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// At the first record still in the log.
    Earliest,
    /// After the last record reserved so far.
    Latest,
    /// At this sequence number (or the first after it that exists).
    Seq(u64),
    /// After the last position committed with this durable cursor's name
    /// (at the start of the log for a new name); [`Reader::commit`]
    /// stores the position under that name.
    Cursor(String),
    /// As [`Start::Cursor`], and **tethered**: while this reader lives,
    /// writers wait (up to their [`Writer::set_tether_wait`] deadline)
    /// rather than run more than `max_lag` sequence numbers ahead of it.
    /// A tethered reader that dies is released through its lease: it
    /// then holds nothing back. Untethered readers never stall a writer.
    Tethered {
        /// The durable cursor's name.
        name: String,
        /// How far writers may run ahead (at least 1).
        max_lag: u64,
    },
}

/// The `meta` file, shared by every handle of one [`Log`].
pub(crate) struct Meta {
    file: SharedFile,
    dir: PathBuf,
}

impl Meta {
    fn word(&self, off: u64) -> Result<&AtomicU64> {
        self.file.region().atomic64(self.file.object_offset() + off)
    }
    fn load(&self, off: u64) -> Result<u64> {
        Ok(self.word(off)?.load(Acquire))
    }
    fn event(&self) -> Result<RawEvent<'_, AtomicU32>> {
        let r = self.file.region();
        let o = self.file.object_offset() + EVENT;
        Ok(RawEvent {
            seq: r.atomic32(o)?,
            sleepers: r.atomic32(o + 4)?,
        })
    }
    /// Wakes every parked reader, with one system call, only if one may
    /// be parked.
    pub(crate) fn notify(&self) {
        if let Ok(ev) = self.event() {
            ev.notify_if_sleeping(i32::MAX as u32, &Futex, &Symmetric);
        }
    }
    fn origin(&self) -> Origin {
        Origin::path(&self.dir)
    }
}

/// A log directory, opened. Cheap to clone; [`Log::writer`] and
/// [`Log::reader`] make handles that can move to other threads.
#[derive(Clone)]
pub struct Log {
    meta: Arc<Meta>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.meta.dir).finish()
    }
}

/// One segment, as [`Log::info`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its number.
    pub number: u64,
    /// Its first sequence number.
    pub base: u64,
    /// Reservations so far (records, aborted ones included).
    pub reserved: u64,
    /// Data bytes reserved.
    pub used: u64,
    /// Data bytes in all.
    pub capacity: u64,
    /// Whether it is closed.
    pub closed: bool,
}

/// A durable cursor, as [`Log::info`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorInfo {
    /// Its name.
    pub name: String,
    /// The next sequence number it will deliver.
    pub position: u64,
    /// Sequence numbers reserved after its position.
    pub lag: u64,
}

/// What [`Log::info`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInfo {
    /// The segments present, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// The first sequence number still in the log.
    pub first_seq: u64,
    /// The sequence number the next reservation gets.
    pub next_seq: u64,
    /// File bytes of all segments.
    pub bytes: u64,
    /// Live writer handles in the newest segment.
    pub writers: u32,
    /// Durable cursors.
    pub cursors: Vec<CursorInfo>,
    /// Data bytes per segment.
    pub segment_size: u64,
    /// Retention limits.
    pub retain: Retention,
}

/// A position in a segment: data offset and the index expected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub p: u64,
    pub idx: u64,
}

/// What [`scan`] stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// A committed record of `len` bytes at the position.
    Record { len: u32 },
    /// The segment ends with `count` records.
    End { count: u64 },
    /// Nothing reserved at the position yet.
    Empty,
    /// A record in progress by a live writer (or not yet checked).
    Pending,
}

/// Steps over aborted records and holes from `pos` to the next record,
/// end or wait; with `repair`, marks the records and holes of dead
/// writers first. Bounded: each step advances at least 8 bytes.
/// `repair()` says whether a pending record may be checked for a dead
/// writer (asked only when one is found: the reader's answer reads the
/// clock). With `quick`, a commit word of 0 at `pos` is reported `Empty`
/// at once, without loading the segment's tail word to tell "nothing
/// reserved" from "reserved, not yet claimed": a reader's first look at a
/// position does that, because loading the tail pulls the line every
/// writer adds to into the reader's core, and the next reservation then
/// waits for it (~60 ns of a ~300 ns hand-off). A reader that finds
/// nothing at the same position again looks without `quick`.
pub(crate) fn scan(
    meta: &Meta,
    seg: &Segment,
    pos: &mut Pos,
    quick: bool,
    mut repair: impl FnMut() -> bool,
) -> Result<Found> {
    let max_steps = seg.geo.capacity / 8 + 2;
    if quick && pos.p <= seg.geo.usable() && seg.load(seg.geo.at(pos.p), Acquire) == 0 {
        seg.check_faults()?;
        return Ok(Found::Empty);
    }
    for _ in 0..max_steps {
        let step = protocol::step(seg, &seg.geo, pos.p, pos.idx).map_err(|v| seg.violation(v))?;
        seg.check_faults()?;
        match step {
            Step::Empty => return Ok(Found::Empty),
            Step::Record { len, .. } => return Ok(Found::Record { len }),
            Step::Skip { span, next_idx } => {
                pos.p += span;
                pos.idx = next_idx;
            }
            Step::End { count } => {
                let _ = seg.cas(protocol::END, 0, protocol::SEALED | count);
                return Ok(Found::End { count });
            }
            Step::Pending { word, token } => {
                if !repair() || !repair_at(seg, pos, word, token)? {
                    return Ok(Found::Pending);
                }
                meta.notify();
            }
        }
    }
    Err(seg.corrupted("records do not advance through the segment".into()))
}

/// Marks the reservation at `pos` aborted or as a hole if its writer is
/// dead; `true` if it changed (step again).
fn repair_at(seg: &Segment, pos: &Pos, word: u64, token: u64) -> Result<bool> {
    if word == 0 {
        return match protocol::resolve(seg, &seg.geo, pos.p, pos.idx, || seg.quiet())? {
            Err(v) => Err(seg.violation(v)),
            Ok(Resolved::Busy) => Ok(false),
            Ok(Resolved::Retry | Resolved::Done) => Ok(true),
        };
    }
    let (_, idx, len) = protocol::split(word);
    let dead = if token == 0 {
        // A live claimer stays pending until its token is published.
        seg.quiet()? && seg.load(seg.geo.at(pos.p) + protocol::R_TOKEN, Acquire) == 0
    } else {
        !seg.alive(token)?
    };
    if dead {
        protocol::abort(seg, &seg.geo, pos.p, idx, len);
        return Ok(true);
    }
    // The claim may have been committed meanwhile.
    Ok(seg.load(seg.geo.at(pos.p), Acquire) != word)
}

impl Log {
    /// Opens the log in directory `dir`, creating the directory, its
    /// `meta` and its first segment if they do not exist. An existing
    /// log keeps its own segment size and retention.
    pub fn create(dir: impl AsRef<Path>, options: &Options) -> Result<Log> {
        let dir = dir.as_ref();
        let origin = Origin::path(dir);
        segment::check_capacity(&origin, options.segment_size, segment::Given::ByCaller)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(&origin, "create directory", e))?;
        let mut spec = Spec::new(Kind::Raw, meta_fingerprint(), META_LEN);
        // A cursor stored into a page cut inside must not be reported
        // stored (see `SharedFile::check_faults`).
        spec.guard_page = true;
        // One lease per process that has the log open (readers and
        // writers alike): room for as many as a segment has readers.
        spec.lease_slots = MAX_LEASE_SLOTS;
        let o = options;
        let file = SharedFile::open_or_create(dir.join("meta"), &spec, |region, header| {
            let base = header.object_offset;
            let age = o.retain.age.map_or(0, |a| a.as_millis().max(1) as u64);
            for (off, v) in [
                (SEGMENT_SIZE, o.segment_size),
                (RETAIN_BYTES, o.retain.bytes.unwrap_or(0)),
                (RETAIN_SEGMENTS, o.retain.segments.unwrap_or(0)),
                (RETAIN_AGE, age),
            ] {
                region.write_at(base + off, &v.to_ne_bytes())?;
            }
            Ok(())
        })?;
        let log = Log::from_meta(file, dir)?;
        let first = log.meta.load(FIRST)?;
        if first == 0 && log.meta.load(LAST)? == 0 {
            drop(Segment::open_or_create(
                dir,
                0,
                0,
                log.segment_size()?,
                Role::Reader,
            )?);
        }
        Ok(log)
    }

    /// Opens an existing log (`NotFound` if `dir` has none).
    pub fn open(dir: impl AsRef<Path>) -> Result<Log> {
        let dir = dir.as_ref();
        let file = SharedFile::open(
            dir.join("meta"),
            Kind::Raw,
            &meta_fingerprint(),
            Duration::from_secs(5),
        )?;
        Log::from_meta(file, dir)
    }

    fn from_meta(file: SharedFile, dir: &Path) -> Result<Log> {
        let meta = Meta {
            file,
            dir: dir.to_path_buf(),
        };
        meta.word(CURSORS + MAX_CURSORS * CURSOR_LEN - 8)?;
        meta.event()?;
        Ok(Log {
            meta: Arc::new(meta),
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.meta.dir
    }

    /// Data bytes of new segments (validated: the word is shared).
    fn segment_size(&self) -> Result<u64> {
        let s = self.meta.load(SEGMENT_SIZE)?;
        segment::check_capacity(&self.meta.origin(), s, segment::Given::Stored)?;
        Ok(s)
    }

    /// The retention limits stored in the log.
    pub fn retention(&self) -> Result<Retention> {
        let opt = |v: u64| (v != 0).then_some(v);
        Ok(Retention {
            bytes: opt(self.meta.load(RETAIN_BYTES)?),
            segments: opt(self.meta.load(RETAIN_SEGMENTS)?),
            age: opt(self.meta.load(RETAIN_AGE)?).map(Duration::from_millis),
        })
    }

    /// A writer handle. Each handle appends independently; records of
    /// one handle keep its order.
    ///
    /// In a forked child of the process that opened this `Log`, fails
    /// with [`Error::ForkedChild`] (see "Fork" in the module docs).
    pub fn writer(&self) -> Result<Writer> {
        self.check_owner()?;
        Writer::new(self.clone())
    }

    /// A reader handle starting at `start`. In a forked child of the
    /// process that opened this `Log`, fails with [`Error::ForkedChild`].
    pub fn reader(&self, start: Start) -> Result<Reader> {
        self.check_owner()?;
        Reader::new(self.clone(), start)
    }

    /// A handle made from this one would act under the parent's lease in
    /// a forked child: a tether it met would be its own parent's, alive
    /// for as long as the child holds the inherited descriptor, so a
    /// writer waited for it until its timeout (found in review).
    fn check_owner(&self) -> Result<()> {
        self.meta.file.lease().check_owner(self.meta.file.region())
    }

    /// The numbers of the first and the last segment, validated: at most
    /// [`MAX_SEGMENTS`] apart (the words are shared; loops over the range
    /// stay bounded).
    fn range(&self) -> Result<(u64, u64)> {
        let first = self.meta.load(FIRST)?;
        let last = self.last_number()?;
        if last < first || last - first > MAX_SEGMENTS {
            return Err(Error::Corrupted {
                origin: self.meta.origin(),
                what: "log segment range",
                why: format!("segments {first}..={last}"),
            });
        }
        Ok((first, last))
    }

    /// The number of the first segment still present, and the segment
    /// itself (skipping numbers retention just deleted).
    fn first_segment(&self) -> Result<Segment> {
        let (mut n, last) = self.range()?;
        while n <= last {
            match Segment::open(self.dir(), n, Role::Reader) {
                Ok(s) => return Ok(s),
                Err(Error::NotFound { .. }) => n += 1,
                Err(e) => return Err(e),
            }
        }
        Err(Error::NotFound {
            origin: Origin::path(&segment::path(self.dir(), last)),
        })
    }

    /// The highest segment number present (from the hint, then probing
    /// upwards; bounded by the number of segments).
    fn last_number(&self) -> Result<u64> {
        let first = self.meta.load(FIRST)?;
        let hint = self.meta.load(LAST)?.max(first);
        for n in hint..hint.saturating_add(MAX_SEGMENTS) {
            if !segment::path(self.dir(), n + 1).exists() {
                return Ok(n);
            }
        }
        Err(Error::Corrupted {
            origin: self.meta.origin(),
            what: "log segments",
            why: format!("more than {MAX_SEGMENTS} segments past the last one recorded"),
        })
    }

    /// The segment after `seg`, which ended with `count` records: opened,
    /// or created (from any process that gets here first) with base
    /// `seg.base + count`. Runs retention when this call created it.
    pub(crate) fn follow(&self, seg: &Segment, count: u64) -> Result<Segment> {
        let number = seg.number + 1;
        let base = seg
            .base
            .checked_add(count)
            .ok_or_else(|| seg.corrupted("sequence numbers overflow".into()))?;
        let next =
            Segment::open_or_create(self.dir(), number, base, self.segment_size()?, seg.role)?;
        let last = self.meta.word(LAST)?;
        if last.fetch_max(number, AcqRel) < number && next.file().created() {
            // Retention is best effort: a failure here must not fail the
            // append that rolled.
            let _ = self.retain();
        }
        Ok(next)
    }

    /// The record count of a full segment: waits for its end word, and
    /// meanwhile walks the segment marking the holes of dead writers, so
    /// a dead closer stalls nobody. `Timeout` only if a *live* process
    /// keeps a reservation at the end unpublished for [`ROLL_WAIT`].
    pub(crate) fn end_of(&self, seg: &Segment) -> Result<u64> {
        let start = Instant::now();
        let mut pos = Pos { p: 0, idx: 0 };
        loop {
            if let Some(count) = protocol::ended(seg) {
                return Ok(count);
            }
            match scan(&self.meta, seg, &mut pos, false, || true)? {
                Found::End { count } => return Ok(count),
                Found::Record { len } => {
                    pos.p += protocol::span(u64::from(len));
                    pos.idx += 1;
                    continue;
                }
                Found::Empty => {
                    let (off, _) = protocol::tail_parts(seg.load(protocol::TAIL, Acquire));
                    if off <= seg.geo.usable() {
                        return Err(seg.corrupted("a full segment's tail went back".into()));
                    }
                }
                Found::Pending => {}
            }
            if start.elapsed() > ROLL_WAIT {
                return Err(Error::Timeout {
                    origin: seg.origin().clone(),
                    what: "a live writer to close a full log segment",
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Deletes the oldest segments while the retention limits are
    /// exceeded, stopping at the first one another live process holds (a
    /// reader inside it) and never touching the newest. Returns how many
    /// were deleted.
    pub fn retain(&self) -> Result<u64> {
        let r = self.retention()?;
        if r == Retention::default() {
            return Ok(0);
        }
        let mut deleted = 0;
        for _ in 0..MAX_SEGMENTS {
            let (first, last) = self.range()?;
            if first >= last {
                break;
            }
            let seg = match Segment::open(self.dir(), first, Role::Reader) {
                Ok(s) => s,
                // Every reader slot taken: live readers pin it.
                Err(Error::LeaseTableFull { .. }) => break,
                Err(Error::NotFound { .. }) => {
                    let _ =
                        self.meta
                            .word(FIRST)?
                            .compare_exchange(first, first + 1, AcqRel, Acquire);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let count = last - first + 1;
            let file_len = seg.file().region().len() as u64;
            let over_count = r.segments.is_some_and(|n| count > n);
            let over_bytes = r.bytes.is_some_and(|b| count.saturating_mul(file_len) > b);
            let over_age = r.age.is_some_and(|a| {
                segment::now_ms().saturating_sub(seg.created_ms()) > a.as_millis() as u64
            });
            if !(over_count || over_bytes || over_age) || seg.pinned_by_others()? {
                break;
            }
            if self
                .meta
                .word(FIRST)?
                .compare_exchange(first, first + 1, AcqRel, Acquire)
                .is_ok()
            {
                drop(seg);
                match std::fs::remove_file(segment::path(self.dir(), first)) {
                    Ok(()) => deleted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&self.meta.origin(), "remove segment", e)),
                }
            }
        }
        Ok(deleted)
    }

    /// Segments, sequence range, writers and cursors.
    pub fn info(&self) -> Result<LogInfo> {
        let (first, last) = self.range()?;
        let mut segments = Vec::new();
        let mut bytes = 0;
        let mut writers = 0;
        let mut next_seq = 0;
        for n in first..=last {
            let opened = match Segment::open(self.dir(), n, Role::Reader) {
                Ok(seg) => seg.look(n == last),
                // Every reader slot taken: look without a lease.
                Err(Error::LeaseTableFull { .. }) => Segment::peek(self.dir(), n, n == last),
                Err(e) => Err(e),
            };
            let pk = match opened {
                Ok(pk) => pk,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            bytes += pk.file_len;
            next_seq = pk.base + pk.reserved;
            if n == last {
                writers = pk.writers;
            }
            segments.push(SegmentInfo {
                number: n,
                base: pk.base,
                reserved: pk.reserved,
                used: pk.used,
                capacity: pk.capacity,
                closed: pk.closed,
            });
        }
        let first_seq = segments.first().map_or(0, |s| s.base);
        let cursors = cursor::list(&self.meta)?
            .into_iter()
            .map(|(name, position)| CursorInfo {
                lag: next_seq.saturating_sub(position),
                name,
                position,
            })
            .collect();
        Ok(LogInfo {
            segments,
            first_seq,
            next_seq,
            bytes,
            writers,
            cursors,
            segment_size: self.segment_size()?,
            retain: self.retention()?,
        })
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Writer>();
    is_send::<Reader>();
    let _ = (Relaxed, Release);
}

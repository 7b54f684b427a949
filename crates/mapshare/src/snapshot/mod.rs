//! Publish a value to many readers: one [`Writer`] publishes whole
//! versions of a value (a configuration, a table, a model); any number of
//! [`Reader`]s read the latest version in place, never torn, with no lock,
//! no system call (once a segment is mapped) and no wait on the writer;
//! a [`ReadOnlyReader`] (a process that may only read the file) copies it
//! out. Readers can wait for the next version ([`Reader::wait_newer`]).
//!
//! A snapshot lives in a mapshare file of kind `snapshot`: a persistent
//! file, a name under `/dev/shm` (pass [`crate::shm::path`]), or an
//! anonymous memfd shared with children ([`Anonymous`]).
//!
//! # Object layout (after the file's header and lease table)
//!
//! Native-endian words; each group on its own cache line.
//!
//! | offset | word | written by |
//! |---|---|---|
//! | 0 | current (`u64`): `generation << 8 \| slot` of the published version; 0 before the first publish | writer |
//! | 64 | event (`u32` sequence, `u32` sleepers): readers park on the sequence | both |
//! | 128 | writer role (`u64`): the writer's lease token, 0 if none | writer |
//! | 136 | slots in use (`u64`, ≤ 64): slot table entries `0..n` are valid | writer |
//! | 144 | data end (`u64`): file offset past the last segment | writer |
//! | 152 | first capacity (`u64`): capacity of new slots (bytes, page multiple) | creator |
//! | 160 | reader high-water (`u64`): reader entries ever claimed (scans stop there; raised by a reader before its first pin, loaded by the writer after its fence) | readers |
//! | 256 | slot table: 64 entries of 64 bytes (below) | writer |
//! | 4352 | reader table: 256 entries of 64 bytes (below) | each reader its own entry |
//!
//! A **slot** entry: segment offset (`u64`, in the file, page-aligned),
//! segment capacity (`u64`), generation it holds (`u64`), value length
//! (`u64`), CRC32C of the value (`u32`). A **segment** is the slot's
//! bytes: a page-aligned area of the file past the object (past the
//! header's `file_len`), reserved with `fallocate` and mapped on its own.
//!
//! A **reader** entry: owner (`u64`, the reader process's lease token, 0
//! if free), pin (`u64`, the version word it reads, 0 for none). Each
//! entry has its own cache line, so readers never contend.
//!
//! Every word is read as untrusted input: loaded once, validated (a
//! version names a slot below 64 and the slot's generation matches; a
//! segment lies page-aligned inside the file past the object, its length
//! within its capacity; counts within their tables), then used. A value
//! no protocol step stores is [`Error::Corrupted`]; loops are bounded.
//!
//! # The pin protocol (state table)
//!
//! The state of slot `s`, as the writer and readers see it:
//!
//! | state | current | some live entry pins `s` | writer may write `s` | readers may read `s` in place |
//! |---|---|---|---|---|
//! | free | ≠ `s` | no | yes | no (no validated pin can name it) |
//! | being written | ≠ `s` | no | yes (it is) | no |
//! | current | = `(g, s)` | maybe | no | yes, after pin + validate |
//! | retired, pinned | ≠ `s` | yes | no | yes, the pinners, until they unpin |
//! | pinned by a dead reader | ≠ `s` | only dead ones | yes: the dead pin no longer counts | no live reader |
//!
//! A reader entry's pin word:
//!
//! | pin | meaning |
//! |---|---|
//! | 0 | not reading |
//! | a version word, validated (current was equal right after the pin store) | reading that slot in place; the slot is frozen |
//! | a version word, not validated | an attempt in progress: the reader re-reads current and retries; it never touches the bytes |
//!
//! **Reader** (`protocol::pin`): load `current` = `c`; store pin = `c`;
//! load `current` again; if it still equals `c`, the version is pinned:
//! read slot `c & 0xff` in place; store pin = 0 when done. Otherwise
//! retry. **Writer** (`publish`): the slots pinned by any entry are
//! loaded *after* its last store of `current`; it writes only into a slot
//! that is neither current nor pinned, fills it, writes the slot entry
//! (length, CRC, generation), then stores `current` = the new version and
//! wakes sleeping readers.
//!
//! # Why it is safe
//!
//! Each side puts a `SeqCst` fence between its store and its load: the
//! reader between its pin store and its second load of `current`, the
//! writer between its store of `current` and its pin scan. Take a reader
//! whose second load returned `(g, s)`, and the writer's first fence
//! after it stored the version that replaced `(g, s)`; any later write
//! into `s` comes after that fence and the pin scan that follows it. The
//! two fences are ordered in the single total order of `SeqCst`
//! operations. If the writer's came first, the reader's load after its
//! own fence would have seen the replacing store (or a later one), not
//! `(g, s)`. So the reader's fence came first, and the writer's pin scan
//! sees the pin (or a later value, stored only after the reader
//! unpinned). Hence the writer never writes a slot while a validated pin
//! on it stands. Generations only grow, so a version word never comes
//! back (no ABA), and the race of mmap-sync — load the version, two
//! publishes recycle its buffer, then register — is caught: the
//! validation load sees a newer word and the reader retries (`protocol`
//! tests stage it; the loom model and the torn-read hunt across
//! processes search for it). Fences, not `SeqCst` loads and stores,
//! because loom checks fences and only approximates the latter.
//!
//! Happens-before: the writer's plain writes into the slot and its slot
//! entry precede its release store of `current`, which the reader's
//! acquire load reads: the reader sees the whole version. The reader's
//! unpin (and its next pin) are release stores; the writer's acquire pin
//! scan reads one of them: the reader's last read of the slot happens
//! before the writer's next write. Miri's data-race
//! detector checks exactly this over heap memory (`protocol` tests).
//!
//! **Dead readers.** A pin belongs to its entry, which belongs to a lease.
//! When every spare slot is pinned, the writer loads each pinning entry's
//! owner (after its pin, so a new owner's pin is never mistaken for the
//! dead one's) and ignores pins of owners whose lease is dead: that is,
//! after the kernel dropped the dead process's lock. There is no timer:
//! a slow reader, pinned for hours, is never overwritten. A new reader
//! may later take the dead entry over.
//!
//! **Threads.** A [`Reader`] is one entry and holds at most one pin
//! (`read` takes `&mut self`). Threads of one process each open their own
//! `Reader` (each takes an entry; all belong to the process's lease and
//! die with it), or share one behind a lock.
//!
//! **Read-only readers** cannot store a pin: they copy the value out like
//! a seqlock reader, with atomic loads, then check that `current` still
//! holds the version word they started from. The writer only writes slots
//! that are not current, and it stores the next version into `current`
//! (then issues a release fence) before it writes into a slot that was
//! current, so a copy that overlapped a write sees `current` changed and
//! is retried; generations never repeat, so an unchanged word means an
//! untouched slot. They can wait: a futex wait needs only read access.
//! They cannot count themselves as sleepers, so while one waits it holds
//! a shared OFD lock on a byte of its own ([`RO_WAIT_BYTE`]); the writer
//! checks that lock at most every [`RO_RECHECK`] and, while it is held,
//! wakes the futex on every publish. A read-only waiter's first park is
//! therefore bounded by twice that period (a publish between its lock and
//! the writer's next check); after that every publish wakes it.
//!
//! # Growth
//!
//! A value larger than the chosen slot's capacity gets a new segment for
//! that slot, at the data end, sized `max(2 × old capacity, the value
//! rounded up to a power of two)` (at least the first capacity), reserved
//! with `fallocate` first (a full disk is [`Error::NoSpace`] at publish
//! time, never `SIGBUS`). The data end is stored before the slot entry
//! names the segment, so a writer dying in between leaks the segment but
//! never gives it to two slots. Readers map a segment lazily when a pinned
//! version is in it; nothing is truncated or remapped under anyone (old
//! segments stay mapped until their mapping is evicted from the reader's
//! cache, which happens only while it holds no guard). A slot is given a
//! new segment only when it is free (not current, not pinned), so a
//! segment is let go only when nothing pins it. Its space is not returned
//! to the file system: the file never shrinks, and because capacities at
//! least double, the segments a slot outgrew add up to less than its
//! current one.
//!
//! # Slow readers
//!
//! When every slot in use is current or pinned by a live reader, the
//! writer follows its [`SlowReaders`] policy: add a slot (up to a maximum;
//! the default), wait for a slot with a deadline, or fail at once.
//!
//! # Writer crash
//!
//! `current` is stored last: a writer that dies anywhere in a publish
//! leaves the previous version current and complete (the slot it was
//! filling was neither current nor pinned). The next writer takes the
//! role over from the dead lease and continues with the next generation,
//! which it derives from `current`.
//!
//! # Change notification
//!
//! [`Reader::wait_newer`] spins briefly, then parks on the event's futex.
//! A publish wakes every parked reader with one wake-all call, and only if
//! some reader counted itself as sleeping (or a read-only waiter is
//! registered): the writer's cost does not grow with the readers. The
//! sleeper handshake uses the [`Symmetric`](crate::sync::Symmetric)
//! fences (one locked instruction per publish): the asymmetric pair needs
//! both sides registered for `membarrier`, and a snapshot has any number
//! of readers, some of which (read-only ones) cannot say so in the file.
//!
//! # Soundness of in-place access
//!
//! A [`ReadGuard`] derefs to `&[u8]` over the shared mapping. That is
//! sound while the writer follows the protocol above. A buggy or hostile
//! writer process can write those bytes anyway, which is a data race and
//! undefined behaviour here; where the writer is not trusted, use the
//! copy-out paths ([`Reader::read_into`], [`Reader::read_value`],
//! [`ReadOnlyReader`]), which read shared bytes with atomic loads only.
//!
//! # Fork
//!
//! A forked child's inherited `Writer` or `Reader` fails with
//! [`Error::ForkedChild`]; an inherited guard derefs to an empty slice
//! (its pin is the parent's, which may drop it at any time); none of them
//! writes anything to shared memory when dropped (no unpin, no role given
//! back): the parent's pins stand.

mod anonymous;
pub(crate) mod protocol;
mod reader;
mod writer;

pub use crate::crc::{checksum, fast_checksum_available};
pub use anonymous::Anonymous;
pub use reader::{ReadGuard, ReadOnlyReader, Reader};
pub use writer::{Options, SlowReaders, Writer};

use std::fs::File;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use crate::error::{Error, Origin, Result};
use crate::file::Inspection;
use crate::format::{Fingerprint, Header, Kind};
use crate::lease::{LeaseTable, Liveness, Token};
use crate::region::{Access, Backing, Region};
use crate::sync::RawEvent;
use crate::sys;
use protocol::{Version, MAX_SLOTS};

const CURRENT: u64 = 0;
const EVENT: u64 = 64;
const WRITER_ROLE: u64 = 128;
const SLOTS_IN_USE: u64 = 136;
const DATA_END: u64 = 144;
const FIRST_CAPACITY: u64 = 152;
const READERS_HIGH: u64 = 160;
const SLOT_TABLE: u64 = 256;
const ENTRY_LEN: u64 = 64;
/// Reader entries: how many readers can pin at once.
pub const READERS: u32 = 256;
const READER_TABLE: u64 = SLOT_TABLE + MAX_SLOTS as u64 * ENTRY_LEN;
/// Bytes of the object (control block and tables).
pub const OBJECT_LEN: u64 = READER_TABLE + READERS as u64 * ENTRY_LEN;

/// Slot entry fields (byte offsets within an entry).
const SEG_OFFSET: u64 = 0;
const SEG_CAPACITY: u64 = 8;
const SLOT_GENERATION: u64 = 16;
const SLOT_LEN: u64 = 24;
const SLOT_CRC: u64 = 32;
/// Reader entry fields.
const OWNER: u64 = 0;
const PIN: u64 = 8;

/// The largest value: 1 TiB.
pub const MAX_VALUE: u64 = 1 << 40;
/// Capacity of the first slots unless chosen: one page.
pub const DEFAULT_CAPACITY: u64 = 4096;
/// Lease slots of a snapshot file: room for [`READERS`] reader processes,
/// the writer and observers.
pub const LEASE_SLOTS: u32 = 512;
/// The byte read-only waiters hold a shared OFD lock on while they wait:
/// the free byte between the last lease lock byte and the init byte, far
/// past any data and outside `mapshare lock`'s "whole file"
/// (`0..LEASE_LOCK_BASE`).
pub const RO_WAIT_BYTE: u64 = crate::lease::INIT_BYTE - 1;
const _: () = assert!(
    RO_WAIT_BYTE > crate::lease::LEASE_LOCK_BASE + crate::format::MAX_LEASE_SLOTS as u64 - 1
);
/// How often a writer looks for read-only waiters (at most).
pub const RO_RECHECK: Duration = Duration::from_millis(2);

/// The snapshot format's fingerprint.
fn fingerprint() -> Fingerprint {
    Fingerprint::new("mapshare::snapshot/v1", OBJECT_LEN, 8)
}

/// The spec of a snapshot file (adjust the mode, then pass it to
/// [`crate::SharedFile::open_or_create`] with [`init`]); [`Writer::open`]
/// and friends use it.
pub fn spec() -> crate::file::Spec {
    let mut s = crate::file::Spec::new(Kind::Snapshot, fingerprint(), OBJECT_LEN);
    s.lease_slots = LEASE_SLOTS;
    s
}

/// Lays out a new snapshot's control block, for a first slot capacity of
/// `capacity` bytes (rounded up to a page).
pub fn init(region: &mut Region, header: &Header, capacity: u64) -> Result<()> {
    let origin = region.origin().clone();
    let capacity = first_capacity(&origin, capacity)?;
    let obj = header.object_offset;
    region.write_at(obj + DATA_END, &data_start(header).to_ne_bytes())?;
    region.write_at(obj + FIRST_CAPACITY, &capacity.to_ne_bytes())
}

fn page() -> u64 {
    sys::page_size() as u64
}

fn round_up_page(n: u64) -> Option<u64> {
    n.checked_add(page() - 1).map(|n| n & !(page() - 1))
}

fn first_capacity(origin: &Origin, capacity: u64) -> Result<u64> {
    match round_up_page(capacity.max(1)) {
        Some(c) if c <= MAX_VALUE => Ok(c),
        _ => Err(Error::TooLarge {
            origin: origin.clone(),
            what: "snapshot capacity",
            len: capacity,
            max: MAX_VALUE,
        }),
    }
}

/// Where segments start: the first page past the object.
fn data_start(header: &Header) -> u64 {
    header.file_len
}

/// The control block's words in a mapping, validated once.
struct Control {
    /// The object's first byte (page-aligned, `OBJECT_LEN` bytes mapped).
    base: NonNull<u8>,
    origin: Origin,
    data_start: u64,
}

// SAFETY: `base` points into a mapping owned next to the `Control` (by
// the same struct) that moves with it; every access through it is atomic.
unsafe impl Send for Control {}
// SAFETY: shared access only ever makes atomic loads and stores through
// `base`.
unsafe impl Sync for Control {}

impl Control {
    /// Checks `header` (kind, fingerprint, object size) and that the
    /// object lies inside `region`.
    fn new(region: &Region, header: &Header) -> Result<Control> {
        let origin = region.origin().clone();
        header.expect(&origin, Kind::Snapshot, &fingerprint())?;
        let obj = header.object_offset;
        if header.object_len != OBJECT_LEN
            || !obj.is_multiple_of(page())
            || obj
                .checked_add(OBJECT_LEN)
                .is_none_or(|e| e > region.len() as u64)
        {
            return Err(Error::Corrupted {
                origin,
                what: "snapshot layout",
                why: format!(
                    "object of {} bytes at {obj} in a mapping of {}",
                    header.object_len,
                    region.len()
                ),
            });
        }
        let p = region.as_ptr().wrapping_add(obj as usize).cast_mut();
        Ok(Control {
            base: NonNull::new(p).ok_or_else(|| Error::Corrupted {
                origin: origin.clone(),
                what: "snapshot layout",
                why: "null mapping".into(),
            })?,
            origin,
            data_start: data_start(header),
        })
    }

    #[inline]
    fn u64_at(&self, off: u64) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off + 8 <= OBJECT_LEN);
        // SAFETY: callers pass 8-aligned offsets inside the object (the
        // constants above, entries below their table's length), which
        // `new` checked lies inside the live mapping; the mapping is
        // page-aligned, so the word is aligned. These words are only ever
        // accessed atomically, as `u64`s, by this crate. On a read-only
        // mapping only loads are made (`ReadOnlyReader`).
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(off as usize).cast()) }
    }

    #[inline]
    fn u32_at(&self, off: u64) -> &AtomicU32 {
        debug_assert!(off.is_multiple_of(4) && off + 4 <= OBJECT_LEN);
        // SAFETY: as in `u64_at`, for the 4-byte event words and CRCs.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(off as usize).cast()) }
    }

    #[inline]
    fn current(&self) -> &AtomicU64 {
        self.u64_at(CURRENT)
    }

    fn event(&self) -> RawEvent<'_, AtomicU32> {
        RawEvent {
            seq: self.u32_at(EVENT),
            sleepers: self.u32_at(EVENT + 4),
        }
    }

    fn writer_role(&self) -> &AtomicU64 {
        self.u64_at(WRITER_ROLE)
    }

    fn slots_in_use(&self) -> &AtomicU64 {
        self.u64_at(SLOTS_IN_USE)
    }

    fn data_end(&self) -> &AtomicU64 {
        self.u64_at(DATA_END)
    }

    fn readers_high(&self) -> &AtomicU64 {
        self.u64_at(READERS_HIGH)
    }

    /// Reader entries that may be in use: the high-water mark, clamped.
    #[inline]
    fn entries_in_use(&self) -> u32 {
        self.readers_high().load(Acquire).min(u64::from(READERS)) as u32
    }

    #[inline]
    fn slot_word(&self, slot: u32, field: u64) -> &AtomicU64 {
        self.u64_at(SLOT_TABLE + u64::from(slot % MAX_SLOTS) * ENTRY_LEN + field)
    }

    #[inline]
    fn slot_crc(&self, slot: u32) -> &AtomicU32 {
        self.u32_at(SLOT_TABLE + u64::from(slot % MAX_SLOTS) * ENTRY_LEN + SLOT_CRC)
    }

    #[inline]
    fn owner(&self, entry: u32) -> &AtomicU64 {
        self.u64_at(READER_TABLE + u64::from(entry % READERS) * ENTRY_LEN + OWNER)
    }

    #[inline]
    fn pin(&self, entry: u32) -> &AtomicU64 {
        self.u64_at(READER_TABLE + u64::from(entry % READERS) * ENTRY_LEN + PIN)
    }

    fn corrupted(&self, what: &'static str, why: String) -> Error {
        Error::Corrupted {
            origin: self.origin.clone(),
            what,
            why,
        }
    }

    /// The current version, validated.
    #[inline]
    fn load_current(&self) -> Result<Option<Version>> {
        Version::unpack(self.current().load(Acquire))
            .map_err(|why| self.corrupted("snapshot current version", why))
    }

    /// Slot `v.slot`'s entry, validated against `v` (loaded with acquire
    /// after `v` was read from `current` or a pin).
    #[inline]
    fn slot_of(&self, v: Version) -> Result<Slot> {
        let s = Slot {
            offset: self.slot_word(v.slot, SEG_OFFSET).load(Acquire),
            capacity: self.slot_word(v.slot, SEG_CAPACITY).load(Acquire),
            generation: self.slot_word(v.slot, SLOT_GENERATION).load(Acquire),
            len: self.slot_word(v.slot, SLOT_LEN).load(Acquire),
            crc: self.slot_crc(v.slot).load(Acquire),
        };
        if s.generation != v.generation {
            return Err(self.corrupted(
                "snapshot slot",
                format!(
                    "slot {} holds generation {}, the version word says {}",
                    v.slot, s.generation, v.generation
                ),
            ));
        }
        self.check_segment(s.offset, s.capacity)?;
        if s.len > s.capacity {
            return Err(self.corrupted(
                "snapshot slot",
                format!(
                    "slot {}: value of {} bytes in a segment of {}",
                    v.slot, s.len, s.capacity
                ),
            ));
        }
        Ok(s)
    }

    /// A segment must lie page-aligned past the object, with a sane size
    /// (the file's size is checked when it is mapped).
    #[inline]
    fn check_segment(&self, offset: u64, capacity: u64) -> Result<()> {
        let p = page();
        // `p` is a power of two: masks, not divisions.
        if offset < self.data_start
            || offset & (p - 1) != 0
            || capacity == 0
            || capacity & (p - 1) != 0
            || capacity > 2 * MAX_VALUE
            || offset
                .checked_add(capacity)
                .is_none_or(|e| e > i64::MAX as u64 / 2)
        {
            return Err(self.corrupted(
                "snapshot segment",
                format!("{capacity} bytes at offset {offset}"),
            ));
        }
        Ok(())
    }
}

/// A slot entry as loaded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    offset: u64,
    capacity: u64,
    generation: u64,
    len: u64,
    crc: u32,
}

/// Segment mappings of one process (one handle), keyed by file range.
/// Entries are dropped only by `&mut self` methods, so never while a
/// guard borrows one.
struct Segments {
    file: File,
    origin: Origin,
    access: Access,
    maps: Vec<(u64, u64, Region)>,
}

/// Mappings kept per handle; beyond that the oldest is unmapped.
const MAPS_KEPT: usize = 16;

impl Segments {
    fn new(file: &File, origin: &Origin, access: Access) -> Result<Segments> {
        Ok(Segments {
            file: file.try_clone().map_err(|e| Error::io(origin, "dup", e))?,
            origin: origin.clone(),
            access,
            maps: Vec::new(),
        })
    }

    /// The segment at `offset` of `capacity` bytes (checked by
    /// `Control::check_segment`), mapped. A segment past the end of the
    /// file is `Truncated` if it lies below the data end `c` records (the
    /// writer reserves space before it moves the data end: the file was
    /// cut behind our back), else `Corrupted` (a slot naming space the
    /// writer never reserved).
    #[inline]
    fn get(&mut self, c: &Control, offset: u64, capacity: u64) -> Result<&Region> {
        self.get_indexed(c, offset, capacity).map(|(_, r)| r)
    }

    /// [`Segments::get`], with the mapping's index in `maps` (valid until
    /// the next call maps another segment).
    fn get_indexed(&mut self, c: &Control, offset: u64, capacity: u64) -> Result<(usize, &Region)> {
        if let Some(i) = self
            .maps
            .iter()
            .position(|(o, c, _)| *o == offset && *c == capacity)
        {
            return Ok((i, &self.maps[i].2));
        }
        if self.maps.len() >= MAPS_KEPT {
            self.maps.remove(0);
        }
        let file = self
            .file
            .try_clone()
            .map_err(|e| Error::io(&self.origin, "dup", e))?;
        let region = Region::map_file(
            file,
            self.origin.clone(),
            Backing::File,
            self.access,
            offset,
            Some(capacity),
        )
        .map_err(|e| {
            let size = match e {
                Error::WindowOutOfRange { size, .. } => size,
                Error::Empty { .. } => 0,
                e => return e,
            };
            let end = offset.saturating_add(capacity);
            if end <= c.data_end().load(Acquire) {
                Error::Truncated {
                    origin: self.origin.clone(),
                    expected: end,
                    actual: size,
                }
            } else {
                c.corrupted(
                    "snapshot segment",
                    format!(
                        "{capacity} bytes at offset {offset} lie past the end of the file and of the data"
                    ),
                )
            }
        })?;
        self.maps.push((offset, capacity, region));
        let i = self.maps.len() - 1;
        Ok((i, &self.maps[i].2))
    }

    /// Whether mapping `map` exists and recorded no fault (a page that
    /// vanished under it).
    #[inline]
    fn faults_clear(&self, map: usize) -> bool {
        self.maps
            .get(map)
            .is_some_and(|(_, _, r)| r.check_faults().is_ok())
    }

    /// Mapping `map`'s check: a recorded fault, or a file now shorter than
    /// the segment (one `fstat`), is `Truncated`.
    fn check_map(&self, map: usize) -> Result<()> {
        match self.maps.get(map) {
            Some((_, _, r)) => r.check(),
            None => Ok(()),
        }
    }

    /// Whether a page of any mapped segment vanished (outside truncation).
    fn check_faults(&self) -> Result<()> {
        for (_, _, r) in &self.maps {
            r.check_faults()?;
        }
        Ok(())
    }
}

/// Loads the 8-byte word that holds the last byte of the `len`-byte value
/// at `ptr` (the segment's first word for an empty value), so that a page
/// an outside truncate cut away faults now and is recorded: a file cut
/// anywhere inside the value has lost its last page. One load; what it
/// reads is not used.
#[inline(always)]
fn probe(ptr: *const u8, len: usize) {
    let at = (len.max(1) - 1) & !7;
    // SAFETY: `ptr` is the page-aligned start of a segment mapping of at
    // least one page and at least `len` bytes (checked when the version
    // was located), so the word at `at` is 8-aligned and mapped; only a
    // load is made, which is sound whatever another process writes.
    let w = unsafe { AtomicU64::from_ptr(ptr.add(at).cast_mut().cast()) };
    std::hint::black_box(w.load(Relaxed));
}

/// Copies `len` bytes from `src` (8-aligned, with `len` rounded up to 8
/// readable) into `out` with relaxed atomic loads: sound whatever another
/// process writes meanwhile. The length comes from shared memory (checked
/// against the mapped segment, which a peer may have made huge): memory
/// that cannot be had is an error, not an abort.
fn copy_atomic(origin: &Origin, src: *const u8, len: usize, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.try_reserve(len).map_err(|_| {
        Error::io(
            origin,
            "allocate a copy of the value",
            std::io::Error::from(std::io::ErrorKind::OutOfMemory),
        )
    })?;
    let mut off = 0;
    while off < len {
        // SAFETY: `src + off` is 8-aligned and inside the segment (its
        // capacity is a page multiple ≥ len); only loads are made.
        let w = unsafe { AtomicU64::from_ptr(src.add(off).cast_mut().cast()) }.load(Relaxed);
        let n = (len - off).min(8);
        out.extend_from_slice(&w.to_ne_bytes()[..n]);
        off += 8;
    }
    Ok(())
}

fn bad_checksum(origin: &Origin, generation: u64, stored: u32, computed: u32) -> Error {
    Error::Corrupted {
        origin: origin.clone(),
        what: "snapshot value",
        why: format!(
            "generation {generation}: checksum {computed:#010x} does not match the stored {stored:#010x}"
        ),
    }
}

/// What `mapshare info` shows about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotState {
    /// The current generation (0: nothing published).
    pub generation: u64,
    /// The current value's length.
    pub value_len: u64,
    /// Slots in use: `(segment offset, capacity, generation held, length)`.
    pub slots: Vec<(u64, u64, u64, u64)>,
    /// Bytes of segments in the file (slots' and outgrown ones).
    pub segment_bytes: u64,
    /// The writer: `Some((pid, alive))` if the role is held.
    pub writer: Option<(u32, bool)>,
    /// Reader entries in use: `(pid, alive, pinned generation or 0)`.
    pub readers: Vec<(u32, bool, u64)>,
}

/// Reads a snapshot's state without attaching (works on read-only
/// mappings). Every word is validated; a bad one is `Corrupted`.
pub fn observe(insp: &Inspection) -> Result<SnapshotState> {
    let c = Control::new(&insp.region, &insp.header)?;
    let h = &insp.header;
    let cur = c.load_current()?;
    let n = c.slots_in_use().load(Acquire);
    if n > u64::from(MAX_SLOTS) {
        return Err(c.corrupted("snapshot slot count", format!("{n} slots")));
    }
    let mut slots = Vec::new();
    for s in 0..n as u32 {
        slots.push((
            c.slot_word(s, SEG_OFFSET).load(Acquire),
            c.slot_word(s, SEG_CAPACITY).load(Acquire),
            c.slot_word(s, SLOT_GENERATION).load(Acquire),
            c.slot_word(s, SLOT_LEN).load(Acquire),
        ));
    }
    let value_len = match cur {
        Some(v) => c.slot_of(v)?.len,
        None => 0,
    };
    let leases = LeaseTable::new(&insp.region, h.lease_offset, h.lease_slots);
    let who = |token: u64, what: &'static str| -> Result<(u32, bool)> {
        let t = Token::from_raw(token)
            .ok_or_else(|| c.corrupted(what, format!("{token:#x} is not a lease token")))?;
        Ok(match leases.liveness(t, None)? {
            Liveness::Alive { pid } => (pid, true),
            Liveness::Dead { pid } => (pid, false),
            Liveness::Me => (sys::pid(), true),
        })
    };
    let w = c.writer_role().load(Acquire);
    let writer = if w == 0 {
        None
    } else {
        Some(who(w, "snapshot writer role")?)
    };
    let mut readers = Vec::new();
    for e in 0..c.entries_in_use() {
        let owner = c.owner(e).load(Acquire);
        if owner == 0 {
            continue;
        }
        let (pid, alive) = who(owner, "snapshot reader entry")?;
        let pinned = Version::unpack(c.pin(e).load(Acquire))
            .ok()
            .flatten()
            .map_or(0, |v| v.generation);
        readers.push((pid, alive, pinned));
    }
    let end = c.data_end().load(Acquire);
    insp.region.check_faults()?;
    Ok(SnapshotState {
        generation: cur.map_or(0, |v| v.generation),
        value_len,
        slots,
        segment_bytes: end.saturating_sub(c.data_start),
        writer,
        readers,
    })
}

//! A zero-copy single-producer single-consumer queue of variable-length
//! records between processes, in a persistent mapshare file (kind `queue`)
//! or an anonymous memfd shared with a child.
//!
//! The producer reserves space and writes a record in place
//! ([`Producer::reserve`] → [`Grant`] → [`Grant::commit`]); the consumer
//! reads it in place ([`Consumer::recv`] → [`Record`], released on drop),
//! or copies it out ([`Consumer::recv_into`]). The position protocol, the
//! record format and the validation of everything read from shared memory
//! are in `ring`.
//!
//! # Object layout (after the file's header and lease table)
//!
//! All words are native-endian; each group has its own cache line.
//!
//! | offset | word | written by |
//! |---|---|---|
//! | 0 | write position (`u64`): end of the committed records | producer |
//! | 64 | read position (`u64`): released, durable | consumer |
//! | 128 | data event (`u32` sequence, `u32` sleepers): the consumer parks here | both |
//! | 192 | space event: the producer parks here | both |
//! | 256 | producer role (`u64`): its lease token, 0 if none | producer |
//! | 264 | producer sessions (`u64`): producers that ever attached | producer |
//! | 272 | producer closed (`u64`): the session number of the last producer that left cleanly | producer |
//! | 280 | producer fences (`u64`): 1 asymmetric, 2 full ([`FenceMode`]) | producer |
//! | 320 | consumer role, sessions, closed, fences (as at 256..288) | consumer |
//! | 384 | space (`u64`): the read position as published to the producer, lazily | consumer |
//! | 512 | the ring: `capacity` bytes | |
//!
//! The capacity is `object_len - 512` from the checksummed header, never a
//! word another process can change. Every word above is read as untrusted
//! input: loaded once, validated, then used.
//!
//! # Role words (state table)
//!
//! | role word | sessions vs closed | meaning |
//! |---|---|---|
//! | 0 | `closed == sessions` | nobody holds the role; the last holder left cleanly (or nobody ever attached) |
//! | token of a live lease | `closed < sessions` | held now, by session `sessions` (for an instant after the CAS, `closed == sessions`: the holder is attaching) |
//! | token of a dead lease | `closed < sessions` | the holder died (SIGKILL, crash): the next claimant takes it over |
//! | 0 | `closed < sessions` | cannot happen by the protocol (closed is stored before the role is given back); read as "died", pid 0 |
//!
//! Claiming: CAS the role word from 0 (or from a dead holder's token) to our
//! token, validate the positions, then add 1 to `sessions`; our session
//! number is the new value. A live holder makes the claim fail with
//! [`Error::RoleTaken`]; a failed attach gives the role back before its
//! session starts. Leaving cleanly (drop): store `closed = session`, then
//! CAS the role word from our token back to 0, then notify the peer's
//! event. A consumer's attach also notifies the space event (a producer
//! may wait for a consumer, see "Pads").
//!
//! # Sessions: when a side stops waiting
//!
//! A queue file is reused across runs, so "a peer was attached once" means
//! nothing by itself. Each end therefore watches only peers of *its own
//! session*: a peer **counts** if it was live when we attached, attached
//! after us (the peer's `sessions` word moved), or — for a consumer — left
//! records that were pending when we attached.
//!
//! - A consumer waits for data as long as no counting producer has come and
//!   gone. Once one has gone and the ring is drained, it reports
//!   [`Error::Disconnected`] if that producer left cleanly (its `closed`
//!   word names the latest session), or [`Error::PeerDied`] (with the
//!   producer's PID) if it died.
//! - A producer with no consumer waits for space (`try_send`/`send_timeout`
//!   report `Full`/`Timeout`); it is never disconnected because of a
//!   consumer of an earlier run. Once a counting consumer is gone and the
//!   ring is full, it reports `Disconnected` and hands its record back.
//!   (It does not tell a consumer that died from one that left: either way
//!   every unreleased record stays in the file for the next consumer.)
//! - A side that waits checks its peer's words before parking and every
//!   20 ms while parked (`PEER_CHECK`), and asks the kernel whether the
//!   peer's lease is alive at most once per `PEER_CHECK` (a clean leave
//!   changes the words, so it is seen at once; a death within 20 ms). The
//!   busy path, and polling an empty queue, make no system call.
//! - A waiting side whose file was deleted (`st_nlink == 0`, checked on
//!   the same schedule) while no live peer holds it reports
//!   [`Error::Deleted`]: nobody can open it again. Anonymous queues
//!   (memfds, never linked) are exempt.
//!
//! # Pads
//!
//! A record never wraps: one that does not fit before the end of the ring
//! is preceded by a pad covering the tail. When pad and record fit in the
//! ring together, the producer waits for room for both before it commits
//! the pad, so a send that fails (`Full`, `Timeout`) writes nothing. A
//! record larger than what the pad leaves (up to `max_record`, the whole
//! ring less its header) needs the pad released first: that pad is
//! published on its own, and only while a live consumer is attached to
//! release it. So a max-size record goes through whenever the ring is
//! empty and a consumer drains it, and without a consumer a failed attempt
//! leaves nothing that would keep smaller records out.
//!
//! # Record sizes
//!
//! A record holds 1 to [`Producer::max_record`] bytes (the ring less 16
//! bytes of header and clear slot). An empty record is refused with
//! [`Error::ZeroLength`]: the record format has no empty record (a data
//! header of length 0 is corrupted to every consumer of this format), so
//! send a marker byte if "nothing" must be said. A longer one is
//! [`Error::TooLarge`]. (A log record may be empty, and so may a snapshot
//! value: see [`crate::log`] and [`crate::snapshot`].)
//!
//! # Persistence
//!
//! Both positions live in the file: a consumer that restarts resumes at
//! the first record it had not released; a producer that restarts appends
//! after the last record it committed. A record received but not released
//! when its consumer died is delivered again.
//!
//! # Soundness of in-place access
//!
//! [`Record`], [`Batch`] and [`Grant`] hand out `&[u8]` / `&mut [u8]` into
//! the shared mapping. Rust requires that nobody writes the bytes behind a
//! `&[u8]` (or reads or writes those behind a `&mut [u8]`) while it lives.
//! The queue protocol guarantees that **only while the peer follows it**:
//! the producer never writes the bytes of a committed record the consumer
//! has not released, and the consumer never reads a record's bytes before
//! its header is committed. (The producer does write the header *slot*
//! after its record, to clear it, and the consumer loads the header slot
//! at its position, possibly that one: both are atomic accesses, never
//! covered by a reference.) A peer that is buggy or hostile, or
//! that was wrongly judged dead while still running (its role taken over),
//! can write those bytes while the reference lives: that is a data race,
//! undefined behaviour in this process, and no check on our side can
//! prevent it. Where the peer is not trusted, use the copy-out paths
//! ([`Consumer::recv_into`], [`Consumer::try_recv_into`],
//! [`Consumer::recv_into_timeout`], [`Record::copy_to`]): they read the
//! shared bytes with atomic loads only, so a misbehaving peer can change
//! *what* is read but never make the read itself undefined.
//!
//! # Fork
//!
//! A forked child inherits its parent's `Producer`, `Consumer`, and any
//! `Record`, `Batch` or `Grant`, as copies of memory. Using them fails with
//! [`Error::ForkedChild`]; an inherited `Record` or `Batch` derefs to
//! nothing (its parent may release it at any time) (one exception: an
//! inherited `Grant` still
//! derefs to the parent's reserved bytes, which the child shares through
//! the mapping, so a child that writes there races its parent; its
//! `commit` publishes nothing); dropping them writes nothing to shared memory
//! (no role given back, no position stored, no wake-up), so a child can
//! never release what its parent holds. The check is a relaxed load of a
//! fork counter, not a system call.
//!
//! # Waiting
//!
//! A waiting side spins for a bounded, tunable time ([`Spin`]), then parks
//! on the event's futex. The other side issues a futex wake only if the
//! waiter counted itself as sleeping, so a busy stream makes no system
//! calls. That check is one half of a handshake whose other half the
//! waiter pays before it parks: with `membarrier` on both sides (the
//! usual case) the notifier's half is a compiler fence and a plain load,
//! and the waiter's a `membarrier` call; otherwise each half is a locked
//! instruction (see `sync::fence`; `mapshare info` shows which each side
//! chose).
//!
//! # Records and positions
//!
//! See `ring`: each record's header word is its commit (the consumer never
//! loads the write position), and the consumer publishes its read position
//! to the producer lazily while storing it durably on every release.

mod anonymous;
mod consumer;
mod producer;
pub(crate) mod ring;

pub use anonymous::Anonymous;
pub use consumer::{Batch, Consumer, Record};
pub use producer::{Grant, Producer, SendError};

use std::cell::Cell;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use crate::error::{Error, Origin, Result};
use crate::file::{SharedFile, Spec};
use crate::format::{Fingerprint, Kind};
use crate::lease::{Liveness, Token};
use crate::sync::fence::Pair;
use crate::sync::{spin_until, FenceMode, Futex, RawEvent, Spin};
use crate::sys;
use ring::{Bytes, Ring, HEADER};

const WRITE_POS: u64 = 0;
const READ_POS: u64 = 64;
const DATA_EVENT: u64 = 128;
const SPACE_EVENT: u64 = 192;
const SPACE_POS: u64 = 384;
/// The producer's role words (holder, sessions, closed); the consumer's
/// are at +64.
const PRODUCER_ROLE: u64 = 256;
const CONSUMER_ROLE: u64 = 320;
/// Word indexes (in `u64`s) within a role's group.
const HOLDER: usize = 0;
const SESSIONS: usize = 1;
const CLOSED: usize = 2;
const FENCES: usize = 3;
/// Bytes before the ring.
pub const CONTROL_LEN: u64 = 512;
/// Smallest capacity accepted.
pub const MIN_CAPACITY: u64 = 64;
/// Most ring bytes each side maps in when it attaches (see
/// `Shared::prefault_ring`): 64 MiB is ~16,000 pages, a few milliseconds.
pub const PREFAULT_LIMIT: u64 = 64 << 20;
/// How often a parked side checks that its peer is alive (and that the
/// file still has a name).
const PEER_CHECK: Duration = Duration::from_millis(20);

/// The queue format's fingerprint: v2 had 64-bit role words and session
/// close marks; v3 commits inside each record's header word, publishes
/// the read position lazily (`space`) and records each side's fences.
fn fingerprint() -> Fingerprint {
    Fingerprint::new("mapshare::queue/v3", HEADER, 8)
}

/// The spec of a queue file with `capacity` bytes of ring (adjust lease
/// slots or mode, then pass it to [`SharedFile::open_or_create`]).
pub fn spec(capacity: u64) -> Result<Spec> {
    check_capacity(&Origin::anonymous("queue"), capacity)?;
    let mut spec = Spec::new(Kind::Queue, fingerprint(), CONTROL_LEN + capacity);
    // A cut inside a page of records must not go unseen (see
    // `SharedFile::check_faults`).
    spec.guard_page = true;
    Ok(spec)
}

/// Why `capacity` is not a ring size, if it is not.
fn capacity_problem(capacity: u64) -> Option<String> {
    (capacity < MIN_CAPACITY || !capacity.is_multiple_of(8) || capacity > 1 << 31).then(|| {
        format!("{capacity} bytes; a queue needs a multiple of 8 between {MIN_CAPACITY} and 2 GiB")
    })
}

/// Checks a capacity the caller asked for: [`Error::InvalidArgument`].
fn check_capacity(origin: &Origin, capacity: u64) -> Result<()> {
    match capacity_problem(capacity) {
        Some(why) => Err(Error::InvalidArgument {
            origin: origin.clone(),
            what: "queue capacity",
            why,
        }),
        None => Ok(()),
    }
}

/// Checks the capacity of an existing file (from its header, which a
/// buggy or hostile program may have written): [`Error::Corrupted`].
fn check_stored_capacity(origin: &Origin, capacity: u64) -> Result<()> {
    match capacity_problem(capacity) {
        Some(why) => Err(Error::Corrupted {
            origin: origin.clone(),
            what: "queue capacity",
            why,
        }),
        None => Ok(()),
    }
}

/// Creates the queue file at `path` with `capacity` bytes of ring, or opens
/// it if it exists (checking that it is a queue).
pub fn open_or_create(path: impl AsRef<Path>, capacity: u64) -> Result<SharedFile> {
    let path = path.as_ref();
    check_capacity(&Origin::path(path), capacity)?;
    SharedFile::open_or_create(path, &spec(capacity)?, |_, _| Ok(()))
}

/// Opens an existing queue file, waiting up to 5 s for its initializer.
fn open_existing(path: impl AsRef<Path>) -> Result<SharedFile> {
    SharedFile::open(path, Kind::Queue, &fingerprint(), Duration::from_secs(5))
}

/// The ring's bytes in the mapping.
struct Mapped {
    base: *mut u8,
}

impl Mapped {
    /// The 8-byte word at ring offset `at` as an atomic.
    #[inline]
    fn word(&self, at: u64) -> &AtomicU64 {
        // SAFETY: callers pass 8-aligned offsets inside `0..capacity`
        // (`Ring` for headers, `copy_out` for payload words), and `base`
        // is 8-aligned (page-aligned mapping plus the 512-byte control
        // block); the mapping outlives `&self`.
        unsafe { AtomicU64::from_ptr(self.base.add(at as usize).cast()) }
    }

    /// A pointer to ring offset `at` (inside `0..capacity`).
    #[inline]
    fn ptr(&self, at: u64) -> *mut u8 {
        self.base.wrapping_add(at as usize)
    }

    /// Copies `len` bytes from ring offset `at` (8-aligned; `at..at +
    /// len` rounded up to 8 lies inside the ring, as for every validated
    /// record) into `out`, replacing its contents, with atomic loads only:
    /// sound whatever a peer writes meanwhile.
    fn copy_out(&self, at: u64, len: usize, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(len);
        let mut off = 0usize;
        while off < len {
            let w = self.word(at + off as u64).load(Relaxed).to_ne_bytes();
            let n = (len - off).min(8);
            out.extend_from_slice(&w[..n]);
            off += 8;
        }
    }
}

impl Bytes for Mapped {
    #[inline]
    fn read(&self, at: u64, buf: &mut [u8]) {
        // SAFETY: `Ring` only passes ranges inside `0..capacity`, and
        // `base` points at `capacity` mapped bytes; `buf` is private.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(at), buf.as_mut_ptr(), buf.len()) }
    }
    #[inline]
    fn load_header(&self, at: u64) -> u64 {
        self.word(at).load(Acquire)
    }
    #[inline]
    fn store_header(&self, at: u64, word: u64, order: std::sync::atomic::Ordering) {
        self.word(at).store(word, order);
    }
    #[inline]
    fn write(&self, at: u64, data: &[u8]) {
        // SAFETY: as in `read`; the mapping is writable (queues are opened
        // read-write).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr(at), data.len()) }
    }
    #[inline]
    fn zero_word(&self, at: u64) {
        self.word(at).store(0, Relaxed);
    }
}

/// Pointers into one queue file's mapping, valid while `file` lives (the
/// file's region is never remapped: nobody gets `&mut` to it).
struct Shared {
    file: SharedFile,
    write: NonNull<AtomicU64>,
    read: NonNull<AtomicU64>,
    space: NonNull<AtomicU64>,
    events: NonNull<AtomicU32>,
    /// The producer's role group; the consumer's is 8 words further.
    roles: NonNull<AtomicU64>,
    bytes: Mapped,
    capacity: u64,
    /// Whether the file had a name when opened (`st_nlink > 0`): only
    /// then does losing it mean it was deleted.
    linked: bool,
    /// This process's fences, chosen when it attached.
    fences: FenceMode,
    /// Our role, whose peer's fences word decides each notify.
    role: Role,
}

// SAFETY: the pointers point into `file`'s mapping, which moves with it;
// all shared words are atomics and the ring bytes are accessed under the
// queue protocol.
unsafe impl Send for Shared {}

/// The two roles.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Producer,
    Consumer,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }

    /// The index of the role's first word among the role words.
    fn base(self) -> usize {
        match self {
            Role::Producer => 0,
            Role::Consumer => ((CONSUMER_ROLE - PRODUCER_ROLE) / 8) as usize,
        }
    }

    fn other(self) -> Role {
        match self {
            Role::Producer => Role::Consumer,
            Role::Consumer => Role::Producer,
        }
    }
}

/// What one end knows about its peer's sessions (see "Sessions" above).
#[derive(Debug, Clone, Copy)]
struct Watch {
    /// The peer's `sessions` word when we attached.
    since: u64,
    /// Whether a peer of our session has been seen (sticky).
    seen: bool,
    /// When the file's link count may be checked again (at most once per
    /// [`PEER_CHECK`], so that polling an empty queue stays cheap).
    next_link_check: Option<Instant>,
    /// The peer's token last found alive, and until when that verdict is
    /// reused instead of asking the kernel again (at most [`PEER_CHECK`]:
    /// a peer that dies is noticed as late as that, as while parked).
    alive: Option<(u64, Instant)>,
}

/// The peer, as found by a check.
enum Peer {
    /// Held by a live process, or not counting for our session.
    Waiting,
    /// A peer of our session is gone.
    Gone { clean: bool, pid: u32 },
}

impl Shared {
    fn open(file: SharedFile, role: Role) -> Result<Shared> {
        let origin = file.region().origin().clone();
        file.header().expect(&origin, Kind::Queue, &fingerprint())?;
        let obj = file.object_offset();
        let capacity = file.object_len().saturating_sub(CONTROL_LEN);
        check_stored_capacity(&origin, capacity)?;
        let r = file.region();
        let write = NonNull::from(r.atomic64(obj + WRITE_POS)?);
        let read = NonNull::from(r.atomic64(obj + READ_POS)?);
        let space = NonNull::from(r.atomic64(obj + SPACE_POS)?);
        // The first and last words of the events and of the role groups
        // are checked; the pointers the other words are reached from are
        // taken from the mapping's own pointer, not from those views: a
        // pointer from a `&AtomicU32` may only reach its 4 bytes (Stacked
        // Borrows), and `ring` and `word` reach up to 68 bytes further.
        r.atomic32(obj + DATA_EVENT)?;
        r.atomic32(obj + SPACE_EVENT + 4)?;
        r.atomic64(obj + PRODUCER_ROLE)?;
        r.atomic64(obj + CONSUMER_ROLE + 8 * FENCES as u64)?;
        let at = |off: u64| r.as_ptr().wrapping_add(off as usize).cast_mut();
        // SAFETY: addresses inside a live mapping (just checked) are never
        // null.
        let (events, roles) = unsafe {
            (
                NonNull::new_unchecked(at(obj + DATA_EVENT).cast::<AtomicU32>()),
                NonNull::new_unchecked(at(obj + PRODUCER_ROLE).cast::<AtomicU64>()),
            )
        };
        let start = obj + CONTROL_LEN;
        let base = r.as_mut_ptr()?.wrapping_add(start as usize);
        if start + capacity > r.len() as u64 {
            return Err(Error::Truncated {
                origin,
                expected: start + capacity,
                actual: r.len() as u64,
            });
        }
        let linked = r
            .file()
            .metadata()
            .map_err(|e| Error::io(&origin, "fstat", e))?
            .nlink()
            > 0;
        Ok(Shared {
            file,
            write,
            read,
            space,
            events,
            roles,
            bytes: Mapped { base },
            capacity,
            linked,
            fences: FenceMode::detect(),
            role,
        })
    }

    /// Opens the queue in `file` as `role`: claims the role, then loads and
    /// validates both positions (read, write) as persisted in the file.
    /// Returns them with our session number and what we know of the peer.
    fn attach(file: SharedFile, role: Role) -> Result<Attached> {
        let q = Shared::open(file, role)?;
        q.claim(role)?;
        // Our fences, for the peer's notifies (see `sync::fence`).
        q.word(role, FENCES).store(q.fences.code(), SeqCst);
        let ring = q.ring();
        let read = ring.read.load(Acquire);
        let stored = ring.write.load(Acquire);
        let positions = match role {
            // A producer that died between a commit and its store of
            // `write` left it behind: walk the committed headers.
            Role::Producer => ring.recover_write(stored, read).map(|w| (read, w)),
            // The consumer never uses `write`; its own position must be
            // sane, and the headers are checked as they are read.
            Role::Consumer => ring::check_position(read).map(|()| (read, stored)),
        };
        let (read, write) = match positions {
            Ok(p) => p,
            Err(v) => {
                q.unclaim(role);
                return Err(q.corrupted(v));
            }
        };
        match role {
            Role::Producer => ring.write.store(write, Release),
            // Whatever an earlier consumer published, we start here.
            Role::Consumer => ring.space.store(read, Release),
        }
        let peer = role.other();
        let since = q.word(peer, SESSIONS).load(Acquire);
        // A peer role word that is not a token is reported by the first
        // wait that checks the peer; here it just does not count as live.
        let live = matches!(q.holder_liveness(peer), Ok(Some((_, true))));
        // A consumer counts the producer of records pending now as seen
        // (garbage counts too: the first read reports it).
        let pending = role == Role::Consumer && ring.next(read, read + q.capacity) != Ok(None);
        let watch = Watch {
            since,
            seen: live || pending,
            next_link_check: None,
            alive: None,
        };
        // The session starts only now that nothing can fail: a failed
        // attach never looks like a peer that came and went.
        let session = q.word(role, SESSIONS).fetch_add(1, SeqCst).wrapping_add(1);
        // Wake a producer that waits for a consumer before writing a pad
        // that only a consumer can release.
        if role == Role::Consumer {
            q.ring().space_event.notify(1, &Futex);
        }
        q.prefault_ring(match role {
            Role::Producer => write,
            Role::Consumer => read,
        });
        Ok(Attached {
            q,
            read,
            write,
            session,
            watch,
        })
    }

    /// Maps the ring's pages into this process now, [`PREFAULT_LIMIT`]
    /// bytes of it from our `position` on (wrapping): otherwise the first
    /// lap through a new queue takes a page fault every 4 KiB in each
    /// process, 1–2 µs each on this project's VMs, the p99 of a fresh
    /// queue's latency (docs/benchmarks.md). Only for a ring in memory (a
    /// memfd, `/dev/shm`): on a file on disk a producer's first write to
    /// each page faults anyway (the kernel tracks dirty pages), a reader's
    /// faults map 16 pages at a time, and populating would read up to
    /// `PREFAULT_LIMIT` from disk before the attach returns (found in
    /// review). An optimisation only (`Region::populate_hint`): a page an
    /// outside truncate cut away shows at its first access, as before.
    fn prefault_ring(&self, position: u64) {
        let region = self.file.region();
        if !matches!(sys::open::in_memory(region.file()), Ok(true)) {
            return;
        }
        let (ring, cap) = (self.file.object_offset() + CONTROL_LEN, self.capacity);
        let len = cap.min(PREFAULT_LIMIT);
        let at = ring::offset(position, cap);
        let first = len.min(cap - at);
        let _ = region.populate_hint(ring + at, first as usize, false);
        if first < len {
            let _ = region.populate_hint(ring, (len - first) as usize, false);
        }
    }

    /// The fences of our notifies: asymmetric only if our peer's are too.
    #[inline]
    fn pair(&self) -> Pair<'_, AtomicU64> {
        Pair {
            mine: self.fences,
            peer: self.word(self.role.other(), FENCES),
        }
    }

    #[inline]
    fn origin(&self) -> &Origin {
        self.file.region().origin()
    }

    /// Whether this process is the one that attached (not a forked child
    /// holding a copy). One relaxed load unless a fork happened.
    #[inline]
    fn is_owner(&self) -> bool {
        self.file.lease().check_owner(self.file.region()).is_ok()
    }

    /// Word `which` (`HOLDER`, `SESSIONS`, `CLOSED`, `FENCES`) of `role`'s
    /// group.
    #[inline]
    fn word(&self, role: Role, which: usize) -> &AtomicU64 {
        // SAFETY: the two groups (offsets 256..288 and 320..352) are
        // aligned u64s inside the control block, checked in `open`; the
        // mapping lives as long as `self`.
        unsafe { &*self.roles.as_ptr().add(role.base() + which) }
    }

    #[inline]
    fn ring(&self) -> Ring<'_, AtomicU64, AtomicU32, Mapped> {
        // SAFETY: each pointer was produced from a checked atomic view of
        // the mapping in `open`, and the mapping lives as long as `self`.
        let (write, read, space, ev) = unsafe {
            (
                self.write.as_ref(),
                self.read.as_ref(),
                self.space.as_ref(),
                self.events.as_ptr(),
            )
        };
        // SAFETY: the two events' four words are consecutive (offsets 128,
        // 132 and 192, 196), checked in `open`.
        let word = |i: usize| unsafe { &*ev.add(i) };
        Ring {
            write,
            read,
            space,
            data_event: RawEvent {
                seq: word(0),
                sleepers: word(1),
            },
            space_event: RawEvent {
                seq: word(16),
                sleepers: word(17),
            },
            bytes: &self.bytes,
            capacity: self.capacity,
            line: ring::LINE,
        }
    }

    /// `Truncated` if an outside truncate cut the file (see
    /// [`SharedFile::check_faults`]): called after reading shared bytes
    /// and before trusting what was read, and before writing.
    #[inline]
    fn check_faults(&self) -> Result<()> {
        self.file.check_faults()
    }

    /// A violated invariant; reported as `Truncated` instead when a page
    /// vanished, since zeros from a cut page look like corruption.
    fn corrupted(&self, v: ring::Violation) -> Error {
        self.corrupted_as("queue state", v.0)
    }

    /// [`Shared::corrupted`], saying what was corrupted.
    fn corrupted_as(&self, what: &'static str, why: String) -> Error {
        if let Err(e) = self.check_faults() {
            return e;
        }
        Error::Corrupted {
            origin: self.origin().clone(),
            what,
            why,
        }
    }

    /// Claims `role` for this process's lease (the session number is
    /// taken later, by `attach`): see `crate::role`.
    fn claim(&self, role: Role) -> Result<()> {
        crate::role::claim(&self.file, self.word(role, HOLDER), role.name())
    }

    /// Gives `role` back after a failed attach (no session close mark:
    /// the session never started).
    fn unclaim(&self, role: Role) {
        crate::role::unclaim(&self.file, self.word(role, HOLDER));
    }

    /// Ends our session cleanly: marks it closed, gives the role back and
    /// wakes the peer so it notices at once. Writes nothing in a forked
    /// child.
    fn leave(&self, role: Role, session: u64) {
        let me = self.file.lease().token().raw();
        // Not in a forked child; and not if our role was taken over (we
        // were judged dead): the close mark belongs to the holder.
        if !self.is_owner() || self.word(role, HOLDER).load(Acquire) != me {
            return;
        }
        self.word(role, CLOSED).store(session, Release);
        self.unclaim(role);
        let ring = self.ring();
        match role {
            Role::Producer => ring.data_event.notify(1, &Futex),
            Role::Consumer => ring.space_event.notify(1, &Futex),
        }
    }

    /// `(pid, alive)` of the process `token` names (this one included).
    fn liveness(&self, token: u64) -> Result<(u32, bool)> {
        crate::role::liveness(&self.file, token, "queue role")
    }

    /// The holder of `role`: `None` if the role word is 0, else its
    /// `(pid, alive)`.
    fn holder_liveness(&self, role: Role) -> Result<Option<(u32, bool)>> {
        let token = self.word(role, HOLDER).load(Acquire);
        if token == 0 {
            return Ok(None);
        }
        self.liveness(token).map(Some)
    }

    /// Checks the peer (`role`) against our session's `watch`.
    ///
    /// The three words are read one after another while the peer may
    /// attach or leave, so a verdict "gone" is only given on a stable
    /// reading: the words are read again after the liveness check, and if
    /// the session count or the holder changed meanwhile, the check is
    /// repeated (a few times, then it says `Waiting` and the next check
    /// decides). Without that, a peer that left cleanly between our loads
    /// looked like one that died (with pid 0, or with the pid of a lease
    /// it had just released).
    fn check_peer(&self, role: Role, watch: &mut Watch) -> Result<Peer> {
        for _ in 0..4 {
            // Sessions and closed first, the holder last: a new peer that
            // attaches in between is then seen as live, never as a dead one.
            let sessions = self.word(role, SESSIONS).load(Acquire);
            let closed = self.word(role, CLOSED).load(Acquire);
            if sessions != watch.since {
                watch.seen = true;
            }
            let token = self.word(role, HOLDER).load(Acquire);
            // The same live holder as a moment ago: no system call (a
            // clean leave changes the words, so it is seen at once).
            if token != 0
                && watch
                    .alive
                    .is_some_and(|(t, until)| t == token && Instant::now() < until)
            {
                watch.seen = true;
                return Ok(Peer::Waiting);
            }
            let (pid, alive) = if token == 0 {
                (0, false)
            } else {
                self.liveness(token)?
            };
            if alive {
                watch.seen = true;
                watch.alive = Some((token, Instant::now() + PEER_CHECK));
                return Ok(Peer::Waiting);
            }
            if !watch.seen {
                return Ok(Peer::Waiting);
            }
            // Stable? A leaving peer stores its close mark before it gives
            // the role back, so an unchanged holder and session count mean
            // `closed` is the final word on this session.
            let closed_again = self.word(role, CLOSED).load(Acquire);
            if self.word(role, SESSIONS).load(Acquire) == sessions
                && self.word(role, HOLDER).load(Acquire) == token
                && closed_again == closed
            {
                return Ok(Peer::Gone {
                    clean: closed == sessions,
                    pid,
                });
            }
        }
        Ok(Peer::Waiting)
    }

    /// Whether the file lost its last name since we opened it (checked at
    /// most once per [`PEER_CHECK`]; `false` between checks).
    fn deleted(&self, watch: &mut Watch) -> Result<bool> {
        if !self.linked {
            return Ok(false);
        }
        let now = Instant::now();
        if watch.next_link_check.is_some_and(|t| now < t) {
            return Ok(false);
        }
        watch.next_link_check = Some(now + PEER_CHECK);
        let meta = self
            .file
            .region()
            .file()
            .metadata()
            .map_err(|e| Error::io(self.origin(), "fstat", e))?;
        Ok(meta.nlink() == 0)
    }

    /// Waits per `wait` until `ready(parking)`: checks once, spins, then
    /// parks on `event` in slices of [`PEER_CHECK`], checking the peer
    /// (`peer`, per `watch`) before parking and between slices.
    /// `parking` is false while spinning and true for the checks made
    /// about to park or after waking (where the producer looks at the
    /// consumer's durable position, see `ring`). `Ok(false)` when
    /// `wait` ran out; `Disconnected`/`PeerDied` when a peer of our session
    /// is gone and `ready()` still fails; `Deleted` when the file lost its
    /// name and no live peer holds it; any error `ready()` returns.
    fn wait_for(
        &self,
        event: &RawEvent<'_, AtomicU32>,
        spin: Spin,
        wait: Wait,
        peer: Role,
        watch: &mut Watch,
        ready: impl Fn(bool) -> Result<bool>,
    ) -> Result<bool> {
        // An error ends every wait at once; it is reported below.
        let bad: Cell<Option<Error>> = Cell::new(None);
        let checker = |parking: bool| {
            let ready = &ready;
            let bad = &bad;
            move || match ready(parking) {
                Ok(r) => r,
                Err(e) => {
                    bad.set(Some(e));
                    true
                }
            }
        };
        let mut ok = checker(false)();
        if !ok && !matches!(wait, Wait::No) {
            let deadline = match wait {
                Wait::Until(d) => Some(d),
                Wait::No | Wait::Forever => None,
            };
            ok = spin_until(spin, deadline, checker(false));
        }
        let check = checker(true);
        if !ok {
            ok = check();
        }
        loop {
            self.check_faults()?;
            if let Some(e) = bad.take() {
                return Err(e);
            }
            if ok {
                return Ok(true);
            }
            let end = match self.check_peer(peer, watch)? {
                Peer::Gone { clean: true, .. } => Some(Error::Disconnected {
                    origin: self.origin().clone(),
                    peer: peer.name(),
                }),
                // The producer does not tell a dead consumer from one
                // that left: the records stay for the next one either way.
                Peer::Gone { .. } if peer == Role::Consumer => Some(Error::Disconnected {
                    origin: self.origin().clone(),
                    peer: peer.name(),
                }),
                Peer::Gone { pid, .. } => Some(Error::PeerDied {
                    origin: self.origin().clone(),
                    peer: peer.name(),
                    pid,
                }),
                Peer::Waiting if self.deleted(watch)? && !self.peer_live(peer)? => {
                    Some(Error::Deleted {
                        origin: self.origin().clone(),
                    })
                }
                Peer::Waiting => None,
            };
            if let Some(e) = end {
                // It may have made progress just before it left.
                if check() {
                    ok = true;
                    continue;
                }
                // The peer's words and the ring were read since the check
                // above: a cut since then is `Truncated`, not a clean end
                // (found in review).
                self.check_faults()?;
                return Err(e);
            }
            let slice = match wait {
                Wait::No => return self.check_faults().map(|()| false),
                Wait::Until(d) if Instant::now() >= d => {
                    return self.check_faults().map(|()| false)
                }
                Wait::Until(d) => d.min(Instant::now() + PEER_CHECK),
                Wait::Forever => Instant::now() + PEER_CHECK,
            };
            ok = event.wait_until(check, Some(slice), &Futex, &self.pair());
        }
    }

    /// Whether `role` is held by a live process now.
    fn peer_live(&self, role: Role) -> Result<bool> {
        Ok(matches!(self.holder_liveness(role)?, Some((_, true))))
    }
}

/// What [`Shared::attach`] returns.
struct Attached {
    q: Shared,
    read: u64,
    write: u64,
    session: u64,
    watch: Watch,
}

/// How long to wait: not at all, until a deadline, or forever.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Until(Instant),
    Forever,
}

impl Wait {
    /// Until `timeout` after `start`; forever if that is past what the
    /// clock can hold (`Duration::MAX` is a caller's "no limit", never a
    /// panic).
    fn after(start: Instant, timeout: Duration) -> Wait {
        match start.checked_add(timeout) {
            Some(d) => Wait::Until(d),
            None => Wait::Forever,
        }
    }
}

/// What an unbounded wait that returned empty-handed is reported as.
/// `Wait::Forever` returns only with room or data, or an error, so this
/// is not expected; it is an error rather than a panic all the same.
fn wait_ended(origin: &Origin) -> Error {
    Error::Corrupted {
        origin: origin.clone(),
        what: "queue wait",
        why: "an unbounded wait returned with neither data nor an error".into(),
    }
}

/// What `mapshare info` shows about a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    /// Ring capacity.
    pub capacity: u64,
    /// Committed bytes not yet released.
    pub used: u64,
    /// Records pending (counted by walking the committed headers; pads
    /// excluded).
    pub records: u64,
    /// Producer: `Some((pid, alive))` if the role is held.
    pub producer: Option<(u32, bool)>,
    /// Consumer: likewise.
    pub consumer: Option<(u32, bool)>,
    /// The fences the last producer and consumer chose when they attached
    /// (`None`: none has said).
    pub fences: [Option<FenceMode>; 2],
}

/// Reads a queue's state without attaching (works on read-only mappings).
pub fn observe(insp: &crate::file::Inspection) -> Result<QueueState> {
    let h = &insp.header;
    let origin = insp.region.origin().clone();
    h.expect(&origin, Kind::Queue, &fingerprint())?;
    let capacity = h.object_len.saturating_sub(CONTROL_LEN);
    check_stored_capacity(&origin, capacity)?;
    let r = &insp.region;
    let obj = h.object_offset;
    let corrupt = |why: String| Error::Corrupted {
        origin: origin.clone(),
        what: "queue state",
        why,
    };
    // Walk the committed records from the consumer's position, as the
    // consumer would (bounded: each step advances by at least 8 bytes, and
    // by at most a ring in all). On a live queue the consumer may release
    // what the walk is reading and the producer reuse it: a violation
    // counts only if the read position did not move meanwhile; otherwise
    // walk again (and after many tries, report what the last walk saw).
    let base = obj + CONTROL_LEN;
    let mut tries = 0;
    let (read, pos, records) = loop {
        let read = r.load_u64(obj + READ_POS, Acquire)?;
        ring::check_position(read).map_err(|v| corrupt(v.0))?;
        let (mut pos, mut records) = (read, 0u64);
        let walked = loop {
            let word = r.load_u64(base + ring::offset(pos, capacity), Acquire)?;
            if word == ring::EMPTY {
                break Ok(());
            }
            match ring::parse(capacity, word, pos, read + capacity) {
                Ok(ring::Next::Pad { size }) => pos += size,
                Ok(ring::Next::Record { size, .. }) => {
                    records += 1;
                    pos += size;
                }
                Err(v) => break Err(v),
            }
        };
        match walked {
            Ok(()) => break (read, pos, records),
            Err(v) => {
                tries += 1;
                if r.load_u64(obj + READ_POS, Acquire)? == read {
                    return Err(corrupt(v.0));
                }
                if tries >= 64 {
                    break (read, pos, records);
                }
            }
        }
    };
    let leases = crate::lease::LeaseTable::new(r, h.lease_offset, h.lease_slots);
    let role = |off: u64| -> Result<Option<(u32, bool)>> {
        let token = r.load_u64(obj + off, Acquire)?;
        if token == 0 {
            return Ok(None);
        }
        let t = Token::from_raw(token).ok_or_else(|| corrupt(format!("role token {token:#x}")))?;
        Ok(Some(match leases.liveness(t, None)? {
            Liveness::Alive { pid } => (pid, true),
            Liveness::Dead { pid } => (pid, false),
            Liveness::Me => (sys::pid(), true),
        }))
    };
    let fences = |off: u64| -> Result<Option<FenceMode>> {
        Ok(FenceMode::from_code(
            r.load_u64(obj + off + 8 * FENCES as u64, Acquire)?,
        ))
    };
    Ok(QueueState {
        capacity,
        used: pos - read,
        records,
        producer: role(PRODUCER_ROLE)?,
        consumer: role(CONSUMER_ROLE)?,
        fences: [fences(PRODUCER_ROLE)?, fences(CONSUMER_ROLE)?],
    })
}

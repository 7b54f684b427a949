//! A zero-copy single-producer single-consumer queue of variable-length
//! records between processes, in a persistent mapshare file (kind `queue`)
//! or an anonymous memfd shared with a child.
//!
//! The producer reserves space and writes a record in place
//! ([`Producer::reserve`] → [`Grant`] → [`Grant::commit`]); the consumer
//! reads it in place ([`Consumer::recv`] → [`Record`], released on drop).
//! No byte is copied by the queue itself. The position protocol, the
//! record format and the validation of everything read from shared memory
//! are in `ring`.
//!
//! # Object layout (after the file's header and lease table)
//!
//! | offset | word | written by |
//! |---|---|---|
//! | 0 | write position (`u64`) | producer |
//! | 64 | read position (`u64`) | consumer |
//! | 128 | data event (sequence, sleepers): the consumer parks here | both |
//! | 192 | space event: the producer parks here | both |
//! | 256 | producer role: its lease token, 0 if none | producer |
//! | 260 | consumer role | consumer |
//! | 264 | producer sessions: how many producers ever attached | producer |
//! | 268 | consumer sessions | consumer |
//! | 512 | the ring: `capacity` bytes | |
//!
//! The capacity is `object_len - 512` from the checksummed header, never a
//! word another process can change.
//!
//! # Roles, death and persistence
//!
//! Each role is claimed by storing the claimant's lease token with a CAS. A
//! second claimant gets [`Error::RoleTaken`] unless the holder's lease is
//! dead, in which case it takes over. A side that must wait (consumer:
//! queue empty; producer: queue full) checks, before parking and every
//! 20 ms while parked, whether the other role is held by a live process.
//! The consumer reports [`Error::Disconnected`] only once the queue is
//! drained and a producer has been attached at some point and is gone now;
//! a consumer that starts first waits for its producer. The producer
//! reports `Disconnected` (handing its record back) only when it would have
//! to wait for space and no live consumer will make any.
//!
//! Both positions live in the file: a consumer that restarts resumes at
//! the first record it had not released; a producer that restarts appends
//! after the last record it committed. A record received but not released
//! when its consumer died is delivered again.
//!
//! # Waiting
//!
//! A waiting side spins for a bounded, tunable time ([`Spin`]), then parks
//! on the event's futex. The other side issues a futex wake only if the
//! waiter counted itself as sleeping, so a busy stream makes no system
//! calls.

pub mod ring;

use std::cell::Cell;
use std::fs::File;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use crate::error::{Error, Origin, Result};
use crate::file::{SharedFile, Spec};
use crate::format::{Fingerprint, Kind};
use crate::lease::{Liveness, Token};
use crate::sync::{spin_until, Futex, RawEvent, Spin};
use crate::sys;
use ring::{record_size, Bytes, Next, Ring, HEADER};

const WRITE_POS: u64 = 0;
const READ_POS: u64 = 64;
const DATA_EVENT: u64 = 128;
const SPACE_EVENT: u64 = 192;
const PRODUCER_ROLE: u64 = 256;
const CONSUMER_ROLE: u64 = 260;
const CONSUMER_SESSIONS: u64 = 268;
/// Bytes before the ring.
pub const CONTROL_LEN: u64 = 512;
/// Smallest capacity accepted.
pub const MIN_CAPACITY: u64 = 64;
/// How often a parked side checks that its peer is alive.
const PEER_CHECK: Duration = Duration::from_millis(20);

/// The queue format's fingerprint: record header layout version 1.
fn fingerprint() -> Fingerprint {
    Fingerprint::new("mapshare::queue/v1", HEADER, 8)
}

/// The spec of a queue file with `capacity` bytes of ring (adjust lease
/// slots or mode, then pass it to [`SharedFile::open_or_create`]).
pub fn spec(capacity: u64) -> Result<Spec> {
    check_capacity(&Origin::anonymous("queue"), capacity)?;
    Ok(Spec::new(
        Kind::Queue,
        fingerprint(),
        CONTROL_LEN + capacity,
    ))
}

fn check_capacity(origin: &Origin, capacity: u64) -> Result<()> {
    if capacity < MIN_CAPACITY || capacity % 8 != 0 || capacity > 1 << 31 {
        return Err(Error::Corrupted {
            origin: origin.clone(),
            what: "capacity",
            why: format!(
                "{capacity} bytes; a queue needs a multiple of 8 between {MIN_CAPACITY} and 2 GiB"
            ),
        });
    }
    Ok(())
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
    /// The header slot at ring offset `at` as an atomic word.
    #[inline]
    fn header_word(&self, at: u64) -> &AtomicU64 {
        // SAFETY: `Ring` passes 8-aligned offsets inside `0..capacity` for
        // headers, and `base` is 8-aligned (page-aligned mapping plus the
        // 512-byte control block); the mapping outlives `&self`. Header
        // slots are only ever accessed through this atomic view.
        unsafe { AtomicU64::from_ptr(self.base.add(at as usize).cast()) }
    }
}

impl Bytes for Mapped {
    #[inline]
    fn read(&self, at: u64, buf: &mut [u8]) {
        // SAFETY: `Ring` only passes ranges inside `0..capacity`, and
        // `base` points at `capacity` mapped bytes; `buf` is private.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(at as usize), buf.as_mut_ptr(), buf.len())
        }
    }
    #[inline]
    fn write_header_word(&self, at: u64, header: [u8; 8]) {
        self.header_word(at).store(
            u64::from_ne_bytes(header),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    #[inline]
    fn read_header_word(&self, at: u64) -> [u8; 8] {
        self.header_word(at)
            .load(std::sync::atomic::Ordering::Relaxed)
            .to_ne_bytes()
    }
    #[inline]
    fn touch(&self, at: u64) {
        std::hint::black_box(
            self.header_word(at)
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    #[inline]
    fn write(&self, at: u64, data: &[u8]) {
        // SAFETY: as in `read`; the mapping is writable (queues are opened
        // read-write).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(at as usize), data.len())
        }
    }
}

/// Pointers into one queue file's mapping, valid while `file` lives (the
/// file's region is never remapped: nobody gets `&mut` to it).
struct Shared {
    file: SharedFile,
    write: NonNull<AtomicU64>,
    read: NonNull<AtomicU64>,
    events: NonNull<AtomicU32>,
    roles: NonNull<AtomicU32>,
    bytes: Mapped,
    capacity: u64,
}

// SAFETY: the pointers point into `file`'s mapping, which moves with it;
// all shared words are atomics and the ring bytes are accessed under the
// queue protocol.
unsafe impl Send for Shared {}

impl Shared {
    fn open(file: SharedFile) -> Result<Shared> {
        let origin = file.region().origin().clone();
        file.header().expect(&origin, Kind::Queue, &fingerprint())?;
        let obj = file.object_offset();
        let capacity = file.object_len().saturating_sub(CONTROL_LEN);
        check_capacity(&origin, capacity)?;
        let r = file.region();
        let write = NonNull::from(r.atomic_u64(obj + WRITE_POS)?);
        let read = NonNull::from(r.atomic_u64(obj + READ_POS)?);
        let events = NonNull::from(r.atomic_u32(obj + DATA_EVENT)?);
        // The space event's words, and the role words, are checked too.
        r.atomic_u32(obj + SPACE_EVENT + 4)?;
        let roles = NonNull::from(r.atomic_u32(obj + PRODUCER_ROLE)?);
        r.atomic_u32(obj + CONSUMER_SESSIONS)?;
        let start = obj + CONTROL_LEN;
        let base = r.as_mut_ptr()?.wrapping_add(start as usize);
        if start + capacity > r.len() as u64 {
            return Err(Error::Truncated {
                origin,
                expected: start + capacity,
                actual: r.len() as u64,
            });
        }
        Ok(Shared {
            file,
            write,
            read,
            events,
            roles,
            bytes: Mapped { base },
            capacity,
        })
    }

    /// Opens the queue in `file` as `role`: claims the role, then loads and
    /// validates both positions (read, write) as persisted in the file.
    fn attach(file: SharedFile, role: Role) -> Result<(Shared, u64, u64)> {
        let q = Shared::open(file)?;
        q.claim(role)?;
        let read = q.ring().read.load(Acquire);
        let write = q.ring().write.load(Acquire);
        if let Err(v) = q.ring().check(read, write) {
            q.unclaim(role);
            return Err(q.corrupted(v));
        }
        Ok((q, read, write))
    }

    fn origin(&self) -> &Origin {
        self.file.region().origin()
    }

    /// A role word: 0 producer, 1 consumer, 2 producer sessions, 3
    /// consumer sessions (offsets 256, 260, 264, 268).
    fn role(&self, i: usize) -> &AtomicU32 {
        // SAFETY: four consecutive aligned u32s checked in `open`.
        unsafe { &*self.roles.as_ptr().add(i) }
    }

    fn ring(&self) -> Ring<'_, AtomicU64, AtomicU32, Mapped> {
        // SAFETY: each pointer was produced from a checked atomic view of
        // the mapping in `open`, and the mapping lives as long as `self`.
        let (write, read, ev) = unsafe {
            (
                self.write.as_ref(),
                self.read.as_ref(),
                self.events.as_ptr(),
            )
        };
        // SAFETY: the two events' four words are consecutive (offsets 128,
        // 132 and 192, 196), checked in `open`.
        let word = |i: usize| unsafe { &*ev.add(i) };
        Ring {
            write,
            read,
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
        }
    }

    fn corrupted(&self, v: ring::Violation) -> Error {
        Error::Corrupted {
            origin: self.origin().clone(),
            what: "queue state",
            why: v.0,
        }
    }

    /// Claims `role` for this process's lease.
    fn claim(&self, role: Role) -> Result<()> {
        let (i, name) = (role as usize, role.name());
        // Interim: 32-bit role words hold the token's low bits until the
        // queue stores 64-bit tokens.
        let me = self.file.lease().token().raw() as u32;
        let word = self.role(i);
        loop {
            let cur = word.load(Acquire);
            if cur == 0 {
                if word.compare_exchange(0, me, SeqCst, Relaxed).is_ok() {
                    break;
                }
                continue;
            }
            match self.liveness(cur)? {
                Some(pid) => {
                    return Err(Error::RoleTaken {
                        origin: self.origin().clone(),
                        role: name,
                        pid,
                    })
                }
                None => {
                    if word.compare_exchange(cur, me, SeqCst, Relaxed).is_ok() {
                        break;
                    }
                }
            }
        }
        self.role(i + 2).fetch_add(1, SeqCst);
        Ok(())
    }

    fn unclaim(&self, role: Role) {
        // Interim: 32-bit role words hold the token's low bits until the
        // queue stores 64-bit tokens.
        let me = self.file.lease().token().raw() as u32;
        let _ = self
            .role(role as usize)
            .compare_exchange(me, 0, SeqCst, Relaxed);
    }

    /// `Some(pid)` if `token` names a live process (this one included).
    fn liveness(&self, token: u32) -> Result<Option<u32>> {
        let Some(t) = Token::from_raw(u64::from(token)) else {
            return Err(Error::Corrupted {
                origin: self.origin().clone(),
                what: "queue role",
                why: format!("{token:#x} is not a lease token"),
            });
        };
        Ok(
            match self.file.leases().liveness(t, Some(self.file.lease()))? {
                Liveness::Me => Some(sys::pid()),
                Liveness::Alive { pid } => Some(pid),
                Liveness::Dead { .. } => None,
            },
        )
    }

    /// Whether the other role (word `i`) is held by a live process now.
    fn peer_alive(&self, i: usize) -> Result<bool> {
        let token = self.role(i).load(Acquire);
        if token == 0 {
            return Ok(false);
        }
        Ok(self.liveness(token)?.is_some())
    }

    /// Whether the other role has ever been held.
    fn peer_ever(&self, i: usize) -> bool {
        self.role(i + 2).load(Acquire) != 0
    }

    /// Waits per `wait` until `ready()`: checks once, spins, then parks on
    /// `event` in slices of [`PEER_CHECK`], checking between slices that
    /// `peer` is alive. `Ok(false)` when `wait` ran out; `Disconnected`
    /// when the peer was attached once, is gone, and `ready()` still fails;
    /// `Corrupted` when `ready()` met a violated invariant.
    fn wait_for(
        &self,
        event: &RawEvent<'_, AtomicU32>,
        spin: Spin,
        wait: Wait,
        peer: Role,
        ready: impl Fn() -> std::result::Result<bool, ring::Violation>,
    ) -> Result<bool> {
        // A violation ends every wait at once; it is reported below.
        let bad: Cell<Option<ring::Violation>> = Cell::new(None);
        let check = || match ready() {
            Ok(r) => r,
            Err(v) => {
                bad.set(Some(v));
                true
            }
        };
        let mut ok = check();
        if !ok && !matches!(wait, Wait::No) {
            ok = spin_until(spin, check);
        }
        loop {
            if let Some(v) = bad.take() {
                return Err(self.corrupted(v));
            }
            if ok {
                return Ok(true);
            }
            let i = peer as usize;
            if !self.peer_alive(i)? && self.peer_ever(i) {
                // It may have made progress just before it left.
                if check() {
                    ok = true;
                    continue;
                }
                return Err(Error::Disconnected {
                    origin: self.origin().clone(),
                    peer: peer.name(),
                });
            }
            let slice = match wait {
                Wait::No => return Ok(false),
                Wait::Until(d) if Instant::now() >= d => return Ok(false),
                Wait::Until(d) => d.min(Instant::now() + PEER_CHECK),
                Wait::Forever => Instant::now() + PEER_CHECK,
            };
            ok = event.wait_until(check, Some(slice), &Futex);
        }
    }
}

/// The two roles, by their index among the role words.
#[derive(Clone, Copy)]
enum Role {
    Producer = 0,
    Consumer = 1,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }
}

/// Why a send did not happen; carries the record back.
#[derive(Debug)]
pub enum SendError<T> {
    /// `try_send`: no space now.
    Full(T),
    /// The deadline passed.
    Timeout(T),
    /// The queue is full and no live consumer will make space.
    Disconnected(T),
    /// Anything else (the record is too large, corrupted shared state).
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

/// How long to wait: not at all, until a deadline, or forever.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Until(Instant),
    Forever,
}

/// The writing end of a queue.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::queue::{Consumer, Producer};
/// let dir = tempfile::tempdir().unwrap();
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
/// # Ok(()) }
/// ```
pub struct Producer {
    q: Shared,
    /// Our write position (authoritative; the shared copy is only stored).
    write: u64,
    /// The consumer's position as last loaded.
    read_cache: u64,
    spin: Spin,
}

/// Space reserved for one record. Write it through `DerefMut`, then
/// [`Grant::commit`]; dropping it uncommitted publishes nothing.
pub struct Grant<'p> {
    producer: &'p mut Producer,
    at: u64,
    len: usize,
}

impl Producer {
    fn from_file(file: SharedFile) -> Result<Producer> {
        let (q, read, write) = Shared::attach(file, Role::Producer)?;
        Ok(Producer {
            q,
            write,
            read_cache: read,
            spin: Spin::default(),
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

    /// Largest record payload.
    pub fn max_record(&self) -> u64 {
        self.q.capacity - HEADER
    }

    /// The queue file.
    pub fn file(&self) -> &SharedFile {
        &self.q.file
    }

    fn free(&self) -> u64 {
        self.q.capacity - (self.write - self.read_cache)
    }

    /// Waits until `bytes` are free at our position. `Ok(false)` if `wait`
    /// ran out.
    fn make_room(&mut self, bytes: u64, wait: Wait) -> Result<bool> {
        if self.free() >= bytes {
            return Ok(true);
        }
        let q = &self.q;
        let ring = q.ring();
        let (write, cap) = (self.write, q.capacity);
        let read_seen = Cell::new(self.read_cache);
        let ok = q.wait_for(&ring.space_event, self.spin, wait, Role::Consumer, || {
            let r = ring.load_read(write)?;
            read_seen.set(r);
            Ok(cap - (write - r) >= bytes)
        });
        self.read_cache = read_seen.get();
        ok
    }

    fn reserve_inner(&mut self, len: usize, wait: Wait) -> Result<Option<Grant<'_>>> {
        // A forked child must not write as its parent's producer.
        self.q.file.lease().check_owner(self.q.file.region())?;
        let max = self.max_record();
        if len == 0 || len as u64 > max {
            return Err(Error::TooLarge {
                origin: self.q.origin().clone(),
                len: len as u64,
                max,
            });
        }
        let size = record_size(len as u64);
        let pad = self.q.ring().pad_before(self.write, size);
        if pad > 0 {
            if !self.make_room(pad, wait)? {
                return Ok(None);
            }
            let ring = self.q.ring();
            ring.write_pad(self.write, pad);
            self.write += pad;
            ring.publish(self.write, &Futex);
        }
        if !self.make_room(size, wait)? {
            return Ok(None);
        }
        let at = self.write;
        Ok(Some(Grant {
            producer: self,
            at,
            len,
        }))
    }

    /// Reserves space for a `len`-byte record, waiting as long as it takes.
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_>> {
        let origin = self.q.origin().clone();
        self.reserve_inner(len, Wait::Forever)?
            .ok_or_else(|| wait_ended(&origin))
    }

    /// Reserves space if there is some now; `Ok(None)` if the queue is full.
    pub fn try_reserve(&mut self, len: usize) -> Result<Option<Grant<'_>>> {
        self.reserve_inner(len, Wait::No)
    }

    /// Reserves space, waiting at most `timeout`.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Grant<'_>> {
        let start = Instant::now();
        let origin = self.q.origin().clone();
        match self.reserve_inner(len, Wait::Until(start + timeout))? {
            Some(g) => Ok(g),
            None => Err(Error::Timeout {
                origin,
                what: "waiting for space in the queue",
                waited: start.elapsed(),
            }),
        }
    }

    fn send_inner<'d>(
        &mut self,
        data: &'d [u8],
        wait: Wait,
    ) -> std::result::Result<(), SendError<&'d [u8]>> {
        match self.reserve_inner(data.len(), wait) {
            Ok(Some(mut g)) => {
                g.copy_from_slice(data);
                g.commit();
                Ok(())
            }
            Ok(None) if matches!(wait, Wait::No) => Err(SendError::Full(data)),
            Ok(None) => Err(SendError::Timeout(data)),
            Err(Error::Disconnected { .. }) => Err(SendError::Disconnected(data)),
            Err(e) => Err(SendError::Failed(e, data)),
        }
    }

    /// Sends a copy of `data` as one record, waiting for space.
    pub fn send<'d>(&mut self, data: &'d [u8]) -> std::result::Result<(), SendError<&'d [u8]>> {
        self.send_inner(data, Wait::Forever)
    }

    /// Sends if there is space now.
    pub fn try_send<'d>(&mut self, data: &'d [u8]) -> std::result::Result<(), SendError<&'d [u8]>> {
        self.send_inner(data, Wait::No)
    }

    /// Sends, waiting at most `timeout` for space.
    pub fn send_timeout<'d>(
        &mut self,
        data: &'d [u8],
        timeout: Duration,
    ) -> std::result::Result<(), SendError<&'d [u8]>> {
        self.send_inner(data, Wait::Until(Instant::now() + timeout))
    }

    /// Sends every record of `records`, publishing once per run of records
    /// that fit without waiting (one release store and at most one wake per
    /// run instead of one per record). Returns how many were sent before an
    /// error.
    pub fn send_batch(&mut self, records: &[&[u8]]) -> std::result::Result<(), (usize, Error)> {
        let mut unpublished = false;
        for (sent, r) in records.iter().enumerate() {
            let max = self.max_record();
            if r.is_empty() || r.len() as u64 > max {
                return Err((
                    sent,
                    Error::TooLarge {
                        origin: self.q.origin().clone(),
                        len: r.len() as u64,
                        max,
                    },
                ));
            }
            let size = record_size(r.len() as u64);
            let pad = self.q.ring().pad_before(self.write, size);
            if self.free() < pad + size {
                // About to wait (or wrap): publish what we have first.
                if unpublished {
                    self.q.ring().publish(self.write, &Futex);
                }
            }
            let mut g = match self.reserve_inner(r.len(), Wait::Forever) {
                Ok(Some(g)) => g,
                Ok(None) => return Err((sent, wait_ended(self.q.origin()))),
                Err(e) => return Err((sent, e)),
            };
            g.copy_from_slice(r);
            g.finish();
            unpublished = true;
        }
        if unpublished {
            self.q.ring().publish(self.write, &Futex);
        }
        Ok(())
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

impl Drop for Producer {
    fn drop(&mut self) {
        self.q.unclaim(Role::Producer);
        // Wake a parked consumer so it notices at once.
        self.q.ring().data_event.notify(1, &Futex);
    }
}

impl<'p> Grant<'p> {
    fn slice_ptr(&self) -> *mut u8 {
        let off = self.at % self.producer.q.capacity + HEADER;
        self.producer.q.bytes.base.wrapping_add(off as usize)
    }

    /// Writes the header and advances our position, without publishing.
    fn finish(self) -> &'p mut Producer {
        let Grant { producer, at, len } = self;
        producer.q.ring().write_header(at, len as u32);
        producer.write = at + record_size(len as u64);
        producer
    }

    /// Publishes the record: the consumer can see it from now on.
    pub fn commit(self) {
        let p = self.finish();
        p.q.ring().publish(p.write, &Futex);
    }

    /// Publishes only the first `len` bytes (at most the reserved length).
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
    fn deref(&self) -> &[u8] {
        // SAFETY: the reserved range lies inside the ring (checked when
        // reserved), beyond the published write position, so the consumer
        // does not read it and no one else writes it until we commit: an
        // exclusive grant. The borrow of `&self` ties it to the grant.
        unsafe { std::slice::from_raw_parts(self.slice_ptr(), self.len) }
    }
}

impl DerefMut for Grant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes it unique in-process.
        unsafe { std::slice::from_raw_parts_mut(self.slice_ptr(), self.len) }
    }
}

/// The reading end of a queue.
pub struct Consumer {
    q: Shared,
    /// Our read position (authoritative).
    read: u64,
    /// The producer's position as last loaded.
    write_cache: u64,
    spin: Spin,
}

/// A record borrowed in place; released to the producer on drop.
pub struct Record<'c> {
    consumer: &'c mut Consumer,
    at: u64,
    len: usize,
    next: u64,
}

/// Records borrowed in place by [`Consumer::recv_batch`]; all released on
/// drop, with one store.
pub struct Batch<'c> {
    consumer: &'c mut Consumer,
    records: Vec<(u64, usize)>,
    next: u64,
}

impl Consumer {
    fn from_file(file: SharedFile) -> Result<Consumer> {
        let (q, read, write) = Shared::attach(file, Role::Consumer)?;
        Ok(Consumer {
            q,
            read,
            write_cache: write,
            spin: Spin::default(),
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

    /// Committed bytes not yet released (a snapshot).
    pub fn pending_bytes(&self) -> Result<u64> {
        let w = self
            .q
            .ring()
            .load_write(self.read)
            .map_err(|v| self.q.corrupted(v))?;
        Ok(w - self.read)
    }

    /// Finds the next record at our position, skipping pads; waits per
    /// `wait`. `Ok(None)`: nothing arrived in time.
    ///
    /// A skipped pad is released at once (the producer may be waiting for
    /// that space) unless `borrowed`: then records before it are still
    /// borrowed in place, and releasing past them would hand their bytes
    /// back to the producer; the caller releases everything later.
    fn next_record(&mut self, wait: Wait, borrowed: bool) -> Result<Option<(u64, usize, u64)>> {
        self.q.file.lease().check_owner(self.q.file.region())?;
        loop {
            let avail = self.available(wait)?;
            if avail == 0 {
                return Ok(None);
            }
            let ring = self.q.ring();
            match ring
                .next(self.read, avail)
                .map_err(|v| self.q.corrupted(v))?
            {
                Next::Pad { size } => {
                    self.read += size;
                    if !borrowed {
                        ring.release(self.read, &Futex);
                    }
                }
                Next::Record { at, len, size } => {
                    return Ok(Some((at, len as usize, self.read + size)))
                }
            }
        }
    }

    /// Committed bytes after our position, waiting per `wait` for some.
    fn available(&mut self, wait: Wait) -> Result<u64> {
        if self.write_cache > self.read {
            return Ok(self.write_cache - self.read);
        }
        let q = &self.q;
        let ring = q.ring();
        let read = self.read;
        let write_seen = Cell::new(self.write_cache);
        let arrived = q.wait_for(&ring.data_event, self.spin, wait, Role::Producer, || {
            ring.touch_next(read);
            let w = ring.load_write(read)?;
            write_seen.set(w);
            Ok(w != read)
        });
        self.write_cache = write_seen.get();
        arrived?;
        Ok(self.write_cache - self.read)
    }

    fn record(&mut self, found: Option<(u64, usize, u64)>) -> Option<Record<'_>> {
        found.map(|(at, len, next)| Record {
            consumer: self,
            at,
            len,
            next,
        })
    }

    /// Receives the next record, waiting as long as it takes. Fails with
    /// [`Error::Disconnected`] once the queue is drained and its producer is
    /// gone.
    pub fn recv(&mut self) -> Result<Record<'_>> {
        let found = self.next_record(Wait::Forever, false)?;
        let origin = self.q.origin().clone();
        self.record(found).ok_or_else(|| wait_ended(&origin))
    }

    /// Receives a record if one is there; `Ok(None)` if the queue is empty
    /// (and its producer alive or not yet seen).
    pub fn try_recv(&mut self) -> Result<Option<Record<'_>>> {
        let found = self.next_record(Wait::No, false)?;
        Ok(self.record(found))
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Record<'_>> {
        let start = Instant::now();
        let found = self.next_record(Wait::Until(start + timeout), false)?;
        let origin = self.q.origin().clone();
        self.record(found).ok_or_else(|| Error::Timeout {
            origin,
            what: "waiting for a record",
            waited: start.elapsed(),
        })
    }

    /// Receives up to `max` records that are already there (waiting up to
    /// `timeout` for the first), borrowed in place and released together.
    pub fn recv_batch(&mut self, max: usize, timeout: Duration) -> Result<Batch<'_>> {
        let mut records = Vec::new();
        let start = self.read;
        let mut wait = Wait::Until(Instant::now() + timeout);
        while records.len() < max {
            match self.next_record(wait, !records.is_empty()) {
                Ok(Some((at, len, next))) => {
                    records.push((at, len));
                    // Look past this record without releasing it yet.
                    self.read = next;
                    wait = Wait::No;
                }
                Ok(None) => break,
                Err(Error::Disconnected { .. }) if !records.is_empty() => break,
                Err(e) => {
                    self.read = start;
                    return Err(e);
                }
            }
        }
        let next = self.read;
        self.read = start;
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
    fn drop(&mut self) {
        self.q.unclaim(Role::Consumer);
        self.q.ring().space_event.notify(1, &Futex);
    }
}

impl Record<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: records carry at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Deref for Record<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: validated to lie inside the ring and before the published
        // write position; until we release it the producer does not write
        // there: an exclusive grant by the protocol.
        unsafe {
            std::slice::from_raw_parts(self.consumer.q.bytes.base.add(self.at as usize), self.len)
        }
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        c.read = self.next;
        c.q.ring().release(c.read, &Futex);
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

    /// The records, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let base = self.consumer.q.bytes.base;
        self.records.iter().map(move |&(at, len)| {
            // SAFETY: as for `Record`: validated, committed, not yet released.
            unsafe { std::slice::from_raw_parts(base.add(at as usize), len) }
        })
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        c.read = self.next;
        c.q.ring().release(c.read, &Futex);
    }
}

/// What `mapshare info` shows about a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    /// Ring capacity.
    pub capacity: u64,
    /// Committed bytes not yet released.
    pub used: u64,
    /// Records pending (counted by walking the ring; pads excluded).
    pub records: u64,
    /// Producer: `Some((pid, alive))` if the role is held.
    pub producer: Option<(u32, bool)>,
    /// Consumer: likewise.
    pub consumer: Option<(u32, bool)>,
}

/// Reads a queue's state without attaching (works on read-only mappings).
pub fn observe(insp: &crate::file::Inspection) -> Result<QueueState> {
    let h = &insp.header;
    let origin = insp.region.origin().clone();
    h.expect(&origin, Kind::Queue, &fingerprint())?;
    let capacity = h.object_len.saturating_sub(CONTROL_LEN);
    check_capacity(&origin, capacity)?;
    let r = &insp.region;
    let obj = h.object_offset;
    let write = r.load_u64(obj + WRITE_POS, Acquire)?;
    let read = r.load_u64(obj + READ_POS, Acquire)?;
    let corrupt = |why: String| Error::Corrupted {
        origin: origin.clone(),
        what: "queue state",
        why,
    };
    if read % 8 != 0 || write % 8 != 0 || read > write || write - read > capacity {
        return Err(corrupt(format!(
            "read {read}, write {write}, capacity {capacity}"
        )));
    }
    // Walk the records (bounded: each step advances by at least 8 bytes).
    let mut records = 0;
    let mut pos = read;
    let base = obj + CONTROL_LEN;
    while pos < write {
        let at = pos % capacity;
        let mut hdr = [0u8; 8];
        r.read_at(base + at, &mut hdr)?;
        let len = u64::from(u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]));
        let kind = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let size = match kind {
            ring::PAD => capacity - at,
            ring::DATA => {
                records += 1;
                record_size(len)
            }
            other => return Err(corrupt(format!("record kind {other:#x} at {pos}"))),
        };
        if size == 0 || at + size > capacity || pos + size > write {
            return Err(corrupt(format!("record at {pos} overruns")));
        }
        pos += size;
    }
    let leases = crate::lease::LeaseTable::new(r, h.lease_offset, h.lease_slots);
    let role = |off: u64| -> Result<Option<(u32, bool)>> {
        let token = r.load_u32(obj + off, Acquire)?;
        if token == 0 {
            return Ok(None);
        }
        let t = Token::from_raw(u64::from(token))
            .ok_or_else(|| corrupt(format!("role token {token:#x}")))?;
        Ok(Some(match leases.liveness(t, None)? {
            Liveness::Alive { pid } => (pid, true),
            Liveness::Dead { pid } => (pid, false),
            Liveness::Me => (sys::pid(), true),
        }))
    };
    Ok(QueueState {
        capacity,
        used: write - read,
        records,
        producer: role(PRODUCER_ROLE)?,
        consumer: role(CONSUMER_ROLE)?,
    })
}

/// An anonymous queue (a memfd, sealed against shrinking) for a parent and
/// the children it spawns. Open the two ends with [`Anonymous::producer`]
/// and [`Anonymous::consumer`] here, or in a child with
/// [`Producer::from_inherited`] / [`Consumer::from_inherited`].
pub struct Anonymous {
    memfd: File,
    _not_sync: PhantomData<*const ()>,
}

impl Anonymous {
    /// Creates an anonymous queue with `capacity` bytes of ring.
    pub fn new(capacity: u64) -> Result<Anonymous> {
        let origin = Origin::anonymous("mapshare-queue");
        check_capacity(&origin, capacity)?;
        let fd = sys::memfd("mapshare-queue").map_err(|e| Error::io(&origin, "memfd_create", e))?;
        let memfd = File::from(fd);
        let a = Anonymous {
            memfd,
            _not_sync: PhantomData,
        };
        // Initialize through a path to the memfd (a new open file
        // description, as a child's will be), then seal it.
        drop(open_or_create(a.path(), capacity)?);
        sys::seal_against_shrink(&a.memfd).map_err(|e| Error::io(&origin, "seal", e))?;
        Ok(a)
    }

    fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.memfd.as_raw_fd())
    }

    /// This process's producer end.
    pub fn producer(&self) -> Result<Producer> {
        Producer::open(self.path())
    }

    /// This process's consumer end.
    pub fn consumer(&self) -> Result<Consumer> {
        Consumer::open(self.path())
    }

    /// Lets `cmd`'s child inherit the queue, naming its descriptor in `var`.
    pub fn share_with(&self, cmd: &mut Command, var: &str) {
        crate::region::share_fd(self.memfd.as_fd(), cmd, var);
    }
}

impl Producer {
    /// The producer end of an [`Anonymous`] queue a parent shared.
    pub fn from_inherited(var: &str) -> Result<Producer> {
        Producer::open(crate::region::inherited_fd_path(var)?)
    }
}

impl Consumer {
    /// The consumer end of an [`Anonymous`] queue a parent shared.
    pub fn from_inherited(var: &str) -> Result<Consumer> {
        Consumer::open(crate::region::inherited_fd_path(var)?)
    }
}

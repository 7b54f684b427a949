//! Readers: [`Reader`] (pins versions and reads them in place, or copies
//! them out) and [`ReadOnlyReader`] (copies them out from a file it may
//! only read).

use std::path::Path;
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Acquire, SeqCst};
use std::time::{Duration, Instant};

use super::protocol::{self, Pinned, Version, PIN_TRIES};
use super::{
    bad_checksum, checksum, copy_atomic, init, spec, Control, Segments, DEFAULT_CAPACITY, READERS,
    RO_RECHECK, RO_WAIT_BYTE,
};
use crate::error::{Error, Result};
use crate::file::{Inspection, SharedFile};
use crate::format::Kind;
use crate::region::Access;
use crate::shared::Persistent;
use crate::sync::{spin_until, Futex, Park, Spin, Symmetric};
use crate::sys::lock::LockKind;
use crate::{role, sys};

/// How long a parked `wait_newer` sleeps before it looks at the version
/// word itself (a writer that died between publish and wake-up never
/// wakes it).
const WAKE_CHECK: Duration = Duration::from_millis(50);

/// A reader of a snapshot: holds one entry of the reader table (owned by
/// this process's lease) and so at most one pin at a time.
///
/// [`Reader::read`] borrows the current version in place, with no copy,
/// no lock and no wait on the writer (a validated pin: see the [module
/// docs](super)), and no system call once the version's segment is mapped
/// (the first read from a new segment maps it); [`Reader::read_into`] and
/// [`Reader::read_value`] copy it out with atomic loads and check its
/// checksum.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::snapshot::{Reader, Writer};
/// use std::time::Duration;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("table");
/// let mut w = Writer::open(&path)?;
/// let mut r = Reader::open(&path)?;
/// assert!(r.read()?.is_none(), "nothing published yet");
///
/// let g = w.publish(b"v1")?;
/// assert_eq!(r.wait_newer(0, Duration::from_secs(1))?, g);
/// let mut buf = Vec::new();
/// assert_eq!(r.read_into(&mut buf)?, Some(g));
/// assert_eq!(buf, b"v1");
/// # Ok(()) }
/// ```
pub struct Reader {
    file: SharedFile,
    c: Control,
    entry: u32,
    segments: Segments,
    spin: Spin,
    /// The last version pinned, located (its slot entry as validated then,
    /// its segment mapped). A version word names one generation, and the
    /// writer writes a slot's entry only before publishing a new
    /// generation into it, so the same word pinned again has the same
    /// entry: a repeated read skips the slot table and the segment lookup.
    last: Located,
}

/// A pinned version word's value as [`Reader::read`] hands it out.
#[derive(Debug, Clone, Copy)]
struct Located {
    /// The version word; 0 (never pinned) for none.
    version: u64,
    /// The value's first byte, in the mapping `segments.maps[map]`, which
    /// stays mapped until `Segments::get` maps another segment (only
    /// `Reader::locate` calls it, and it resets `last` first).
    ptr: *const u8,
    len: usize,
    generation: u64,
    crc: u32,
    map: usize,
}

// SAFETY: `ptr` points into a segment mapping owned by the same `Reader`
// (its `segments`), which moves with it; it is only read through a
// `ReadGuard`, which borrows the `Reader` mutably.
unsafe impl Send for Located {}
// SAFETY: as for `Send`; `&Located` gives no access to the bytes.
unsafe impl Sync for Located {}

impl Located {
    const NONE: Located = Located {
        version: 0,
        ptr: std::ptr::null(),
        len: 0,
        generation: 0,
        crc: 0,
        map: 0,
    };
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("origin", &self.c.origin)
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Opens an existing snapshot (waiting up to 5 s for its creator).
    pub fn open(path: impl AsRef<Path>) -> Result<Reader> {
        let file = SharedFile::open(
            path,
            Kind::Snapshot,
            &super::fingerprint(),
            Duration::from_secs(5),
        )?;
        Reader::attach(file)
    }

    /// Opens the snapshot at `path`, creating it (first slots of
    /// `capacity` bytes) if it does not exist: a reader may start before
    /// its writer.
    pub fn open_or_create(path: impl AsRef<Path>, capacity: u64) -> Result<Reader> {
        let origin = crate::error::Origin::path(path.as_ref());
        let capacity = super::first_capacity(&origin, capacity.max(DEFAULT_CAPACITY))?;
        let file = SharedFile::open_or_create(path, &spec(), |r, h| init(r, h, capacity))?;
        Reader::attach(file)
    }

    pub(super) fn attach(file: SharedFile) -> Result<Reader> {
        let c = Control::new(file.region(), file.header())?;
        file.lease().check_owner(file.region())?;
        let segments = Segments::new(file.region().file(), &c.origin, Access::ReadOnly)?;
        let entry = claim_entry(&file, &c)?;
        Ok(Reader {
            file,
            c,
            entry,
            segments,
            spin: Spin::default(),
            last: Located::NONE,
        })
    }

    /// Sets how long [`Reader::wait_newer`] spins before it parks.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// This reader's entry in the reader table.
    pub fn entry(&self) -> u32 {
        self.entry
    }

    /// Pins the current version and borrows it in place; `None` if nothing
    /// was ever published. The version stays intact (the writer never
    /// writes a pinned slot) until the guard is dropped. The checksum is
    /// not verified (see [`Reader::read_checked`]).
    ///
    /// Fails with [`Error::Busy`] if the writer published between the
    /// pin and its check 65536 times in a row.
    ///
    /// A file cut short behind mapshare's back (`truncate`) is
    /// [`Error::Truncated`], never "nothing published" or a view of
    /// zeros: the control block's words and the last word of the value
    /// are loaded (one load more than the value needs) and any page found
    /// missing is reported. A cut *after* this returns is seen by
    /// [`ReadGuard::check`].
    #[inline(always)]
    pub fn read(&mut self) -> Result<Option<ReadGuard<'_>>> {
        self.file.lease().check_owner(self.file.region())?;
        let c = match protocol::pin(self.c.current(), self.c.pin(self.entry)) {
            Pinned::Version(c) => c,
            Pinned::Nothing => return self.nothing(),
            Pinned::Contended => return Err(self.contended()),
        };
        // The common case, a version read before, stays small and inline;
        // anything else is `locate`'s.
        let cached = self.last.version == c && {
            super::probe(self.last.ptr, self.last.len);
            self.segments.faults_clear(self.last.map)
        };
        let at = if cached { self.last } else { self.locate(c)? };
        Ok(Some(ReadGuard {
            reader: self,
            ptr: at.ptr,
            len: at.len,
            generation: at.generation,
            crc: at.crc,
            map: at.map,
        }))
    }

    /// "Nothing published", unless the zero came from a page an outside
    /// truncate cut away.
    #[cold]
    fn nothing<T>(&self) -> Result<Option<T>> {
        self.file.region().check_faults()?;
        Ok(None)
    }

    /// Locates pinned version word `c` (its slot entry, validated, and its
    /// segment, mapped) and remembers it; on an error, unpins.
    #[cold]
    #[inline(never)]
    fn locate(&mut self, c: u64) -> Result<Located> {
        // `Segments::get` may unmap the remembered version's segment.
        self.last = Located::NONE;
        let located = (|| {
            let v = Version::unpack(c)
                .map_err(|why| self.c.corrupted("snapshot current version", why))?
                .ok_or_else(|| self.c.corrupted("snapshot pin", "0".into()))?;
            let s = self.c.slot_of(v)?;
            let (map, region) = self.segments.get_indexed(&self.c, s.offset, s.capacity)?;
            super::probe(region.as_ptr(), s.len as usize);
            region.check_faults()?;
            Ok(Located {
                version: c,
                ptr: region.as_ptr(),
                len: s.len as usize,
                generation: s.generation,
                crc: s.crc,
                map,
            })
        })();
        match located {
            // Only a version that passed every check is remembered.
            Ok(at) => self.last = at,
            Err(_) => protocol::unpin(self.c.pin(self.entry)),
        }
        // A slot entry read from a page that vanished is zeros: that is
        // `Truncated`, not a corrupted slot.
        if located.is_err() {
            self.file.region().check_faults()?;
        }
        located
    }

    /// [`Reader::read`], then verifies the value's checksum
    /// ([`Error::Corrupted`] if it does not match).
    pub fn read_checked(&mut self) -> Result<Option<ReadGuard<'_>>> {
        let Some(g) = self.read()? else {
            return Ok(None);
        };
        g.verify()?;
        Ok(Some(g))
    }

    /// Copies the current value into `buf` (replacing its contents) with
    /// atomic loads, and verifies the copy's checksum; returns its
    /// generation, or `None` if nothing was published.
    pub fn read_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>> {
        let Some(g) = self.read()? else {
            return Ok(None);
        };
        let copied = g.copy_to(buf);
        let (generation, stored) = (g.generation, g.crc);
        drop(g);
        copied?;
        // Zeros from a page an outside truncate cut away are `Truncated`,
        // not a checksum mismatch.
        self.segments.check_faults()?;
        let computed = checksum(buf);
        if computed != stored {
            return Err(bad_checksum(&self.c.origin, generation, stored, computed));
        }
        Ok(Some(generation))
    }

    /// Copies the current value out as a `T` (checksum verified); `None`
    /// if nothing was published. A value of another size is
    /// [`Error::Corrupted`].
    pub fn read_value<T: Persistent>(&mut self) -> Result<Option<(u64, T)>> {
        let mut buf = Vec::new();
        let Some(g) = self.read_into(&mut buf)? else {
            return Ok(None);
        };
        value_from(&self.c, g, &buf).map(Some)
    }

    /// The current generation (0 if nothing was published). One load, and
    /// a check for a page cut away under it ([`Error::Truncated`]).
    #[inline]
    pub fn generation(&self) -> Result<u64> {
        current_generation(&self.c, self.file.region())
    }

    /// Waits until a generation newer than `generation` is published (at
    /// most `timeout`) and returns it: spins briefly, then parks on the
    /// futex. [`Error::Timeout`] if none came.
    pub fn wait_newer(&self, generation: u64, timeout: Duration) -> Result<u64> {
        self.file.lease().check_owner(self.file.region())?;
        let start = Instant::now();
        let deadline = start.checked_add(timeout);
        let newer = || self.c.current().load(SeqCst) >> protocol::SLOT_BITS > generation;
        // Parks in slices: a writer killed between its publish and its
        // wake-up call leaves the new version unannounced, and a reader
        // parked for an hour must still see it within a slice.
        let ready = newer() || spin_until(self.spin, deadline, newer) || {
            let ev = self.c.event();
            loop {
                let slice = Instant::now() + WAKE_CHECK;
                let until = deadline.map_or(slice, |d| d.min(slice));
                if ev.wait_until(newer, Some(until), &Futex, &Symmetric) {
                    break true;
                }
                // A file cut under us reads as zeros (no newer version):
                // report it now, not at the deadline.
                self.file.region().check_faults()?;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break false;
                }
            }
        };
        if !ready {
            // A control block cut away reads as zeros: no newer version
            // would ever come.
            self.file.region().check_faults()?;
            return Err(Error::Timeout {
                origin: self.c.origin.clone(),
                what: "waiting for a newer snapshot version",
                waited: start.elapsed(),
            });
        }
        self.file.region().check_faults()?;
        let g = self.generation()?;
        Ok(g)
    }

    fn contended(&self) -> Error {
        Error::Busy {
            origin: self.c.origin.clone(),
            why: format!("the writer published during {PIN_TRIES} pin attempts in a row"),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Not in a forked child: the entry and its pin are the parent's.
        if !self.file.lease().is_mine() {
            return;
        }
        protocol::unpin(self.c.pin(self.entry));
        role::unclaim(&self.file, self.c.owner(self.entry));
    }
}

/// Claims a reader entry: a free one (no system call), else one whose
/// owner is dead. Raises the high-water mark so the writer scans it.
fn claim_entry(file: &SharedFile, c: &Control) -> Result<u32> {
    let mut found = None;
    for e in 0..READERS {
        if role::claim_free(file, c.owner(e)) {
            found = Some(e);
            break;
        }
    }
    if found.is_none() {
        for e in 0..READERS {
            if role::claim_dead(file, c.owner(e), "snapshot reader entry")? {
                found = Some(e);
                break;
            }
        }
    }
    let Some(e) = found else {
        return Err(Error::Busy {
            origin: c.origin.clone(),
            why: format!("all {READERS} reader entries are held by live readers"),
        });
    };
    // A dead owner's pin no longer counts; ours starts empty.
    protocol::unpin(c.pin(e));
    c.readers_high().fetch_max(u64::from(e) + 1, SeqCst);
    Ok(e)
}

/// The current generation from `c`, mapped by `region`; a load from a
/// page that vanished is `Truncated`, not "nothing published".
fn current_generation(c: &Control, region: &crate::region::Region) -> Result<u64> {
    let g = c.load_current().map(|v| v.map_or(0, |v| v.generation));
    region.check_faults()?;
    g
}

fn value_from<T: Persistent>(c: &Control, generation: u64, buf: &[u8]) -> Result<(u64, T)> {
    T::read_from_bytes(buf)
        .map(|v| (generation, v))
        .map_err(|_| {
            c.corrupted(
                "snapshot value",
                format!(
                    "generation {generation} has {} bytes, a {} has {}",
                    buf.len(),
                    T::NAME,
                    std::mem::size_of::<T>()
                ),
            )
        })
}

/// A pinned version, borrowed in place. Derefs to the value's bytes.
/// Dropping it unpins the version.
///
/// The bytes are shared memory that the writer leaves alone while this
/// guard lives, by protocol; see "Soundness of in-place access" in the
/// [module docs](super) for a writer that does not follow it.
///
/// **Truncation.** No writer or reader ever shrinks the file, but a
/// program that ignores mapshare can (`truncate -s 0`). The pages it cut
/// away read as zeros through a guard (the process does not die of
/// `SIGBUS`), and a guard cannot tell its reader through `Deref`. Call
/// [`ReadGuard::check`] after using the bytes (before acting on them):
/// `Ok` means they were the value; [`Error::Truncated`] means some may
/// have been zeros. [`ReadGuard::verify`] and [`ReadGuard::copy_to`]
/// check too, and so does the next [`Reader::read`].
pub struct ReadGuard<'a> {
    reader: &'a mut Reader,
    ptr: *const u8,
    len: usize,
    generation: u64,
    crc: u32,
    /// The segment mapping in `reader.segments`.
    map: usize,
}

impl ReadGuard<'_> {
    /// The version's generation.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The checksum the writer stored.
    pub fn stored_checksum(&self) -> u32 {
        self.crc
    }

    /// Checks that the file still holds every byte of this version:
    /// [`Error::Truncated`] if a page of it was cut away since (or while)
    /// it was read, whether or not the bytes were touched (one `fstat`).
    /// Call it after reading through the guard to know that what was
    /// read was the value, not zeros.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mapshare::snapshot::{Reader, Writer};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s");
    /// let mut w = Writer::open(&path)?;
    /// w.publish(b"config")?;
    /// let mut r = Reader::open(&path)?;
    /// let g = r.read()?.expect("published");
    /// let parsed = g.to_vec(); // use the bytes...
    /// g.check()?; // ...then make sure they were really there
    /// assert_eq!(parsed, b"config");
    /// # Ok(()) }
    /// ```
    pub fn check(&self) -> Result<()> {
        let r = &*self.reader;
        r.file.lease().check_owner(r.file.region())?;
        super::probe(self.ptr, self.len);
        r.file.region().check_faults()?;
        r.segments.check_map(self.map)
    }

    /// Verifies the value against its stored checksum, after checking
    /// that the file still holds it ([`ReadGuard::check`]: a cut file is
    /// `Truncated`, not a checksum mismatch).
    pub fn verify(&self) -> Result<()> {
        let computed = checksum(self);
        self.check()?;
        if computed != self.crc {
            return Err(bad_checksum(
                &self.reader.c.origin,
                self.generation,
                self.crc,
                computed,
            ));
        }
        Ok(())
    }

    /// Copies the bytes into `out` (replacing its contents) with atomic
    /// loads: the copy-out sibling of the in-place view. A page cut away
    /// under the copy is [`Error::Truncated`] (`out` then holds zeros
    /// where it was).
    pub fn copy_to(&self, out: &mut Vec<u8>) -> Result<()> {
        copy_atomic(&self.reader.c.origin, self.ptr, self.len, out)?;
        let r = &*self.reader;
        r.file.region().check_faults()?;
        match r.segments.maps.get(self.map) {
            Some((_, _, region)) => region.check_faults(),
            None => Ok(()),
        }
    }
}

impl std::ops::Deref for ReadGuard<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // A guard a forked child inherited names its parent's pin, which
        // the parent may drop at any time: nothing to see here (one
        // relaxed load; found in review).
        if self.len == 0 || !self.reader.file.lease().is_mine() {
            return &[];
        }
        // SAFETY: `ptr` points at `len <= capacity` bytes of a segment
        // mapping that the reader keeps until a `&mut self` call (not
        // while this guard borrows it); the version is pinned and was
        // validated, so the writer leaves these bytes alone until the
        // guard drops (module docs, "Why it is safe").
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard")
            .field("generation", &self.generation)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for ReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.reader.file.lease().is_mine() {
            protocol::unpin(self.reader.c.pin(self.reader.entry));
        }
    }
}

/// A reader for a process that may only read the file (mode 0644 as
/// another user, a read-only mount). It takes no lease and writes nothing:
/// it cannot disturb the writer or other readers. It copies each value out
/// with atomic loads and keeps the copy only if the version stayed current
/// throughout (a seqlock read); it can wait for new versions on the same
/// futex word.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::snapshot::{ReadOnlyReader, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("prices");
/// let mut w = Writer::open(&path)?;
/// w.publish(b"42")?;
///
/// let mut r = ReadOnlyReader::open(&path)?;
/// let mut buf = Vec::new();
/// assert_eq!(r.read_into(&mut buf)?, Some(1));
/// assert_eq!(buf, b"42");
/// # Ok(()) }
/// ```
pub struct ReadOnlyReader {
    insp: Inspection,
    c: Control,
    segments: Segments,
    spin: Spin,
    /// Whether this reader holds its shared lock on `RO_WAIT_BYTE` (taken
    /// by the first wait, kept until drop).
    waiting_registered: bool,
    /// When this reader took its waiter lock.
    registered_at: Option<Instant>,
}

impl std::fmt::Debug for ReadOnlyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyReader")
            .field("origin", &self.c.origin)
            .finish_non_exhaustive()
    }
}

impl ReadOnlyReader {
    /// Maps the snapshot at `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<ReadOnlyReader> {
        let insp = Inspection::open(path)?;
        let c = Control::new(&insp.region, &insp.header)?;
        let segments = Segments::new(insp.region.file(), &c.origin, Access::ReadOnly)?;
        Ok(ReadOnlyReader {
            insp,
            c,
            segments,
            spin: Spin::default(),
            waiting_registered: false,
            registered_at: None,
        })
    }

    /// Sets how long [`ReadOnlyReader::wait_newer`] spins before it parks.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The current generation (0 if nothing was published; a cut file
    /// is [`Error::Truncated`]).
    pub fn generation(&self) -> Result<u64> {
        current_generation(&self.c, &self.insp.region)
    }

    /// Copies the current value into `buf` and verifies its checksum;
    /// returns its generation, or `None` if nothing was published. Retries
    /// while the writer replaces the version under the copy ([`Error::Busy`]
    /// after 65536 tries in a row).
    pub fn read_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>> {
        let read = self.copy_current(buf);
        if read.is_err() {
            // Words read from a page that vanished are zeros: report the
            // cut, not what the zeros look like.
            self.insp.region.check_faults()?;
            self.segments.check_faults()?;
        }
        read
    }

    fn copy_current(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>> {
        for _ in 0..PIN_TRIES {
            let c = self.c.current().load(SeqCst);
            let Some(v) = Version::unpack(c)
                .map_err(|why| self.c.corrupted("snapshot current version", why))?
            else {
                self.insp.region.check_faults()?;
                return Ok(None);
            };
            // A slot entry read while the writer rewrites it may be
            // garbage: only an error on a version still current counts.
            let s = match self.c.slot_of(v) {
                Ok(s) => s,
                Err(e) if protocol::still_current(self.c.current(), c) => return Err(e),
                Err(_) => continue,
            };
            let region = match self.segments.get(&self.c, s.offset, s.capacity) {
                Ok(r) => r,
                Err(e) if protocol::still_current(self.c.current(), c) => return Err(e),
                Err(_) => continue,
            };
            copy_atomic(&self.c.origin, region.as_ptr(), s.len as usize, buf)?;
            region.check_faults()?;
            // Pairs with the writer's release fence before it rewrites a
            // slot that was current: if the copy saw any of those writes,
            // the load below sees `current` moved on.
            fence(Acquire);
            if !protocol::still_current(self.c.current(), c) {
                continue;
            }
            let computed = checksum(buf);
            if computed != s.crc {
                return Err(bad_checksum(&self.c.origin, v.generation, s.crc, computed));
            }
            return Ok(Some(v.generation));
        }
        Err(Error::Busy {
            origin: self.c.origin.clone(),
            why: format!("the writer replaced the version during {PIN_TRIES} copies in a row"),
        })
    }

    /// Copies the current value out as a `T` (see
    /// [`Reader::read_value`]).
    pub fn read_value<T: Persistent>(&mut self) -> Result<Option<(u64, T)>> {
        let mut buf = Vec::new();
        let Some(g) = self.read_into(&mut buf)? else {
            return Ok(None);
        };
        value_from(&self.c, g, &buf).map(Some)
    }

    /// Waits until a generation newer than `generation` is published (at
    /// most `timeout`) and returns it. Spins, then parks on the futex
    /// (read access suffices). The first wait registers this reader with
    /// the writer (a shared lock on [`RO_WAIT_BYTE`]); its first park is
    /// cut to twice [`RO_RECHECK`], the longest a writer may go before it
    /// notices (module docs).
    pub fn wait_newer(&mut self, generation: u64, timeout: Duration) -> Result<u64> {
        let start = Instant::now();
        let deadline = start.checked_add(timeout);
        let c = &self.c;
        let newer = || c.current().load(SeqCst) >> protocol::SLOT_BITS > generation;
        if newer() || spin_until(self.spin, deadline, newer) {
            return self.generation();
        }
        if !self.waiting_registered {
            let file = self.insp.region.file();
            let locked = sys::lock::try_lock(file, LockKind::Shared, RO_WAIT_BYTE, 1)
                .map_err(|e| Error::io(&self.c.origin, "lock the read-only waiter byte", e))?;
            if !locked {
                return Err(Error::Busy {
                    origin: self.c.origin.clone(),
                    why: "the read-only waiter byte is locked exclusively".into(),
                });
            }
            self.waiting_registered = true;
            self.registered_at = Some(start);
        }
        // Until the writer has surely looked for our lock (it looks at most
        // every `RO_RECHECK`), a publish may not wake us: every park until
        // then is short, in this call or a later one.
        let first_slice = self
            .registered_at
            .map(|t| t + 2 * RO_RECHECK)
            .filter(|&until| until > start);
        let seq = self.c.event().seq;
        loop {
            // Ticket before the check: a bump after it makes the futex
            // wait return at once.
            let ticket = seq.load(SeqCst);
            if newer() {
                return self.generation();
            }
            let now = Instant::now();
            // At most a `WAKE_CHECK` slice: a writer killed between its
            // publish and its wake-up call never wakes us, and a cut file
            // is reported by the fault check after each slice.
            let slice = now + WAKE_CHECK;
            let until = match (deadline, first_slice.filter(|&f| f > now)) {
                (Some(d), Some(f)) => d.min(f),
                (Some(d), None) => d,
                (None, Some(f)) => f,
                (None, None) => slice,
            }
            .min(slice);
            if deadline.is_some_and(|d| now >= d) {
                self.insp.region.check_faults()?;
                return Err(Error::Timeout {
                    origin: self.c.origin.clone(),
                    what: "waiting for a newer snapshot version",
                    waited: start.elapsed(),
                });
            }
            Futex.wait(seq, ticket, Some(until.saturating_duration_since(now)));
            self.insp.region.check_faults()?;
        }
    }
}

impl Drop for ReadOnlyReader {
    fn drop(&mut self) {
        if self.waiting_registered {
            let _ = sys::lock::unlock(self.insp.region.file(), RO_WAIT_BYTE, 1);
        }
    }
}

//! Opening mapshare files: the create-or-open protocol and the attachment
//! a process holds while it has a file open.
//!
//! # Files appear whole
//!
//! A mapshare file is never visible at its path before it is complete:
//!
//! 1. The opener looks at the path with an `O_PATH` descriptor. If a file
//!    is there, it must be a regular file on an ordinary file system
//!    (checked on that descriptor: no window between check and open), and
//!    it is then opened read-write through `/proc/self/fd/N`, which opens
//!    the very inode that was checked. Its header must read `READY`; an
//!    empty file or any file without the magic number is
//!    [`Error::NotMapshare`] and is never written.
//! 2. If nothing is there, the opener builds a new file with no name in
//!    the same directory (`O_TMPFILE`, or a temporary name where the file
//!    system lacks it), sizes it with `fallocate`, lays out the header,
//!    runs the caller's initializer over the object, stores `READY`,
//!    flushes, and only then gives it the name with `linkat`, which never
//!    replaces an existing file. `EEXIST` means another process won the
//!    race: its file is complete, so this one is discarded and theirs
//!    opened as in step 1. Exactly one process creates the file.
//! 3. It takes a lease slot like everyone else.
//!
//! A creator that dies leaves nothing behind at the path (an `O_TMPFILE`
//! vanishes with its last descriptor; a temporary name may stay, as a
//! dot-file ending in `.mapshare-new`).
//!
//! A file without a name (a memfd reached through `/proc/self/fd/N`, or a
//! deleted file) cannot be linked, and nobody else can find it by path: if
//! it is empty it is initialized in place, under an exclusive OFD lock on
//! its init byte ([`INIT_BYTE`]) so that two openers of one descriptor
//! still agree on one initializer. That is how anonymous queues are made.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Origin, Result};
use crate::format::{self, Fingerprint, Header, Kind, HEADER_LEN, INITIALIZING, MAGIC, READY};
use crate::lease::{Lease, LeaseTable, INIT_BYTE};
use crate::region::{Access, Backing, Region};
use crate::sys;
use crate::sys::lock::LockKind;

/// Which lease slots an opener may take, given the table's slot count.
pub(crate) type SlotChoice = fn(u32) -> Range<u32>;

/// Every lease slot.
const ALL_SLOTS: SlotChoice = |n| 0..n;

/// What a new file should hold, and how long to wait for another
/// initializer.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The kind of object.
    pub kind: Kind,
    /// The object's type.
    pub fingerprint: Fingerprint,
    /// Bytes of the object.
    pub object_len: u64,
    /// Slots in the lease table: `1..=`[`MAX_LEASE_SLOTS`](format::MAX_LEASE_SLOTS).
    pub lease_slots: u32,
    /// Permission bits if the file is created: `0o000..=0o777`. Setuid,
    /// setgid and sticky (`0o7000`) and anything above are refused with
    /// [`Error::InvalidArgument`] (a shared data file has no use for
    /// them, and a setuid file made by a root process is a hazard).
    pub mode: u32,
    /// Longest wait for another process's initialization.
    pub timeout: Duration,
    /// Whether the file ends with a guard page past the object (see
    /// [`Header::guard_page`]): an object that may not find out
    /// otherwise that an outside truncate cut inside one of its pages
    /// asks for one.
    pub guard_page: bool,
}

impl Spec {
    /// A spec with 64 lease slots, mode 0600 and a 5 s timeout.
    pub fn new(kind: Kind, fingerprint: Fingerprint, object_len: u64) -> Spec {
        Spec {
            kind,
            fingerprint,
            object_len,
            lease_slots: format::DEFAULT_LEASE_SLOTS,
            mode: 0o600,
            timeout: Duration::from_secs(5),
            guard_page: false,
        }
    }
}

/// Refuses file mode bits other than permission bits (`0o777`): setuid,
/// setgid, sticky, file type bits. Every front end creating files goes
/// through this, so none can make a setuid data file.
pub(crate) fn check_mode(origin: &Origin, mode: u32) -> Result<()> {
    if mode & !0o777 != 0 {
        let why = if mode <= 0o7777 {
            format!("{mode:#o}: setuid, setgid and sticky bits are refused; use permission bits 0o000..=0o777")
        } else {
            format!("{mode:#o} is not a permission mode; use permission bits 0o000..=0o777")
        };
        return Err(Error::InvalidArgument {
            origin: origin.clone(),
            what: "file mode",
            why,
        });
    }
    Ok(())
}

impl Spec {
    /// Checks every argument in the spec ([`Error::InvalidArgument`],
    /// [`Error::ZeroLength`]), whether or not a file will be created.
    fn check(&self, origin: &Origin) -> Result<()> {
        check_mode(origin, self.mode)?;
        Header::plan(
            origin,
            self.kind,
            self.fingerprint.clone(),
            self.object_len,
            self.lease_slots,
        )
        .map(drop)
    }
}

/// A mapshare file this process has open and is attached to (holds a lease
/// slot in). Dropping it releases the slot.
///
/// See the [module documentation](self) for how a new file is created so
/// that nobody ever sees it half-made.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::{Fingerprint, Kind, SharedFile, Spec};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("table");
/// let spec = Spec::new(Kind::Raw, Fingerprint::new("my::Table", 1, 8), 4096);
///
/// // The first opener creates the file and runs the initializer...
/// let first = SharedFile::open_or_create(&path, &spec, |region, header| {
///     region.write_at(header.object_offset, b"hello")
/// })?;
/// assert!(first.created());
/// // ...later ones (in this or other processes) find it ready.
/// let second = SharedFile::open_or_create(&path, &spec, |_, _| unreachable!())?;
/// assert!(!second.created());
/// assert_eq!(second.object_len(), first.object_len());
/// # Ok(()) }
/// ```
pub struct SharedFile {
    region: Region,
    header: Header,
    /// Offset of a byte of the file's guard page in the mapping, if it
    /// has one (see [`SharedFile::check_faults`]).
    guard: Option<usize>,
    lease: Lease,
    created: bool,
}

impl std::fmt::Debug for SharedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFile")
            .field("origin", self.region.origin())
            .field("header", &self.header)
            .field("lease", &self.lease)
            .field("created", &self.created)
            .finish()
    }
}

fn read_prefix(file: &File, origin: &Origin) -> Result<(Vec<u8>, u64)> {
    let size = file
        .metadata()
        .map_err(|e| Error::io(origin, "fstat", e))?
        .len();
    let mut buf = vec![0u8; HEADER_LEN.min(size as usize)];
    file.read_exact_at(&mut buf, 0)
        .map_err(|e| Error::io(origin, "read header", e))?;
    Ok((buf, size))
}

/// Why the init byte stayed locked for a whole timeout. Initializers
/// lock it exclusively; a shared lock there is another program's (one
/// that may only read the file can take it), and waiting longer for "the
/// initializer" would be waiting for nobody.
#[cold]
fn init_blocked(file: &File, origin: Origin, waited: Duration) -> Error {
    match sys::lock::holder(file, LockKind::Exclusive, INIT_BYTE, 1) {
        Ok(Some(h)) if h.kind == LockKind::Shared => Error::Busy {
            origin,
            why: match h.pid {
                Some(pid) => format!(
                    "process {pid} holds a shared lock on the init byte, so the file cannot be initialized (initializers lock it exclusively)"
                ),
                None => "another program holds a shared lock on the init byte, so the file cannot be initialized (initializers lock it exclusively)".into(),
            },
        },
        _ => Error::Timeout {
            origin,
            what: "waiting for another process to initialize the file",
            waited,
        },
    }
}

fn init_state(prefix: &[u8]) -> Option<u32> {
    let b = prefix.get(8..12)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// What the file at hand needs, judged from its first bytes.
enum Found {
    Ready,
    /// Empty, or an initializer started and (if we hold the lock) died.
    NeedsInit,
    /// Not ours to touch; the error says why.
    Refuse(Error),
}

fn judge(origin: &Origin, prefix: &[u8], size: u64) -> Found {
    if size == 0 {
        return Found::NeedsInit;
    }
    match prefix.get(..8) {
        Some(m) if m == MAGIC.to_ne_bytes() => match init_state(prefix) {
            Some(READY) => Found::Ready,
            Some(INITIALIZING) | None => Found::NeedsInit,
            Some(other) => Found::Refuse(Error::Corrupted {
                origin: origin.clone(),
                what: "init state",
                why: format!("{other:#010x} is not a state"),
            }),
        },
        // Let the parser name the failure (byte order, not mapshare...).
        _ => Found::Refuse(Header::parse(origin, prefix, size).err().unwrap_or(
            Error::NotMapshare {
                origin: origin.clone(),
            },
        )),
    }
}

impl SharedFile {
    /// Opens `path`, creating and initializing it if it does not exist.
    /// `init` runs in the one process that creates the file, over the
    /// zero-filled object, before the file has its name: nobody can see it
    /// until it is complete. Opening an existing file checks its kind and
    /// fingerprint against `spec`; an empty file or one without mapshare's
    /// magic is [`Error::NotMapshare`] and is left untouched. Only regular
    /// files on ordinary file systems are opened
    /// ([`Error::SpecialFileSystem`] otherwise). A `spec` with a bad
    /// argument (lease slots, mode, type name, a zero length) is refused
    /// first, whether or not the file exists ([`Error::InvalidArgument`],
    /// [`Error::ZeroLength`]).
    pub fn open_or_create(
        path: impl AsRef<Path>,
        spec: &Spec,
        init: impl FnOnce(&mut Region, &Header) -> Result<()>,
    ) -> Result<SharedFile> {
        Self::open_or_create_within(path, spec, ALL_SLOTS, init)
    }

    /// As [`SharedFile::open_or_create`], taking a lease slot among
    /// `slots(table size)` only (see [`LeaseTable::attach_within`]).
    pub(crate) fn open_or_create_within(
        path: impl AsRef<Path>,
        spec: &Spec,
        slots: SlotChoice,
        init: impl FnOnce(&mut Region, &Header) -> Result<()>,
    ) -> Result<SharedFile> {
        let path = path.as_ref();
        let origin = Origin::path(path);
        spec.check(&origin)?;
        let mut init = Some(init);
        let start = Instant::now();
        loop {
            match crate::region::open_for_write(path, &origin) {
                Ok(file) => {
                    return Self::open_existing(file, origin, &mut init, spec, slots)
                        .and_then(|f| f.expecting(spec.kind, &spec.fingerprint));
                }
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            let Some(init) = init.take() else {
                // We built a file, lost the race, and the winner's file
                // vanished before we could open it.
                return Err(Error::Busy {
                    origin,
                    why: "the file was created and removed again while we opened it".into(),
                });
            };
            if let Some(file) = Self::create_linked(path, &origin, spec, init)? {
                return Self::attach(file, origin, true, slots);
            }
            // EEXIST: another process linked its complete file first.
            if start.elapsed() > spec.timeout {
                return Err(Error::Timeout {
                    origin,
                    what: "opening a file that keeps appearing and vanishing",
                    waited: start.elapsed(),
                });
            }
        }
    }

    /// Creates a new mapshare file at `path`, failing with
    /// [`Error::AlreadyExists`] if anything is there. As with
    /// [`SharedFile::open_or_create`], the file gets its name only once
    /// `init` has run and it is `READY`; a failure leaves nothing behind.
    pub fn create_new(
        path: impl AsRef<Path>,
        spec: &Spec,
        init: impl FnOnce(&mut Region, &Header) -> Result<()>,
    ) -> Result<SharedFile> {
        let path = path.as_ref();
        let origin = Origin::path(path);
        spec.check(&origin)?;
        match Self::create_linked(path, &origin, spec, init)? {
            Some(file) => Self::attach(file, origin, true, ALL_SLOTS),
            None => Err(Error::AlreadyExists { origin }),
        }
    }

    /// An existing file at the path: attach if it is a ready mapshare
    /// file; initialize in place only a fresh file with no name.
    fn open_existing<F>(
        file: File,
        origin: Origin,
        init: &mut Option<F>,
        spec: &Spec,
        slots: SlotChoice,
    ) -> Result<SharedFile>
    where
        F: FnOnce(&mut Region, &Header) -> Result<()>,
    {
        use std::os::unix::fs::MetadataExt;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(&origin, "fstat", e))?;
        if meta.len() == 0 && meta.nlink() > 0 {
            // Someone else's empty file: never ours to initialize.
            return Err(Error::NotMapshare { origin });
        }
        // A file with no name (memfd, deleted file) may be initialized in
        // place; one with a name is only ever attached to.
        let create = if meta.nlink() == 0 {
            init.take().map(|f| (spec, f))
        } else {
            None
        };
        Self::attach_or_init(file, origin, create, spec.timeout, slots)
    }

    /// Builds a complete file under no name in `path`'s directory and links
    /// it to `path`. `None` if `path` exists by then (someone else won).
    fn create_linked<F>(path: &Path, origin: &Origin, spec: &Spec, init: F) -> Result<Option<File>>
    where
        F: FnOnce(&mut Region, &Header) -> Result<()>,
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let stem = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (file, tmp_name) = sys::open::new_unnamed(dir, &stem, spec.mode)
            .map_err(|e| Error::io(origin, "create", e))?;
        let built = crate::region::writable_target(&file, origin)
            .and_then(|()| Self::init_fresh(&file, origin, spec, init));
        if let Err(e) = built {
            if let Some(t) = &tmp_name {
                let _ = std::fs::remove_file(t);
            }
            return Err(e);
        }
        match sys::open::link_into_place(&file, tmp_name.as_deref(), path) {
            Ok(()) => Ok(Some(file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(Error::io(origin, "link into place", e)),
        }
    }

    /// Opens an existing mapshare file holding `kind` of type `fingerprint`,
    /// waiting up to `timeout` for an initialization in progress.
    pub fn open(
        path: impl AsRef<Path>,
        kind: Kind,
        fingerprint: &Fingerprint,
        timeout: Duration,
    ) -> Result<SharedFile> {
        Self::open_any(path, timeout)?.expecting(kind, fingerprint)
    }

    /// As [`SharedFile::open`], taking a lease slot among `slots(table
    /// size)` only (see [`LeaseTable::attach_within`]).
    pub(crate) fn open_within(
        path: impl AsRef<Path>,
        kind: Kind,
        fingerprint: &Fingerprint,
        timeout: Duration,
        slots: SlotChoice,
    ) -> Result<SharedFile> {
        Self::open_any_within(path, timeout, slots)?.expecting(kind, fingerprint)
    }

    /// Opens an existing mapshare file of any kind and type. Only regular
    /// files on ordinary file systems are opened; an empty file is
    /// [`Error::NotMapshare`].
    pub fn open_any(path: impl AsRef<Path>, timeout: Duration) -> Result<SharedFile> {
        Self::open_any_within(path, timeout, ALL_SLOTS)
    }

    fn open_any_within(
        path: impl AsRef<Path>,
        timeout: Duration,
        slots: SlotChoice,
    ) -> Result<SharedFile> {
        let path = path.as_ref();
        let origin = Origin::path(path);
        let file = crate::region::open_for_write(path, &origin)?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(&origin, "fstat", e))?;
        if meta.len() == 0 {
            return Err(Error::NotMapshare { origin });
        }
        type NoInit = fn(&mut Region, &Header) -> Result<()>;
        Self::attach_or_init(file, origin, None::<(&Spec, NoInit)>, timeout, slots)
    }

    fn expecting(self, kind: Kind, fingerprint: &Fingerprint) -> Result<SharedFile> {
        self.header
            .expect(self.region.origin(), kind, fingerprint)?;
        Ok(self)
    }

    /// Attaches to a ready file, waiting for an in-place initialization in
    /// progress (nameless files only) or doing it (`create` given, file
    /// empty, init lock won).
    fn attach_or_init<F>(
        file: File,
        origin: Origin,
        mut create: Option<(&Spec, F)>,
        timeout: Duration,
        slots: SlotChoice,
    ) -> Result<SharedFile>
    where
        F: FnOnce(&mut Region, &Header) -> Result<()>,
    {
        let start = Instant::now();
        let mut backoff = Duration::from_micros(20);
        loop {
            let (prefix, size) = read_prefix(&file, &origin)?;
            match judge(&origin, &prefix, size) {
                Found::Ready => return Self::attach(file, origin, false, slots),
                Found::Refuse(e) => return Err(e),
                Found::NeedsInit => {}
            }
            let locked = sys::lock::try_lock(&file, LockKind::Exclusive, INIT_BYTE, 1)
                .map_err(|e| Error::io(&origin, "lock init byte", e))?;
            if locked {
                let outcome = Self::init_locked(&file, &origin, &mut create);
                let unlocked = sys::lock::unlock(&file, INIT_BYTE, 1)
                    .map_err(|e| Error::io(&origin, "unlock init byte", e));
                let created = outcome?;
                unlocked?;
                return Self::attach(file, origin, created, slots);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(init_blocked(&file, origin, waited));
            }
            std::thread::sleep(backoff.min(timeout - waited));
            backoff = (backoff * 2).min(Duration::from_millis(2));
        }
    }

    /// Under the init lock, for a nameless file: returns whether this
    /// process initialized it. Only an empty file is initialized; one that
    /// an initializer left half-made is refused (it is never truncated:
    /// another process may map it).
    fn init_locked<F>(file: &File, origin: &Origin, create: &mut Option<(&Spec, F)>) -> Result<bool>
    where
        F: FnOnce(&mut Region, &Header) -> Result<()>,
    {
        let (prefix, size) = read_prefix(file, origin)?;
        match judge(origin, &prefix, size) {
            Found::Ready => return Ok(false),
            Found::Refuse(e) => return Err(e),
            Found::NeedsInit => {}
        }
        let (Some((spec, init)), 0) = (create.take(), size) else {
            return Err(Error::Corrupted {
                origin: origin.clone(),
                what: "header",
                why: "the file was never fully initialized (its initializer died)".into(),
            });
        };
        Self::init_fresh(file, origin, spec, init)?;
        Ok(true)
    }

    /// Initializes `file`, which is empty and which nobody else can map
    /// yet (nameless, or under our init lock): reserves its space, writes
    /// the header, runs `init` over the object, and stores `READY` last.
    fn init_fresh<F>(file: &File, origin: &Origin, spec: &Spec, init: F) -> Result<()>
    where
        F: FnOnce(&mut Region, &Header) -> Result<()>,
    {
        let mut header = Header::plan(
            origin,
            spec.kind,
            spec.fingerprint.clone(),
            spec.object_len,
            spec.lease_slots,
        )?;
        if spec.guard_page {
            header.add_guard_page(origin)?;
        }
        let mut claim = [0u8; 12];
        claim[..8].copy_from_slice(&MAGIC.to_ne_bytes());
        claim[8..].copy_from_slice(&INITIALIZING.to_ne_bytes());
        file.write_all_at(&claim, 0)
            .map_err(|e| Error::io(origin, "write header", e))?;
        sys::reserve(file, 0, header.file_len).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC) => Error::NoSpace {
                origin: origin.clone(),
                len: header.file_len,
                source: e,
            },
            _ => Error::io(origin, "fallocate", e),
        })?;
        let dup = file.try_clone().map_err(|e| Error::io(origin, "dup", e))?;
        let mut region = Region::map_file(
            dup,
            origin.clone(),
            Backing::File,
            Access::ReadWrite,
            0,
            None,
        )?;
        let mut bytes = header.encode(INITIALIZING);
        // The init state is written last, on its own, with release order.
        bytes[8..12].copy_from_slice(&INITIALIZING.to_ne_bytes());
        region.write_at(0, &bytes)?;
        init(&mut region, &header)?;
        region.flush()?;
        region
            .atomic32(format::INIT_STATE_OFFSET)?
            .store(READY, Ordering::Release);
        region.flush_range(0, HEADER_LEN, crate::region::Flush::Sync)?;
        Ok(())
    }

    fn attach(file: File, origin: Origin, created: bool, slots: SlotChoice) -> Result<SharedFile> {
        let region = Region::map_file(
            file,
            origin.clone(),
            Backing::File,
            Access::ReadWrite,
            0,
            None,
        )?;
        // Acquire pairs with the initializer's release of READY: the
        // header bytes read next are the complete ones.
        let state = region
            .load_u32(format::INIT_STATE_OFFSET, Ordering::Acquire)
            .map_err(|_| Error::NotMapshare {
                origin: origin.clone(),
            })?;
        if state != READY {
            return Err(Error::Corrupted {
                origin,
                what: "init state",
                why: format!("{state:#010x} changed after initialization"),
            });
        }
        let mut prefix = [0u8; HEADER_LEN];
        region
            .read_at(0, &mut prefix)
            .map_err(|_| Error::Truncated {
                origin: origin.clone(),
                expected: HEADER_LEN as u64,
                actual: region.len() as u64,
            })?;
        let header = Header::parse(&origin, &prefix, region.len() as u64)?;
        let lease = LeaseTable::new(&region, header.lease_offset, header.lease_slots)
            .attach_within(slots(header.lease_slots))?;
        // The lease table is read through atomics: a page cut away under
        // them shows up only here.
        region.check_faults()?;
        let guard = header
            .guard_page()
            .filter(|&g| g < region.len() as u64)
            .map(|g| g as usize);
        let file = SharedFile {
            region,
            header,
            guard,
            lease,
            created,
        };
        // The guard page is mapped in here, by its first load, so that no
        // later check takes the fault that maps it: racing a truncate,
        // that fault could map it back before the truncate is done
        // (suspected in review).
        file.check_faults()?;
        Ok(file)
    }

    /// Whether this process initialized the file.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// This process's lease.
    #[inline]
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The file's lease table.
    #[inline]
    pub fn leases(&self) -> LeaseTable<'_> {
        LeaseTable::new(
            &self.region,
            self.header.lease_offset,
            self.header.lease_slots,
        )
    }

    /// The whole file's mapping. Crate-private: typed objects (mutexes,
    /// queues) own their bytes, and safe code must not reach the bytes of
    /// a live guard through another path.
    #[inline]
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// The whole file's mapping, for experts (tools, benchmarks, raw
    /// layouts of their own).
    ///
    /// # Safety
    ///
    /// Bytes that this process uses through a typed object of this file
    /// (a [`Mutex`](crate::sync::Mutex) and its `T`, an `Event`, a
    /// `Semaphore`, a queue) must not be read or written through the
    /// returned region while that object may hand out references to them
    /// (for a mutex: while a guard lives); the same contract as
    /// [`Mutex::at`](crate::sync::Mutex::at).
    ///
    /// Safe code cannot reach a file's mapping, and so cannot read the
    /// bytes of a live guard behind its back (issue 7, B6; this must not
    /// compile):
    ///
    /// ```compile_fail,E0624
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let v = mapshare::Shared::<u64>::open_or_create(dir.path().join("v"), &0)?;
    /// let _stale = v.file().region().read_vec(0, 8)?;
    /// # Ok(()) }
    /// ```
    #[inline]
    pub unsafe fn raw_region(&self) -> &Region {
        &self.region
    }

    /// The whole file's mapping, for writing.
    ///
    /// # Safety
    ///
    /// The region must stay this file's mapping: never replace it (for
    /// example with `std::mem::replace` or `swap`) by another `Region`.
    /// This file's lease token names a slot of *this* file's lease table;
    /// used on another file's mutexes it names another (or no) process, so
    /// a later attacher of that file takes over a mutex this process holds
    /// as if its owner had died: two holders, two `&mut T`.
    ///
    /// ```compile_fail,E0133
    /// # fn main() -> mapshare::Result<()> {
    /// use mapshare::{Fingerprint, Kind, Region, SharedFile, Spec};
    /// let dir = tempfile::tempdir().unwrap();
    /// let spec = Spec::new(Kind::Raw, Fingerprint::untyped(), 4096);
    /// let mut a = SharedFile::open_or_create(dir.path().join("x"), &spec, |_, _| Ok(()))?;
    /// drop(SharedFile::open_or_create(dir.path().join("y"), &spec, |_, _| Ok(()))?);
    /// let _x = std::mem::replace(a.region_mut(), Region::open(dir.path().join("y"))?);
    /// # Ok(()) }
    /// ```
    pub unsafe fn region_mut(&mut self) -> &mut Region {
        &mut self.region
    }

    /// `Truncated` if an outside truncate cut the file: call it after
    /// loading shared bytes and before trusting them, and before storing.
    ///
    /// A page that an outside truncate cut away vanishes from the mapping
    /// and reads as zeros: the SIGBUS handler maps a zero page over it and
    /// counts the fault ([`Region::check_faults`], one relaxed load). A cut
    /// *inside* a page faults nowhere: the kernel zeroes the rest of that
    /// page in place, and stores there are lost with the page. A file
    /// created with a guard page ([`Spec::guard_page`],
    /// [`Header::guard_page`]) tells that too: a cut anywhere before the
    /// guard page takes the guard page out of every mapping before the
    /// zeroing starts, so a load from it after ours faults if any of ours
    /// could have read such zeros. That is a second load, of a line
    /// nobody writes.
    #[inline]
    pub fn check_faults(&self) -> Result<()> {
        if self.fault_free() {
            return Ok(());
        }
        self.check_faults_slow()
    }

    /// Whether [`SharedFile::check_faults`] finds nothing: its probes,
    /// with no error to build (the hot paths' form of it).
    #[inline]
    pub(crate) fn fault_free(&self) -> bool {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if let Some(at) = self.guard {
            // A mapping cut back by `refresh` (through `region_mut`) no
            // longer reaches the guard page: the file was cut (found in
            // review: the checks said nothing after such a refresh).
            if at >= self.region.len() {
                return false;
            }
            // Orders the loads before this one before it, in the
            // hardware too (free on x86).
            std::sync::atomic::fence(Ordering::Acquire);
            // SAFETY: `at` is inside the live mapping (checked just now);
            // a byte has no alignment to keep, and it is read atomically
            // whatever a peer writes there.
            let byte = unsafe { AtomicU8::from_ptr(self.region.as_ptr().add(at).cast_mut()) };
            std::hint::black_box(byte.load(Ordering::Relaxed));
        }
        self.region.fault_free()
    }

    /// The error [`SharedFile::check_faults`] reports once
    /// [`SharedFile::fault_free`] said no.
    #[cold]
    fn check_faults_slow(&self) -> Result<()> {
        if self.guard.is_some_and(|at| at >= self.region.len()) {
            return Err(Error::Truncated {
                origin: self.region.origin().clone(),
                expected: self.header.file_len,
                actual: self.region.len() as u64,
            });
        }
        self.region.check_faults()
    }

    /// The object's first byte, as an offset into the file's mapping
    /// ([`SharedFile::raw_region`]).
    #[inline]
    pub fn object_offset(&self) -> u64 {
        self.header.object_offset
    }

    /// The object's length.
    pub fn object_len(&self) -> u64 {
        self.header.object_len
    }
}

impl Drop for SharedFile {
    fn drop(&mut self) {
        // Closing the file drops the lock anyway; marking the slot free
        // keeps the table tidy for `info` and for the next attacher.
        let _ = self.leases().release(&self.lease);
    }
}

/// A read-only look at a mapshare file, without attaching: for `info`.
#[derive(Debug)]
pub struct Inspection {
    /// The mapping (read-only).
    pub region: Region,
    /// The validated header.
    pub header: Header,
}

impl Inspection {
    /// Maps `path` read-only and parses its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Inspection> {
        let region = Region::open_read_only(path)?;
        let mut prefix = vec![0u8; HEADER_LEN.min(region.len())];
        region.read_at(0, &mut prefix)?;
        let header = Header::parse(region.origin(), &prefix, region.file_len()?)?;
        Ok(Inspection { region, header })
    }
}

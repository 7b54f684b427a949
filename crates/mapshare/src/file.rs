//! Opening mapshare files: the create-or-open protocol and the attachment
//! a process holds while it has a file open.
//!
//! When many processes open a new file at once, exactly one initializes it
//! and the others wait until it is ready:
//!
//! 1. Everyone opens the path with `O_CREAT`. If the header's init state
//!    already reads `READY`, the file is parsed and used: no lock taken.
//! 2. Otherwise the opener takes an exclusive OFD lock on the file's init
//!    byte ([`INIT_BYTE`]), retrying with backoff until its deadline
//!    ([`Error::Timeout`] after that).
//! 3. Holding the lock it looks again. `READY`: someone finished first.
//!    An empty file, or magic plus `INITIALIZING`: the file is new, or its
//!    initializer died mid-way (the kernel dropped its lock), so this
//!    process initializes it: writes magic + `INITIALIZING` first, sizes
//!    the file with `fallocate`, lays out the header, runs the caller's
//!    initializer over the object, and only then stores `READY` (release).
//!    Anything else is not a file to touch: a typed error.
//! 4. It drops the init lock and takes a lease slot like everyone else.
//!
//! A file with data but no magic is never initialized over: it is
//! [`Error::NotMapshare`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Origin, Result};
use crate::format::{self, Fingerprint, Header, Kind, HEADER_LEN, INITIALIZING, MAGIC, READY};
use crate::lease::{Lease, LeaseTable, INIT_BYTE};
use crate::region::{Access, Backing, Region};
use crate::sys;
use crate::sys::lock::LockKind;

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
    /// Slots in the lease table.
    pub lease_slots: u32,
    /// Permission bits if the file is created.
    pub mode: u32,
    /// Longest wait for another process's initialization.
    pub timeout: Duration,
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
        }
    }
}

/// A mapshare file this process has open and is attached to (holds a lease
/// slot in). Dropping it releases the slot.
pub struct SharedFile {
    region: Region,
    header: Header,
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
    /// Opens `path`, creating and initializing it if it does not exist (or
    /// its initializer died). `init` runs in the one process that
    /// initializes, over the zero-filled file, before anyone can use it.
    /// Opening an existing file checks its kind and fingerprint against
    /// `spec`.
    pub fn open_or_create(
        path: impl AsRef<Path>,
        spec: &Spec,
        init: impl FnOnce(&mut Region, &Header) -> Result<()>,
    ) -> Result<SharedFile> {
        let path = path.as_ref();
        let origin = Origin::path(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(spec.mode)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::io(&origin, "open read-write", e))?;
        if !file
            .metadata()
            .map_err(|e| Error::io(&origin, "fstat", e))?
            .is_file()
        {
            return Err(Error::NotAFile { origin });
        }
        Self::attach_or_init(file, origin, Some((spec, init)), spec.timeout)
            .and_then(|f| f.expecting(spec.kind, &spec.fingerprint))
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

    /// Opens an existing mapshare file of any kind and type.
    pub fn open_any(path: impl AsRef<Path>, timeout: Duration) -> Result<SharedFile> {
        let path = path.as_ref();
        let origin = Origin::path(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::io(&origin, "open read-write", e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(&origin, "fstat", e))?;
        if meta.is_dir() {
            return Err(Error::IsDirectory { origin });
        }
        if !meta.is_file() {
            return Err(Error::NotAFile { origin });
        }
        if meta.len() == 0 {
            return Err(Error::NotMapshare { origin });
        }
        type NoInit = fn(&mut Region, &Header) -> Result<()>;
        Self::attach_or_init(file, origin, None::<(&Spec, NoInit)>, timeout)
    }

    fn expecting(self, kind: Kind, fingerprint: &Fingerprint) -> Result<SharedFile> {
        self.header
            .expect(self.region.origin(), kind, fingerprint)?;
        Ok(self)
    }

    fn attach_or_init<F>(
        file: File,
        origin: Origin,
        mut create: Option<(&Spec, F)>,
        timeout: Duration,
    ) -> Result<SharedFile>
    where
        F: FnOnce(&mut Region, &Header) -> Result<()>,
    {
        let start = Instant::now();
        let mut backoff = Duration::from_micros(20);
        loop {
            let (prefix, size) = read_prefix(&file, &origin)?;
            match judge(&origin, &prefix, size) {
                Found::Ready => return Self::attach(file, origin, false),
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
                return Self::attach(file, origin, created);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::Timeout {
                    origin,
                    what: "waiting for another process to initialize the file",
                    waited,
                });
            }
            std::thread::sleep(backoff.min(timeout - waited));
            backoff = (backoff * 2).min(Duration::from_millis(2));
        }
    }

    /// Under the init lock: returns whether this process initialized.
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
        let Some((spec, init)) = create.take() else {
            // Opening without a spec: we cannot initialize. Report what
            // the file is.
            return Err(Error::Corrupted {
                origin: origin.clone(),
                what: "header",
                why: "the file was never fully initialized and no spec was given to initialize it"
                    .into(),
            });
        };
        let header = Header::plan(
            origin,
            spec.kind,
            spec.fingerprint.clone(),
            spec.object_len,
            spec.lease_slots,
        )?;
        // Start over from nothing: a dead initializer may have left a
        // different size or half a header.
        file.set_len(0)
            .map_err(|e| Error::io(origin, "truncate", e))?;
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
            .atomic_u32(format::INIT_STATE_OFFSET)?
            .store(READY, Ordering::Release);
        region.flush_range(0, HEADER_LEN, crate::region::Flush::Sync)?;
        Ok(true)
    }

    fn attach(file: File, origin: Origin, created: bool) -> Result<SharedFile> {
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
        let lease = LeaseTable::new(&region, header.lease_offset, header.lease_slots).attach()?;
        Ok(SharedFile {
            region,
            header,
            lease,
            created,
        })
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
    #[inline]
    pub unsafe fn raw_region(&self) -> &Region {
        &self.region
    }

    /// The whole file's mapping, for writing.
    pub fn region_mut(&mut self) -> &mut Region {
        &mut self.region
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

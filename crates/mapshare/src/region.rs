//! A mapping of a file, a window of a file, or an anonymous shared object.
//!
//! This module owns the mapping itself: opening and creating the backing
//! file, hiding page rounding, keeping the file's size safe to touch, and
//! bounds-checked access. It does not interpret the bytes (that is
//! `format`'s job) and does not synchronize access (that is `sync`'s).
//!
//! # Safety of mapped memory
//!
//! Memory mapped `MAP_SHARED` can change at any moment: another process may
//! write it, and a process that shrinks the file makes the pages past the
//! new end fault with `SIGBUS` on the next access. Rust assumes that the
//! bytes behind a `&[u8]` do not change while the reference lives, so
//! handing out such a reference would be undefined behaviour. A `Region`
//! therefore gives access only by
//!
//! - copying ([`Region::read_at`], [`Region::write_at`]), where a concurrent
//!   writer in another process can at worst make the copy inconsistent, never
//!   unsound; within one process, writes need `&mut Region`;
//! - atomic loads ([`Region::load_u32`], [`Region::load_u64`]), and atomic
//!   views ([`Region::atomic_u32`], [`Region::atomic_u64`]), which are
//!   made for memory that changes underneath. A view is an `unsafe fn`:
//!   `Region` is `Sync`, so safe code on another thread could otherwise
//!   `read_at` the same bytes while this thread stores through the view,
//!   a data race in Rust's memory model (and views of two sizes over the
//!   same bytes are mixed-size atomics, also undefined). The caller
//!   vouches that, in this process, those bytes are used only through that
//!   view;
//! - raw pointers, for experts, under `unsafe`.
//!
//! Against `SIGBUS`, every `Region` over a file holds a shared OFD lock on
//! one byte far past any real data ([`GUARD_BYTE`]); a shrink through
//! mapshare needs that byte exclusively, so it is refused with
//! [`Error::Busy`] while any other `Region` (in any process) maps the file.
//! A shrink by a program that does not play along (`truncate(1)`) cannot
//! be prevented, so its consequence is handled: every file-backed mapping
//! is registered with a process-wide `SIGBUS` handler (installed with the
//! first one, chained to any handler installed before), which maps a
//! private zero page over a vanished page, records the fault, and lets the
//! access complete. [`Region::read_at`], [`Region::write_at`], the `load_*`
//! methods, [`Region::check`] and [`Region::refresh`] then report
//! [`Error::Truncated`] (the size the region needs, and what is left)
//! before they return any data; code that reads through atomics or raw
//! pointers calls [`Region::check_faults`] after reading. The fault stays
//! recorded until [`Region::refresh`] remaps the region to what is left.
//! The handler's design, chaining and limits are described in the
//! `sys::sigbus` module (crate-private): a write into a vanished page is
//! lost; the process never dies of it. Anonymous regions are memfds sealed
//! against shrinking, so they cannot fault this way.
//!
//! # Special files
//!
//! A region opened for writing (read-write, or created) must be a regular
//! file on an ordinary file system. The path is first opened with `O_PATH`
//! (no side effects, pins the inode); `fstat`/`fstatfs` on that descriptor
//! refuse directories, devices, FIFOs and files on procfs, sysfs, cgroup,
//! debugfs, tracefs, securityfs, bpf and the like
//! ([`Error::SpecialFileSystem`]); only then is the same inode reopened
//! read-write through `/proc/self/fd/N`.
//!
//! Zero-length mappings do not exist in POSIX (`mmap` fails with `EINVAL`),
//! so an empty file or window is an error rather than an empty region.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{compiler_fence, AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Origin, Result};
use crate::sys;
use crate::sys::lock::LockKind;
use crate::sys::mem::Advice;
use crate::sys::sigbus;

/// The byte every `Region` over a file holds a shared OFD lock on, and
/// that a shrink must lock exclusively. It lies at the top of the lockable
/// range (`off_t` is signed), far past any data, so it never conflicts with
/// locks on real data. A lock "to the end of the file" (`len = 0`) does
/// cover it: lock a finite range instead while regions are mapped.
pub const GUARD_BYTE: u64 = i64::MAX as u64 - 1;

/// Lets `cmd`'s child inherit `fd` and tells it the descriptor's number in
/// the environment variable `var`: close-on-exec is cleared for the child
/// only, in a `pre_exec` hook. `fd` must stay open until `cmd` is spawned.
/// The child finds it again with [`Region::from_inherited`] (or the
/// queue's `from_inherited`), which reopen `/proc/self/fd/N`.
pub fn share_fd(fd: BorrowedFd<'_>, cmd: &mut Command, var: &str) {
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    cmd.env(var, raw.to_string());
    let pre_exec = move || {
        // SAFETY: the caller keeps `raw` open until `spawn` returns, and in
        // the forked child it is the same descriptor; clearing close-on-exec
        // affects only the child's copy of the table.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        sys::inheritable(fd, true)
    };
    // SAFETY: the hook only calls fcntl(F_SETFD), which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(pre_exec);
    }
}

/// The `/proc/self/fd/N` path of the descriptor a parent named in `var`
/// (see [`share_fd`]). Reopening that path makes a new open file
/// description of the same object without taking ownership of `N`.
pub(crate) fn inherited_fd_path(var: &str) -> Result<String> {
    let origin = Origin::anonymous(var);
    let bad = |kind, why: String| Error::Io {
        origin: origin.clone(),
        op: "read environment",
        source: io::Error::new(kind, why),
    };
    let raw = std::env::var(var)
        .map_err(|_| bad(io::ErrorKind::NotFound, format!("{var} is not set")))?;
    let fd: u32 = raw.trim().parse().map_err(|_| {
        bad(
            io::ErrorKind::InvalidData,
            format!("{var}={raw:?} is not a descriptor number"),
        )
    })?;
    Ok(format!("/proc/self/fd/{fd}"))
}

/// How a region may be accessed and whether writes reach the backing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `PROT_READ`, `MAP_SHARED`: sees other processes' writes; writing is an
    /// error.
    ReadOnly,
    /// `PROT_READ | PROT_WRITE`, `MAP_SHARED`: writes reach the file and every
    /// other process that maps it.
    ReadWrite,
    /// `PROT_READ | PROT_WRITE`, `MAP_PRIVATE`: writes are private to this
    /// region and never reach the file.
    CopyOnWrite,
}

/// `msync` mode for [`Region::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// `MS_SYNC`: return once the data is on the storage device.
    Sync,
    /// `MS_ASYNC`: schedule write-back and return at once.
    Async,
}

/// Usage hints for [`Region::advise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hint {
    /// Back to the default read-ahead.
    Normal,
    /// Will be read front to back: read ahead aggressively.
    Sequential,
    /// Random access: don't read ahead.
    Random,
    /// Will be needed soon: start reading it in.
    WillNeed,
    /// Not needed for now: drop this process's page mappings and ask the
    /// kernel to drop clean cached pages of the file range
    /// (`madvise(MADV_DONTNEED)` then `posix_fadvise(POSIX_FADV_DONTNEED)`).
    /// Data is never lost on a shared mapping: the next access reads it back.
    /// Refused on copy-on-write regions, where it would discard private
    /// changes.
    DontNeed,
    /// Use transparent huge pages where the kernel can.
    HugePage,
}

/// How many pages of a region are in memory, from `mincore(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residency {
    /// Pages resident in memory.
    pub resident: usize,
    /// Pages the region spans.
    pub total: usize,
}

impl Residency {
    /// Resident pages as a percentage of the total (0 for an empty region).
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.resident as f64 * 100.0 / self.total as f64
        }
    }
}

/// What [`Region::refresh`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The backing object still has the size the region maps.
    Unchanged,
    /// The file grew and the region now maps `to` bytes instead of `from`.
    Grown {
        /// Length before.
        from: usize,
        /// Length now.
        to: usize,
    },
}

/// How to create a file that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Create {
    /// Fail with [`Error::AlreadyExists`] if the file exists.
    New { size: u64 },
    /// Open the file if it exists, create it otherwise; either way make sure
    /// it has at least `size` bytes, reserved on disk.
    OpenOrCreate { size: u64 },
}

/// Options for opening or creating a [`Region`] over a file.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::{Access, RegionOptions};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data");
/// std::fs::write(&path, b"hello, mapped world")?;
///
/// // Bytes 7..13 of the file, read-only; offset 7 is not page-aligned.
/// let region = RegionOptions::new().access(Access::ReadOnly).window(7, 6).open(&path)?;
/// assert_eq!(region.read_vec(0, 6)?, b"mapped");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RegionOptions {
    access: Access,
    offset: u64,
    len: Option<u64>,
    create: Option<Create>,
    mode: u32,
}

impl Default for RegionOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl RegionOptions {
    /// Read-write, shared, the whole file, no creation, mode 0600 if created.
    pub fn new() -> Self {
        RegionOptions {
            access: Access::ReadWrite,
            offset: 0,
            len: None,
            create: None,
            mode: 0o600,
        }
    }

    /// Sets how the region is accessed (default [`Access::ReadWrite`]).
    pub fn access(&mut self, access: Access) -> &mut Self {
        self.access = access;
        self
    }

    /// Maps `len` bytes starting at byte `offset` of the file. Neither needs
    /// to be page-aligned: the region starts exactly at `offset`.
    pub fn window(&mut self, offset: u64, len: u64) -> &mut Self {
        self.offset = offset;
        self.len = Some(len);
        self
    }

    /// Maps from byte `offset` to the end of the file (and follows the end
    /// when the file grows, see [`Region::refresh`]).
    pub fn from_offset(&mut self, offset: u64) -> &mut Self {
        self.offset = offset;
        self.len = None;
        self
    }

    /// Creates the file with `size` bytes, failing if it exists. The space
    /// is reserved with `fallocate`, so a full disk is an error now rather
    /// than a `SIGBUS` on first touch.
    pub fn create_new(&mut self, size: u64) -> &mut Self {
        self.create = Some(Create::New { size });
        self
    }

    /// Opens the file, creating it if needed, and makes sure it has at least
    /// `size` bytes reserved (it never shrinks it). Safe to race: any number
    /// of processes may do this at once and all see at least `size` bytes.
    pub fn create(&mut self, size: u64) -> &mut Self {
        self.create = Some(Create::OpenOrCreate { size });
        self
    }

    /// Permission bits for a created file (default `0o600`).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Opens (or creates) `path` and maps it.
    ///
    /// A file opened for writing (read-write access, or any creation) must
    /// be a regular file on an ordinary file system: anything else is
    /// refused before it is opened for writing ([`Error::NotAFile`],
    /// [`Error::SpecialFileSystem`]), checked on the very inode that is
    /// then opened.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Region> {
        let path = path.as_ref();
        let origin = Origin::path(path);
        let writable = self.access == Access::ReadWrite || self.create.is_some();
        if let Some(Create::New { size: 0 } | Create::OpenOrCreate { size: 0 }) = self.create {
            return Err(Error::ZeroLength {
                origin,
                what: "file",
            });
        }
        if self.create.is_some() {
            crate::file::check_mode(&origin, self.mode)?;
        }
        let file = match self.create {
            Some(Create::New { .. }) => create_exclusive(path, &origin, self.mode)?,
            Some(Create::OpenOrCreate { .. }) => loop {
                match open_for_write(path, &origin) {
                    Err(Error::NotFound { .. }) => {}
                    other => break other?,
                }
                match create_exclusive(path, &origin, self.mode) {
                    // Somebody else created it meanwhile: open theirs.
                    Err(Error::AlreadyExists { .. }) => continue,
                    other => break other?,
                }
            },
            None if writable => open_for_write(path, &origin)?,
            None => {
                // O_NONBLOCK: opening a FIFO must not wait for a writer (it
                // is then refused as not a regular file).
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(path)
                    .map_err(|e| Error::io(&origin, "open read-only", e))?;
                regular_file(&file, &origin)?;
                file
            }
        };
        match self.create {
            Some(Create::New { size }) | Some(Create::OpenOrCreate { size }) => {
                if let Err(e) = reserve(&file, &origin, 0, size) {
                    if matches!(self.create, Some(Create::New { .. })) {
                        // We made the file and could not give it its size:
                        // leave nothing half-made behind.
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(e);
                }
            }
            None => {}
        }
        Region::map_file(
            file,
            origin,
            Backing::File,
            self.access,
            self.offset,
            self.len,
        )
    }
}

/// What a region's file is, which decides what shrinking means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backing {
    /// A file on a file system (including `/dev/shm`).
    File,
    /// A memfd sealed against shrinking.
    Memfd,
}

/// The mapping proper. `None` only after a refresh found nothing left.
enum Mapping {
    None,
    /// `MAP_SHARED`, read-only or read-write.
    Shared(memmap2::MmapRaw),
    /// `MAP_PRIVATE`, copy-on-write. Accessed only through `ptr`.
    Private(memmap2::MmapMut),
}

/// A mapped window of a file or an anonymous shared object.
///
/// See the [module documentation](self) for why access is by copy, atomics
/// or raw pointers, and how the file's size is kept safe.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::Region;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("counter");
/// let mut region = Region::create(&path, 4096)?;
/// region.write_at(100, b"persisted")?;
/// region.flush()?;
/// drop(region);
///
/// let region = Region::open_read_only(&path)?;
/// assert_eq!(region.read_vec(100, 9)?, b"persisted");
/// # Ok(()) }
/// ```
pub struct Region {
    mapping: Mapping,
    /// Start of the view; valid for `len` bytes while `mapping` lives.
    ptr: *mut u8,
    len: usize,
    file: File,
    origin: Origin,
    backing: Backing,
    access: Access,
    /// Where the view starts in the file.
    offset: u64,
    /// The view runs to the end of the file and follows it on refresh.
    to_end: bool,
    /// The mapping's entry in the process-wide SIGBUS registry (file
    /// backings only: sealed memfds cannot shrink).
    sigbus: Option<sigbus::Registration>,
}

impl Drop for Region {
    fn drop(&mut self) {
        // Unregister before the mapping is unmapped (fields drop after
        // this), so the handler never maps over reused addresses.
        if let Some(r) = &self.sigbus {
            r.clear();
        }
    }
}

// SAFETY: `Region` owns its mapping and file; the raw pointer is only an
// address into that mapping, valid on any thread.
unsafe impl Send for Region {}
// SAFETY: the safe `&Region` methods only read (plain copies, volatile
// byte reads and atomic loads, which never race each other, whatever their
// sizes); writes through safe methods need `&mut self`. Stores through
// `&self` are made only through atomic views: the public ones are `unsafe
// fn`s whose contract rules out any other access to those bytes in this
// process; the crate-private ones (`atomic32`/`atomic64`) are used by the
// typed objects, either on a `SharedFile`'s region, which safe code cannot
// reach as a `&Region` (`raw_region` is unsafe, and `region_mut` too, or
// `&mut` would be a way to swap it), or behind an unsafe constructor
// (`Event::at`, `Semaphore::at`) with the same contract. No safe public
// API stores through `&Region` (`LeaseTable::attach` and `release` are
// crate-private), so no safe code can race those stores.
unsafe impl Sync for Region {}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("origin", &self.origin)
            .field("access", &self.access)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

fn reserve(file: &File, origin: &Origin, offset: u64, len: u64) -> Result<()> {
    sys::reserve(file, offset, len).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSPC) => Error::NoSpace {
            origin: origin.clone(),
            len,
            source: e,
        },
        _ => Error::io(origin, "fallocate", e),
    })
}

/// [`reserve`] for a memfd, whose file system has no size limit: the
/// kernel would allocate memory until the OOM killer stopped it (and
/// another process with it). A memfd can never hold more than the
/// machine's memory and swap, so a larger `end` is `NoSpace` at once.
fn reserve_memory(file: &File, origin: &Origin, offset: u64, len: u64) -> Result<()> {
    let end = offset.saturating_add(len);
    if end > sys::memory_and_swap() {
        return Err(Error::NoSpace {
            origin: origin.clone(),
            len,
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        });
    }
    reserve(file, origin, offset, len)
}

/// Refuses anything but a regular file.
fn regular_file(file: &File, origin: &Origin) -> Result<()> {
    let meta = file.metadata().map_err(|e| Error::io(origin, "fstat", e))?;
    if meta.is_dir() {
        return Err(Error::IsDirectory {
            origin: origin.clone(),
        });
    }
    if !meta.is_file() {
        return Err(Error::NotAFile {
            origin: origin.clone(),
        });
    }
    Ok(())
}

/// Refuses anything but a regular file on an ordinary file system, judged
/// from a descriptor of the very inode (no path lookup in between).
pub(crate) fn writable_target(file: &File, origin: &Origin) -> Result<()> {
    regular_file(file, origin)?;
    match sys::open::special_fs(file) {
        Ok(None) => Ok(()),
        Ok(Some(fs)) => Err(Error::SpecialFileSystem {
            origin: origin.clone(),
            fs,
        }),
        Err(e) => Err(Error::io(origin, "fstatfs", e)),
    }
}

/// Opens the existing file at `path` read-write, after checking (on an
/// `O_PATH` descriptor that pins the inode) that it is a regular file on an
/// ordinary file system. Nothing is opened for writing before that check,
/// and what is opened is the inode that was checked.
pub(crate) fn open_for_write(path: &Path, origin: &Origin) -> Result<File> {
    let handle = sys::open::path_handle(path).map_err(|e| Error::io(origin, "open", e))?;
    writable_target(&handle, origin)?;
    sys::open::reopen(&handle, true).map_err(|e| Error::io(origin, "open read-write", e))
}

/// Creates a new file at `path` (failing if it exists) and checks where it
/// landed; a refused file is removed again.
fn create_exclusive(path: &Path, origin: &Origin, mode: u32) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(origin, "create", e))?;
    if let Err(e) = writable_target(&file, origin) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
}

fn file_size(file: &File, origin: &Origin) -> Result<u64> {
    Ok(file
        .metadata()
        .map_err(|e| Error::io(origin, "fstat", e))?
        .len())
}

impl Region {
    /// Opens an existing file read-write and maps all of it, shared.
    pub fn open(path: impl AsRef<Path>) -> Result<Region> {
        RegionOptions::new().open(path)
    }

    /// Opens an existing file read-only and maps all of it, shared.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Region> {
        RegionOptions::new().access(Access::ReadOnly).open(path)
    }

    /// Creates a new file of `size` bytes (mode 0600, space reserved) and
    /// maps it read-write. Fails with [`Error::AlreadyExists`] if it exists.
    pub fn create(path: impl AsRef<Path>, size: u64) -> Result<Region> {
        RegionOptions::new().create_new(size).open(path)
    }

    /// Options for anything else: windows, copy-on-write, open-or-create.
    pub fn options() -> RegionOptions {
        RegionOptions::new()
    }

    /// An anonymous shared region of `len` bytes, zero-filled: a memfd
    /// sealed against shrinking, mapped read-write. Share it with a child
    /// process through [`Region::share_with`].
    pub fn anonymous(len: usize) -> Result<Region> {
        let origin = Origin::anonymous("mapshare");
        if len == 0 {
            return Err(Error::ZeroLength {
                origin,
                what: "region",
            });
        }
        let fd = sys::memfd("mapshare").map_err(|e| Error::io(&origin, "memfd_create", e))?;
        let file = File::from(fd);
        reserve_memory(&file, &origin, 0, len as u64)?;
        sys::seal_against_shrink(&file).map_err(|e| Error::io(&origin, "seal", e))?;
        Region::map_file(file, origin, Backing::Memfd, Access::ReadWrite, 0, None)
    }

    /// Maps all of an open file or memfd read-write, shared. Use it for a
    /// descriptor received over a Unix socket.
    pub fn from_fd(fd: OwnedFd) -> Result<Region> {
        let file = File::from(fd);
        let origin = Origin::anonymous(&format!("fd{}", file.as_raw_fd()));
        writable_target(&file, &origin)?;
        let backing = match sys::is_sealed_against_shrink(&file) {
            Ok(true) => Backing::Memfd,
            _ => Backing::File,
        };
        Region::map_file(file, origin, backing, Access::ReadWrite, 0, None)
    }

    /// Lets `cmd`'s child inherit this region's descriptor and tells it the
    /// descriptor's number in the environment variable `var`. The child
    /// maps the same memory with [`Region::from_inherited`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mapshare::Region;
    /// let region = Region::anonymous(4096)?;
    /// let mut cmd = std::process::Command::new("my-child");
    /// region.share_with(&mut cmd, "MY_REGION_FD");
    /// let child = cmd.spawn();
    /// // in the child: Region::from_inherited("MY_REGION_FD")
    /// # Ok(()) }
    /// ```
    pub fn share_with(&self, cmd: &mut Command, var: &str) {
        share_fd(self.file.as_fd(), cmd, var);
    }

    /// Maps the region a parent passed with [`Region::share_with`]: reads the
    /// descriptor number from `var` and reopens it through
    /// `/proc/self/fd`, which creates a new description of the same object
    /// and leaves the inherited descriptor alone.
    pub fn from_inherited(var: &str) -> Result<Region> {
        let origin = Origin::anonymous(var);
        let path = inherited_fd_path(var)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::io(&origin, "reopen inherited descriptor", e))?;
        Region::from_fd(OwnedFd::from(file))
    }

    pub(crate) fn map_file(
        file: File,
        origin: Origin,
        backing: Backing,
        access: Access,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Region> {
        let size = file_size(&file, &origin)?;
        if let Some(len) = len {
            if offset.checked_add(len).is_none() {
                return Err(Error::Overflow {
                    origin,
                    offset,
                    len,
                });
            }
        }
        let len = match len {
            Some(0) => {
                return Err(Error::ZeroLength {
                    origin,
                    what: "mapping",
                })
            }
            Some(len) => len,
            None if size == 0 => return Err(Error::Empty { origin }),
            None if offset >= size => {
                return Err(Error::WindowOutOfRange {
                    origin,
                    offset,
                    len: 0,
                    size,
                })
            }
            None => size - offset,
        };
        if offset + len > size {
            if size == 0 {
                return Err(Error::Empty { origin });
            }
            return Err(Error::WindowOutOfRange {
                origin,
                offset,
                len,
                size,
            });
        }
        let Ok(len_usize) = usize::try_from(len) else {
            return Err(Error::Overflow {
                origin,
                offset,
                len,
            });
        };
        if backing == Backing::File {
            // Shared guard: refuse shrinks by other mapshare users while
            // we map the file.
            match sys::lock::try_lock(&file, LockKind::Shared, GUARD_BYTE, 1) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Error::Busy {
                        origin,
                        why: "another process is resizing the file".into(),
                    })
                }
                Err(e) => return Err(Error::io(&origin, "lock size guard", e)),
            }
        }
        let sigbus = match backing {
            Backing::File => Some(
                sigbus::Registration::new()
                    .map_err(|e| Error::io(&origin, "register with the SIGBUS handler", e))?,
            ),
            Backing::Memfd => None,
        };
        let mut region = Region {
            sigbus,
            mapping: Mapping::None,
            ptr: std::ptr::null_mut(),
            len: 0,
            file,
            origin,
            backing,
            access,
            offset,
            to_end: false,
        };
        region.to_end = offset + len == size;
        region.remap(len_usize)?;
        Ok(region)
    }

    /// Replaces the mapping with one of `len` bytes at `self.offset`.
    fn remap(&mut self, len: usize) -> Result<()> {
        if let Some(r) = &self.sigbus {
            r.clear();
        }
        self.mapping = Mapping::None;
        self.ptr = std::ptr::null_mut();
        self.len = 0;
        if len == 0 {
            if let Some(r) = &self.sigbus {
                // Nothing mapped: protect nothing, forget old faults.
                r.set(std::ptr::null(), 0);
            }
            return Ok(());
        }
        let mut opts = memmap2::MmapOptions::new();
        opts.offset(self.offset).len(len);
        let mapped = match self.access {
            Access::ReadOnly => opts.map_raw_read_only(&self.file).map(Mapping::Shared),
            Access::ReadWrite => opts.map_raw(&self.file).map(Mapping::Shared),
            // SAFETY: a private mapping is only ever accessed through raw
            // pointers (`self.ptr`), never through the `MmapMut`'s slice, so
            // other processes changing the file underneath (which a private
            // mapping may observe on pages not yet copied) breaks no Rust
            // reference.
            Access::CopyOnWrite => unsafe { opts.map_copy(&self.file) }.map(Mapping::Private),
        }
        .map_err(|e| Error::io(&self.origin, "mmap", e))?;
        self.ptr = match &mapped {
            Mapping::Shared(m) => m.as_mut_ptr(),
            Mapping::Private(m) => m.as_ptr() as *mut u8,
            Mapping::None => std::ptr::null_mut(),
        };
        self.mapping = mapped;
        self.len = len;
        if let Some(r) = &self.sigbus {
            r.set(self.ptr, len);
        }
        Ok(())
    }

    /// Bytes the region maps.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region maps nothing (only after [`Region::refresh`] found
    /// the file truncated to before the region's start).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How the region is accessed.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Where the region starts in its file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file's path, or a `memfd:` description for anonymous regions.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The backing file or memfd.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Checks that `[offset, offset + len)` lies inside the region and returns
    /// it as `usize`s.
    /// (Inline, with the errors built out of line: the crate's objects
    /// check a word this way on hot paths, such as every log append.)
    #[inline]
    fn bounds(&self, offset: u64, len: usize) -> Result<usize> {
        if let Ok(start) = usize::try_from(offset) {
            if start.checked_add(len).is_some_and(|end| end <= self.len) {
                return Ok(start);
            }
        }
        Err(self.out_of_bounds(offset, len))
    }

    #[cold]
    #[inline(never)]
    fn out_of_bounds(&self, offset: u64, len: usize) -> Error {
        Error::OutOfBounds {
            origin: self.origin.clone(),
            offset,
            len: len as u64,
            region_len: self.len as u64,
        }
    }

    #[inline]
    fn writable(&self) -> Result<()> {
        if self.access == Access::ReadOnly {
            return Err(self.read_only());
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn read_only(&self) -> Error {
        Error::ReadOnly {
            origin: self.origin.clone(),
        }
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// Another process may be writing the same bytes; the copy may then mix
    /// old and new bytes. Use a lock, a seqlock or atomics when that matters.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = self.bounds(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        // SAFETY: `start..start + buf.len()` is inside the mapping (checked
        // above), which lives as long as `self`; `buf` is private memory that
        // cannot overlap a mapping we own. No reference to mapped bytes is
        // created.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(start), buf.as_mut_ptr(), buf.len()) };
        // The copy may have hit a page the SIGBUS handler replaced: report
        // that before the caller sees the bytes. The fence keeps the
        // compiler from moving the check above the copy.
        compiler_fence(Ordering::SeqCst);
        self.check_faults()
    }

    /// Copies `len` bytes starting at `offset` into a new vector.
    pub fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read_at(offset, &mut v)?;
        Ok(v)
    }

    /// Copies `data` into the region at `offset`.
    ///
    /// On a shared region the bytes are visible to every process that maps
    /// the file at once; call [`Region::flush`] to make them durable.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.writable()?;
        let start = self.bounds(offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        // SAFETY: in bounds (checked above) of a writable mapping that lives
        // as long as `self`; `&mut self` rules out concurrent access from
        // this process through safe code. `data` may overlap the mapping
        // (a caller that went through `as_slice`, or a Python memoryview of
        // this very region): `copy` is a memmove, defined for overlap.
        unsafe { std::ptr::copy(data.as_ptr(), self.ptr.add(start), data.len()) };
        compiler_fence(Ordering::SeqCst);
        self.check_faults()
    }

    #[inline]
    fn atomic_ptr(&self, offset: u64, size: usize) -> Result<*mut u8> {
        self.writable()?;
        self.aligned_ptr(offset, size)
    }

    #[inline]
    fn aligned_ptr(&self, offset: u64, size: usize) -> Result<*mut u8> {
        let start = self.bounds(offset, size)?;
        // SAFETY: `start` is in bounds (checked above).
        let p = unsafe { self.ptr.add(start) };
        if !(p as usize).is_multiple_of(size) {
            return Err(self.misaligned(offset, size, p as usize));
        }
        Ok(p)
    }

    #[cold]
    #[inline(never)]
    fn misaligned(&self, offset: u64, align: usize, addr: usize) -> Error {
        Error::Misaligned {
            origin: self.origin.clone(),
            offset,
            align,
            addr,
        }
    }

    /// An atomic view of the 4 bytes at `offset`, which must be 4-aligned in
    /// memory. Refused on read-only regions (a store would fault).
    ///
    /// Atomics are the one way to share a word that other processes change:
    /// use them for flags, counters and futex words.
    ///
    /// # Safety
    ///
    /// While the returned reference lives, this process must not access
    /// those 4 bytes in any other way: not with [`Region::read_at`] /
    /// [`Region::write_at`] (plain copies), not through an atomic view of
    /// another size or offset that overlaps them (mixed-size atomic
    /// accesses are undefined behaviour), and not as part of a typed object
    /// (a mutex, event, queue...). Rust's memory model makes a plain read
    /// racing an atomic store in the same process undefined behaviour, and
    /// `Region` is `Sync`, so the borrow checker cannot rule it out. Other
    /// processes are outside this contract: what they do can change the
    /// value, never the soundness of this view.
    pub unsafe fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32> {
        self.atomic32(offset)
    }

    /// An atomic view of the 8 bytes at `offset`, which must be 8-aligned in
    /// memory. See [`Region::atomic_u32`].
    ///
    /// # Safety
    ///
    /// As for [`Region::atomic_u32`], for these 8 bytes.
    ///
    /// Safe code cannot create a view that a safe `read_at` on another
    /// thread could race (issue 7, B6; this must not compile):
    ///
    /// ```compile_fail,E0133
    /// # fn main() -> Result<(), mapshare::Error> {
    /// let region = mapshare::Region::anonymous(4096)?;
    /// let _hits = region.atomic_u64(0)?;
    /// # Ok(()) }
    /// ```
    pub unsafe fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64> {
        self.atomic64(offset)
    }

    /// [`Region::atomic_u32`] for the crate's own objects, whose words are
    /// only ever accessed atomically and with one size (each object's
    /// layout says so) and which safe code cannot reach otherwise.
    #[inline]
    pub(crate) fn atomic32(&self, offset: u64) -> Result<&AtomicU32> {
        let p = self.atomic_ptr(offset, 4)?;
        // SAFETY: `p` is 4-aligned, in bounds of a writable mapping that lives
        // as long as `&self` (remapping needs `&mut self`), and `AtomicU32`
        // has the size and alignment of `u32`. Concurrent changes by other
        // processes are exactly what atomics are for; in this process the
        // callers' contract (above) rules out other kinds of access.
        Ok(unsafe { AtomicU32::from_ptr(p.cast()) })
    }

    /// [`Region::atomic_u64`] for the crate's own objects (see
    /// [`Region::atomic32`]).
    #[inline]
    pub(crate) fn atomic64(&self, offset: u64) -> Result<&AtomicU64> {
        let p = self.atomic_ptr(offset, 8)?;
        // SAFETY: as in `atomic32`, with 8-byte size and alignment.
        Ok(unsafe { AtomicU64::from_ptr(p.cast()) })
    }

    /// Atomically loads the `u32` at `offset` (4-aligned in memory), with
    /// `order`. Works on read-only regions too.
    pub fn load_u32(&self, offset: u64, order: Ordering) -> Result<u32> {
        let p = self.aligned_ptr(offset, 4)?;
        // SAFETY: as in `atomic_u32`; only a load is performed, which is
        // valid on read-only memory, and the reference does not escape.
        let v = unsafe { AtomicU32::from_ptr(p.cast()) }.load(order);
        compiler_fence(Ordering::SeqCst);
        self.check_faults()?;
        Ok(v)
    }

    /// Atomically loads the `u64` at `offset` (8-aligned in memory), with
    /// `order`. Works on read-only regions too.
    pub fn load_u64(&self, offset: u64, order: Ordering) -> Result<u64> {
        let p = self.aligned_ptr(offset, 8)?;
        // SAFETY: as in `load_u32`, for 8 bytes.
        let v = unsafe { AtomicU64::from_ptr(p.cast()) }.load(order);
        compiler_fence(Ordering::SeqCst);
        self.check_faults()?;
        Ok(v)
    }

    /// The address of the region's first byte. Reading or writing through it
    /// is up to you; see the [module documentation](self).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// The address of the region's first byte, for writing. Errors on
    /// read-only regions.
    pub fn as_mut_ptr(&self) -> Result<*mut u8> {
        self.writable()?;
        Ok(self.ptr)
    }

    /// The whole region as a byte slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, no process (this one included) may write the
    /// region's bytes and no process may shrink the file; otherwise the
    /// slice changes under Rust's feet, which is undefined behaviour.
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` is valid for `len` bytes while `self` lives; the
        // caller guarantees nobody writes them meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The page-aligned span that covers the view's `[start, start + len)`.
    fn page_span(&self, start: usize, len: usize) -> (*const u8, usize) {
        let page = sys::page_size();
        // SAFETY: `start <= self.len` (callers bound-check), so this stays in
        // or one past the mapping.
        let addr = unsafe { self.ptr.add(start) } as usize;
        let aligned = addr & !(page - 1);
        (aligned as *const u8, len + (addr - aligned))
    }

    fn range(&self, range: Option<(u64, usize)>) -> Result<(usize, usize)> {
        match range {
            None => Ok((0, self.len)),
            Some((offset, len)) => Ok((self.bounds(offset, len)?, len)),
        }
    }

    /// Writes all changes in the region back to the file and waits for the
    /// device (`msync(MS_SYNC)`). A no-op on copy-on-write and anonymous
    /// regions.
    pub fn flush(&self) -> Result<()> {
        self.flush_range(0, self.len, Flush::Sync)
    }

    /// Writes back `[offset, offset + len)` (`msync`, sync or async).
    pub fn flush_range(&self, offset: u64, len: usize, mode: Flush) -> Result<()> {
        let start = self.bounds(offset, len)?;
        let Mapping::Shared(map) = &self.mapping else {
            return Ok(());
        };
        if len == 0 {
            return Ok(());
        }
        match mode {
            Flush::Sync => map.flush_range(start, len),
            Flush::Async => map.flush_async_range(start, len),
        }
        .map_err(|e| Error::io(&self.origin, "msync", e))
    }

    /// Tells the kernel how the whole region will be used (`madvise`).
    pub fn advise(&self, hint: Hint) -> Result<()> {
        self.advise_range(hint, 0, self.len)
    }

    /// Tells the kernel how `[offset, offset + len)` will be used.
    pub fn advise_range(&self, hint: Hint, offset: u64, len: usize) -> Result<()> {
        let (start, len) = self.range(Some((offset, len)))?;
        if len == 0 {
            return Ok(());
        }
        let advice = match hint {
            Hint::Normal => Advice::Normal,
            Hint::Sequential => Advice::Sequential,
            Hint::Random => Advice::Random,
            Hint::WillNeed => Advice::WillNeed,
            Hint::DontNeed => {
                if self.access == Access::CopyOnWrite {
                    return Err(Error::Unsupported {
                        origin: self.origin.clone(),
                        what: "advise(DontNeed)",
                        why: "it would discard this copy-on-write region's private changes",
                    });
                }
                Advice::DontNeed
            }
            Hint::HugePage => Advice::HugePage,
        };
        let (addr, span) = self.page_span(start, len);
        // SAFETY: the span lies in this region's mapping; DontNeed is only
        // reached for shared mappings (refused above for private ones).
        unsafe { sys::mem::advise(addr, span, advice) }
            .map_err(|e| Error::io(&self.origin, "madvise", e))?;
        if hint == Hint::DontNeed && self.backing == Backing::File {
            // Let the page cache drop the clean pages too; dirty ones stay
            // until written back.
            let file_start = self.offset + start as u64;
            sys::drop_cache(&self.file, file_start, len as u64)
                .map_err(|e| Error::io(&self.origin, "posix_fadvise", e))?;
        }
        Ok(())
    }

    /// How many of the region's pages are resident in memory (`mincore`).
    pub fn residency(&self) -> Result<Residency> {
        if self.len == 0 {
            return Ok(Residency {
                resident: 0,
                total: 0,
            });
        }
        let (addr, span) = self.page_span(0, self.len);
        let (resident, total) = sys::mem::resident_pages(addr, span)
            .map_err(|e| Error::io(&self.origin, "mincore", e))?;
        Ok(Residency { resident, total })
    }

    /// Maps every page of the region writable now
    /// (`madvise(MADV_POPULATE_WRITE)`), for memory this process is about
    /// to write all of (a log segment): later writes take no page fault.
    /// Unlike [`Region::prefault`] on a file, this marks the pages dirty,
    /// so write it only where the data will be written anyway. Refused on
    /// read-only regions; where the kernel lacks the advice (before 5.14)
    /// it populates for reading instead.
    pub fn prefault_write(&self) -> Result<()> {
        self.prefault_write_range(0, self.len)
    }

    /// [`Region::prefault_write`] for `[offset, offset + len)` only.
    pub fn prefault_write_range(&self, offset: u64, len: usize) -> Result<()> {
        self.writable()?;
        let start = self.bounds(offset, len)?;
        if len > 0 && !self.advise_populate(start, len, true)? {
            self.touch(start, len);
        }
        Ok(())
    }

    /// Faults every page of the region in now, so that first accesses later
    /// cost no page fault (`MADV_POPULATE_READ`, or `POPULATE_WRITE` for
    /// anonymous regions; on kernels before 5.14, by touching each page).
    pub fn prefault(&self) -> Result<()> {
        self.prefault_range(0, self.len)
    }

    /// [`Region::prefault`] for `[offset, offset + len)` only.
    pub fn prefault_range(&self, offset: u64, len: usize) -> Result<()> {
        let start = self.bounds(offset, len)?;
        if len > 0 && !self.advise_populate(start, len, false)? {
            self.touch(start, len);
        }
        Ok(())
    }

    /// The library's own populating ahead of use (a queue's ring when a
    /// side attaches, a log segment ahead of a writer or reader): as
    /// [`Region::prefault_range`] (with `write`,
    /// [`Region::prefault_write_range`]), but only through `madvise`.
    /// Where the kernel lacks `MADV_POPULATE_*` (before 5.14) it does
    /// nothing rather than touch each page: touching a page an outside
    /// truncate cut away would record the fault, and the object would
    /// report `Truncated` at once instead of at the first access to that
    /// page (found in review). `MADV_POPULATE_*` itself fails with
    /// `EFAULT` there, and records nothing.
    pub(crate) fn populate_hint(&self, offset: u64, len: usize, write: bool) -> Result<()> {
        if write {
            self.writable()?;
        }
        let start = self.bounds(offset, len)?;
        if len > 0 {
            self.advise_populate(start, len, write)?;
        }
        Ok(())
    }

    /// `madvise(MADV_POPULATE_*)` over `start..start + len` (inside the
    /// region, `len > 0`): for writing if `write` or if the region is an
    /// anonymous one mapped read-write (a write populate of a shared
    /// *file* mapping would mark every page dirty and cause write-back of
    /// unchanged data), else for reading. `Ok(false)` where the kernel
    /// lacks the advice.
    fn advise_populate(&self, start: usize, len: usize, write: bool) -> Result<bool> {
        let (addr, span) = self.page_span(start, len);
        let advice =
            if write || (self.backing == Backing::Memfd && self.access == Access::ReadWrite) {
                Advice::PopulateWrite
            } else {
                Advice::PopulateRead
            };
        // SAFETY: the span lies in this region's mapping; populating changes
        // no data.
        match unsafe { sys::mem::advise(addr, span, advice) } {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => Err(Error::io(&self.origin, "madvise(populate)", e)),
        }
    }

    /// Reads the first byte of `start..start + len` (inside the region)
    /// and of each page after it: the pre-5.14 way to fault pages in.
    fn touch(&self, start: usize, len: usize) {
        let page = sys::page_size();
        let base = self.ptr as usize;
        let mut at = start;
        while at < start + len {
            // SAFETY: `at < start + len`, inside the mapping; a volatile
            // read of a `u8` creates no reference and cannot be elided.
            unsafe { std::ptr::read_volatile(self.ptr.add(at)) };
            at = ((base + at) / page + 1) * page - base;
        }
    }

    /// Locks the region's pages in RAM (`mlock`): they are faulted in now
    /// and never swapped out. Subject to `RLIMIT_MEMLOCK`.
    pub fn lock_in_ram(&self) -> Result<()> {
        let (addr, span) = self.page_span(0, self.len);
        sys::mem::lock_in_ram(addr, span).map_err(|e| Error::io(&self.origin, "mlock", e))
    }

    /// Undoes [`Region::lock_in_ram`] (`munlock`).
    pub fn unlock_from_ram(&self) -> Result<()> {
        let (addr, span) = self.page_span(0, self.len);
        sys::mem::unlock_from_ram(addr, span).map_err(|e| Error::io(&self.origin, "munlock", e))
    }

    /// The backing object's current size in bytes.
    pub fn file_len(&self) -> Result<u64> {
        file_size(&self.file, &self.origin)
    }

    /// Reports [`Error::Truncated`] if an access to this region hit a page
    /// that vanished (the file was shrunk behind mapshare's back) since it
    /// was mapped or last refreshed: the bytes read since then may be
    /// zeros, and writes may have been lost. One relaxed load when nothing
    /// happened.
    ///
    /// [`Region::read_at`], [`Region::write_at`], the `load_*` methods,
    /// [`Region::check`] and [`Region::refresh`] call it themselves. Code
    /// that reads the mapping through atomics or raw pointers calls it
    /// after reading and before trusting what it read. The fault is sticky:
    /// every call reports it until [`Region::refresh`] remaps the region.
    /// See the `sys::sigbus` module (internal) for how a fault becomes a zero page
    /// instead of a crash.
    #[inline]
    pub fn check_faults(&self) -> Result<()> {
        if self.fault_free() {
            Ok(())
        } else {
            Err(self.fault_error())
        }
    }

    /// Whether [`Region::check_faults`] would find nothing.
    #[inline]
    pub(crate) fn fault_free(&self) -> bool {
        self.sigbus.as_ref().is_none_or(|r| r.faults() == 0)
    }

    /// The `Truncated` error for a recorded fault: the size the region
    /// needs, and the smaller of the file's size now and the start of the
    /// first page that was found missing.
    #[cold]
    fn fault_error(&self) -> Error {
        let end = self.offset + self.len as u64;
        let mut actual = self.file_len().unwrap_or(0);
        if let Some(addr) = self.sigbus.as_ref().and_then(|r| r.first_fault()) {
            let page = sys::page_size() as u64;
            let into = (addr as u64).saturating_sub(self.ptr as u64);
            let missing = (self.offset + into) & !(page - 1);
            actual = actual.min(missing);
        }
        Error::Truncated {
            origin: self.origin.clone(),
            expected: end,
            actual: actual.min(end.saturating_sub(1)),
        }
    }

    /// Checks that the backing object still covers the whole region; returns
    /// [`Error::Truncated`] if somebody shrank it, or if an access already
    /// found a page missing ([`Region::check_faults`]).
    pub fn check(&self) -> Result<()> {
        self.check_faults()?;
        let size = self.file_len()?;
        let end = self.offset + self.len as u64;
        if size < end {
            return Err(Error::Truncated {
                origin: self.origin.clone(),
                expected: end,
                actual: size,
            });
        }
        Ok(())
    }

    /// Brings the region up to date with its backing object's size.
    ///
    /// A region that maps to the end of its file follows the file: if
    /// another process grew it, the region now maps the new end. Any region
    /// whose bytes the file no longer covers is cut back to what remains
    /// (so later accesses are `OutOfBounds`, not `SIGBUS`) and the call
    /// returns [`Error::Truncated`].
    pub fn refresh(&mut self) -> Result<Refresh> {
        let faulted = self.check_faults().err();
        let size = self.file_len()?;
        let end = self.offset + self.len as u64;
        if size < end || faulted.is_some() {
            let error = faulted.unwrap_or(Error::Truncated {
                origin: self.origin.clone(),
                expected: end,
                actual: size,
            });
            // Remapping also throws the zero pages away.
            let remaining = size.saturating_sub(self.offset).min(self.len as u64) as usize;
            self.remap(remaining)?;
            return Err(error);
        }
        if self.to_end && size > end {
            let from = self.len;
            let to = usize::try_from(size - self.offset).map_err(|_| Error::Overflow {
                origin: self.origin.clone(),
                offset: self.offset,
                len: size - self.offset,
            })?;
            self.remap(to)?;
            return Ok(Refresh::Grown { from, to });
        }
        Ok(Refresh::Unchanged)
    }

    /// Grows the region to `new_len` bytes, extending the file (with space
    /// reserved) if it ends before `offset + new_len`. Other processes see
    /// the new size after their [`Region::refresh`].
    pub fn grow(&mut self, new_len: usize) -> Result<()> {
        if self.access == Access::ReadOnly {
            return Err(Error::ReadOnly {
                origin: self.origin.clone(),
            });
        }
        // A remap forgets recorded faults: report them first.
        self.check_faults()?;
        if new_len < self.len {
            return self.shrink(new_len);
        }
        let new_end = self
            .offset
            .checked_add(new_len as u64)
            .ok_or_else(|| Error::Overflow {
                origin: self.origin.clone(),
                offset: self.offset,
                len: new_len as u64,
            })?;
        let size = self.file_len()?;
        if new_end > size {
            if self.access == Access::CopyOnWrite {
                return Err(Error::Unsupported {
                    origin: self.origin.clone(),
                    what: "growing the file",
                    why: "a copy-on-write region never changes its file",
                });
            }
            if self.backing == Backing::Memfd {
                reserve_memory(&self.file, &self.origin, size, new_end - size)?;
            } else {
                reserve(&self.file, &self.origin, size, new_end - size)?;
            }
        }
        self.remap(new_len)?;
        self.to_end = new_end >= self.file_len()?;
        Ok(())
    }

    /// Shrinks the region and its file to `new_len` bytes.
    ///
    /// Only a read-write region that maps to the end of a regular file can
    /// shrink it. Refused with [`Error::Busy`] while any other `Region` maps
    /// the file (in this process or another), because their next access past
    /// the new end would be a `SIGBUS`. Anonymous regions are sealed and
    /// cannot shrink.
    pub fn shrink(&mut self, new_len: usize) -> Result<()> {
        self.writable()?;
        self.check_faults()?;
        let unsupported = |why| Error::Unsupported {
            origin: self.origin.clone(),
            what: "shrinking",
            why,
        };
        if self.backing == Backing::Memfd {
            return Err(unsupported(
                "anonymous regions are sealed against shrinking",
            ));
        }
        if self.access == Access::CopyOnWrite {
            return Err(unsupported("a copy-on-write region never changes its file"));
        }
        if new_len == 0 {
            return Err(Error::ZeroLength {
                origin: self.origin.clone(),
                what: "region",
            });
        }
        if new_len >= self.len {
            return Ok(());
        }
        let end = self.offset + self.len as u64;
        if end != self.file_len()? {
            return Err(unsupported("the region does not reach the end of the file"));
        }
        let origin = self.origin.clone();
        let guard_err = |e| Error::io(&origin, "lock size guard", e);
        if !sys::lock::try_lock(&self.file, LockKind::Exclusive, GUARD_BYTE, 1)
            .map_err(guard_err)?
        {
            return Err(Error::Busy {
                origin: self.origin.clone(),
                why: "another region maps this file; shrinking would make its pages fault".into(),
            });
        }
        let new_end = self.offset + new_len as u64;
        let result = self.remap(new_len).and_then(|()| {
            self.file
                .set_len(new_end)
                .map_err(|e| Error::io(&self.origin, "ftruncate", e))
        });
        // Back to shared: other processes may map the file again.
        sys::lock::try_lock(&self.file, LockKind::Shared, GUARD_BYTE, 1).map_err(guard_err)?;
        result
    }
}

impl AsFd for Region {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

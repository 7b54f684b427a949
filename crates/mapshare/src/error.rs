//! The one error type of the library.
//!
//! Every variant carries the context a user needs to act on it: the path
//! (or the name of an anonymous region), the window or offset involved, and
//! what was expected and found. Operating-system errors keep their
//! `std::io::Error` as the `source`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a region or file is called in messages: a path, or a description
/// of an anonymous object such as `memfd:mapshare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(PathBuf);

impl Origin {
    /// The origin of a file at `path`.
    pub fn path(path: &Path) -> Self {
        Origin(path.to_path_buf())
    }

    /// The origin of an anonymous object, e.g. `memfd:name`.
    pub fn anonymous(name: &str) -> Self {
        Origin(PathBuf::from(format!("memfd:{name}")))
    }

    /// As a path (for anonymous objects, the `memfd:` description).
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// Everything that can go wrong in mapshare.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file does not exist.
    #[error("{origin}: no such file")]
    NotFound {
        /// The file.
        origin: Origin,
    },

    /// The path names a directory, which cannot be mapped.
    #[error("{origin}: is a directory, not a file")]
    IsDirectory {
        /// The directory.
        origin: Origin,
    },

    /// The path names something that is neither a regular file nor a
    /// directory (a FIFO, a socket, a device).
    #[error("{origin}: not a regular file")]
    NotAFile {
        /// The path.
        origin: Origin,
    },

    /// The file exists but is empty, and a zero-length mapping means
    /// nothing.
    #[error("{origin}: the file is empty, there is nothing to map")]
    Empty {
        /// The file.
        origin: Origin,
    },

    /// The file may not be opened the way asked.
    #[error("{origin}: permission denied ({op})")]
    PermissionDenied {
        /// The file.
        origin: Origin,
        /// What was attempted, e.g. `open read-write`.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The file already exists and exclusive creation was asked for.
    #[error("{origin}: already exists")]
    AlreadyExists {
        /// The file.
        origin: Origin,
    },

    /// A requested window does not lie inside the file.
    #[error(
        "{origin}: window {offset}..{end} (offset {offset}, length {len}) lies past the end of the file (size {size})",
        end = offset.saturating_add(*len)
    )]
    WindowOutOfRange {
        /// The file.
        origin: Origin,
        /// Where the window starts.
        offset: u64,
        /// Its length.
        len: u64,
        /// The file's size.
        size: u64,
    },

    /// `offset + len` does not fit in 64 bits or in the address space.
    #[error("{origin}: window at offset {offset} with length {len} overflows")]
    Overflow {
        /// The file or region.
        origin: Origin,
        /// Where the window starts.
        offset: u64,
        /// Its length.
        len: u64,
    },

    /// A length of zero was given where it means nothing or cannot be
    /// carried (a mapping, a file's object, a queue record).
    #[error("{origin}: a {what} of zero length is not allowed")]
    ZeroLength {
        /// The file or region.
        origin: Origin,
        /// What had length zero (`mapping`, `object`, `queue record`...).
        what: &'static str,
    },

    /// An access through a region falls outside it.
    #[error("{origin}: access {offset}..{end} is out of bounds for a region of {region_len} bytes", end = offset.saturating_add(*len))]
    OutOfBounds {
        /// The region.
        origin: Origin,
        /// First byte accessed, relative to the region's start.
        offset: u64,
        /// Bytes accessed.
        len: u64,
        /// The region's length.
        region_len: u64,
    },

    /// An atomic view was asked for at an offset that is not aligned.
    #[error("{origin}: offset {offset} is not aligned to {align} bytes (address {addr:#x})")]
    Misaligned {
        /// The region.
        origin: Origin,
        /// The offset, relative to the region's start.
        offset: u64,
        /// The alignment required.
        align: usize,
        /// The address the offset maps to.
        addr: usize,
    },

    /// A write was attempted through a read-only region.
    #[error("{origin}: the region is mapped read-only")]
    ReadOnly {
        /// The region.
        origin: Origin,
    },

    /// The operation would pull memory from under another user of the file.
    #[error("{origin}: busy: {why}")]
    Busy {
        /// The file.
        origin: Origin,
        /// Who is in the way.
        why: String,
    },

    /// A log reader asked for records that retention has already deleted
    /// ([`crate::log`]): `skipped` records are gone, reading resumes at
    /// sequence number `resume_at`.
    #[error(
        "{origin}: lagged: {skipped} records were deleted by retention; resuming at {resume_at}"
    )]
    Lagged {
        /// The log directory.
        origin: Origin,
        /// Exactly how many records were lost to this reader.
        skipped: u64,
        /// The first sequence number still in the log.
        resume_at: u64,
    },

    /// The file is shorter than it must be: somebody shrank it.
    #[error("{origin}: truncated: expected at least {expected} bytes, the file has {actual}")]
    Truncated {
        /// The file.
        origin: Origin,
        /// Bytes that should be there.
        expected: u64,
        /// Bytes that are there.
        actual: u64,
    },

    /// Not enough space to reserve the file's blocks.
    #[error("{origin}: no space left to reserve {len} bytes")]
    NoSpace {
        /// The file.
        origin: Origin,
        /// Bytes that could not be reserved.
        len: u64,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A shared-memory name is not acceptable.
    #[error("invalid shared memory name {name:?}: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },

    /// An argument the caller passed is outside what is allowed: a queue
    /// capacity, a log segment size, a lease slot count, file mode bits, a
    /// semaphore post that would overflow the count. Nothing was read from
    /// a file or shared memory to decide this (that would be
    /// [`Error::Corrupted`]); `why` says what was given and what is
    /// allowed.
    #[error("{origin}: invalid {what}: {why}")]
    InvalidArgument {
        /// The file or region the argument was for.
        origin: Origin,
        /// Which argument (`queue capacity`, `mode`...).
        what: &'static str,
        /// What was given and what is allowed.
        why: String,
    },

    /// The operation is not supported here.
    #[error("{origin}: {what} is not supported: {why}")]
    Unsupported {
        /// The region or file.
        origin: Origin,
        /// The operation.
        what: &'static str,
        /// Why not.
        why: &'static str,
    },

    /// The file lives on a special file system (procfs, sysfs, cgroup,
    /// ...) whose files are kernel interfaces, not data: mapshare never
    /// opens such a file for writing.
    #[error("{origin}: refusing to write a file on {fs}, a special file system: only regular files on ordinary file systems are opened for writing")]
    SpecialFileSystem {
        /// The file.
        origin: Origin,
        /// The file system's name.
        fs: &'static str,
    },

    /// The file is not a mapshare file (no magic number).
    #[error("{origin}: not a mapshare file")]
    NotMapshare {
        /// The file.
        origin: Origin,
    },

    /// The file was written on a machine of the other byte order: its magic
    /// number reads byte-swapped.
    #[error(
        "{origin}: byte order mismatch: the file was written on a machine of the other endianness"
    )]
    ByteOrderMismatch {
        /// The file.
        origin: Origin,
    },

    /// The file's format version is not one this build understands.
    #[error("{origin}: unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The file.
        origin: Origin,
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },

    /// The file holds a different kind of object than asked for, or a kind
    /// this build does not know.
    #[error("{origin}: wrong kind of object: expected {expected}, found {found}")]
    WrongKind {
        /// The file.
        origin: Origin,
        /// The kind asked for.
        expected: String,
        /// The kind in the file.
        found: String,
    },

    /// The file holds a different type than asked for.
    #[error("{origin}: type mismatch: expected {expected}, found {found}")]
    TypeMismatch {
        /// The file.
        origin: Origin,
        /// The type asked for (name, size, alignment).
        expected: String,
        /// The type in the file.
        found: String,
    },

    /// The header's checksum does not match its contents.
    #[error("{origin}: bad header checksum: stored {stored:#018x}, computed {computed:#018x}")]
    BadChecksum {
        /// The file.
        origin: Origin,
        /// Checksum in the header.
        stored: u64,
        /// Checksum of the header's contents.
        computed: u64,
    },

    /// Shared state holds a value that cannot be: a header field, a lock
    /// word, an index or a length written by a buggy or hostile peer.
    #[error("{origin}: corrupted {what}: {why}")]
    Corrupted {
        /// The file or region.
        origin: Origin,
        /// Which field or structure.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },

    /// A bounded wait ran out.
    #[error("{origin}: timed out after {waited:?} {what}")]
    Timeout {
        /// The file or region.
        origin: Origin,
        /// What was being waited for.
        what: &'static str,
        /// How long we waited.
        waited: std::time::Duration,
    },

    /// Every slot of the file's lease table is held by a live process.
    #[error("{origin}: all {slots} lease slots are held by live processes")]
    LeaseTableFull {
        /// The file.
        origin: Origin,
        /// Slots in the table.
        slots: u32,
    },

    /// No lease slot could be taken, and some were refused only because
    /// another program holds *shared* (read) locks on their lock bytes:
    /// mapshare processes lock those bytes exclusively, so these are not
    /// attached processes but, say, a program that may only read the file,
    /// or one that read-locked the whole file with `fcntl`/`lockf`. Opening
    /// works again once those locks are released (the slots not counted in
    /// `blocked` are held by live processes).
    #[error(
        "{origin}: no lease slot can be taken: {blocked} of {slots} are blocked by shared locks on their lock bytes held by {}, which is not an attached process (mapshare locks them exclusively); the rest are held by live processes",
        blocker_name(*.pid)
    )]
    LeaseSlotsBlocked {
        /// The file.
        origin: Origin,
        /// Slots in the table.
        slots: u32,
        /// Slots whose lock byte only a shared lock blocked.
        blocked: u32,
        /// The process holding one such lock when it is a classic POSIX
        /// lock (`lockf`, `F_SETLK`); `None` for OFD locks, whose owner
        /// the kernel does not report.
        pid: Option<u32>,
    },

    /// A mutex's previous holder died while holding it: the protected data
    /// may be half-updated. Lock it, repair the data and mark it
    /// consistent (or use [`crate::shared::repair`]).
    #[error("{origin}: the previous holder of the mutex died while holding it; the data may be half-updated and must be checked, then marked consistent")]
    OwnerDied {
        /// The file.
        origin: Origin,
    },

    /// A holder of a mutex panicked while holding it.
    #[error("{origin}: a holder of the mutex panicked; the data must be checked, then marked consistent")]
    Poisoned {
        /// The file.
        origin: Origin,
    },

    /// A taker of a dead holder's mutex gave up repairing it: it cannot be
    /// locked until it is deliberately reset ([`crate::shared::repair`]).
    #[error("{origin}: the mutex is not recoverable (a taker gave up repairing it); reset it after checking the data")]
    NotRecoverable {
        /// The file.
        origin: Origin,
    },

    /// A repair was asked for a mutex in a state it does not apply to.
    #[error("{origin}: cannot {repair}: the mutex is {state}")]
    RepairNotApplicable {
        /// The file.
        origin: Origin,
        /// The repair asked for (`mark consistent`, `reset`).
        repair: &'static str,
        /// The state found.
        state: String,
    },

    /// This process is a `fork()`ed child using its parent's attachment;
    /// it must open the file itself.
    #[error("{origin}: this attachment belongs to process {owner}, not to this forked child (pid {pid}); open the file again")]
    ForkedChild {
        /// The file.
        origin: Origin,
        /// The process that attached.
        owner: u32,
        /// This process.
        pid: u32,
    },

    /// A queue role (producer or consumer) is held by a live process.
    #[error("{origin}: the {role} role is taken by live process {pid}")]
    RoleTaken {
        /// The queue file.
        origin: Origin,
        /// `producer` or `consumer`.
        role: &'static str,
        /// The process that holds it.
        pid: u32,
    },

    /// The other side of a queue is gone (and, for a consumer, every
    /// committed record has been received).
    #[error("{origin}: disconnected: the {peer} is gone")]
    Disconnected {
        /// The queue file.
        origin: Origin,
        /// `producer` or `consumer`.
        peer: &'static str,
    },

    /// The other side of a queue died without closing its session (for a
    /// consumer: after every record it committed was received).
    #[error("{origin}: the {peer} (process {pid}) died")]
    PeerDied {
        /// The queue file.
        origin: Origin,
        /// `producer` or `consumer`.
        peer: &'static str,
        /// The process that died, as recorded in its lease slot (0 if
        /// unknown).
        pid: u32,
    },

    /// The file was deleted (unlinked) while this process waited on it,
    /// and no live peer is attached to it: nobody can ever open it again.
    #[error("{origin}: the file was deleted while in use; nobody else can open it")]
    Deleted {
        /// The file.
        origin: Origin,
    },

    /// A record or value is larger than the object can ever hold: a queue
    /// record over `max_record`, a log record over `max_record`, a
    /// snapshot value or capacity over 2^62 bytes.
    #[error("{origin}: a {what} of {len} bytes is too large: the largest is {max} bytes")]
    TooLarge {
        /// The queue, log or snapshot file.
        origin: Origin,
        /// What was too large: `queue record`, `log record`, `snapshot
        /// value`, `snapshot capacity`.
        what: &'static str,
        /// Requested length.
        len: u64,
        /// Largest record.
        max: u64,
    },

    /// Any other operating-system error.
    #[error("{origin}: {op}: {source}")]
    Io {
        /// The file or region.
        origin: Origin,
        /// What was being done, e.g. `mmap`, `msync`.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wraps an operating-system error from `op` on `origin`, picking the
    /// specific variant where there is one.
    pub(crate) fn io(origin: &Origin, op: &'static str, source: io::Error) -> Self {
        let origin = origin.clone();
        match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound { origin },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { origin, op, source },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { origin },
            _ if source.raw_os_error() == Some(libc::EISDIR) => Error::IsDirectory { origin },
            _ if source.raw_os_error() == Some(libc::ENOSPC) => Error::NoSpace {
                origin,
                len: 0,
                source,
            },
            _ => Error::Io { origin, op, source },
        }
    }
}

/// Who holds a lock that blocks lease slots, for [`Error::LeaseSlotsBlocked`].
fn blocker_name(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("process {pid} (a classic POSIX record lock)"),
        None => "another open file description (an OFD lock; its owner is not reported)".into(),
    }
}

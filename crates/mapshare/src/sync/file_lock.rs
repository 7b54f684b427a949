//! Byte-range locks on any file, interoperable with programs that use
//! `fcntl` record locks (`lockf(3)`, Python's `fcntl.lockf`) around their
//! `read()` and `write()` calls.
//!
//! These are OFD locks (see `sys::lock`): they conflict with classic POSIX
//! locks held by other processes, both ways, and belong to this
//! `FileLock`'s open file description. Two `FileLock`s in one process are
//! independent lockers, like two processes; two guards from the *same*
//! `FileLock` on overlapping ranges are not (the kernel merges them, and
//! releasing one releases the overlap), so take one guard per range per
//! `FileLock`.
//!
//! Blocking with a timeout polls with backoff (`F_OFD_SETLKW` has no
//! timeout), from 50 µs up to 5 ms between attempts.
//!
//! # `fork()`
//!
//! A forked child shares the open file description, so the parent's locks
//! are the child's too: an unlock in the child would release them, and a
//! lock call would convert or merge them. So a child never touches them:
//! a [`RangeGuard`] dropped in a forked child releases nothing, and
//! `lock`/`try_lock`/`lock_timeout` on an inherited `FileLock` fail with
//! [`Error::ForkedChild`]; the child opens its own `FileLock`.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Origin, Result};
use crate::sys;
pub use crate::sys::lock::{Holder, LockKind};

/// A handle for byte-range locks on one file.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mapshare::sync::{FileLock, LockKind};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("ledger");
/// std::fs::write(&path, [0u8; 4096])?;
/// let lock = FileLock::open(&path)?;
/// let guard = lock.lock(0..512, LockKind::Exclusive)?;
/// // ... read() and write() bytes 0..512 ...
/// drop(guard);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileLock {
    file: File,
    origin: Origin,
    /// The process that opened it, and `sys::fork_generation()` then.
    pid: u32,
    forks: u64,
}

/// A held range; dropping it releases the range (except in a forked child,
/// which must not release its parent's lock).
#[derive(Debug)]
pub struct RangeGuard<'a> {
    lock: &'a FileLock,
    range: Range<u64>,
    kind: LockKind,
}

impl RangeGuard<'_> {
    /// The locked range.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// Shared or exclusive.
    pub fn kind(&self) -> LockKind {
        self.kind
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        // Guards are only made where the generation matches (`lock` checks
        // it), so a difference means a forked child: the lock is the
        // parent's, not ours to release.
        if sys::fork_generation() != self.lock.forks {
            return;
        }
        let _ = sys::lock::unlock(
            &self.lock.file,
            self.range.start,
            self.range.end - self.range.start,
        );
    }
}

impl FileLock {
    /// Opens `path` for locking: read-write if permitted (both kinds of
    /// lock), else read-only (shared locks only; exclusive ones fail with
    /// `EBADF` as the kernel reports it).
    pub fn open(path: impl AsRef<Path>) -> Result<FileLock> {
        let path = path.as_ref();
        let origin = Origin::path(path);
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                File::open(path).map_err(|e| Error::io(&origin, "open for locking", e))?
            }
            Err(e) => return Err(Error::io(&origin, "open for locking", e)),
        };
        if file
            .metadata()
            .map_err(|e| Error::io(&origin, "fstat", e))?
            .is_dir()
        {
            return Err(Error::IsDirectory { origin });
        }
        sys::watch_forks();
        Ok(FileLock {
            file,
            origin,
            pid: sys::pid(),
            forks: sys::fork_generation(),
        })
    }

    /// Fails in a forked child of the process that opened this `FileLock`:
    /// its locks are the parent's.
    #[inline]
    fn check_owner(&self) -> Result<()> {
        if sys::fork_generation() == self.forks {
            return Ok(());
        }
        Err(Error::ForkedChild {
            origin: self.origin.clone(),
            owner: self.pid,
            pid: sys::pid(),
        })
    }

    fn check(&self, range: &Range<u64>) -> Result<u64> {
        if range.end <= range.start || range.end > i64::MAX as u64 {
            return Err(Error::Overflow {
                origin: self.origin.clone(),
                offset: range.start,
                len: range.end.saturating_sub(range.start),
            });
        }
        Ok(range.end - range.start)
    }

    fn guard(&self, range: Range<u64>, kind: LockKind) -> RangeGuard<'_> {
        RangeGuard {
            lock: self,
            range,
            kind,
        }
    }

    /// Takes the lock on `range` if no one holds a conflicting one.
    /// Fails with [`Error::ForkedChild`] in a forked child (see the module
    /// docs).
    pub fn try_lock(&self, range: Range<u64>, kind: LockKind) -> Result<Option<RangeGuard<'_>>> {
        let len = self.check(&range)?;
        self.check_owner()?;
        let got = sys::lock::try_lock(&self.file, kind, range.start, len)
            .map_err(|e| Error::io(&self.origin, "lock range", e))?;
        Ok(got.then(|| self.guard(range, kind)))
    }

    /// Takes the lock on `range`, sleeping until it is free.
    /// Fails with [`Error::ForkedChild`] in a forked child.
    pub fn lock(&self, range: Range<u64>, kind: LockKind) -> Result<RangeGuard<'_>> {
        let len = self.check(&range)?;
        self.check_owner()?;
        sys::lock::lock(&self.file, kind, range.start, len)
            .map_err(|e| Error::io(&self.origin, "lock range", e))?;
        Ok(self.guard(range, kind))
    }

    /// Takes the lock on `range`, waiting at most `timeout`. Fails with
    /// [`Error::ForkedChild`] in a forked child.
    pub fn lock_timeout(
        &self,
        range: Range<u64>,
        kind: LockKind,
        timeout: Duration,
    ) -> Result<RangeGuard<'_>> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            if let Some(g) = self.try_lock(range.clone(), kind)? {
                return Ok(g);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::Timeout {
                    origin: self.origin.clone(),
                    what: "waiting for a byte-range lock",
                    waited,
                });
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Who holds a lock that conflicts with taking `kind` on `range`
    /// (another process's classic lock reports its PID).
    pub fn holder(&self, range: Range<u64>, kind: LockKind) -> Result<Option<Holder>> {
        let len = self.check(&range)?;
        sys::lock::holder(&self.file, kind, range.start, len)
            .map_err(|e| Error::io(&self.origin, "query lock", e))
    }
}

//! Byte-range locks owned by an open file description (OFD locks).
//!
//! `fcntl(2)` with `F_OFD_SETLK`, `F_OFD_SETLKW` and `F_OFD_GETLK`. OFD
//! locks conflict with classic POSIX record locks (`F_SETLK`, `lockf(3)`)
//! taken by other programs on the same bytes, so they interoperate with
//! `read()`/`write()` users who lock. Unlike classic locks they belong to
//! the open file description, not the process: closing one unrelated
//! descriptor does not drop them, threads do not share them by accident,
//! and the kernel releases them when the last descriptor of the description
//! closes, including when the process dies however it dies.
//!
//! A `fork()`ed child shares its parent's open file descriptions and hence
//! their OFD locks; callers that hand out identity through a lock must
//! account for that.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Shared (read) or exclusive (write) lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Many holders at once; conflicts with `Exclusive`.
    Shared,
    /// One holder; conflicts with everything.
    Exclusive,
}

/// Who holds a conflicting lock, as `F_OFD_GETLK` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// The holder's kind of lock.
    pub kind: LockKind,
    /// `Some(pid)` for a classic POSIX lock; `None` for an OFD lock, whose
    /// owner the kernel reports as -1.
    pub pid: Option<u32>,
    /// First byte of the conflicting lock.
    pub start: u64,
    /// Its length; 0 means "to the end of the file and beyond".
    pub len: u64,
}

fn flock(kind: libc::c_short, start: u64, len: u64) -> io::Result<libc::flock> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "lock range exceeds i64");
    // SAFETY: `flock` is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = i64::try_from(start).map_err(|_| too_big())?;
    fl.l_len = i64::try_from(len).map_err(|_| too_big())?;
    fl.l_pid = 0; // must be 0 for OFD commands
    Ok(fl)
}

fn raw_kind(kind: LockKind) -> libc::c_short {
    match kind {
        LockKind::Shared => libc::F_RDLCK as libc::c_short,
        LockKind::Exclusive => libc::F_WRLCK as libc::c_short,
    }
}

fn fcntl_lock(file: &File, cmd: libc::c_int, fl: &mut libc::flock) -> io::Result<()> {
    loop {
        // SAFETY: the descriptor is open for the lifetime of `file`, and `fl`
        // is a valid, initialized `struct flock` the kernel may write to.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, fl as *mut libc::flock) };
        if rc != -1 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Tries to take a lock on `[start, start + len)` (`len == 0`: to infinity)
/// without waiting. `Ok(false)` if another description holds a conflicting
/// lock. Taking a lock over a range this description already holds converts
/// it (shared to exclusive or back) atomically.
pub fn try_lock(file: &File, kind: LockKind, start: u64, len: u64) -> io::Result<bool> {
    let mut fl = flock(raw_kind(kind), start, len)?;
    match fcntl_lock(file, libc::F_OFD_SETLK, &mut fl) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes a lock on `[start, start + len)`, sleeping until it is free
/// (`F_OFD_SETLKW`). The kernel reports `EDEADLK` for some deadlocks.
pub fn lock(file: &File, kind: LockKind, start: u64, len: u64) -> io::Result<()> {
    let mut fl = flock(raw_kind(kind), start, len)?;
    fcntl_lock(file, libc::F_OFD_SETLKW, &mut fl)
}

/// Releases this description's locks on `[start, start + len)`.
pub fn unlock(file: &File, start: u64, len: u64) -> io::Result<()> {
    let mut fl = flock(libc::F_UNLCK as libc::c_short, start, len)?;
    fcntl_lock(file, libc::F_OFD_SETLK, &mut fl)
}

/// Who, if anyone, holds a lock that conflicts with taking `kind` on
/// `[start, start + len)` through `file` (`F_OFD_GETLK`). Locks held through
/// `file`'s own description never conflict and are not reported.
pub fn holder(file: &File, kind: LockKind, start: u64, len: u64) -> io::Result<Option<Holder>> {
    let mut fl = flock(raw_kind(kind), start, len)?;
    fcntl_lock(file, libc::F_OFD_GETLK, &mut fl)?;
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    let kind = if fl.l_type == libc::F_WRLCK as libc::c_short {
        LockKind::Exclusive
    } else {
        LockKind::Shared
    };
    Ok(Some(Holder {
        kind,
        pid: u32::try_from(fl.l_pid).ok().filter(|&p| p > 0),
        start: u64::try_from(fl.l_start).unwrap_or(0),
        len: u64::try_from(fl.l_len).unwrap_or(0),
    }))
}

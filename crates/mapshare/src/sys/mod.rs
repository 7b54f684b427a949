//! The only place that calls the operating system directly.
//!
//! Every function here is a safe wrapper around one system call (or a small,
//! fixed sequence of them) with one `SAFETY` line saying why the raw call is
//! sound. Nothing above this module uses `libc` or `rustix` for system calls.
//! This module owns no policy: it does not retry, validate shared memory or
//! decide what an error means; the layers above do.
//!
//! `rustix` is preferred; `libc` is used where rustix has no wrapper
//! (`mincore`, byte-range OFD locks, `sigaction` for the `SIGBUS` handler
//! in `sigbus`).

pub mod clock;
pub mod futex;
pub mod lock;
pub(crate) mod mem;
pub mod membarrier;
pub(crate) mod open;
pub mod proc;
pub(crate) mod sigbus;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// The system page size in bytes (`sysconf(_SC_PAGESIZE)`, from the aux vector).
pub fn page_size() -> usize {
    rustix::param::page_size()
}

/// Reserves `[offset, offset + len)` of `file` on disk and extends the file
/// if that range ends past its size (`fallocate(2)` with mode 0).
///
/// After this returns, writes through a mapping into the range cannot fail
/// for lack of space: a full disk is `ENOSPC` here, not `SIGBUS` later.
/// File systems without `fallocate` (some network file systems) return
/// `EOPNOTSUPP`; callers decide whether to fall back.
pub fn reserve(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), offset, len)
        .map_err(io::Error::from)
}

/// Asks the kernel to drop clean cached pages of `[offset, offset + len)` of
/// `file` (`posix_fadvise(POSIX_FADV_DONTNEED)`); `len == 0` means "to the end".
pub fn drop_cache(file: &File, offset: u64, len: u64) -> io::Result<()> {
    rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    )
    .map_err(io::Error::from)
}

/// Creates an anonymous memory file (`memfd_create(2)`) that can be sealed.
/// The descriptor is close-on-exec; see [`inheritable`] to pass it to a child.
pub fn memfd(name: &str) -> io::Result<OwnedFd> {
    use rustix::fs::MemfdFlags;
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(io::Error::from)
}

/// Forbids shrinking the memfd behind `fd` for as long as it exists
/// (`fcntl(F_ADD_SEALS, F_SEAL_SHRINK)`). Growing stays allowed.
pub fn seal_against_shrink(fd: impl AsFd) -> io::Result<()> {
    rustix::fs::fcntl_add_seals(fd, rustix::fs::SealFlags::SHRINK).map_err(io::Error::from)
}

/// Whether the memfd behind `fd` is sealed against shrinking (`F_GET_SEALS`).
pub fn is_sealed_against_shrink(fd: impl AsFd) -> io::Result<bool> {
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(io::Error::from)?;
    Ok(seals.contains(rustix::fs::SealFlags::SHRINK))
}

/// Sets or clears close-on-exec on `fd` (`fcntl(F_SETFD)`).
///
/// This is async-signal-safe, so it may run in a `pre_exec` hook between
/// `fork` and `exec` to let one descriptor through to a child.
pub fn inheritable(fd: impl AsFd, inherit: bool) -> io::Result<()> {
    let flags = if inherit {
        rustix::io::FdFlags::empty()
    } else {
        rustix::io::FdFlags::CLOEXEC
    };
    rustix::io::fcntl_setfd(fd, flags).map_err(io::Error::from)
}

/// The calling process's id (`getpid(2)`).
pub fn pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Whether a process with this id exists (`kill(pid, 0)`); `EPERM` counts as
/// existing. PIDs are reused: use this only as a hint, never as proof.
pub fn process_exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match rustix::process::Pid::from_raw(raw) {
        Some(p) => match rustix::process::test_kill_process(p) {
            Ok(()) => true,
            Err(e) => e == rustix::io::Errno::PERM,
        },
        None => false,
    }
}

/// Pins the calling thread to CPU `cpu` (`sched_setaffinity(2)`), for
/// benchmarks that put the two sides of a hand-off on different cores,
/// and for a log writer's pretoucher. `InvalidInput` for a number past
/// what a CPU set holds; `EINVAL` from the kernel for a CPU this thread
/// may not run on.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= rustix::thread::CpuSet::MAX_CPU {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "CPU {cpu} is past the {} a CPU set holds",
                rustix::thread::CpuSet::MAX_CPU
            ),
        ));
    }
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(io::Error::from)
}

/// Bytes of RAM and swap the machine has (`sysinfo(2)`): the most any
/// memfd can ever hold. `u64::MAX` if the kernel cannot be asked.
pub fn memory_and_swap() -> u64 {
    // SAFETY: `sysinfo` is plain integers, for which all zeros is a
    // valid value.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable `sysinfo` for the call.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return u64::MAX;
    }
    let unit = u64::from(info.mem_unit.max(1));
    (info.totalram as u64)
        .saturating_add(info.totalswap as u64)
        .saturating_mul(unit)
}

/// CPUs online, whatever this process's affinity (`sysconf`): a child
/// inherits its parent's pin, so its affinity mask cannot tell how many
/// CPUs there are to spread processes over.
pub fn cpus_online() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// CPUs this process may run on (`sched_getaffinity(2)`).
pub fn cpus_available() -> usize {
    rustix::thread::sched_getaffinity(None)
        .map(|s| s.count() as usize)
        .unwrap_or(1)
}

static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static WATCH_FORKS: std::sync::Once = std::sync::Once::new();

extern "C" fn count_fork() {
    // Runs in the child right after fork(): an atomic add is
    // async-signal-safe.
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Starts counting forks of this process (`pthread_atfork(3)` with a child
/// handler that bumps [`fork_generation`]). Idempotent; call it before
/// the first [`fork_generation`] whose answer matters.
pub fn watch_forks() {
    WATCH_FORKS.call_once(|| {
        // SAFETY: the handler is a plain `extern "C" fn` that only does an
        // atomic add; registering it has no other precondition.
        unsafe {
            libc::pthread_atfork(None, None, Some(count_fork));
        }
    });
}

/// How many times this process's ancestry forked since [`watch_forks`]
/// was first called. A value that differs from one read earlier means
/// "this is a forked child of whoever read it", at the cost of one relaxed
/// load instead of a `getpid` system call.
#[inline]
pub fn fork_generation() -> u64 {
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

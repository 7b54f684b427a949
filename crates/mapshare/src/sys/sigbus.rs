//! No SIGBUS, ever: a process-wide `SIGBUS` handler that turns a vanished
//! page of a mapshare mapping into a zero page and a recorded event.
//!
//! # Why
//!
//! Touching a page of a `MAP_SHARED` (or not yet copied `MAP_PRIVATE`) file
//! mapping that lies past the file's end raises `SIGBUS`, whose default
//! action kills the process. mapshare keeps its own users from shrinking a
//! mapped file (the size guard lock, sealed memfds), but a program that
//! ignores all that (`truncate -s 0 FILE`) can still shrink it at any
//! moment, between any check and any access. Only the fault itself is
//! reliable, so mapshare handles the fault.
//!
//! # Design
//!
//! - **Registry.** A fixed array of [`SLOTS`] entries in static memory, one
//!   per live file mapping of this process. An entry holds the mapping's
//!   start and length, a fault counter, the lowest faulting address and an
//!   in-flight counter, all atomics. The handler reads it without locks and
//!   without allocating; normal code claims and frees entries with atomic
//!   compare-and-swap. Entries are never freed memory, so a stale read can
//!   at worst see another mapping's numbers, never dangling memory.
//! - **Handler.** On `SIGBUS` with `si_code == BUS_ADRERR` at an address
//!   inside a registered mapping, the handler maps one private, zero-filled
//!   anonymous page over the faulting page (`mmap(MAP_FIXED | MAP_PRIVATE |
//!   MAP_ANONYMOUS)`, a raw system call, async-signal-safe), bumps the
//!   entry's fault counter, records the address, and returns. The faulting
//!   instruction runs again and completes against the zero page.
//! - **Reporting.** The library checks the entry's counter (one relaxed
//!   load) after every copy out of or into the mapping
//!   (`Region::check_faults`) and reports [`Error::Truncated`] with the
//!   old and the current size before it returns any data. The zero pages
//!   stay until the mapping is remapped (`Region::refresh`) or dropped.
//! - **Unregistering.** Before a mapping is unmapped, its entry's start is
//!   cleared (SeqCst) and the remover waits until the entry's in-flight
//!   counter is zero. The handler raises that counter (SeqCst) *before* it
//!   reads the start. So either the handler sees the cleared start and
//!   leaves the address alone, or the remover waits until the handler's
//!   `mmap` is done: the handler never maps a zero page over memory that
//!   was unmapped and reused for something else.
//!
//! # Chaining
//!
//! The handler is installed once, when the first file mapping registers,
//! with `SA_SIGINFO | SA_ONSTACK | SA_RESTART` (no `SA_NODEFER`: `SIGBUS`
//! stays blocked while it runs). The disposition it replaced is kept. A `SIGBUS`
//! that is not a vanished page of a registered mapping goes to it:
//!
//! - a previous `SA_SIGINFO` handler is called with the same arguments;
//! - a previous plain handler is called with the signal number;
//! - a previous `SIG_IGN` keeps ignoring a `SIGBUS` sent by a process
//!   (`kill`, `tgkill`, `sigqueue`: `si_code <= 0`): the handler returns;
//! - a previous `SIG_DFL`, or `SIG_IGN` for a fault (ignoring a fault is
//!   impossible: the kernel kills anyway), is restored as `SIG_DFL`, and the
//!   handler returns: a hardware fault repeats and kills the process as it
//!   would have without mapshare; a `SIGBUS` sent by `kill` is raised again
//!   and kills on return.
//!
//! Rust's standard library installs a `SIGBUS` handler of its own (for
//! stack overflow on some targets); it is chained like any other.
//!
//! # Limits
//!
//! - **Writes into a zero page are lost.** They land in private memory,
//!   never in the file; reads see zeros (or what this process wrote to the
//!   zero page). The data of a truncated file is gone anyway; what
//!   mapshare promises is no crash and a [`Error::Truncated`] report.
//! - **Several threads faulting on the same page** each map a zero page;
//!   the later one replaces the earlier, so a write another thread made to
//!   the first zero page may vanish. Both accesses complete; both see the
//!   counter.
//! - **Other threads** see the counter through a relaxed load: exact for
//!   the thread that faulted (the handler ran on it). A thread that reads a
//!   zero page another thread installed does not fault itself; the handler
//!   raises the counter (SeqCst) *before* its `mmap` system call installs
//!   the page, so such a reader finds it raised on the hardware Linux runs
//!   on (the system call orders the store before the page becomes
//!   visible), though Rust's memory model has no words for a page-table
//!   change.
//! - **A mapping unregistered while a fault on it is in flight** makes the
//!   remover wait for that handler (a few microseconds). A fault that
//!   starts after the entry was cleared is not ours: it is chained, and
//!   kills as before. Safe code cannot get there: a `Region` is unmapped
//!   only when nothing borrows it.
//! - **The registry is finite.** [`SLOTS`] mappings at once; one more is
//!   refused with an error, never mapped unprotected.
//! - **Another library that installs its own `SIGBUS` handler later** (a
//!   JVM, a sanitizer) takes precedence; whether it chains back to us is up
//!   to it.
//! - The handler is not a fix for other causes of `SIGBUS` in mapshare
//!   mappings (a disk full on a file system without `fallocate`, an I/O
//!   error): those fault the same way and are handled and reported the
//!   same way; [`Error::Truncated`] then names a size that did not change.
//!
//! [`Error::Truncated`]: crate::Error::Truncated

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

/// How many mappings the registry can hold at once.
pub const SLOTS: usize = 4096;

/// One registered mapping. All fields are atomics so that the handler can
/// read them at any moment.
struct Entry {
    /// Owned by a `Registration` (claimed with a CAS).
    claimed: AtomicBool,
    /// First byte of the mapping; 0 while no mapping is registered.
    start: AtomicUsize,
    /// Bytes mapped; stable while `start != 0`.
    len: AtomicUsize,
    /// Handlers inside this entry right now.
    in_flight: AtomicU32,
    /// Pages the handler replaced since registration.
    faults: AtomicU64,
    /// Lowest faulting address since registration (`usize::MAX`: none).
    first_fault: AtomicUsize,
}

impl Entry {
    const fn new() -> Entry {
        Entry {
            claimed: AtomicBool::new(false),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            in_flight: AtomicU32::new(0),
            faults: AtomicU64::new(0),
            first_fault: AtomicUsize::new(usize::MAX),
        }
    }
}

static REGISTRY: [Entry; SLOTS] = [const { Entry::new() }; SLOTS];
/// One past the highest entry ever claimed: the handler scans `..HIGH`.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// The page size, read before the handler is installed (the handler
/// itself calls nothing that could allocate or lock).
static PAGE: AtomicUsize = AtomicUsize::new(0);

/// The disposition our handler replaced. Written once, before the handler
/// is installed; read-only afterwards.
struct Previous(UnsafeCell<MaybeUninit<libc::sigaction>>);
// SAFETY: written exactly once inside `INSTALL.call_once`, before
// `PREVIOUS_SET` is stored with Release; read only after an Acquire load of
// `PREVIOUS_SET` sees `true`. No write ever races a read.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new(MaybeUninit::uninit()));
static PREVIOUS_SET: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
static INSTALL_ERROR: AtomicU32 = AtomicU32::new(0);

/// A claimed registry entry. Holding one means "this process may have a
/// mapping at `start..start + len` that the handler protects"; dropping it
/// unregisters (waiting for any handler in flight) and frees the entry.
#[derive(Debug)]
pub struct Registration {
    index: usize,
}

impl Registration {
    /// Claims an entry, installing the handler on first use. The entry
    /// protects nothing until [`Registration::set`].
    pub fn new() -> io::Result<Registration> {
        install()?;
        for (index, e) in REGISTRY.iter().enumerate() {
            if e.claimed
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                HIGH.fetch_max(index + 1, Ordering::SeqCst);
                return Ok(Registration { index });
            }
        }
        Err(io::Error::other(format!(
            "more than {SLOTS} file mappings at once in this process (SIGBUS registry full)"
        )))
    }

    fn entry(&self) -> &'static Entry {
        &REGISTRY[self.index]
    }

    /// Protects the mapping `[start, start + len)` and resets the fault
    /// record. Any earlier range must have been cleared with
    /// [`Registration::clear`]. A null `start` protects nothing (and still
    /// resets the record).
    pub fn set(&self, start: *const u8, len: usize) {
        let e = self.entry();
        e.len.store(len, Ordering::SeqCst);
        e.faults.store(0, Ordering::SeqCst);
        e.first_fault.store(usize::MAX, Ordering::SeqCst);
        // Publishing `start` last makes `len` valid for any handler that
        // sees it.
        e.start.store(start as usize, Ordering::SeqCst);
    }

    /// Stops protecting the current range and waits until no handler is
    /// working on it. Call before unmapping it. The fault record stays
    /// readable until the next [`Registration::set`].
    pub fn clear(&self) {
        let e = self.entry();
        e.start.store(0, Ordering::SeqCst);
        // Dekker with the handler: it raises `in_flight` before it loads
        // `start` (both SeqCst). Either it saw 0, or we see it in flight.
        while e.in_flight.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
            std::thread::yield_now();
        }
    }

    /// Pages replaced by zero pages since the last [`Registration::set`].
    /// One relaxed load: the handler runs on the faulting thread, so the
    /// thread that made the access sees its own fault here (callers put a
    /// `compiler_fence` between the access and this load).
    #[inline]
    pub fn faults(&self) -> u64 {
        self.entry().faults.load(Ordering::Relaxed)
    }

    /// The lowest address that faulted since the last set, if any.
    pub fn first_fault(&self) -> Option<usize> {
        match self.entry().first_fault.load(Ordering::Relaxed) {
            usize::MAX => None,
            a => Some(a),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.clear();
        self.entry().claimed.store(false, Ordering::Release);
    }
}

/// Installs the handler once per process.
fn install() -> io::Result<()> {
    INSTALL.call_once(|| {
        PAGE.store(super::page_size(), Ordering::SeqCst);
        let mut old = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: `sigaction` with a null new action only reads the current
        // disposition into `old`, which is valid writable memory.
        let rc = unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), old.as_mut_ptr()) };
        if rc != 0 {
            INSTALL_ERROR.store(
                io::Error::last_os_error().raw_os_error().unwrap_or(-1) as u32,
                Ordering::SeqCst,
            );
            return;
        }
        // SAFETY: only this closure writes `PREVIOUS`, once, before the
        // handler that reads it exists and before `PREVIOUS_SET`.
        unsafe { (*PREVIOUS.0.get()).write(old.assume_init()) };
        PREVIOUS_SET.store(true, Ordering::Release);
        // SAFETY: a zeroed `sigaction` is a valid starting value; the mask
        // is then emptied with `sigemptyset` on memory we own.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            on_sigbus;
        act.sa_sigaction = handler as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        // SAFETY: `act.sa_mask` is a valid `sigset_t` we own.
        unsafe { libc::sigemptyset(&mut act.sa_mask) };
        // SAFETY: `act` is fully initialized and names a handler with the
        // `SA_SIGINFO` signature; the old disposition is not needed again
        // (it was saved above).
        let rc = unsafe { libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut()) };
        if rc != 0 {
            INSTALL_ERROR.store(
                io::Error::last_os_error().raw_os_error().unwrap_or(-1) as u32,
                Ordering::SeqCst,
            );
        }
    });
    match INSTALL_ERROR.load(Ordering::SeqCst) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// The signal handler. Async-signal-safe: atomics, one raw `mmap` system
/// call, and (for chained faults) `sigaction`/`raise`; no locks, no
/// allocation, `errno` preserved.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO`
    // handler; `__errno_location` returns this thread's errno.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: as above, `info` is valid for the duration of the handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let handled = code == libc::BUS_ADRERR && replace_page(addr);
    if !handled {
        // SAFETY: `sig`, `info`, `ctx` are the ones the kernel gave us.
        unsafe { chain(sig, info, ctx) };
    }
    // SAFETY: restoring this thread's errno.
    unsafe { *libc::__errno_location() = errno };
}

/// If `addr` lies in a registered mapping, maps a zero page over its page,
/// records the fault and returns true.
fn replace_page(addr: usize) -> bool {
    let page = PAGE.load(Ordering::Relaxed);
    if page == 0 {
        return false;
    }
    let high = HIGH.load(Ordering::SeqCst).min(SLOTS);
    for e in &REGISTRY[..high] {
        e.in_flight.fetch_add(1, Ordering::SeqCst);
        let start = e.start.load(Ordering::SeqCst);
        let len = e.len.load(Ordering::SeqCst);
        let inside = start != 0 && addr >= start && addr - start < len;
        if inside {
            let page_addr = addr & !(page - 1);
            // Record first, map second: a thread that reads the zero page
            // without faulting itself (another thread installed it) must
            // already find the counter raised when it checks.
            e.first_fault.fetch_min(addr, Ordering::SeqCst);
            e.faults.fetch_add(1, Ordering::SeqCst);
            // SAFETY: the page lies (at least partly) in a mapping that
            // mapshare owns and that cannot be unmapped while we are
            // in flight (`Registration::clear` waits for us). Replacing it
            // with a private zero page changes what the mapping's bytes
            // read as, which mapshare never exposes as `&[u8]` to safe code
            // without then reporting the fault. rustix issues the raw
            // system call: no libc state, async-signal-safe.
            let mapped = unsafe {
                rustix::mm::mmap_anonymous(
                    page_addr as *mut libc::c_void,
                    page,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED,
                )
            };
            e.in_flight.fetch_sub(1, Ordering::SeqCst);
            return mapped.is_ok();
        }
        e.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    false
}

/// Hands a `SIGBUS` that is not ours to the disposition we replaced.
///
/// # Safety
///
/// Only from `on_sigbus`, with the arguments the kernel passed it.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let prev = if PREVIOUS_SET.load(Ordering::Acquire) {
        // SAFETY: `PREVIOUS` was written before `PREVIOUS_SET` (Release,
        // paired with the Acquire above) and is never written again.
        Some(unsafe { (*PREVIOUS.0.get()).assume_init_ref() })
    } else {
        None
    };
    let handler = prev.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
        // SAFETY: the previous owner installed this address as its handler,
        // with the signature its flags say; we call it as the kernel would.
        unsafe {
            if prev.is_some_and(|p| p.sa_flags & libc::SA_SIGINFO != 0) {
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(handler);
                f(sig, info, ctx);
            } else {
                let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
                f(sig);
            }
        }
        return;
    }
    // SAFETY: `info` is the kernel's, valid while the handler runs.
    let sent = unsafe { (*info).si_code } <= 0;
    if handler == libc::SIG_IGN && sent {
        // A signal sent by a process (kill, tgkill, sigqueue: si_code <= 0)
        // to a program that ignores SIGBUS: ignored, as without us.
        return;
    }
    // Default, or ignored for a fault (which the kernel does not honour:
    // it kills anyway): restore the default action. A hardware fault
    // repeats on return and kills; a signal sent with kill() is raised
    // again and kills once the handler returns (SIGBUS is blocked while
    // we run).
    // SAFETY: a zeroed `sigaction` with `SIG_DFL` is a valid disposition;
    // sigaction and raise are async-signal-safe.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
        if sent {
            libc::raise(libc::SIGBUS);
        }
    }
}

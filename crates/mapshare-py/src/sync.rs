//! `SharedFile`, and the process-shared `Mutex`, `Semaphore` and `Event`
//! placed in it; byte-range `FileLock`s.
//!
//! Rust's guards borrow the file they lock; a Python object must own
//! what it uses. So each binding keeps the file in an `Arc` and its guard
//! in the same struct, declared first so that it is dropped (unlocks)
//! before the `Arc` lets go of the file.

use std::ffi::c_int;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mapshare::sync::{
    Event, FileLock, LockError, LockKind, Mutex, MutexGuard, RangeGuard, Semaphore, Ticket,
};
use mapshare::{Error, Fingerprint, Kind, SharedFile, Spec};
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::errors::{to_py, IntoPyResult};
use crate::util::{self, blocking, slice_timeout};

/// Bytes a mutex's own words take before its data.
const MUTEX_WORDS: u64 = 16;

/// What was placed where in one `SharedFile`, so that two objects never
/// overlap (the Rust types' safety contract).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placed {
    Mutex { size: u64 },
    Semaphore,
    Event,
}

impl Placed {
    fn len(self) -> u64 {
        match self {
            Placed::Mutex { size } => MUTEX_WORDS + size,
            Placed::Semaphore => mapshare::sync::SEMAPHORE_LEN,
            Placed::Event => mapshare::sync::EVENT_LEN,
        }
    }
}

/// A mapshare file holding raw bytes (kind `Raw`) or one typed value
/// (kind `Value`, written by Rust's `Shared<T>`), attached through this
/// process's lease: locks placed in it are robust when a holder dies.
#[pyclass(module = "mapshare", name = "SharedFile")]
pub struct PySharedFile {
    file: Arc<SharedFile>,
    placed: std::sync::Mutex<Vec<(u64, Placed)>>,
}

impl PySharedFile {
    /// Reserves `[offset, offset + kind.len())` of the object for `kind`
    /// and returns the absolute offset in the file. The same object at the
    /// same offset may be asked for again.
    fn place(&self, offset: u64, kind: Placed) -> PyResult<u64> {
        let len = kind.len();
        let object_len = self.file.object_len();
        let end = offset.checked_add(len).filter(|&e| e <= object_len);
        if end.is_none() {
            return Err(to_py(Error::OutOfBounds {
                origin: self.file.raw_origin(),
                offset,
                len,
                region_len: object_len,
            }));
        }
        if !offset.is_multiple_of(8) {
            return Err(PyValueError::new_err(format!(
                "offset {offset} is not a multiple of 8"
            )));
        }
        let mut placed = self.placed.lock().unwrap_or_else(|p| p.into_inner());
        for &(at, other) in placed.iter() {
            if at == offset && other == kind {
                return Ok(self.file.object_offset() + offset);
            }
            if at < offset + len && offset < at + other.len() {
                return Err(PyValueError::new_err(format!(
                    "bytes {offset}..{} overlap the {other:?} at {at}..{}",
                    offset + len,
                    at + other.len()
                )));
            }
        }
        placed.push((offset, kind));
        Ok(self.file.object_offset() + offset)
    }
}

/// Origin of a shared file, for errors raised here.
trait RawOrigin {
    fn raw_origin(&self) -> mapshare::Origin;
}

impl RawOrigin for SharedFile {
    fn raw_origin(&self) -> mapshare::Origin {
        // SAFETY: only the origin (a path) is read from the region.
        unsafe { self.raw_region() }.origin().clone()
    }
}

#[pymethods]
impl PySharedFile {
    /// Opens the mapshare file at `path`, creating it with an object of
    /// `size` zero bytes if it does not exist. `type_name` is stored in
    /// the header and checked by every later opener (with `size`).
    #[staticmethod]
    #[pyo3(signature = (path, size, type_name = "", mode = 0o600, lease_slots = 64))]
    fn open_or_create(
        py: Python<'_>,
        path: PathBuf,
        size: u64,
        type_name: &str,
        mode: u32,
        lease_slots: u32,
    ) -> PyResult<PySharedFile> {
        let fp = if type_name.is_empty() {
            Fingerprint::untyped()
        } else {
            Fingerprint::new(type_name, size, 8)
        };
        let mut spec = Spec::new(Kind::Raw, fp, size);
        spec.mode = mode;
        spec.lease_slots = lease_slots;
        let file = util::opening(py, || {
            SharedFile::open_or_create(&path, &spec, |_, _| Ok(()))
        })?;
        Ok(Self::wrap(file))
    }

    /// Opens an existing mapshare file of kind `Raw` or `Value`.
    #[staticmethod]
    #[pyo3(signature = (path, timeout = 5.0))]
    fn open(py: Python<'_>, path: PathBuf, timeout: f64) -> PyResult<PySharedFile> {
        let timeout = util::timeout_arg(Some(timeout))?.unwrap_or(Duration::ZERO);
        let file = util::opening(py, || SharedFile::open_any(&path, timeout))?;
        let kind = file.header().kind;
        if !matches!(kind, Kind::Raw | Kind::Value) {
            return Err(to_py(Error::WrongKind {
                origin: file.raw_origin(),
                expected: "a raw area or a value".into(),
                found: format!("{kind:?}"),
            }));
        }
        Ok(Self::wrap(file))
    }

    /// Bytes of the object (where mutexes, semaphores and events go).
    #[getter]
    fn size(&self) -> u64 {
        self.file.object_len()
    }

    /// The file's path.
    #[getter]
    fn path(&self) -> String {
        self.file.raw_origin().as_path().display().to_string()
    }

    /// True if this call created the file.
    #[getter]
    fn created(&self) -> bool {
        self.file.created()
    }

    /// The robust mutex whose words are at `offset` of the object,
    /// protecting the `size` bytes after them (16 + `size` bytes in all).
    /// `offset` is a multiple of 8. The same layout as Rust's
    /// `sync::Mutex<T>` for a `T` of `size` bytes aligned to at most 16.
    #[pyo3(signature = (offset = 0, size = 0))]
    fn mutex(&self, offset: u64, size: u64) -> PyResult<PyMutex> {
        let at = self.place(offset, Placed::Mutex { size })?;
        let m = PyMutex {
            file: self.file.clone(),
            offset: at,
            size: size as usize,
            entered: Entered::default(),
            spare: std::sync::Mutex::new(None),
        };
        m.handle()?;
        Ok(m)
    }

    /// The counting semaphore at `offset` of the object (8 bytes).
    #[pyo3(signature = (offset, initial = None))]
    fn semaphore(&self, offset: u64, initial: Option<u32>) -> PyResult<PySemaphore> {
        let at = self.place(offset, Placed::Semaphore)?;
        let s = PySemaphore {
            file: self.file.clone(),
            offset: at,
        };
        let sem = s.handle()?;
        if let Some(n) = initial {
            sem.set_count(n);
        }
        Ok(s)
    }

    /// The event (a futex-backed notification word) at `offset` of the
    /// object (8 bytes).
    fn event(&self, offset: u64) -> PyResult<PyEvent> {
        let at = self.place(offset, Placed::Event)?;
        let e = PyEvent {
            file: self.file.clone(),
            offset: at,
        };
        e.handle()?;
        Ok(e)
    }

    fn __repr__(&self) -> String {
        format!(
            "<mapshare.SharedFile {} object={} bytes>",
            self.path(),
            self.file.object_len()
        )
    }
}

impl PySharedFile {
    fn wrap(file: SharedFile) -> PySharedFile {
        PySharedFile {
            file: Arc::new(file),
            placed: std::sync::Mutex::new(Vec::new()),
        }
    }
}

/// The file behind an `Arc`, for as long as the `Arc` is kept.
///
/// # Safety
///
/// The caller keeps a clone of `file` alive for as long as the returned
/// reference (or anything borrowed from it) is used, and drops those
/// borrows first.
unsafe fn pinned(file: &Arc<SharedFile>) -> &'static SharedFile {
    // SAFETY: an `Arc`'s value never moves; the caller keeps it alive.
    unsafe { &*Arc::as_ptr(file) }
}

/// A robust, process-shared mutex inside a `SharedFile`.
///
/// `with mutex as guard:` locks (waiting as long as it takes, with the
/// GIL released and Ctrl-C honoured) and unlocks at the end of the block;
/// `guard` exports the protected bytes as a writable buffer
/// (`memoryview(guard)`, `numpy.frombuffer(guard, dtype)`).
///
/// When a holder died, locking raises `OwnerDied` whose `guard` holds the
/// lock: repair the data, call `guard.mark_consistent()`, then unlock.
/// Threads of one process wait for each other; a thread that locks twice
/// deadlocks (Ctrl-C still interrupts it).
#[pyclass(module = "mapshare", name = "Mutex", frozen)]
pub struct PyMutex {
    file: Arc<SharedFile>,
    /// Absolute offset of the lock word in the file.
    offset: u64,
    /// Bytes of data after the mutex's words.
    size: usize,
    /// Guards handed out by `__enter__`, per thread.
    entered: Entered<PyGuard>,
    /// The guard object of the last `with` block, for the next one.
    spare: std::sync::Mutex<Option<Py<PyGuard>>>,
}

impl PyMutex {
    fn handle(&self) -> PyResult<Mutex<'static, ()>> {
        // SAFETY: `place` reserved these bytes for this mutex alone in
        // this process (Mutex::at's contract); the guard made from the
        // handle is stored in a `PyGuard` with a clone of `self.file`,
        // declared after it (dropped last).
        unsafe { Mutex::<()>::at(pinned(&self.file), self.offset) }.py()
    }

    fn guard(
        &self,
        py: Python<'_>,
        guard: MutexGuard<'static, ()>,
        recovering: bool,
    ) -> PyResult<Py<PyGuard>> {
        // The guard object of an earlier `with` block, if nobody else
        // kept it: refilled instead of allocating (the uncontended `with`
        // is a figure of its own; see docs/benchmarks.md).
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(g) = spare {
            if g.get_refcnt(py) == 1 {
                let this = g.get();
                *this.lock_held() = Some(Held(guard));
                this.recovering.store(recovering, Ordering::Release);
                this.forks.store(
                    mapshare::unstable::sys::fork_generation(),
                    Ordering::Release,
                );
                return Ok(g);
            }
        }
        // SAFETY: only the mapping's address is read.
        let base = unsafe { self.file.raw_region() }.as_ptr() as usize;
        Py::new(
            py,
            PyGuard {
                held: std::sync::Mutex::new(Some(Held(guard))),
                _file: self.file.clone(),
                data: base + self.offset as usize + MUTEX_WORDS as usize,
                size: self.size,
                recovering: AtomicBool::new(recovering),
                exports: AtomicUsize::new(0),
                forks: std::sync::atomic::AtomicU64::new(mapshare::unstable::sys::fork_generation()),
            },
        )
    }

    /// The Python result of a lock attempt.
    fn outcome(
        &self,
        py: Python<'_>,
        r: Result<MutexGuard<'static, ()>, LockError<MutexGuard<'static, ()>>>,
    ) -> PyResult<Option<Py<PyGuard>>> {
        let origin = || self.file.raw_origin();
        match r {
            Ok(g) => Ok(Some(self.guard(py, g, false)?)),
            Err(LockError::OwnerDied(g)) => {
                let guard = self.guard(py, g, true)?;
                let err = to_py(Error::OwnerDied { origin: origin() });
                err.value(py).setattr("guard", guard)?;
                Err(err)
            }
            Err(LockError::Poisoned(g)) => {
                let guard = self.guard(py, g, false)?;
                let err = to_py(Error::Poisoned { origin: origin() });
                err.value(py).setattr("guard", guard)?;
                Err(err)
            }
            Err(LockError::WouldBlock { .. }) => Ok(None),
            Err(LockError::Timeout { origin, waited }) => Err(to_py(Error::Timeout {
                origin,
                what: "waiting for the mutex",
                waited,
            })),
            Err(LockError::NotRecoverable { origin }) => {
                Err(to_py(Error::NotRecoverable { origin }))
            }
            Err(LockError::Failed(e)) => Err(to_py(e)),
        }
    }
}

/// A lock attempt's outcome carried out of a GIL-free slice.
type Attempt = Result<MutexGuard<'static, ()>, LockError<MutexGuard<'static, ()>>>;

#[pymethods]
impl PyMutex {
    /// Locks, waiting at most `timeout` seconds (None: as long as it
    /// takes). Returns the guard; raises `Timeout`, `OwnerDied` (with
    /// `.guard`), `Poisoned` (with `.guard`) or `NotRecoverable`.
    #[pyo3(signature = (timeout = None))]
    fn lock(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyGuard>> {
        let timeout = util::timeout_arg(timeout)?;
        let m = self.handle()?;
        // Uncontended: no GIL release.
        if let Some(g) = self.outcome(py, m.try_lock())? {
            return Ok(g);
        }
        let start = std::time::Instant::now();
        let got = blocking(py, timeout, |slice| -> mapshare::Result<Option<Attempt>> {
            match m.lock_timeout(slice) {
                Err(LockError::Timeout { .. }) => Ok(None),
                other => Ok(Some(other)),
            }
        })?;
        // Nothing within the timeout; or (cannot happen from a blocking
        // lock) a WouldBlock: both are a timed-out wait.
        let guard = match got {
            Some(r) => self.outcome(py, r)?,
            None => None,
        };
        guard.ok_or_else(|| {
            util::timed_out(
                &self.file.raw_origin(),
                "waiting for the mutex",
                start.elapsed(),
            )
        })
    }

    /// Locks if no live holder has it; None otherwise.
    fn try_lock(&self, py: Python<'_>) -> PyResult<Option<Py<PyGuard>>> {
        let m = self.handle()?;
        self.outcome(py, m.try_lock())
    }

    /// What the mutex is doing: `free`, `held by pid N`, `owner died...`.
    #[getter]
    fn state(&self) -> PyResult<String> {
        Ok(self.handle()?.state().py()?.to_string())
    }

    /// Bytes of protected data.
    #[getter]
    fn size(&self) -> usize {
        self.size
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyGuard>> {
        let g = self.lock(py, None)?;
        self.entered.push(py, g.clone_ref(py));
        Ok(g)
    }

    /// Unlocks the guard this thread's matching `__enter__` returned.
    fn __exit__(
        &self,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if let Some(g) = self.entered.pop() {
            g.get().unlock()?;
            *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(g);
        }
        Ok(false)
    }
}

/// Guards handed out by a `__enter__`, per thread, for the matching
/// `__exit__` (a `with` statement gives `__exit__` nothing to find them by).
pub struct Entered<G>(std::sync::Mutex<Vec<(usize, Py<G>)>>);

/// A number that tells this thread from the other live ones (the address
/// of a thread-local): cheaper than `thread::current().id()`, which
/// clones an `Arc`.
fn thread_key() -> usize {
    thread_local!(static KEY: u8 = const { 0 });
    KEY.with(|k| k as *const u8 as usize)
}

impl<G> Default for Entered<G> {
    fn default() -> Self {
        Entered(std::sync::Mutex::new(Vec::new()))
    }
}

impl<G> Entered<G> {
    fn push(&self, _py: Python<'_>, g: Py<G>) {
        let me = thread_key();
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((me, g));
    }

    /// This thread's latest guard; failing that, the latest of any
    /// thread: a `with` block in a generator or coroutine may be left on
    /// another thread than it was entered on.
    fn pop(&self) -> Option<Py<G>> {
        let me = thread_key();
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let i = v
            .iter()
            .rposition(|(t, _)| *t == me)
            .or_else(|| v.len().checked_sub(1))?;
        Some(v.remove(i).1)
    }
}

/// A held mutex's guard; it borrows the file its `PyGuard` keeps.
struct Held(MutexGuard<'static, ()>);

// SAFETY: the lock word stores this process's lease token, not a thread:
// any thread of the process may unlock it (the Rust guard is !Send only
// because its `T` could be !Send, and `()` is Send). The guard is reached
// only through the std mutex in `PyGuard`.
unsafe impl Send for Held {}

/// A locked mutex. Exports the protected bytes as a writable buffer
/// while it holds the lock; `unlock()` (or leaving its `with` block)
/// raises `BufferError` while views of them exist, and keeps the lock.
#[pyclass(module = "mapshare", name = "Guard", frozen)]
pub struct PyGuard {
    // Declared first: dropped (unlocking) before `_file`.
    held: std::sync::Mutex<Option<Held>>,
    /// The file the guard borrows.
    _file: Arc<SharedFile>,
    /// Address of the protected data.
    data: usize,
    size: usize,
    recovering: AtomicBool,
    exports: AtomicUsize,
    /// `fork_generation()` when locked: in a forked child the lock is the
    /// parent's, and the data is not ours to touch.
    forks: std::sync::atomic::AtomicU64,
}

impl PyGuard {
    fn lock_held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock is held through this guard, by this process (not a parent
    /// whose guard a forked child inherited).
    fn holds(&self) -> bool {
        self.lock_held().is_some()
            && self.forks.load(Ordering::Acquire) == mapshare::unstable::sys::fork_generation()
    }

    /// `ForkedChild` for a guard inherited through fork().
    fn check_fork(&self) -> PyResult<()> {
        if self.forks.load(Ordering::Acquire) != mapshare::unstable::sys::fork_generation() {
            return Err(to_py(Error::ForkedChild {
                origin: self._file.raw_origin(),
                owner: self._file.lease().pid(),
                pid: std::process::id(),
            }));
        }
        Ok(())
    }
}

#[pymethods]
impl PyGuard {
    /// Unlocks. Raises `BufferError` while buffer views of the data exist
    /// (the lock is kept then). Unlocking twice is allowed. A guard given
    /// with `OwnerDied` and not marked consistent leaves the mutex not
    /// recoverable.
    fn unlock(&self) -> PyResult<()> {
        let n = self.exports.load(Ordering::Acquire);
        if n > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot unlock: {n} buffer view(s) of the protected data still exist; release them first"
            )));
        }
        let held = self.lock_held().take();
        drop(held);
        Ok(())
    }

    /// Declares the data repaired after `OwnerDied` or `Poisoned`: the
    /// mutex is normal again.
    fn mark_consistent(&self) -> PyResult<()> {
        self.check_fork()?;
        match self.lock_held().as_mut() {
            Some(h) => {
                h.0.mark_consistent();
                self.recovering.store(false, Ordering::Release);
                Ok(())
            }
            None => Err(PyValueError::new_err("the guard is already unlocked")),
        }
    }

    /// True while the lock is held through this guard (False in a forked
    /// child: the lock is its parent's).
    #[getter]
    fn locked(&self) -> bool {
        self.holds()
    }

    /// True if this guard came with `OwnerDied` and the data was not yet
    /// marked consistent.
    #[getter]
    fn recovering(&self) -> bool {
        self.recovering.load(Ordering::Acquire)
    }

    /// A copy of the protected bytes.
    fn read<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        self.check_fork()?;
        let held = self.lock_held();
        if held.is_none() {
            return Err(PyValueError::new_err("the guard is already unlocked"));
        }
        // SAFETY: the lock is held (by this guard, `held` borrowed), so no
        // mapshare user writes these `size` bytes; they lie in the mapping
        // (Mutex::at and `place` checked them) which `Held` keeps mapped.
        let data = unsafe { std::slice::from_raw_parts(self.data as *const u8, self.size) };
        Ok(pyo3::types::PyBytes::new(py, data))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.unlock()?;
        Ok(false)
    }

    /// # Safety
    ///
    /// Called by CPython with a valid `view` (the buffer protocol).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        this.check_fork()?;
        if this.lock_held().is_none() {
            return Err(PyBufferError::new_err(
                "the guard is unlocked: its data is not ours to view",
            ));
        }
        let ptr = NonNull::new(this.data as *mut u8).unwrap_or(NonNull::dangling());
        // SAFETY: the data lies in the mapping that `Held` keeps alive;
        // `unlock` refuses while `exports` (counted below) is not zero.
        unsafe { util::export(view, slf.as_any(), ptr, this.size, false, flags)? };
        this.exports.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// # Safety
    ///
    /// Called by CPython once per successful `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A process-shared counting semaphore inside a `SharedFile`.
/// `with sem:` acquires and releases.
#[pyclass(module = "mapshare", name = "Semaphore")]
pub struct PySemaphore {
    file: Arc<SharedFile>,
    offset: u64,
}

impl PySemaphore {
    fn handle(&self) -> PyResult<Semaphore<'_>> {
        // SAFETY: `place` reserved these 8 bytes for this semaphore alone
        // in this process (Semaphore::at's contract).
        unsafe { Semaphore::at(self.file.raw_region(), self.offset) }.py()
    }
}

#[pymethods]
impl PySemaphore {
    /// Takes one unit: at once if one is free; else, if `blocking`, waits
    /// at most `timeout` seconds (None: as long as it takes). True if
    /// taken, False on timeout (as `threading.Semaphore.acquire`).
    #[pyo3(signature = (blocking = true, timeout = None))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = util::timeout_arg(timeout)?;
        let sem = self.handle()?;
        if sem.try_wait() {
            return Ok(true);
        }
        if !blocking {
            return Ok(false);
        }
        let got = util::blocking(py, timeout, |slice| slice_timeout(sem.wait_timeout(slice)))?;
        Ok(got.is_some())
    }

    /// Gives back `n` units, waking as many waiters.
    #[pyo3(signature = (n = 1))]
    fn release(&self, n: u32) -> PyResult<()> {
        self.handle()?.post_n(n).py()
    }

    /// Free units now.
    #[getter]
    fn value(&self) -> PyResult<u32> {
        Ok(self.handle()?.count())
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<()> {
        self.acquire(py, true, None)?;
        Ok(())
    }

    fn __exit__(
        &self,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.release(1)?;
        Ok(false)
    }
}

/// A process-shared event inside a `SharedFile`: waiters take a ticket
/// with `listen()`, check their condition, then `wait(ticket)`; a
/// notification after the ticket is never missed.
///
/// `with event:` runs the block and then notifies every waiter (change
/// the shared state inside the block).
#[pyclass(module = "mapshare", name = "Event")]
pub struct PyEvent {
    file: Arc<SharedFile>,
    offset: u64,
}

impl PyEvent {
    fn handle(&self) -> PyResult<Event<'_>> {
        // SAFETY: `place` reserved these 8 bytes for this event alone in
        // this process (Event::at's contract).
        unsafe { Event::at(self.file.raw_region(), self.offset) }.py()
    }
}

#[pymethods]
impl PyEvent {
    /// A ticket: notifications from now on end a `wait` on it.
    fn listen(&self) -> PyResult<u32> {
        Ok(self.handle()?.listen().0)
    }

    /// Waits for a notification after `ticket` was taken, at most
    /// `timeout` seconds (None: as long as it takes). False on timeout.
    #[pyo3(signature = (ticket, timeout = None))]
    fn wait(&self, py: Python<'_>, ticket: u32, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = util::timeout_arg(timeout)?;
        let ev = self.handle()?;
        let got = blocking(py, timeout, |slice| {
            slice_timeout(ev.wait(Ticket(ticket), slice))
        })?;
        Ok(got.is_some())
    }

    /// Waits until `predicate()` is true, at most `timeout` seconds.
    /// Returns the predicate's last value.
    #[pyo3(signature = (predicate, timeout = None))]
    fn wait_for(
        &self,
        py: Python<'_>,
        predicate: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let limit = util::timeout_arg(timeout)?;
        let deadline = limit.and_then(|t| std::time::Instant::now().checked_add(t));
        loop {
            let ticket = self.listen()?;
            if predicate.call0()?.is_truthy()? {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(false);
            }
            if !self.wait(py, ticket, left.map(|d| d.as_secs_f64()))? {
                return predicate.call0()?.is_truthy();
            }
        }
    }

    /// Wakes one waiter.
    fn notify_one(&self) -> PyResult<()> {
        self.handle()?.notify_one();
        Ok(())
    }

    /// Wakes every waiter.
    fn notify_all(&self) -> PyResult<()> {
        self.handle()?.notify_all();
        Ok(())
    }

    fn __enter__(&self) {}

    fn __exit__(
        &self,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.notify_all()?;
        Ok(false)
    }
}

/// Byte-range locks on any file (OFD `fcntl` locks): they interoperate
/// with other processes' `fcntl`/`lockf` locks, and with `read()`/
/// `write()` users that take them.
///
/// `with FileLock(path) as lock:` holds an exclusive lock on the whole
/// file for the block.
#[pyclass(module = "mapshare", name = "FileLock")]
pub struct PyFileLock {
    lock: Arc<FileLock>,
    path: PathBuf,
    /// Guards handed out by `__enter__`, per thread.
    entered: Entered<PyRangeGuard>,
}

/// The end of "the whole file" (and anything it grows to).
const WHOLE: u64 = i64::MAX as u64;

fn kind(shared: bool) -> LockKind {
    if shared {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    }
}

impl PyFileLock {
    fn wrap(&self, py: Python<'_>, g: RangeGuard<'static>) -> PyResult<Py<PyRangeGuard>> {
        Py::new(
            py,
            PyRangeGuard {
                held: std::sync::Mutex::new(Some(HeldRange {
                    guard: g,
                    _lock: self.lock.clone(),
                })),
            },
        )
    }

    fn pinned(&self) -> &'static FileLock {
        // SAFETY: every guard made from this reference is stored next to a
        // clone of `self.lock` and dropped first (`HeldRange`).
        unsafe { &*Arc::as_ptr(&self.lock) }
    }
}

#[pymethods]
impl PyFileLock {
    /// Opens `path` for locking (read-write if allowed, else read-only:
    /// then only shared locks can be taken).
    #[new]
    fn new(path: PathBuf) -> PyResult<PyFileLock> {
        Ok(PyFileLock {
            lock: Arc::new(FileLock::open(&path).py()?),
            path,
            entered: Entered::default(),
        })
    }

    /// Locks bytes `start..end` (default: the whole file), exclusive or
    /// `shared`, waiting at most `timeout` seconds (None: as long as it
    /// takes; Ctrl-C interrupts). Returns the guard (a context manager).
    #[pyo3(signature = (start = 0, end = None, shared = false, timeout = None))]
    fn lock(
        &self,
        py: Python<'_>,
        start: u64,
        end: Option<u64>,
        shared: bool,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyRangeGuard>> {
        let timeout = util::timeout_arg(timeout)?;
        let range = start..end.unwrap_or(WHOLE);
        let lock = self.pinned();
        let begun = std::time::Instant::now();
        let got = blocking(py, timeout, |slice| {
            slice_timeout(lock.lock_timeout(range.clone(), kind(shared), slice))
        })?;
        match got {
            Some(g) => self.wrap(py, g),
            None => Err(util::timed_out(
                &mapshare::Origin::path(&self.path),
                "waiting for a byte-range lock",
                begun.elapsed(),
            )),
        }
    }

    /// Locks `start..end` if nobody holds a conflicting lock; None
    /// otherwise.
    #[pyo3(signature = (start = 0, end = None, shared = false))]
    fn try_lock(
        &self,
        py: Python<'_>,
        start: u64,
        end: Option<u64>,
        shared: bool,
    ) -> PyResult<Option<Py<PyRangeGuard>>> {
        let range = start..end.unwrap_or(WHOLE);
        match self.pinned().try_lock(range, kind(shared)).py()? {
            Some(g) => Ok(Some(self.wrap(py, g)?)),
            None => Ok(None),
        }
    }

    /// Who holds a lock that conflicts with taking `start..end` (exclusive
    /// or `shared`): None, or `(shared, pid)` where `pid` is None for an
    /// OFD lock (the kernel does not say whose).
    #[pyo3(signature = (start = 0, end = None, shared = false))]
    fn holder(
        &self,
        start: u64,
        end: Option<u64>,
        shared: bool,
    ) -> PyResult<Option<(bool, Option<u32>)>> {
        let range = start..end.unwrap_or(WHOLE);
        Ok(self
            .lock
            .holder(range, kind(shared))
            .py()?
            .map(|h| (h.kind == LockKind::Shared, h.pid)))
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyRangeGuard>> {
        let g = self.lock(py, 0, None, false, None)?;
        self.entered.push(py, g.clone_ref(py));
        Ok(g)
    }

    fn __exit__(
        &self,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if let Some(g) = self.entered.pop() {
            g.get().unlock();
        }
        Ok(false)
    }
}

struct HeldRange {
    // Declared first: dropped (unlocking) before `_lock`.
    guard: RangeGuard<'static>,
    _lock: Arc<FileLock>,
}

/// A held byte-range lock; `unlock()` or the end of its `with` block
/// releases it.
#[pyclass(module = "mapshare", name = "RangeGuard", frozen)]
pub struct PyRangeGuard {
    held: std::sync::Mutex<Option<HeldRange>>,
}

#[pymethods]
impl PyRangeGuard {
    /// Releases the lock (twice is allowed).
    fn unlock(&self) {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(held);
    }

    /// `(start, end)` of the locked bytes, or None once unlocked.
    #[getter]
    fn range(&self) -> Option<(u64, u64)> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref().map(|h| {
            let r = h.guard.range();
            (r.start, r.end)
        })
    }

    /// True for a shared lock.
    #[getter]
    fn shared(&self) -> Option<bool> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref().map(|h| h.guard.kind() == LockKind::Shared)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        self.unlock();
        false
    }
}

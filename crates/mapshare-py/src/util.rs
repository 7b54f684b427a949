//! What every binding shares: blocking with the GIL released and Ctrl-C
//! honoured, borrowing bytes from any buffer, and exporting memory as a
//! buffer.

use std::ffi::c_int;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use mapshare::Error;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::errors::IntoPyResult;

/// The longest a blocking call waits with the GIL released before it
/// takes the GIL back to look for a pending signal: Ctrl-C interrupts any
/// wait within this (plus the wake-up of the interrupted call).
pub const SLICE: Duration = Duration::from_millis(50);

/// A value moved into or out of [`Python::detach`] on **the same
/// thread**: `detach` runs its closure on the calling thread, and asks
/// for `Send` only so that no Python reference is used without the GIL.
/// Wrap only plain Rust data (mapshare handles, pointers into memory that
/// stays alive for the call), never a `Py`/`Bound`.
pub struct SameThread<T>(T);

// SAFETY: see the type's documentation: the value never leaves the
// thread; it only crosses the GIL-release boundary, and holds no Python
// object.
unsafe impl<T> Send for SameThread<T> {}

impl<T> SameThread<T> {
    /// Wraps plain Rust data (no Python object) for the trip.
    pub fn new(value: T) -> SameThread<T> {
        SameThread(value)
    }

    /// The value back.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// A `timeout=` argument: `None` waits forever; a number of seconds
/// (0 allowed) waits at most that long.
pub fn timeout_arg(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(Duration::from_secs_f64(t.min(1e9)))),
        Some(t) => Err(PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds or None, not {t}"
        ))),
    }
}

/// Runs a blocking operation with the GIL released, in slices of at most
/// [`SLICE`]: `step(slice)` waits at most `slice` and returns `Ok(None)`
/// when nothing happened yet. Between slices the GIL is taken back and
/// pending signals run (Ctrl-C raises `KeyboardInterrupt` here). When
/// `timeout` passes with nothing, the result is `Ok(None)`.
pub fn blocking<T, F>(py: Python<'_>, timeout: Option<Duration>, mut step: F) -> PyResult<Option<T>>
where
    F: FnMut(Duration) -> mapshare::Result<Option<T>>,
{
    // A timeout past what the clock holds is no limit.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        let task = SameThread(&mut step);
        let out = py.detach(move || {
            let step = task.into_inner();
            SameThread(step(slice))
        });
        if let Some(v) = out.into_inner().py()? {
            return Ok(Some(v));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// Turns a slice's `Error::Timeout` into "nothing yet", for [`blocking`].
pub fn slice_timeout<T>(r: mapshare::Result<T>) -> mapshare::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::Timeout { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `mapshare.Timeout` for a whole wait of `timeout` on `what`.
pub fn timed_out(origin: &mapshare::Origin, what: &'static str, waited: Duration) -> PyErr {
    crate::errors::to_py(Error::Timeout {
        origin: origin.clone(),
        what,
        waited,
    })
}

/// The bytes of any object that exports a buffer (bytes, bytearray,
/// memoryview, array, numpy arrays...), as one contiguous run, borrowed
/// for as long as this value lives. A `bytearray` cannot be resized and a
/// numpy array cannot be freed while it does.
pub struct Bytes {
    view: Box<ffi::Py_buffer>,
}

impl Bytes {
    /// Borrows `obj`'s bytes. Fails with `TypeError`/`BufferError` (from
    /// Python) for an object that has none or whose bytes are not
    /// contiguous.
    pub fn new(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
        // SAFETY: `Py_buffer` is plain data; zeroed is a valid "empty"
        // value that `PyObject_GetBuffer` overwrites.
        let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `obj` is a live object (we hold the GIL through `Bound`),
        // `view` points at writable storage that outlives the call. With
        // PyBUF_SIMPLE the exporter must give one contiguous run of bytes
        // or fail.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_SIMPLE) };
        if rc != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Bytes { view })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        let len = usize::try_from(self.view.len).unwrap_or(0);
        if len == 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: the exporter gave `len` contiguous readable bytes at
        // `buf`, valid until `PyBuffer_Release` (in `drop`). Another
        // Python thread may write them meanwhile (a bytearray is
        // writable), as it may under any C extension that reads a buffer:
        // the bytes are only ever copied out of.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<u8>(), len) }
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        Python::attach(|_| {
            // SAFETY: `view` was filled by a successful `PyObject_GetBuffer`
            // and is released exactly once, with the GIL held.
            unsafe { ffi::PyBuffer_Release(&mut *self.view) }
        });
    }
}

// SAFETY: the buffer is only read as bytes (see `as_slice`), and released
// with the GIL taken (`Python::attach`), from whichever thread drops it.
unsafe impl Send for Bytes {}

/// Fills `view` for an exporter of `len` bytes at `ptr`, read-only or not.
/// Refuses a writable request on read-only memory with `BufferError`.
///
/// # Safety
///
/// `view` is the pointer CPython passed to `__getbuffer__`; `ptr..ptr+len`
/// stays valid (mapped) until the matching `__releasebuffer__`, which the
/// exporter guarantees by refusing to unmap while it counts exports.
pub unsafe fn export(
    view: *mut ffi::Py_buffer,
    owner: &Bound<'_, PyAny>,
    ptr: NonNull<u8>,
    len: usize,
    readonly: bool,
    flags: c_int,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("no buffer view to fill"));
    }
    if readonly && (flags & ffi::PyBUF_WRITABLE) == ffi::PyBUF_WRITABLE {
        return Err(PyBufferError::new_err(
            "the memory is read-only: a writable buffer was asked for",
        ));
    }
    let len = ffi::Py_ssize_t::try_from(len)
        .map_err(|_| PyBufferError::new_err("the memory is too large for one buffer"))?;
    // SAFETY: the caller passes CPython's `view`; `owner` is a live object
    // (PyBuffer_FillInfo takes a new reference to it and sets `obj`);
    // `ptr..ptr+len` is valid per the contract; with ndim 1 and itemsize 1
    // PyBuffer_FillInfo points shape/strides at the view's own fields.
    let rc = unsafe {
        ffi::PyBuffer_FillInfo(
            view,
            owner.as_ptr(),
            ptr.as_ptr().cast(),
            len,
            c_int::from(readonly),
            flags,
        )
    };
    if rc != 0 {
        return Err(PyErr::fetch(owner.py()));
    }
    Ok(())
}

/// An owned value reached through a raw pointer, so that a value that
/// borrows it (a held queue record, a pinned snapshot version) can be
/// stored beside it in one Python object. A `Box` would do, but moving a
/// `Box` asserts that nothing else points into it; a raw pointer asserts
/// nothing.
pub struct Owner<T> {
    ptr: NonNull<T>,
}

impl<T> Owner<T> {
    pub fn new(value: T) -> Owner<T> {
        Owner {
            ptr: NonNull::from(Box::leak(Box::new(value))),
        }
    }

    /// The value, mutably, for a borrow of any length.
    ///
    /// # Safety
    ///
    /// No other reference from `get` is in use while this one is (the
    /// Python object that holds the `Owner` is borrowed mutably, and a
    /// value borrowing from an earlier call is gone), and nothing borrowed
    /// from it outlives the `Owner`.
    pub unsafe fn get(&self) -> &'static mut T {
        // SAFETY: `ptr` came from a leaked `Box` and is freed only in
        // `drop`; exclusivity and lifetime are the caller's contract.
        unsafe { &mut *self.ptr.as_ptr() }
    }
}

impl<T> Drop for Owner<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `Box::leak` in `new` and is freed once;
        // the owner of this `Owner` dropped every borrow first.
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }
}

// SAFETY: an `Owner<T>` owns its `T` as a `Box<T>` would.
unsafe impl<T: Send> Send for Owner<T> {}

/// A `&mut T` taken into a closure that [`blocking`] calls once per
/// slice, on this thread, with the GIL released.
pub struct SameThreadMut<T>(NonNull<T>);

// SAFETY: as for `SameThread`: the reference only crosses the
// GIL-release boundary on this thread.
unsafe impl<T> Send for SameThreadMut<T> {}

impl<T> SameThreadMut<T> {
    pub fn new(value: &mut T) -> SameThreadMut<T> {
        SameThreadMut(NonNull::from(value))
    }

    /// The value.
    ///
    /// # Safety
    ///
    /// The `&mut T` given to `new` is not used while this reference, or
    /// anything borrowed from it, is in use; neither outlives it.
    pub unsafe fn get<'a>(&self) -> &'a mut T {
        // SAFETY: the caller's contract.
        unsafe { &mut *self.0.as_ptr() }
    }
}

/// What an open zero-copy view holds (a queue record, a snapshot pin),
/// stored in the object it borrows from, with a flag the view clears when
/// it ends. The holder lets go eagerly when the view ends; if it could not
/// then (it was busy), it lets go on its next call ([`Held::check`]).
pub struct Held<T> {
    /// Kept for its `Drop` (release, unpin).
    pub _value: T,
    pub open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<T> Held<T> {
    /// Clears a held value whose view has ended; refuses (`BufferError`)
    /// while the view is open.
    pub fn check(slot: &mut Option<Held<T>>, what: &str) -> PyResult<()> {
        if let Some(h) = slot {
            if h.open.load(std::sync::atomic::Ordering::Acquire) {
                return Err(pyo3::exceptions::PyBufferError::new_err(format!(
                    "a {what} view is still open: leave its `with` block (and release views made from it) first"
                )));
            }
            *slot = None;
        }
        Ok(())
    }
}

/// Runs `open` (a constructor that may wait for another process to finish
/// creating a file, up to its own timeout) with the GIL released.
pub fn opening<T>(py: Python<'_>, open: impl FnOnce() -> mapshare::Result<T>) -> PyResult<T> {
    let open = SameThread::new(open);
    py.detach(move || SameThread::new(open.into_inner()()))
        .into_inner()
        .py()
}

//! What the zero-copy views (`RecordView`, `SnapshotView`) share: a
//! memoryview made on entry and released on exit, counted buffer exports,
//! and the flag that tells the holder (the consumer or reader whose
//! record or pin the view shows) to let go.

use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyMemoryView, PyWeakrefMethods, PyWeakrefReference};
use pyo3::PyClass;

use crate::util;

/// An object whose held record or pin a view shows.
pub trait Holder {
    /// Drops what the view showed (releases the record, unpins).
    fn let_go(&mut self);
}

/// Lets `holder` let go now if it is not busy; otherwise it does on its
/// next call (it sees the view's `open` flag cleared: `util::Held`).
fn let_go<H: PyClass<Frozen = pyo3::pyclass::boolean_struct::False> + Holder>(
    py: Python<'_>,
    holder: &Py<H>,
) {
    if let Ok(mut h) = holder.bind(py).try_borrow_mut() {
        h.let_go();
    }
}

/// The bytes a view shows and its life.
pub struct View {
    ptr: usize,
    len: usize,
    /// Once entered, a weak reference to the memoryview `__enter__` made
    /// (a strong one would be a cycle: the memoryview holds the view,
    /// which nothing would ever collect).
    entered: Mutex<Option<Py<PyWeakrefReference>>>,
    exports: AtomicUsize,
    /// Cleared when the view ends (see `util::Held`).
    open: Arc<AtomicBool>,
    /// `fork_generation()` when made: a forked child's copy of a view
    /// shows nothing (the record or pin is its parent's).
    forks: u64,
    /// The file, and the process that made the view, for `ForkedChild`.
    origin: mapshare::Origin,
    owner: u32,
}

impl View {
    /// A view of `len` bytes at `ptr`, held by whoever shares `open`.
    pub fn new(ptr: usize, len: usize, open: Arc<AtomicBool>, origin: mapshare::Origin) -> View {
        View {
            ptr,
            len,
            entered: Mutex::new(None),
            exports: AtomicUsize::new(0),
            open,
            forks: mapshare::unstable::sys::fork_generation(),
            origin,
            owner: std::process::id(),
        }
    }

    /// `ForkedChild` in a forked child: what the view shows belongs to
    /// the parent, which may release it at any moment.
    fn check_fork(&self) -> PyResult<()> {
        if mapshare::unstable::sys::fork_generation() != self.forks {
            return Err(crate::errors::to_py(mapshare::Error::ForkedChild {
                origin: self.origin.clone(),
                owner: self.owner,
                pid: std::process::id(),
            }));
        }
        Ok(())
    }

    fn entered(&self) -> std::sync::MutexGuard<'_, Option<Py<PyWeakrefReference>>> {
        self.entered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Not yet released (the holder still holds what the view shows).
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Bytes shown.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `__enter__`: the memoryview of `slf` (the view object), made once.
    pub fn enter(&self, slf: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.check_fork()?;
        let py = slf.py();
        if !self.is_open() {
            return Err(PyValueError::new_err("the view was already released"));
        }
        let earlier = self.entered().as_ref().map(|w| w.clone_ref(py));
        if let Some(mv) = earlier.and_then(|w| w.bind(py).upgrade()) {
            return Ok(mv.unbind());
        }
        // Not under the lock: making the memoryview calls __getbuffer__,
        // which takes it.
        let made = PyMemoryView::from(slf)?;
        let weak = PyWeakrefReference::new(&made)?.unbind();
        *self.entered() = Some(weak);
        Ok(made.into_any().unbind())
    }

    /// `release()` / `__exit__`: releases the memoryview `enter` made,
    /// refuses (`BufferError`, nothing let go) while other buffers of the
    /// view live, then has `holder` let go.
    pub fn release<H>(&self, py: Python<'_>, holder: &Py<H>) -> PyResult<()>
    where
        H: PyClass<Frozen = pyo3::pyclass::boolean_struct::False> + Holder,
    {
        if !self.is_open() {
            return Ok(());
        }
        let weak = self.entered().as_ref().map(|w| w.clone_ref(py));
        if let Some(mv) = weak.and_then(|w| w.bind(py).upgrade()) {
            // Raises BufferError if views made from it are still alive.
            mv.call_method0("release")?;
        }
        let n = self.exports.load(Ordering::Acquire);
        if n > 0 {
            return Err(PyBufferError::new_err(format!(
                "{n} buffer view(s) of the data still exist; release them before leaving the block"
            )));
        }
        self.open.store(false, Ordering::Release);
        let_go(py, holder);
        Ok(())
    }

    /// `__getbuffer__`: fills a read-only buffer request for an open view.
    ///
    /// # Safety
    ///
    /// As for [`util::export`]: the holder keeps `ptr..ptr+len` in place
    /// until it lets go, which `release` does not allow while `exports`
    /// is not zero.
    pub unsafe fn export(
        &self,
        slf: &Bound<'_, PyAny>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if !self.is_open() {
            return Err(PyBufferError::new_err(
                "the view was released: its bytes are no longer ours",
            ));
        }
        self.check_fork()?;
        let ptr = NonNull::new(self.ptr as *mut u8).unwrap_or(NonNull::dangling());
        // SAFETY: the caller's contract.
        unsafe { util::export(view, slf, ptr, self.len, true, flags)? };
        self.exports.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// `__releasebuffer__`.
    pub fn unexport(&self) {
        self.exports.fetch_sub(1, Ordering::AcqRel);
    }

    /// For the view object's `Drop`: a view dropped without leaving its
    /// block has no buffer alive (each holds a reference to it), so its
    /// holder lets go.
    pub fn dropped<H>(&self, holder: &Py<H>)
    where
        H: PyClass<Frozen = pyo3::pyclass::boolean_struct::False> + Holder,
    {
        if self.open.swap(false, Ordering::AcqRel) {
            Python::attach(|py| let_go(py, holder));
        }
    }
}

//! `SnapshotWriter`, `SnapshotReader` and the pinned `SnapshotView`.

use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use mapshare::snapshot::{Options, ReadGuard, ReadOnlyReader, Reader, SlowReaders, Writer};
use mapshare::Error;
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{to_py, IntoPyResult};
use crate::util::{self, blocking, slice_timeout, Held, Owner, SameThread, SameThreadMut};
use crate::view::{Holder, View};

fn closed() -> PyErr {
    PyValueError::new_err("the snapshot handle is closed")
}

/// The one writer of a snapshot file: publishes whole versions that
/// readers see atomically. Creates the file if it does not exist; a
/// second live writer is refused (`RoleTaken`).
#[pyclass(module = "mapshare", name = "SnapshotWriter")]
pub struct PySnapshotWriter {
    inner: Option<Writer>,
    /// The slow-readers policy the writer was opened with.
    policy: SlowReaders,
    /// The file, for errors.
    path: PathBuf,
}

// SAFETY: every method takes `&mut self` (PyO3 checks the borrow at run
// time), so no two threads use the writer at once; `Writer` is `Send`.
unsafe impl Sync for PySnapshotWriter {}

impl PySnapshotWriter {
    fn get(&mut self) -> PyResult<&mut Writer> {
        self.inner.as_mut().ok_or_else(closed)
    }

    /// Runs one publish with the GIL released. Under the `"wait"` policy
    /// the wait for a slow reader runs in slices (a slice that times out
    /// published nothing, so it is retried until the policy's timeout),
    /// with Ctrl-C honoured between them.
    fn publish_sliced(
        &mut self,
        py: Python<'_>,
        mut publish: impl FnMut(&mut Writer) -> mapshare::Result<u64>,
    ) -> PyResult<u64> {
        let policy = self.policy;
        let w = self.get()?;
        let SlowReaders::Wait { timeout } = policy else {
            let w = SameThreadMut::new(w);
            let publish = SameThreadMut::new(&mut publish);
            return py
                .detach(move || {
                    // SAFETY: the writer and the closure are used by this
                    // closure alone, on this thread, until `detach` returns.
                    let (w, publish) = unsafe { (w.get(), publish.get()) };
                    SameThread::new(publish(w))
                })
                .into_inner()
                .py();
        };
        let start = std::time::Instant::now();
        let got = {
            let w = SameThreadMut::new(&mut *w);
            blocking(py, Some(timeout), |slice| {
                // SAFETY: only this closure uses the writer until
                // `blocking` returns.
                let w = unsafe { w.get() };
                w.set_slow_readers(SlowReaders::Wait { timeout: slice });
                slice_timeout(publish(w))
            })
        };
        w.set_slow_readers(policy);
        got?.ok_or_else(|| {
            to_py(Error::Timeout {
                origin: mapshare::Origin::path(&self.path),
                what: "waiting for a slow reader to unpin a slot",
                waited: start.elapsed(),
            })
        })
    }
}

#[pymethods]
impl PySnapshotWriter {
    /// Opens (or creates) the snapshot at `path` as its writer.
    ///
    /// `capacity`: bytes of each slot if the file is created here (larger
    /// values grow them). `slow_readers`: what to do when every slot is
    /// pinned by a live reader: `"add"` a slot (up to `max_slots`),
    /// `"wait"` up to `wait_timeout` seconds, or `"fail"` (`Busy`).
    #[new]
    #[pyo3(signature = (path, capacity = 4096, slow_readers = "add", max_slots = 64, wait_timeout = 1.0, mode = 0o600))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        capacity: u64,
        slow_readers: &str,
        max_slots: u32,
        wait_timeout: f64,
        mode: u32,
    ) -> PyResult<PySnapshotWriter> {
        let slow_readers = match slow_readers {
            "add" => SlowReaders::AddSlots { max: max_slots },
            "wait" => SlowReaders::Wait {
                timeout: util::timeout_arg(Some(wait_timeout))?.unwrap_or(Duration::ZERO),
            },
            "fail" => SlowReaders::Fail,
            other => {
                return Err(PyValueError::new_err(format!(
                    "slow_readers must be 'add', 'wait' or 'fail', not {other:?}"
                )))
            }
        };
        let options = Options {
            capacity,
            slow_readers,
            mode,
        };
        Ok(PySnapshotWriter {
            inner: Some(util::opening(py, || Writer::open_with(&path, &options))?),
            policy: slow_readers,
            path,
        })
    }

    /// Publishes the bytes of any buffer as the next version; returns its
    /// generation. Readers never see it torn. The GIL is released while
    /// the value is copied and checksummed, and while the `"wait"` policy
    /// waits for a slow reader (Ctrl-C honoured).
    fn publish(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u64> {
        let bytes = util::Bytes::new(data)?;
        let value = bytes.as_slice();
        self.publish_sliced(py, |w| w.publish(value))
    }

    /// Publishes the concatenation of several buffers as one version,
    /// copying each once (e.g. a small header and a numpy array).
    fn publish_parts(&mut self, py: Python<'_>, parts: Vec<Bound<'_, PyAny>>) -> PyResult<u64> {
        let parts = parts
            .iter()
            .map(util::Bytes::new)
            .collect::<PyResult<Vec<_>>>()?;
        let total: usize = parts.iter().map(|p| p.as_slice().len()).sum();
        self.publish_sliced(py, |w| {
            w.publish_with(total, |buf| {
                let mut at = 0;
                for p in &parts {
                    let s = p.as_slice();
                    buf[at..at + s.len()].copy_from_slice(s);
                    at += s.len();
                }
            })
        })
    }

    /// The generation of the latest version (0 before the first).
    #[getter]
    fn generation(&mut self) -> PyResult<u64> {
        self.get()?.generation().py()
    }

    /// Gives up the writer role. Closing twice is allowed.
    fn close(&mut self) {
        self.inner = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        self.close();
        false
    }
}

enum Inner {
    /// Attached: reads in place (pins slots).
    Full(Owner<Reader>),
    /// The file is read-only to this user: copies only.
    ReadOnly(Box<ReadOnlyReader>),
}

/// A reader of a snapshot file: any number of processes read the latest
/// version, never torn, without slowing the writer.
///
/// `read()` copies the value out and verifies its checksum;
/// `with reader.view() as mv:` pins the version and shows it in place
/// (read-only memoryview, no copy) until the block ends.
#[pyclass(module = "mapshare", name = "SnapshotReader")]
pub struct PySnapshotReader {
    // Declared first: the pinned version of an open view, dropped
    // (unpinned) before the reader it borrows.
    held: Option<Held<ReadGuard<'static>>>,
    inner: Option<Inner>,
    path: PathBuf,
}

// SAFETY: every method takes `&mut self` (PyO3 checks the borrow at run
// time), so no two threads use the reader or its pinned version at once;
// a pin is a word in this process's mapping that any thread may clear.
unsafe impl Sync for PySnapshotReader {}
// SAFETY: as above; `Reader` and `ReadOnlyReader` are `Send`.
unsafe impl Send for PySnapshotReader {}

impl PySnapshotReader {
    fn get(&mut self) -> PyResult<&mut Inner> {
        Held::check(&mut self.held, "snapshot")?;
        self.inner.as_mut().ok_or_else(closed)
    }
}

#[pymethods]
impl PySnapshotReader {
    /// Opens the snapshot at `path` for reading. A file this user may only
    /// read is opened without attaching (`read()`, `wait_newer()` and
    /// `generation` work; `view()` raises `PermissionDenied`).
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<PySnapshotReader> {
        let inner = util::opening(py, || match Reader::open(&path) {
            Ok(r) => Ok(Inner::Full(Owner::new(r))),
            Err(Error::PermissionDenied { .. }) => {
                Ok(Inner::ReadOnly(Box::new(ReadOnlyReader::open(&path)?)))
            }
            Err(e) => Err(e),
        })?;
        Ok(PySnapshotReader {
            held: None,
            inner: Some(inner),
            path,
        })
    }

    /// A verified copy of the latest value, or None if nothing was
    /// published yet.
    fn read<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        Ok(self.read_with_generation(py)?.map(|(_, b)| b))
    }

    /// `(generation, bytes)` of the latest value, or None.
    fn read_with_generation<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<Option<(u64, Bound<'py, PyBytes>)>> {
        let mut buf = Vec::new();
        let got = match self.get()? {
            // SAFETY: `&mut self` is exclusive and no view holds a pin.
            Inner::Full(r) => unsafe { r.get() }.read_into(&mut buf).py()?,
            Inner::ReadOnly(r) => r.read_into(&mut buf).py()?,
        };
        Ok(got.map(|g| (g, PyBytes::new(py, &buf))))
    }

    /// The latest version in place: `with reader.view() as mv:` (a
    /// read-only memoryview, no copy; pinned until the block ends, so the
    /// writer never overwrites it). `view.generation` tells which version.
    /// None if nothing was published yet. With `verify=True` the checksum
    /// is checked first (one pass over the value).
    #[pyo3(signature = (verify = false))]
    fn view(slf: Bound<'_, Self>, verify: bool) -> PyResult<Option<Py<PySnapshotView>>> {
        let py = slf.py();
        let open = Arc::new(AtomicBool::new(true));
        let (ptr, len, generation, path) = {
            let mut this = slf.try_borrow_mut()?;
            let path = this.path.clone();
            let guard = match this.get()? {
                Inner::Full(r) => {
                    // SAFETY: `&mut self` is exclusive and no view holds a
                    // pin; the guard is stored in `held` below, dropped
                    // before the reader.
                    let r = unsafe { r.get() };
                    if verify {
                        r.read_checked().py()?
                    } else {
                        r.read().py()?
                    }
                }
                Inner::ReadOnly(_) => {
                    return Err(PyValueError::new_err(
                        "this snapshot is open read-only (no lease): views need a read-write open; use read()",
                    ))
                }
            };
            let Some(guard) = guard else {
                return Ok(None);
            };
            let out = (
                guard.as_ptr() as usize,
                guard.len(),
                guard.generation(),
                path,
            );
            this.held = Some(Held {
                _value: guard,
                open: open.clone(),
            });
            out
        };
        Py::new(
            py,
            PySnapshotView {
                reader: slf.unbind(),
                generation,
                view: View::new(ptr, len, open, mapshare::Origin::path(&path)),
            },
        )
        .map(Some)
    }

    /// The generation of the latest version (0 before the first).
    #[getter]
    fn generation(&mut self) -> PyResult<u64> {
        match self.get()? {
            // SAFETY: as in `read_with_generation`.
            Inner::Full(r) => unsafe { r.get() }.generation().py(),
            Inner::ReadOnly(r) => r.generation().py(),
        }
    }

    /// Waits until a version newer than `generation` is published, at
    /// most `timeout` seconds (None: as long as it takes; Ctrl-C
    /// interrupts). Returns the new generation; raises `Timeout`.
    #[pyo3(signature = (generation, timeout = None))]
    fn wait_newer(
        &mut self,
        py: Python<'_>,
        generation: u64,
        timeout: Option<f64>,
    ) -> PyResult<u64> {
        let timeout = util::timeout_arg(timeout)?;
        let start = std::time::Instant::now();
        let origin = mapshare::Origin::path(&self.path);
        let inner = SameThreadMut::new(self.get()?);
        let got = blocking(py, timeout, |slice| {
            // SAFETY: only this closure uses the reader until `blocking`
            // returns.
            slice_timeout(match unsafe { inner.get() } {
                // SAFETY: as in `read_with_generation`.
                Inner::Full(r) => unsafe { r.get() }.wait_newer(generation, slice),
                Inner::ReadOnly(r) => r.wait_newer(generation, slice),
            })
        })?;
        got.ok_or_else(|| {
            to_py(Error::Timeout {
                origin,
                what: "waiting for a newer version",
                waited: start.elapsed(),
            })
        })
    }

    /// Closes the reader. Raises `BufferError` while a view is open.
    fn close(&mut self) -> PyResult<()> {
        if self.inner.is_some() {
            self.get()?;
        }
        self.inner = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }
}

/// A pinned snapshot version (see `SnapshotReader.view`).
#[pyclass(module = "mapshare", name = "SnapshotView", frozen)]
pub struct PySnapshotView {
    reader: Py<PySnapshotReader>,
    generation: u64,
    view: View,
}

impl Holder for PySnapshotReader {
    fn let_go(&mut self) {
        self.held = None;
    }
}

#[pymethods]
impl PySnapshotView {
    /// The version's generation.
    #[getter]
    fn generation(&self) -> u64 {
        self.generation
    }

    fn __len__(&self) -> usize {
        self.view.len()
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.get().view.enter(slf.as_any())
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    /// Unpins the version (what leaving the `with` block does).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.view.release(py, &self.reader)
    }

    /// # Safety
    ///
    /// Called by CPython with a valid `view` (the buffer protocol).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        // SAFETY: the reader keeps the version pinned (the writer never
        // writes a pinned slot) until the view lets it go.
        unsafe { slf.get().view.export(slf.as_any(), view, flags) }
    }

    /// # Safety
    ///
    /// Called by CPython once per successful `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.view.unexport();
    }
}

impl Drop for PySnapshotView {
    fn drop(&mut self) {
        self.view.dropped(&self.reader);
    }
}

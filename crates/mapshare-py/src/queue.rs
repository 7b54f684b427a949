//! `Producer`, `Consumer` and the zero-copy `RecordView` of the SPSC queue.

use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mapshare::queue::{Consumer, Producer, Record, SendError};
use mapshare::Error;
use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{to_py, IntoPyResult};
use crate::util::{self, blocking, slice_timeout, Held, Owner};
use crate::view::{Holder, View};

fn origin_of(file: &mapshare::SharedFile) -> mapshare::Origin {
    // SAFETY: only the origin (a path) is read from the region.
    unsafe { file.raw_region() }.origin().clone()
}

fn closed() -> PyErr {
    PyValueError::new_err("the queue handle is closed")
}

/// The producing end of a queue file: either side may start first, on a
/// new or a reused file. Holds the producer role while open (a second
/// live producer is refused with `RoleTaken`).
#[pyclass(module = "mapshare", name = "Producer")]
pub struct PyProducer {
    inner: Option<Producer>,
}

// SAFETY: every method takes `&mut self` (PyO3 checks the borrow at run
// time), so no two threads ever use the producer at once; `Producer` is
// `Send`, so moving between threads is fine.
unsafe impl Sync for PyProducer {}

impl PyProducer {
    fn get(&mut self) -> PyResult<&mut Producer> {
        self.inner.as_mut().ok_or_else(closed)
    }
}

/// A send's outcome carried out of a GIL-free slice.
enum Sent {
    Done,
    Disconnected,
}

#[pymethods]
impl PyProducer {
    /// Opens the queue at `path` as its producer, creating it with a ring
    /// of `capacity` bytes if it does not exist.
    #[new]
    #[pyo3(signature = (path, capacity = 1 << 20))]
    fn new(py: Python<'_>, path: PathBuf, capacity: u64) -> PyResult<PyProducer> {
        Ok(PyProducer {
            inner: Some(util::opening(py, || {
                Producer::open_or_create(path, capacity)
            })?),
        })
    }

    /// Sends one record: the bytes of any buffer (bytes, bytearray,
    /// memoryview, numpy array...). Waits for space at most `timeout`
    /// seconds (None: as long as it takes, Ctrl-C interrupts). Raises
    /// `Timeout`, `Disconnected` (queue full and the consumer gone),
    /// `TooLarge`.
    #[pyo3(signature = (data, timeout = None))]
    fn send(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let timeout = util::timeout_arg(timeout)?;
        let bytes = util::Bytes::new(data)?;
        let p = self.get()?;
        let data = bytes.as_slice();
        match p.try_send(data) {
            Ok(()) => return Ok(()),
            Err(SendError::Full(_)) | Err(SendError::Timeout(_)) => {}
            Err(SendError::Disconnected(_)) => {
                return Err(to_py(Error::Disconnected {
                    origin: origin_of(p.file()),
                    peer: "consumer",
                }))
            }
            Err(SendError::Failed(e, _)) => return Err(to_py(e)),
        }
        let origin = origin_of(p.file());
        if timeout == Some(std::time::Duration::ZERO) {
            return Err(util::timed_out(
                &origin,
                "waiting for space in the queue",
                std::time::Duration::ZERO,
            ));
        }
        let start = std::time::Instant::now();
        let p = util::SameThreadMut::new(p);
        let out = blocking(py, timeout, |slice| {
            // SAFETY: only this closure uses the producer until `blocking`
            // returns; it runs on this thread.
            let p = unsafe { p.get() };
            match p.send_timeout(data, slice) {
                Ok(()) => Ok(Some(Sent::Done)),
                Err(SendError::Timeout(_)) | Err(SendError::Full(_)) => Ok(None),
                Err(SendError::Disconnected(_)) => Ok(Some(Sent::Disconnected)),
                Err(SendError::Failed(e, _)) => Err(e),
            }
        })?;
        match out {
            Some(Sent::Done) => Ok(()),
            Some(Sent::Disconnected) => Err(to_py(Error::Disconnected {
                origin,
                peer: "consumer",
            })),
            None => Err(util::timed_out(
                &origin,
                "waiting for space in the queue",
                start.elapsed(),
            )),
        }
    }

    /// Sends if there is space now; False (nothing sent) if the queue is
    /// full.
    fn try_send(&mut self, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let bytes = util::Bytes::new(data)?;
        let p = self.get()?;
        match p.try_send(bytes.as_slice()) {
            Ok(()) => Ok(true),
            Err(SendError::Full(_)) | Err(SendError::Timeout(_)) => Ok(false),
            Err(SendError::Disconnected(_)) => Err(to_py(Error::Disconnected {
                origin: origin_of(p.file()),
                peer: "consumer",
            })),
            Err(SendError::Failed(e, _)) => Err(to_py(e)),
        }
    }

    /// Bytes of the ring.
    #[getter]
    fn capacity(&mut self) -> PyResult<u64> {
        Ok(self.get()?.capacity())
    }

    /// The largest record this queue holds.
    #[getter]
    fn max_record(&mut self) -> PyResult<u64> {
        Ok(self.get()?.max_record())
    }

    /// Gives up the producer role (a consumer then sees `Disconnected`
    /// once it has drained the queue). Closing twice is allowed.
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

/// The consuming end of a queue file. `recv()` returns bytes;
/// `with consumer.recv_view() as mv:` gives the record in place, as a
/// read-only memoryview, released at the end of the block. Iterating
/// yields records until the producer has left and the queue is drained.
#[pyclass(module = "mapshare", name = "Consumer")]
pub struct PyConsumer {
    // Declared first: the record an open view holds, dropped (released)
    // before the consumer it borrows.
    held: Option<Held<Record<'static>>>,
    inner: Option<Owner<Consumer>>,
}

// SAFETY: every method takes `&mut self` (PyO3 checks the borrow at run
// time), so no two threads use the consumer or its held record at once.
// `Consumer` is `Send`; a `Record` is a position in this process's
// mapping, released by a store that any thread may make.
unsafe impl Sync for PyConsumer {}
// SAFETY: as above.
unsafe impl Send for PyConsumer {}

impl PyConsumer {
    /// The consumer, for a call that needs it alone: refused while a
    /// record view is open (the view borrows it).
    fn get(&mut self) -> PyResult<&'static mut Consumer> {
        Held::check(&mut self.held, "record")?;
        let owner = self.inner.as_ref().ok_or_else(closed)?;
        // SAFETY: `&mut self` is exclusive and no record borrows the
        // consumer (`held` is empty); callers drop what they borrow from
        // it before returning, or store it in `held`.
        Ok(unsafe { owner.get() })
    }

    /// The next record, waiting at most `timeout` (None: as long as it
    /// takes) with the GIL released.
    fn next_record(
        &mut self,
        py: Python<'_>,
        timeout: Option<std::time::Duration>,
    ) -> PyResult<Record<'static>> {
        self.get()?;
        let owner = self.inner.as_ref().ok_or_else(closed)?;
        // SAFETY: as in `get` (checked just above): `&mut self` is
        // exclusive and nothing borrows the consumer.
        if let Some(rec) = unsafe { owner.get() }.try_recv().py()? {
            return Ok(rec);
        }
        // SAFETY: as above; the record of the failed attempt is gone.
        let c = unsafe { owner.get() };
        if timeout == Some(std::time::Duration::ZERO) {
            return Err(util::timed_out(
                &origin_of(c.file()),
                "waiting for a record",
                std::time::Duration::ZERO,
            ));
        }
        let origin = origin_of(c.file());
        let start = std::time::Instant::now();
        let c = util::SameThreadMut::new(c);
        let got = blocking(py, timeout, |slice| {
            // SAFETY: only this closure uses the consumer until `blocking`
            // returns; a record it returns borrows it until the caller
            // drops or stores it.
            slice_timeout(unsafe { c.get() }.recv_timeout(slice))
        })?;
        got.ok_or_else(|| util::timed_out(&origin, "waiting for a record", start.elapsed()))
    }
}

#[pymethods]
impl PyConsumer {
    /// Opens the queue at `path` as its consumer, creating it with a ring
    /// of `capacity` bytes if it does not exist.
    #[new]
    #[pyo3(signature = (path, capacity = 1 << 20))]
    fn new(py: Python<'_>, path: PathBuf, capacity: u64) -> PyResult<PyConsumer> {
        let consumer = util::opening(py, || Consumer::open_or_create(path, capacity))?;
        Ok(PyConsumer {
            held: None,
            inner: Some(Owner::new(consumer)),
        })
    }

    /// The next record as bytes, waiting at most `timeout` seconds (None:
    /// as long as it takes; Ctrl-C interrupts). Raises `Timeout`,
    /// `Disconnected` (the producer left and the queue is drained),
    /// `PeerDied` (the producer died), `Corrupted`.
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(
        &mut self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let timeout = util::timeout_arg(timeout)?;
        let rec = self.next_record(py, timeout)?;
        Ok(PyBytes::new(py, &rec))
    }

    /// The next record if one is there now, else None.
    fn try_recv<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let c = self.get()?;
        Ok(c.try_recv().py()?.map(|rec| PyBytes::new(py, &rec)))
    }

    /// The next record in place: `with consumer.recv_view() as mv:` gives
    /// a read-only memoryview of it, with no copy. The record is released
    /// when the block ends; the memoryview is invalid afterwards. Leaving
    /// the block while views made from `mv` (e.g. numpy arrays) still
    /// exist raises `BufferError` and keeps the record.
    #[pyo3(signature = (timeout = None))]
    fn recv_view(slf: Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Py<PyRecordView>> {
        let py = slf.py();
        let timeout = util::timeout_arg(timeout)?;
        let open = Arc::new(AtomicBool::new(true));
        let (ptr, len, origin) = {
            let mut this = slf.try_borrow_mut()?;
            let origin = origin_of(this.get()?.file());
            let rec = this.next_record(py, timeout)?;
            let ptr = rec.as_ptr() as usize;
            let len = rec.len();
            this.held = Some(Held {
                _value: rec,
                open: open.clone(),
            });
            (ptr, len, origin)
        };
        Py::new(
            py,
            PyRecordView {
                consumer: slf.unbind(),
                view: View::new(ptr, len, open, origin),
            },
        )
    }

    /// Bytes sent and not yet received.
    fn pending_bytes(&mut self) -> PyResult<u64> {
        self.get()?.pending_bytes().py()
    }

    /// Gives up the consumer role. Raises `BufferError` while a record
    /// view is open. Closing twice is allowed.
    fn close(&mut self) -> PyResult<()> {
        if self.inner.is_some() {
            self.get()?;
        }
        self.inner = None;
        Ok(())
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        match self.recv(py, None) {
            Err(e) if e.is_instance_of::<crate::errors::Disconnected>(py) => {
                Err(PyStopIteration::new_err(()))
            }
            other => other,
        }
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

/// A record held in place (see `Consumer.recv_view`).
#[pyclass(module = "mapshare", name = "RecordView", frozen)]
pub struct PyRecordView {
    consumer: Py<PyConsumer>,
    view: View,
}

impl Holder for PyConsumer {
    fn let_go(&mut self) {
        self.held = None;
    }
}

#[pymethods]
impl PyRecordView {
    /// Bytes in the record.
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

    /// Releases the record (what leaving the `with` block does).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.view.release(py, &self.consumer)
    }

    /// # Safety
    ///
    /// Called by CPython with a valid `view` (the buffer protocol).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        // SAFETY: the consumer holds the record (the producer leaves its
        // bytes alone) until the view lets it go.
        unsafe { slf.get().view.export(slf.as_any(), view, flags) }
    }

    /// # Safety
    ///
    /// Called by CPython once per successful `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.view.unexport();
    }
}

impl Drop for PyRecordView {
    fn drop(&mut self) {
        self.view.dropped(&self.consumer);
    }
}

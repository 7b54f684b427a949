//! `Log`, `LogWriter`, `LogReader` and `LogRecord`: the broadcast log.

use std::path::PathBuf;
use std::time::Duration;

use mapshare::log::{Log, Options, Reader, Retention, Start, Writer};
use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::errors::IntoPyResult;
use crate::util::{self, blocking, SameThread, SameThreadMut};

fn closed() -> PyErr {
    PyValueError::new_err("the log handle is closed")
}

/// A persistent broadcast log in a directory of segment files: many
/// writers (in any processes), many independent readers, replay, durable
/// named cursors, retention.
#[pyclass(module = "mapshare", name = "Log")]
pub struct PyLog {
    log: Log,
}

#[pymethods]
impl PyLog {
    /// Creates a log in directory `dir` (made if missing); a log already
    /// there is opened as it is, keeping its own segment size and
    /// retention. `segment_size`: data bytes per segment file. Retention:
    /// keep at most `retain_bytes` of segments, `retain_segments`
    /// segments, segments younger than `retain_age` seconds (None: no
    /// limit); `retain()` applies it.
    #[staticmethod]
    #[pyo3(signature = (dir, segment_size = 16 << 20, retain_bytes = None, retain_segments = None, retain_age = None))]
    fn create(
        py: Python<'_>,
        dir: PathBuf,
        segment_size: u64,
        retain_bytes: Option<u64>,
        retain_segments: Option<u64>,
        retain_age: Option<f64>,
    ) -> PyResult<PyLog> {
        let options = Options {
            segment_size,
            retain: Retention {
                bytes: retain_bytes,
                segments: retain_segments,
                age: util::timeout_arg(retain_age)?,
            },
        };
        Ok(PyLog {
            log: util::opening(py, || Log::create(dir, &options))?,
        })
    }

    /// Opens the log in directory `dir`.
    #[staticmethod]
    fn open(py: Python<'_>, dir: PathBuf) -> PyResult<PyLog> {
        Ok(PyLog {
            log: util::opening(py, || Log::open(dir))?,
        })
    }

    /// A writer (each process or thread may have its own).
    fn writer(&self) -> PyResult<PyLogWriter> {
        Ok(PyLogWriter {
            inner: Some(self.log.writer().py()?),
            tether_wait: Duration::from_secs(5),
            dir: self.log.dir().display().to_string(),
        })
    }

    /// A reader starting at `start`: `"earliest"` (the first record still
    /// kept), `"latest"` (only records appended from now on), or a
    /// sequence number. With `cursor="name"` it starts after the position
    /// last committed under that durable name instead (the start of the
    /// log for a new name), and `commit()` stores its position. With
    /// `max_lag` too, the cursor is tethered: while this reader lives,
    /// writers wait rather than run more than `max_lag` records ahead.
    #[pyo3(signature = (start = None, cursor = None, max_lag = None))]
    fn reader(
        &self,
        start: Option<&Bound<'_, PyAny>>,
        cursor: Option<String>,
        max_lag: Option<u64>,
    ) -> PyResult<PyLogReader> {
        let start = match (cursor, max_lag, start) {
            (Some(_), _, Some(_)) => {
                return Err(PyValueError::new_err(
                    "give either start or cursor, not both",
                ))
            }
            (Some(name), None, None) => Start::Cursor(name),
            (Some(name), Some(max_lag), None) => Start::Tethered { name, max_lag },
            (None, Some(_), _) => return Err(PyValueError::new_err("max_lag needs a cursor name")),
            (None, None, None) => Start::Earliest,
            (None, None, Some(s)) => {
                if let Ok(seq) = s.extract::<u64>() {
                    Start::Seq(seq)
                } else {
                    match s.extract::<String>()?.as_str() {
                        "earliest" => Start::Earliest,
                        "latest" => Start::Latest,
                        other => {
                            return Err(PyValueError::new_err(format!(
                                "start must be 'earliest', 'latest' or a sequence number, not {other:?}"
                            )))
                        }
                    }
                }
            }
        };
        Ok(PyLogReader {
            inner: Some(self.log.reader(start).py()?),
        })
    }

    /// Applies retention now; returns how many segments were deleted.
    /// Never deletes a segment a live reader or writer uses.
    fn retain(&self) -> PyResult<u64> {
        self.log.retain().py()
    }

    /// What the log holds: segments, sequence numbers, cursors, limits.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let info = self.log.info().py()?;
        let d = PyDict::new(py);
        d.set_item("first_seq", info.first_seq)?;
        d.set_item("next_seq", info.next_seq)?;
        d.set_item("bytes", info.bytes)?;
        d.set_item("writers", info.writers)?;
        d.set_item("segment_size", info.segment_size)?;
        let segs = PyList::empty(py);
        for s in &info.segments {
            let e = PyDict::new(py);
            e.set_item("number", s.number)?;
            e.set_item("base", s.base)?;
            e.set_item("reserved", s.reserved)?;
            e.set_item("used", s.used)?;
            e.set_item("capacity", s.capacity)?;
            e.set_item("closed", s.closed)?;
            segs.append(e)?;
        }
        d.set_item("segments", segs)?;
        let cursors = PyDict::new(py);
        for c in &info.cursors {
            cursors.set_item(&c.name, (c.position, c.lag))?;
        }
        d.set_item("cursors", cursors)?;
        Ok(d)
    }

    /// The log's directory.
    #[getter]
    fn dir(&self) -> String {
        self.log.dir().display().to_string()
    }
}

/// Appends records to a log.
#[pyclass(module = "mapshare", name = "LogWriter")]
pub struct PyLogWriter {
    inner: Option<Writer>,
    /// The tether wait set on the writer (`append`'s default timeout).
    tether_wait: Duration,
    /// The log's directory, for errors.
    dir: String,
}

// SAFETY: every method takes `&mut self` (PyO3 checks the borrow at run
// time), so no two threads use the writer at once; `Writer` is `Send`.
unsafe impl Sync for PyLogWriter {}

impl PyLogWriter {
    fn get(&mut self) -> PyResult<&mut Writer> {
        self.inner.as_mut().ok_or_else(closed)
    }
}

#[pymethods]
impl PyLogWriter {
    /// Appends the bytes of any buffer as one record; returns its
    /// sequence number. Waits for a tethered reader that is too far
    /// behind at most `timeout` seconds (default: the writer's tether
    /// wait, 5 s), with the GIL released and Ctrl-C honoured; then raises
    /// `Timeout` and appends nothing.
    #[pyo3(signature = (data, timeout = None))]
    fn append(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<u64> {
        let bytes = util::Bytes::new(data)?;
        let limit = util::timeout_arg(timeout)?.unwrap_or(self.tether_wait);
        let restore = self.tether_wait;
        let w = self.get()?;
        let value = bytes.as_slice();
        let start = std::time::Instant::now();
        // In slices: a wait for tethered readers ends with `Timeout`
        // before anything is reserved, so a slice that times out is
        // retried until `limit`.
        let got = {
            let w = SameThreadMut::new(&mut *w);
            blocking(py, Some(limit), |slice| {
                // SAFETY: only this closure uses the writer until
                // `blocking` returns.
                let w = unsafe { w.get() };
                w.set_tether_wait(slice);
                util::slice_timeout(w.append(value))
            })
        };
        w.set_tether_wait(restore);
        match got? {
            Some(seq) => Ok(seq),
            None => Err(crate::errors::to_py(mapshare::Error::Timeout {
                origin: mapshare::Origin::path(std::path::Path::new(&self.dir)),
                what: "waiting for a tethered reader to catch up",
                waited: start.elapsed(),
            })),
        }
    }

    /// Appends several records (one reservation per group that fits a
    /// segment); returns their sequence numbers.
    fn append_batch(
        &mut self,
        py: Python<'_>,
        records: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<Vec<u64>> {
        let bufs = records
            .iter()
            .map(util::Bytes::new)
            .collect::<PyResult<Vec<_>>>()?;
        let w = SameThreadMut::new(self.get()?);
        let bufs = SameThread::new(&bufs);
        py.detach(move || {
            let bufs = bufs.into_inner();
            // SAFETY: as in `append`.
            SameThread::new(unsafe { w.get() }.append_batch(bufs.iter().map(|b| b.as_slice())))
        })
        .into_inner()
        .py()
    }

    /// The largest record this log takes.
    #[getter]
    fn max_record(&mut self) -> PyResult<usize> {
        Ok(self.get()?.max_record())
    }

    /// How long an append waits for a tethered reader that is too far
    /// behind before it raises `Timeout` (seconds).
    fn set_tether_wait(&mut self, seconds: f64) -> PyResult<()> {
        let wait = util::timeout_arg(Some(seconds))?.unwrap_or(Duration::ZERO);
        self.get()?.set_tether_wait(wait);
        self.tether_wait = wait;
        Ok(())
    }

    /// Starts a pretoucher: a helper thread (pinned to `cpu` if given)
    /// that maps the writer's segment in ahead of its appends, so they
    /// never wait for the kernel's fresh pages. Worth it with a core to
    /// spare (docs/log.md).
    #[pyo3(signature = (cpu=None))]
    fn start_pretouch(&mut self, cpu: Option<usize>) -> PyResult<()> {
        self.get()?.start_pretouch(cpu).py()
    }

    /// Stops the pretoucher, if one runs.
    fn stop_pretouch(&mut self) -> PyResult<()> {
        self.get()?.stop_pretouch();
        Ok(())
    }

    /// Closes the writer. Closing twice is allowed.
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

/// One record read from a log.
#[pyclass(module = "mapshare", name = "LogRecord", frozen)]
pub struct PyLogRecord {
    /// Its sequence number.
    #[pyo3(get)]
    seq: u64,
    /// When it was appended (CLOCK_REALTIME, nanoseconds).
    #[pyo3(get)]
    timestamp_ns: u64,
    /// Its bytes.
    #[pyo3(get)]
    data: Py<PyBytes>,
}

#[pymethods]
impl PyLogRecord {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "LogRecord(seq={}, timestamp_ns={}, data=<{} bytes>)",
            self.seq,
            self.timestamp_ns,
            self.data.bind(py).as_bytes().len()
        )
    }
}

/// A reader of a log with its own position. Iterating yields the records
/// there are now and stops when it has caught up; `next(timeout)` waits
/// for the next one. A reader that fell behind retention raises `Lagged`
/// (with `skipped` and `resume_at`) once, then goes on from `resume_at`.
#[pyclass(module = "mapshare", name = "LogReader")]
pub struct PyLogReader {
    inner: Option<Reader>,
}

// SAFETY: every method takes `&mut self` (PyO3 checks the borrow at run
// time), so no two threads use the reader at once; `Reader` is `Send`.
unsafe impl Sync for PyLogReader {}

impl PyLogReader {
    fn get(&mut self) -> PyResult<&mut Reader> {
        self.inner.as_mut().ok_or_else(closed)
    }
}

fn record(py: Python<'_>, rec: &mapshare::log::Record<'_>) -> PyResult<Py<PyLogRecord>> {
    Py::new(
        py,
        PyLogRecord {
            seq: rec.seq(),
            timestamp_ns: rec.timestamp_ns(),
            data: PyBytes::new(py, rec.bytes()).unbind(),
        },
    )
}

#[pymethods]
impl PyLogReader {
    /// The next record, waiting at most `timeout` seconds (None: as long
    /// as it takes; Ctrl-C interrupts); None on timeout.
    #[pyo3(signature = (timeout = None))]
    fn next(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyLogRecord>>> {
        let timeout = util::timeout_arg(timeout)?;
        let r = self.get()?;
        if let Some(rec) = r.next().py()? {
            return Ok(Some(record(py, &rec)?));
        }
        if timeout == Some(Duration::ZERO) {
            return Ok(None);
        }
        let r = SameThreadMut::new(r);
        let got = blocking(py, timeout, |slice| {
            // SAFETY: only this closure uses the reader until `blocking`
            // returns; the record it returns is turned into bytes and
            // dropped before the reader is used again.
            unsafe { r.get() }.next_timeout(slice)
        })?;
        got.map(|rec| record(py, &rec)).transpose()
    }

    /// Moves to sequence number `seq` (or the first kept after it).
    fn seek(&mut self, seq: u64) -> PyResult<()> {
        self.get()?.seek(seq).py()
    }

    /// The sequence number the next record will have (at least).
    #[getter]
    fn position(&mut self) -> PyResult<u64> {
        Ok(self.get()?.position())
    }

    /// Stores the position under the reader's durable cursor name: a
    /// reader opened later with that name starts here.
    fn commit(&mut self) -> PyResult<()> {
        self.get()?.commit().py()
    }

    /// The first sequence number still in the log.
    fn first_seq(&mut self) -> PyResult<u64> {
        self.get()?.first_seq().py()
    }

    /// Closes the reader (a tethered cursor stops holding writers back).
    fn close(&mut self) {
        self.inner = None;
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyLogRecord>> {
        match self.get()?.next().py()? {
            Some(rec) => record(py, &rec),
            None => Err(PyStopIteration::new_err(())),
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
    ) -> bool {
        self.close();
        false
    }
}

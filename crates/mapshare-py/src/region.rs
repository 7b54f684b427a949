//! `mapshare.Region`: a mapping of a file window, an anonymous memfd or a
//! named `/dev/shm` object, exported through the buffer protocol.

use std::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use mapshare::{Access, Flush, Hint, Refresh, Region};
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::errors::IntoPyResult;
use crate::util;

/// A mapping of a file (any window, read-only, read-write or
/// copy-on-write), of an anonymous shared memfd, or of a named `/dev/shm`
/// object.
///
/// `memoryview(region)` and `numpy.frombuffer(region, dtype)` share the
/// mapping with no copy (read-only for a read-only map). While any such
/// view exists, `close()`, `grow()` and `refresh()` raise `BufferError`:
/// the mapping is never unmapped under a view.
#[pyclass(module = "mapshare", name = "Region")]
pub struct PyRegion {
    region: Option<Region>,
    /// Buffers exported and not yet released.
    exports: AtomicUsize,
}

fn parse_access(access: &str) -> PyResult<Access> {
    match access {
        "r" | "read" | "readonly" => Ok(Access::ReadOnly),
        "rw" | "w" | "readwrite" => Ok(Access::ReadWrite),
        "cow" | "private" | "copy" => Ok(Access::CopyOnWrite),
        other => Err(PyValueError::new_err(format!(
            "access must be 'r', 'rw' or 'cow', not {other:?}"
        ))),
    }
}

fn access_name(access: Access) -> &'static str {
    match access {
        Access::ReadOnly => "r",
        Access::ReadWrite => "rw",
        Access::CopyOnWrite => "cow",
    }
}

fn parse_hint(hint: &str) -> PyResult<Hint> {
    Ok(match hint {
        "normal" => Hint::Normal,
        "sequential" => Hint::Sequential,
        "random" => Hint::Random,
        "willneed" => Hint::WillNeed,
        "dontneed" => Hint::DontNeed,
        "hugepage" => Hint::HugePage,
        other => {
            return Err(PyValueError::new_err(format!(
                "hint must be one of normal, sequential, random, willneed, dontneed, hugepage; not {other:?}"
            )))
        }
    })
}

impl PyRegion {
    pub fn wrap(region: Region) -> PyRegion {
        PyRegion {
            region: Some(region),
            exports: AtomicUsize::new(0),
        }
    }

    fn get(&self) -> PyResult<&Region> {
        self.region
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the region is closed"))
    }

    /// The region, mutably, for a call that may remap it: refused while
    /// buffers are exported.
    fn get_mut(&mut self, what: &str) -> PyResult<&mut Region> {
        let n = self.exports.load(Ordering::Acquire);
        if n > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot {what} the region: {n} buffer view(s) of it still exist; release them first"
            )));
        }
        self.region
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the region is closed"))
    }

    /// A `(offset, length)` window of the region, `length=None` meaning to
    /// its end; out-of-range windows are left to the library to report.
    fn window(&self, offset: u64, length: Option<u64>) -> PyResult<(u64, usize)> {
        let len = self.get()?.len() as u64;
        let length = length.unwrap_or_else(|| len.saturating_sub(offset));
        let length = usize::try_from(length)
            .map_err(|_| PyValueError::new_err("length does not fit in memory"))?;
        Ok((offset, length))
    }
}

#[pymethods]
impl PyRegion {
    /// Opens an existing file and maps a window of it.
    #[staticmethod]
    #[pyo3(signature = (path, access = "rw", offset = 0, length = None))]
    fn open(path: PathBuf, access: &str, offset: u64, length: Option<u64>) -> PyResult<PyRegion> {
        let mut opts = Region::options();
        opts.access(parse_access(access)?);
        match length {
            Some(len) => opts.window(offset, len),
            None => opts.from_offset(offset),
        };
        Ok(PyRegion::wrap(opts.open(path).py()?))
    }

    /// Creates a file of `size` bytes (space reserved on disk) and maps it
    /// read-write. With `exist_ok`, an existing file is opened and grown
    /// to at least `size` bytes instead.
    #[staticmethod]
    #[pyo3(signature = (path, size, exist_ok = false, mode = 0o600))]
    fn create(path: PathBuf, size: u64, exist_ok: bool, mode: u32) -> PyResult<PyRegion> {
        let mut opts = Region::options();
        if exist_ok {
            opts.create(size);
        } else {
            opts.create_new(size);
        }
        opts.mode(mode);
        Ok(PyRegion::wrap(opts.open(path).py()?))
    }

    /// An anonymous shared region of `size` zero bytes (a memfd sealed
    /// against shrinking). A child started with `fork` shares it; pass
    /// `fileno()` to other processes (e.g. `subprocess` `pass_fds`) and
    /// map it there with `Region.from_fd`.
    #[staticmethod]
    fn anonymous(size: usize) -> PyResult<PyRegion> {
        Ok(PyRegion::wrap(Region::anonymous(size).py()?))
    }

    /// Maps all of the file or memfd open as descriptor `fd`, read-write.
    /// The descriptor is duplicated: the caller keeps its own.
    #[staticmethod]
    fn from_fd(fd: i32) -> PyResult<PyRegion> {
        if fd < 0 {
            return Err(PyValueError::new_err(format!("bad file descriptor {fd}")));
        }
        // SAFETY: the descriptor is only borrowed for the duplication; if it
        // is not open, `try_clone_to_owned` fails with EBADF.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned = borrowed.try_clone_to_owned().map_err(PyErr::from)?;
        Ok(PyRegion::wrap(Region::from_fd(owned).py()?))
    }

    /// Creates the named shared-memory object `/dev/shm/NAME` of `size`
    /// bytes. mapshare never removes it for you: call `shm_remove`.
    #[staticmethod]
    fn shm_create(name: &str, size: u64) -> PyResult<PyRegion> {
        Ok(PyRegion::wrap(mapshare::shm::create(name, size).py()?))
    }

    /// Opens the named shared-memory object `/dev/shm/NAME`.
    #[staticmethod]
    fn shm_open(name: &str) -> PyResult<PyRegion> {
        Ok(PyRegion::wrap(mapshare::shm::open(name).py()?))
    }

    /// Opens `/dev/shm/NAME`, creating it with `size` bytes if missing
    /// (and growing it to `size` if smaller).
    #[staticmethod]
    fn shm_open_or_create(name: &str, size: u64) -> PyResult<PyRegion> {
        Ok(PyRegion::wrap(
            mapshare::shm::open_or_create(name, size).py()?,
        ))
    }

    /// Bytes mapped.
    #[getter]
    fn size(&self) -> PyResult<usize> {
        Ok(self.get()?.len())
    }

    fn __len__(&self) -> PyResult<usize> {
        self.size()
    }

    /// Offset of the mapped window in the file.
    #[getter]
    fn offset(&self) -> PyResult<u64> {
        Ok(self.get()?.offset())
    }

    /// `'r'`, `'rw'` or `'cow'`.
    #[getter]
    fn access(&self) -> PyResult<&'static str> {
        Ok(access_name(self.get()?.access()))
    }

    /// True unless the region is mapped read-only.
    #[getter]
    fn writable(&self) -> PyResult<bool> {
        Ok(self.get()?.access() != Access::ReadOnly)
    }

    /// The file's path (`memfd:...` for an anonymous region).
    #[getter]
    fn path(&self) -> PyResult<String> {
        Ok(self.get()?.origin().as_path().display().to_string())
    }

    /// True after `close()`.
    #[getter]
    fn closed(&self) -> bool {
        self.region.is_none()
    }

    /// Buffer views of the region that are still alive.
    #[getter]
    fn exports(&self) -> usize {
        self.exports.load(Ordering::Acquire)
    }

    /// The descriptor of the mapped file or memfd (owned by the region).
    fn fileno(&self) -> PyResult<i32> {
        Ok(self.get()?.as_fd().as_raw_fd())
    }

    /// A copy of `length` bytes at `offset` (default: to the end).
    #[pyo3(signature = (offset = 0, length = None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        offset: u64,
        length: Option<u64>,
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let (offset, length) = self.window(offset, length)?;
        let region = self.get()?;
        // Checked before the bytes object is allocated: a huge `length`
        // is OutOfBounds, not a MemoryError.
        let size = region.len() as u64;
        if offset
            .checked_add(length as u64)
            .is_none_or(|end| end > size)
        {
            return Err(crate::errors::to_py(mapshare::Error::OutOfBounds {
                origin: region.origin().clone(),
                offset,
                len: length as u64,
                region_len: size,
            }));
        }
        let mut err = None;
        let bytes = pyo3::types::PyBytes::new_with(py, length, |buf| {
            if let Err(e) = region.read_at(offset, buf) {
                err = Some(e);
            }
            Ok(())
        })?;
        match err {
            Some(e) => Err(crate::errors::to_py(e)),
            None => Ok(bytes),
        }
    }

    /// Copies `data` (any buffer) into the region at `offset`. Never grows
    /// the region: a write past its end raises `OutOfBounds` and writes
    /// nothing.
    ///
    /// `data` may be a view of this very region (or of another mapping of
    /// the same file): overlapping bytes are copied out first.
    fn write(slf: &Bound<'_, Self>, offset: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        // The argument's buffer first: it may be this region, whose
        // `__getbuffer__` borrows it.
        let data = util::Bytes::new(data)?;
        let mut this = slf.try_borrow_mut()?;
        let region = this
            .region
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the region is closed"))?;
        let src = data.as_slice();
        let base = region.as_ptr() as usize;
        let (lo, hi) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
        if lo < base + region.len() && base < hi {
            // A reference into the mapping must not live while the
            // mapping is written: copy it out.
            let copy = src.to_vec();
            return region.write_at(offset, &copy).py();
        }
        region.write_at(offset, src).py()
    }

    /// Writes changes back to the file (`msync`): all of it, or `length`
    /// bytes at `offset`; waits for the device unless `sync=False`.
    #[pyo3(signature = (offset = 0, length = None, sync = true))]
    fn flush(&self, py: Python<'_>, offset: u64, length: Option<u64>, sync: bool) -> PyResult<()> {
        let (offset, length) = self.window(offset, length)?;
        let region = self.get()?;
        let mode = if sync { Flush::Sync } else { Flush::Async };
        py.detach(|| region.flush_range(offset, length, mode)).py()
    }

    /// Tells the kernel how the region (or a window of it) will be used:
    /// `'normal'`, `'sequential'`, `'random'`, `'willneed'`, `'dontneed'`
    /// or `'hugepage'` (`madvise`).
    #[pyo3(signature = (hint, offset = 0, length = None))]
    fn advise(&self, hint: &str, offset: u64, length: Option<u64>) -> PyResult<()> {
        let hint = parse_hint(hint)?;
        let (offset, length) = self.window(offset, length)?;
        self.get()?.advise_range(hint, offset, length).py()
    }

    /// `(resident_pages, total_pages)` from `mincore`.
    fn residency(&self) -> PyResult<(usize, usize)> {
        let r = self.get()?.residency().py()?;
        Ok((r.resident, r.total))
    }

    /// Touches every page so later accesses don't fault.
    fn prefault(&self, py: Python<'_>) -> PyResult<()> {
        let region = self.get()?;
        py.detach(|| region.prefault()).py()
    }

    /// The file's current size (it may differ from `size` if another
    /// process grew or truncated it).
    fn file_size(&self) -> PyResult<u64> {
        self.get()?.file_len().py()
    }

    /// Raises `Truncated` if an access faulted because the file was cut
    /// behind this process's back (those bytes read as zeros).
    fn check(&self) -> PyResult<()> {
        self.get()?.check().py()
    }

    /// Follows the file's size: remaps to its new end if it grew (returns
    /// True), raises `Truncated` if it shrank under the window.
    fn refresh(&mut self) -> PyResult<bool> {
        match self.get_mut("refresh")?.refresh().py()? {
            Refresh::Unchanged => Ok(false),
            Refresh::Grown { .. } => Ok(true),
        }
    }

    /// Grows the region to `size` bytes, extending the file (space
    /// reserved) if needed.
    fn grow(&mut self, size: usize) -> PyResult<()> {
        self.get_mut("grow")?.grow(size).py()
    }

    /// Unmaps the region. Raises `BufferError` while buffer views of it
    /// exist (nothing is unmapped then). Closing twice is allowed.
    fn close(&mut self) -> PyResult<()> {
        if self.region.is_none() {
            return Ok(());
        }
        self.get_mut("close")?;
        self.region = None;
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

    fn __repr__(&self) -> String {
        match &self.region {
            None => "<mapshare.Region closed>".to_string(),
            Some(r) => format!(
                "<mapshare.Region {} offset={} size={} access={}>",
                r.origin(),
                r.offset(),
                r.len(),
                access_name(r.access())
            ),
        }
    }

    /// # Safety
    ///
    /// Called by CPython with a valid `view` (the buffer protocol).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.try_borrow()?;
        let region = this.get()?;
        let readonly = region.access() == Access::ReadOnly;
        let ptr = NonNull::new(region.as_ptr().cast_mut()).unwrap_or(NonNull::dangling());
        // SAFETY: the mapping stays in place until `close`, `grow` or
        // `refresh`, which refuse while `exports` is not zero; it is
        // counted below, before CPython can use the view.
        unsafe { util::export(view, slf.as_any(), ptr, region.len(), readonly, flags)? };
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

/// Removes the named shared-memory object `/dev/shm/NAME`: the one way a
/// named region is ever removed (mapshare has no resource tracker).
#[pyfunction]
pub fn shm_remove(name: &str) -> PyResult<()> {
    mapshare::shm::remove(name).py()
}

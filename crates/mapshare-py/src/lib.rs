//! The `mapshare` Python package's native module (`mapshare._native`): a
//! thin layer of PyO3 classes over the Rust library, with no logic of its
//! own beyond what Python needs: owning what Rust borrows, exporting
//! memory through the buffer protocol (and refusing to unmap under a live
//! view), blocking with the GIL released, and exceptions.
//!
//! The Python side (`python/mapshare/`) re-exports these classes and adds
//! the numpy helpers. See `README.md` (Python) and `docs/python.md`.

mod errors;
mod log;
mod queue;
mod region;
mod snapshot;
mod sync;
mod util;
mod view;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<region::PyRegion>()?;
    m.add_function(wrap_pyfunction!(region::shm_remove, m)?)?;
    m.add_class::<sync::PySharedFile>()?;
    m.add_class::<sync::PyMutex>()?;
    m.add_class::<sync::PyGuard>()?;
    m.add_class::<sync::PySemaphore>()?;
    m.add_class::<sync::PyEvent>()?;
    m.add_class::<sync::PyFileLock>()?;
    m.add_class::<sync::PyRangeGuard>()?;
    m.add_class::<queue::PyProducer>()?;
    m.add_class::<queue::PyConsumer>()?;
    m.add_class::<queue::PyRecordView>()?;
    m.add_class::<snapshot::PySnapshotWriter>()?;
    m.add_class::<snapshot::PySnapshotReader>()?;
    m.add_class::<snapshot::PySnapshotView>()?;
    m.add_class::<log::PyLog>()?;
    m.add_class::<log::PyLogWriter>()?;
    m.add_class::<log::PyLogReader>()?;
    m.add_class::<log::PyLogRecord>()?;
    m.add("SLICE_SECONDS", util::SLICE.as_secs_f64())?;
    Ok(())
}

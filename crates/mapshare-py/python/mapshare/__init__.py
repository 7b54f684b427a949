"""mapshare: share data between processes on one machine through
memory-mapped files, safely and fast.

A thin layer over the Rust library of the same name:

- ``Region``: map any window of a file, an anonymous memfd or a named
  ``/dev/shm`` object; ``memoryview(region)`` and
  ``numpy.frombuffer(region, dtype)`` share the mapping with no copy.
- ``SharedFile`` with a robust ``Mutex``, a ``Semaphore`` and an ``Event``
  inside it; byte-range ``FileLock``.
- ``Producer``/``Consumer``: a zero-copy single-producer single-consumer
  queue.
- ``SnapshotWriter``/``SnapshotReader``: one writer publishes whole
  versions, any number of readers read the latest in place.
- ``Log``: a persistent broadcast log with replay and durable cursors.
- ``mapshare.numpy``: publish and view numpy arrays with no copy.

Every blocking call takes ``timeout=`` in seconds, releases the GIL while it
waits, and is interrupted by Ctrl-C within 50 ms. Every error is a
``mapshare.Error`` subclass named after the Rust variant, with the Rust
message. mapshare never removes a file or a shared-memory object behind
your back.
"""

from ._native import *  # noqa: F401,F403
from ._native import (  # noqa: F401
    Error,
    InvalidArgument,
    Region,
    SharedFile,
    Mutex,
    Guard,
    Semaphore,
    Event,
    FileLock,
    RangeGuard,
    Producer,
    Consumer,
    RecordView,
    SnapshotWriter,
    SnapshotReader,
    SnapshotView,
    Log,
    LogWriter,
    LogReader,
    LogRecord,
    shm_remove,
)

__all__ = [name for name in dir() if not name.startswith("_")]

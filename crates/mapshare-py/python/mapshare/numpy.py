"""Publish numpy arrays through a snapshot and read them with no copy.

A published array is one snapshot version: a 64-byte-aligned header that
describes it (magic ``MSNDARR1``, then the header length and a JSON
``{"dtype": ..., "shape": [...]}``), followed by the array's bytes in C
order. Readers get a read-only ``ndarray`` over the pinned version itself.

    writer = mapshare.SnapshotWriter(path)
    mapshare.numpy.publish_array(writer, frame)

    reader = mapshare.SnapshotReader(path)
    with mapshare.numpy.view_array(reader) as v:
        total = v.array.sum()      # reads the shared memory, no copy

The array is valid inside the block only: keep a copy (``v.array.copy()``)
to use it later. Leaving the block while another reference to the array
(or a view of it) is still alive raises ``BufferError`` and keeps the
version pinned, so memory is never reused under a live array.
"""

import contextlib
import json
import struct

import numpy as _np

MAGIC = b"MSNDARR1"
ALIGN = 64


def encode_header(arr):
    """The header ``publish_array`` puts before ``arr``'s bytes."""
    meta = json.dumps({"dtype": arr.dtype.str, "shape": list(arr.shape)}).encode()
    size = len(MAGIC) + 4 + len(meta)
    size = (size + ALIGN - 1) // ALIGN * ALIGN
    return MAGIC + struct.pack("<I", size) + meta + b" " * (size - len(MAGIC) - 4 - len(meta))


def decode(buf):
    """A read-only ndarray over a published array's bytes ``buf`` (any
    buffer: a snapshot view, ``bytes`` from ``reader.read()``)."""
    mv = memoryview(buf)
    if mv.nbytes < len(MAGIC) + 4 or bytes(mv[: len(MAGIC)]) != MAGIC:
        raise ValueError("not a published numpy array (bad magic)")
    (size,) = struct.unpack("<I", mv[len(MAGIC) : len(MAGIC) + 4])
    if size < len(MAGIC) + 4 or size > mv.nbytes:
        raise ValueError(f"bad array header length {size}")
    try:
        meta = json.loads(bytes(mv[len(MAGIC) + 4 : size]))
        dtype = _np.dtype(meta["dtype"])
        shape = tuple(int(n) for n in meta["shape"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"bad array header: {e}") from None
    if dtype.hasobject:
        raise ValueError("object arrays cannot be shared")
    count = 1
    for n in shape:
        if n < 0:
            raise ValueError(f"bad array shape {shape}")
        count *= n
    if size + count * dtype.itemsize != mv.nbytes:
        raise ValueError(
            f"array of {shape} {dtype} needs {count * dtype.itemsize} bytes, "
            f"the value has {mv.nbytes - size}"
        )
    arr = _np.frombuffer(mv, dtype=dtype, count=count, offset=size).reshape(shape)
    mv.release()  # the array holds its own export
    return arr


def publish_array(writer, arr):
    """Publishes ``arr`` (made C-contiguous if it is not) as the next
    version of ``writer``'s snapshot; returns the generation."""
    arr = _np.ascontiguousarray(arr)
    if arr.dtype.hasobject:
        raise ValueError("object arrays cannot be shared")
    return writer.publish_parts([encode_header(arr), arr.reshape(-1).view(_np.uint8)])


class ArrayView:
    """What ``view_array`` yields: ``generation`` and ``array`` (a
    read-only ndarray over the pinned version). ``array`` becomes None when
    the block ends."""

    __slots__ = ("generation", "array")

    def __init__(self, generation, array):
        self.generation = generation
        self.array = array

    def __repr__(self):
        return f"ArrayView(generation={self.generation}, array={self.array!r})"


@contextlib.contextmanager
def view_array(reader, verify=False):
    """``with view_array(reader) as v:`` ``v.array`` is a read-only ndarray
    over the latest published version, pinned for the block, and
    ``v.generation`` its generation. Raises ``LookupError`` if nothing was
    published yet. Keep ``v.array.copy()`` to use the data after the block;
    a reference to ``v.array`` itself kept past the block makes leaving it
    raise ``BufferError`` (the version stays pinned until that reference
    is gone)."""
    view = reader.view(verify=verify)
    if view is None:
        raise LookupError("nothing was published yet")
    with view as mv:
        out = ArrayView(view.generation, decode(mv))
        try:
            yield out
        finally:
            out.array = None


def read_array(reader):
    """``(generation, arr)``: a private, verified copy of the latest array,
    or None if nothing was published yet."""
    got = reader.read_with_generation()
    if got is None:
        return None
    generation, data = got
    return generation, decode(data)

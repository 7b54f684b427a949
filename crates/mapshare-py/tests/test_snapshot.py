"""Snapshots from Python: publish, read, pinned zero-copy views,
wait_newer, a writer in another process, and the numpy helpers."""

import gc

import numpy as np
import pytest

import mapshare
import mapshare.numpy as mnp


def test_publish_read_and_generations(tmp_path):
    path = tmp_path / "s"
    with mapshare.SnapshotWriter(path) as w:
        r = mapshare.SnapshotReader(path)
        assert w.generation == 0 and r.generation == 0
        assert r.read() is None and r.view() is None
        assert r.read_with_generation() is None
        assert w.publish(b"v1") == 1
        assert w.publish(bytearray(b"v2")) == 2
        assert r.read() == b"v2"
        assert r.read_with_generation() == (2, b"v2")
        assert w.publish(np.arange(3, dtype=np.uint8)) == 3
        assert r.read() == b"\0\1\2"
        assert w.publish_parts([b"head:", memoryview(b"body")]) == 4
        assert r.read() == b"head:body"
        assert r.generation == w.generation == 4
        # Larger than the slots: they grow.
        big = bytes(range(256)) * 100
        w.publish(big)
        assert r.read() == big
        r.close()


def test_view_is_zero_copy_read_only_pinned_and_invalid_after(tmp_path):
    path = tmp_path / "s"
    w = mapshare.SnapshotWriter(path)
    r = mapshare.SnapshotReader(path)
    w.publish(b"pinned version")
    view = r.view()
    assert view.generation == 1 and len(view) == 14
    with view as mv:
        assert mv.readonly and bytes(mv) == b"pinned version"
        with pytest.raises(TypeError):
            mv[0] = 0
        # The writer goes on; the pinned version does not change under us.
        for i in range(10):
            w.publish(b"newer %02d......" % i)
        assert bytes(mv) == b"pinned version"
        # The reader is busy while a view is open.
        with pytest.raises(BufferError):
            r.read()
        with pytest.raises(BufferError):
            r.close()
    with pytest.raises(ValueError):
        mv[0]
    assert r.read() == b"newer 09......"
    with r.view(verify=True) as mv2:
        assert bytes(mv2) == b"newer 09......"


def test_a_view_escaping_the_block_is_buffer_error_and_stays_pinned(tmp_path):
    path = tmp_path / "s"
    w = mapshare.SnapshotWriter(path)
    r = mapshare.SnapshotReader(path)
    w.publish(bytes(range(16)))
    with pytest.raises(BufferError):
        with r.view() as mv:
            arr = np.frombuffer(mv, dtype=np.uint8)
    for _ in range(5):
        w.publish(b"\xff" * 16)
    assert arr.tolist() == list(range(16))  # pinned, untouched
    del arr, mv
    gc.collect()
    assert r.read() == b"\xff" * 16


def test_wait_newer_times_out_then_sees_a_writer_in_another_process(tmp_path, spawn_py):
    path = tmp_path / "s"
    r = None
    w = mapshare.SnapshotWriter(path)
    w.publish(b"parent")
    w.close()
    r = mapshare.SnapshotReader(path)
    with pytest.raises(mapshare.Timeout) as e:
        r.wait_newer(1, timeout=0.05)
    assert e.value.path == str(path)
    assert r.wait_newer(0, timeout=0) == 1  # already newer: at once
    import subprocess

    child = spawn_py(
        """
import sys, mapshare
w = mapshare.SnapshotWriter(sys.argv[1])
print("writer", flush=True)
sys.stdin.readline()
w.publish(b"from the child")
""",
        path,
        stdin=subprocess.PIPE,
    )
    child.expect("writer")
    # The child is the writer now: a second one is refused.
    with pytest.raises(mapshare.RoleTaken):
        mapshare.SnapshotWriter(path)
    child.proc.stdin.write(b"go\n")
    child.proc.stdin.flush()
    assert r.wait_newer(1, timeout=30) == 2
    assert r.read() == b"from the child"
    child.ok()


def test_python_readers_in_other_processes(tmp_path, run_py):
    path = tmp_path / "s"
    w = mapshare.SnapshotWriter(path)
    w.publish(b"for everyone")
    code = """
import sys, mapshare
r = mapshare.SnapshotReader(sys.argv[1])
with r.view() as mv:
    print(bytes(mv).decode())
print(r.read_with_generation()[0])
"""
    for _ in range(2):
        assert run_py(code, path).split() == ["for", "everyone", "1"]


def test_reader_of_a_missing_file_is_not_found(tmp_path):
    with pytest.raises(mapshare.NotFound) as e:
        mapshare.SnapshotReader(tmp_path / "nope")
    assert e.value.path == str(tmp_path / "nope")


def test_slow_readers_fail_policy_is_busy(tmp_path):
    path = tmp_path / "s"
    w = mapshare.SnapshotWriter(path, slow_readers="fail")
    w.publish(b"a")
    readers = []
    views = []
    # Pin every slot there is; the writer then refuses rather than waits.
    with pytest.raises(mapshare.Busy):
        for _ in range(64):
            r = mapshare.SnapshotReader(path)
            v = r.view()
            v.__enter__()
            readers.append(r)
            views.append(v)
            w.publish(b"b")
    for v in views:
        v.release()
    w.publish(b"c")
    assert readers[0].read() == b"c"
    with pytest.raises(ValueError):
        mapshare.SnapshotWriter(tmp_path / "t", slow_readers="never")


# numpy helpers


def test_publish_array_and_view_array_zero_copy(tmp_path):
    path = tmp_path / "s"
    w = mapshare.SnapshotWriter(path)
    r = mapshare.SnapshotReader(path)
    frame = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    gen = mnp.publish_array(w, frame)
    assert gen == 1
    with mnp.view_array(r) as v:
        a = v.array
        assert v.generation == 1
        assert a.shape == (2, 3, 4) and a.dtype == np.float32
        assert np.array_equal(a, frame)
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[0, 0, 0] = 1
        # No copy: the array's bytes are the pinned version's bytes.
        base = a
        while not isinstance(base, memoryview):
            base = base.base
        assert isinstance(base.obj, mapshare.SnapshotView)
        whole = np.frombuffer(base.obj, dtype=np.uint8)
        start = whole.ctypes.data
        assert start < a.ctypes.data < start + whole.nbytes
        assert a.ctypes.data + a.nbytes == start + whole.nbytes
        del whole, base, a
    assert v.array is None


def test_view_array_raises_buffer_error_if_the_array_escapes(tmp_path):
    path = tmp_path / "s"
    w = mapshare.SnapshotWriter(path)
    r = mapshare.SnapshotReader(path)
    mnp.publish_array(w, np.full(10, 7, dtype=np.int64))
    with pytest.raises(BufferError):
        with mnp.view_array(r) as v:
            kept = v.array
    mnp.publish_array(w, np.zeros(10, dtype=np.int64))
    assert kept.tolist() == [7] * 10  # still pinned
    del kept
    gc.collect()
    with mnp.view_array(r) as v:
        assert v.array.tolist() == [0] * 10
        copy = v.array.copy()
    assert copy.tolist() == [0] * 10  # a copy may leave the block


def test_publish_array_of_a_non_contiguous_array_and_read_array(tmp_path):
    path = tmp_path / "s"
    w = mapshare.SnapshotWriter(path)
    r = mapshare.SnapshotReader(path)
    with pytest.raises(LookupError):
        with mnp.view_array(r):
            pass
    assert mnp.read_array(r) is None
    src = np.arange(20, dtype=np.int16).reshape(4, 5)[:, ::2]
    mnp.publish_array(w, src)
    gen, arr = mnp.read_array(r)
    assert gen == 1 and np.array_equal(arr, src) and arr.dtype == np.int16
    with pytest.raises(ValueError):
        mnp.publish_array(w, np.array([object()]))
    w.publish(b"not an array")
    with pytest.raises(ValueError, match="magic"):
        mnp.read_array(r)

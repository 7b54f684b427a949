"""Regions: files, anonymous memfds and /dev/shm objects, exported through
the buffer protocol with no copy, never unmapped under a view and never
unlinked behind the user's back."""

import gc
import os

import numpy as np
import pytest

import mapshare

PAGE = os.sysconf("SC_PAGE_SIZE")


def test_create_then_open_share_the_file(tmp_path):
    path = tmp_path / "f"
    with mapshare.Region.create(path, 10000) as a:
        assert a.size == len(a) == 10000
        assert a.access == "rw" and a.writable and a.offset == 0
        assert a.path == str(path)
        a.write(123, b"hello")
        b = mapshare.Region.open(path)
        assert b.read(123, 5) == b"hello"
        b.write(0, bytearray(b"xy"))
        assert a.read(0, 2) == b"xy"
        b.close()
        assert b.closed and not a.closed
    assert os.path.getsize(path) == 10000


def test_create_refuses_an_existing_file_unless_exist_ok(tmp_path):
    path = tmp_path / "f"
    mapshare.Region.create(path, 100).close()
    with pytest.raises(mapshare.AlreadyExists) as e:
        mapshare.Region.create(path, 100)
    assert e.value.path == str(path)
    with mapshare.Region.create(path, 300, exist_ok=True) as r:
        assert r.size == 300
    assert os.path.getsize(path) == 300


def test_open_missing_file_is_not_found_with_its_path(tmp_path):
    path = tmp_path / "missing"
    with pytest.raises(mapshare.NotFound) as e:
        mapshare.Region.open(path)
    assert isinstance(e.value, mapshare.Error)
    assert e.value.path == str(path)
    assert str(path) in str(e.value)


def test_window_at_an_unaligned_offset(tmp_path):
    path = tmp_path / "f"
    data = bytes(range(256)) * 40  # 10240 bytes, not page aligned
    path.write_bytes(data)
    with mapshare.Region.open(path, access="r", offset=PAGE + 7, length=1000) as r:
        assert (r.offset, r.size) == (PAGE + 7, 1000)
        assert r.read() == data[PAGE + 7 : PAGE + 1007]
        mv = memoryview(r)
        assert mv.nbytes == 1000 and mv[0] == data[PAGE + 7]
        assert bytes(mv[-3:]) == data[PAGE + 1004 : PAGE + 1007]
        mv.release()
    # To the end of the file when no length is given.
    with mapshare.Region.open(path, offset=13) as r:
        assert r.size == len(data) - 13
        r.write(0, b"!")
    assert path.read_bytes()[13] == ord("!")


def test_window_out_of_range_carries_offset_length_size(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(mapshare.WindowOutOfRange) as e:
        mapshare.Region.open(path, offset=90, length=20)
    err = e.value
    assert (err.offset, err.length, err.size) == (90, 20, 100)
    assert err.path == str(path)
    assert str(path) in str(err) and "100" in str(err)


def test_read_only_map_exports_a_read_only_buffer(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abcdefgh")
    with mapshare.Region.open(path, access="r") as r:
        assert r.access == "r" and not r.writable
        mv = memoryview(r)
        assert mv.readonly
        with pytest.raises(TypeError):
            mv[0] = 1
        arr = np.frombuffer(r, dtype=np.uint8)
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 1
        with pytest.raises(mapshare.ReadOnly):
            r.write(0, b"z")
        mv.release()
        del arr
    assert path.read_bytes() == b"abcdefgh"


def test_copy_on_write_map_keeps_writes_private(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abcdefgh")
    with mapshare.Region.open(path, access="cow") as r:
        assert r.access == "cow"
        memoryview(r)[0] = ord("Z")
        assert r.read(0, 1) == b"Z"
    assert path.read_bytes() == b"abcdefgh"


def test_numpy_frombuffer_shares_the_mapping(tmp_path):
    path = tmp_path / "f"
    with mapshare.Region.create(path, 4096) as r:
        arr = np.frombuffer(r, dtype=np.uint32)
        assert arr.flags.writeable and arr.shape == (1024,)
        # Region -> array.
        r.write(8, (0xDEADBEEF).to_bytes(4, "little"))
        assert arr[2] == 0xDEADBEEF
        # Array -> region, and to another mapping of the file.
        arr[5] = 0x01020304
        assert r.read(20, 4) == (0x01020304).to_bytes(4, "little")
        with mapshare.Region.open(path) as other:
            assert other.read(20, 4) == (0x01020304).to_bytes(4, "little")
        # The array's data lies inside the mapping: a memoryview write is
        # seen by it too.
        mv = memoryview(r).cast("I")
        mv[7] = 77
        assert arr[7] == 77
        mv.release()
        del arr


def test_close_with_live_views_raises_buffer_error_and_works_after(tmp_path):
    r = mapshare.Region.create(tmp_path / "f", 4096)
    mv = memoryview(r)
    arr = np.frombuffer(r, dtype=np.uint8)
    assert r.exports == 2
    with pytest.raises(BufferError):
        r.close()
    assert not r.closed
    mv[0] = 9  # still mapped
    assert arr[0] == 9
    mv.release()
    with pytest.raises(BufferError):
        r.close()
    del arr
    gc.collect()
    assert r.exports == 0
    r.close()
    assert r.closed
    r.close()  # twice is fine
    with pytest.raises(ValueError):
        memoryview(r)
    with pytest.raises(ValueError):
        r.read()


def test_with_block_exit_refuses_to_unmap_under_a_view(tmp_path):
    with pytest.raises(BufferError):
        with mapshare.Region.create(tmp_path / "f", 4096) as r:
            mv = memoryview(r)
    assert not r.closed
    mv.release()
    r.close()


def test_grow_and_refresh_refuse_under_views(tmp_path):
    path = tmp_path / "f"
    with mapshare.Region.create(path, 4096) as r:
        mv = memoryview(r)
        with pytest.raises(BufferError):
            r.grow(8192)
        with pytest.raises(BufferError):
            r.refresh()
        assert r.size == 4096
        mv.release()
        r.grow(8192)
        assert r.size == 8192 and os.path.getsize(path) >= 8192
        r.write(8000, b"end")
        assert r.refresh() is False


def test_refresh_follows_a_file_grown_elsewhere(tmp_path):
    path = tmp_path / "f"
    with mapshare.Region.create(path, 4096) as r:
        with open(path, "r+b") as f:
            f.truncate(3 * 4096)
        assert r.file_size() == 3 * 4096
        assert r.refresh() is True
        assert r.size == 3 * 4096


def test_flush_advise_residency_prefault(tmp_path):
    path = tmp_path / "f"
    with mapshare.Region.create(path, 16 * PAGE) as r:
        r.write(5, b"durable")
        r.flush()
        r.flush(0, PAGE, sync=False)
        with open(path, "rb") as f:
            f.seek(5)
            assert f.read(7) == b"durable"
        for hint in ["normal", "sequential", "random", "willneed", "dontneed"]:
            r.advise(hint)
        r.advise("willneed", offset=PAGE, length=PAGE)
        with pytest.raises(ValueError, match="hint"):
            r.advise("fast")
        r.prefault()
        resident, total = r.residency()
        assert total == 16
        assert resident == 16  # prefaulted, and tmpfs/page cache keeps them
        # dontneed on a shared file mapping keeps the data.
        r.advise("dontneed")
        assert r.read(5, 7) == b"durable"


def test_write_past_the_end_is_out_of_bounds_and_writes_nothing(tmp_path):
    with mapshare.Region.create(tmp_path / "f", 100) as r:
        with pytest.raises(mapshare.OutOfBounds) as e:
            r.write(98, b"abc")
        assert (e.value.offset, e.value.length, e.value.region_len) == (98, 3, 100)
        assert r.read(98, 2) == b"\0\0"


def test_reads_out_of_bounds_are_refused_before_allocating(tmp_path):
    with mapshare.Region.create(tmp_path / "f", 4096) as r:
        with pytest.raises(mapshare.OutOfBounds) as e:
            r.read(0, 2**62)  # not a MemoryError
        assert (e.value.offset, e.value.length, e.value.region_len) == (0, 2**62, 4096)
        with pytest.raises(mapshare.OutOfBounds):
            r.read(4000, 200)
        with pytest.raises(mapshare.OutOfBounds):
            r.read(5000)
        with pytest.raises(mapshare.OutOfBounds):
            r.read(2**64 - 1, 1)
        assert r.read(4096) == b""
        with pytest.raises(mapshare.OutOfBounds):
            r.flush(4000, 200)
        with pytest.raises(mapshare.OutOfBounds):
            r.advise("normal", 0, 2**40)


def test_anonymous_region_is_zeroed_and_shared_through_its_fd(tmp_path, run_py):
    with mapshare.Region.anonymous(8192) as r:
        assert r.size == 8192 and r.read() == b"\0" * 8192
        assert r.path.startswith("memfd:")
        r.write(100, b"from parent")
        fd = r.fileno()
        out = run_py(
            """
            import sys, mapshare
            r = mapshare.Region.from_fd(int(sys.argv[1]))
            print(r.size, r.read(100, 11).decode())
            r.write(0, b"from child")
            """,
            fd,
            pass_fds=(fd,),
        )
        assert out.split() == ["8192", "from", "parent"]
        assert r.read(0, 10) == b"from child"


def test_from_fd_refuses_a_bad_descriptor():
    with pytest.raises(ValueError):
        mapshare.Region.from_fd(-1)
    with pytest.raises(OSError):
        mapshare.Region.from_fd(987654)


def test_shm_create_open_remove(shm_name):
    shm_path = f"/dev/shm/{shm_name}"
    with mapshare.Region.shm_create(shm_name, 5000) as a:
        assert a.size == 5000
        a.write(0, b"named")
        with pytest.raises(mapshare.AlreadyExists):
            mapshare.Region.shm_create(shm_name, 5000)
        with mapshare.Region.shm_open(shm_name) as b:
            assert b.read(0, 5) == b"named"
        with mapshare.Region.shm_open_or_create(shm_name, 5000) as c:
            assert c.read(0, 5) == b"named"
    assert os.path.exists(shm_path)
    mapshare.shm_remove(shm_name)
    assert not os.path.exists(shm_path)
    with pytest.raises(mapshare.NotFound):
        mapshare.Region.shm_open(shm_name)
    with pytest.raises(mapshare.NotFound):
        mapshare.shm_remove(shm_name)


def test_shm_open_or_create_creates(shm_name):
    with mapshare.Region.shm_open_or_create(shm_name, 4096) as r:
        assert r.size == 4096
    assert os.path.exists(f"/dev/shm/{shm_name}")


def test_bad_shm_name_is_invalid_name():
    with pytest.raises(mapshare.InvalidName) as e:
        mapshare.Region.shm_create("a/b", 10)
    assert e.value.name == "a/b"


def test_nothing_is_unlinked_behind_the_users_back(tmp_path, shm_name, run_py):
    """Closed, garbage-collected or exited: the file and the /dev/shm object
    stay (no resource tracker)."""
    path = tmp_path / "f"
    r = mapshare.Region.create(path, 4096)
    s = mapshare.Region.shm_create(shm_name, 4096)
    s.write(0, b"kept")
    r.close()
    del r, s
    gc.collect()
    assert path.exists()
    assert os.path.exists(f"/dev/shm/{shm_name}")
    # Another process opens both and exits without closing.
    run_py(
        """
        import sys, mapshare
        a = mapshare.Region.open(sys.argv[1])
        b = mapshare.Region.shm_open(sys.argv[2])
        assert b.read(0, 4) == b"kept"
        """,
        path,
        shm_name,
    )
    assert path.exists()
    with mapshare.Region.shm_open(shm_name) as again:
        assert again.read(0, 4) == b"kept"


def test_truncation_behind_our_back_is_truncated_not_a_crash(tmp_path, run_py):
    """A file cut under a live mapping: reading the lost pages through a
    memoryview does not crash the interpreter, and `check()` reports
    Truncated with the sizes. Run in a child so a crash would show as a
    signal, not take pytest down."""
    path = tmp_path / "f"
    out = run_py(
        """
        import os, sys, mapshare
        path = sys.argv[1]
        r = mapshare.Region.create(path, 4 * 4096)
        r.write(0, b"x" * (4 * 4096))
        r.check()
        os.truncate(path, 4096)
        mv = memoryview(r)
        seen = bytes(mv[3 * 4096 : 3 * 4096 + 4])  # a vanished page
        try:
            r.check()
        except mapshare.Truncated as e:
            print(e.expected, e.actual, e.path == path, seen)
        else:
            print("no error")
        """,
        path,
    )
    expected, actual, same_path, seen = out.split()
    assert int(expected) == 4 * 4096
    assert int(actual) <= 4096
    assert same_path == "True"
    assert seen == "b'\\x00\\x00\\x00\\x00'"

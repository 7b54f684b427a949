"""The SPSC queue from Python: any buffer in, bytes or a zero-copy view
out, iteration, and what a gone or dead peer looks like."""

import gc

import numpy as np
import pytest

import mapshare


def test_send_accepts_any_buffer_and_recv_returns_bytes(tmp_path):
    q = tmp_path / "q"
    with mapshare.Producer(q, 4096) as p, mapshare.Consumer(q) as c:
        arr = np.arange(4, dtype=np.uint16)
        p.send(b"bytes")
        p.send(bytearray(b"bytearray"))
        p.send(memoryview(b"xxmemoryview")[2:])
        p.send(arr)
        p.send(b"\0")
        assert c.pending_bytes() > 0
        got = [c.recv(timeout=5) for _ in range(5)]
        assert all(type(g) is bytes for g in got)
        assert got[:3] == [b"bytes", b"bytearray", b"memoryview"]
        assert np.frombuffer(got[3], dtype=np.uint16).tolist() == [0, 1, 2, 3]
        assert got[4] == b"\0"
        assert c.try_recv() is None
        assert c.pending_bytes() == 0


def test_send_refuses_what_is_not_one_contiguous_buffer(tmp_path):
    q = tmp_path / "q"
    with mapshare.Producer(q, 4096) as p, mapshare.Consumer(q) as c:
        with pytest.raises(TypeError):
            p.send("text is not bytes")
        with pytest.raises((BufferError, TypeError, ValueError)):
            p.send(np.arange(10)[::2])
        assert c.try_recv() is None


def test_recv_view_is_zero_copy_read_only_and_invalid_after_the_block(tmp_path):
    q = tmp_path / "q"
    with mapshare.Producer(q, 4096) as p, mapshare.Consumer(q) as c:
        p.send(b"in place")
        p.send(b"next")
        rv = c.recv_view(timeout=5)
        assert len(rv) == 8
        with rv as mv:
            assert isinstance(mv, memoryview)
            assert mv.readonly and bytes(mv) == b"in place"
            with pytest.raises(TypeError):
                mv[0] = 0
            # The consumer is busy while the record is held.
            with pytest.raises(BufferError):
                c.recv(timeout=0)
        with pytest.raises(ValueError):
            mv[0]
        with pytest.raises(ValueError):
            bytes(mv)
        with pytest.raises(ValueError):
            rv.__enter__()  # released for good
        assert c.recv(timeout=5) == b"next"


def test_a_numpy_view_escaping_the_block_is_buffer_error_and_keeps_the_record(tmp_path):
    q = tmp_path / "q"
    with mapshare.Producer(q, 4096) as p, mapshare.Consumer(q) as c:
        p.send(np.arange(8, dtype=np.int32))
        p.send(b"after")
        with pytest.raises(BufferError):
            with c.recv_view(timeout=5) as mv:
                arr = np.frombuffer(mv, dtype=np.int32)
        assert not arr.flags.writeable
        assert arr.tolist() == list(range(8))  # still held, still valid
        with pytest.raises(BufferError):
            c.recv(timeout=0)
        with pytest.raises(BufferError):
            c.close()
        del arr, mv
        gc.collect()
        # The view object is gone too: its record was released.
        assert c.recv(timeout=5) == b"after"


def test_iteration_ends_when_the_producer_closes(tmp_path):
    q = tmp_path / "q"
    c = mapshare.Consumer(q, 4096)
    p = mapshare.Producer(q)
    for i in range(5):
        p.send(b"%d" % i)
    p.close()
    p.close()  # twice is allowed
    assert list(c) == [b"0", b"1", b"2", b"3", b"4"]
    with pytest.raises(mapshare.Disconnected) as e:
        c.recv(timeout=1)
    assert e.value.peer == "producer" and e.value.path == str(q)


def test_a_python_producer_process_that_exits_disconnects(tmp_path, run_py):
    q = tmp_path / "q"
    c = mapshare.Consumer(q, 4096)
    run_py(
        """
import sys, mapshare
with mapshare.Producer(sys.argv[1]) as p:
    for i in range(100):
        p.send(i.to_bytes(4, "little"), timeout=30)
""",
        q,
    )
    got = [int.from_bytes(b, "little") for b in c]
    assert got == list(range(100))


def test_a_sigkilled_producer_is_peer_died(tmp_path, spawn_py):
    q = tmp_path / "q"
    c = mapshare.Consumer(q, 4096)
    child = spawn_py(
        """
import sys, time, mapshare
p = mapshare.Producer(sys.argv[1])
p.send(b"one")
p.send(b"two")
print("sent", flush=True)
time.sleep(600)
""",
        q,
    )
    child.expect("sent")
    child.kill()
    assert c.recv(timeout=5) == b"one"
    assert c.recv(timeout=5) == b"two"
    with pytest.raises(mapshare.PeerDied) as e:
        c.recv(timeout=30)
    assert e.value.peer == "producer"
    assert e.value.pid == child.proc.pid
    assert e.value.path == str(q)
    assert "producer" in str(e.value)


def test_too_large_carries_length_and_max(tmp_path):
    q = tmp_path / "q"
    with mapshare.Producer(q, 4096) as p:
        big = bytes(p.max_record + 1)
        with pytest.raises(mapshare.TooLarge) as e:
            p.send(big)
        assert e.value.length == p.max_record + 1
        assert e.value.max == p.max_record
        assert p.capacity == 4096


def test_an_empty_record_is_refused_as_zero_length(tmp_path):
    # The queue cannot carry 0-byte records (a data header of length 0 is
    # invalid to every consumer): ZeroLength, and nothing is sent.
    with mapshare.Producer(tmp_path / "q", 4096) as p:
        with pytest.raises(mapshare.ZeroLength) as e:
            p.send(b"")
        assert "zero length" in str(e.value)
    with mapshare.Consumer(tmp_path / "q") as c:
        assert c.try_recv() is None


def test_timeouts_on_both_ends(tmp_path):
    q = tmp_path / "q"
    with mapshare.Producer(q, 256) as p, mapshare.Consumer(q) as c:
        with pytest.raises(mapshare.Timeout) as e:
            c.recv(timeout=0.05)
        assert e.value.path == str(q) and e.value.waited >= 0.05
        with pytest.raises(mapshare.Timeout):
            c.recv(timeout=0)
        sent = 0
        while p.try_send(b"x" * 40):
            sent += 1
        assert sent >= 1
        with pytest.raises(mapshare.Timeout):
            p.send(b"x" * 40, timeout=0.05)
        with pytest.raises(mapshare.Timeout):
            p.send(b"x" * 40, timeout=0)
        with pytest.raises(ValueError):
            c.recv(timeout=-1)
        assert c.recv() == b"x" * 40
        # Space is handed back lazily (every quarter ring, or when the
        # ring is empty): drain it, then there is room again.
        while c.try_recv() is not None:
            pass
        assert p.try_send(b"y" * 40)
        assert c.recv(timeout=5) == b"y" * 40


def test_a_full_queue_whose_consumer_left_is_disconnected(tmp_path):
    q = tmp_path / "q"
    p = mapshare.Producer(q, 256)
    c = mapshare.Consumer(q)
    while p.try_send(b"z" * 40):
        pass
    c.close()
    with pytest.raises(mapshare.Disconnected) as e:
        p.send(b"z" * 40, timeout=5)
    assert e.value.peer == "consumer"


def test_a_second_live_producer_is_role_taken(tmp_path):
    q = tmp_path / "q"
    p = mapshare.Producer(q, 4096)
    with pytest.raises(mapshare.RoleTaken) as e:
        mapshare.Producer(q)
    assert e.value.role == "producer" or "producer" in str(e.value)
    p.close()
    mapshare.Producer(q).close()  # free again


def test_closed_handles_raise_value_error(tmp_path):
    q = tmp_path / "q"
    p = mapshare.Producer(q, 4096)
    c = mapshare.Consumer(q)
    p.close()
    c.close()
    with pytest.raises(ValueError):
        p.send(b"x")
    with pytest.raises(ValueError):
        c.recv(timeout=0)

"""Robust Mutex, Semaphore and Event inside a SharedFile, and byte-range
FileLocks, across real processes."""

import os

import numpy as np
import pytest

import mapshare

# Layout of the object used below: a mutex with 32 bytes of data at 0
# (16 + 32 bytes), a semaphore at 48, an event at 56.
SIZE = 64
OPEN = """
import sys, mapshare
sf = mapshare.SharedFile.open(sys.argv[1])
m = sf.mutex(0, 32)
"""


def shared(tmp_path):
    return mapshare.SharedFile.open_or_create(tmp_path / "sync", SIZE)


def test_shared_file_create_and_open(tmp_path):
    sf = shared(tmp_path)
    assert sf.created and sf.size == SIZE and sf.path == str(tmp_path / "sync")
    again = mapshare.SharedFile.open(tmp_path / "sync")
    assert not again.created and again.size == SIZE
    with pytest.raises(mapshare.NotFound):
        mapshare.SharedFile.open(tmp_path / "missing")


def test_placements_may_not_overlap_or_leave_the_object(tmp_path):
    sf = shared(tmp_path)
    sf.mutex(0, 32)
    sf.mutex(0, 32)  # the same object again is fine
    with pytest.raises(ValueError, match="overlap"):
        sf.semaphore(40)
    with pytest.raises(ValueError):
        sf.event(50)  # not a multiple of 8
    with pytest.raises(mapshare.OutOfBounds):
        sf.event(64)


def test_mutex_with_block_gives_a_writable_guard_and_unlocks(tmp_path):
    m = shared(tmp_path).mutex(0, 32)
    assert m.size == 32 and m.state == "free"
    with m as g:
        assert g.locked and not g.recovering
        assert f"held by pid {os.getpid()}" in m.state
        mv = memoryview(g)
        assert not mv.readonly and mv.nbytes == 32
        mv[0:5] = b"hello"
        mv.release()
        arr = np.frombuffer(g, dtype=np.uint64)
        arr[3] = 42
        del arr
        assert g.read()[:5] == b"hello"
    assert not g.locked
    assert m.state == "free"
    with pytest.raises(BufferError):
        memoryview(g)  # an unlocked guard's data is not ours
    with pytest.raises(ValueError):
        g.read()
    # The data persisted in the file, for the next holder.
    g2 = m.lock()
    assert g2.read()[:5] == b"hello"
    assert np.frombuffer(g2.read(), dtype=np.uint64)[3] == 42
    g2.unlock()
    g2.unlock()  # twice is allowed


def test_mutex_unlocks_when_the_block_raises(tmp_path):
    m = shared(tmp_path).mutex(0, 32)
    with pytest.raises(RuntimeError):
        with m:
            raise RuntimeError("boom")
    assert m.state == "free"


def test_a_view_outliving_the_block_is_buffer_error_and_keeps_the_lock(tmp_path):
    m = shared(tmp_path).mutex(0, 32)
    with pytest.raises(BufferError):
        with m as g:
            mv = memoryview(g)
    assert g.locked and m.try_lock() is None
    mv[0] = 1  # still ours: the lock was kept
    mv.release()
    g.unlock()
    assert m.state == "free"


def test_try_lock_from_another_process_is_none_while_held(tmp_path, run_py):
    sf = shared(tmp_path)
    m = sf.mutex(0, 32)
    code = OPEN + """
state = m.state
g = m.try_lock()
print("none" if g is None else "got")
print(state)
if g is not None:
    g.unlock()
"""
    with m:
        out = run_py(code, sf.path).splitlines()
        assert out[0] == "none"
        assert str(os.getpid()) in out[1]
    assert run_py(code, sf.path).splitlines() == ["got", "free"]


def test_lock_times_out_while_another_process_holds_it(tmp_path, spawn_py):
    sf = shared(tmp_path)
    m = sf.mutex(0, 32)
    child = spawn_py(
        OPEN
        + """
g = m.lock()
print("locked", flush=True)
sys.stdin.readline()
g.unlock()
""",
        sf.path,
        stdin=__import__("subprocess").PIPE,
    )
    child.expect("locked")
    with pytest.raises(mapshare.Timeout) as e:
        m.lock(timeout=0.1)
    assert e.value.path == sf.path
    assert e.value.waited >= 0.1
    child.proc.stdin.write(b"go\n")
    child.proc.stdin.flush()
    g = m.lock(timeout=30)
    g.unlock()
    child.ok()


HOLD_AND_DIE = (
    OPEN
    + """
g = m.lock()
mv = memoryview(g)
mv[0:4] = b"half"       # an update left half done
print("locked", flush=True)
import time
time.sleep(600)
"""
)


def test_owner_died_carries_the_guard_for_repair(tmp_path, spawn_py):
    sf = shared(tmp_path)
    m = sf.mutex(0, 32)
    child = spawn_py(HOLD_AND_DIE, sf.path)
    child.expect("locked")
    child.kill()
    with pytest.raises(mapshare.OwnerDied) as e:
        m.lock(timeout=30)
    assert isinstance(e.value, mapshare.Error)
    assert e.value.path == sf.path
    g = e.value.guard
    assert g.locked and g.recovering
    assert g.read()[:4] == b"half"
    # Repair, mark consistent, unlock: the mutex is normal again.
    mv = memoryview(g)
    mv[0:4] = b"good"
    mv.release()
    g.mark_consistent()
    assert not g.recovering
    g.unlock()
    assert m.state == "free"
    with m as g2:
        assert g2.read()[:4] == b"good"


def test_owner_died_with_block_raises_and_try_lock_too(tmp_path, spawn_py):
    sf = shared(tmp_path)
    m = sf.mutex(0, 32)
    child = spawn_py(HOLD_AND_DIE, sf.path)
    child.expect("locked")
    child.kill()
    with pytest.raises(mapshare.OwnerDied) as e:
        m.try_lock()
    e.value.guard.mark_consistent()
    e.value.guard.unlock()
    assert m.try_lock() is not None


def test_guard_dropped_without_marking_makes_the_mutex_not_recoverable(tmp_path, spawn_py):
    sf = shared(tmp_path)
    m = sf.mutex(0, 32)
    child = spawn_py(HOLD_AND_DIE, sf.path)
    child.expect("locked")
    child.kill()
    with pytest.raises(mapshare.OwnerDied) as e:
        m.lock(timeout=30)
    e.value.guard.unlock()  # no mark_consistent
    with pytest.raises(mapshare.NotRecoverable) as e2:
        m.lock(timeout=1)
    assert e2.value.path == sf.path
    with pytest.raises(mapshare.NotRecoverable):
        m.try_lock()


def test_semaphore_across_processes(tmp_path, spawn_py):
    sf = shared(tmp_path)
    sem = sf.semaphore(48, initial=0)
    assert sem.value == 0
    assert sem.acquire(blocking=False) is False
    assert sem.acquire(timeout=0.05) is False
    child = spawn_py(
        """
import sys, mapshare
sf = mapshare.SharedFile.open(sys.argv[1])
sem = sf.semaphore(48)
print("waiting", flush=True)
print(sem.acquire(timeout=30), flush=True)
sem.release(3)
""",
        sf.path,
    )
    child.expect("waiting")
    sem.release()
    assert child.ok().strip() == "True"
    assert sem.value == 3
    with sem:
        assert sem.value == 2
    assert sem.value == 3


def test_event_across_processes_with_block_notifies(tmp_path, spawn_py):
    sf = shared(tmp_path)
    ev = sf.event(56)
    region = mapshare.Region.open(sf.path, access="r")
    child = spawn_py(
        """
import sys, mapshare
sf = mapshare.SharedFile.open(sys.argv[1])
ev = sf.event(56)
m = sf.mutex(0, 32)
t = ev.listen()
print("listening", flush=True)
print(ev.wait(t, timeout=30), flush=True)
with m as g:
    print(g.read()[:5].decode(), flush=True)
print(ev.wait(ev.listen(), timeout=0.05))
""",
        sf.path,
    )
    child.expect("listening")
    m = sf.mutex(0, 32)
    with ev:  # change the state inside, notified on exit
        with m as g:
            memoryview(g)[0:5] = b"ready"
    assert child.ok().split() == ["True", "ready", "False"]
    del region


def test_event_wait_for_a_predicate(tmp_path):
    ev = shared(tmp_path).event(56)
    calls = []

    def pred():
        calls.append(1)
        return len(calls) >= 1

    assert ev.wait_for(pred, timeout=1) is True
    assert ev.wait_for(lambda: False, timeout=0.05) is False
    ev.notify_one()
    ev.notify_all()


LOCKF = """
import fcntl, sys
f = open(sys.argv[1], "r+b")
def tries(kind, length=0, start=0):
    try:
        fcntl.lockf(f, kind | fcntl.LOCK_NB, length, start)
    except OSError:
        return "blocked"
    fcntl.lockf(f, fcntl.LOCK_UN, length, start)
    return "free"
"""


def test_filelock_exclusive_is_seen_by_lockf_in_another_process(tmp_path, run_py):
    path = tmp_path / "locked"
    path.write_bytes(b"\0" * 100)
    check = LOCKF + 'print(tries(fcntl.LOCK_EX), tries(fcntl.LOCK_SH), tries(fcntl.LOCK_EX, 10, 50))'
    with mapshare.FileLock(path) as g:
        assert g.shared is False and g.range[0] == 0
        assert run_py(check, path).split() == ["blocked", "blocked", "blocked"]
    assert g.range is None
    assert run_py(check, path).split() == ["free", "free", "free"]
    # A byte range: only the bytes it covers conflict.
    fl = mapshare.FileLock(path)
    g = fl.lock(0, 10)
    assert g.range == (0, 10)
    assert run_py(check, path).split() == ["blocked", "blocked", "free"]
    g.unlock()


def test_filelock_shared_lets_lockf_readers_in_but_not_writers(tmp_path, run_py):
    path = tmp_path / "locked"
    path.write_bytes(b"\0" * 100)
    fl = mapshare.FileLock(path)
    g = fl.lock(shared=True)
    assert g.shared is True
    check = LOCKF + "print(tries(fcntl.LOCK_EX), tries(fcntl.LOCK_SH))"
    assert run_py(check, path).split() == ["blocked", "free"]
    # Two shared holders in this process are fine; exclusive is not.
    g2 = mapshare.FileLock(path).try_lock(shared=True)
    assert g2 is not None
    assert mapshare.FileLock(path).try_lock() is None
    g2.unlock()
    g.unlock()


def test_lockf_holder_in_another_process_is_seen_by_filelock(tmp_path, spawn_py):
    import subprocess

    path = tmp_path / "locked"
    path.write_bytes(b"\0" * 100)
    child = spawn_py(
        LOCKF
        + """
fcntl.lockf(f, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
fcntl.lockf(f, fcntl.LOCK_UN)
print("released", flush=True)
sys.stdin.readline()
""",
        path,
        stdin=subprocess.PIPE,
    )
    child.expect("held")
    fl = mapshare.FileLock(path)
    assert fl.try_lock() is None
    assert fl.try_lock(shared=True) is None
    assert fl.holder() == (False, child.proc.pid)
    with pytest.raises(mapshare.Timeout):
        fl.lock(timeout=0.1)
    child.proc.stdin.write(b"go\n")
    child.proc.stdin.flush()
    child.expect("released")
    assert fl.holder() is None
    g = fl.lock(timeout=30)
    assert g.range is not None
    g.unlock()
    child.proc.stdin.write(b"end\n")
    child.proc.stdin.flush()
    child.ok()

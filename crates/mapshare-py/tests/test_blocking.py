"""Blocking calls release the GIL (other Python threads run while they
wait) and are interrupted by Ctrl-C with KeyboardInterrupt."""

import signal
import subprocess
import threading
import time

import pytest

import mapshare
from conftest import PATIENCE

# How far the helper thread counts, in Python bytecode, before it does
# what ends the wait: it can only get there if the blocked call let go of
# the GIL.
COUNT = 20_000


def count_then(action):
    """A thread that counts to COUNT in Python, then runs `action`; returns
    (thread, progress) where progress[0] is how far it got."""
    progress = [0]

    def run():
        time.sleep(0.05)  # let the main thread block first
        while progress[0] < COUNT:
            progress[0] += 1
        action()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, progress


def test_recv_releases_the_gil(tmp_path):
    q = tmp_path / "q"
    c = mapshare.Consumer(q, 4096)
    p = mapshare.Producer(q)
    t, progress = count_then(lambda: p.send(b"made by the counting thread"))
    # If recv held the GIL, the thread could never count and send: this
    # would raise Timeout.
    assert c.recv(timeout=PATIENCE) == b"made by the counting thread"
    assert progress[0] == COUNT
    t.join()


def test_recv_view_releases_the_gil(tmp_path):
    q = tmp_path / "q"
    c = mapshare.Consumer(q, 4096)
    p = mapshare.Producer(q)
    t, progress = count_then(lambda: p.send(b"view"))
    with c.recv_view(timeout=PATIENCE) as mv:
        assert bytes(mv) == b"view"
    assert progress[0] == COUNT
    t.join()


def test_producer_send_waiting_for_space_releases_the_gil(tmp_path):
    q = tmp_path / "q"
    c = mapshare.Consumer(q, 256)
    p = mapshare.Producer(q)
    while p.try_send(b"f" * 40):
        pass

    def drain():
        while c.try_recv() is not None:
            pass

    t, progress = count_then(drain)
    p.send(b"g" * 40, timeout=PATIENCE)
    assert progress[0] == COUNT
    t.join()


def test_mutex_lock_releases_the_gil(tmp_path):
    m = mapshare.SharedFile.open_or_create(tmp_path / "m", 64).mutex(0, 8)
    g = m.lock()
    t, progress = count_then(g.unlock)  # any thread of the process may unlock
    g2 = m.lock(timeout=PATIENCE)
    assert progress[0] == COUNT
    g2.unlock()
    t.join()


def test_wait_newer_releases_the_gil(tmp_path):
    path = tmp_path / "s"
    w = mapshare.SnapshotWriter(path)
    r = mapshare.SnapshotReader(path)
    t, progress = count_then(lambda: w.publish(b"newer"))
    assert r.wait_newer(0, timeout=PATIENCE) == 1
    assert progress[0] == COUNT
    assert r.read() == b"newer"
    t.join()


def test_semaphore_event_log_and_filelock_waits_release_the_gil(tmp_path):
    sf = mapshare.SharedFile.open_or_create(tmp_path / "sync", 64)
    sem = sf.semaphore(0, initial=0)
    t, progress = count_then(sem.release)
    assert sem.acquire(timeout=PATIENCE)
    assert progress[0] == COUNT
    t.join()

    ev = sf.event(8)
    ticket = ev.listen()
    t, progress = count_then(ev.notify_all)
    assert ev.wait(ticket, timeout=PATIENCE)
    assert progress[0] == COUNT
    t.join()

    log = mapshare.Log.create(tmp_path / "log")
    r = log.reader(start="latest")
    w = log.writer()
    t, progress = count_then(lambda: w.append(b"logged"))
    assert r.next(timeout=PATIENCE).data == b"logged"
    assert progress[0] == COUNT
    t.join()

    path = tmp_path / "locked"
    path.write_bytes(b"\0" * 10)
    held = mapshare.FileLock(path).lock()
    t, progress = count_then(held.unlock)
    g = mapshare.FileLock(path).lock(timeout=PATIENCE)
    assert progress[0] == COUNT
    g.unlock()
    t.join()


# Ctrl-C: a child blocks in a call, we SIGINT it once it sleeps there.

SETUP = {
    "recv": (
        "c = mapshare.Consumer(sys.argv[1] + '/q', 4096)",
        "c.recv()",
    ),
    "recv_view": (
        "c = mapshare.Consumer(sys.argv[1] + '/q', 4096)",
        "c.recv_view()",
    ),
    "mutex": (
        "m = mapshare.SharedFile.open(sys.argv[1] + '/m').mutex(0, 8)",
        "m.lock()",
    ),
    "wait_newer": (
        "r = mapshare.SnapshotReader(sys.argv[1] + '/s')",
        "r.wait_newer(r.generation)",
    ),
    "semaphore": (
        "s = mapshare.SharedFile.open(sys.argv[1] + '/m').semaphore(32)",
        "s.acquire()",
    ),
    "log_next": (
        "r = mapshare.Log.open(sys.argv[1] + '/log').reader(start='latest')",
        "r.next()",
    ),
    "filelock": (
        "f = mapshare.FileLock(sys.argv[1] + '/plain')",
        "f.lock()",
    ),
}


def sleeping(pid):
    """True once the child's main thread sleeps in the kernel."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "S"


@pytest.mark.parametrize("call", sorted(SETUP))
def test_ctrl_c_interrupts_a_blocked_call(tmp_path, spawn_py, call):
    sf = mapshare.SharedFile.open_or_create(tmp_path / "m", 64)
    m = sf.mutex(0, 8)
    sf.semaphore(32, initial=0)
    held = m.lock()  # the child's lock() waits for us
    mapshare.SnapshotWriter(tmp_path / "s").publish(b"x")
    mapshare.Log.create(tmp_path / "log")
    (tmp_path / "plain").write_bytes(b"\0" * 10)
    range_lock = mapshare.FileLock(tmp_path / "plain").lock(timeout=PATIENCE)
    setup, blocking = SETUP[call]
    child = spawn_py(
        f"""
import sys, mapshare
{setup}
print("ready", flush=True)
{blocking}
print("returned", flush=True)
""",
        tmp_path,
    )
    child.expect("ready")
    deadline = time.monotonic() + PATIENCE
    while not sleeping(child.proc.pid):
        assert time.monotonic() < deadline, "the child never blocked"
        time.sleep(0.01)
    time.sleep(0.1)  # well inside the call
    child.proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        rc, out, err = child.finish(timeout=5)  # generous: the goal is 100 ms
    except subprocess.TimeoutExpired:
        pytest.fail(f"{call}: SIGINT did not interrupt the blocked call within 5 s")
    assert "returned" not in out
    assert "KeyboardInterrupt" in err, err
    assert "Traceback" in err
    assert rc != 0
    assert time.monotonic() - sent < 5
    held.unlock()
    range_lock.unlock()

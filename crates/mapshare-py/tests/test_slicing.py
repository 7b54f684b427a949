"""Waits inside otherwise quick calls also release the GIL, end at their
timeout with nothing done, and stop on Ctrl-C: a log append held back by a
tethered reader, a snapshot publish under the "wait" policy."""

import signal
import subprocess
import time

import pytest

import mapshare


def test_an_append_held_back_by_a_tethered_reader_times_out_and_appends_nothing(tmp_path):
    log = mapshare.Log.create(tmp_path / "log", segment_size=1 << 16)
    tethered = log.reader(cursor="slow", max_lag=2)
    w = log.writer()
    w.append(b"a")
    w.append(b"b")
    before = log.info()["next_seq"]
    t0 = time.monotonic()
    with pytest.raises(mapshare.Timeout) as e:
        w.append(b"c", timeout=0.3)
    assert time.monotonic() - t0 >= 0.25
    assert e.value.waited >= 0.25
    assert "tethered reader" in str(e.value)
    assert log.info()["next_seq"] == before, "a timed-out append reserved nothing"
    # Once the reader moves on, the append goes through.
    assert tethered.next(timeout=1).data == b"a"
    assert w.append(b"c", timeout=1) == before


def test_a_publish_waiting_for_pinned_slots_times_out_and_publishes_nothing(tmp_path):
    path = tmp_path / "s"
    w = mapshare.SnapshotWriter(path, slow_readers="wait", wait_timeout=0.3)
    w.publish(b"one")
    r1, r2 = mapshare.SnapshotReader(path), mapshare.SnapshotReader(path)
    v1 = r1.view()  # pins "one"
    w.publish(b"two")
    v2 = r2.view()  # pins "two": both slots pinned
    t0 = time.monotonic()
    with pytest.raises(mapshare.Timeout):
        w.publish(b"three")
    assert time.monotonic() - t0 >= 0.25
    assert w.generation == 2, "a timed-out publish published nothing"
    v1.release()
    assert w.publish(b"three") == 3
    v2.release()


CHILD = """
import sys, time, mapshare
kind, d = sys.argv[1], sys.argv[2]
if kind == "append":
    log = mapshare.Log.create(d + "/log", segment_size=1 << 16)
    t = log.reader(cursor="slow", max_lag=1)
    w = log.writer()
    w.append(b"x")
    print("ready", flush=True)
    w.append(b"y", timeout=60)
else:
    w = mapshare.SnapshotWriter(d + "/s", slow_readers="wait", wait_timeout=60)
    w.publish(b"one")
    a, b = mapshare.SnapshotReader(d + "/s"), mapshare.SnapshotReader(d + "/s")
    va = a.view()
    w.publish(b"two")
    vb = b.view()
    print("ready", flush=True)
    w.publish(b"three")
print("returned", flush=True)
"""


@pytest.mark.parametrize("kind", ["append", "publish"])
def test_ctrl_c_interrupts_a_wait_inside_append_and_publish(kind, tmp_path, spawn_py):
    child = spawn_py(CHILD, kind, tmp_path)
    child.expect("ready")
    time.sleep(0.3)  # let it block
    child.proc.send_signal(signal.SIGINT)
    try:
        rc, out, err = child.finish(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kind}: SIGINT did not interrupt the wait within 5 s")
    assert "returned" not in out
    assert "KeyboardInterrupt" in err, err
    assert rc != 0

"""The broadcast log from Python: append, readers as iterators,
next(timeout), durable cursors, retention and Lagged."""

import pytest

import mapshare


def test_append_returns_sequence_numbers_and_readers_iterate(tmp_path):
    log = mapshare.Log.create(tmp_path / "log")
    assert log.dir == str(tmp_path / "log")
    with log.writer() as w:
        assert w.append(b"zero") == 0
        assert w.append(bytearray(b"one")) == 1
        assert w.append_batch([b"two", memoryview(b"three")]) == [2, 3]
    r = log.reader()
    recs = list(r)
    assert [(x.seq, x.data) for x in recs] == [
        (0, b"zero"),
        (1, b"one"),
        (2, b"two"),
        (3, b"three"),
    ]
    assert all(type(x.data) is bytes and x.timestamp_ns > 0 for x in recs)
    assert recs[0].timestamp_ns <= recs[-1].timestamp_ns
    assert list(r) == []  # caught up: iteration stops
    assert r.position == 4
    # An independent reader from a sequence number, and a seek.
    r2 = log.reader(start=2)
    assert [x.seq for x in r2] == [2, 3]
    r2.seek(1)
    assert r2.next(timeout=0).data == b"one"
    assert r2.first_seq() == 0


def test_next_with_timeout_and_latest(tmp_path):
    log = mapshare.Log.create(tmp_path / "log")
    w = log.writer()
    w.append(b"old")
    r = log.reader(start="latest")
    assert r.next(timeout=0) is None
    assert r.next(timeout=0.05) is None
    w.append(b"new")
    rec = r.next(timeout=5)
    assert (rec.seq, rec.data) == (1, b"new")
    with pytest.raises(ValueError):
        log.reader(start="middle")
    with pytest.raises(ValueError):
        log.reader(start=0, cursor="c")
    with pytest.raises(ValueError):
        log.reader(max_lag=3)


def test_next_sees_an_append_from_another_process(tmp_path, spawn_py):
    import subprocess

    log = mapshare.Log.create(tmp_path / "log")
    r = log.reader(start="latest")
    child = spawn_py(
        """
import sys, mapshare
w = mapshare.Log.open(sys.argv[1]).writer()
print("open", flush=True)
sys.stdin.readline()
print(w.append(b"hello from a child"), flush=True)
""",
        tmp_path / "log",
        stdin=subprocess.PIPE,
    )
    child.expect("open")
    child.proc.stdin.write(b"go\n")
    child.proc.stdin.flush()
    rec = r.next(timeout=30)
    assert rec.data == b"hello from a child"
    assert child.ok().strip() == str(rec.seq)


def test_durable_cursor_resumes_after_its_commit(tmp_path, run_py):
    log = mapshare.Log.create(tmp_path / "log")
    w = log.writer()
    for i in range(6):
        w.append(b"r%d" % i)
    c = log.reader(cursor="billing")
    assert [c.next(timeout=0).data for _ in range(3)] == [b"r0", b"r1", b"r2"]
    c.commit()
    c.next(timeout=0)  # read but not committed
    c.close()
    assert log.info()["cursors"]["billing"][0] == 3
    # Another process resumes from the commit, reads on and commits.
    out = run_py(
        """
import sys, mapshare
c = mapshare.Log.open(sys.argv[1]).reader(cursor="billing")
print(c.next(timeout=0).data.decode(), c.next(timeout=0).data.decode())
c.commit()
""",
        tmp_path / "log",
    )
    assert out.split() == ["r3", "r4"]
    again = mapshare.Log.open(tmp_path / "log").reader(cursor="billing")
    assert [x.data for x in again] == [b"r5"]
    # A new name starts at the beginning.
    assert log.reader(cursor="fresh").next(timeout=0).data == b"r0"


def test_lagged_after_retention_carries_skipped_and_resume_at(tmp_path):
    log = mapshare.Log.create(tmp_path / "log", segment_size=4096, retain_segments=1)
    w = log.writer()
    w.append(b"first")
    slow = log.reader(cursor="slow")
    assert slow.next(timeout=0).seq == 0
    slow.commit()
    slow.close()
    for _ in range(200):
        w.append(b"x" * 100)
    live = log.reader()
    assert log.retain() == 0  # a live reader's segment is never deleted
    live.close()
    deleted = log.retain()
    assert deleted > 0
    info = log.info()
    assert len(info["segments"]) == 1
    first = info["first_seq"]
    assert first > 1
    slow = log.reader(cursor="slow")
    with pytest.raises(mapshare.Lagged) as e:
        slow.next(timeout=0)
    assert isinstance(e.value, mapshare.Error)
    assert e.value.resume_at == first
    assert e.value.skipped == first - 1
    assert e.value.path == str(tmp_path / "log")
    assert str(e.value.skipped) in str(e.value)
    # Raised once; the reader goes on from resume_at.
    assert slow.next(timeout=0).seq == first
    assert slow.position == first + 1


def test_tethered_cursor_holds_writers_back(tmp_path):
    log = mapshare.Log.create(tmp_path / "log")
    w = log.writer()
    w.set_tether_wait(0.05)
    t = log.reader(cursor="tethered", max_lag=2)
    w.append(b"a")
    w.append(b"b")
    with pytest.raises(mapshare.Timeout):
        for _ in range(5):
            w.append(b"more")
    assert t.next(timeout=0).data == b"a"
    t.commit()
    t.close()  # no longer holds anyone back
    for _ in range(5):
        w.append(b"free")


def test_log_errors(tmp_path):
    with pytest.raises(mapshare.Error):
        mapshare.Log.open(tmp_path / "none")
    log = mapshare.Log.create(tmp_path / "log", segment_size=8192)
    log.writer().append(b"kept")
    # Creating over an existing log opens it as it is.
    again = mapshare.Log.create(tmp_path / "log", segment_size=1 << 20)
    assert again.info()["segment_size"] == 8192
    assert [x.data for x in again.reader()] == [b"kept"]
    w = log.writer()
    # An oversized record is TooLarge, as in the queue, naming the log.
    with pytest.raises(mapshare.TooLarge, match="log record") as e:
        w.append(bytes(w.max_record + 1))
    assert (e.value.length, e.value.max) == (w.max_record + 1, w.max_record)
    assert w.append(bytes(w.max_record)) == 1
    w.close()
    with pytest.raises(ValueError):
        w.append(b"closed")


def _pretouch_threads():
    import os

    names = []
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names.count("log-pretouch")


def test_a_pretouched_writer_appends_across_segments(tmp_path):
    log = mapshare.Log.create(tmp_path / "log", segment_size=1 << 20)
    w = log.writer()
    w.start_pretouch()
    assert _pretouch_threads() == 1
    records = [b"%06d" % i * 10 for i in range(30_000)]
    for r in records:
        w.append(r)
    assert len([p for p in (tmp_path / "log").iterdir() if p.suffix == ".seg"]) >= 3
    with pytest.raises(mapshare.Error):
        w.start_pretouch(cpu=1 << 20)
    assert _pretouch_threads() == 0
    w.start_pretouch(cpu=0)
    w.stop_pretouch()
    assert _pretouch_threads() == 0
    w.close()
    r = log.reader(start="earliest")
    assert [r.next(timeout=0).data for _ in records] == records

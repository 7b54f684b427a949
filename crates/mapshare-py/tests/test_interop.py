"""Python, Rust processes (the `mapshare` CLI) and the same files, in
every direction."""

import struct
import subprocess
import threading

import numpy as np

import mapshare
import mapshare.numpy as mnp
from conftest import PATIENCE, run_cli


def frames(data):
    out = []
    while data:
        (n,) = struct.unpack("<I", data[:4])
        out.append(data[4 : 4 + n])
        data = data[4 + n :]
    return out


def test_cli_write_is_seen_by_a_live_numpy_view(tmp_path, cli):
    path = tmp_path / "f"
    with mapshare.Region.create(path, 4096) as r:
        arr = np.frombuffer(r, dtype=np.uint8)
        u32 = np.frombuffer(r, dtype=np.uint32)
        run_cli(cli, "write", "--text", "hello", path, 10)
        assert arr[10:15].tobytes() == b"hello"
        run_cli(cli, "write", "--hex", "78 56 34 12", path, "0x40")
        assert u32[16] == 0x12345678
        # Past the end: refused, nothing changes.
        p = run_cli(cli, "write", "--text", "xx", path, 4095, check=False)
        assert p.returncode == 1
        assert arr[4095] == 0
        del arr, u32


def test_python_producer_with_cli_recv(tmp_path, cli):
    q = tmp_path / "q"
    recv = subprocess.Popen(
        [cli, "recv", q], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        with mapshare.Producer(q, 4096) as p:
            for word in [b"alpha", b"beta", np.frombuffer(b"gamma", dtype=np.uint8)]:
                p.send(word, timeout=PATIENCE)
        out, err = recv.communicate(timeout=PATIENCE)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    assert recv.returncode == 0, err.decode()
    assert out == b"alpha\nbeta\ngamma\n"


def test_python_producer_with_cli_recv_frames(tmp_path, cli):
    q = tmp_path / "q"
    records = [bytes(range(256)), b"\n\0\n", b"x" * 1000]
    with mapshare.Producer(q, 1 << 16) as p:
        for rec in records:
            p.send(rec)
    p = run_cli(cli, "recv", "--frames", "--count", len(records), q)
    assert frames(p.stdout) == records


def test_cli_send_with_python_consumer(tmp_path, cli):
    q = tmp_path / "q"
    c = mapshare.Consumer(q, 4096)
    run_cli(cli, "send", q, input=b"one\ntwo\nthree\n")
    # Line mode: each line, newline included, is one record.
    assert list(c) == [b"one\n", b"two\n", b"three\n"]
    frames_in = b"".join(struct.pack("<I", len(r)) + r for r in [b"\0\1", b"bin\n"])
    c2 = mapshare.Consumer(tmp_path / "q2", 4096)
    run_cli(cli, "send", "--frames", tmp_path / "q2", input=frames_in)
    with c2.recv_view(timeout=PATIENCE) as mv:
        assert bytes(mv) == b"\0\1"
    assert c2.recv(timeout=PATIENCE) == b"bin\n"


def test_cli_publish_with_python_snapshot_readers(tmp_path, cli, run_py):
    path = tmp_path / "s"
    run_cli(cli, "publish", path, input=b"from rust")
    r = mapshare.SnapshotReader(path)
    assert r.read_with_generation() == (1, b"from rust")
    with r.view() as mv:
        assert bytes(mv) == b"from rust"
    # A reader blocked in wait_newer sees the next CLI publish.
    got = []
    t = threading.Thread(target=lambda: got.append(r.wait_newer(1, timeout=PATIENCE)))
    t.start()
    src = tmp_path / "value"
    src.write_bytes(b"second " * 1000)
    run_cli(cli, "publish", "--from", src, path)
    t.join()
    assert got == [2]
    assert r.read() == b"second " * 1000
    # And a reader in another Python process.
    out = run_py(
        """
import sys, mapshare
r = mapshare.SnapshotReader(sys.argv[1])
with r.view() as mv:
    print(len(mv), mv[:7].tobytes().decode())
print(r.generation)
""",
        path,
    )
    assert out.split() == ["7000", "second", "2"]


def test_python_snapshot_writer_with_cli_read(tmp_path, cli):
    path = tmp_path / "s"
    w = mapshare.SnapshotWriter(path)
    p = run_cli(cli, "read", path, check=False)
    assert p.returncode == 1  # nothing published yet
    value = bytes(range(256)) * 3
    w.publish(value)
    assert run_cli(cli, "read", path).stdout == value
    mnp.publish_array(w, np.arange(5, dtype=np.int32))
    out = run_cli(cli, "read", path).stdout
    assert mnp.decode(out).tolist() == [0, 1, 2, 3, 4]
    assert run_cli(cli, "read", "--generation", path).stdout.strip() == b"2"


def test_python_log_append_with_cli_log_tail(tmp_path, cli):
    d = tmp_path / "log"
    w = mapshare.Log.create(d).writer()
    for word in [b"red", b"green", b"blue"]:
        w.append(word)
    assert run_cli(cli, "log", "tail", d).stdout == b"red\ngreen\nblue\n"
    p = run_cli(cli, "log", "tail", "--seq", "--from", 1, d)
    assert p.stdout == b"1\tgreen\n2\tblue\n"
    # A CLI cursor commits; Python resumes from it.
    run_cli(cli, "log", "tail", "--cursor", "cli", "--count", 2, d)
    r = mapshare.Log.open(d).reader(cursor="cli")
    assert [x.data for x in r] == [b"blue"]


def test_cli_log_append_with_python_reader(tmp_path, cli):
    d = tmp_path / "log"
    log = mapshare.Log.create(d)
    r = log.reader()
    run_cli(cli, "log", "append", d, input=b"first\nsecond\n")
    recs = list(r)
    assert [(x.seq, x.data) for x in recs] == [(0, b"first\n"), (1, b"second\n")]
    framed = struct.pack("<I", 3) + b"\0\n\0"
    run_cli(cli, "log", "append", "--frames", d, input=framed)
    assert r.next(timeout=PATIENCE).data == b"\0\n\0"

"""mapshare from Python against what Python ships, same run, same machine.

Run (after `cargo test` has made target/pyenv with the package in it):

    target/pyenv/bin/python benchmarks/python/bench.py [--json] [--quick]

Figures (each a ratio against its baseline measured in the same run, as
docs/benchmarks.md explains; two-process figures pin the two sides to
different cores):

- roundtrip_64b: a 64-byte message to another Python process and back,
  mapshare Producer/Consumer pair vs multiprocessing.Queue (goal <= 0.05)
  and vs multiprocessing.Pipe (reported);
- snapshot_64mib: getting the newest 64 MiB float64 array, a zero-copy
  view through mapshare.numpy.view_array vs receiving it pickled through
  multiprocessing.Pipe (goal <= 0.01);
- mutex: an uncontended `with lock:`, and explicit lock+unlock calls, on
  mapshare.Mutex vs multiprocessing.Lock (goal <= 0.5), with
  threading.Lock (the cheapest lock Python has, no process sharing) as
  the floor any lock pays for the same Python statements.
"""

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import mapshare
import mapshare.numpy as mnp

CTX = mp.get_context("spawn")
MSG = b"x" * 64


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu % os.cpu_count()})
    except OSError:
        pass


# ------------------------------------------------------------ round trips


def _echo_mapshare(ping, pong, n):
    pin(1)
    rx = mapshare.Consumer(ping)
    tx = mapshare.Producer(pong)
    for _ in range(n):
        tx.send(rx.recv())
    tx.close()
    rx.close()


def _echo_queue(q_in, q_out, n):
    pin(1)
    for _ in range(n):
        q_out.put(q_in.get())


def _echo_pipe(conn, n):
    pin(1)
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def timed_roundtrips(echo, args, send, recv, n, warm):
    """Seconds per round trip through an echo process started as
    `echo(*args)`: `warm` untimed round trips, then `n` timed ones."""
    p = CTX.Process(target=echo, args=args)
    p.start()
    for _ in range(warm):
        send(MSG)
        recv()
    t0 = time.perf_counter()
    for _ in range(n):
        send(MSG)
        recv()
    dt = time.perf_counter() - t0
    p.join()
    return dt / n


def roundtrip_mapshare(n, warm):
    with tempfile.TemporaryDirectory() as d:
        ping, pong = os.path.join(d, "ping"), os.path.join(d, "pong")
        tx = mapshare.Producer(ping, 1 << 16)
        rx = mapshare.Consumer(pong, 1 << 16)
        dt = timed_roundtrips(_echo_mapshare, (ping, pong, n + warm), tx.send, rx.recv, n, warm)
        tx.close()
        rx.close()
        return dt


def roundtrip_queue(n, warm):
    q_in, q_out = CTX.Queue(), CTX.Queue()
    return timed_roundtrips(_echo_queue, (q_in, q_out, n + warm), q_in.put, q_out.get, n, warm)


def roundtrip_pipe(n, warm):
    a, b = CTX.Pipe()
    return timed_roundtrips(_echo_pipe, (b, n + warm), a.send_bytes, a.recv_bytes, n, warm)


# ------------------------------------------------------------ big arrays

ARRAY_BYTES = 64 << 20


def _pipe_sender(conn, n):
    pin(1)
    arr = np.arange(ARRAY_BYTES // 8, dtype=np.float64)
    for _ in range(n):
        conn.send(arr)


def array_pipe(n):
    a, b = CTX.Pipe(duplex=False)
    p = CTX.Process(target=_pipe_sender, args=(b, n + 1))
    p.start()
    arr = a.recv()  # warm-up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        arr = a.recv()
        times.append(time.perf_counter() - t0)
    assert arr.nbytes == ARRAY_BYTES
    p.join()
    return statistics.median(times)


def array_snapshot(n):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "snap")
        w = mapshare.SnapshotWriter(path, capacity=ARRAY_BYTES + 4096)
        mnp.publish_array(w, np.arange(ARRAY_BYTES // 8, dtype=np.float64))
        r = mapshare.SnapshotReader(path)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            with mnp.view_array(r) as v:
                last = v.array[-1]
            times.append(time.perf_counter() - t0)
        assert last == ARRAY_BYTES // 8 - 1
        r.close()
        w.close()
        return statistics.median(times)


# ------------------------------------------------------------ locks


def lock_with(lock, n):
    t0 = time.perf_counter()
    for _ in range(n):
        with lock:
            pass
    return (time.perf_counter() - t0) / n


def lock_calls(acquire, release, n):
    t0 = time.perf_counter()
    for _ in range(n):
        release(acquire())
    return (time.perf_counter() - t0) / n


def mutex_figures(n, rounds):
    """`with lock:` and explicit lock+unlock for mapshare.Mutex and
    multiprocessing.Lock, plus threading.Lock as the floor that any
    Python-level lock pays for the same statement, alternating."""
    with tempfile.TemporaryDirectory() as d:
        f = mapshare.SharedFile.open_or_create(os.path.join(d, "m"), 4096)
        m = f.mutex(0, 8)
        mpl = CTX.Lock()
        tl = __import__("threading").Lock()
        res = {k: [] for k in ("ms_with", "mp_with", "tl_with", "ms_calls", "mp_calls", "tl_calls")}
        for _ in range(rounds):
            res["ms_with"].append(lock_with(m, n))
            res["mp_with"].append(lock_with(mpl, n))
            res["tl_with"].append(lock_with(tl, n))
            res["ms_calls"].append(lock_calls(lambda: m.lock(), lambda g: g.unlock(), n))
            res["mp_calls"].append(lock_calls(lambda: mpl.acquire(), lambda _: mpl.release(), n))
            res["tl_calls"].append(lock_calls(lambda: tl.acquire(), lambda _: tl.release(), n))
        return {k: statistics.median(v) for k, v in res.items()}


# ------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    pin(0)
    k = 10 if args.quick else 1
    rounds = 3
    out = {}
    # Alternate the contenders round by round so drift hits both alike.
    ms, mq, mpi = [], [], []
    for _ in range(rounds):
        ms.append(roundtrip_mapshare(20000 // k, 2000 // k))
        mq.append(roundtrip_queue(5000 // k, 500 // k))
        mpi.append(roundtrip_pipe(20000 // k, 2000 // k))
    out["roundtrip_64b"] = {
        "mapshare_us": min(ms) * 1e6,
        "mp_queue_us": min(mq) * 1e6,
        "mp_pipe_us": min(mpi) * 1e6,
        "ratio_vs_queue": min(ms) / min(mq),
        "ratio_vs_pipe": min(ms) / min(mpi),
        "goal_vs_queue": 0.05,
    }
    sa, pa = [], []
    for _ in range(rounds):
        sa.append(array_snapshot(max(3, 30 // k)))
        pa.append(array_pipe(max(3, 10 // k)))
    out["snapshot_64mib"] = {
        "mapshare_view_us": min(sa) * 1e6,
        "mp_pipe_pickle_us": min(pa) * 1e6,
        "ratio": min(sa) / min(pa),
        "goal": 0.01,
    }
    mx = mutex_figures(50000 // k, 15)
    out["mutex"] = {
        "mapshare_with_ns": mx["ms_with"] * 1e9,
        "mp_lock_with_ns": mx["mp_with"] * 1e9,
        "threading_lock_with_ns": mx["tl_with"] * 1e9,
        "ratio_with": mx["ms_with"] / mx["mp_with"],
        "floor_ratio_with": mx["tl_with"] / mx["mp_with"],
        "mapshare_calls_ns": mx["ms_calls"] * 1e9,
        "mp_lock_calls_ns": mx["mp_calls"] * 1e9,
        "threading_lock_calls_ns": mx["tl_calls"] * 1e9,
        "ratio_calls": mx["ms_calls"] / mx["mp_calls"],
        "floor_ratio_calls": mx["tl_calls"] / mx["mp_calls"],
        "goal": 0.5,
    }
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        for name, fig in out.items():
            print(name, " ".join(f"{k}={v:.4g}" for k, v in fig.items()))


if __name__ == "__main__":
    main()

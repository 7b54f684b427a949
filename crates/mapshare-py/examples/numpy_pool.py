"""A numpy array published by one process and read, zero-copy, by a pool
of multiprocessing workers (spawn start method).

    python crates/mapshare-py/examples/numpy_pool.py [DIR]

The parent publishes a 32 MiB array as a snapshot; each worker opens the
snapshot by path, views the newest version in place (no copy, no pickle:
only the file's path crosses the process boundary) and sums one slice of
it. The parent then publishes a second version while workers hold the
first pinned, and the workers see the new one on their next view.
"""

import multiprocessing as mp
import os
import sys
import tempfile

import numpy as np

import mapshare
import mapshare.numpy as mnp

ROWS, COLS = 4096, 1024  # 4096 x 1024 float64 = 32 MiB
WORKERS = 4


def work(args):
    """In a worker: sum rows lo..hi of the newest array, in place."""
    path, lo, hi = args
    reader = mapshare.SnapshotReader(path)
    with mnp.view_array(reader) as v:
        assert not v.array.flags.writeable  # a view of shared memory
        total = float(v.array[lo:hi].sum())
        generation = v.generation
    reader.close()
    return generation, total


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    path = os.path.join(base, "frame.snapshot")
    writer = mapshare.SnapshotWriter(path, capacity=ROWS * COLS * 8 + 4096)
    frame = np.arange(ROWS * COLS, dtype=np.float64).reshape(ROWS, COLS)
    step = ROWS // WORKERS
    chunks = [(path, i * step, (i + 1) * step) for i in range(WORKERS)]
    with mp.get_context("spawn").Pool(WORKERS) as pool:
        for version in (1, 2):
            g = mnp.publish_array(writer, frame * version)
            results = pool.map(work, chunks)
            total = sum(t for _, t in results)
            expected = float((frame * version).sum())
            assert all(gen == g for gen, _ in results), results
            assert total == expected, (total, expected)
            print(f"generation {g}: {WORKERS} workers summed {total:.6g} in place")
    writer.close()
    os.unlink(path)  # mapshare never removes files for you


if __name__ == "__main__":
    main()

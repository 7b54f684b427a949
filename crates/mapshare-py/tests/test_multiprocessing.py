"""multiprocessing with the spawn start method: workers open a snapshot by
path (nothing is pickled but the path) and read the published array in
place."""

import multiprocessing

import numpy as np

import mapshare
import mapshare.numpy as mnp
from conftest import PATIENCE


def worker_sum(path, row):
    """Runs in a spawned worker: a zero-copy view of the latest array."""
    reader = mapshare.SnapshotReader(path)
    with mnp.view_array(reader) as v:
        assert not v.array.flags.writeable
        return v.generation, float(v.array[row].sum()), v.array.shape


def test_spawned_pool_workers_read_a_published_array(tmp_path):
    path = str(tmp_path / "frame")
    frame = np.arange(64 * 1000, dtype=np.float64).reshape(64, 1000)
    w = mapshare.SnapshotWriter(path)
    mnp.publish_array(w, frame)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap_async(
            worker_sum, [(path, row) for row in range(0, 64, 8)]
        ).get(timeout=PATIENCE)
    assert [r[0] for r in results] == [1] * 8
    assert [r[1] for r in results] == [float(frame[row].sum()) for row in range(0, 64, 8)]
    assert all(r[2] == (64, 1000) for r in results)
    # The file is still there, and the writer still owns it.
    assert mnp.publish_array(w, frame * 2) == 2

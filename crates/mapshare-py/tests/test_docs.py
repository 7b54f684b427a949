"""Every Python example in README.md and docs/python.md runs, and the
numpy pool example does what it says."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def python_blocks(doc):
    text = (ROOT / doc).read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/python.md"])
def test_python_examples_in_the_docs_run(doc, tmp_path):
    blocks = python_blocks(doc)
    assert blocks, f"{doc} has no Python example"
    for code in blocks:
        # The examples use /tmp paths; run each in a fresh directory.
        code = code.replace('"/tmp/', f'"{tmp_path}/')
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, f"{doc} example failed:\n{code}\n{out.stderr}"


def test_the_numpy_pool_example_sums_in_place(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "crates/mapshare-py/examples/numpy_pool.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "generation 1: 4 workers summed" in out.stdout
    assert "generation 2: 4 workers summed" in out.stdout
    # The example removes its snapshot itself; mapshare removed nothing else.
    assert os.listdir(tmp_path) == []

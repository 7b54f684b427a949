"""Shared fixtures of the Python tests (run by `cargo test`, see
crates/mapshare-cli/tests/python.rs).

Every test works in its own `tmp_path`; named `/dev/shm` objects get a
unique name from `shm_name` and are removed in teardown. Other processes
are real processes: `python -c` children (`spawn_py`, `run_py`) or the
`mapshare` CLI (`cli`); nothing forks the pytest process.
"""

import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

import mapshare

# Generous bound for anything that waits on another process: only a hang
# (a bug) ever gets near it.
PATIENCE = 30.0


@pytest.fixture
def cli():
    """The `mapshare` CLI of this build (MAPSHARE_BIN), or the one on PATH."""
    path = os.environ.get("MAPSHARE_BIN") or shutil.which("mapshare")
    if not path:
        pytest.fail("MAPSHARE_BIN is not set and no mapshare is on PATH")
    return path


@pytest.fixture
def shm_name():
    """A fresh `/dev/shm` name; whatever was made under it is removed after
    the test (through `mapshare.shm_remove`, the only way mapshare removes
    one)."""
    name = f"mapshare-pytest-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    yield name
    try:
        mapshare.shm_remove(name)
    except mapshare.NotFound:
        pass


def _child_code(code):
    return textwrap.dedent(code)


class Child:
    """A `python -c` child with line-based stdout; `expect(line)` waits for
    it to say that line (its readiness)."""

    def __init__(self, code, *args, stdin=None, env=None, pass_fds=()):
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _child_code(code), *map(str, args)],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            pass_fds=pass_fds,
        )

    def expect(self, want):
        line = self.proc.stdout.readline().decode().strip()
        if line != want:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=PATIENCE)
            pytest.fail(f"child said {line!r}, not {want!r}; stderr:\n{err.decode()}")

    def line(self):
        return self.proc.stdout.readline().decode().rstrip("\n")

    def finish(self, timeout=PATIENCE):
        """Waits for the child; returns (returncode, stdout, stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), err.decode()

    def ok(self, timeout=PATIENCE):
        """Waits for a clean exit; returns stdout."""
        rc, out, err = self.finish(timeout)
        assert rc == 0, f"child exited {rc}; stderr:\n{err}"
        return out

    def kill(self):
        """SIGKILLs the child and reaps it."""
        self.proc.kill()
        self.proc.wait(timeout=PATIENCE)

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.communicate(timeout=PATIENCE)
        except (ValueError, subprocess.TimeoutExpired):
            pass


@pytest.fixture
def spawn_py():
    """`spawn_py(code, *args)` starts `python -c code args...`; every child
    still running at teardown is killed."""
    children = []

    def spawn(code, *args, **kw):
        c = Child(code, *args, **kw)
        children.append(c)
        return c

    yield spawn
    for c in children:
        c.cleanup()


@pytest.fixture
def run_py(spawn_py):
    """`run_py(code, *args)` runs `python -c code args...` to the end and
    returns its stdout (failing the test if it exits non-zero)."""

    def run(code, *args, **kw):
        return spawn_py(code, *args, **kw).ok()

    return run


def run_cli(cli, *args, input=None, check=True):
    """Runs the CLI; returns the CompletedProcess (bytes)."""
    p = subprocess.run(
        [cli, *map(str, args)],
        input=input,
        capture_output=True,
        timeout=PATIENCE,
    )
    if check:
        assert p.returncode == 0, f"mapshare {args} exited {p.returncode}: {p.stderr.decode()}"
    return p

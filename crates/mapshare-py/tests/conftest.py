"""Shared fixtures of the Python tests (run by `cargo test`, see
crates/mapshare-cli/tests/python.rs)."""

import os
import shutil

import pytest


@pytest.fixture
def cli():
    """The `mapshare` CLI of this build (MAPSHARE_BIN), or the one on PATH."""
    path = os.environ.get("MAPSHARE_BIN") or shutil.which("mapshare")
    if not path:
        pytest.fail("MAPSHARE_BIN is not set and no mapshare is on PATH")
    return path

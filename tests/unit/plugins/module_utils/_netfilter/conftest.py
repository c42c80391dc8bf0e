# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the dataplane's tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A throwaway named network namespace (``ztd-<pid>-<test>``), removed after the test; needs root."""
    name = f"ztd-{os.getpid()}-{abs(hash(request.node.nodeid)) % 10**8}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)

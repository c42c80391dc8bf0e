# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the dataplane's tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def throwaway_namespace(name: str) -> Iterator[str]:
    """The named network namespace ``name``, made for the block and removed after it; needs root."""
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A throwaway named network namespace (``ztd-<pid>-<test>``), removed after the test; needs root."""
    with throwaway_namespace(f"ztd-{os.getpid()}-{abs(hash(request.node.nodeid)) % 10**8}") as name:
        yield name


@pytest.fixture
def other_namespace(namespace: str) -> Iterator[str]:
    """A second throwaway namespace beside ``namespace`` (``<namespace>-b``): the tools' result to compare with."""
    with throwaway_namespace(f"{namespace}-b") as name:
        yield name

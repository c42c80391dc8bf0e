# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the audit tests."""

from __future__ import annotations

from typing import Any

import pytest
from audit_seed import seed_hostvars, seed_policy


@pytest.fixture
def hostvars() -> dict[str, dict[str, Any]]:
    """The seed's hostvars."""
    data: dict[str, dict[str, Any]] = seed_hostvars()
    return data


@pytest.fixture
def policy() -> dict[str, Any]:
    """The seed's policy."""
    data: dict[str, Any] = seed_policy()
    return data

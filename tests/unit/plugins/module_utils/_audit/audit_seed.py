# SPDX-License-Identifier: GPL-3.0-or-later
"""The seed lab for the audit tests: hostvars as the lab's inventory plugin produced them, and the policy.

The policy and the pods' inventory names are the compiler tests' (policy_seed). The hostvars are not:
the audit reads live rules and flows recorded on the lab (fixtures/allowlist_results.json), so it needs
the lab's own inventory, dual-stack addresses and connection variables included, not the hand-built one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.plugins.module_utils._policy.policy_seed import MYSQL_POD, WORDPRESS_POD, seed_policy

__all__ = ["FIXTURES", "MYSQL_POD", "WORDPRESS_POD", "seed_hostvars", "seed_policy"]

FIXTURES = Path(__file__).parent / "fixtures"


def seed_hostvars() -> dict[str, dict[str, Any]]:
    """The seed's hostvars (``ansible-inventory --list`` of the lab, unsafe markers removed)."""
    data: dict[str, dict[str, Any]] = json.loads((FIXTURES / "seed_hostvars.json").read_text())
    return data

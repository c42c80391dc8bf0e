# SPDX-License-Identifier: GPL-3.0-or-later
"""How the module and the action in front of it name a pod in results."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.targets import pod_label


@pytest.mark.parametrize(
    ("pod", "label"),
    [
        ({"host": "db.pod", "namespace": "ns", "name": "db"}, "db.pod"),
        ({"namespace": "ns", "name": "db"}, "ns/db"),
        ({"host": "", "namespace": "ns", "name": "db"}, "ns/db"),
        ({"host": None, "name": "x"}, "None/x"),
        ({}, "None/None"),
    ],
)
def test_pod_label(pod: dict[str, Any], label: str) -> None:
    assert pod_label(pod) == label

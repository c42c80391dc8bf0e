# SPDX-License-Identifier: GPL-3.0-or-later
"""The seed lab for the audit tests: hostvars as the lab's inventory plugin produced them, and the policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
WORDPRESS_POD = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"
MYSQL_POD = "wordpress-mysql-5b58bbd695-gxtc4.wordpress.pod.lab"
SEED_POLICY: dict[str, Any] = {
    "filters": {
        "frontend": "pod_name = wordpress-6dfdd9f64f-d75j2",
        "db": "pod_name contains wordpress-mysql",
        "wordpress": "service_name = wordpress and namespace = wordpress",
        "haproxy": "address = 172.18.221.1",
    },
    "policies": {
        "absolute": [],
        "default": [
            {"consumer": "haproxy", "provider": "wordpress", "ports": ["tcp/80"]},
            {"consumer": "frontend", "provider": "db", "ports": ["tcp/3306"]},
        ],
        "catch_all": "deny",
    },
}


def seed_hostvars() -> dict[str, dict[str, Any]]:
    """The seed's hostvars (``ansible-inventory --list`` of the lab, unsafe markers removed)."""
    data: dict[str, dict[str, Any]] = json.loads((FIXTURES / "seed_hostvars.json").read_text())
    return data


def seed_policy() -> dict[str, Any]:
    """A fresh copy of the seed's policy."""
    data: dict[str, Any] = json.loads(json.dumps(SEED_POLICY))
    return data

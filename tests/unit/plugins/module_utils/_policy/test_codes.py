# SPDX-License-Identifier: GPL-3.0-or-later
"""Every compiler warning is also a coded finding: callers decide on the code, never on the wording."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.codes import WARNING_CODES
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy

from tests.unit.plugins.module_utils._policy.policy_seed import MYSQL_POD, seed_hostvars, seed_policy

FILTERS = {"nobody": "pod_name = nobody", "haproxy": "address = 172.18.221.1", "wp": "service_name = wordpress",
           "db": "pod_name contains wordpress-mysql"}


def rule(consumer: str, provider: str, *ports: str) -> dict[str, Any]:
    return {"consumer": consumer, "provider": provider, "ports": list(ports)}


def host_network() -> dict[str, Any]:
    hostvars = copy.deepcopy(seed_hostvars())
    hostvars[MYSQL_POD]["workload"]["host_network"] = True
    return hostvars


def skipped_vm() -> dict[str, Any]:
    hostvars = copy.deepcopy(seed_hostvars())
    hostvars["named"] = {"ansible_host": "db.example"}
    return hostvars


# rules of the policy, hostvars -> [(code, data beyond code and text)] in the order the warnings come
CODES = [
    ([rule("haproxy", "wp", "tcp/80")], seed_hostvars, []),
    ([rule("nobody", "haproxy", "tcp/80")], seed_hostvars,
     [("unmatched_filter", {"policy": "default[0]", "side": "consumer", "filter": "nobody"})]),
    ([rule("haproxy", "nobody", "tcp/80")], seed_hostvars,
     [("unmatched_filter", {"policy": "default[0]", "side": "provider", "filter": "nobody"})]),
    ([rule("haproxy", "wp", "icmp", "tcp/81")], seed_hostvars,
     [("service_icmp", {"policy": "default[0]"}), ("service_port_missing", {"policy": "default[0]"})]),
    ([rule("haproxy", "db", "tcp/nosuchport")], seed_hostvars, [("unknown_port_name", {"policy": "default[0]"})]),
    ([rule("haproxy", "wp", "tcp/80")], host_network, [("host_network", {"pods": ["wordpress/wordpress-mysql-5b58bbd695-gxtc4"]})]),
    ([rule("haproxy", "wp", "tcp/80")], skipped_vm, [("host_left_out", {})]),
]


@pytest.mark.parametrize(("rules", "hostvars", "expected"), CODES)
def test_warnings_have_codes(rules: list[dict[str, Any]], hostvars: Any, expected: list[tuple[str, dict[str, Any]]]) -> None:
    policy = {"filters": FILTERS, "policies": {"default": rules, "catch_all": "deny"}}
    plan = compile_policy(policy, hostvars())
    assert [(finding["code"], {key: value for key, value in finding.items() if key not in ("code", "text")})
            for finding in plan["findings"]] == expected
    # The texts are the warnings, one for one.
    assert [finding["text"] for finding in plan["findings"]] == plan["warnings"]
    assert all(finding["code"] in WARNING_CODES for finding in plan["findings"])


def test_the_seed_compiles_without_warnings() -> None:
    assert compile_policy(seed_policy(), seed_hostvars())["findings"] == []

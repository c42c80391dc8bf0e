# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""``workload.vulnerabilities`` and the ``vuln.*`` query attributes."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import QuerySyntaxError, WorkloadError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import Selector, evaluate, parse_query
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import Workload, workload_from_record


def pod(name: str, vulnerabilities: Any = None) -> Workload:
    record: dict[str, Any] = {"kind": "pod", "name": name, "namespace": "shop", "addresses": ["10.0.0.1"]}
    if vulnerabilities is not None:
        record["vulnerabilities"] = vulnerabilities
    return workload_from_record(f"{name}.shop.pod.lab", record, {})


VULNERABLE = pod("web", {"critical": 2, "high": 1, "medium": 0, "low": 7, "unknown": 0, "ids": ["CVE-2024-3094", "GHSA-xxxx"],
                         "scanned": True})
CLEAN = pod("api", {"critical": 0, "high": 0, "medium": 0, "low": 0, "unknown": 0, "ids": [], "scanned": True})
UNSCANNED = pod("db")
VM = Workload(host="haproxy", kind="vm", name="haproxy", addresses=("172.18.221.1",))

QUERIES = [
    # (query, matches for VULNERABLE, CLEAN, UNSCANNED, VM)
    ("vuln.critical > 0", (True, False, False, False)),
    ("vuln.critical >= 2", (True, False, False, False)),
    ("vuln.critical < 1", (False, True, False, False)),
    ("vuln.low <= 7 and vuln.low > 6", (True, False, False, False)),
    ("vuln.high = 1", (True, False, False, False)),
    ("vuln.medium = 0", (True, True, False, False)),
    ("vuln.unknown != 0", (False, False, True, True)),  # != matches where the value is missing, as for labels
    ("vuln.critical exists", (True, True, False, False)),
    ("not vuln.critical exists", (False, False, True, True)),
    ("vuln.id = CVE-2024-3094", (True, False, False, False)),
    ("vuln.id contains CVE-2024-", (True, False, False, False)),
    ("vuln.id contains GHSA", (True, False, False, False)),
    ("vuln.id in (CVE-1, GHSA-xxxx)", (True, False, False, False)),
    ("vuln.id = CVE-2024", (False, False, False, False)),  # = is a whole ID, contains a part
    ("kind = pod and (vuln.critical > 0 or not vuln.critical exists)", (True, False, True, False)),
]


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_vuln_attributes(query: str, expected: tuple[bool, ...]) -> None:
    node = parse_query(query)
    assert tuple(evaluate(node, workload) for workload in (VULNERABLE, CLEAN, UNSCANNED, VM)) == expected
    selected = Selector([VULNERABLE, CLEAN, UNSCANNED, VM]).select_hosts(node)
    assert selected == {w.host for w, hit in zip((VULNERABLE, CLEAN, UNSCANNED, VM), expected, strict=True) if hit}


@pytest.mark.parametrize(("query", "message"), [
    ("vuln.critical > many", "'>' compares numbers, and 'many' is not a number such as 3 or 9.8"),
    ("vuln.id > 3", "'>' compares numbers and 'vuln.id' is never a number"),
    ("vuln.severe > 0", "unknown attribute 'vuln.severe'"),
])
def test_vuln_query_errors(query: str, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    assert message in str(caught.value)


@pytest.mark.parametrize(("value", "message"), [
    ("lots", "host db.shop.pod.lab: workload.vulnerabilities must be a mapping of counts per severity and ids, got text"),
    ({"critical": -1}, "host db.shop.pod.lab: workload.vulnerabilities.critical must be a whole number >= 0, got -1"),
    ({"high": "2"}, "host db.shop.pod.lab: workload.vulnerabilities.high must be a whole number >= 0, got '2'"),
    ({"low": True}, "host db.shop.pod.lab: workload.vulnerabilities.low must be a whole number >= 0, got True"),
    ({"ids": "CVE-1"}, "host db.shop.pod.lab: workload.vulnerabilities.ids must be a list of vulnerability IDs (strings), got text"),
    ({"ids": [1]}, "host db.shop.pod.lab: workload.vulnerabilities.ids must be a list of vulnerability IDs (strings), got a list"),
])
def test_malformed_summary_names_host_and_field(value: Any, message: str) -> None:
    with pytest.raises(WorkloadError) as caught:
        pod("db", value)
    assert str(caught.value) == message


def test_missing_severities_count_zero_and_ids_are_sorted_unique() -> None:
    found = pod("db", {"critical": 1, "ids": ["b", "a", "b"]}).vulnerabilities
    assert found is not None
    assert dict(found.counts) == {"critical": 1, "high": 0, "medium": 0, "low": 0, "unknown": 0}
    assert found.ids == ("a", "b")

# SPDX-License-Identifier: GPL-3.0-or-later
"""Which hosts are workloads, and how a VM's record is derived."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import workloads_from_hostvars

VM_CASES: list[tuple[str, dict[str, Any], Optional[tuple[str, ...]], list[str]]] = [
    ("by zt_addresses", {"zt_addresses": ["2001:DB8::1", "192.0.2.1", "192.0.2.1"]}, ("192.0.2.1", "2001:db8::1"), []),
    ("by ansible_host", {"ansible_host": "192.0.2.5"}, ("192.0.2.5",), []),
    ("zt_addresses win", {"ansible_host": "192.0.2.5", "zt_addresses": "192.0.2.6"}, ("192.0.2.6",), []),
    (
        "a DNS name",
        {"ansible_host": "db.example.org"},
        None,
        [
            "host h is not a workload: ansible_host 'db.example.org' is a name, not an IP address; "
            "set zt_addresses to its addresses to bring it under policy"
        ],
    ),
    ("a local connection", {"ansible_host": "192.0.2.5", "ansible_connection": "local"}, None, []),
    ("nothing at all", {}, None, []),
    (
        "bad zt_addresses",
        {"zt_addresses": ["nope"]},
        None,
        [
            "host h: zt_addresses holds something that is not an IP address: "
            "'nope' does not appear to be an IPv4 or IPv6 address; the host is left out of the policy"
        ],
    ),
    (
        "bad record",
        {"workload": {"kind": "container"}},
        None,
        ["host h: workload.kind 'container' is not one of pod, service, node, vm; the host is left out of the policy"],
    ),
]


@pytest.mark.parametrize(("case", "variables", "addresses", "warnings"), VM_CASES, ids=[case[0] for case in VM_CASES])
def test_vm_derivation(case: str, variables: dict[str, Any], addresses: Optional[tuple[str, ...]], warnings: list[str]) -> None:
    workloads, found_warnings = workloads_from_hostvars({"h": variables})
    assert found_warnings == warnings
    if addresses is None:
        assert workloads == []
    else:
        assert [(workload.kind, workload.name, workload.addresses) for workload in workloads] == [("vm", "h", addresses)]


def test_inventory_hostname_that_is_an_address_and_labels() -> None:
    workloads, _ = workloads_from_hostvars({"192.0.2.9": {"zt_labels": {"role": "lb", "n": 1}, "group_names": ["b", "a"]}, "localhost": {}})
    assert [(w.host, w.addresses, dict(w.labels), w.groups) for w in workloads] == [
        ("192.0.2.9", ("192.0.2.9",), {"role": "lb", "n": "1"}, ("a", "b"))
    ]

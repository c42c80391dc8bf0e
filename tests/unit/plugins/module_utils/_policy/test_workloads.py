# SPDX-License-Identifier: GPL-3.0-or-later
"""Which hosts are workloads, and how a VM's record is derived."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import WorkloadError
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
        "bad zt_addresses, skipped on request",
        {"zt_addresses": ["nope"], "zt_skip_malformed": True},
        None,
        [
            "host h: zt_addresses holds something that is not an IP address: "
            "'nope' does not appear to be an IPv4 or IPv6 address; the host is left out of the policy (zt_skip_malformed)"
        ],
    ),
    (
        "bad record, skipped on request",
        {"workload": {"kind": "container"}, "zt_skip_malformed": True},
        None,
        ["host h: workload.kind 'container' is not one of pod, service, node, vm; the host is left out of the policy (zt_skip_malformed)"],
    ),
    ("localhost with zt_addresses is a workload", {"ansible_connection": "local", "zt_addresses": ["192.0.2.8"]}, ("192.0.2.8",), []),
]

MALFORMED_CASES: list[tuple[str, dict[str, dict[str, Any]], str]] = [
    (
        "bad zt_addresses",
        {"h": {"zt_addresses": ["nope"]}},
        "malformed host records: host h: zt_addresses holds something that is not an IP address: "
        "'nope' does not appear to be an IPv4 or IPv6 address",
    ),
    (
        "bad workload.kind",
        {"h": {"workload": {"kind": "container"}}},
        "malformed host records: host h: workload.kind 'container' is not one of pod, service, node, vm",
    ),
    (
        "bad zt_labels",
        {"h": {"ansible_host": "192.0.2.1", "zt_labels": ["web"]}},
        "malformed host records: host h: zt_labels must be a mapping, got a list",
    ),
    (
        "every bad host at once, a good one does not hide them",
        {
            "a": {"zt_addresses": "x"},
            "b": {"ansible_host": "192.0.2.1"},
            "c": {"workload": "pod"},
            "d": {"zt_addresses": "y", "zt_skip_malformed": "yes"},  # only true skips
        },
        "malformed host records: host a: zt_addresses holds something that is not an IP address: "
        "'x' does not appear to be an IPv4 or IPv6 address; host c: workload must be a mapping, got text; "
        "host d: zt_addresses holds something that is not an IP address: 'y' does not appear to be an IPv4 or IPv6 address",
    ),
]


@pytest.mark.parametrize(("case", "hostvars", "message"), MALFORMED_CASES, ids=[case[0] for case in MALFORMED_CASES])
def test_a_malformed_record_is_an_error_naming_host_and_variable(case: str, hostvars: dict[str, dict[str, Any]], message: str) -> None:
    with pytest.raises(WorkloadError) as raised:
        workloads_from_hostvars(hostvars)
    assert str(raised.value) == (
        f"{message}; fix them, or set zt_skip_malformed: true on a host to leave it out of the policy with a warning"
    )


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

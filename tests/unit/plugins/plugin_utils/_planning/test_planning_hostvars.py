# SPDX-License-Identifier: GPL-3.0-or-later
"""The planning step's view of hostvars: cluster records as stored, operators' variables rendered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import workloads_from_hostvars
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.hostvars import PlanningHostvars, RecordedHostvars

# A label value from the cluster that looks like a template: it must reach the compiler as written.
LOOKS_LIKE_A_TEMPLATE = "{{ lookup('env', 'HOME') }}"


@pytest.fixture
def hostvars(tmp_path: Path) -> Any:
    inventory = {
        "all": {
            "vars": {"vm_address": "192.0.2.10"},
            "hosts": {
                "web-vm": {"zt_addresses": ["{{ vm_address }}"], "zt_labels": {"role": "{{ 'web' | upper }}"}},
                "pod-a": {
                    "workload": {
                        "kind": "pod", "name": "a", "namespace": "shop", "addresses": ["10.244.1.5"],
                        "labels": {"note": LOOKS_LIKE_A_TEMPLATE},
                    },
                },
            },
            "children": {"frontend": {"hosts": {"pod-a": {}}}},
        }
    }
    source = tmp_path / "hosts.yml"
    source.write_text(yaml.safe_dump(inventory))
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(source)])
    variables = VariableManager(loader=loader, inventory=manager)
    return PlanningHostvars(HostVars(manager, variables, loader), loader)


def test_operator_variables_are_rendered_and_cluster_records_are_not(hostvars: Any) -> None:
    assert hostvars["web-vm"]["zt_addresses"] == ["192.0.2.10"]
    assert hostvars["web-vm"]["zt_labels"] == {"role": "WEB"}
    assert hostvars["pod-a"]["workload"]["labels"] == {"note": LOOKS_LIKE_A_TEMPLATE}
    assert list(hostvars["pod-a"]["group_names"]) == ["frontend"]
    assert sorted(hostvars) == ["pod-a", "web-vm"]


def test_the_compiler_reads_the_view_like_hostvars(hostvars: Any) -> None:
    workloads, warnings = workloads_from_hostvars(hostvars)
    found = {workload.host: workload for workload in workloads}
    assert warnings == []
    assert [str(address) for address in found["web-vm"].addresses] == ["192.0.2.10"]
    assert dict(found["web-vm"].labels) == {"role": "WEB"}
    assert dict(found["pod-a"].labels) == {"note": LOOKS_LIKE_A_TEMPLATE}
    assert found["pod-a"].groups == ("frontend",)


def test_a_plain_mapping_is_used_as_it_is() -> None:
    plain = {"h": {"zt_addresses": ["192.0.2.1"]}}
    view = PlanningHostvars(plain, DataLoader())
    assert view["h"] is plain["h"]
    with pytest.raises(KeyError):
        view["missing"]


def test_what_the_compiler_read_is_kept_rendered(hostvars: Any) -> None:
    recorded = RecordedHostvars(hostvars)
    workloads, _warnings = workloads_from_hostvars(recorded)
    snapshot = recorded.snapshot()
    assert snapshot is not None
    assert snapshot["web-vm"]["zt_addresses"] == ["192.0.2.10"] and snapshot["web-vm"]["zt_labels"] == {"role": "WEB"}
    assert snapshot["pod-a"]["workload"]["labels"] == {"note": LOOKS_LIKE_A_TEMPLATE}
    # Compiling from the snapshot reads the same workloads.
    again, _ = workloads_from_hostvars(json.loads(json.dumps(snapshot)))
    assert [(w.host, w.addresses, dict(w.labels), w.groups) for w in again] == [
        (w.host, w.addresses, dict(w.labels), w.groups) for w in workloads]


@pytest.mark.parametrize(
    ("reads", "kept"),
    [
        ((("h", "workload"), ("h", "zt_addresses")), {"h": {"workload": {"kind": "pod"}, "zt_addresses": ["192.0.2.1"]}}),
        ((("h", "zt_missing"),), {"h": {}}),
        ((("h", "group_names"), ("g", "ansible_host")), {"h": {"group_names": ["a"]}, "g": {"ansible_host": "192.0.2.2"}}),
        ((("h", "secret"),), None),
        ((("h", "workload"), ("g", "ansible_user")), None),
    ],
)
def test_the_snapshot_holds_only_the_compiler_s_variables(reads: tuple[tuple[str, str], ...], kept: Any) -> None:
    plain = {
        "h": {"workload": {"kind": "pod"}, "zt_addresses": ["192.0.2.1"], "group_names": ["a"], "secret": "x"},
        "g": {"ansible_host": "192.0.2.2", "ansible_user": "root"},
    }
    recorded = RecordedHostvars(plain)
    for host, name in reads:
        recorded[host].get(name)
    assert recorded.snapshot() == kept


def test_walking_a_host_s_variable_names_leaves_no_snapshot() -> None:
    recorded = RecordedHostvars({"h": {"zt_labels": {}}})
    assert sorted(recorded["h"]) == ["zt_labels"]
    assert recorded.snapshot() is None

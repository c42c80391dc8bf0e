# SPDX-License-Identifier: GPL-3.0-or-later
"""The planning step's view of hostvars: cluster records as stored, operators' variables rendered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import workloads_from_hostvars
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.hostvars import PlanningHostvars

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

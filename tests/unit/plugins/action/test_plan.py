# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan action's interface, and the allowlist/flows actions that hand each host its part of the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleActionFail
from ansible_collections.zerotrust.workloads.plugins.action.allowlist import arguments_from_plan
from ansible_collections.zerotrust.workloads.plugins.module_utils._planning.spec import ARGUMENT_SPEC
from ansible_collections.zerotrust.workloads.plugins.modules import plan as plan_doc
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning import step, store
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.inputs import Request

from tests.unit.plugins.module_utils._policy.policy_seed import WORDPRESS_POD, seed_hostvars, seed_policy


def test_the_documentation_matches_the_argument_spec() -> None:
    documented = yaml.safe_load(plan_doc.DOCUMENTATION)["options"]
    assert sorted(documented) == sorted(ARGUMENT_SPEC)
    for name, spec in ARGUMENT_SPEC.items():
        doc = documented[name]
        assert (doc.get("type"), doc.get("default"), doc.get("choices"), doc.get("elements")) == (
            spec.get("type"), spec.get("default"), spec.get("choices"), spec.get("elements")), name


@pytest.fixture
def outline(tmp_path: Path) -> Any:
    found = step.first_pass(Request.from_args({"policy": seed_policy(), "management_addresses": ["192.0.2.10"],
                                               "run": {"backend": "nftables", "persist": False}}), seed_hostvars(), parent=str(tmp_path))
    yield found
    store.discard(found["path"])


def test_without_a_plan_the_arguments_go_to_the_module_unchanged() -> None:
    args = {"ruleset": {"chains": []}, "pods": [], "state": "absent"}
    assert arguments_from_plan("zerotrust.workloads.allowlist", args, "haproxy") == args


def test_a_host_gets_its_part_and_the_run_options(outline: Any) -> None:
    args = arguments_from_plan("zerotrust.workloads.allowlist", {"plan": outline, "rollback_timeout": 30}, "k8s-node1")
    part = store.host_part(outline, "k8s-node1")
    assert args == {"state": "present", "backend": "nftables", "persist": False, "management_addresses": ["192.0.2.10"], "keep_ssh": True,
                    **part, "rollback_timeout": 30}
    assert [pod["host"] for pod in args["pods"]] == [WORDPRESS_POD]
    # The flows module takes only the pods (and what the task gives).
    given = {"plan": outline, "host_label": "k8s-node1"}
    flows = arguments_from_plan("zerotrust.workloads.flows", given, "k8s-node1", frozenset(("pods",)))
    assert flows == {"pods": part["pods"], "host_label": "k8s-node1"}


def test_a_host_outside_the_plan_is_refused(outline: Any) -> None:
    with pytest.raises(AnsibleActionFail) as raised:
        arguments_from_plan("zerotrust.workloads.allowlist", {"plan": outline}, WORDPRESS_POD)
    assert str(raised.value).startswith(
        f"zerotrust.workloads.allowlist: host {WORDPRESS_POD} has no part in the plan (only VMs and nodes in scope have one)")

# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan action's interface, and the allowlist/flows actions that hand each host its part of the plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleActionFail
from ansible_collections.zerotrust.workloads.plugins.action.allowlist import arguments_from_plan, pristine_pods, unchanged_pods
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
    # The allowlist action packs the part into one compact JSON text; what the task gives stays an option.
    packed = arguments_from_plan("zerotrust.workloads.allowlist", {"plan": outline, "rollback_timeout": 30}, "k8s-node1", packed=True)
    assert {key: value for key, value in packed.items() if key != "plan_json"} == {
        "state": "present", "backend": "nftables", "persist": False, "management_addresses": ["192.0.2.10"], "keep_ssh": True,
        "rollback_timeout": 30}
    assert packed["plan_json"] == json.dumps(part, separators=(",", ":"))
    given = arguments_from_plan("zerotrust.workloads.allowlist", {"plan": outline, "pods": []}, "k8s-node1", packed=True)
    assert given["pods"] == [] and json.loads(given["plan_json"]) == {"ruleset": part["ruleset"], "sets": part["sets"]}
    # The flows module takes only the pods (and what the task gives).
    given = {"plan": outline, "host_label": "k8s-node1"}
    flows = arguments_from_plan("zerotrust.workloads.flows", given, "k8s-node1", frozenset(("pods",)))
    assert flows == {"pods": part["pods"], "host_label": "k8s-node1"}


PREVIEW = {"changed": True, "results": [
    {"target": "host", "changed": False, "in_place": 12},
    {"target": "db.pod", "changed": False, "in_place": 9},
    {"target": "web.pod", "changed": True, "in_place": 4},
    {"target": "new.pod", "changed": True, "in_place": 0},
    {"target": "gone.pod", "changed": False, "skipped": True},
    {"target": "broken.pod", "changed": False, "failed": True},
    {"target": "broken-new.pod", "changed": True, "failed": True, "in_place": 0},
    {"target": "ns/unnamed", "changed": False, "in_place": 9},
]}


def test_unchanged_pods_are_those_the_preview_read_and_found_right() -> None:
    assert unchanged_pods(PREVIEW) == {"db.pod", "ns/unnamed"}
    # No usable preview: every pod runs.
    for preview in (None, {}, {**PREVIEW, "failed": True}, {**PREVIEW, "skipped": True}, {**PREVIEW, "unreachable": True}, "x"):
        assert unchanged_pods(preview) == frozenset()


def test_pristine_pods_are_those_the_preview_found_holding_nothing() -> None:
    # Not the host (it always reads first), not a pod with anything in place, not one the preview failed on.
    assert pristine_pods(PREVIEW) == {"new.pod"}
    for preview in (None, {}, {**PREVIEW, "failed": True}, {**PREVIEW, "skipped": True}, {**PREVIEW, "unreachable": True}, "x"):
        assert pristine_pods(preview) == frozenset()
    # A result without counts (an older module) names none.
    assert pristine_pods({"results": [{"target": "new.pod", "changed": True}]}) == frozenset()


def test_the_action_does_not_load_the_dataplane() -> None:
    # Loaded in every ansible-playbook run that uses the module: the backends, netlink and persistence cost about
    # 0.1 s of CPU to import there, and the action needs none of them.
    code = ("import sys\n"
            "import ansible_collections.zerotrust.workloads.plugins.action.allowlist\n"
            "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if '._netfilter.' in m))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.strip() == "['targets']"


def test_pods_the_preview_found_unchanged_are_left_out(outline: Any) -> None:
    part = store.host_part(outline, "k8s-node1")
    packed = arguments_from_plan("zerotrust.workloads.allowlist", {"plan": outline}, "k8s-node1", packed=True,
                                 leave_out=frozenset((WORDPRESS_POD,)))
    assert json.loads(packed["plan_json"]) == {**part, "pods": []}
    kept = arguments_from_plan("zerotrust.workloads.allowlist", {"plan": outline}, "k8s-node1", packed=True,
                               leave_out=frozenset(("other.pod",)))
    assert json.loads(kept["plan_json"]) == part
    # Pods the task gives itself are its own: not filtered.
    given = arguments_from_plan("zerotrust.workloads.allowlist", {"plan": outline, "pods": part["pods"]}, "k8s-node1", packed=True,
                                leave_out=frozenset((WORDPRESS_POD,)))
    assert given["pods"] == part["pods"]


def test_a_host_outside_the_plan_is_refused(outline: Any) -> None:
    with pytest.raises(AnsibleActionFail) as raised:
        arguments_from_plan("zerotrust.workloads.allowlist", {"plan": outline}, WORDPRESS_POD)
    assert str(raised.value).startswith(
        f"zerotrust.workloads.allowlist: host {WORDPRESS_POD} has no part in the plan (only VMs and nodes in scope have one)")

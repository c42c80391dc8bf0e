# SPDX-License-Identifier: GPL-3.0-or-later
"""The planning step end to end over the seed inventory: what it returns, what it keeps, what each host gets."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning import step, store
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.errors import PlanningError
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.inputs import Request

from tests.unit.plugins.module_utils._policy.policy_seed import MYSQL_POD, WORDPRESS_POD, seed_hostvars, seed_policy

PLAN_HOSTS = ["haproxy", "k8s-master", "k8s-node1", "k8s-node2", "k8s-node3", "outsider"]


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan directories go below this test's tmp_path."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile  # noqa: PLC0415

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def plan_hosts(hostvars: dict[str, Any]) -> list[str]:
    return sorted(compile_policy(seed_policy(), hostvars, {"management_addresses": ["192.0.2.10"]})["hosts"])


def test_one_pass_with_management_addresses(tmp_path: Path) -> None:
    hostvars = seed_hostvars()
    request = Request.from_args({"policy": seed_policy(), "management_addresses": ["192.0.2.10"], "run": {"backend": "nftables"}})
    outline = step.first_pass(request, hostvars)
    assert outline["complete"] is True and outline["discover"] is False
    assert sorted(outline["hosts"]) == plan_hosts(hostvars)
    assert outline["hosts"]["k8s-node1"]["pods"] == 1 and outline["hosts"]["haproxy"]["pods"] == 0
    assert outline["run"] == {"state": "present", "backend": "nftables", "management_addresses": ["192.0.2.10"], "keep_ssh": True}
    assert outline["management_addresses"] == ["192.0.2.10"]
    assert outline["options"]["management_addresses"] == ["192.0.2.10"]
    # The plan stays on the controller: a private directory, one file per host holding exactly the compiler's part.
    directory = Path(outline["path"])
    assert directory.parent == tmp_path and stat.S_IMODE(directory.stat().st_mode) == 0o700
    expected = compile_policy(seed_policy(), hostvars, {"management_addresses": ["192.0.2.10"]})["hosts"]
    for host, entry in outline["hosts"].items():
        assert json.loads(Path(entry["file"]).read_text()) == expected[host]
        assert entry["bytes"] == Path(entry["file"]).stat().st_size
        assert stat.S_IMODE(Path(entry["file"]).stat().st_mode) == 0o600
    # The outline carries no rules at all.
    assert '"chains"' not in json.dumps(outline)
    # The second pass has nothing to do and returns the same outline.
    assert step.resume(outline["path"], hostvars, lambda hosts: []) == outline
    assert store.discard(outline["path"]) is True and not directory.exists()
    assert store.discard(outline["path"]) is False


def test_two_passes_when_the_controller_address_is_read_from_the_hosts() -> None:
    hostvars = seed_hostvars()
    first = step.first_pass(Request(policy=seed_policy()), hostvars)
    assert (first["complete"], first["discover"], first["management_addresses"]) == (False, True, [])
    # Until then the hosts' parts hold only their pods (no rules): enough for the flows module, refused for the allowlist.
    node1 = store.host_part(first, "k8s-node1", complete=False)
    assert list(node1) == ["pods"] and [pod["host"] for pod in node1["pods"]] == [WORDPRESS_POD]
    assert "ruleset" not in node1["pods"][0]
    with pytest.raises(PlanningError, match=r"^the plan is not complete: the controller's address is still to be read"):
        store.host_part(first, "k8s-node1")
    asked: list[Sequence[str]] = []

    def reports(hosts: Sequence[str]) -> Iterable[tuple[Any, Any]]:
        asked.append(list(hosts))
        return [("192.0.2.7 5000 172.18.221.1 22", None), (None, {"stdout_lines": ["zerotrust-ssh-connection=192.0.2.8 1 2 22"]})]

    second = step.resume(first["path"], hostvars, reports)
    assert asked == [PLAN_HOSTS]
    assert (second["complete"], second["discover"], second["management_addresses"]) == (True, True, ["192.0.2.7", "192.0.2.8"])
    assert second["run"]["management_addresses"] == ["192.0.2.7", "192.0.2.8"]
    expected = compile_policy(seed_policy(), hostvars, {"management_addresses": ["192.0.2.7", "192.0.2.8"]})["hosts"]
    assert store.host_part(second, "haproxy") == expected["haproxy"]
    store.discard(second["path"])


class Untouchable(dict[str, Any]):
    """Hostvars the second pass must not read: it compiles from what the first pass read."""

    def __getitem__(self, host: str) -> Any:
        raise AssertionError(f"the second pass read host {host}")

    def __iter__(self) -> Any:
        raise AssertionError("the second pass walked the inventory")


class Counted(dict[str, Any]):
    """Hostvars that count the hosts read."""

    reads = 0

    def __getitem__(self, host: str) -> Any:
        Counted.reads += 1
        return super().__getitem__(host)


def test_the_second_pass_compiles_from_what_the_first_read() -> None:
    hostvars = seed_hostvars()
    first = step.first_pass(Request(policy=seed_policy()), hostvars)
    snapshot = Path(first["path"]) / store.INVENTORY
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    kept = json.loads(snapshot.read_text())
    assert sorted(kept) == sorted(hostvars)
    # Only the compiler's own variables are written down.
    assert {name for variables in kept.values() for name in variables} <= {
        "workload", "group_names", "ansible_host", "ansible_connection", "zt_addresses", "zt_labels", "zt_enforce_host", "zt_netns"}
    assert kept[WORDPRESS_POD]["workload"] == hostvars[WORDPRESS_POD]["workload"]
    second = step.resume(first["path"], Untouchable(), lambda hosts: [("192.0.2.7 5000 172.18.221.1 22", None)])
    expected = compile_policy(seed_policy(), hostvars, {"management_addresses": ["192.0.2.7"]})["hosts"]
    assert sorted(second["hosts"]) == sorted(expected)
    for host in expected:
        assert store.host_part(second, host) == expected[host], host
    store.discard(second["path"])


def test_a_policy_reading_other_variables_leaves_the_second_pass_to_read_them() -> None:
    # var.<path> may name anything, a secret too: such a read is never written down.
    hostvars = {**seed_hostvars(), "vm-secret": {"ansible_host": "192.0.2.44", "vault_token": "s3cr3t"}}
    policy = {**seed_policy(), "filters": {**seed_policy()["filters"], "tokened": "var.vault_token exists"}}
    first = step.first_pass(Request(policy=policy), hostvars)
    assert not (Path(first["path"]) / store.INVENTORY).exists()
    Counted.reads = 0
    second = step.resume(first["path"], Counted(hostvars), lambda hosts: [("192.0.2.7 5000 172.18.221.1 22", None)])
    assert Counted.reads == len(hostvars)
    assert "s3cr3t" not in "".join(path.read_text() for path in Path(second["path"]).rglob("*.json"))
    store.discard(second["path"])


def test_failures_leave_nothing_behind(tmp_path: Path) -> None:
    unknown = {"filters": {"a": "pod_name = x"}, "policies": {"default": [{"consumer": "a", "provider": "b", "ports": ["tcp/80"]}]}}
    with pytest.raises(PlanningError) as raised:
        step.first_pass(Request(policy=unknown), seed_hostvars())
    assert str(raised.value) == (
        "zerotrust.workloads.compile: the policy has 1 problem:\n"
        "  - policies.default[0].provider: unknown filter (known filters: a) (in 'b')"
    )
    nobody = {"filters": {"a": "pod_name = nobody"}, "policies": {"default": [{"consumer": "a", "provider": "a", "ports": ["tcp/80"]}]}}
    with pytest.raises(PlanningError, match=r"^The inventory lacks workloads the policy needs: policy default"):
        step.first_pass(Request(policy=nobody), seed_hostvars())
    with pytest.raises(PlanningError, match=r"^zerotrust.workloads.compile: (?s:.*)options.dns_service"):
        step.first_pass(Request(policy=seed_policy(), dns_service="no-slash"), seed_hostvars())
    assert not [path for path in os.listdir(tmp_path) if path.startswith(store.PREFIX)]


def test_absent_plans_every_enforcement_point_without_a_policy() -> None:
    outline = step.first_pass(Request(state="absent"), seed_hostvars())
    assert sorted(outline["hosts"]) == PLAN_HOSTS and outline["complete"] is True
    assert outline["run"]["state"] == "absent"
    store.discard(outline["path"])


@pytest.mark.parametrize(("plan", "host", "message"), [
    ("not a plan", "haproxy", "plan must be the registered result of zerotrust.workloads.plan"),
    ({"hosts": {}, "complete": True, "path": "/tmp"}, "haproxy", "host haproxy has no part in the plan"),
    ({"hosts": {"haproxy": {}}, "complete": True, "path": "/etc"}, "haproxy", "/etc is not a plan directory of zerotrust.workloads.plan"),
    ({"hosts": {"haproxy": {}}, "complete": True}, "haproxy", "the plan has no path"),
])
def test_host_part_refuses(plan: Any, host: str, message: str) -> None:
    with pytest.raises(PlanningError) as raised:
        store.host_part(plan, host)
    assert str(raised.value).startswith(message)


def test_discard_removes_only_plan_directories(tmp_path: Path) -> None:
    other = tmp_path / "zt-plan-lookalike"
    other.mkdir()
    with pytest.raises(PlanningError, match="is not a plan directory"):
        store.discard(str(other))
    with pytest.raises(PlanningError, match="is not a plan directory"):
        store.discard(str(tmp_path))
    assert other.exists()


def test_module_arguments_given_win() -> None:
    plan = {"run": {"state": "present", "backend": "auto", "keep_ssh": True}}
    part = {"ruleset": {"chains": []}, "pods": [{"host": MYSQL_POD}], "sets": {}}
    assert store.module_arguments(plan, part, {"backend": "nftables", "rollback_timeout": 30}) == {
        "state": "present", "backend": "nftables", "keep_ssh": True, "ruleset": {"chains": []}, "pods": [{"host": MYSQL_POD}],
        "sets": {}, "rollback_timeout": 30}
    pods_only = frozenset(("pods",))
    assert store.module_arguments(plan, part, {"host_label": "n1"}, pods_only) == {"pods": [{"host": MYSQL_POD}], "host_label": "n1"}
    assert store.module_arguments(plan, part, {"pods": []}, frozenset(("pods",))) == {"pods": []}

# SPDX-License-Identifier: GPL-3.0-or-later
"""The enforce role's controller-side input handling, through a real ansible-playbook run (no host is touched).

- Issue 15, item 12: ``options:`` inside the policy apply; a role variable that is set wins, one left at
  its empty default does not.
- Issue 15, item 13: an inventory whose Kubernetes source failed is refused, and the project's
  ansible.cfg makes the failure of a source fail the run in the first place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.plugins.module_utils._policy.policy_seed import seed_hostvars, seed_policy

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
# The plan step's outline: the effective management addresses, whether they are read from the hosts, the implicit switches.
FACTS = ["management_addresses", "discover", "implicit"]


def run(tool: str, *args: str, unparsed_is_failed: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "false",
                   "ANSIBLE_NOCOLOR": "1"}
    if unparsed_is_failed is not None:
        environment["ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"] = unparsed_is_failed
    return subprocess.run([str(BIN / tool), *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300, check=False)


def seed_inventory(directory: Path) -> Path:
    hosts = {host: {key: value for key, value in variables.items() if key != "group_names"}
             for host, variables in seed_hostvars().items() if host != "localhost"}
    path = directory / "seed.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return path


def compile_facts(tmp_path: Path, inventory: Path, variables: dict[str, Any], **run_options: Any) -> subprocess.CompletedProcess[str]:
    """Run the role's compile step on the VM haproxy (local connection) and write the facts it set to out.json."""
    out = tmp_path / "out.json"
    play = [{
        "hosts": "haproxy", "gather_facts": False, "vars": variables,
        "tasks": [
            {"ansible.builtin.include_role": {"name": "zerotrust.workloads.enforce", "tasks_from": "compile.yml"}},
            {"ansible.builtin.copy": {"dest": str(out), "content": "{{ {" + ", ".join(f"'{fact}': enforce_plan.{fact}" for fact in FACTS)
                                      + ", 'hosts': enforce_plan.hosts.keys() | list} | to_json }}"}},
            {"zerotrust.workloads.plan": {"discard": "{{ enforce_plan.path }}"}},
        ],
    }]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    return run("ansible-playbook", "-i", str(inventory), "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
               str(tmp_path / "play.yml"), **run_options)


def with_options(options: dict[str, Any]) -> dict[str, Any]:
    policy = seed_policy()
    policy["options"] = options
    return policy


@pytest.mark.parametrize(("variables", "management", "discover", "dns"), [
    # The policy's options apply when the variables are at their defaults.
    ({"enforce_policy": with_options({"management_addresses": ["192.0.2.10"], "implicit": {"dns": False}})}, ["192.0.2.10"], False, False),
    # A variable that is set wins; enforce_implicit merges switch by switch.
    ({"enforce_policy": with_options({"management_addresses": ["192.0.2.10"], "implicit": {"dns": False}}),
      "enforce_management_addresses": ["192.0.2.99"], "enforce_implicit": {"dns": True}}, ["192.0.2.99"], False, True),
    # Neither: the controller's address is to be read from the hosts.
    ({"enforce_policy": seed_policy()}, [], True, True),
])
def test_policy_options_and_role_variables(tmp_path: Path, variables: dict[str, Any], management: list[str], discover: bool,
                                           dns: bool) -> None:
    result = compile_facts(tmp_path, seed_inventory(tmp_path), variables)
    assert result.returncode == 0, result.stdout + result.stderr
    facts = json.loads((tmp_path / "out.json").read_text())
    assert facts["management_addresses"] == management
    assert facts["discover"] is discover
    assert facts["implicit"]["dns"] is dns
    assert "haproxy" in facts["hosts"]


def failed_cluster_inventory(tmp_path: Path) -> Path:
    """A VM, the nodes' SSH entries in k8s_nodes (as awx/project/inventory/hosts.yml) and a Kubernetes source whose API is down."""
    directory = tmp_path / "inventory"
    directory.mkdir()
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "k8s_nodes": {"hosts": {"k8s-node1": {"ansible_host": "127.0.0.1"}}},
        "vms": {"hosts": {"haproxy": {"zt_addresses": ["172.18.221.1"]}}},
    }}}))
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    (directory / "cluster.kubernetes.yml").write_text(yaml.safe_dump({
        "plugin": "zerotrust.workloads.kubernetes", "connections": [{"name": "prod", "host": "https://127.0.0.1:9", "api_key": "x"}]}))
    return directory


def test_the_project_config_fails_the_run_when_a_source_fails(tmp_path: Path) -> None:
    result = run("ansible-inventory", "-i", str(failed_cluster_inventory(tmp_path)), "--list")
    assert result.returncode != 0
    flat = " ".join(result.stderr.split())
    assert "cluster 'prod'" in flat and "connection failed" in flat


def test_the_enforce_role_refuses_an_inventory_whose_cluster_is_missing(tmp_path: Path) -> None:
    inventory = failed_cluster_inventory(tmp_path)
    result = compile_facts(tmp_path, inventory, {"enforce_policy": seed_policy()}, unparsed_is_failed="false")
    assert result.returncode != 0
    flat = " ".join(result.stdout.split())
    assert "The inventory configures Kubernetes (" in flat
    assert "cluster.kubernetes.yml" in flat and "k8s_nodes" in flat
    assert "no pod, no service and no node read from a cluster" in flat
    assert not (tmp_path / "out.json").exists()


def test_the_source_file_alone_is_enough_to_refuse(tmp_path: Path) -> None:
    inventory = failed_cluster_inventory(tmp_path)
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"vms": {"hosts": {"haproxy": {}}}}}}))
    result = compile_facts(tmp_path, inventory, {"enforce_policy": seed_policy()}, unparsed_is_failed="false")
    assert result.returncode != 0
    assert "no pod, no service and no node read from a cluster" in " ".join(result.stdout.split())


def test_allow_empty_kubernetes_passes_the_check(tmp_path: Path) -> None:
    inventory = failed_cluster_inventory(tmp_path)
    result = compile_facts(tmp_path, inventory, {"enforce_policy": seed_policy(), "enforce_allow_empty_kubernetes": True},
                           unparsed_is_failed="false")
    assert "no pod, no service and no node read from a cluster" not in " ".join(result.stdout.split())

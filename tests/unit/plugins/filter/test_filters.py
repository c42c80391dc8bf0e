# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter plugins: thin wrappers, errors as AnsibleFilterError, and a real playbook run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.zerotrust.workloads.plugins.filter import compile as compile_plugin
from ansible_collections.zerotrust.workloads.plugins.filter import nodeport as nodeport_plugin
from ansible_collections.zerotrust.workloads.plugins.filter import select as select_plugin
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.rules import inline_sets

from tests.unit.plugins.module_utils._policy.policy_seed import MYSQL_POD, WORDPRESS_POD, WORDPRESS_SERVICE, seed_hostvars, seed_policy

REPO = Path(__file__).resolve().parents[4]


def test_filter_modules_register_their_names() -> None:
    assert list(nodeport_plugin.FilterModule().filters()) == ["nodeport"]
    assert list(select_plugin.FilterModule().filters()) == ["select"]
    assert list(compile_plugin.FilterModule().filters()) == ["compile"]


def test_nodeport() -> None:
    service = seed_hostvars()[WORDPRESS_SERVICE]
    assert nodeport_plugin.nodeport(service, 80) == 30358
    assert nodeport_plugin.nodeport(service, "http") == 30358
    with pytest.raises(
        AnsibleFilterError, match=r"^zerotrust.workloads.nodeport: service wordpress/wordpress has no port '443'; its ports: http 80/tcp$"
    ):
        nodeport_plugin.nodeport(service, 443)


def test_select() -> None:
    assert select_plugin.select("label.app = wordpress and kind = pod", seed_hostvars()) == [
        {
            "host": WORDPRESS_POD,
            "kind": "pod",
            "name": "wordpress-6dfdd9f64f-d75j2",
            "namespace": "wordpress",
            "addresses": ["10.244.1.94"],
        },
        {
            "host": MYSQL_POD,
            "kind": "pod",
            "name": "wordpress-mysql-5b58bbd695-gxtc4",
            "namespace": "wordpress",
            "addresses": ["10.244.3.18"],
        },
    ]
    with pytest.raises(
        AnsibleFilterError, match=r"^zerotrust.workloads.select: unknown attribute 'colour'.* at position 0 in 'colour = red'$"
    ):
        select_plugin.select("colour = red", seed_hostvars())


@pytest.mark.parametrize("name", ["select", "compile"])
def test_a_malformed_host_record_fails_the_filter_naming_host_and_variable(name: str) -> None:
    hostvars = {**seed_hostvars(), "db1": {"ansible_host": "db1.example.org", "zt_addresses": ["db1.example.org"]}}
    with pytest.raises(AnsibleFilterError) as caught:
        if name == "select":
            select_plugin.select("kind = vm", hostvars)
        else:
            compile_plugin.compile_filter(seed_policy(), hostvars)
    assert str(caught.value) == (
        f"zerotrust.workloads.{name}: malformed host records: host db1: zt_addresses holds something that is not an IP address: "
        "'db1.example.org' does not appear to be an IPv4 or IPv6 address; fix them, or set zt_skip_malformed: true on a host "
        "to leave it out of the policy with a warning"
    )


def test_compile() -> None:
    plan = compile_plugin.compile_filter(seed_policy(), seed_hostvars(), {"management_addresses": ["172.18.221.254"]})
    golden = json.loads((REPO / "tests/unit/plugins/module_utils/_policy/golden/seed.json").read_text())
    # The golden file holds each ruleset with its members inline; the plan ships them once per host in sets.
    assert inline_sets(plan) == golden
    assert all(item.get("shared") for entry in plan["hosts"].values() for item in (entry["ruleset"] or {}).get("address_sets", []))
    with pytest.raises(AnsibleFilterError) as caught:
        compile_plugin.compile_filter(
            {"filters": {"a": "kind ="}, "policies": {"default": [{"consumer": "a", "provider": "b", "ports": ["tcp/0"]}]}}, {}
        )
    assert str(caught.value).startswith(
        "zerotrust.workloads.compile: the policy has 4 problems:\n  - filters.a: expected a value after '='"
    )


def test_compile_outline_keeps_the_hosts_and_warnings_only() -> None:
    plan = compile_plugin.compile_filter(seed_policy(), seed_hostvars(), {"management_addresses": ["172.18.221.254"]})
    outline = compile_plugin.compile_filter(seed_policy(), seed_hostvars(), {"management_addresses": ["172.18.221.254"]}, outline=True)
    assert outline == {"hosts": {host: {} for host in plan["hosts"]}, "warnings": plan["warnings"], "findings": plan["findings"]}
    assert sorted(outline["hosts"]) == ["haproxy", "k8s-master", "k8s-node1", "k8s-node2", "k8s-node3", "outsider"]
    with pytest.raises(AnsibleFilterError, match="the policy has 1 problem"):
        compile_plugin.compile_filter({"filters": {"a": "kind ="}, "policies": {"default": []}}, {}, outline=True)


def test_filters_in_a_real_playbook(tmp_path: Path) -> None:
    """hostvars as Ansible passes them (lazy HostVars), through ansible-playbook from the repository."""
    hosts = {}
    for host, variables in seed_hostvars().items():
        if host == "localhost":
            continue
        hosts[host] = {key: value for key, value in variables.items() if key != "group_names"}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    service = f"hostvars['{WORDPRESS_SERVICE}']"
    tasks: list[dict[str, Any]] = [
        {
            "ansible.builtin.set_fact": {
                "by_number": f"{{{{ {service} | zerotrust.workloads.nodeport(80) }}}}",
                "by_name": f"{{{{ {service} | zerotrust.workloads.nodeport('http') }}}}",
                "matched": "{{ 'pod_name contains wordpress-mysql' | zerotrust.workloads.select(hostvars) | map(attribute='host') }}",
                "plan": "{{ zt_policy | zerotrust.workloads.compile(hostvars) }}",
            }
        },
        {
            "ansible.builtin.copy": {
                "dest": str(tmp_path / "out.json"),
                "content": "{{ {'by_number': by_number, 'by_name': by_name, 'matched': matched, "
                "'egress': plan.hosts.haproxy.ruleset.chains[1].rules[-1]} | to_json }}",
            }
        },
    ]
    playbook = [{"hosts": "localhost", "gather_facts": False, "vars": {"zt_policy": seed_policy()}, "tasks": tasks}]
    (tmp_path / "playbook.yml").write_text(yaml.safe_dump(playbook))
    environment = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "false"}
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp_path / "inventory.yml"),
            "-c",
            "local",
            str(tmp_path / "playbook.yml"),
        ],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["by_number"] == 30358
    assert out["by_name"] == 30358
    assert out["matched"] == [MYSQL_POD]
    assert (out["egress"]["protocol"], out["egress"]["ports"], out["egress"]["origin"]) == (
        "tcp",
        ["30358"],
        "default[0] haproxy->wordpress tcp/30358",
    )


def test_policy_errors_in_a_real_playbook_name_no_python_types(tmp_path: Path) -> None:
    """A bad policy from play vars reaches the filter as ansible-core's tagged and lazy values (issue 15, item 11)."""
    policy = {"filters": {"a": 5, "b": ["kind = vm"]}, "policies": {"default": [{"consumer": "a", "provider": "b", "ports": [80]}]}}
    tasks = [{"ansible.builtin.set_fact": {"plan": "{{ zt_policy | zerotrust.workloads.compile(hostvars) }}"}}]
    playbook = [{"hosts": "localhost", "gather_facts": False, "vars": {"zt_policy": policy}, "tasks": tasks}]
    (tmp_path / "playbook.yml").write_text(yaml.safe_dump(playbook))
    environment = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                             str(tmp_path / "playbook.yml")], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300,
                            check=False)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert "filters.a: must be a query string such as 'label.app = web', got an integer" in output
    assert "filters.b: must be a query string such as 'label.app = web', got a list" in output
    assert "a port must be text such as tcp/80, got an integer 80" in output
    assert "_Ansible" not in output

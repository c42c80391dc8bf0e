# SPDX-License-Identifier: GPL-3.0-or-later
"""lab/expected.py: the expected table from the records the inventory plugin itself produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.access import inventory_sources
from lab.errors import LabError
from lab.expected import Expectation, expected_from_policy, inventory_hostvars, probe_hosts, scenario_hostvars
from lab.kubeapi import start_server, write_kubeconfig
from lab.objects import container_id, object_uid, scenario_objects
from lab.probes import BLOCKED, CONNECTED, probe_matrix
from lab.scenario import load_scenario
from lab.system import REPO_ROOT

SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"
FRONTEND = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"


@pytest.fixture(scope="module")
def seed_hostvars() -> dict[str, dict[str, Any]]:
    return scenario_hostvars(load_scenario(SEED))


def test_the_records_are_the_inventory_plugins(seed_hostvars: dict[str, dict[str, Any]]) -> None:
    """Host names, groups and records as the plugin makes them from the served objects, not as the lab would write them."""
    scenario = load_scenario(SEED)
    pod = scenario.pod("wordpress/wordpress-6dfdd9f64f-d75j2")
    record = seed_hostvars[FRONTEND]["workload"]
    assert (record["kind"], record["name"], record["namespace"], record["node"]) == ("pod", pod.name, "wordpress", "k8s-node1")
    assert record["addresses"][0] == "10.244.1.94"
    assert record["uid"] == object_uid("lab", "Pod", "wordpress", pod.name)
    assert record["container_ids"] == [container_id("lab", pod)]
    assert "k8s_pods" in seed_hostvars[FRONTEND]["group_names"]
    assert seed_hostvars[FRONTEND]["zt_enforce_host"] == "k8s-node1"
    # The Node object's own labels, which a hand-built record left out.
    assert seed_hostvars["k8s-node1"]["workload"]["labels"]["kubernetes.io/os"] == "linux"
    # A ClusterIP Service has no externalTrafficPolicy in the API, so neither has its record.
    assert seed_hostvars["wordpress-mysql.wordpress.service.lab"]["workload"]["external_traffic_policy"] is None
    assert seed_hostvars["haproxy"]["zt_addresses"][0] == "172.18.221.1" and "workload" not in seed_hostvars["haproxy"]
    # group_vars apply as in a playbook: the VMs' file and the plugin's source both parsed.
    vms = sorted(host for host, variables in seed_hostvars.items() if "workload" not in variables)
    assert vms == sorted(vm.name for vm in scenario.vms)


@pytest.mark.parametrize(
    ("hostvars", "expected"),
    [
        ({"p.ns.pod.c": {"workload": {"kind": "pod", "namespace": "ns", "name": "p"}}}, {("pod", "ns/p"): "p.ns.pod.c"}),
        ({"web": {"workload": {"kind": "service", "namespace": "shop", "name": "web"}}}, {("service", "shop/web"): "web"}),
        ({"haproxy": {"zt_addresses": ["172.18.221.1"]}}, {("vm", "haproxy"): "haproxy"}),
        ({"k8s-node1": {"workload": {"kind": "node", "name": "k8s-node1"}}}, {}),
    ],
)
def test_probe_hosts(hostvars: dict[str, Any], expected: dict[tuple[str, str], str]) -> None:
    """A probe's reference finds its host through the records, whatever the plugin's host_format."""
    assert probe_hosts(hostvars) == expected


def test_a_reference_without_a_host_is_an_error(seed_hostvars: dict[str, dict[str, Any]]) -> None:
    expectation = Expectation(load_scenario(SEED).policy or {}, seed_hostvars)
    assert expectation.host("svc:wordpress/wordpress") == "wordpress.wordpress.service.lab"
    with pytest.raises(LabError, match=r"^pod:wordpress/gone is not in the inventory \(no host carries that workload\)$"):
        expectation.host("pod:wordpress/gone")


def test_sampled_cells_equal_the_whole_table(seed_hostvars: dict[str, dict[str, Any]]) -> None:
    """Any subset of cells gets exactly the values of the whole table, and only those cells."""
    scenario = load_scenario(SEED)
    probes = probe_matrix(scenario)
    whole = expected_from_policy(scenario, probes, hostvars=seed_hostvars)
    sample = probes[::7]
    cells = Expectation(scenario.policy or {}, seed_hostvars).table(sample)
    assert cells == {probe.id: whole[probe.id] for probe in sample}
    assert whole["vm:haproxy -> nodeport:wordpress/wordpress:tcp/80"] == CONNECTED
    assert whole["vm:outsider -> nodeport:wordpress/wordpress:tcp/80"] == BLOCKED


def test_an_invalid_policy_is_named() -> None:
    hostvars = {"haproxy": {"zt_addresses": ["172.18.221.1"], "group_names": ["vms"]}}
    with pytest.raises(LabError, match=r"^the scenario's policy is invalid: "):
        Expectation({"filters": {}, "policies": {"default": [{"consumer": "nobody"}]}}, hostvars)


def test_a_failing_kubernetes_source_is_an_error_not_an_empty_cluster(tmp_path: Path) -> None:
    """An API that refuses the plugin must not yield an inventory of VMs only (every pod expected absent)."""
    scenario = load_scenario(SEED)
    with start_server(scenario_objects(scenario)) as api:
        api.faults.add(path=r"/pods$", status=403)
        kubeconfig = write_kubeconfig(api, tmp_path / "kubeconfig", scenario.cluster.name)
        for name, document in inventory_sources(scenario, kubeconfig).items():
            (tmp_path / name).write_text(yaml.safe_dump(document))
        with pytest.raises(LabError, match=r"lab\.kubernetes\.yml"):
            inventory_hostvars([tmp_path])


def test_a_collection_imported_before_the_loader_is_named(tmp_path: Path) -> None:
    """In a fresh process, the collection imported straight from .collections leaves the plugin unloadable: said, not a parse error."""
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/.collections']\n"
        "import ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors\n"
        "from pathlib import Path\n"
        "from lab.errors import LabError\n"
        "from lab.expected import inventory_hostvars\n"
        "try:\n"
        "    inventory_hostvars([Path(sys.argv[2])])\n"
        "except LabError as exc:\n"
        "    print(exc)\n"
    )
    argv = [sys.executable, "-c", code, str(REPO_ROOT), str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.startswith("the collection was imported from .collections before ansible-core's collection loader was installed")

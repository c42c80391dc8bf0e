# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster-health block: cell names (a contract), the recorded contacts' verdicts, the rendering."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lab.health import HealthCell, HealthResult, dns_answered, health_cells, record_cell, render_health
from lab.probes import BLOCKED, CONNECTED, UNKNOWN
from lab.scenario import build_scenario, load_scenario
from lab.system import REPO_ROOT

SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"
WP = "pod:wordpress/wordpress-6dfdd9f64f-d75j2"
DB = "pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4"
DNS = "pod:kube-system/coredns-7c65d6cfc9-zt5lb"
NODES = ("k8s-master", "k8s-node1", "k8s-node2", "k8s-node3")

SEED_CELLS = [
    *(f"node:{node} -> apiserver:tcp/6443" for node in NODES),
    *(f"apiserver -> node:{node}:tcp/10250" for node in NODES),
    *(f"kubelet:{node} -> apiserver:last-contact" for node in NODES),
    f"{DNS} -> svc:default/kubernetes:tcp/443",
    f"{WP} -> dns:wordpress.wordpress.svc.cluster.local",
    f"{DB} -> dns:wordpress.wordpress.svc.cluster.local",
    f"{DNS} -> dns:wordpress.wordpress.svc.cluster.local",
    f"{WP} -> dns:www.example.test",
]


def test_seed_cells() -> None:
    seed = load_scenario(SEED)
    cells = health_cells(seed)
    assert [cell.id for cell in cells] == SEED_CELLS
    by_id = {cell.id: cell for cell in cells}
    # Nodes connect to the API server's node address; pods reach the API through its ClusterIP.
    node = by_id["node:k8s-node2 -> apiserver:tcp/6443"]
    assert (node.address, node.port) == ("172.18.221.10", 6443)
    reach = by_id["apiserver -> node:k8s-node3:tcp/10250"]
    assert (reach.kind, reach.source_workload, reach.address, reach.port) == ("reach", "node:k8s-master", "172.18.221.13", 10250)
    api = by_id[f"{DNS} -> svc:default/kubernetes:tcp/443"]
    assert (api.address, api.port) == ("172.18.192.1", 443)
    # DNS cells ask the kube-dns ClusterIP and expect the looked-up Service's ClusterIP (or the upstream's answer).
    lookup = by_id[f"{DB} -> dns:wordpress.wordpress.svc.cluster.local"]
    assert (lookup.kind, lookup.address, lookup.expect) == ("dns", "172.18.192.10", "172.18.202.253")
    assert lookup.name == "wordpress.wordpress.svc.cluster.local"
    outside = by_id[f"{WP} -> dns:www.example.test"]
    assert (outside.address, outside.expect) == ("172.18.192.10", "192.0.2.80")


def test_api_access_pods_get_a_cell() -> None:
    seed = load_scenario(SEED)
    wordpress = seed.pod("wordpress/wordpress-6dfdd9f64f-d75j2")
    ids = [cell.id for cell in health_cells(seed, [wordpress])]
    assert [cell_id for cell_id in ids if cell_id.endswith("svc:default/kubernetes:tcp/443")] == [
        f"{WP} -> svc:default/kubernetes:tcp/443",
        f"{DNS} -> svc:default/kubernetes:tcp/443",
    ]


def test_api_access_from_the_policy_option() -> None:
    from lab.expected import api_access_pods  # noqa: PLC0415

    document: dict[str, Any] = yaml.safe_load(SEED.read_text())
    assert [pod.key for pod in api_access_pods(build_scenario(document))] == ["kube-system/coredns-7c65d6cfc9-zt5lb"]
    document["policy"]["options"] = {"api_access": "label.tier = mysql"}
    assert [pod.key for pod in api_access_pods(build_scenario(document))] == ["wordpress/wordpress-mysql-5b58bbd695-gxtc4"]


def test_api_access_from_a_policy_rule() -> None:
    """A rule whose provider is default/kubernetes gives its consumer a health cell, with or without `cluster`."""
    from lab.expected import policy_api_pods, scenario_hostvars  # noqa: PLC0415

    document: dict[str, Any] = yaml.safe_load(SEED.read_text())
    hostvars = scenario_hostvars(build_scenario(document))  # the policy does not change the inventory
    assert [pod.key for pod in policy_api_pods(build_scenario(document), hostvars)] == ["kube-system/coredns-7c65d6cfc9-zt5lb"]
    document["policy"]["filters"]["api"] = "service_name = kubernetes and namespace = default"
    document["policy"]["policies"]["default"].append({"consumer": "db", "provider": "api", "ports": ["tcp/443"]})
    with_rule = build_scenario(document)
    assert [pod.key for pod in policy_api_pods(with_rule, hostvars)] == [
        "wordpress/wordpress-mysql-5b58bbd695-gxtc4",
        "kube-system/coredns-7c65d6cfc9-zt5lb",
    ]
    ids = [cell.id for cell in health_cells(with_rule, policy_api_pods(with_rule, hostvars))]
    assert [cell_id for cell_id in ids if cell_id.endswith("svc:default/kubernetes:tcp/443")] == [
        f"{DB} -> svc:default/kubernetes:tcp/443",
        f"{DNS} -> svc:default/kubernetes:tcp/443",
    ]
    # Without the allowance only the rule's consumer may reach the API (kube-system pods keep their cell in health_cells).
    document["policy"]["options"] = {"implicit": {"cluster": False}}
    assert [pod.key for pod in policy_api_pods(build_scenario(document), hostvars)] == ["wordpress/wordpress-mysql-5b58bbd695-gxtc4"]


def test_no_control_plane_no_cells() -> None:
    document: dict[str, Any] = yaml.safe_load(SEED.read_text())
    del document["topology"]["cluster"]["upstream_dns"]
    document["topology"]["cluster"]["control_plane"] = False
    del document["expect"]
    assert health_cells(build_scenario(document)) == []
    assert render_health([]) == "cluster health: no control plane in this lab"


KUBELET = HealthCell("kubelet:k8s-node1", "apiserver:last-contact", "kubelet", "node:k8s-node1")
REACH = HealthCell("apiserver", "node:k8s-node1:tcp/10250", "reach", "node:k8s-master", "172.18.221.11", 10250)
STARTED = 1000.0


@pytest.mark.parametrize(
    ("cell", "records", "result", "age"),
    [
        # A contact that began after the measurement: connected, its age in the detail.
        (KUBELET, {"kubelet:k8s-node1": {"last_contact": 1001.0, "last_attempt": 1001.0, "error": None}}, CONNECTED, 2.0),
        # Only an older success (the newer attempt failed): blocked, even though the kubelet was fine a moment ago.
        (KUBELET, {"kubelet:k8s-node1": {"last_contact": 999.0, "last_attempt": 1001.5, "error": "timed out"}}, BLOCKED, 4.0),
        (KUBELET, {}, UNKNOWN, None),
        (REACH, {"apiserver": {"nodes": {"k8s-node1": {"last_ok": 1002.0, "last_attempt": 1002.0, "error": None}}}}, CONNECTED, 1.0),
        (REACH, {"apiserver": {"nodes": {"k8s-node1": {"last_ok": None, "last_attempt": 1002.0, "error": "timed out"}}}}, BLOCKED, None),
    ],
)
def test_recorded_contacts(cell: HealthCell, records: dict[str, Any], result: str, age: float | None) -> None:
    measured = record_cell(cell, records, STARTED, now=1003.0)
    assert measured.result == result
    assert measured.detail.get("age_seconds") == age


@pytest.mark.parametrize(
    ("outcome", "answered"),
    [
        ({"ok": True, "answers": ["172.18.202.253"]}, True),
        ({"ok": True, "answers": ["10.0.0.1"]}, False),  # a wrong answer is not a working DNS
        ({"ok": True, "answers": [], "error": "NXDOMAIN"}, False),
        ({"ok": False, "answers": [], "error": "no answer within 0.8 s"}, False),
    ],
)
def test_dns_cells_need_the_right_answer(outcome: dict[str, Any], answered: bool) -> None:
    assert dns_answered("172.18.202.253", outcome) is answered


def test_rendering_names_failing_cells() -> None:
    results = [
        HealthResult(KUBELET, CONNECTED, {"age_seconds": 0.4}),
        HealthResult(REACH, BLOCKED, {"error": "timed out"}),
    ]
    lines = render_health(results).splitlines()
    assert lines[0].split() == ["cluster", "health", "observed", "expected"]
    assert lines[1].split() == ["kubelet:k8s-node1", "->", "apiserver:last-contact", ".", ".", "(last", "contact", "0.4", "s", "ago)"]
    assert lines[2].split() == ["apiserver", "->", "node:k8s-node1:tcp/10250", "X", "."]
    assert lines[3] == "2 health cells; 1 NOT connected"
    assert results[1].to_dict() == {
        "source": "apiserver",
        "target": "node:k8s-node1:tcp/10250",
        "result": "X",
        "expected": ".",
        "detail": {"error": "timed out"},
    }

# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab at scale: the scenario generator, the shared pod listener, the sampled probe, bulk pod wiring."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import podbuild, podlistener, probe_agent
from lab.errors import ScenarioError
from lab.generate import generate
from lab.probes import probe_matrix, probe_targets
from lab.sampling import Sample, render_sample, sample_matrix, total_cells
from lab.scenario import build_scenario, load_scenario
from lab.system import REPO_ROOT

SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"


# --------------------------------------------------------------------------- the generator


@pytest.mark.parametrize(
    ("nodes", "pods", "vms", "expected"),
    [
        # nodes (with the control plane), pods (with cluster DNS), services (with kubernetes, kube-dns), VMs, namespaces
        (4, 60, 4, (4, 61, 6, 4, 1)),
        (3, 200, 5, (3, 201, 22, 5, 5)),
        (20, 2000, 5, (20, 2001, 34, 5, 8)),
    ],
)
def test_generated_scenarios_have_the_asked_size(nodes: int, pods: int, vms: int, expected: tuple[int, ...]) -> None:
    scenario = build_scenario(generate(nodes, pods, vms), source="generated")
    namespaces = {pod.namespace for pod in scenario.pods} - {"kube-system"}
    assert (len(scenario.nodes), len(scenario.pods), len(scenario.services), len(scenario.vms), len(namespaces)) == expected


def test_generated_pods_spread_evenly_over_the_workers_and_every_service_has_endpoints() -> None:
    scenario = build_scenario(generate(20, 2000, 5), source="generated")
    per_node: dict[str, int] = {}
    for pod in scenario.pods:
        per_node[pod.node] = per_node.get(pod.node, 0) + 1
    workers = {name: count for name, count in per_node.items() if name != "k8s-master"}
    assert (len(workers), min(workers.values()), max(workers.values())) == (19, 105, 106)
    empty = [service.key for service in scenario.services if not scenario.service_endpoints(service) and not service.static_endpoints]
    assert empty == []
    node_ports = sorted(port.node_port for service in scenario.services for port in service.ports if port.node_port is not None)
    assert node_ports == list(range(30080, 30088))


def test_the_same_seed_gives_the_same_file_and_another_seed_other_names() -> None:
    assert yaml.safe_dump(generate(4, 60, 4, seed=7)) == yaml.safe_dump(generate(4, 60, 4, seed=7))
    first = {pod["name"] for pod in generate(4, 60, 4, seed=7)["topology"]["pods"]}
    other = {pod["name"] for pod in generate(4, 60, 4, seed=8)["topology"]["pods"]}
    assert first.isdisjoint(other)


def test_generated_pods_are_named_as_a_replicaset_names_them() -> None:
    pod = generate(4, 60, 4)["topology"]["pods"][0]
    app, template, suffix = pod["name"].rsplit("-", 2)
    assert (app, pod["labels"]["pod-template-hash"], len(template), len(suffix)) == (pod["labels"]["app"], template, 10, 5)


@pytest.mark.parametrize(
    ("nodes", "pods", "vms", "message"),
    [
        (1, 60, 4, "--nodes: 1 is out of range; give 2 to 40 (one control-plane node and workers)"),
        (41, 60, 4, "--nodes: 41 is out of range; give 2 to 40 (one control-plane node and workers)"),
        (2, 3, 4, "--pods: 3 is too few; give at least 4 (one per Deployment of a namespace)"),
        (2, 241, 4, "--pods: 241 pods do not fit on 1 workers of 240 pods each; give more --nodes"),
        (4, 60, 1, "--vms: 1 is out of range; give 2 to 8 (haproxy, the outsider and batch VMs)"),
    ],
)
def test_generator_refuses_sizes_the_lab_cannot_hold(nodes: int, pods: int, vms: int, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        generate(nodes, pods, vms)
    assert str(caught.value) == message


# --------------------------------------------------------------------------- the shared listener


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("zt-pod-7=tcp/80", ("zt-pod-7", [(socket.SOCK_STREAM, 80)])),
        ("zt-pod-9=tcp/53,udp/53", ("zt-pod-9", [(socket.SOCK_STREAM, 53), (socket.SOCK_DGRAM, 53)])),
    ],
)
def test_pod_specs_parse(text: str, expected: tuple[str, list[tuple[int, int]]]) -> None:
    assert podlistener.parse_pod(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zt-pod-7", "--pod 'zt-pod-7': expected NETNS=PROTO/PORT[,PROTO/PORT...]"),
        ("../x=tcp/80", "--pod '../x=tcp/80': expected NETNS=PROTO/PORT[,PROTO/PORT...]"),
        ("zt-pod-7=sctp/80", "--pod 'zt-pod-7=sctp/80': 'sctp/80' is not tcp/PORT or udp/PORT"),
        ("zt-pod-7=tcp/70000", "--pod 'zt-pod-7=tcp/70000': 'tcp/70000' is not tcp/PORT or udp/PORT"),
    ],
)
def test_bad_pod_specs_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        podlistener.parse_pod(text)
    assert str(caught.value) == message


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET6, kind) as sock:
        sock.bind(("::", 0))
        port: int = sock.getsockname()[1]
        return port


def test_one_selector_loop_answers_like_the_per_pod_listener() -> None:
    """Several sockets, one loop: each TCP connection and UDP datagram gets 'PEER LOCAL' (loopback only)."""
    tcp_a, tcp_b, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    sockets = [podlistener._bind(socket.SOCK_STREAM, tcp_a), podlistener._bind(socket.SOCK_STREAM, tcp_b)]
    sockets.append(podlistener._bind(socket.SOCK_DGRAM, udp))
    threading.Thread(target=podlistener.serve, args=(sockets,), daemon=True).start()
    outcomes = []
    for port, protocol in ((tcp_a, "tcp"), (tcp_b, "tcp"), (udp, "udp"), (tcp_a, "tcp")):
        job = {"address": "127.0.0.1", "port": port, "protocol": protocol, "timeout": 1.0}
        outcome: dict[str, Any] = {}
        for _ in range(20):
            outcome = probe_agent.attempt(job)
            if outcome["ok"]:
                break
            time.sleep(0.05)
        outcomes.append((outcome["ok"], outcome["seen"], outcome["served_by"] if protocol == "tcp" else "127.0.0.1"))
    assert outcomes == [(True, "127.0.0.1", "127.0.0.1")] * 4


# --------------------------------------------------------------------------- the sampled probe


@pytest.mark.parametrize("path", [SEED, REPO_ROOT / "lab" / "scenarios" / "partial.yml"])
def test_cells_are_counted_without_building_the_matrix(path: Path) -> None:
    scenario = load_scenario(path)
    for ipv6 in (False, True):
        assert total_cells(scenario, probe_targets(scenario, ipv6)) == len(probe_matrix(scenario, ipv6))


def test_a_sample_is_fixed_by_its_seed_and_inside_the_matrix() -> None:
    scenario = build_scenario(generate(4, 60, 4), source="generated")
    first = sample_matrix(scenario, None, seed=3, rows=10, per_row=20)
    again = sample_matrix(scenario, None, seed=3, rows=10, per_row=20)
    other = sample_matrix(scenario, None, seed=4, rows=10, per_row=20)
    full = {probe.id for probe in probe_matrix(scenario)}
    ids = [probe.id for probe in first.probes]
    assert ids == [probe.id for probe in again.probes]
    assert ids != [probe.id for probe in other.probes]
    assert set(ids) <= full
    assert len(set(ids)) == len(ids) == first.random_cells == 14 * 20  # 10 pod rows + 4 VM rows, 20 cells each
    assert (first.total_cells, first.policy_cells) == (len(full), 0)


def test_policy_cells_come_from_the_rules_consumers_and_providers() -> None:
    scenario = build_scenario(generate(4, 60, 4), source="generated")
    web = {pod.key for pod in scenario.pods if pod.labels.get("tier") == "web"}
    api = {pod.key for pod in scenario.pods if pod.labels.get("tier") == "api"}
    hostvars: dict[str, Any] = {
        f"{pod.name}.{pod.namespace}.pod.lab": {
            "workload": {"kind": "pod", "name": pod.name, "namespace": pod.namespace, "cluster": "lab", "addresses": [str(pod.ip)],
                         "labels": dict(pod.labels), "node": pod.node}
        }
        for pod in scenario.pods
    }
    policy = {"filters": {"web": "label.tier = web", "api": "label.tier = api"},
              "policies": {"default": [{"consumer": "web", "provider": "api", "ports": ["tcp/8080"]}]}}
    sample = sample_matrix(build_scenario({**generate(4, 60, 4), "policy": policy}, source="generated"), hostvars, rows=0, per_row=0,
                           per_rule=5)
    # No row was drawn at random: two web pods join as the rule's consumers, each with 5 of the api pods' columns.
    sources = {probe.source.removeprefix("pod:") for probe in sample.probes}
    targets = {probe.target.removeprefix("pod:").rsplit(":", 1)[0] for probe in sample.probes}
    assert (len(sample.probes), sample.policy_cells, len(sources), sources <= web, targets <= api) == (10, 10, 2, True, True)


def test_the_sampled_table_says_it_is_sampled() -> None:
    scenario = load_scenario(SEED)
    probes = probe_matrix(scenario)[:2]
    sample = Sample(probes, total_cells=30, random_cells=1, policy_cells=1, seed=5)
    text = render_sample(sample, {probes[0].id: ".", probes[1].id: "X"}, {probes[0].id: ".", probes[1].id: "."}, "from the policy")
    assert text.splitlines()[0] == "truth table, sampled: 2 of 30 cells (seed 5; 1 at random, 1 named by the policy's rules)"
    assert text.splitlines()[2:] == [f"    .   .  {probes[0].id}", f"    X   .  {probes[1].id}", "observed: '.' 1, 'X' 1"]


# --------------------------------------------------------------------------- bulk pod wiring


def test_a_pods_inside_is_one_batch_of_ip_commands() -> None:
    scenario = load_scenario(SEED)
    pod = scenario.pods[0]
    assert podbuild._pod_inside(scenario, pod, "zt-pod-0") == [
        "link set lo up",
        "addr add 10.244.1.94/24 dev eth0",
        "addr add fd00:10:244:1::94/64 dev eth0 nodad",
        "link set eth0 up",
        "route add default via 10.244.1.1 dev eth0",
        "route add ::/0 via fd00:10:244:1::1 dev eth0",
    ]


def test_the_shared_listener_gets_every_pod_of_its_node(tmp_path: Path) -> None:
    scenario = load_scenario(SEED)
    node = scenario.node("k8s-node1")
    pods = [(pod, f"zt-pod-{index}") for index, pod in enumerate(scenario.pods) if pod.node == node.name]
    argv = podbuild.listener_argv(node, pods, tmp_path / "ready")
    assert argv[:4] == ["ip", "netns", "exec", "zt-node-k8s-node1"]
    assert argv[5:] == [str(podbuild.PODLISTENER_SCRIPT), "--ready", str(tmp_path / "ready"), "--pod=zt-pod-0=tcp/80"]


@pytest.mark.parametrize(
    ("document", "written"),
    [
        # the seed needs little: the kernel's defaults stay
        (None, {}),
        # 60 pods on 3 workers (20 each, on-link to each other) and cluster DNS on the master: 3 x 400 + 1 + 122 + 16 + 32 + 64
        (generate(4, 60, 4), {"gc_thresh1": "717\n", "gc_thresh2": "2870\n", "gc_thresh3": "5740\n"}),
        # 2,000 pods on 19 workers (105 or 106 each): 215,197 entries with the rest
        (generate(20, 2000, 5), {"gc_thresh1": "107598\n", "gc_thresh2": "430394\n", "gc_thresh3": "860788\n"}),
    ],
)
def test_neighbour_limits_are_raised_when_the_scenario_needs_it_and_restored(
    document: dict[str, Any] | None, written: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = {"gc_thresh1": "128\n", "gc_thresh2": "512\n", "gc_thresh3": "1024\n"}
    for family in ("ipv4", "ipv6"):
        for name, value in defaults.items():
            (tmp_path / f"{family}.{name}").write_text(value)
    monkeypatch.setattr(podbuild, "_neigh_path", lambda family, name: tmp_path / f"{family}.{name}")
    scenario = load_scenario(SEED) if document is None else build_scenario(document, source="generated")
    replaced = podbuild.raise_neigh_limits(scenario)
    now = {name: (tmp_path / f"ipv4.{name}").read_text() for name in defaults}
    assert now == (written or defaults)
    kernel = {"gc_thresh1": 128, "gc_thresh2": 512, "gc_thresh3": 1024}
    assert replaced == ({} if not written else {"ipv4": kernel, "ipv6": kernel})
    podbuild.restore_neigh_limits(replaced)
    assert {name: (tmp_path / f"ipv6.{name}").read_text() for name in defaults} == defaults


@pytest.mark.parametrize(
    ("document", "kernel", "written", "replaced"),
    [
        # the seed's few veth ports fit the default
        (None, "1000\n", "1000\n", None),
        # 200 pods on 3 workers + the master, 5 VMs + the outsider: five times 210
        (generate(4, 200, 5), "1000\n", "1050\n", 1000),
        # 2,000 pods on 20 nodes, 6 VMs: five times 2,026
        (generate(20, 2000, 5), "1000\n", "10130\n", 1000),
        # a machine already set higher keeps its value
        (generate(20, 2000, 5), "30000\n", "30000\n", None),
    ],
)
def test_the_receive_backlog_is_raised_for_large_labs_and_restored(
    document: dict[str, Any] | None, kernel: str, written: str, replaced: int | None, *, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = tmp_path / "netdev_max_backlog"
    limit.write_text(kernel)
    monkeypatch.setattr(podbuild, "BACKLOG_PATH", limit)
    scenario = load_scenario(SEED) if document is None else build_scenario(document, source="generated")
    assert podbuild.raise_backlog_limit(scenario) == replaced
    assert limit.read_text() == written
    if replaced is not None:
        podbuild.restore_backlog_limit(replaced)
        assert limit.read_text() == kernel


def test_overlay_commands_run_as_one_ip_and_one_bridge_batch_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab import overlay  # noqa: PLC0415

    calls: list[tuple[list[str], str | None]] = []

    def record(argv: list[str], input_text: str | None = None, **_: Any) -> str:
        calls.append((argv, input_text))
        return ""

    monkeypatch.setattr(overlay, "run", record)
    overlay.run_batched(
        [
            ["ip", "-n", "a", "link", "add", "flannel.1", "type", "vxlan"],
            ["ip", "-n", "a", "-6", "route", "add", "fd00::/64", "via", "fd00::1"],
            ["ip", "-n", "a", "neigh", "replace", "10.244.2.0"],
            ["bridge", "-n", "a", "fdb", "append", "m", "dev", "flannel.1"],
            ["ip", "-n", "a", "route", "add", "10.244.2.0/24"],
            ["ip", "-n", "b", "link", "add", "flannel.1"],
            ["sysctl", "-w", "x=1"],
        ]
    )
    assert calls == [
        (["ip", "-n", "a", "link", "add", "flannel.1", "type", "vxlan"], None),  # a batch of one runs as itself
        (["ip", "-n", "a", "-6", "route", "add", "fd00::/64", "via", "fd00::1"], None),  # a family flag: alone, in its place
        (["ip", "-n", "a", "-batch", "-"], "neigh replace 10.244.2.0\nroute add 10.244.2.0/24\n"),
        (["bridge", "-n", "a", "fdb", "append", "m", "dev", "flannel.1"], None),  # after the namespace's ip lines
        (["ip", "-n", "b", "link", "add", "flannel.1"], None),
        (["sysctl", "-w", "x=1"], None),
    ]

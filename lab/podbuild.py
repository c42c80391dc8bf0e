# SPDX-License-Identifier: GPL-3.0-or-later
"""Pods in bulk: the same wiring as ``build._build_pod``, batched for thousands of pods.

Per pod the lab needs a namespace, a veth from its node's ``cni0`` (hairpin on), its addresses,
its default routes and a listener. One ``ip`` process per command and one listener process per
pod cost minutes and gigabytes at 2,000 pods; here every namespace is made by one
``ip -batch``, each node's veth ends by one ``ip -n NODE -batch``, each pod's inside by one
``ip -n POD -batch`` (a few in parallel), and each node gets ONE listener process serving all of
its pods' sockets (``lab/podlistener.py``). What a pod looks like from inside and outside is the
same as with ``_build_pod``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.scenario import Node, Pod, Scenario
from lab.system import PREFIX, REPO_ROOT, SYSTEM_PYTHON, in_netns, run, sysctl

SHARED_LISTENER_MIN_PODS = 32
"""From this many pods on, ``lab up`` builds pods in bulk with one listener per node; below it, as before."""
PODLISTENER_SCRIPT = REPO_ROOT / "lab" / "podlistener.py"
PARALLEL = 4
"""``ip`` processes at once: enough to hide their start-up on 2 cores without starving the rest."""


def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    """Run ``lines`` as one ``ip [-n NETNS] -batch -``; LabError naming the namespace and ip's message."""
    if not lines:
        return
    argv = ["ip", *(("-n", netns) if netns else ()), "-batch", "-"]
    run(argv, input_text="\n".join(lines) + "\n", timeout=300)


def _pod_inside(scenario: Scenario, pod: Pod, netns: str) -> list[str]:
    """The ``ip`` lines that configure a pod's side: loopback, eth0's addresses, default routes."""
    node = scenario.node(pod.node)
    lines = ["link set lo up", f"addr add {pod.ip}/{node.pod_cidr.prefixlen} dev eth0"]
    if pod.ipv6 is not None and node.pod_cidr_v6 is not None:
        lines.append(f"addr add {pod.ipv6}/{node.pod_cidr_v6.prefixlen} dev eth0 nodad")
    lines += ["link set eth0 up", f"route add default via {node.pod_cidr.network_address + 1} dev eth0"]
    if pod.ipv6 is not None and node.pod_cidr_v6 is not None:
        lines.append(f"route add ::/0 via {node.pod_cidr_v6.network_address + 1} dev eth0")
    return lines


def pod_record(pod: Pod, netns: str, host_netns: str, host_side: str) -> dict[str, Any]:
    """The pod's entry in the lab state (bulk build and ``build._build_pod`` alike)."""
    return {
        "kind": "pod",
        "id": f"pod:{pod.key}",
        "name": pod.name,
        "namespace": pod.namespace,
        "netns": netns,
        "node": pod.node,
        "addresses": {"ipv4": [str(pod.ip)], "ipv6": [str(pod.ipv6)] if pod.ipv6 is not None else []},
        "labels": dict(pod.labels),
        "ports": [{"port": port.port, "protocol": port.protocol, "name": port.name} for port in pod.ports],
        "interfaces": ["lo", "eth0"],
        "veth": {"node_netns": host_netns, "node_side": host_side, "pod_side": "eth0"},
    }


def build_pods(scenario: Scenario, node_netns: dict[str, str], state: dict[str, Any]) -> dict[str, float]:
    """Make every pod of the scenario (namespaces, veths, addresses, routes); return seconds per step.

    ``node_netns`` maps node names to their namespaces. Records the namespaces in ``state`` before
    anything else, so ``lab down`` finds them even when a later step fails.
    """
    timings: dict[str, float] = {}
    started = time.monotonic()
    names = [f"{PREFIX}pod-{index}" for index in range(len(scenario.pods))]
    ip_batch([f"netns add {name}" for name in names])
    state["netns"] += names
    for pod, name in zip(scenario.pods, names, strict=True):
        if pod.ipv6 is not None:  # as _add_netns: no duplicate address detection, IPv6 works at once
            sysctl(name, {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"})
    timings["netns"] = time.monotonic() - started

    started = time.monotonic()
    per_node: dict[str, list[str]] = {}
    for index, (pod, name) in enumerate(zip(scenario.pods, names, strict=True)):
        host_side = f"{PREFIX}p{index}"
        # hairpin: a pod reaching itself through a Service comes back out the port it came in on.
        per_node.setdefault(pod.node, []).extend(
            [
                f"link add {host_side} type veth peer name eth0 netns {name}",
                f"link set {host_side} master cni0 up",
                f"link set {host_side} type bridge_slave hairpin on",
            ]
        )
        state["workloads"].append(pod_record(pod, name, node_netns[pod.node], host_side))
    for node_name, lines in per_node.items():
        ip_batch(lines, node_netns[node_name])
    timings["veths"] = time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        list(pool.map(lambda item: ip_batch(_pod_inside(scenario, item[0], item[1]), item[1]), zip(scenario.pods, names, strict=True)))
    timings["pod_inside"] = time.monotonic() - started
    return timings


def listener_argv(node: Node, pods: Sequence[tuple[Pod, str]], ready: Path) -> list[str]:
    """The argv of ``node``'s shared listener for ``pods`` (pod, netns), run in the node's namespace."""
    specs = [f"--pod={netns}=" + ",".join(f"{port.protocol.lower()}/{port.port}" for port in pod.ports) for pod, netns in pods if pod.ports]
    return in_netns(f"{PREFIX}node-{node.name}", [SYSTEM_PYTHON, str(PODLISTENER_SCRIPT), "--ready", str(ready), *specs])


def wait_ready(files: dict[Path, str], processes: list[dict[str, Any]], timeout: float = 60) -> None:
    """Wait until every shared listener wrote its ready file; fail naming the nodes whose listener did not."""
    from lab.system import pid_alive  # noqa: PLC0415 - system imports stay at the call

    deadline = time.monotonic() + timeout
    while True:
        missing = [node for path, node in files.items() if not path.exists()]
        if not missing:
            return
        dead = [process for process in processes if process["role"] == "pod-listener" and not pid_alive(process["pid"])]
        if dead or time.monotonic() > deadline:
            raise LabError(f"the pod listeners of {', '.join(missing)} did not bind their sockets; see .lab/logs/pod-listener.*.log")
        time.sleep(0.05)


NEIGH_GC = ("gc_thresh1", "gc_thresh2", "gc_thresh3")


def _neigh_path(family: str, name: str) -> Path:
    return Path(f"/proc/sys/net/{family}/neigh/default/{name}")


def raise_neigh_limits(scenario: Scenario) -> dict[str, dict[str, int]]:
    """Make room in the kernel's neighbour tables for the scenario; return the values replaced (to restore on down).

    The ARP and NDP tables are shared by every network namespace of the machine and their limits
    are set in the root namespace only: past ``gc_thresh3`` (1,024 by default) new entries fail
    ("neighbor table overflow") and the first packets to a pod are dropped. Real nodes with many pods
    raise these limits too. A pod's CIDR is on-link, so a pod that talks to every pod of its node (the
    full probe does) holds an entry for each of them besides its gateway; every node holds its pods
    and its peers' VTEPs, every VM the nodes. The limits become four times that (never lowered).
    """
    per_node: dict[str, int] = {}
    for pod in scenario.pods:
        per_node[pod.node] = per_node.get(pod.node, 0) + 1
    on_link = sum(count * count for count in per_node.values())
    need = on_link + 2 * len(scenario.pods) + len(scenario.nodes) ** 2 + 2 * len(scenario.vms) * len(scenario.nodes) + 64
    wanted = {"gc_thresh1": need // 2, "gc_thresh2": 2 * need, "gc_thresh3": 4 * need}
    replaced: dict[str, dict[str, int]] = {}
    for family in ("ipv4", "ipv6"):
        current = {name: int(_neigh_path(family, name).read_text()) for name in NEIGH_GC}
        if current["gc_thresh2"] >= need:
            continue
        replaced[family] = current
        # Raised from the top down, so gc_thresh1 <= 2 <= 3 holds at every step.
        for name in reversed(NEIGH_GC):
            _neigh_path(family, name).write_text(f"{max(current[name], wanted[name])}\n")
    return replaced


BACKLOG_PATH = Path("/proc/sys/net/core/netdev_max_backlog")


def raise_backlog_limit(scenario: Scenario) -> int | None:
    """Make room in the kernel's per-CPU queue of received packets for the scenario; return the value replaced.

    Every packet that leaves a veth end waits in that queue (``net.core.netdev_max_backlog``, 1,000 by
    default, one setting for the whole machine) until the CPU's softirq hands it to the other end, and a
    bridge floods a broadcast to all its ports at once. On a real cluster each node has its own queues; here
    every namespace of the lab shares the two of this machine, and past the limit the kernel drops packets
    (column 2 of ``/proc/net/softnet_stat``). An idle 2,000-pod lab receives bursts of thousands of packets:
    at 1,000 it dropped packets in four of five 10-second windows (1,400-2,700 a second in the worst), at
    4,000 or more in two of seven (one burst of over 10,000 packets); a sampled probe's SYN lost that way
    is an allowed cell that times out. The limit becomes five times the lab's veth ports (never lowered);
    ``None``: left as it was.
    """
    wanted = 5 * (len(scenario.pods) + len(scenario.nodes) + len(scenario.vms))
    current = int(BACKLOG_PATH.read_text())
    if current >= wanted:
        return None
    BACKLOG_PATH.write_text(f"{wanted}\n")
    return current


def restore_backlog_limit(replaced: int) -> None:
    """Put back the limit ``raise_backlog_limit`` replaced."""
    BACKLOG_PATH.write_text(f"{replaced}\n")


def restore_neigh_limits(replaced: dict[str, dict[str, int]]) -> None:
    """Put back the limits ``raise_neigh_limits`` replaced (from the bottom up)."""
    for family, values in replaced.items():
        for name in NEIGH_GC:
            _neigh_path(family, name).write_text(f"{values[name]}\n")

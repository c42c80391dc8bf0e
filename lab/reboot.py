# SPDX-License-Identifier: GPL-3.0-or-later
"""``python -m lab reboot HOST``: what a reboot does to a lab VM or node, in the order a boot does it.

1. Every process recorded in state.json for the host's namespace (sshd, listeners, kubelet
   stand-ins, whatever they are) and, for a node, in its pods' namespaces stops.
2. The namespace loses every rule, set, nftables table and conntrack entry (a boot starts empty).
3. The restore unit the allowlist module installed for this host (``.lab/hosts/HOST/systemd``,
   the lab inventory's ``enforce_unit_dir``) has its own ``ExecStart`` commands run inside the
   namespace, as systemd would run them ``Before=network-pre.target``; there is no systemd in a
   lab namespace. No unit: the host boots open, as a host without persistence does.
4. A node gets kube-proxy's rules back (kube-proxy starts after the network is up) and its pods
   come back in NEW network namespaces (same name, nothing inside), with new addresses when
   asked (``--new-pod-ips``): kube-proxy on every node and the emulated API's Pod and
   EndpointSlice objects follow, and each Pod gets new container IDs, as a restarted sandbox does.
5. The recorded processes start again from their recorded argv, and the command waits until
   every namespace listens on what it listened on before.

The timings of each phase are returned, so the benchmark and tests can report the window
between "pods running again" and "their rules applied".
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import sys
import time
from typing import Any

from lab import access
from lab.errors import LabError
from lab.scenario import Scenario
from lab.system import REPO_ROOT, in_netns, ip, pid_alive, run, sysctl, terminate

UNIT_NAME = "zerotrust-workloads.service"
WIPE_TABLES = ("filter", "nat", "mangle", "raw")


@dataclasses.dataclass
class RebootReport:
    """What a reboot did, with the time each phase ended (monotonic seconds)."""

    host: str
    netns: str
    restored: list[str]
    pods: dict[str, str]
    """pod key -> its address after the reboot."""
    processes: int
    pods_running_at: float = 0.0
    finished_at: float = 0.0

    def summary(self) -> str:
        """One line for the command's output."""
        restore = f"restore unit ran {len(self.restored)} command(s)" if self.restored else "no restore unit (booted open)"
        pods = "; pods " + ", ".join(f"{key} {address}" for key, address in sorted(self.pods.items())) if self.pods else ""
        return f"rebooted {self.host} ({self.netns}): {restore}; {self.processes} process(es) restarted{pods}"


def unit_path(host: str) -> str:
    """Where the lab inventory tells the allowlist module to install this host's unit."""
    return str(access.host_dirs(host)[1] / UNIT_NAME)


def exec_start_commands(text: str) -> list[list[str]]:
    """The unit's ExecStart commands, parsed by the collection's own reader."""
    collections = str(REPO_ROOT / ".collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)
    from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.persist import (  # noqa: PLC0415
        exec_start_commands as parse,
    )

    return parse(text)


def wipe(netns: str) -> None:
    """Leave ``netns`` as a boot does: no rules, chains, sets, nftables tables or conntrack entries."""
    # iptables-nft lives in nftables: one flush removes it with every other table.
    run(in_netns(netns, ["nft", "flush", "ruleset"]))
    for tool in ("iptables-legacy", "ip6tables-legacy"):
        # Touch the legacy tables only where something uses them (a read does not create them).
        if run(in_netns(netns, [f"{tool}-save"]), check=False).strip():
            for table in WIPE_TABLES:
                run(in_netns(netns, [tool, "-w", "-t", table, "-F"]), check=False)
                run(in_netns(netns, [tool, "-w", "-t", table, "-X"]), check=False)
                for chain in ("INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"):
                    run(in_netns(netns, [tool, "-w", "-t", table, "-P", chain, "ACCEPT"]), check=False)
    run(in_netns(netns, ["ipset", "destroy"]), check=False)
    run(in_netns(netns, ["conntrack", "-F"]), check=False)


def restore(host: str, netns: str) -> list[str]:
    """Run the host's restore unit's ExecStart commands in ``netns``; the commands run (empty: no unit)."""
    path = unit_path(host)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return []
    done = []
    for command in exec_start_commands(text):
        run(in_netns(netns, command))
        done.append(" ".join(command))
    return done


def _host(scenario: Scenario, state: dict[str, Any], name: str) -> tuple[str, str]:
    """(kind, netns) of a node or VM."""
    from lab.build import node_netns, vm_netns  # noqa: PLC0415

    for node in scenario.nodes:
        if node.name == name:
            return "node", node_netns(node)
    for vm in scenario.vms:
        if vm.name == name:
            return "vm", vm_netns(vm)
    names = sorted([node.name for node in scenario.nodes] + [vm.name for vm in scenario.vms])
    raise LabError(f"{name!r} is not a node or VM of this lab ({', '.join(names)})")


def _listening(netns: str) -> set[tuple[str, int]]:
    from lab.build import _listening as listening  # noqa: PLC0415

    return listening(netns)


def _new_pod_ip(scenario: Scenario, node_name: str, current: ipaddress.IPv4Address) -> str:
    """The next free pod address on the node after ``current`` (wrapping), never .0, .1 or broadcast."""
    node = scenario.node(node_name)
    network = node.pod_cidr
    used = {pod.ip for pod in scenario.pods}
    hosts = list(network.hosts())[1:]  # .1 is the gateway
    start = hosts.index(current) if current in hosts else 0
    for offset in range(1, len(hosts)):
        candidate = hosts[(start + offset * 7) % len(hosts)]
        if candidate not in used:
            return str(candidate)
    raise LabError(f"no free pod address left in {network}")


def _recreate_pod_netns(netns: str) -> None:
    """A new, empty network namespace under the same name (the old one and its veth go)."""
    ip("netns", "delete", netns)
    ip("netns", "add", netns)
    sysctl(netns, {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"})
    ip("link", "set", "lo", "up", netns=netns)


def _restart_container_ids(scenario: Scenario, state: dict[str, Any], pod_keys: list[str]) -> None:
    """Give each restarted pod new container IDs in the API, as a recreated sandbox has."""
    from lab.build import kubeapi_available  # noqa: PLC0415
    from lab.objects import pod_manifest  # noqa: PLC0415

    kubeconfig = state.get("kubeconfig")
    if not kubeconfig or not kubeapi_available() or not pod_keys:
        return
    from lab import kubeapi  # noqa: PLC0415

    manifests = []
    for key in pod_keys:
        manifest = pod_manifest(scenario, scenario.pod(key))
        for status in manifest.get("status", {}).get("containerStatuses", []):
            status["containerID"] = f"containerd://{secrets.token_hex(32)}"
            status["restartCount"] = int(status.get("restartCount", 0)) + 1
        manifests.append(manifest)
    kubeapi.apply_objects(kubeconfig, manifests, context=scenario.cluster.name)


def reboot(scenario: Scenario, state: dict[str, Any], name: str, new_pod_ips: bool = False) -> RebootReport:
    """Reboot one lab VM or node; see the module docstring. ``scenario`` has the recorded moves applied."""
    from lab.build import apply_kube_proxy, node_netns, start_process, wait_listeners, write_state  # noqa: PLC0415
    from lab.move import live_scenario, move_pod  # noqa: PLC0415

    kind, netns = _host(scenario, state, name)
    pods = [pod for pod in scenario.pods if kind == "node" and pod.node == name]
    records = {w["id"]: w for w in state["workloads"]}
    pod_netns = {pod.key: records[f"pod:{pod.key}"]["netns"] for pod in pods}
    namespaces = [netns, *pod_netns.values()]
    affected = [process for process in state["processes"] if process.get("netns") in namespaces]
    listening = {namespace: _listening(namespace) for namespace in namespaces}

    terminate([process["pid"] for process in affected if pid_alive(process["pid"])])
    wipe(netns)
    restored = restore(name, netns)
    if kind == "node":
        apply_kube_proxy(scenario, netns, name)

    addresses: dict[str, str] = {}
    for pod in pods:
        _recreate_pod_netns(pod_netns[pod.key])
        target_ip = _new_pod_ip(live_scenario(scenario, state), name, pod.ip) if new_pod_ips else str(pod.ip)
        # The rewiring of move-pod: a veth from the node's cni0, addresses, routes, kube-proxy everywhere, the API.
        move_pod(live_scenario(scenario, state), state, pod.key, name, target_ip)
        addresses[pod.key] = target_ip
    after = live_scenario(scenario, state)
    if kind == "node":
        # move_pod re-rendered every node; this node's own kube-proxy came back above already.
        apply_kube_proxy(after, node_netns(after.node(name)), name)
    _restart_container_ids(after, state, [pod.key for pod in pods])

    restarted = []
    for process in affected:
        record = start_process(process["argv"], f"{process['role']}.{process['netns']}.log", process["role"], process["workload"],
                               process["netns"])
        restarted.append(record)
    state["processes"] = [process for process in state["processes"] if process not in affected] + restarted
    write_state(state)
    wait_listeners({namespace: ports for namespace, ports in listening.items() if ports}, restarted)
    report = RebootReport(name, netns, restored, addresses, len(restarted))
    report.pods_running_at = report.finished_at = time.monotonic()
    return report

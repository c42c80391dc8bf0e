# SPDX-License-Identifier: GPL-3.0-or-later
"""Bring the lab up and down: namespaces, links, routes, kube-proxy rules, listeners, sshd, the API.

Layout (seed): the root namespace gets one bridge ``zt-lab0`` with the controller's underlay
address and one veth port per node and VM (``zt-n<i>`` / ``zt-m<i>``). Each node namespace
``zt-node-<name>`` has ``eth0`` on the underlay, a ``cni0`` bridge holding the pod CIDR's .1
gateway, one ``zt-p<j>`` veth port per pod, routes to the other nodes' pod CIDRs, forwarding on,
kube-proxy's nat rules, and an sshd. Each pod namespace ``zt-pod-<j>`` has ``eth0`` with its IP
and a default route via its node's gateway, and a listener. Each VM namespace ``zt-vm-<name>``
has ``eth0`` on the underlay, routes to the pod CIDRs via their nodes (a flat routed network, as
with BGP-announced pod CIDRs), a listener and an sshd. Nothing is routed or forwarded by the
root namespace.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab import access, podbuild
from lab.errors import LabError
from lab.kubeproxy import FILTER_JUMPS, NAT_JUMPS, render_node_rules
from lab.objects import scenario_objects
from lab.scenario import API_PORT, KUBELET_PORT, Node, Pod, Scenario, Vm, load_scenario
from lab.system import (
    LAB_DIR,
    LAB_NETNS,
    LAB_ROOT_LINK,
    PREFIX,
    REPO_ROOT,
    ROOT_BRIDGE,
    STATE_FILE,
    SYSTEM_PYTHON,
    in_netns,
    ip,
    ip_json,
    link_names,
    netns_list,
    pid_alive,
    pid_cmdline,
    run,
    sysctl,
    terminate,
)

STATE_VERSION = 1
LARGE_STATE_WORKLOADS = 200
RUN_DIR = LAB_DIR / "run"
LOG_DIR = LAB_DIR / "logs"
KUBEAPI_DIR = LAB_DIR / "kubeapi"
OBJECTS_FILE = LAB_DIR / "objects.json"
KUBEAPI_PID = RUN_DIR / "kubeapi.pid"
KUBELET_SCRIPT = REPO_ROOT / "lab" / "kubelet.py"
DNS_SERVER_SCRIPT = REPO_ROOT / "lab" / "dnsserver.py"
APISERVER_KUBELETS = RUN_DIR / "apiserver-kubelets.json"
PRIVSEP_DIR = Path("/run/sshd")
NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    # Masqueraded replies and pod traffic cross interfaces asymmetrically; strict rp_filter would drop them.
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    # NodePort traffic entering one node is forwarded back out the same underlay port to another node.
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
}


# --------------------------------------------------------------------------- state


def read_state() -> dict[str, Any] | None:
    """The recorded state, or None when no lab was recorded."""
    try:
        data: dict[str, Any] = json.loads(STATE_FILE.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"{STATE_FILE} is unreadable ({exc}); run `python -m lab down` to clean up") from None
    return data


def write_state(state: dict[str, Any]) -> None:
    """Record the state atomically (a crash mid-write never leaves half a file)."""
    LAB_DIR.mkdir(exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    # Indented for people to read while small; at thousands of pods the state is rewritten often
    # and only the C encoder (no indent) keeps that cheap.
    indent = 2 if len(state.get("workloads", ())) < LARGE_STATE_WORKLOADS else None
    tmp.write_text(json.dumps(state, indent=indent, sort_keys=False) + "\n")
    tmp.replace(STATE_FILE)


def pod_netns(index: int) -> str:
    """The netns of the pod at ``index`` in the scenario."""
    return f"{PREFIX}pod-{index}"


def node_netns(node: Node) -> str:
    """The netns of a node."""
    return f"{PREFIX}node-{node.name}"


def vm_netns(vm: Vm) -> str:
    """The netns of a VM."""
    return f"{PREFIX}vm-{vm.name}"


def _addresses(v4: Any, v6: Any) -> dict[str, list[str]]:
    return {"ipv4": [str(v4)], "ipv6": [str(v6)] if v6 is not None else []}


def _ports(ports: Any) -> list[dict[str, Any]]:
    return [{"port": port.port, "protocol": port.protocol, "name": port.name} for port in ports]


# --------------------------------------------------------------------------- checks


def require_root() -> None:
    """The lab manipulates namespaces and links: root only."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, links, iptables); run it as root")


def check_root_routes(scenario: Scenario) -> None:
    """Refuse to build when a root route (not ours) overlaps a lab network."""
    networks: list[tuple[Any, str]] = [
        (scenario.underlay.cidr, "topology.underlay.cidr"),
        (scenario.cluster.service_cidr, "topology.cluster.service_cidr"),
        (scenario.cluster.cluster_cidr, "topology.cluster.cluster_cidr"),
    ]
    if scenario.underlay.cidr_v6 is not None:
        networks.append((scenario.underlay.cidr_v6, "topology.underlay.cidr_ipv6"))
    for node in scenario.nodes:
        networks.append((node.pod_cidr, f"pod_cidr of node {node.name}"))
        if node.pod_cidr_v6 is not None:
            networks.append((node.pod_cidr_v6, f"pod_cidr_ipv6 of node {node.name}"))
    for family in ("-4", "-6"):
        for route in ip_json(family, "route", "show", "table", "main"):
            dst = route.get("dst", "")
            if dst == "default" or LAB_ROOT_LINK.match(str(route.get("dev", ""))):
                continue
            try:
                route_net = ipaddress.ip_network(dst, strict=False)
            except ValueError:
                continue
            for network, what in networks:
                if network.version == route_net.version and network.overlaps(route_net):
                    raise LabError(
                        f"the root namespace already routes {dst} (dev {route.get('dev', '?')}), "
                        f"which overlaps the lab's {network} ({what}); "
                        "pick other addresses in the scenario or remove that route before `lab up`"
                    )


# --------------------------------------------------------------------------- processes


def start_process(argv: list[str], log_name: str, role: str, workload: str, netns: str | None) -> dict[str, Any]:
    """Start a long-lived lab process detached from us; return its state record."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / log_name, "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd=REPO_ROOT)
    return {"pid": process.pid, "role": role, "workload": workload, "netns": netns, "argv": argv}


def _listening(netns: str) -> set[tuple[str, int]]:
    out = run(in_netns(netns, ["ss", "-H", "-l", "-n", "-t", "-u"]), check=False)
    result = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            proto = "TCP" if fields[0] == "tcp" else "UDP"
            port = fields[4].rsplit(":", 1)[-1]
            if port.isdigit():
                result.add((proto, int(port)))
    return result


def wait_listeners(expected: dict[str, set[tuple[str, int]]], processes: list[dict[str, Any]], timeout: float = 10) -> None:
    """Wait until every namespace listens on its ports; fail naming the ones that do not."""
    deadline = time.monotonic() + timeout
    pending = dict(expected)
    while pending:
        for netns in list(pending):
            if pending[netns] <= _listening(netns):
                del pending[netns]
        if not pending:
            return
        dead = [p for p in processes if not pid_alive(p["pid"])]
        if dead or time.monotonic() > deadline:
            details = ", ".join(f"{netns} missing {sorted(ports - _listening(netns))}" for netns, ports in pending.items())
            raise LabError(f"listeners did not come up ({details}); see {LOG_DIR}")
        time.sleep(0.05)


def wait_tcp(address: str, port: int, timeout: float = 10) -> None:
    """Wait until address:port (a lab address, via zt-lab0) accepts TCP connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise LabError(f"nothing listens on {address}:{port} after {timeout:.0f} s; see {LOG_DIR}") from None
            time.sleep(0.05)


# --------------------------------------------------------------------------- kube-proxy


def apply_kube_proxy(scenario: Scenario, netns: str, node_name: str) -> None:
    """Install or update kube-proxy's chains in a node: one iptables-restore --noflush, then the jumps."""
    text, chains = render_node_rules(scenario, node_name)
    existing = [
        line.split()[1] for line in run(in_netns(netns, ["iptables", "-w", "-t", "nat", "-S"])).splitlines() if line.startswith("-N KUBE-")
    ]
    stale = [chain for chain in existing if chain not in chains]
    if stale:
        # As kube-proxy does: declare (flush) the stale chains, then delete them, in the same transaction.
        nat_end = text.index("COMMIT")
        text = (
            text[:nat_end]
            + "".join(f":{chain} - [0:0]\n" for chain in stale)
            + "".join(f"-X {chain}\n" for chain in stale)
            + text[nat_end:]
        )
    run(in_netns(netns, ["iptables-restore", "-w", "--noflush"]), input_text=text)
    for table, jumps in (("nat", NAT_JUMPS), ("filter", FILTER_JUMPS)):
        for jump in jumps:
            chain, *spec = jump
            present = (
                subprocess.run(
                    in_netns(netns, ["iptables", "-w", "-t", table, "-C", chain, *spec]), capture_output=True, check=False
                ).returncode
                == 0
            )
            if not present:
                run(in_netns(netns, ["iptables", "-w", "-t", table, "-A", chain, *spec]))


# --------------------------------------------------------------------------- build


def _add_netns(name: str, state: dict[str, Any]) -> None:
    ip("netns", "add", name)
    state["netns"].append(name)
    write_state(state)
    # Interfaces are created after this: no duplicate address detection, so IPv6 works at once
    # (tentative link-local addresses would otherwise stall neighbour discovery for a second or two).
    sysctl(name, {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"})
    ip("link", "set", "lo", "up", netns=name)


def _underlay_port(index_name: str, netns: str, *, v4: Any, v6: Any, scenario: Scenario, state: dict[str, Any]) -> None:
    """A veth from the root bridge into ``netns`` as eth0 with the underlay address(es)."""
    ip("link", "add", index_name, "type", "veth", "peer", "name", "eth0", "netns", netns)
    state["root"]["links"].append(index_name)
    write_state(state)
    ip("link", "set", index_name, "master", ROOT_BRIDGE, "up")
    prefix = scenario.underlay.cidr.prefixlen
    ip("addr", "add", f"{v4}/{prefix}", "dev", "eth0", netns=netns)
    if v6 is not None and scenario.underlay.cidr_v6 is not None:
        ip("addr", "add", f"{v6}/{scenario.underlay.cidr_v6.prefixlen}", "dev", "eth0", "nodad", netns=netns)
    ip("link", "set", "eth0", "up", netns=netns)


def _ensure_privsep_dir(state: dict[str, Any]) -> None:
    # Debian's sshd refuses to start without its privilege separation directory (normally made by systemd).
    if not PRIVSEP_DIR.exists():
        PRIVSEP_DIR.mkdir(mode=0o755)
        state["root"]["created_privsep_dir"] = str(PRIVSEP_DIR)


def _start_sshd(host: str, netns: str, addresses: list[str], state: dict[str, Any]) -> None:
    config = access.sshd_config(host, addresses)
    # A UTS namespace of its own, so `hostname` over SSH names the lab host; names go as arguments, never into the script.
    argv = in_netns(
        netns,
        ["unshare", "--uts", "/bin/sh", "-c", 'hostname "$1" && exec /usr/sbin/sshd -D -e -f "$2"', "sh", host, str(config)],
    )
    state["processes"].append(start_process(argv, f"sshd.{host}.log", "sshd", host, netns))
    write_state(state)


def build(scenario: Scenario) -> dict[str, Any]:  # noqa: PLR0912, PLR0915 - one linear recipe, easier to read in one piece
    """Build the lab from scratch (the caller has taken any previous lab down)."""
    for directory in (LAB_DIR, RUN_DIR, LOG_DIR):
        directory.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {
        "version": STATE_VERSION,
        "status": "building",
        "scenario": {"path": str(Path(scenario.path).resolve()) if scenario.path else "", "digest": scenario.digest},
        "cluster": scenario.cluster.name,
        "iptables": run(["iptables", "--version"]).strip(),
        "root": {"bridge": ROOT_BRIDGE, "links": [], "addresses": []},
        "netns": [],
        "workloads": [],
        "processes": [],
        "kubeapi": None,
        "ssh": {"user": "root", "private_key": str(access.CLIENT_KEY), "options": access.SSH_OPTIONS},
        "inventory": str(access.INVENTORY_DIR),
        "kubeconfig": None,
    }
    write_state(state)
    access.ensure_keys()
    _ensure_privsep_dir(state)
    state["root"]["neigh_limits"] = podbuild.raise_neigh_limits(scenario)
    state["root"]["backlog_limit"] = podbuild.raise_backlog_limit(scenario)
    write_state(state)

    # Root: the underlay bridge and the controller's address, nothing else.
    ip("link", "add", ROOT_BRIDGE, "type", "bridge")
    state["root"]["links"].append(ROOT_BRIDGE)
    write_state(state)
    run(["sysctl", "-q", "-w", f"net.ipv6.conf.{ROOT_BRIDGE}.accept_ra=0"])
    ip("addr", "add", f"{scenario.underlay.controller}/{scenario.underlay.cidr.prefixlen}", "dev", ROOT_BRIDGE)
    state["root"]["addresses"].append(str(scenario.underlay.controller))
    if scenario.underlay.controller_v6 is not None and scenario.underlay.cidr_v6 is not None:
        ip("addr", "add", f"{scenario.underlay.controller_v6}/{scenario.underlay.cidr_v6.prefixlen}", "dev", ROOT_BRIDGE, "nodad")
        state["root"]["addresses"].append(str(scenario.underlay.controller_v6))
    ip("link", "set", ROOT_BRIDGE, "up")

    listeners: dict[str, set[tuple[str, int]]] = {}
    ssh_addresses: list[str] = []

    for index, node in enumerate(scenario.nodes):
        netns = node_netns(node)
        _add_netns(netns, state)
        sysctl(netns, NODE_SYSCTLS)
        root_port = f"{PREFIX}n{index}"
        _underlay_port(root_port, netns, v4=node.address, v6=node.ipv6, scenario=scenario, state=state)
        ip("link", "add", "cni0", "type", "bridge", netns=netns)
        ip("addr", "add", f"{node.pod_cidr.network_address + 1}/{node.pod_cidr.prefixlen}", "dev", "cni0", netns=netns)
        if node.pod_cidr_v6 is not None:
            ip("addr", "add", f"{node.pod_cidr_v6.network_address + 1}/{node.pod_cidr_v6.prefixlen}", "dev", "cni0", "nodad", netns=netns)
        ip("link", "set", "cni0", "up", netns=netns)
        state["workloads"].append(
            {
                "kind": "node",
                "id": f"node:{node.name}",
                "name": node.name,
                "namespace": None,
                "netns": netns,
                "addresses": _addresses(node.address, node.ipv6),
                "pod_cidrs": [str(node.pod_cidr)] + ([str(node.pod_cidr_v6)] if node.pod_cidr_v6 is not None else []),
                "gateways": [str(node.pod_cidr.network_address + 1)]
                + ([str(node.pod_cidr_v6.network_address + 1)] if node.pod_cidr_v6 is not None else []),
                "bridge": "cni0",
                "interfaces": ["lo", "eth0", "cni0", *(["flannel.1"] if scenario.cluster.overlay == "vxlan" else [])],
                "root_link": root_port,
                "ports": [{"port": 22, "protocol": "TCP", "name": "ssh"}],
            }
        )
        write_state(state)

    for netns in _start_overlay(scenario, state):
        listeners[netns] = {("UDP", 8472)}

    shared_listeners: dict[Path, str] = {}
    if len(scenario.pods) >= podbuild.SHARED_LISTENER_MIN_PODS:
        shared_listeners = _build_pods_in_bulk(scenario, state)
    else:
        for index, pod in enumerate(scenario.pods):
            _build_pod(scenario, pod, index, state)
            listeners[pod_netns(index)] = {(port.protocol, port.port) for port in pod.ports}

    for index, vm in enumerate(scenario.vms):
        netns = _build_vm(scenario, vm, index, state)
        _start_listener(netns, f"vm:{vm.name}", vm.ports, state)
        listeners[netns] = {(port.protocol, port.port) for port in vm.ports}
    if scenario.upstream_dns is not None:
        # The outside resolver cluster DNS forwards to: a lab VM, but not in the Ansible inventory.
        netns = _build_vm(scenario, scenario.upstream_dns, len(scenario.vms), state, role="upstream-dns")
        _start_upstream_dns(scenario.upstream_dns, netns, state)
        listeners[netns] = {(port.protocol, port.port) for port in scenario.upstream_dns.ports}

    for node in scenario.nodes:
        apply_kube_proxy(scenario, node_netns(node), node.name)
        addresses = [str(node.address)] + ([str(node.ipv6)] if node.ipv6 is not None else [])
        _start_sshd(node.name, node_netns(node), addresses, state)
        ssh_addresses.append(str(node.address))
    for vm in scenario.vms:
        addresses = [str(vm.address)] + ([str(vm.ipv6)] if vm.ipv6 is not None else [])
        _start_sshd(vm.name, vm_netns(vm), addresses, state)
        ssh_addresses.append(str(vm.address))

    start_kubeapi(scenario, state)
    if scenario.cluster.control_plane:
        start_kubelets(scenario, state)
        for node in scenario.nodes:
            listeners.setdefault(node_netns(node), set()).add(("TCP", KUBELET_PORT))
        for index, pod in enumerate(scenario.pods):
            if pod in scenario.dns_pods():
                _start_dns_server(scenario, pod, pod_netns(index), state)
    access.write_inventory(scenario)
    podbuild.wait_ready(shared_listeners, state["processes"])
    wait_listeners(listeners, state["processes"])
    for address in ssh_addresses:
        wait_tcp(address, 22)
    state["status"] = "up"
    write_state(state)
    return state


def _build_pods_in_bulk(scenario: Scenario, state: dict[str, Any]) -> dict[Path, str]:
    """Every pod through lab/podbuild.py, and one listener per node; returns the listeners' ready files (file -> node)."""
    podbuild.build_pods(scenario, {node.name: node_netns(node) for node in scenario.nodes}, state)
    write_state(state)
    dns = {pod.key for pod in scenario.dns_pods()}  # cluster DNS runs the lab's DNS server, not a listener
    ready: dict[Path, str] = {}
    for node in scenario.nodes:
        pods = [(pod, pod_netns(index)) for index, pod in enumerate(scenario.pods) if pod.node == node.name and pod.key not in dns]
        if not pods:
            continue
        ready_file = RUN_DIR / f"pod-listener.{node.name}.ready"
        ready_file.unlink(missing_ok=True)
        argv = podbuild.listener_argv(node, pods, ready_file)
        record = start_process(argv, f"pod-listener.{node.name}.log", "pod-listener", f"node:{node.name}", node_netns(node))
        state["processes"].append(record)
        ready[ready_file] = node.name
    write_state(state)
    return ready


def _build_pod(scenario: Scenario, pod: Pod, index: int, state: dict[str, Any]) -> None:
    """A pod namespace behind its node's cni0, with its listener."""
    node = scenario.node(pod.node)
    netns = pod_netns(index)
    host_netns = node_netns(node)
    _add_netns(netns, state)
    host_side = f"{PREFIX}p{index}"
    ip("link", "add", host_side, "type", "veth", "peer", "name", "eth0", "netns", netns, netns=host_netns)
    ip("link", "set", host_side, "master", "cni0", "up", netns=host_netns)
    # A pod reaching itself through a Service or NodePort comes back out the port it came in on
    # (br_netfilter DNATs at the bridge): hairpin mode, as kubenet and the bridge CNI set it.
    ip("link", "set", host_side, "type", "bridge_slave", "hairpin", "on", netns=host_netns)
    ip("addr", "add", f"{pod.ip}/{node.pod_cidr.prefixlen}", "dev", "eth0", netns=netns)
    if pod.ipv6 is not None and node.pod_cidr_v6 is not None:
        ip("addr", "add", f"{pod.ipv6}/{node.pod_cidr_v6.prefixlen}", "dev", "eth0", "nodad", netns=netns)
    ip("link", "set", "eth0", "up", netns=netns)
    ip("route", "add", "default", "via", str(node.pod_cidr.network_address + 1), "dev", "eth0", netns=netns)
    if pod.ipv6 is not None and node.pod_cidr_v6 is not None:
        ip("-6", "route", "add", "default", "via", str(node.pod_cidr_v6.network_address + 1), "dev", "eth0", netns=netns)
    record = podbuild.pod_record(pod, netns, host_netns, host_side)
    state["workloads"] = [w for w in state["workloads"] if w.get("id") != record["id"]] + [record]
    write_state(state)
    if pod in scenario.dns_pods():
        return  # cluster DNS runs the lab's DNS server (started once the API is up), not a listener
    if not any(p["role"] == "listener" and p["netns"] == netns and pid_alive(p["pid"]) for p in state["processes"]):
        _start_listener(netns, f"pod:{pod.key}", pod.ports, state)


def _build_vm(scenario: Scenario, vm: Vm, index: int, state: dict[str, Any], role: str | None = None) -> str:
    """A VM namespace on the underlay with routes to every pod CIDR via its node; returns the netns."""
    netns = vm_netns(vm)
    _add_netns(netns, state)
    root_port = f"{PREFIX}m{index}"
    _underlay_port(root_port, netns, v4=vm.address, v6=vm.ipv6, scenario=scenario, state=state)
    routes = []
    for node in scenario.nodes:
        routes.append(f"route add {node.pod_cidr} via {node.address} dev eth0")
        if node.pod_cidr_v6 is not None and node.ipv6 is not None and vm.ipv6 is not None:
            routes.append(f"route add {node.pod_cidr_v6} via {node.ipv6} dev eth0")
    podbuild.ip_batch(routes, netns)  # one ip process for every node's pod CIDRs
    record: dict[str, Any] = {
        "kind": "vm",
        "id": f"vm:{vm.name}",
        "name": vm.name,
        "namespace": None,
        "netns": netns,
        "addresses": _addresses(vm.address, vm.ipv6),
        "labels": dict(vm.labels),
        "ports": _ports(vm.ports),
        "interfaces": ["lo", "eth0"],
        "root_link": root_port,
    }
    if role is not None:
        record["role"] = role
        record["inventory"] = False
    state["workloads"].append(record)
    write_state(state)
    return netns


def _start_overlay(scenario: Scenario, state: dict[str, Any]) -> list[str]:
    """The pod network between nodes: flannel-style VXLAN (lab/overlay.py) or direct routes; the namespaces of userspace VTEPs."""
    from lab import overlay  # noqa: PLC0415

    mode: overlay.Mode = "vxlan" if scenario.cluster.overlay == "vxlan" else "routed"
    nodes = overlay.nodes_from_scenario(scenario.nodes, node_netns)
    for vtep in overlay.setup_overlay(nodes, mode):
        state["processes"].append(start_process(vtep.argv, f"vtep.{vtep.node.name}.log", "vtep", f"node:{vtep.node.name}", vtep.node.netns))
    state["overlay"] = mode
    write_state(state)
    return [process["netns"] for process in state["processes"] if process["role"] == "vtep"]


def _start_listener(netns: str, workload: str, ports: Any, state: dict[str, Any]) -> None:
    args = [arg for port in ports for arg in (f"--{port.protocol.lower()}", str(port.port))]
    argv = in_netns(netns, [SYSTEM_PYTHON, str(REPO_ROOT / "lab" / "listener.py"), *args])
    state["processes"].append(start_process(argv, f"listener.{netns}.log", "listener", workload, netns))
    write_state(state)


# --------------------------------------------------------------------------- the Kubernetes API


def kubeapi_available() -> bool:
    """Whether lab/kubeapi.py (written by the inventory engineer) exists."""
    return importlib.util.find_spec("lab.kubeapi") is not None


def api_sans(scenario: Scenario, node: Node) -> list[str]:
    """What the API server's certificate names besides its node address: the ClusterIP and the in-cluster names."""
    names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    return [str(scenario.cluster.api_cluster_ip), *([str(node.ipv6)] if node.ipv6 is not None else []), *names]


def check_controller_route(address: str) -> None:
    """Refuse unless the root namespace reaches ``address`` through the lab bridge (never another network)."""
    routes = ip_json("route", "get", address)
    device = routes[0].get("dev") if routes else None
    if device != ROOT_BRIDGE:
        raise LabError(f"the root namespace routes the API server's {address} through {device!r}, not the lab bridge {ROOT_BRIDGE}")


def start_kubeapi(scenario: Scenario, state: dict[str, Any], timeout: float = 30) -> None:
    """Serve the scenario's objects and write .lab/kubeconfig (skipped while lab/kubeapi.py is missing).

    With a control plane the API server runs inside the control-plane node's namespace on its
    node address, port 6443, as a real one; without, on loopback.
    """
    OBJECTS_FILE.write_text(json.dumps(scenario_objects(scenario), indent=1) + "\n")
    if not kubeapi_available():
        state["kubeapi"] = {"status": "unavailable", "reason": "lab/kubeapi.py does not exist yet"}
        write_state(state)
        return
    KUBEAPI_DIR.mkdir(parents=True, exist_ok=True)
    endpoint_file = KUBEAPI_DIR / "endpoint.json"
    endpoint_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "lab.kubeapi", "serve", "--state-dir", str(KUBEAPI_DIR), "--objects", str(OBJECTS_FILE)]
    control = scenario.control_plane_node
    netns = None
    if control is None:
        argv += ["--port", "0"]
    else:
        netns = node_netns(control)
        check_controller_route(str(control.address))
        argv += [arg for san in api_sans(scenario, control) for arg in ("--san", san)]
        argv = in_netns(netns, [*argv, "--host", str(control.address), "--port", str(API_PORT)])
    record = start_process(argv, "kubeapi.log", "kubeapi", f"cluster:{scenario.cluster.name}", netns)
    state["processes"].append(record)
    KUBEAPI_PID.write_text(f"{record['pid']}\n")
    write_state(state)
    deadline = time.monotonic() + timeout
    while not endpoint_file.exists():
        if not pid_alive(record["pid"]):
            raise LabError(f"the emulated Kubernetes API exited during start-up; see {LOG_DIR / 'kubeapi.log'}")
        if time.monotonic() > deadline:
            raise LabError(
                f"the emulated Kubernetes API did not write {endpoint_file} within {timeout:.0f} s; see {LOG_DIR / 'kubeapi.log'}"
            )
        time.sleep(0.1)
    time.sleep(0.05)  # the file is written once listening; let a non-atomic writer finish
    from lab import kubeapi  # noqa: PLC0415 - optional until the other engineer's module lands

    kubeapi.write_kubeconfig(str(endpoint_file), str(access.KUBECONFIG), scenario.cluster.name)
    endpoint = json.loads(endpoint_file.read_text())
    state["kubeapi"] = {
        "status": "up",
        "pid": record["pid"],
        "url": endpoint.get("url"),
        "endpoint_file": str(endpoint_file),
        "node": control.name if control is not None else None,
        "netns": netns,
    }
    state["kubeconfig"] = str(access.KUBECONFIG)
    write_state(state)


def dns_server_args(scenario: Scenario, pod: Pod) -> list[str]:
    """lab/dnsserver.py's arguments for a DNS pod.

    As CoreDNS in a pod, it reaches the API through ``default/kubernetes`` (the ClusterIP, which
    kube-proxy DNATs to the API server's node) and forwards other names to the upstream resolver.
    """
    api = scenario.api_service
    api_url = f"https://{api.cluster_ip}:443" if api is not None else ""
    upstream = [str(scenario.upstream_dns.address)] if scenario.upstream_dns is not None else []
    listen = [str(address) for address in (pod.ip, pod.ipv6) if address is not None]
    return [
        *(arg for address in listen for arg in ("--listen", address)),
        "--api-url",
        api_url,
        "--token-file",
        str(KUBEAPI_DIR / "token"),
        "--ca-file",
        str(KUBEAPI_DIR / "ca.crt"),
        *(arg for address in upstream for arg in ("--upstream", address)),
    ]


def _start_dns_server(scenario: Scenario, pod: Pod, netns: str, state: dict[str, Any]) -> None:
    """Cluster DNS in its pod: lab/dnsserver.py, reading Services from the API and forwarding to the upstream resolver."""
    api = state.get("kubeapi") or {}
    if not DNS_SERVER_SCRIPT.exists() or api.get("status") != "up":
        _start_listener(netns, f"pod:{pod.key}", pod.ports, state)  # no DNS server yet: the ports answer, the health block says what fails
        return
    argv = in_netns(netns, [SYSTEM_PYTHON, str(DNS_SERVER_SCRIPT), *dns_server_args(scenario, pod)])
    state["processes"].append(start_process(argv, f"dnsserver.{netns}.log", "dnsserver", f"pod:{pod.key}", netns))
    write_state(state)


def _start_upstream_dns(vm: Vm, netns: str, state: dict[str, Any]) -> None:
    """The upstream resolver VM's process (lab/upstream_dns.py: dnsmasq answering a few fixed names)."""
    from lab import upstream_dns  # noqa: PLC0415

    argv = in_netns(netns, upstream_dns.dnsmasq_argv([str(address) for address in (vm.address, vm.ipv6) if address is not None]))
    state["processes"].append(start_process(argv, f"upstream-dns.{vm.name}.log", "upstream-dns", f"vm:{vm.name}", netns))
    write_state(state)


def kubelet_record(node_name: str) -> Path:
    """Where a node's kubelet stand-in records its last API contact."""
    return RUN_DIR / f"kubelet.{node_name}.json"


def start_kubelets(scenario: Scenario, state: dict[str, Any]) -> None:
    """A kubelet stand-in in every node, and the API server's connections to their tcp/10250 (lab/kubelet.py)."""
    control = scenario.control_plane_node
    api = state.get("kubeapi") or {}
    if control is None or api.get("status") != "up":
        return
    for node in scenario.nodes:
        kubelet_record(node.name).unlink(missing_ok=True)
        argv = in_netns(
            node_netns(node),
            [SYSTEM_PYTHON, str(KUBELET_SCRIPT), "kubelet", "--node", node.name, "--address", str(node.address), "--api-url", api["url"],
             "--ca", str(KUBEAPI_DIR / "ca.crt"), "--token-file", str(KUBEAPI_DIR / "token"), "--record", str(kubelet_record(node.name))],
        )
        state["processes"].append(start_process(argv, f"kubelet.{node.name}.log", "kubelet", f"node:{node.name}", node_netns(node)))
    APISERVER_KUBELETS.unlink(missing_ok=True)
    argv = in_netns(
        node_netns(control),
        [SYSTEM_PYTHON, str(KUBELET_SCRIPT), "reach", "--source", str(control.address),
         *(arg for node in scenario.nodes for arg in ("--node", f"{node.name}={node.address}")), "--record", str(APISERVER_KUBELETS)],
    )
    record = start_process(argv, "apiserver-kubelets.log", "apiserver-kubelets", f"node:{control.name}", node_netns(control))
    state["processes"].append(record)
    write_state(state)


# --------------------------------------------------------------------------- up / down / status


def health(state: dict[str, Any]) -> list[str]:
    """What is wrong with a recorded lab (empty when healthy)."""
    problems = []
    present = set(netns_list())
    for netns in state.get("netns", []):
        if netns not in present:
            problems.append(f"netns {netns} is missing")
    if ROOT_BRIDGE not in link_names():
        problems.append(f"root bridge {ROOT_BRIDGE} is missing")
    for process in state.get("processes", []):
        if not pid_alive(process["pid"]) or not _ours(process):
            problems.append(f"{process['role']} of {process['workload']} (pid {process['pid']}) is not running")
    if state.get("status") != "up":
        problems.append(f"the last `lab up` did not finish (status {state.get('status')!r})")
    return problems


def _ours(process: dict[str, Any]) -> bool:
    # A recycled PID would run something else: compare with what we started.
    cmdline = pid_cmdline(process["pid"])
    argv = process.get("argv") or []
    if process["role"] == "sshd":
        return "sshd" in cmdline and str(access.SSH_DIR) in cmdline
    return bool(argv) and cmdline.endswith(" ".join(argv[-2:]))


def up(scenario_path: str | Path) -> tuple[dict[str, Any], bool]:
    """Bring the lab up; return (state, changed). An identical healthy lab is left as it is."""
    require_root()
    scenario = load_scenario(scenario_path)
    state = read_state()
    if state is not None and state.get("scenario", {}).get("digest") == scenario.digest and not health(state):
        return state, False
    if state is not None or leftovers():
        down()
    check_root_routes(scenario)
    try:
        return build(scenario), True
    except BaseException:
        # Leave nothing half-built behind; the error says what failed.
        down()
        raise


def leftovers() -> list[str]:
    """Lab objects present on the machine (netns and root links with the lab's prefix)."""
    return [f"netns {name}" for name in netns_list() if LAB_NETNS.match(name)] + [
        f"link {name}" for name in link_names() if LAB_ROOT_LINK.match(name)
    ]


def _delete_each(kind: str, names: list[str]) -> list[str]:
    """``ip KIND delete NAME`` for each name (``netns`` or ``link``); what was removed, as leftovers() words it."""
    for name in names:
        ip(kind, "delete", name, check=False)
    return [f"{kind} {name}" for name in names]


def _restore_kernel_limits(root: dict[str, Any]) -> list[str]:
    """Put back the machine-wide limits ``up`` raised for the lab; what was put back."""
    restored = []
    if root.get("neigh_limits"):
        podbuild.restore_neigh_limits(root["neigh_limits"])
        restored.append("raised neighbour table limits")
    if root.get("backlog_limit"):
        podbuild.restore_backlog_limit(root["backlog_limit"])
        restored.append("raised receive backlog limit")
    return restored


def down() -> list[str]:
    """Remove everything the lab made; idempotent. Returns what was removed."""
    require_root()
    removed: list[str] = []
    state = read_state() if STATE_FILE.exists() else None
    # SSH ControlMasters Ansible left under .lab/ssh-control: ask each to exit through its socket.
    if access.CONTROL_DIR.is_dir():
        for control_socket in access.CONTROL_DIR.iterdir():
            run(["ssh", "-O", "exit", "-o", f"ControlPath={control_socket}", "lab-host"], check=False, timeout=10)
            removed.append(f"ssh control master {control_socket.name}")
    pids: list[int] = []
    if state is not None:
        pids += [process["pid"] for process in state.get("processes", []) if pid_alive(process["pid"]) and _ours(process)]
    if KUBEAPI_PID.exists():
        pid = int(KUBEAPI_PID.read_text().strip() or 0)
        if pid and pid_alive(pid) and "lab.kubeapi" in pid_cmdline(pid):
            pids.append(pid)
    lab_netns = [name for name in netns_list() if LAB_NETNS.match(name)]
    for netns in lab_netns:
        # Every process inside a lab namespace was started there by the lab or through its sshd.
        pids += [int(pid) for pid in run(["ip", "netns", "pids", netns], check=False).split() if pid.isdigit()]
    pids = sorted(set(pids) - {os.getpid()})
    terminate(pids)
    removed += [f"process {pid}" for pid in pids]
    removed += _delete_each("netns", lab_netns)
    # Listed after the namespaces are gone: deleting a namespace deletes the veth ends inside it, and their peers.
    removed += _delete_each("link", [link for link in link_names() if LAB_ROOT_LINK.match(link)])
    if state is not None:
        removed += _restore_kernel_limits(state.get("root", {}))
    if state is not None and state.get("root", {}).get("created_privsep_dir"):
        with contextlib.suppress(OSError):
            PRIVSEP_DIR.rmdir()
    if LAB_DIR.exists():
        for entry in LAB_DIR.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    return removed


def status() -> str:
    """A human summary of the recorded lab."""
    state = read_state()
    if state is None:
        left = leftovers()
        return "no lab recorded" + (f"; leftovers: {', '.join(left)} (run `python -m lab down`)" if left else "")
    problems = health(state)
    lines = [f"lab {state.get('cluster')} from {state['scenario']['path']}: {'healthy' if not problems else 'UNHEALTHY'}"]
    lines += [f"  problem: {problem}" for problem in problems]
    for workload in state.get("workloads", []):
        addresses = " ".join(workload["addresses"]["ipv4"] + workload["addresses"]["ipv6"])
        lines.append(f"  {workload['id']:<50} {workload['netns']:<22} {addresses}")
    api = state.get("kubeapi") or {}
    lines.append(f"  kubernetes api: {api.get('url') or api.get('status', 'none')}  kubeconfig: {state.get('kubeconfig') or '-'}")
    lines.append(f"  inventory: {state.get('inventory')}  ssh: ssh -i {access.CLIENT_KEY} {access.SSH_OPTIONS} root@ADDRESS")
    return "\n".join(lines)

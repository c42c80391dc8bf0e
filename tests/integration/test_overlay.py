# SPDX-License-Identifier: GPL-3.0-or-later
"""lab/overlay.py in throwaway namespaces: flannel-style VXLAN between two nodes, with real traffic.

Topology (all names ``ztt-ovl-<hex>-*``, nothing in the root namespace): a switch namespace
holding bridge ``br0`` (the underlay), two node namespaces with ``eth0`` on it, forwarding on
and a ``cni0`` bridge, and one pod namespace behind each node. ``lab.overlay.setup_overlay``
wires the nodes, once with the kernel's VXLAN driver and once with the userspace VTEPs
(lab/vtep.py, the fallback for kernels without one), which run as they would in the lab.
Probes are TCP connections to ``lab/listener.py``, which echoes the source address it saw,
so the tests also show who the peer really is.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns_helpers import assert_route_into, create_netns, delete_netns, in_ns, sh, unique_name, wait_link_up

from lab import overlay

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

REPO = Path(__file__).resolve().parents[2]
CLIENT = r"""
import socket, sys
address, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in address else socket.AF_INET
sock = socket.socket(family, socket.SOCK_STREAM)
sock.settimeout(1.5)
try:
    sock.connect((address, port))
    print(sock.recv(200).decode().strip())
except OSError as exc:
    print(f"FAILED {exc}")
"""
PORT = 8080


@dataclass
class Cluster:
    """Two nodes with one pod each, wired by the overlay."""

    nodes: list[overlay.OverlayNode]
    pods: dict[str, tuple[str, str, str]]  # node name -> (pod netns, v4, v6)
    namespaces: list[str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    backend: str = ""

    def connect(self, source: str, address: str, device: str = "eth0") -> str:
        """The source address the listener at address:PORT saw for a connection from ``source`` (or ``FAILED ...``).

        The lab's listener answers ``PEER LOCAL`` (who connected, and which of its addresses took the
        connection, for the probe's per-endpoint detail); the overlay tests look at the peer.
        """
        assert_route_into(source, address, device)
        echoed = in_ns(source, [sys.executable, "-c", CLIENT, address, str(PORT)]).stdout.strip()
        if echoed.startswith("FAILED"):
            return echoed
        peer, _separator, local = echoed.partition(" ")
        assert local == address, f"the listener took the connection on {local!r}, not on {address!r}"
        return peer


def _wait_udp(namespace: str, port: int, processes: list[subprocess.Popen[bytes]], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while f":{port} " not in in_ns(namespace, ["ss", "-H", "-l", "-n", "-u"]).stdout + " ":
        dead = [p for p in processes if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise AssertionError(f"udp/{port} not listening in {namespace} (exited: {[p.args for p in dead]})")
        time.sleep(0.05)


def _wait_tcp(namespace: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while f":{port} " not in in_ns(namespace, ["ss", "-H", "-l", "-n", "-t"]).stdout + " ":
        if time.monotonic() > deadline:
            raise AssertionError(f"tcp/{port} not listening in {namespace}")
        time.sleep(0.05)


@contextlib.contextmanager
def cluster(mode: overlay.Mode, backend: overlay.Backend = "auto", v6_underlay: bool = True) -> Iterator[Cluster]:
    """Build the two-node topology with ``mode`` (and VXLAN ``backend``); always removed afterwards.

    ``v6_underlay``: the nodes have IPv6 underlay addresses too (then IPv6 pod traffic uses flannel-v6.1).
    """
    octet = secrets.randbelow(250) + 2
    base = unique_name("ztt-ovl")
    switch = f"{base}-sw"
    result = Cluster(nodes=[], pods={}, namespaces=[])
    try:
        create_netns(switch)
        result.namespaces.append(switch)
        sh(["ip", "-n", switch, "link", "add", "br0", "type", "bridge"])
        sh(["ip", "-n", switch, "link", "set", "br0", "up"])
        links = []
        for index, name in enumerate(("a", "b")):
            node_ns, pod_ns = f"{base}-n{name}", f"{base}-p{name}"
            for namespace in (node_ns, pod_ns):
                create_netns(namespace)
                result.namespaces.append(namespace)
                sh(["ip", "netns", "exec", namespace, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0"])
            sh(["ip", "netns", "exec", node_ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])
            address = ipaddress.IPv4Address(f"10.232.{octet}.{11 + index}")
            pod_cidr = ipaddress.IPv4Network(f"10.233.{octet}.{128 * index}/25")
            pod_cidr_v6 = ipaddress.IPv6Network(f"fd00:233:{octet:x}:{index}::/64")
            sh(["ip", "-n", switch, "link", "add", f"port{name}", "type", "veth", "peer", "name", "eth0", "netns", node_ns])
            sh(["ip", "-n", switch, "link", "set", f"port{name}", "master", "br0", "up"])
            sh(["ip", "-n", node_ns, "addr", "add", f"{address}/24", "dev", "eth0"])
            address_v6 = ipaddress.IPv6Address(f"fd00:232:{octet:x}::{11 + index}") if v6_underlay else None
            if address_v6 is not None:
                sh(["ip", "-n", node_ns, "addr", "add", f"{address_v6}/64", "dev", "eth0", "nodad"])
            sh(["ip", "-n", node_ns, "link", "set", "eth0", "up"])
            sh(["ip", "-n", node_ns, "link", "add", "cni0", "type", "bridge"])
            sh(["ip", "-n", node_ns, "addr", "add", f"{pod_cidr.network_address + 1}/25", "dev", "cni0"])
            sh(["ip", "-n", node_ns, "addr", "add", f"{pod_cidr_v6.network_address + 1}/64", "dev", "cni0", "nodad"])
            sh(["ip", "-n", node_ns, "link", "set", "cni0", "up"])
            sh(["ip", "-n", node_ns, "link", "add", "podport", "type", "veth", "peer", "name", "eth0", "netns", pod_ns])
            sh(["ip", "-n", node_ns, "link", "set", "podport", "master", "cni0", "up"])
            pod_v4, pod_v6 = str(pod_cidr.network_address + 2), str(pod_cidr_v6.network_address + 2)
            sh(["ip", "-n", pod_ns, "addr", "add", f"{pod_v4}/25", "dev", "eth0"])
            sh(["ip", "-n", pod_ns, "addr", "add", f"{pod_v6}/64", "dev", "eth0", "nodad"])
            sh(["ip", "-n", pod_ns, "link", "set", "eth0", "up"])
            sh(["ip", "-n", pod_ns, "route", "add", "default", "via", str(pod_cidr.network_address + 1)])
            sh(["ip", "-n", pod_ns, "-6", "route", "add", "default", "via", str(pod_cidr_v6.network_address + 1)])
            links += [(node_ns, "eth0"), (node_ns, "cni0"), (pod_ns, "eth0")]
            result.nodes.append(overlay.OverlayNode(f"node-{name}", node_ns, address, pod_cidr, address_v6, pod_cidr_v6))
            result.pods[f"node-{name}"] = (pod_ns, pod_v4, pod_v6)
        wait_link_up(links)
        for vtep in overlay.setup_overlay(result.nodes, mode, backend):
            result.processes.append(subprocess.Popen(vtep.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for node in result.nodes if mode == "vxlan" else []:
            _wait_udp(node.netns, overlay.PORT, result.processes)
        for pod_ns, _, _ in result.pods.values():
            result.processes.append(
                subprocess.Popen(["ip", "netns", "exec", pod_ns, "/usr/bin/python3", str(REPO / "lab" / "listener.py"), "--tcp", str(PORT)])
            )
            _wait_tcp(pod_ns, PORT)
        yield result
    finally:
        for process in result.processes:
            process.kill()
            process.wait()
        for namespace in result.namespaces:
            delete_netns(namespace)


@pytest.fixture(
    scope="module", params=[("kernel", True), ("userspace", True), ("kernel", False)], ids=["kernel", "userspace", "v4-underlay"]
)
def vxlan(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The VXLAN overlay with the kernel's driver, with lab/vtep.py (kernels without one), and over an IPv4-only underlay."""
    backend, v6_underlay = request.param
    if backend == "kernel":
        probe = unique_name("ztt-ovl")
        create_netns(probe)
        try:
            if not overlay.kernel_vxlan_supported(probe):
                pytest.skip("this kernel has no vxlan driver")
        finally:
            delete_netns(probe)
    with cluster("vxlan", backend, v6_underlay) as built:
        built.backend = backend
        yield built


def _counter(namespace: str, needle: str, save: str = "iptables-save") -> int:
    """Packets counted by the (only) filter rule whose save line contains ``needle``."""
    lines = [line for line in in_ns(namespace, [save, "-c", "-t", "filter"]).stdout.splitlines() if needle in line]
    assert len(lines) == 1, lines
    match = re.match(r"\[(\d+):\d+\]", lines[0])
    assert match, lines[0]
    return int(match.group(1))


def _iptables(namespace: str, *args: str, tool: str = "iptables") -> None:
    in_ns(namespace, [tool, "-w", *args])


def test_devices_are_configured_as_flannel_does(vxlan: Cluster) -> None:
    node_a, node_b = vxlan.nodes
    link = in_ns(node_a.netns, ["ip", "-d", "link", "show", "dev", "flannel.1"]).stdout
    assert f"link/ether {overlay.vtep_mac(node_a.name)} " in link
    assert " mtu 1450 " in link
    if vxlan.backend == "kernel":
        assert re.search(rf"vxlan id 1 local {node_a.address} dev eth0 .*dstport 8472 nolearning ", link), link
        fdb = in_ns(node_a.netns, ["bridge", "fdb", "show", "dev", "flannel.1"]).stdout
        assert f"{overlay.vtep_mac(node_b.name)} dst {node_b.address} self permanent" in fdb, fdb
    else:
        assert "tun type tap" in link
    addresses = in_ns(node_a.netns, ["ip", "addr", "show", "dev", "flannel.1"]).stdout
    assert f"inet {node_a.pod_cidr.network_address}/32 " in addresses
    assert node_a.pod_cidr_v6 is not None
    v6_device = "flannel-v6.1" if node_a.address_v6 is not None else "flannel.1"
    assert f"inet6 {node_a.pod_cidr_v6.network_address}/128 " in in_ns(node_a.netns, ["ip", "addr", "show", "dev", v6_device]).stdout
    if node_a.address_v6 is not None:
        link6 = in_ns(node_a.netns, ["ip", "-d", "link", "show", "dev", "flannel-v6.1"]).stdout
        assert f"link/ether {overlay.vtep_mac(node_a.name, 'flannel-v6.1')} " in link6
        assert " mtu 1430 " in link6
        if vxlan.backend == "kernel":
            assert re.search(rf"vxlan id 1 local {node_a.address_v6} dev eth0 .*dstport 8472 nolearning ", link6), link6
    routes = in_ns(node_a.netns, ["ip", "route", "show", str(node_b.pod_cidr)]).stdout
    assert routes.split() == [str(node_b.pod_cidr), "via", str(node_b.pod_cidr.network_address), "dev", "flannel.1", "onlink"]
    neighbours = in_ns(node_a.netns, ["ip", "neigh", "show", "dev", "flannel.1"]).stdout
    assert f"{node_b.pod_cidr.network_address} lladdr {overlay.vtep_mac(node_b.name)} PERMANENT" in neighbours


def test_cross_node_pod_traffic_is_encapsulated_in_udp_8472(vxlan: Cluster) -> None:
    node_a, node_b = vxlan.nodes
    assert node_a.pod_cidr_v6 is not None
    pod_a, pod_a_v4, pod_a_v6 = vxlan.pods[node_a.name]
    _, pod_b_v4, pod_b_v6 = vxlan.pods[node_b.name]
    # IPv6 pod traffic crosses the IPv6 underlay (flannel-v6.1) when there is one, else flannel.1's IPv4.
    v6_tool, v6_device = ("ip6tables", "flannel-v6.1") if node_a.address_v6 is not None else ("iptables", "flannel.1")
    v6_peer_a, v6_peer_b = (node_a.address_v6, node_b.address_v6) if node_a.address_v6 is not None else (node_a.address, node_b.address)
    # Counting rules (no target): what leaves node a towards b's VTEP, what b receives, and where a forwards pod traffic.
    counting = [
        (node_a.netns, "iptables", ["OUTPUT", "-p", "udp", "-d", str(node_b.address), "--dport", "8472"]),
        (node_b.netns, "iptables", ["INPUT", "-p", "udp", "-s", str(node_a.address), "--dport", "8472"]),
        (node_a.netns, "iptables", ["FORWARD", "-o", "eth0"]),
        (node_a.netns, "ip6tables", ["FORWARD", "-o", "eth0"]),
    ]
    if v6_tool == "ip6tables":
        counting += [
            (node_a.netns, "ip6tables", ["OUTPUT", "-p", "udp", "-d", str(v6_peer_b), "--dport", "8472"]),
            (node_b.netns, "ip6tables", ["INPUT", "-p", "udp", "-s", str(v6_peer_a), "--dport", "8472"]),
        ]
    for namespace, tool, rule in counting:
        _iptables(namespace, "-A", *rule, tool=tool)
    try:
        # Pod to pod keeps the pod's own source address (no NAT).
        assert vxlan.connect(pod_a, pod_b_v4) == pod_a_v4
        assert _counter(node_a.netns, "--dport 8472") > 0
        assert _counter(node_b.netns, "--dport 8472") > 0
        for namespace in (node_a.netns, node_b.netns):
            in_ns(namespace, ["iptables", "-w", "-Z"])
            in_ns(namespace, ["ip6tables", "-w", "-Z"])
        assert vxlan.connect(pod_a, pod_b_v6) == pod_a_v6
        assert _counter(node_a.netns, "--dport 8472", f"{v6_tool}-save") > 0
        assert _counter(node_b.netns, "--dport 8472", f"{v6_tool}-save") > 0
        # A node reaching a pod on another node speaks from its VXLAN device's address, as on a flannel node.
        assert vxlan.connect(node_a.netns, pod_b_v4, "flannel.1") == str(node_a.pod_cidr.network_address)
        assert vxlan.connect(node_a.netns, pod_b_v6, v6_device) == str(node_a.pod_cidr_v6.network_address)
        # Nothing went out unencapsulated.
        assert _counter(node_a.netns, "-A FORWARD -o eth0") == 0
        assert _counter(node_a.netns, "-A FORWARD -o eth0", "ip6tables-save") == 0
    finally:
        for namespace, tool, rule in counting:
            _iptables(namespace, "-D", *rule, tool=tool)


@pytest.mark.parametrize(("where", "chain"), [("receiver", "INPUT"), ("sender", "OUTPUT")])
def test_a_node_rule_dropping_udp_8472_breaks_cross_node_pod_traffic(vxlan: Cluster, where: str, chain: str) -> None:
    node_a, node_b = vxlan.nodes
    pod_a, _, _ = vxlan.pods[node_a.name]
    _, pod_b_v4, pod_b_v6 = vxlan.pods[node_b.name]
    namespace = node_b.netns if where == "receiver" else node_a.netns
    rule = [chain, "-p", "udp", "--dport", "8472", "-j", "DROP"]
    assert not vxlan.connect(pod_a, pod_b_v4).startswith("FAILED")
    assert not vxlan.connect(pod_a, pod_b_v6).startswith("FAILED")
    for tool in ("iptables", "ip6tables"):
        _iptables(namespace, "-I", *rule, tool=tool)
    try:
        assert vxlan.connect(pod_a, pod_b_v4).startswith("FAILED")
        assert vxlan.connect(pod_a, pod_b_v6).startswith("FAILED")
    finally:
        for tool in ("iptables", "ip6tables"):
            _iptables(namespace, "-D", *rule, tool=tool)
    assert not vxlan.connect(pod_a, pod_b_v4).startswith("FAILED")
    assert not vxlan.connect(pod_a, pod_b_v6).startswith("FAILED")


def test_routed_mode_routes_pod_cidrs_directly() -> None:
    with cluster("routed") as routed:
        node_a, node_b = routed.nodes
        pod_a, pod_a_v4, pod_a_v6 = routed.pods[node_a.name]
        _, pod_b_v4, pod_b_v6 = routed.pods[node_b.name]
        assert in_ns(node_a.netns, ["ip", "link", "show", "dev", "flannel.1"], check=False).returncode != 0
        _iptables(node_a.netns, "-I", "OUTPUT", "-p", "udp", "--dport", "8472", "-j", "DROP")
        assert routed.connect(pod_a, pod_b_v4) == pod_a_v4
        assert routed.connect(pod_a, pod_b_v6) == pod_a_v6
        assert routed.connect(node_a.netns, pod_b_v4) == str(node_a.address)

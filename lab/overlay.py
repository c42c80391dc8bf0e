# SPDX-License-Identifier: GPL-3.0-or-later
"""The pod network between nodes: flannel-style VXLAN (the default) or direct routes.

``vxlan`` does in each node namespace what flannel's vxlan backend does on a real node:
a device ``flannel.1`` (VNI 1, udp/8472, local = the node's underlay address, no learning), with
the pod CIDR's network address as a /32 (flannel's convention) and a MAC derived from the node
name; for every other node a route to its pod CIDR ``via <its network address> dev flannel.1
onlink``, a permanent neighbour entry mapping that gateway to the peer's VTEP MAC, and an FDB
entry mapping the MAC to the peer's underlay address. IPv6 pod CIDRs get flannel's dual-stack
twin when both nodes have an IPv6 underlay address: ``flannel-v6.1`` (VNI 1, udp/8472 over
IPv6, local = the node's IPv6 address) with the v6 pod CIDR's network address as a /128 and the
same kind of routes, neighbours and FDB entries. Without an IPv6 underlay address (something
real flannel refuses), IPv6 pod CIDRs ride ``flannel.1`` over the IPv4 underlay instead.

Consequences that match a real flannel node: cross-node pod traffic leaves the node as UDP to
<peer address>:8472 (a node rule dropping that breaks it), and traffic a node itself sends to a
pod on another node carries the node's ``flannel.1`` address (its pod CIDR's network address) as
source, not the underlay address; in IPv6, the v6 pod CIDR's network address.

When the kernel has no ``vxlan`` driver (``backend="auto"`` checks), each device is a TAP device
configured identically and ``lab/vtep.py`` does the encapsulation in userspace: same wire format,
same ports, same iptables hooks. Those processes are returned to the caller to start and track.

``routed`` is the lab's earlier network (flannel ``host-gw`` style): each node routes the other
nodes' pod CIDRs via their underlay addresses on eth0.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lab.errors import LabError
from lab.system import REPO_ROOT, SYSTEM_PYTHON, in_netns, run

DEVICE = "flannel.1"
DEVICE_V6 = "flannel-v6.1"
VNI = 1
PORT = 8472
MTU = 1450  # flannel's: the underlay's 1500 minus the 50 bytes of outer IPv4, UDP and VXLAN headers
MTU_V6 = 1430  # the same over an IPv6 underlay (a 40-byte outer header)
MODES = ("vxlan", "routed")
BACKENDS = ("auto", "kernel", "userspace")
Mode = Literal["vxlan", "routed"]
Backend = Literal["auto", "kernel", "userspace"]
VTEP_SCRIPT = REPO_ROOT / "lab" / "vtep.py"


@dataclass(frozen=True)
class OverlayNode:
    """What the overlay needs to know about one node."""

    name: str
    netns: str
    address: ipaddress.IPv4Address
    pod_cidr: ipaddress.IPv4Network
    address_v6: ipaddress.IPv6Address | None = None
    pod_cidr_v6: ipaddress.IPv6Network | None = None


@dataclass(frozen=True)
class Vtep:
    """A userspace VTEP the caller must start (``argv`` runs inside ``node.netns``) and keep running.

    One per node and device (``flannel.1``, and ``flannel-v6.1`` on dual-stack nodes).
    """

    node: OverlayNode
    argv: list[str]
    device: str = DEVICE


def nodes_from_scenario(nodes: Iterable[Any], netns_of: Callable[[Any], str]) -> list[OverlayNode]:
    """OverlayNodes from ``lab.scenario.Node`` records (``netns_of`` is ``lab.build.node_netns``)."""
    return [
        OverlayNode(
            name=node.name,
            netns=netns_of(node),
            address=node.address,
            pod_cidr=node.pod_cidr,
            address_v6=node.ipv6,
            pod_cidr_v6=node.pod_cidr_v6,
        )
        for node in nodes
    ]


def vtep_mac(node_name: str, device: str = DEVICE) -> str:
    """The MAC of the node's ``device``: stable across lab rebuilds, locally administered, unicast."""
    digest = hashlib.sha256(f"{device}/{node_name}".encode()).digest()
    # First octet 0x0e: the locally-administered bit set, the multicast bit clear.
    return ":".join(f"{octet:02x}" for octet in (0x0E, *digest[:5]))


def v6_tunnel(node: OverlayNode) -> bool:
    """Whether the node gets ``flannel-v6.1`` (an IPv6 pod CIDR and an IPv6 underlay address)."""
    return node.address_v6 is not None and node.pod_cidr_v6 is not None


def node_devices(node: OverlayNode, mode: Mode = "vxlan") -> list[str]:
    """The overlay's devices in the node (for the lab's record of a node's interfaces)."""
    _check_mode(mode)
    if mode != "vxlan":
        return []
    return [DEVICE, DEVICE_V6] if v6_tunnel(node) else [DEVICE]


def flannel_annotations(node: OverlayNode, mode: Mode = "vxlan") -> dict[str, str]:
    """The annotations flannel's kube subnet manager writes on the node's Node object.

    ``vxlan`` gives the VNI and VTEP MAC in ``backend-data`` (JSON text); ``routed`` is flannel's
    ``host-gw`` backend, whose backend data is JSON ``null``. Dual-stack nodes (IPv6 pod CIDR and
    IPv6 underlay address) also get flannel's ``backend-v6-data`` and ``public-ipv6``.
    """
    _check_mode(mode)
    annotations = {
        "flannel.alpha.coreos.com/backend-data": _backend_data(node, DEVICE, mode),
        "flannel.alpha.coreos.com/backend-type": "vxlan" if mode == "vxlan" else "host-gw",
        "flannel.alpha.coreos.com/kube-subnet-manager": "true",
        "flannel.alpha.coreos.com/public-ip": str(node.address),
    }
    if v6_tunnel(node):
        annotations["flannel.alpha.coreos.com/backend-v6-data"] = _backend_data(node, DEVICE_V6, mode)
        annotations["flannel.alpha.coreos.com/public-ipv6"] = str(node.address_v6)
    return dict(sorted(annotations.items()))


def _backend_data(node: OverlayNode, device: str, mode: Mode) -> str:
    if mode != "vxlan":
        return "null"
    return json.dumps({"VNI": VNI, "VtepMAC": vtep_mac(node.name, device)}, separators=(",", ":"))


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise LabError(f"unknown overlay {mode!r}: expected one of {', '.join(MODES)}")


def _check_nodes(nodes: Sequence[OverlayNode]) -> None:
    names = [node.name for node in nodes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LabError(f"overlay: node names must be unique, got {', '.join(duplicates)} more than once")
    macs = {vtep_mac(node.name) for node in nodes}
    if len(macs) != len(nodes):
        raise LabError("overlay: two node names give the same VTEP MAC; rename one of them")


def routed_commands(nodes: Sequence[OverlayNode]) -> list[list[str]]:
    """The ``ip`` argv lists of the routed (host-gw) network: pod CIDRs via the peers' underlay addresses."""
    _check_nodes(nodes)
    commands: list[list[str]] = []
    for node in nodes:
        for other in nodes:
            if other.name == node.name:
                continue
            commands.append(["ip", "-n", node.netns, "route", "add", str(other.pod_cidr), "via", str(other.address), "dev", "eth0"])
            if other.pod_cidr_v6 is not None and other.address_v6 is not None:
                commands.append(
                    ["ip", "-n", node.netns, "-6", "route", "add", str(other.pod_cidr_v6), "via", str(other.address_v6), "dev", "eth0"]
                )
    return commands


def _device_commands(node: OverlayNode, device: str, backend: Literal["kernel", "userspace"]) -> list[list[str]]:
    """Create ``device`` in the node, with its MAC (and MTU and segmentation for a TAP)."""
    ns = ["ip", "-n", node.netns]
    local = node.address if device == DEVICE else node.address_v6
    if backend == "kernel":
        return [
            [*ns, "link", "add", device, "type", "vxlan", "id", str(VNI), "dstport", str(PORT), "local", str(local), "dev", "eth0",
             "nolearning"],
            [*ns, "link", "set", device, "address", vtep_mac(node.name, device)],
        ]
    mtu = MTU if device == DEVICE else MTU_V6
    # gso_max_segs 1: the kernel hands the TAP one MTU-sized frame at a time, as a VXLAN device
    # segments; otherwise it passes 64 KiB GSO frames whose datagrams get IP-fragmented on the underlay.
    return [
        [*ns, "tuntap", "add", "dev", device, "mode", "tap"],
        [*ns, "link", "set", device, "address", vtep_mac(node.name, device), "mtu", str(mtu), "gso_max_segs", "1"],
    ]


def _peer_commands(node: OverlayNode, other: OverlayNode, backend: Literal["kernel", "userspace"]) -> list[list[str]]:
    """Routes, neighbours (and kernel FDB entries) in ``node`` towards ``other``'s pod CIDRs."""
    ns = ["ip", "-n", node.netns]
    hops: list[tuple[str, str, ipaddress.IPv4Network | ipaddress.IPv6Network, Any]] = [(DEVICE, "", other.pod_cidr, other.address)]
    if node.pod_cidr_v6 is not None and other.pod_cidr_v6 is not None:
        device = DEVICE_V6 if v6_tunnel(node) and v6_tunnel(other) else DEVICE
        hops.append((device, "-6", other.pod_cidr_v6, other.address_v6 if device == DEVICE_V6 else other.address))
    commands: list[list[str]] = []
    for device, family, cidr, underlay in hops:
        mac = vtep_mac(other.name, device)
        gateway = str(cidr.network_address)
        flag = [family] if family else []
        commands.append([*ns, *flag, "neigh", "replace", gateway, "lladdr", mac, "dev", device, "nud", "permanent"])
        commands.append([*ns, *flag, "route", "add", str(cidr), "via", gateway, "dev", device, "onlink"])
        if backend == "kernel" and not (device == DEVICE and family):  # flannel.1 already forwards this MAC
            commands.append(["bridge", "-n", node.netns, "fdb", "append", mac, "dev", device, "dst", str(underlay)])
    return commands


def vxlan_commands(nodes: Sequence[OverlayNode], backend: Literal["kernel", "userspace"]) -> list[list[str]]:
    """The ``ip``/``bridge`` argv lists that build ``flannel.1`` (and ``flannel-v6.1``) and the routes in every node.

    ``userspace`` makes TAP devices instead of VXLAN ones and leaves the FDB to ``lab/vtep.py``.
    """
    _check_nodes(nodes)
    commands: list[list[str]] = []
    for node in nodes:
        ns = ["ip", "-n", node.netns]
        commands += _device_commands(node, DEVICE, backend)
        commands.append([*ns, "addr", "add", f"{node.pod_cidr.network_address}/32", "dev", DEVICE])
        if node.pod_cidr_v6 is not None and not v6_tunnel(node):
            commands.append([*ns, "addr", "add", f"{node.pod_cidr_v6.network_address}/128", "dev", DEVICE, "nodad"])
        commands.append([*ns, "link", "set", DEVICE, "up"])
        if v6_tunnel(node) and node.pod_cidr_v6 is not None:
            commands += _device_commands(node, DEVICE_V6, backend)
            commands.append([*ns, "addr", "add", f"{node.pod_cidr_v6.network_address}/128", "dev", DEVICE_V6, "nodad"])
            commands.append([*ns, "link", "set", DEVICE_V6, "up"])
        for other in nodes:
            if other.name != node.name:
                commands += _peer_commands(node, other, backend)
    return commands


def vtep_argv(node: OverlayNode, nodes: Sequence[OverlayNode], device: str = DEVICE) -> list[str]:
    """The argv of ``node``'s userspace VTEP for ``device`` (already wrapped in ``ip netns exec``)."""
    peers: list[tuple[OverlayNode, Any]]
    if device == DEVICE:
        local: Any = node.address
        peers = [(other, other.address) for other in nodes if other.name != node.name]
    else:
        local = node.address_v6
        peers = [(other, other.address_v6) for other in nodes if other.name != node.name and v6_tunnel(other)]
    return in_netns(
        node.netns,
        [SYSTEM_PYTHON, str(VTEP_SCRIPT), "--device", device, "--local", str(local), "--vni", str(VNI), "--port", str(PORT),
         *(f"--peer={vtep_mac(other.name, device)}={address}" for other, address in peers)],
    )


def kernel_vxlan_supported(netns: str) -> bool:
    """Whether the kernel can make VXLAN devices (tried with a throwaway device in ``netns``)."""
    probe = "zt-vxlan-probe"
    # Without the driver this fails with "Unknown device type"; the outcome is read from the device, not the text.
    run(["ip", "-n", netns, "link", "add", probe, "type", "vxlan", "id", "4242", "dstport", str(PORT)], check=False)
    present = run(["ip", "-n", netns, "link", "show", probe], check=False).strip() != ""
    if present:
        run(["ip", "-n", netns, "link", "delete", probe], check=False)
    return present


def run_batched(commands: Sequence[list[str]]) -> None:
    """Run ``ip -n NS ...`` / ``bridge -n NS ...`` argv lists with few processes: per run of commands for one namespace,
    the ``ip`` ones as one ``ip -n NS -batch`` (in order) and then the ``bridge`` ones as one batch.

    FDB entries only need their device, which the ``ip`` lines before them made; a command with a
    family flag (``-6``: a batch line takes no options) or without ``-n`` runs alone, in its place.
    """
    segment: list[list[str]] = []

    def batch(tool: str, netns: str, lines: list[list[str]]) -> None:
        if len(lines) == 1:
            run(lines[0])
        elif lines:
            run([tool, "-n", netns, "-batch", "-"], input_text="".join(" ".join(argv[3:]) + "\n" for argv in lines))

    def flush() -> None:
        if not segment:
            return
        netns = segment[0][2]
        ip_lines: list[list[str]] = []
        for argv in segment:
            if argv[0] != "ip":
                continue
            if argv[3].startswith("-"):
                batch("ip", netns, ip_lines)
                ip_lines = []
                run(argv)
            else:
                ip_lines.append(argv)
        batch("ip", netns, ip_lines)
        batch("bridge", netns, [argv for argv in segment if argv[0] == "bridge"])
        segment.clear()

    for argv in commands:
        if len(argv) < 4 or argv[1] != "-n" or argv[0] not in ("ip", "bridge"):
            flush()
            run(argv)
            continue
        if segment and argv[2] != segment[0][2]:
            flush()
        segment.append(argv)
    flush()


def setup_overlay(nodes: Sequence[OverlayNode], mode: Mode = "vxlan", backend: Backend = "auto") -> list[Vtep]:
    """Wire the nodes' pod CIDRs together; return the userspace VTEPs the caller must start.

    Call once, after every node namespace has ``eth0`` up with its underlay address and before
    traffic flows. ``routed`` and the kernel backend return ``[]``. Each returned ``Vtep`` listens
    on udp/8472 of its node once running (wait for that as for any listener). Raises LabError
    naming the command that failed.
    """
    _check_mode(mode)
    if backend not in BACKENDS:
        raise LabError(f"unknown VXLAN backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if mode == "routed":
        for argv in routed_commands(nodes):
            run(argv)
        return []
    if not nodes:
        return []
    chosen: Literal["kernel", "userspace"] = backend if backend != "auto" else (
        "kernel" if kernel_vxlan_supported(nodes[0].netns) else "userspace"
    )
    run_batched(vxlan_commands(nodes, chosen))
    if chosen == "kernel":
        return []
    vteps = [Vtep(node, vtep_argv(node, nodes)) for node in nodes]
    return vteps + [Vtep(node, vtep_argv(node, nodes, DEVICE_V6), DEVICE_V6) for node in nodes if v6_tunnel(node)]

# SPDX-License-Identifier: GPL-3.0-or-later
"""Move a pod to another node and IP in the live lab (the "rules follow the pod" demo).

The pod keeps its network namespace and its listener (bound to the wildcard address); its veth
is rewired from the old node's cni0 to the new one's, its addresses and default route change,
kube-proxy's endpoints are rewritten in every node, and the Pod and EndpointSlice objects are
replaced through the real API, so the inventory sees the new IP and node. The move is recorded
in state.json (``moves``), which ``live_scenario`` applies on top of the scenario file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from lab.errors import LabError
from lab.scenario import Scenario


def live_scenario(scenario: Scenario, state: dict[str, Any]) -> Scenario:
    """The scenario with the pod moves recorded in the state applied."""
    moves: dict[str, dict[str, Any]] = state.get("moves", {})
    if not moves:
        return scenario
    pods = []
    for pod in scenario.pods:
        move = moves.get(pod.key)
        if move is None:
            pods.append(pod)
            continue
        ipv6 = ipaddress.IPv6Address(move["ipv6"]) if move.get("ipv6") else None
        pods.append(dataclasses.replace(pod, node=move["node"], ip=ipaddress.IPv4Address(move["ip"]), ipv6=ipv6))
    return dataclasses.replace(scenario, pods=tuple(pods))


def _new_ipv6(scenario: Scenario, node_name: str, ip: ipaddress.IPv4Address) -> ipaddress.IPv6Address | None:
    # The seed's convention: 10.244.N.X <-> fd00:10:244:N::X (the last octet's digits as the last group).
    node = scenario.node(node_name)
    if node.pod_cidr_v6 is None:
        return None
    return node.pod_cidr_v6.network_address + int(str(ip).rsplit(".", 1)[1], 16)


def validate_move(
    scenario: Scenario, pod_key: str, node_name: str, ip_text: str
) -> tuple[ipaddress.IPv4Address, ipaddress.IPv6Address | None]:
    """Check the destination of a move; return the new IPv4 and IPv6 addresses."""
    scenario.pod(pod_key)
    node = scenario.node(node_name)
    try:
        ip = ipaddress.IPv4Address(ip_text)
    except ValueError:
        raise LabError(f"--ip {ip_text!r} is not an IPv4 address") from None
    reserved = (node.pod_cidr.network_address, node.pod_cidr.network_address + 1, node.pod_cidr.broadcast_address)
    if ip not in node.pod_cidr or ip in reserved:
        raise LabError(f"--ip {ip} is not a pod address in {node_name}'s pod CIDR {node.pod_cidr} (.1 is the gateway)")
    for other in scenario.pods:
        if other.key != pod_key and other.ip == ip:
            raise LabError(f"--ip {ip} is already used by pod {other.key}")
    return ip, _new_ipv6(scenario, node_name, ip)


def move_pod(scenario: Scenario, state: dict[str, Any], pod_key: str, node_name: str, ip_text: str) -> str:
    """Move a pod; see the module docstring. Returns a one-line summary."""
    from lab.build import apply_kube_proxy, node_netns, write_state  # noqa: PLC0415 - build imports this module's siblings
    from lab.system import PREFIX, ip  # noqa: PLC0415

    new_ip, new_ipv6 = validate_move(scenario, pod_key, node_name, ip_text)
    pod = scenario.pod(pod_key)
    record = next(w for w in state["workloads"] if w.get("id") == f"pod:{pod_key}")
    netns = record["netns"]
    old_node = scenario.node(pod.node)
    node = scenario.node(node_name)
    host_side = record["veth"]["node_side"]

    # Rewire: deleting the node side removes the pod's eth0 with it.
    ip("link", "delete", host_side, netns=node_netns(old_node), check=False)
    new_netns = node_netns(node)
    ip("link", "add", host_side, "type", "veth", "peer", "name", "eth0", "netns", netns, netns=new_netns)
    ip("link", "set", host_side, "master", "cni0", "up", netns=new_netns)
    ip("link", "set", host_side, "type", "bridge_slave", "hairpin", "on", netns=new_netns)
    ip("addr", "add", f"{new_ip}/{node.pod_cidr.prefixlen}", "dev", "eth0", netns=netns)
    if new_ipv6 is not None and node.pod_cidr_v6 is not None:
        ip("addr", "add", f"{new_ipv6}/{node.pod_cidr_v6.prefixlen}", "dev", "eth0", "nodad", netns=netns)
    ip("link", "set", "eth0", "up", netns=netns)
    ip("route", "replace", "default", "via", str(node.pod_cidr.network_address + 1), "dev", "eth0", netns=netns)
    if new_ipv6 is not None and node.pod_cidr_v6 is not None:
        ip("-6", "route", "replace", "default", "via", str(node.pod_cidr_v6.network_address + 1), "dev", "eth0", netns=netns)
    assert host_side.startswith(PREFIX)  # noqa: S101 - names come from our own state

    record["node"] = node_name
    record["addresses"] = {"ipv4": [str(new_ip)], "ipv6": [str(new_ipv6)] if new_ipv6 is not None else []}
    record["veth"]["node_netns"] = new_netns
    state.setdefault("moves", {})[pod_key] = {"node": node_name, "ip": str(new_ip), "ipv6": str(new_ipv6) if new_ipv6 else None}
    write_state(state)

    moved = live_scenario(scenario, state)
    for each in moved.nodes:
        apply_kube_proxy(moved, node_netns(each), each.name)
    api = update_api_objects(scenario, moved, state, pod_key)
    return f"moved pod {pod_key}: {old_node.name} {pod.ip} -> {node_name} {new_ip}; kube-proxy updated on {len(moved.nodes)} nodes; {api}"


def update_api_objects(before: Scenario, after: Scenario, state: dict[str, Any], pod_key: str) -> str:
    """Replace the Pod and its services' EndpointSlices through the real API; delete slices that vanished."""
    from lab.build import kubeapi_available  # noqa: PLC0415
    from lab.objects import endpoint_slice_manifests, pod_manifest  # noqa: PLC0415

    kubeconfig = state.get("kubeconfig")
    if not kubeconfig or not kubeapi_available():
        return "API objects not updated (no emulated API)"
    from kubernetes import client, config  # noqa: PLC0415

    from lab import kubeapi  # noqa: PLC0415

    pod = after.pod(pod_key)
    services = [s for s in after.services if s.namespace == pod.namespace]
    slices_after = [m for s in services for m in endpoint_slice_manifests(after, s)]
    slices_before = [m for s in before.services if s.namespace == pod.namespace for m in endpoint_slice_manifests(before, s)]
    done = kubeapi.apply_objects(kubeconfig, [pod_manifest(after, pod), *slices_after], context=after.cluster.name)
    kept = {m["metadata"]["name"] for m in slices_after}
    stale = [m for m in slices_before if m["metadata"]["name"] not in kept]
    if stale:
        api_client = config.new_client_from_config(config_file=kubeconfig, context=after.cluster.name)  # type: ignore[no-untyped-call]
        try:
            discovery = client.DiscoveryV1Api(api_client)
            for manifest in stale:
                discovery.delete_namespaced_endpoint_slice(manifest["metadata"]["name"], manifest["metadata"]["namespace"])
                done.append(f"deleted EndpointSlice {manifest['metadata']['namespace']}/{manifest['metadata']['name']}")
        finally:
            api_client.close()
    return "API: " + ", ".join(done)

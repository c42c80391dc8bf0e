# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Classify observed flows against the policy, and compare a measured truth table with it.

Each observed flow (source address -> destination address, protocol, port) is named in
the inventory's terms and decided by :class:`Reachability` (the policy's own semantics,
not the compiled rules):

============  ==========================  =========================================
class         the network...              the policy...
============  ==========================  =========================================
permitted     carried it (a reply came)   allows it
escaped       carried it                  would drop it (switching on enforcement breaks it)
rejected      did not carry it            drops it
unanswered    did not carry it            allows it (nothing listens, or drift)
partial       either                      allows it to some of the service's endpoints only
unclassified  -                           cannot say: the destination is not in the inventory
============  ==========================  =========================================

``partial``: the path to a ClusterIP or NodePort is open but some endpoints' own rules
refuse the consumer (a quarantined pod still behind the Service), so kube-proxy sends a
share of the connections to an endpoint that drops them; the flow names those endpoints
(``refusing``) and the policies that refuse. The answer per endpoint is the oracle's
(:attr:`Verdict.paths`, entry node x endpoint), kept for the entry point the flow used; a
future source of per-endpoint answers only has to fill those paths. Flows are grouped by source, destination
(as named below), protocol and port: connections to the same NodePort on four nodes are
one line with a count, and when entry points disagree the line is ``partial`` too.

A flow allowed by an implicit allowance (loopback, node to its pods, DNS, management SSH)
is marked ``implicit`` so a reader can tell it from what the policy's authors wrote.
Destinations are resolved the way kube-proxy would: a ClusterIP and service port is the
service ``via cluster_ip``; a node address and a NodePort is the service ``via node_port``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Flow, Reachability, Verdict
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import Workload

from .observation import Observed

CLASSES = ("permitted", "escaped", "partial", "rejected", "unanswered", "unclassified")
MEASURED_CONNECTED = "."
MEASURED_BLOCKED = "X"
MEASURED_PARTIAL = "~"  # some attempts connected, others not: a service whose paths split


def workload_label(workload: Workload) -> str:
    """``pod:NS/NAME``, ``svc:NS/NAME``, ``node:NAME``, ``vm:NAME`` (the lab probe's spelling)."""
    prefix = "svc" if workload.kind == "service" else workload.kind
    return f"{prefix}:{workload.key}"


@dataclasses.dataclass(frozen=True)
class Destination:
    """Where a flow went, in inventory terms."""

    workload: Workload
    via: str
    port: int
    label: str


class Classifier:
    """Names addresses and decides flows for one policy over one inventory."""

    def __init__(self, reachability: Reachability) -> None:
        self.reachability = reachability
        index = reachability.index
        self.workloads = list(index.workloads)
        self.by_label = {workload_label(workload): workload for workload in self.workloads}
        self.sources: dict[str, Workload] = {}
        self.targets: dict[str, Workload] = {}
        for kind in ("service", "node", "vm", "pod"):  # later kinds win: a pod IP is the pod
            for workload in self.workloads:
                if workload.kind != kind:
                    continue
                if kind != "service":
                    for address in index.peer_addresses(workload):
                        self.sources[address] = workload
                    for address in workload.addresses:
                        self.targets[address] = workload
        self.cluster_ips: dict[tuple[str, str, int], Workload] = {}
        self.node_ports: dict[tuple[Optional[str], str, int], tuple[Workload, int]] = {}
        for workload in self.workloads:
            if workload.kind != "service":
                continue
            for port in workload.service_ports:
                for address in workload.addresses:
                    self.cluster_ips[(address, port.protocol, port.port)] = workload
                if port.node_port is not None and workload.has_node_ports:
                    self.node_ports[(workload.cluster, port.protocol, port.node_port)] = (workload, port.port)

    def destination(self, address: str, protocol: str, port: int) -> Optional[Destination]:
        """The workload (or service and path) a connection to ``address:port`` reaches."""
        service = self.cluster_ips.get((address, protocol, port))
        if service is not None:
            return Destination(service, "cluster_ip", port, workload_label(service))
        target = self.targets.get(address)
        if target is not None and target.kind == "node":
            found = self.node_ports.get((target.cluster, protocol, port))
            if found is not None:
                return Destination(found[0], "node_port", found[1], f"nodeport:{found[0].key}")
        if target is not None:
            return Destination(target, "direct", port, workload_label(target))
        return None

    def decide(self, source: str, destination: Destination, protocol: str) -> Verdict:
        """The policy's verdict; a question the policy cannot answer becomes a denial with the reason."""
        try:
            return self.reachability.check(Flow(source, destination.workload.host, protocol, destination.port, destination.via))
        except ZeroTrustPolicyError as error:
            return Verdict(False, (), str(error))

    def classify(self, observed: Sequence[Observed]) -> list[dict[str, Any]]:
        """One entry per source x destination x protocol x port in inventory terms (the
        connections to one NodePort on every node are one entry), sorted by class then names."""
        groups: dict[tuple[str, str, str, int], list[Observed]] = {}
        for item in observed:
            connection = item.original
            key = (connection.source, connection.destination, connection.protocol, connection.destination_port)
            groups.setdefault(key, []).append(item)
        named: dict[tuple[str, str, str, str, int], list[dict[str, Any]]] = {}
        for key, items in sorted(groups.items()):
            flow = self._flow(key, items)
            named.setdefault((flow["source"], flow["destination"], flow["via"], flow["protocol"], flow["port"]), []).append(flow)
        flows = [group_flows(members) for members in named.values()]
        return sorted(
            flows, key=lambda flow: (CLASSES.index(flow["class"]), flow["source"], flow["destination"], flow["protocol"], flow["port"])
        )

    def _flow(self, key: tuple[str, str, str, int], items: Sequence[Observed]) -> dict[str, Any]:
        source_address, destination_address, protocol, port = key
        answered = sum(1 for item in items if item.answered)
        seen_at = sorted({place for item in items for place in item.seen_at})
        flow: dict[str, Any] = {
            "source_address": source_address,
            "destination_address": destination_address,
            "protocol": protocol,
            "port": port,
            "connections": len(items),
            "answered": answered,
            "observed": "carried" if answered else "blocked",
            "seen_at": seen_at,
            "refusing": [],
            "endpoints": None,
        }
        source = self.sources.get(source_address)
        flow["source"] = workload_label(source) if source is not None else source_address
        flow["source_host"] = source.host if source is not None else None
        if ipaddress.ip_address(source_address).is_loopback:
            where = seen_at[0] if seen_at else "?"
            flow.update(destination=f"{where} (loopback)", destination_host=None, via="direct", service_port=None)
            flow.update(policy="allow", decided_by=["implicit:loopback"], reason="loopback inside one namespace", implicit=True)
            flow["class"] = "permitted" if answered else "unanswered"
            return flow
        destination = self.destination(destination_address, protocol, port)
        if destination is None:
            flow.update(destination=destination_address, destination_host=None, via="direct", service_port=None)
            flow.update(policy="unknown", decided_by=[], reason="the destination is not a workload of the inventory", implicit=False)
            flow["class"] = "unclassified"
            return flow
        flow.update(
            destination=destination.label,
            destination_host=destination.workload.host,
            via=destination.via,
            service_port=destination.port if destination.via != "direct" else None,
        )
        verdict = self.decide(source.host if source is not None else source_address, destination, protocol)
        flow.update(
            policy="allow" if verdict.allowed else "deny",
            decided_by=list(verdict.decided_by),
            reason=verdict.reason,
            implicit=any(origin.startswith("implicit:") for origin in verdict.decided_by),
        )
        if not verdict.allowed and destination.via != "direct":
            self._split(flow, verdict, destination, destination_address)
        flow["class"] = flow_class(flow["policy"], answered)
        return flow

    def _split(self, flow: dict[str, Any], verdict: Verdict, destination: Destination, destination_address: str) -> None:
        """A service flow the oracle did not allow, narrowed to the entry point actually dialled.

        The oracle answers for every way kube-proxy can send the connection (entry node x
        endpoint, :attr:`Verdict.paths`); the observed flow entered at one node (NodePort) or
        the ClusterIP, so only those paths count: ``partial`` when some connect and others
        fail, ``allow`` when all connect (the refusal was another entry's), ``deny`` when none
        does, each failing path named in ``refusing`` for the grouped line.
        """
        service = destination.workload
        paths = list(verdict.paths)
        if not paths:
            return
        entry = "the ClusterIP"
        if destination.via == "node_port":
            node = self.targets.get(destination_address)
            entry = workload_label(node) if node is not None else destination_address
            paths = [path for path in paths if node is not None and path.node == node.name]
        via = [destination_address]
        if not paths:
            reason = f"no endpoint of {service.key} is on {entry} (externalTrafficPolicy: Local): kube-proxy drops the connection"
            flow.update(policy="deny", decided_by=[], reason=reason, implicit=False)
            flow["refusing"] = [{"endpoint": f"{entry} (no local endpoint)", "decided_by": [], "reason": reason, "via": via}]
            return
        failing = [path for path in paths if not path.allowed]
        flow["endpoints"] = len(paths)
        flow["refusing"] = [
            {
                "endpoint": _endpoint_label(path.endpoint),
                "decided_by": [path.decided_by] if path.decided_by else [],
                "reason": f"refused by {path.decided_by or 'the policy'}",
                "via": via,
            }
            for path in failing
        ]
        decided = list(dict.fromkeys(path.decided_by for path in failing if path.decided_by))
        if not failing:
            flow.update(policy="allow", decided_by=[], reason=f"every path entering at {entry} connects ({len(paths)} endpoints)")
            flow["implicit"] = False
        elif len(failing) == len(paths):
            if verdict.partial:  # other entry points connect; the oracle's reason speaks of them all
                reason = f"every path entering at {entry} is refused by {', '.join(decided) or '?'}"
                flow.update(policy="deny", decided_by=decided, reason=reason)
        else:
            named = ", ".join(f"{item['endpoint']} ({', '.join(item['decided_by']) or '-'})" for item in flow["refusing"])
            flow.update(
                policy="partial", decided_by=decided, reason=f"{len(failing)} of {len(paths)} endpoints refuse: {named}", implicit=False
            )


def _endpoint_label(name: str) -> str:
    """The oracle names an endpoint by its pod key (``namespace/name``) or its address."""
    return f"pod:{name}" if "/" in name else name


def flow_class(policy: str, answered: int) -> str:
    """The class of a flow from the policy's answer (allow, deny, partial, unknown) and what the network did."""
    if policy == "unknown":
        return "unclassified"
    if policy == "partial":
        return "partial"
    if policy == "allow":
        return "permitted" if answered else "unanswered"
    return "escaped" if answered else "rejected"


def group_flows(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One line for the flows between the same source and destination names on one port
    (a NodePort dialled on every node, a node's several addresses): the counts add up, the
    addresses and places are listed, and when the members' answers differ (some entry
    points admit, others refuse) the line is ``partial`` with what refuses, and where."""
    first = members[0]
    flow = dict(first)
    flow["connections"] = sum(int(member["connections"]) for member in members)
    flow["answered"] = sum(int(member["answered"]) for member in members)
    flow["observed"] = "carried" if flow["answered"] else "blocked"
    flow["seen_at"] = sorted({place for member in members for place in member["seen_at"]})
    flow["source_addresses"] = sorted({str(member["source_address"]) for member in members})
    flow["destination_addresses"] = sorted({str(member["destination_address"]) for member in members})
    flow["source_address"], flow["destination_address"] = flow["source_addresses"][0], flow["destination_addresses"][0]
    merged: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    for member in members:
        if member["policy"] == "allow":
            continue
        for item in member["refusing"]:
            key = (str(item["endpoint"]), tuple(item["decided_by"]))
            if key in merged:
                merged[key]["via"] = sorted({*merged[key]["via"], *item["via"]})
            else:
                merged[key] = dict(item, via=list(item["via"]))
    flow["refusing"] = list(merged.values())
    policies = {str(member["policy"]) for member in members}
    if len(policies) > 1 and "unknown" not in policies:
        refused = sum(1 for member in members if member["policy"] != "allow")
        named = "; ".join(
            f"{item['endpoint']} ({', '.join(item['decided_by']) or '-'}) via {', '.join(item['via'])}" for item in flow["refusing"]
        )
        flow.update(
            policy="partial",
            decided_by=list(dict.fromkeys(origin for item in flow["refusing"] for origin in item["decided_by"])),
            reason=f"{refused} of {len(members)} entry points refuse some or all connections: {named}",
            implicit=False,
        )
    flow["class"] = flow_class(str(flow["policy"]), int(flow["answered"]))
    return flow


# -- conformance: a measured truth table beside the policy ---------------------------------


def probe_flow(classifier: Classifier, source: str, target: str) -> tuple[Optional[Flow], str]:
    """The Reachability question behind one probe cell (lab spelling), or why there is none.

    Targets: ``pod:NS/NAME:tcp/80``, ``svc:NS/NAME:tcp/80`` (ClusterIP),
    ``nodeport:NS/NAME:tcp/80`` (named by the service port), ``vm:NAME:tcp/80``; an
    ``@ipv6`` suffix asks the same question.
    """
    source_workload = classifier.by_label.get(source)
    if source_workload is None:
        return None, f"source {source} is not in the inventory"
    name, port_text = target.removesuffix("@ipv6").rpartition(":")[::2]
    protocol, number = port_text.partition("/")[::2]
    if not number.isdigit():
        return None, f"target {target} does not end in PROTOCOL/PORT"
    kind, key = name.partition(":")[::2]
    via = {"svc": "cluster_ip", "nodeport": "node_port"}.get(kind, "direct")
    lookup = f"svc:{key}" if kind in ("svc", "nodeport") else name
    destination = classifier.by_label.get(lookup)
    if destination is None:
        return None, f"target {name} is not in the inventory"
    return Flow(source_workload.host, destination.host, protocol, int(number), via), ""


def conformance(classifier: Classifier, cells: Sequence[Mapping[str, Any]], column_order: Sequence[str] = ()) -> dict[str, Any]:
    """Measured cells (``{source, target, result}``, result ``.``/``X``/``~``/``?``) beside the policy.

    The policy's answer is ``~`` where the oracle finds a service partly connected (some of
    its paths connect, others are refused), so a probe that measures ``~`` there agrees.

    Every difference carries the origins that decided it and the reason, so a reader can
    see which rule (or which missing rule) explains it.
    """
    rows: list[str] = []
    columns = list(column_order)
    out: list[dict[str, Any]] = []
    for cell in cells:
        source, target, measured = str(cell.get("source")), str(cell.get("target")), str(cell.get("result", "?"))
        if source not in rows:
            rows.append(source)
        if target not in columns:
            columns.append(target)
        flow, problem = probe_flow(classifier, source, target)
        if flow is None:
            expected, decided, reason = "?", [], problem
        else:
            try:
                verdict = classifier.reachability.check(flow)
                answer = MEASURED_PARTIAL if verdict.partial else MEASURED_BLOCKED
                expected, decided, reason = (
                    (MEASURED_CONNECTED if verdict.allowed else answer),
                    list(verdict.decided_by),
                    verdict.reason,
                )
            except ZeroTrustPolicyError as error:
                expected, decided, reason = "?", [], str(error)
        agree = measured == expected if "?" not in (measured, expected) else None
        out.append(
            {
                "source": source,
                "target": target,
                "measured": measured,
                "expected": expected,
                "agree": agree,
                "decided_by": decided,
                "reason": reason,
            }
        )
    differences = [cell for cell in out if cell["agree"] is False]
    return {
        "rows": rows,
        "columns": columns,
        "cells": out,
        "differences": len(differences),
        "measured": any(cell["measured"] != "?" for cell in out),
    }


def policy_matrix(classifier: Classifier, limit: int) -> dict[str, Any]:
    """The truth table the policy implies when nothing was measured (pods and VMs as
    sources; pod ports, ClusterIPs from pods and NodePorts as targets), at most ``limit``
    sources and targets."""
    pods = [workload for workload in classifier.workloads if workload.kind == "pod"]
    vms = [workload for workload in classifier.workloads if workload.kind == "vm"]
    services = [workload for workload in classifier.workloads if workload.kind == "service"]
    sources = [workload_label(workload) for workload in pods + vms]
    targets: list[str] = []
    for pod in pods:
        for container in pod.ports:
            targets.append(f"{workload_label(pod)}:{container.protocol}/{container.port}")
    for service in services:
        for port in service.service_ports:
            targets.append(f"svc:{service.key}:{port.protocol}/{port.port}")
    for service in services:
        for port in service.service_ports:
            if port.node_port is not None and service.has_node_ports:
                targets.append(f"nodeport:{service.key}:{port.protocol}/{port.port}")
    truncated = len(sources) > limit or len(targets) > limit
    cells = []
    for source in sources[:limit]:
        for target in targets[:limit]:
            if target.startswith(source + ":") or (target.startswith("svc:") and not source.startswith("pod:")):
                continue
            cells.append({"source": source, "target": target, "result": "?"})
    table = conformance(classifier, cells, targets[:limit])
    table["truncated"] = truncated
    return table

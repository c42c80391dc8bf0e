# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Partial services: a consumer allowed to a Service while some of its endpoints refuse it.

kube-proxy spreads connections to a ClusterIP or a NodePort over every endpoint. When a
policy allows a consumer to a Service but an endpoint's own ingress refuses that consumer (an
absolute deny on a quarantined pod still matching the selector, a default deny ranked first,
an endpoint the policy's provider filter leaves out under a deny catch-all), that share of the
connections fails and the rest succeed: intermittent failures nobody asked for.

:func:`partial_service_findings` asks the reachability oracle (the policy's semantics, not the
compiled rules) for each allowed consumer x service x port x way in, and reports once per
consumer x service with a stable code, the refusing endpoints, the deciding policies, the
share of connections that fail and the fix. Pure: no Ansible imports.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any, Optional, Union

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import Compiler
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.index import peer_addresses
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import PolicyRule
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import (
    KUBE_PROXY_LOCAL,
    Flow,
    Reachability,
    ServicePath,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.services import ServicePort, match_service_ports
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import Workload

PARTIAL_SERVICE = "partial_service"
"""The warning code of a partly reachable service (docs/semantics.md, "Partial services")."""
ANALYSIS_LIMIT = "partial_service_analysis_limited"
"""The warning code when the analysis stopped at :data:`MAX_PATHS`."""
MAX_PATHS = 200_000
"""Paths (entry node x endpoint) the oracle evaluates at most per compile, a few seconds' work; the
screen leaves only the flows an earlier deny can touch, so real policies stay far below it."""
VIA_TEXT = {"cluster_ip": "ClusterIP", "node_port": "NodePort"}


@dataclasses.dataclass(frozen=True)
class Finding:
    """A coded compiler warning: ``text`` for people, ``data`` for the role and the audit."""

    code: str
    text: str
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "text", ...data}``: the plan's ``findings`` entry."""
        return {"code": self.code, "text": self.text, **self.data}


@dataclasses.dataclass
class _Partial:
    """What is known so far about one consumer x service."""

    consumer: str
    service: Workload
    allowed_by: dict[str, None] = dataclasses.field(default_factory=dict)
    ways: dict[str, None] = dataclasses.field(default_factory=dict)
    refusing: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    share: float = 0.0
    failing: int = 0
    paths: int = 0


def _consumer_sources(reachability: Reachability, filter_name: str) -> list[tuple[str, str, bool]]:
    """(label, flow source, inside the cluster) for each consumer of a filter; a network stands for itself by one address."""
    found = []
    covered: set[str] = set()
    for consumer in reachability.matched(filter_name):
        covered.update(consumer.addresses)
        if consumer.kind in ("pod", "node") and consumer.addresses:
            found.append((f"{consumer.kind} {consumer.key}", consumer.host, True))
        elif consumer.kind == "vm" and consumer.addresses:
            found.append((f"vm {consumer.host}", consumer.host, False))
    for network in reachability.networks(filter_name):
        parsed = ipaddress.ip_network(network, strict=False)
        address = str(parsed.network_address if parsed.num_addresses <= 2 else next(parsed.hosts()))
        if address not in covered:  # ``address = <a VM's address>`` names that VM, already asked about
            found.append((f"network {network}", address, False))
    return found


class _Screen:
    """Which questions can have a partial answer at all, cheaply, before the oracle is asked.

    An allow policy R admits its consumers at every endpoint of its Service unless a deny policy
    ordered before R (absolute, or a default deny) covers that endpoint pod and the address the
    endpoint sees: implicit allowances only ever admit, and R's own rule is placed at every endpoint.
    So only consumers whose seen address is in such an earlier deny's consumers need the oracle;
    with ``externalTrafficPolicy: Cluster`` the endpoint sees node addresses for a NodePort.
    """

    def __init__(self, reachability: Reachability) -> None:
        self.reachability = reachability
        self.rules = reachability.policy.ordered_rules()
        self._providers: dict[str, set[str]] = {}

    def provider_pods(self, rule: PolicyRule) -> set[str]:
        """The hosts of the pods a rule's provider covers: matched pods and the endpoint pods of matched services."""
        found = self._providers.get(rule.label)
        if found is None:
            found = set()
            for provider in self.reachability.matched(rule.provider):
                if provider.kind == "service":
                    found.update(pod.host for pod in _endpoint_pods(self.reachability, provider))
                else:
                    found.add(provider.host)
            self._providers[rule.label] = found
        return found

    def denies(self, rule: PolicyRule, service: Workload) -> list[PolicyRule]:
        """The deny policies ordered before ``rule`` that cover an endpoint pod of ``service``."""
        pods = {pod.host for pod in _endpoint_pods(self.reachability, service)}
        return [
            deny for deny in self.rules if deny.order < rule.order and deny.action == "deny" and pods & self.provider_pods(deny)
        ]

    def may_refuse(self, denies: list[PolicyRule], source: str, service: Workload, via: str) -> bool:
        """Could one of ``denies`` see this consumer (or, masqueraded, a node) at an endpoint?"""
        masqueraded = via == "node_port" and not service.local_traffic
        index = self.reachability.index
        if masqueraded:
            seen = [address for node in index.cluster_nodes(service.cluster) for address in peer_addresses(node)]
        else:
            workload = index.by_host.get(source)
            seen = list(peer_addresses(workload)) if workload is not None else [source]
        return any(address in self.reachability.consumer_addresses(deny, "all") for deny in denies for address in seen)


def _endpoint_pods(reachability: Reachability, service: Workload) -> list[Workload]:
    return reachability.index.endpoint_pods(service)


def _questions(reachability: Reachability) -> list[tuple[str, str, Workload, Flow]]:
    """(allowing origin, consumer label, service, flow) for every flow that may be partial."""
    screen = _Screen(reachability)
    questions = []
    for rule in screen.rules:
        if rule.action != "allow":
            continue
        for service in reachability.matched(rule.provider):
            if service.kind != "service" or len(service.endpoints) < 2:
                continue
            denies = screen.denies(rule, service)
            if not denies:
                continue
            consumers = _consumer_sources(reachability, rule.consumer)
            for spec in rule.ports:
                ports = [] if spec.protocol == "icmp" else match_service_ports(service, spec)
                for port in ports:
                    for label, source, inside in consumers:
                        via = "cluster_ip" if inside else "node_port"
                        if via == "node_port" and (port.node_port is None or not service.has_node_ports):
                            continue
                        if (via == "cluster_ip" and not service.addresses) or not screen.may_refuse(denies, source, service, via):
                            continue
                        questions.append((rule.origin(spec), label, service, Flow(source, service.host, port.protocol, port.port, via)))
    return questions + _pod_provider_questions(reachability, screen)


def _pod_provider_questions(reachability: Reachability, screen: _Screen) -> list[tuple[str, str, Workload, Flow]]:
    """The flows where an allow policy whose provider names pods admits a consumer at some endpoints of a Service only.

    Such a policy places its rule at the pods it names, not at the Service's other endpoints, where the
    catch-all (or an earlier deny) decides. The consumer reaches the Service when nothing on its way
    refuses the Service's address (a consumer outside the scope; for a Local NodePort, nodes outside it
    too); the oracle answers whether it does. Only the Services of the policy's pods are looked at, and
    of those only the ones it covers in part or where an earlier deny covers an endpoint.
    """
    questions = []
    services_of = _services_of_pods(reachability)
    for rule in screen.rules:
        if rule.action != "allow":
            continue
        pods = {workload.host for workload in reachability.matched(rule.provider) if workload.kind == "pod"}
        services = {service.host: service for pod in pods for service in services_of.get(pod, ())}
        consumers = _consumer_sources(reachability, rule.consumer) if services else []
        for service in services.values():
            endpoints = _endpoint_pods(reachability, service)
            covered = [pod for pod in endpoints if pod.host in pods]
            uncovered = [pod for pod in endpoints if pod.host not in pods and pod.host in reachability.index.enforced]
            if not covered or not (uncovered or screen.denies(rule, service)):
                continue
            for label, source, inside in consumers:
                for port in service.service_ports:
                    origin = _covering_origin(reachability, rule, service, port, covered)
                    via = _way_in(service, port, inside)
                    if origin is None or via is None:
                        continue
                    questions.append((origin, label, service, Flow(source, service.host, port.protocol, port.port, via)))
    return questions


def _services_of_pods(reachability: Reachability) -> dict[str, list[Workload]]:
    """Each endpoint pod's Services with more than one endpoint, so a policy looks only at the Services of its own pods."""
    services_of: dict[str, list[Workload]] = {}
    for found in reachability.index.services_by_cluster.values():
        for service in found:
            if len(service.endpoints) > 1:
                for pod in _endpoint_pods(reachability, service):
                    services_of.setdefault(pod.host, []).append(service)
    return services_of


def _way_in(service: Workload, port: ServicePort, inside: bool) -> Optional[str]:
    """How a consumer reaches a Service whose endpoints a pod rule can tell apart: the ClusterIP from inside, a Local NodePort from outside.

    Through a NodePort with ``Cluster`` the endpoints see a node's address, which a rule for pods never admits.
    """
    if inside:
        return "cluster_ip" if service.addresses else None
    return "node_port" if service.local_traffic and service.has_node_ports and port.node_port is not None else None


def _covering_origin(
    reachability: Reachability, rule: PolicyRule, service: Workload, port: ServicePort, covered: list[Workload]
) -> Optional[str]:
    """The origin of the rule's port entry that admits ``port``'s target port at one of the ``covered`` endpoints, else None."""
    for spec in rule.ports:
        if spec.protocol not in ("any", port.protocol):
            continue
        for pod in covered:
            target = reachability._target(service, port, pod)  # the oracle's own target-port resolution
            if target is not None and reachability._direct_port(spec, pod, port.protocol, target):
                return rule.origin(spec)
    return None


def _oracle(source: Union[Compiler, Reachability]) -> Reachability:
    """The oracle of a compile run (on the compiler's own index) or the given one."""
    if isinstance(source, Reachability):
        return source
    return Reachability(source.policy, source.workloads, source.options, index=source.index)


def partial_service_findings(source: Union[Compiler, Reachability]) -> list[Finding]:
    """Every consumer x service the policy allows while some endpoints refuse (code ``partial_service``).

    ``source`` is a compile run or an oracle (the audit's); the analysis-limit warning goes to its ``warn``.
    """
    reachability = _oracle(source)
    partials: dict[tuple[str, str], _Partial] = {}
    questions = _questions(reachability)
    budget = MAX_PATHS
    for checked, (allowed_by, label, service, flow) in enumerate(questions):
        nodes = len(reachability.index.cluster_nodes(service.cluster)) if flow.via == "node_port" else 1
        budget -= nodes * len(service.endpoints)
        if budget < 0:
            source.warn(
                f"{ANALYSIS_LIMIT}: the partial-service analysis stopped after {checked} of {len(questions)} flows "
                f"({MAX_PATHS} paths); the others were not checked",
                ANALYSIS_LIMIT,
            )
            break
        verdict = reachability.check(flow)
        failing = [path for path in verdict.paths if not path.allowed and path.decided_by != KUBE_PROXY_LOCAL]
        if not verdict.partial or not failing:
            continue
        entry = partials.setdefault((label, service.host), _Partial(label, service))
        entry.allowed_by[allowed_by] = None
        entry.ways[f"{flow.protocol}/{flow.port} via {VIA_TEXT[flow.via]}"] = None
        _note_refusing(entry, failing)
        share = len(failing) / len(verdict.paths)
        if share > entry.share:
            entry.share, entry.failing, entry.paths = share, len(failing), len(verdict.paths)
    return _findings(partials)


def _note_refusing(entry: _Partial, failing: list[ServicePath]) -> None:
    for path in failing:
        found = entry.refusing.setdefault(path.endpoint, {"endpoint": path.endpoint, "address": path.address, "decided_by": []})
        if path.decided_by and path.decided_by not in found["decided_by"]:
            found["decided_by"].append(path.decided_by)
        if path.node is not None:
            found.setdefault("entry_nodes", [])
            if path.node not in found["entry_nodes"]:
                found["entry_nodes"].append(path.node)


def _findings(partials: Mapping[tuple[str, str], _Partial]) -> list[Finding]:
    findings = []
    for (_unused_consumer, _unused_service), entry in sorted(partials.items()):
        service = entry.service
        refusing = sorted(entry.refusing.values(), key=lambda item: str(item["endpoint"]))
        names = ", ".join(str(item["endpoint"]) for item in refusing)
        decided = list(dict.fromkeys(origin for item in refusing for origin in item["decided_by"]))
        percent = round(entry.share * 100)
        fix = (
            f"take {names} out of service {service.key}'s selector (change its labels) so it stops receiving traffic, "
            f"or narrow the policy so that {entry.consumer} is no longer allowed to service {service.key}"
        )
        text = (
            f"{PARTIAL_SERVICE}: service {service.key} is only partly reachable for {entry.consumer} "
            f"({', '.join(entry.ways)}; allowed by {', '.join(entry.allowed_by)}): endpoint{'s' if len(refusing) > 1 else ''} "
            f"{names} refuse{'' if len(refusing) > 1 else 's'} it ({', '.join(decided) or 'not enforced'}), so about {percent}% of its "
            f"connections fail ({entry.failing} of {entry.paths} paths). Fix: {fix}."
        )
        data: dict[str, Any] = {
            "service": service.key,
            "service_host": service.host,
            "consumer": entry.consumer,
            "ways": list(entry.ways),
            "allowed_by": list(entry.allowed_by),
            "refusing": refusing,
            "decided_by": decided,
            "failing_share": round(entry.share, 3),
            "failing_paths": entry.failing,
            "paths": entry.paths,
            "fix": fix,
        }
        findings.append(Finding(PARTIAL_SERVICE, text, data))
    return findings


def findings_of(source: object) -> list[dict[str, Any]]:
    """The coded findings of a compile run (a Compiler) or of an oracle (a Reachability, the audit's),
    as the plan carries them; their texts join the source's warnings.

    Takes ``object``: the compiler module imports this one lazily, and a type checker may know that
    module under two names.
    """
    if not isinstance(source, (Compiler, Reachability)):
        raise TypeError(f"findings_of needs a Compiler or a Reachability, got {type(source).__name__}")
    findings = partial_service_findings(source)
    for finding in findings:
        source.warn(finding.text, finding.code, **finding.data)
    return [finding.to_dict() for finding in findings]


__all__ = ["ANALYSIS_LIMIT", "MAX_PATHS", "PARTIAL_SERVICE", "Finding", "findings_of", "partial_service_findings"]

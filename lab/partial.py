# SPDX-License-Identifier: GPL-3.0-or-later
"""Measuring Services that are only partly reachable (pure; no I/O).

kube-proxy picks an endpoint at random for every new connection, so one attempt per node
says little about a Service with several endpoints: a cell where one endpoint refuses would
flip between connected and blocked from run to run. A Service cell is therefore tried, per
node, until every endpoint it can reach has answered or ``ATTEMPTS_PER_ENDPOINT`` times its
endpoints; the listeners echo the address the connection arrived at (the endpoint's own, after
kube-proxy's DNAT), which names the endpoint that answered.

Which endpoints a destination can reach follows kube-proxy: through a NodePort with
``externalTrafficPolicy: Local`` traffic from outside the pod network goes only to the entry
node's endpoints (nodes without one drop it, so they are measured and shown but not counted),
while pod traffic goes to every endpoint without SNAT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lab.probes import ATTEMPTS_PER_ENDPOINT, Destination, Probe
from lab.scenario import Scenario, Service


def probe_service(scenario: Scenario, probe: Probe) -> Service | None:
    """The Service a ``svc:`` or ``nodeport:`` probe targets, else None."""
    kind, _, rest = probe.target.partition(":")
    if kind not in ("svc", "nodeport"):
        return None
    key = rest.rpartition(":")[0]
    return next((service for service in scenario.services if service.key == key), None)


def endpoint_names(scenario: Scenario, service: Service) -> dict[str, str]:
    """Endpoint address -> how the detail names it (``pod:NS/NAME`` or the address of a static endpoint)."""
    names = {str(endpoint.address): str(endpoint.address) for endpoint in service.static_endpoints}
    for pod in scenario.service_endpoints(service):
        names[str(pod.ip)] = f"pod:{pod.key}"
        if pod.ipv6 is not None:
            names[str(pod.ipv6)] = f"pod:{pod.key}"
    return names


def reachable_endpoints(scenario: Scenario, probe: Probe, destination: Destination) -> list[str]:
    """The endpoint addresses (IPv4) a probe can reach through one destination, as kube-proxy sends it."""
    service = probe_service(scenario, probe)
    if service is None:
        return []
    pods = scenario.service_endpoints(service)
    from_pod = probe.source.startswith("pod:")
    if probe.target.startswith("nodeport:") and service.external_traffic_policy == "Local" and not from_pod:
        pods = [pod for pod in pods if pod.node == destination.node]
    return [str(pod.ip) for pod in pods] + [str(endpoint.address) for endpoint in service.static_endpoints]


def attempts_for(endpoints: Sequence[str]) -> int:
    """How many times a destination is tried at most: once for one endpoint, else ``ATTEMPTS_PER_ENDPOINT`` per endpoint."""
    return ATTEMPTS_PER_ENDPOINT * len(endpoints) if len(endpoints) > 1 else 1


def counted(probe: Probe) -> list[Destination]:
    """The destinations whose outcome makes the cell.

    A node without a local endpoint of a Local NodePort drops traffic from outside the pod network
    whatever the policy: measured and shown, not counted. Pods reach every endpoint from every node.
    """
    if probe.source.startswith("pod:"):
        return list(probe.destinations)
    return [destination for destination in probe.destinations if destination.serves] or list(probe.destinations)


def tries_detail(outcome: Mapping[str, Any], expected: Sequence[str], names: Mapping[str, str]) -> dict[str, Any]:
    """Per-endpoint detail of a repeated destination: attempts, how many connected, who answered, who never did."""
    tries: list[Mapping[str, Any]] = list(outcome.get("tries") or [outcome])
    answered: dict[str, int] = {}
    for attempt in tries:
        if attempt.get("ok") and attempt.get("served_by"):
            name = names.get(str(attempt["served_by"]), str(attempt["served_by"]))
            answered[name] = answered.get(name, 0) + 1
    silent = sorted({names.get(address, address) for address in expected} - set(answered))
    return {
        "attempts": len(tries),
        "connected_attempts": sum(1 for attempt in tries if attempt.get("ok")),
        "answered_by": dict(sorted(answered.items())),
        **({"never_answered": silent} if silent else {}),
    }


def attempt_oks(outcome: Mapping[str, Any]) -> list[bool]:
    """Every attempt's outcome of a destination (one for a single attempt)."""
    tries = outcome.get("tries")
    if isinstance(tries, list) and tries:
        return [bool(attempt.get("ok")) for attempt in tries]
    return [bool(outcome.get("ok"))]

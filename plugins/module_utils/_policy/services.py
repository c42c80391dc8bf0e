# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Service resolution: ports by number or name, target ports per endpoint, NodePorts.

A Service is a logical provider. Its ports (:class:`ServicePort`: ``port``, ``target_port``
a number or a name resolved per endpoint, ``node_port``, the protocol) and its endpoints
(:class:`Endpoint`, from EndpointSlices, whose ports are already resolved and named after
the service port) are parsed once into the :class:`Workload` (workloads.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Union

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ServiceError, WorkloadError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import PortSpec
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import (
    Endpoint,
    ServicePort,
    Workload,
    service_ports_of,
)


def match_service_ports(workload: Workload, spec: PortSpec) -> list[ServicePort]:
    """The service ports a policy port spec selects (number = service port, name = port name)."""
    result = []
    for port in workload.service_ports:
        if spec.protocol == "any":
            result.append(port)
        elif spec.protocol != port.protocol:
            continue
        elif spec.name is not None:
            if port.name == spec.name:
                result.append(port)
        elif spec.covers(port.protocol, port.port):
            result.append(port)
    return result


def resolve_target_port(port: ServicePort, endpoint: Optional[Endpoint], pod: Optional[Workload]) -> Optional[int]:
    """The port number an endpoint listens on for a service port, or None if unknown.

    EndpointSlice ports are named after the service port and carry the resolved number,
    so they come first; a pod's container ports answer a named targetPort otherwise.
    """
    if isinstance(port.target_port, int):
        return port.target_port
    if endpoint is not None:
        for candidate in endpoint.ports:
            if candidate.name == port.name and candidate.protocol == port.protocol:
                return candidate.port
    if pod is not None:
        return container_port(pod, port.target_port, port.protocol)
    return None


def container_port(pod: Workload, name: str, protocol: str) -> Optional[int]:
    """A pod's container port by name and protocol."""
    for candidate in pod.ports:
        if candidate.name == name and candidate.protocol == protocol:
            return candidate.port
    return None


def node_port(record: Mapping[str, Any], port: Union[int, str], protocol: Optional[str] = None) -> int:
    """The NodePort of a service port given by number or name; ServiceError if there is none.

    ``record`` is a service's ``workload`` hostvar (or its whole hostvars).
    """
    if isinstance(record, Mapping) and "workload" in record and "kind" not in record:
        record = record["workload"]
    if not isinstance(record, Mapping) or record.get("kind") != "service":
        got = f"kind {record.get('kind')!r}" if isinstance(record, Mapping) else type_phrase(record)
        raise ServiceError(f"nodeport needs a service's hostvars (workload.kind service), got {got}")
    label = f"service {record.get('namespace')}/{record.get('name')}"
    try:
        every = service_ports_of(record, f"{label}: ports")
    except WorkloadError as error:
        raise ServiceError(str(error)) from error
    wanted_protocol = protocol.lower() if protocol else None
    ports = [candidate for candidate in every if wanted_protocol in (None, candidate.protocol)]
    text = str(port).strip()
    if text.isdigit():
        matches = [candidate for candidate in ports if candidate.port == int(text)]
    else:
        matches = [candidate for candidate in ports if candidate.name == text]
    if not matches:
        known = ", ".join(f"{candidate.name or '-'} {candidate.port}/{candidate.protocol}" for candidate in every) or "none"
        raise ServiceError(f"{label} has no port {text!r}{f' ({wanted_protocol})' if wanted_protocol else ''}; its ports: {known}")
    if len({candidate.node_port for candidate in matches}) > 1:
        raise ServiceError(f"{label} port {text!r} exists for several protocols with different NodePorts; pass protocol='tcp' or 'udp'")
    found = matches[0].node_port
    if found is None:
        raise ServiceError(
            f"{label} port {text!r} has no NodePort (service type {record.get('type') or 'ClusterIP'!r}); "
            "only NodePort and LoadBalancer services are reachable from outside the cluster through the nodes"
        )
    return found


__all__ = ["Endpoint", "ServicePort", "container_port", "match_service_ports", "node_port", "resolve_target_port"]

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Workload records: every host the policy can talk about, whatever its source.

Kubernetes hosts carry a ``workload`` hostvar (docs/contracts.md section 1). Any other
host is a ``vm`` whose record is derived here from ``zt_addresses`` or ``ansible_host``
(an IP literal only: a DNS name cannot be put in a firewall rule safely, so such a host
is reported in the warnings and left out), ``zt_labels`` and ``group_names``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
from collections.abc import Mapping
from typing import Any, Optional, Union

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import brief, type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy import vulns
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import WorkloadError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.vulns import Vulnerabilities

KINDS = ("pod", "service", "node", "vm")
NODEPORT_TYPES = ("NodePort", "LoadBalancer")
"""Service types that open a NodePort on every node."""
_NO_SELECTOR: Mapping[str, str] = types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class NamedPort:
    """A pod's container port, or an endpoint's resolved port (named after its service port); protocol in lower case."""

    name: Optional[str]
    port: int
    protocol: str


@dataclasses.dataclass(frozen=True)
class ServicePort:
    """One port of a service, protocol in lower case; ``target_port`` a number or a container port's name."""

    name: Optional[str]
    port: int
    target_port: Union[int, str]
    node_port: Optional[int]
    protocol: str


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One endpoint address group of a service (from its EndpointSlices): ``pod`` is ``namespace/name`` or None."""

    addresses: tuple[str, ...]
    node: Optional[str]
    pod: Optional[str]
    ready: bool
    ports: tuple[NamedPort, ...]


@dataclasses.dataclass(frozen=True)
class Workload:
    """One workload, normalised: canonical addresses, sorted tuples, typed ports and endpoints.

    The record is parsed once, here; nothing downstream reads the raw ``workload`` hostvar.
    ``hostvars`` stays for what only the inventory knows (``var.<path>`` queries, ``zt_netns``).
    """

    host: str
    kind: str
    name: str
    addresses: tuple[str, ...]
    namespace: Optional[str] = None
    cluster: Optional[str] = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    groups: tuple[str, ...] = ()
    node: Optional[str] = None
    enforce_host: Optional[str] = None
    uid: Optional[str] = None
    container_ids: tuple[str, ...] = ()
    ports: tuple[NamedPort, ...] = ()
    """Container ports (pods; named ports resolve here). A service's ports are :attr:`service_ports`."""
    pod_cidrs: tuple[str, ...] = ()
    tunnel_addresses: tuple[str, ...] = ()
    vulnerabilities: Optional[Vulnerabilities] = None
    phase: Optional[str] = None
    host_network: bool = False
    service_type: Optional[str] = None
    """Services: ``ClusterIP`` (when the record has none), ``NodePort``, ``LoadBalancer``, ``ExternalName``."""
    cluster_ips: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    load_balancer_ingress: tuple[str, ...] = ()
    external_traffic_policy: str = "Cluster"
    health_check_node_port: Optional[int] = None
    selector: Mapping[str, str] = _NO_SELECTOR
    service_ports: tuple[ServicePort, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    hostvars: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> str:
        """``namespace/name`` for namespaced objects, else the name."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def has_node_ports(self) -> bool:
        """A service whose type opens its ports' NodePorts on every node."""
        return self.service_type in NODEPORT_TYPES

    @property
    def local_traffic(self) -> bool:
        """A service with ``externalTrafficPolicy: Local`` (the client's address survives, local endpoints only)."""
        return self.external_traffic_policy == "Local"

    def health_check_port(self) -> Optional[int]:
        """A LoadBalancer's ``healthCheckNodePort`` when its traffic policy is Local, else None."""
        if self.service_type != "LoadBalancer" or not self.local_traffic:
            return None
        return self.health_check_node_port

    def endpoint_addresses(self) -> tuple[str, ...]:
        """Every address of a service's endpoints, in record order."""
        return tuple(address for endpoint in self.endpoints for address in endpoint.addresses)

    def gateways(self) -> tuple[str, ...]:
        """Nodes: the first address of each pod CIDR, the source pods see for traffic from their node."""
        result = []
        for cidr in self.pod_cidrs:
            network = ipaddress.ip_network(cidr, strict=False)
            result.append(str(network.network_address + 1))
        return tuple(result)


def canonical_address(text: Any) -> str:
    """An address in canonical text (``::ffff`` forms and spaces normalised)."""
    return str(ipaddress.ip_address(str(text).strip()))


def is_ip_literal(text: Any) -> bool:
    """True for ``10.0.0.1`` or ``2001:db8::1``, false for names."""
    try:
        ipaddress.ip_address(str(text).strip())
    except ValueError:
        return False
    return True


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WorkloadError(f"{where} must be a mapping, got {type_phrase(value)}")
    return {str(key): "" if item is None else str(item) for key, item in value.items()}


def _addresses(value: Any, where: str) -> tuple[str, ...]:
    """Canonical, unique, sorted (IPv4 first, then by value)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    try:
        parsed = {ipaddress.ip_address(str(item).strip()) for item in value}
    except ValueError as error:
        raise WorkloadError(f"{where} holds something that is not an IP address: {error}") from error
    return tuple(str(address) for address in sorted(parsed, key=lambda address: (address.version, int(address))))


def _networks(value: Any, where: str) -> tuple[str, ...]:
    try:
        return tuple(str(ipaddress.ip_network(str(item), strict=False)) for item in (value or ()))
    except ValueError as error:
        raise WorkloadError(f"{where} holds something that is not a CIDR: {error}") from error


def _shown(value: Any) -> str:
    """A bounded quote of an offending value: text in quotes, anything else as written."""
    return repr(brief(value)) if isinstance(value, str) else brief(value)


def _port_number(value: Any, where: str) -> int:
    """A port number from an integer or its digits; WorkloadError naming ``where`` otherwise."""
    number: Optional[int] = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 0 < number < 65536:
        raise WorkloadError(f"{where} must be a port number (1-65535), got {_shown(value)}")
    return number


def _optional_port(value: Any, where: str) -> Optional[int]:
    return None if value is None or value == "" else _port_number(value, where)


_PROTOCOLS = {None: "tcp", "": "tcp", "TCP": "tcp", "UDP": "udp", "SCTP": "sctp", "tcp": "tcp", "udp": "udp", "sctp": "sctp"}
"""Protocols as Kubernetes writes them (and absent: TCP), to lower case without further checks."""


def _protocol(value: Any, where: str) -> str:
    """``TCP`` / ``udp`` / absent (TCP, as Kubernetes defaults it) -> lower case."""
    if value is None or value == "":
        return "tcp"
    if not isinstance(value, str) or not value.strip().isalpha():
        raise WorkloadError(f"{where} must be a protocol name such as TCP, got {_shown(value)}")
    return value.strip().lower()


def _name(value: Any) -> Optional[str]:
    return None if value is None or value == "" else str(value)


def _optional_text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _list_of_mappings(value: Any, where: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, Mapping) for item in value):
        raise WorkloadError(f"{where} must be a list of mappings")
    return tuple(value)


_NAMED_PORTS: dict[tuple[Optional[str], int, str], NamedPort] = {}
"""One NamedPort per name, number and protocol: every replica of a Deployment declares the same ports."""


def _named_ports(value: Any, where: str, *, numberless: bool = False) -> tuple[NamedPort, ...]:
    """Container ports or an endpoint's ports; ``numberless``: skip a port without a number (a slice may have one)."""
    result = []
    for index, raw in enumerate(_list_of_mappings(value, where)):
        number = raw.get("port")
        if number is None and numberless:
            continue
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:  # the usual case: no message built
            number = _port_number(number, f"{where}[{index}].port")
        protocol = raw.get("protocol")
        protocol = _PROTOCOLS.get(protocol) if protocol is None or isinstance(protocol, str) else None
        if protocol is None:
            protocol = _protocol(raw.get("protocol"), f"{where}[{index}].protocol")
        name = _name(raw.get("name"))
        key = (name, number, protocol)
        port = _NAMED_PORTS.get(key)
        if port is None:
            port = NamedPort(name, number, protocol)
            if len(_NAMED_PORTS) < 100_000:
                _NAMED_PORTS[key] = port
        result.append(port)
    return tuple(result)


def _service_ports(value: Any, where: str) -> tuple[ServicePort, ...]:
    result = []
    for index, raw in enumerate(_list_of_mappings(value, where)):
        place = f"{where}[{index}]"
        port = _port_number(raw.get("port"), f"{place}.port")
        target: Any = raw.get("target_port")
        if target is None or target == "":
            target = port  # Kubernetes' default: the service port
        elif isinstance(target, str) and not target.strip().isdigit():
            target = target.strip()
        else:
            target = _port_number(target, f"{place}.target_port")
        result.append(
            ServicePort(
                name=_name(raw.get("name")),
                port=port,
                target_port=target,
                node_port=_optional_port(raw.get("node_port"), f"{place}.node_port"),
                protocol=_protocol(raw.get("protocol"), f"{place}.protocol"),
            )
        )
    return tuple(result)


def _address_list(value: Any, where: str, *, skip_names: bool = False) -> tuple[str, ...]:
    """Canonical addresses in the record's order (an endpoint's first one names it).

    ``skip_names``: entries that are not IP addresses are ignored (external IPs and load-balancer
    ingress, where contracts.md lets hostnames through), else they are an error.
    """
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise WorkloadError(f"{where} must be a list of IP addresses, got {type_phrase(value)}")
    try:
        return tuple(dict.fromkeys(canonical_address(item) for item in value if not skip_names or is_ip_literal(item)))
    except ValueError as error:
        raise WorkloadError(f"{where} holds something that is not an IP address: {error}") from error


def _endpoints(value: Any, where: str) -> tuple[Endpoint, ...]:
    result = []
    for index, raw in enumerate(_list_of_mappings(value, where)):
        place = f"{where}[{index}]"
        ready = raw.get("ready", True)
        result.append(
            Endpoint(
                addresses=_address_list(raw.get("addresses"), f"{place}.addresses"),
                node=_name(raw.get("node")),
                pod=_name(raw.get("pod")),
                # Kubernetes reads an absent ready condition as ready.
                ready=True if ready is None else bool(ready),
                ports=_named_ports(raw.get("ports"), f"{place}.ports", numberless=True),
            )
        )
    return tuple(result)


def _service_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The typed service fields of a ``workload`` record (kind ``service``); errors name the field."""
    where = "workload"
    policy = record.get("external_traffic_policy")
    if policy not in (None, "", "Cluster", "Local"):
        raise WorkloadError(f"{where}.external_traffic_policy must be Cluster or Local, got {_shown(policy)}")
    service_type = record.get("type")
    if service_type is not None and not isinstance(service_type, str):
        raise WorkloadError(f"{where}.type must be text such as NodePort, got {type_phrase(service_type)}")
    return {
        "service_type": service_type or "ClusterIP",
        "cluster_ips": _addresses(record.get("cluster_ips"), f"{where}.cluster_ips"),
        "external_ips": _address_list(record.get("external_ips"), f"{where}.external_ips", skip_names=True),
        "load_balancer_ingress": _address_list(record.get("load_balancer_ingress"), f"{where}.load_balancer_ingress", skip_names=True),
        "external_traffic_policy": policy or "Cluster",
        "health_check_node_port": _optional_port(record.get("health_check_node_port"), f"{where}.health_check_node_port"),
        "selector": _str_map(record.get("selector"), f"{where}.selector"),
        "service_ports": _service_ports(record.get("ports"), f"{where}.ports"),
        "endpoints": _endpoints(record.get("endpoints"), f"{where}.endpoints"),
    }


def service_ports_of(record: Mapping[str, Any], where: str) -> tuple[ServicePort, ...]:
    """The typed ports of a raw service record (the ``nodeport`` filter's input); WorkloadError naming ``where``."""
    return _service_ports(record.get("ports"), where)


def workload_from_record(host: str, record: Mapping[str, Any], hostvars: Mapping[str, Any]) -> Workload:
    """Build a workload from a ``workload`` hostvar (contracts.md section 1), parsing every field once.

    Raises WorkloadError naming the host and the field for a malformed record.
    """
    try:
        return _parse_record(host, record, hostvars)
    except WorkloadError as error:
        # The parsers name the field (``workload.ports[0].port``); the host is added once, here.
        raise WorkloadError(f"host {host}: {error}") from None


def _parse_record(host: str, record: Mapping[str, Any], hostvars: Mapping[str, Any]) -> Workload:
    if not isinstance(record, Mapping):
        raise WorkloadError(f"workload must be a mapping, got {type_phrase(record)}")
    kind = record.get("kind")
    if kind not in KINDS:
        raise WorkloadError(f"workload.kind {kind!r} is not one of {', '.join(KINDS)}")
    addresses = record.get("addresses")
    if kind == "service" and not addresses:
        addresses = record.get("cluster_ips")
    service = _service_fields(record) if kind == "service" else {}
    enforce_host = hostvars.get("zt_enforce_host")
    return Workload(
        host=host,
        kind=str(kind),
        name=str(record.get("name") or host),
        addresses=_addresses(addresses, "workload.addresses"),
        namespace=_optional_text(record.get("namespace")),
        cluster=_optional_text(record.get("cluster")),
        labels=_str_map(record.get("labels"), "workload.labels"),
        annotations=_str_map(record.get("annotations"), "workload.annotations"),
        groups=tuple(sorted(str(group) for group in hostvars.get("group_names") or ())),
        node=_optional_text(record.get("node")),
        enforce_host=_optional_text(enforce_host),
        uid=_optional_text(record.get("uid")),
        container_ids=tuple(str(item) for item in record.get("container_ids") or ()),
        ports=() if kind == "service" else _named_ports(record.get("ports"), "workload.ports"),
        pod_cidrs=_networks(record.get("pod_cidrs"), "workload.pod_cidrs"),
        tunnel_addresses=_addresses(record.get("tunnel_addresses"), "workload.tunnel_addresses"),
        vulnerabilities=vulns.from_record(record.get("vulnerabilities"), "workload.vulnerabilities"),
        phase=_optional_text(record.get("phase")),
        host_network=bool(record.get("host_network")),
        hostvars=hostvars,
        **service,
    )


def vm_from_hostvars(host: str, hostvars: Mapping[str, Any]) -> tuple[Optional[Workload], Optional[str]]:
    """A ``vm`` for a host without a ``workload`` hostvar, or ``(None, warning-or-None)``."""
    addresses: Any = hostvars.get("zt_addresses")
    if not addresses:
        candidate = hostvars.get("ansible_host", host if "ansible_host" not in hostvars else None)
        if hostvars.get("ansible_connection") == "local" or candidate in (None, "localhost", "127.0.0.1", "::1"):
            return None, None
        if not is_ip_literal(candidate):
            if "ansible_host" in hostvars:
                return None, (
                    f"host {host} is not a workload: ansible_host {candidate!r} is a name, not an IP address; "
                    "set zt_addresses to its addresses to bring it under policy"
                )
            return None, None
        addresses = [candidate]
    return (
        Workload(
            host=host,
            kind="vm",
            name=host,
            addresses=_addresses(addresses, f"host {host}: zt_addresses"),
            labels=_str_map(hostvars.get("zt_labels"), f"host {host}: zt_labels"),
            groups=tuple(sorted(str(group) for group in hostvars.get("group_names") or ())),
            hostvars=hostvars,
        ),
        None,
    )


SKIP_MALFORMED_VAR = "zt_skip_malformed"
"""Host variable: when true, a malformed record leaves that host out with a warning instead of failing."""


def workloads_from_hostvars(hostvars: Mapping[str, Mapping[str, Any]]) -> tuple[list[Workload], list[str]]:
    """All workloads of an inventory, sorted by inventory hostname, and the warnings.

    A malformed record (``workload``, ``zt_addresses``, ``zt_labels``) is an error naming the
    host and the variable, every such host at once: a host silently left out of the policy
    would lose its allowances and the rules that protect it. A host with ``zt_skip_malformed:
    true`` (for instance a group of hosts from a source the user does not control) is left
    out with a warning instead.
    """
    workloads: list[Workload] = []
    warnings: list[str] = []
    errors: list[str] = []
    for host in sorted(hostvars):
        variables = hostvars[host]
        if not isinstance(variables, Mapping):
            continue
        try:
            # Read once: each read of a host's variable renders it again (Ansible's hostvars template on access).
            record = variables.get("workload")
            if record is not None:
                workloads.append(workload_from_record(str(host), record, variables))
                continue
            workload, warning = vm_from_hostvars(str(host), variables)
        except WorkloadError as error:
            if variables.get(SKIP_MALFORMED_VAR) is True:
                warnings.append(f"{error}; the host is left out of the policy ({SKIP_MALFORMED_VAR})")
            else:
                errors.append(str(error))
            continue
        if warning:
            warnings.append(warning)
        if workload is not None:
            workloads.append(workload)
    if errors:
        raise WorkloadError(
            f"malformed host records: {'; '.join(errors)}; fix them, or set {SKIP_MALFORMED_VAR}: true on a host "
            "to leave it out of the policy with a warning"
        )
    return workloads, warnings

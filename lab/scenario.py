# SPDX-License-Identifier: GPL-3.0-or-later
"""Scenario files: load, validate and model the lab's topology, policy and expectations.

A scenario is YAML with three sections: ``topology`` (cluster, nodes, pods, services, VMs),
``policy`` (the collection's policy format, kept as data: the compiler validates it) and an
optional ``expect`` (``allow``: the probes expected to connect). Every validation error names
the field path and the offending text, e.g. ``topology.pods[0].node: unknown node 'k8s-node9'``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from lab.errors import ScenarioError
from lab.vulns import Finding, parse_findings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Kubernetes object names (DNS-1123 subdomain) and label-safe VM/node names (DNS-1123 label).
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PROTOCOLS = ("TCP", "UDP")
_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
_TRAFFIC_POLICIES = ("Cluster", "Local")
_OVERLAYS = ("vxlan", "routed")
NODE_PORT_RANGE = (30000, 32767)
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
API_PORT = 6443
KUBELET_PORT = 10250
DNS_SERVICE = ("kube-system", "kube-dns")
DNS_POD_NAME = "coredns-7c65d6cfc9-zt5lb"
DEFAULT_UPSTREAM_DNS_NAME = "upstream-dns"

DEFAULT_UNDERLAY = "172.18.221.0/24"
DEFAULT_CONTROLLER = "172.18.221.254"
DEFAULT_UNDERLAY_V6 = "fd00:172:18:221::/64"
DEFAULT_CONTROLLER_V6 = "fd00:172:18:221::254"


@dataclass(frozen=True)
class Port:
    """A listening port of a pod (container port) or a VM."""

    port: int
    protocol: str = "TCP"
    name: str | None = None

    @property
    def label(self) -> str:
        """The probe spelling, e.g. ``tcp/80``."""
        return f"{self.protocol.lower()}/{self.port}"


@dataclass(frozen=True)
class Underlay:
    """The shared L2 segment of nodes, VMs and the controller (the root bridge)."""

    cidr: ipaddress.IPv4Network
    controller: ipaddress.IPv4Address
    cidr_v6: ipaddress.IPv6Network | None
    controller_v6: ipaddress.IPv6Address | None


@dataclass(frozen=True)
class Cluster:
    """The Kubernetes cluster's name, address ranges and control plane.

    ``control_plane``: the API server runs in the control-plane node's namespace with kubelet
    stand-ins, cluster DNS and an upstream resolver (false: the API on loopback, nothing else).
    ``overlay``: ``vxlan`` (flannel-style, udp/8472 between nodes) or ``routed`` (direct routes).
    """

    name: str
    service_cidr: ipaddress.IPv4Network
    cluster_cidr: ipaddress.IPv4Network
    control_plane: bool = False
    overlay: str = "routed"

    @property
    def api_cluster_ip(self) -> ipaddress.IPv4Address:
        """The ``default/kubernetes`` ClusterIP: the first address of the service CIDR, as a real API server allocates it."""
        return self.service_cidr.network_address + 1


@dataclass(frozen=True)
class Node:
    """A Kubernetes node: an underlay address and a pod CIDR it routes to its bridge."""

    name: str
    address: ipaddress.IPv4Address
    pod_cidr: ipaddress.IPv4Network
    ipv6: ipaddress.IPv6Address | None = None
    pod_cidr_v6: ipaddress.IPv6Network | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pod:
    """A pod: its own network namespace behind its node's bridge, with listeners on its ports."""

    name: str
    namespace: str
    node: str
    ip: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[Port, ...] = ()

    @property
    def key(self) -> str:
        """``namespace/name``, unique among pods."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    """A service port; ``target_port`` is a number or a container port name."""

    port: int
    target_port: int | str
    protocol: str = "TCP"
    name: str | None = None
    node_port: int | None = None

    @property
    def label(self) -> str:
        """The probe spelling of the service port, e.g. ``tcp/80``."""
        return f"{self.protocol.lower()}/{self.port}"


@dataclass(frozen=True)
class StaticEndpoint:
    """An endpoint of a selector-less Service: an address (and the node it lives on)."""

    address: ipaddress.IPv4Address
    node: str | None = None


@dataclass(frozen=True)
class Service:
    """A Kubernetes Service, realised by kube-proxy-like nat rules in every node."""

    name: str
    namespace: str
    type: str
    cluster_ip: ipaddress.IPv4Address
    selector: Mapping[str, str]
    ports: tuple[ServicePort, ...]
    external_traffic_policy: str = "Cluster"
    labels: Mapping[str, str] = field(default_factory=dict)
    # Endpoints kept by hand rather than by a selector (``default/kubernetes``: the API server's node).
    static_endpoints: tuple[StaticEndpoint, ...] = ()

    @property
    def key(self) -> str:
        """``namespace/name``, unique among services."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Vm:
    """A VM outside the cluster: a network namespace on the underlay with listeners and sshd."""

    name: str
    address: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A validated scenario."""

    cluster: Cluster
    underlay: Underlay
    nodes: tuple[Node, ...]
    pods: tuple[Pod, ...]
    services: tuple[Service, ...]
    vms: tuple[Vm, ...]
    policy: Mapping[str, Any] | None
    expect_allow: tuple[str, ...] | None
    digest: str
    path: str = ""
    # The resolver cluster DNS forwards to: a lab VM that is not in the Ansible inventory (it
    # stands for the outside resolver a real cluster uses). None without a control plane.
    upstream_dns: Vm | None = None
    # trivy-operator findings the emulated API serves as VulnerabilityReports (lab/vulns.py).
    vulnerabilities: tuple[Finding, ...] = ()

    @property
    def control_plane_node(self) -> Node | None:
        """The node running the API server (labelled control-plane), or None without a control plane."""
        if not self.cluster.control_plane:
            return None
        for node in self.nodes:
            if CONTROL_PLANE_LABEL in node.labels:
                return node
        return self.nodes[0]

    @property
    def api_service(self) -> Service | None:
        """``default/kubernetes``, when the lab has a control plane."""
        return next((s for s in self.services if (s.namespace, s.name) == ("default", "kubernetes")), None)

    @property
    def dns_service(self) -> Service | None:
        """``kube-system/kube-dns``, when the scenario has one (added with the control plane)."""
        return next((s for s in self.services if (s.namespace, s.name) == DNS_SERVICE), None)

    def dns_pods(self) -> list[Pod]:
        """The pods behind ``kube-system/kube-dns`` (they run the lab's DNS server)."""
        service = self.dns_service
        return self.service_endpoints(service) if service is not None else []

    def node(self, name: str) -> Node:
        """The node called ``name`` (validated to exist)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise ScenarioError(f"unknown node {name!r}; known nodes: {', '.join(n.name for n in self.nodes)}")

    def pod(self, key: str) -> Pod:
        """The pod ``namespace/name``."""
        for pod in self.pods:
            if pod.key == key:
                return pod
        raise ScenarioError(f"unknown pod {key!r}; known pods: {', '.join(p.key for p in self.pods)}")

    def service_endpoints(self, service: Service) -> list[Pod]:
        """The pods a service selects (every label of the selector matches), in scenario order."""
        if not service.selector:
            return []
        return [
            pod
            for pod in self.pods
            if pod.namespace == service.namespace and all(pod.labels.get(k) == v for k, v in service.selector.items())
        ]


def static_target_port(service_port: ServicePort) -> int:
    """The port a static endpoint serves (a selector-less Service names its target port by number)."""
    return service_port.target_port if isinstance(service_port.target_port, int) else service_port.port


def resolve_target_port(service_port: ServicePort, pod: Pod) -> int | None:
    """The port number ``service_port`` reaches on ``pod``; None when a named port is missing there."""
    if isinstance(service_port.target_port, int):
        return service_port.target_port
    for port in pod.ports:
        if port.name == service_port.target_port and port.protocol == service_port.protocol:
            return port.port
    return None


# --------------------------------------------------------------------------- parsing helpers


class _Reader:
    """Typed access to one mapping of the YAML document, with errors that name the path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{path}: expected a mapping, got {_show(data)}")
        self.data: dict[str, Any] = data
        self.path = path

    def check_keys(self, allowed: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in allowed:
                raise ScenarioError(f"{self.path}.{key}: unknown field; allowed fields: {', '.join(allowed)}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def field_path(self, key: str) -> str:
        return f"{self.path}.{key}"

    def raw(self, key: str, required: bool = True) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                raise ScenarioError(f"{self.field_path(key)}: required field is missing")
            return None
        return self.data[key]

    def string(self, key: str, pattern: re.Pattern[str] | None = None, required: bool = True) -> str | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ScenarioError(f"{self.field_path(key)}: expected a non-empty string, got {_show(value)}")
        if pattern is not None and not pattern.match(value):
            raise ScenarioError(
                f"{self.field_path(key)}: {value!r} is not a valid name "
                "(lower-case letters, digits and '-', starting and ending alphanumeric)"
            )
        return value

    def required_string(self, key: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.string(key, pattern)
        if value is None:  # string() raises for a missing required field; this narrows the type
            raise ScenarioError(f"{self.field_path(key)}: required field is missing")
        return value

    def required_port(self, key: str) -> int:
        value = self.port_number(key)
        if value is None:
            raise ScenarioError(f"{self.field_path(key)}: required field is missing")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.raw(key, required=False)
        if value is None:
            return default
        if value not in choices:
            raise ScenarioError(f"{self.field_path(key)}: {_show(value)} is not one of {', '.join(choices)}")
        return str(value)

    def network(self, key: str, version: int, required: bool = True) -> Any:
        value = self.raw(key, required)
        if value is None:
            return None
        try:
            network = ipaddress.ip_network(str(value), strict=True)
        except ValueError as exc:
            raise ScenarioError(f"{self.field_path(key)}: {_show(value)} is not a valid CIDR ({exc})") from None
        if network.version != version:
            raise ScenarioError(f"{self.field_path(key)}: {value!r} is not an IPv{version} CIDR")
        return network

    def address(self, key: str, version: int, required: bool = True) -> Any:
        value = self.raw(key, required)
        if value is None:
            return None
        try:
            address = ipaddress.ip_address(str(value))
        except ValueError:
            raise ScenarioError(f"{self.field_path(key)}: {_show(value)} is not a valid IP address") from None
        if address.version != version:
            raise ScenarioError(f"{self.field_path(key)}: {value!r} is not an IPv{version} address")
        return address

    def labels(self, key: str) -> dict[str, str]:
        value = self.raw(key, required=False)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ScenarioError(f"{self.field_path(key)}: expected a mapping of label to value, got {_show(value)}")
        labels: dict[str, str] = {}
        for label_key, label_value in value.items():
            if not isinstance(label_key, str) or not isinstance(label_value, str | int | float | bool):
                raise ScenarioError(f"{self.field_path(key)}.{label_key}: expected a string value, got {_show(label_value)}")
            labels[label_key] = str(label_value).lower() if isinstance(label_value, bool) else str(label_value)
        return labels

    def items(self, key: str) -> list[_Reader]:
        value = self.raw(key, required=False)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ScenarioError(f"{self.field_path(key)}: expected a list, got {_show(value)}")
        return [_Reader(item, f"{self.field_path(key)}[{index}]") for index, item in enumerate(value)]

    def port_number(self, key: str, required: bool = True) -> int | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ScenarioError(f"{self.field_path(key)}: {_show(value)} is not a port number (1-65535)")
        return value


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _ports(reader: _Reader, key: str) -> tuple[Port, ...]:
    ports: list[Port] = []
    seen: set[tuple[int, str]] = set()
    names: set[str] = set()
    for item in reader.items(key):
        item.check_keys(("name", "port", "protocol", "container_port"))
        number = item.required_port("port")
        protocol = item.choice("protocol", _PROTOCOLS, "TCP")
        name = item.string("name", _PORT_NAME, required=False)
        if (number, protocol) in seen:
            raise ScenarioError(f"{item.path}: duplicate port {protocol.lower()}/{number}")
        if name is not None:
            if name in names:
                raise ScenarioError(f"{item.field_path('name')}: duplicate port name {name!r}")
            names.add(name)
        seen.add((number, protocol))
        ports.append(Port(port=number, protocol=protocol, name=name))
    return tuple(ports)


def _service_ports(reader: _Reader, service_type: str) -> tuple[ServicePort, ...]:
    ports: list[ServicePort] = []
    items = reader.items("ports")
    if not items:
        raise ScenarioError(f"{reader.field_path('ports')}: a service needs at least one port")
    for item in items:
        item.check_keys(("name", "port", "target_port", "node_port", "protocol"))
        number = item.required_port("port")
        target_raw = item.raw("target_port", required=False)
        target: int | str
        if target_raw is None:
            target = number
        elif isinstance(target_raw, str):
            if not _PORT_NAME.match(target_raw):
                raise ScenarioError(f"{item.field_path('target_port')}: {target_raw!r} is neither a port number nor a port name")
            target = target_raw
        else:
            target = item.required_port("target_port")
        node_port = item.port_number("node_port", required=False)
        if node_port is not None:
            if service_type == "ClusterIP":
                raise ScenarioError(f"{item.field_path('node_port')}: a ClusterIP service has no node port; use type NodePort")
            if not NODE_PORT_RANGE[0] <= node_port <= NODE_PORT_RANGE[1]:
                raise ScenarioError(f"{item.field_path('node_port')}: {node_port} is outside the NodePort range 30000-32767")
        elif service_type != "ClusterIP":
            raise ScenarioError(f"{item.field_path('node_port')}: required for a {service_type} service in the lab")
        ports.append(
            ServicePort(
                port=number,
                target_port=target,
                protocol=item.choice("protocol", _PROTOCOLS, "TCP"),
                name=item.string("name", _PORT_NAME, required=len(items) > 1),
                node_port=node_port,
            )
        )
    return tuple(ports)


class _Unique:
    """Remembers which field first used a value, to name both in a duplicate error."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.seen: dict[str, str] = {}

    def add(self, value: str, path: str) -> None:
        if value in self.seen:
            raise ScenarioError(f"{path}: duplicate {self.what} {value!r} (already used by {self.seen[value]})")
        self.seen[value] = path


# --------------------------------------------------------------------------- the control plane


def _first_free(network: IPNetwork, offsets: list[int], taken: Mapping[str, str]) -> Any:
    """The first address ``network + offset`` not yet used by the scenario."""
    for offset in offsets:
        if offset >= network.num_addresses - 1:
            continue
        candidate = network.network_address + offset
        if str(candidate) not in taken:
            return candidate
    raise ScenarioError(f"no free address left in {network} for the lab's control plane")


def _add_control_plane_objects(  # noqa: PLR0917 - the lists it extends, in parsing order
    cluster: Cluster,
    nodes: list[Node],
    pods: list[Pod],
    services: list[Service],
    taken: dict[str, str],
    service_keys: Mapping[str, str],
) -> None:
    """Add what a real cluster always has: ``default/kubernetes`` and, unless the scenario has it, cluster DNS.

    ``default/kubernetes`` gets the first address of the service CIDR, port 443 (https) to the
    API server's node on 6443, no selector. Cluster DNS is one CoreDNS-like pod on the
    control-plane node behind ``kube-system/kube-dns`` (udp and tcp 53; ClusterIP the service
    CIDR's .10, or the next free one).
    """
    if "default/kubernetes" in service_keys:
        raise ScenarioError(
            f"{service_keys['default/kubernetes']}: default/kubernetes is the API server's Service, which the lab adds itself "
            "with control_plane: true; remove it from the scenario"
        )
    api_ip = cluster.api_cluster_ip
    if str(api_ip) in taken:
        raise ScenarioError(f"{taken[str(api_ip)]}: {api_ip} is the ClusterIP of default/kubernetes (the service CIDR's first address)")
    control = next((node for node in nodes if CONTROL_PLANE_LABEL in node.labels), nodes[0])
    services.append(
        Service(
            name="kubernetes",
            namespace="default",
            type="ClusterIP",
            cluster_ip=api_ip,
            selector={},
            ports=(ServicePort(port=443, target_port=API_PORT, protocol="TCP", name="https"),),
            labels={"component": "apiserver", "provider": "kubernetes"},
            static_endpoints=(StaticEndpoint(address=control.address, node=control.name),),
        )
    )
    taken[str(api_ip)] = "default/kubernetes"
    if "/".join(DNS_SERVICE) in service_keys:
        return
    dns_labels = {"k8s-app": "kube-dns"}
    pod_ip = _first_free(control.pod_cidr, [53, *range(2, 254)], taken)
    pods.append(
        Pod(
            name=DNS_POD_NAME,
            namespace=DNS_SERVICE[0],
            node=control.name,
            ip=pod_ip,
            labels={**dns_labels, "pod-template-hash": DNS_POD_NAME.split("-")[1]},
            ports=(Port(port=53, protocol="UDP", name="dns"), Port(port=53, protocol="TCP", name="dns-tcp")),
        )
    )
    dns_ip = _first_free(cluster.service_cidr, [10, *range(11, 254)], taken)
    taken[str(dns_ip)] = "/".join(DNS_SERVICE)
    services.append(
        Service(
            name=DNS_SERVICE[1],
            namespace=DNS_SERVICE[0],
            type="ClusterIP",
            cluster_ip=dns_ip,
            selector=dns_labels,
            ports=(
                ServicePort(port=53, target_port="dns", protocol="UDP", name="dns"),
                ServicePort(port=53, target_port="dns-tcp", protocol="TCP", name="dns-tcp"),
            ),
            labels={"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
        )
    )


def _upstream_dns(cluster_reader: _Reader, underlay: Underlay, addresses: _Unique, host_names: _Unique) -> Vm:
    """The upstream resolver VM (``topology.cluster.upstream_dns``, default ``upstream-dns`` at the underlay's .53)."""
    raw = cluster_reader.raw("upstream_dns", required=False)
    if raw is None:
        raw = {"name": DEFAULT_UPSTREAM_DNS_NAME, "address": str(_first_free(underlay.cidr, [53, *range(200, 250)], addresses.seen))}
    reader = _Reader(raw, cluster_reader.field_path("upstream_dns"))
    reader.check_keys(("name", "address"))
    name = reader.required_string("name", _LABEL)
    host_names.add(name, reader.field_path("name"))
    address = reader.address("address", 4)
    if address not in underlay.cidr or address in (underlay.cidr.network_address, underlay.cidr.broadcast_address):
        raise ScenarioError(f"{reader.field_path('address')}: {address} is not a host address of the underlay {underlay.cidr}")
    addresses.add(str(address), reader.field_path("address"))
    return Vm(
        name=name, address=address, labels={"role": "upstream-dns"}, ports=(Port(port=53, protocol="UDP"), Port(port=53, protocol="TCP"))
    )


# --------------------------------------------------------------------------- the scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {file_path}: {exc.strerror}") from None
    try:
        return parse_scenario(text, source=str(file_path))
    except ScenarioError as exc:
        raise ScenarioError(f"scenario {file_path}: {exc}") from None


def parse_scenario(text: str, source: str = "") -> Scenario:
    """Parse and validate scenario YAML text."""
    try:
        # libyaml's safe loader when PyYAML has it: the same documents, ten times faster at thousands of pods.
        document = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader either way
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML: {exc}") from None
    return build_scenario(document, source=source)


def build_scenario(document: Any, source: str = "") -> Scenario:  # noqa: PLR0912, PLR0915 - one linear validation pass
    """Validate a parsed scenario document and build the model."""
    root = _Reader(document, "scenario")
    root.check_keys(("topology", "policy", "expect", "vulnerabilities"))
    topology = _Reader(root.raw("topology"), "topology")
    topology.check_keys(("cluster", "underlay", "nodes", "pods", "services", "vms"))

    cluster_reader = _Reader(topology.raw("cluster"), "topology.cluster")
    cluster_reader.check_keys(("name", "service_cidr", "cluster_cidr", "control_plane", "overlay", "upstream_dns"))
    cluster_name = cluster_reader.required_string("name", _LABEL)
    service_cidr = cluster_reader.network("service_cidr", 4)
    control_plane = cluster_reader.raw("control_plane", required=False)
    if control_plane is None:
        control_plane = True
    if not isinstance(control_plane, bool):
        raise ScenarioError(f"topology.cluster.control_plane: expected true or false, got {_show(control_plane)}")
    overlay = cluster_reader.choice("overlay", _OVERLAYS, "vxlan")

    underlay_raw = topology.raw("underlay", required=False) or {
        "cidr": DEFAULT_UNDERLAY,
        "controller": DEFAULT_CONTROLLER,
        "cidr_ipv6": DEFAULT_UNDERLAY_V6,
        "controller_ipv6": DEFAULT_CONTROLLER_V6,
    }
    underlay_reader = _Reader(underlay_raw, "topology.underlay")
    underlay_reader.check_keys(("cidr", "controller", "cidr_ipv6", "controller_ipv6"))
    underlay = Underlay(
        cidr=underlay_reader.network("cidr", 4),
        controller=underlay_reader.address("controller", 4),
        cidr_v6=underlay_reader.network("cidr_ipv6", 6, required=False),
        controller_v6=underlay_reader.address("controller_ipv6", 6, required=False),
    )
    if underlay.controller not in underlay.cidr:
        raise ScenarioError(f"topology.underlay.controller: {underlay.controller} is outside {underlay.cidr}")
    if (underlay.cidr_v6 is None) != (underlay.controller_v6 is None):
        raise ScenarioError("topology.underlay: give both cidr_ipv6 and controller_ipv6, or neither")
    if underlay.cidr_v6 is not None and underlay.controller_v6 not in underlay.cidr_v6:
        raise ScenarioError(f"topology.underlay.controller_ipv6: {underlay.controller_v6} is outside {underlay.cidr_v6}")

    addresses = _Unique("address")
    addresses.add(str(underlay.controller), "topology.underlay.controller")
    if underlay.controller_v6 is not None:
        addresses.add(str(underlay.controller_v6), "topology.underlay.controller_ipv6")
    host_names = _Unique("node/VM name")  # nodes and VMs share the inventory's host namespace

    def underlay_address(reader: _Reader, key: str, version: int) -> Any:
        value = reader.address(key, version, required=version == 4)
        if value is None:
            return None
        network = underlay.cidr if version == 4 else underlay.cidr_v6
        if network is None:
            raise ScenarioError(f"{reader.field_path(key)}: IPv6 addresses need topology.underlay.cidr_ipv6")
        if value not in network or value in (network.network_address, network.broadcast_address):
            raise ScenarioError(f"{reader.field_path(key)}: {value} is not a host address of the underlay {network}")
        addresses.add(str(value), reader.field_path(key))
        return value

    nodes: list[Node] = []
    pod_cidrs: list[tuple[IPNetwork, str]] = []
    for reader in topology.items("nodes"):
        reader.check_keys(("name", "address", "pod_cidr", "ipv6", "pod_cidr_ipv6", "labels"))
        name = reader.required_string("name", _SUBDOMAIN)
        host_names.add(name, reader.field_path("name"))
        node = Node(
            name=name,
            address=underlay_address(reader, "address", 4),
            pod_cidr=reader.network("pod_cidr", 4),
            ipv6=underlay_address(reader, "ipv6", 6),
            pod_cidr_v6=reader.network("pod_cidr_ipv6", 6, required=False),
            labels=reader.labels("labels"),
        )
        for cidr, key in ((node.pod_cidr, "pod_cidr"), (node.pod_cidr_v6, "pod_cidr_ipv6")):
            if cidr is None:
                continue
            if cidr.num_addresses < 4:
                raise ScenarioError(f"{reader.field_path(key)}: {cidr} is too small for a gateway and pods")
            for other, other_path in pod_cidrs:
                if cidr.overlaps(other):
                    raise ScenarioError(f"{reader.field_path(key)}: {cidr} overlaps {other} ({other_path})")
            pod_cidrs.append((cidr, reader.field_path(key)))
        nodes.append(node)
    if not nodes:
        raise ScenarioError("topology.nodes: the lab needs at least one node")
    if control_plane and not any(CONTROL_PLANE_LABEL in node.labels for node in nodes):
        # As kubeadm labels the node it set up first.
        nodes[0] = replace(nodes[0], labels={**nodes[0].labels, CONTROL_PLANE_LABEL: ""})
    nodes_by_name = {node.name: node for node in nodes}

    cluster_cidr = cluster_reader.network("cluster_cidr", 4, required=False)
    if cluster_cidr is None:
        # kube-proxy's --cluster-cidr: the smallest network holding every node's pod CIDR.
        cluster_cidr = nodes[0].pod_cidr
        while not all(node.pod_cidr.subnet_of(cluster_cidr) for node in nodes):
            cluster_cidr = cluster_cidr.supernet()
    cluster = Cluster(
        name=cluster_name, service_cidr=service_cidr, cluster_cidr=cluster_cidr, control_plane=control_plane, overlay=overlay
    )
    for network, path in ((underlay.cidr, "topology.underlay.cidr"), (service_cidr, "topology.cluster.service_cidr")):
        for other, other_path in pod_cidrs:
            if network.overlaps(other):
                raise ScenarioError(f"{path}: {network} overlaps {other} ({other_path})")
    if underlay.cidr.overlaps(service_cidr):
        raise ScenarioError(f"topology.cluster.service_cidr: {service_cidr} overlaps the underlay {underlay.cidr}")

    pods: list[Pod] = []
    pod_keys = _Unique("pod")
    for reader in topology.items("pods"):
        reader.check_keys(("name", "namespace", "node", "ip", "ipv6", "labels", "ports"))
        name = reader.required_string("name", _SUBDOMAIN)
        namespace = reader.required_string("namespace", _LABEL)
        node_name = reader.required_string("node")
        pod_keys.add(f"{namespace}/{name}", reader.field_path("name"))
        if node_name not in nodes_by_name:
            raise ScenarioError(f"{reader.field_path('node')}: unknown node {node_name!r}; known nodes: {', '.join(nodes_by_name)}")
        node = nodes_by_name[node_name]
        ip = reader.address("ip", 4)
        if ip not in node.pod_cidr or ip in (
            node.pod_cidr.network_address,
            node.pod_cidr.network_address + 1,
            node.pod_cidr.broadcast_address,
        ):
            raise ScenarioError(
                f"{reader.field_path('ip')}: {ip} is not a pod address in {node_name}'s pod CIDR {node.pod_cidr} (.1 is the gateway)"
            )
        addresses.add(str(ip), reader.field_path("ip"))
        ipv6 = reader.address("ipv6", 6, required=False)
        if ipv6 is not None:
            if (
                node.pod_cidr_v6 is None
                or ipv6 not in node.pod_cidr_v6
                or ipv6 in (node.pod_cidr_v6.network_address, node.pod_cidr_v6.network_address + 1)
            ):
                raise ScenarioError(
                    f"{reader.field_path('ipv6')}: {ipv6} is not a pod address in {node_name}'s pod_cidr_ipv6 {node.pod_cidr_v6}"
                )
            addresses.add(str(ipv6), reader.field_path("ipv6"))
        pods.append(
            Pod(
                name=name,
                namespace=namespace,
                node=node_name,
                ip=ip,
                ipv6=ipv6,
                labels=reader.labels("labels"),
                ports=_ports(reader, "ports"),
            )
        )

    services: list[Service] = []
    service_keys = _Unique("service")
    node_ports = _Unique("node port")
    for reader in topology.items("services"):
        reader.check_keys(("name", "namespace", "type", "cluster_ip", "selector", "external_traffic_policy", "ports"))
        name = reader.required_string("name", _LABEL)
        namespace = reader.required_string("namespace", _LABEL)
        service_keys.add(f"{namespace}/{name}", reader.field_path("name"))
        service_type = reader.choice("type", _SERVICE_TYPES, "ClusterIP")
        cluster_ip = reader.address("cluster_ip", 4)
        if cluster_ip not in service_cidr:
            raise ScenarioError(f"{reader.field_path('cluster_ip')}: {cluster_ip} is outside the service CIDR {service_cidr}")
        addresses.add(str(cluster_ip), reader.field_path("cluster_ip"))
        ports = _service_ports(reader, service_type)
        for index, port in enumerate(ports):
            if port.node_port is not None:
                node_ports.add(f"{port.protocol.lower()}/{port.node_port}", f"{reader.path}.ports[{index}].node_port")
        services.append(
            Service(
                name=name,
                namespace=namespace,
                type=service_type,
                cluster_ip=cluster_ip,
                selector=reader.labels("selector"),
                ports=ports,
                external_traffic_policy=reader.choice("external_traffic_policy", _TRAFFIC_POLICIES, "Cluster"),
            )
        )

    upstream_dns: Vm | None = None
    if control_plane:
        _add_control_plane_objects(cluster, nodes, pods, services, addresses.seen, service_keys.seen)
        for pod in pods[len(pod_keys.seen) :]:
            addresses.add(str(pod.ip), f"the lab's {pod.key} pod")

    vms: list[Vm] = []
    for reader in topology.items("vms"):
        reader.check_keys(("name", "address", "ipv6", "labels", "ports"))
        name = reader.required_string("name", _LABEL)
        host_names.add(name, reader.field_path("name"))
        vms.append(
            Vm(
                name=name,
                address=underlay_address(reader, "address", 4),
                ipv6=underlay_address(reader, "ipv6", 6),
                labels=reader.labels("labels"),
                ports=_ports(reader, "ports"),
            )
        )

    if control_plane:
        # After the VMs: a default address never takes one a VM names.
        upstream_dns = _upstream_dns(cluster_reader, underlay, addresses, host_names)
    elif cluster_reader.has("upstream_dns"):
        raise ScenarioError("topology.cluster.upstream_dns: only used with control_plane: true")

    policy = root.raw("policy", required=False)
    if policy is not None and not isinstance(policy, dict):
        raise ScenarioError(f"policy: expected a mapping (filters, policies), got {_show(policy)}")

    expect_allow: tuple[str, ...] | None = None
    if root.has("expect"):
        expect = _Reader(root.raw("expect"), "expect")
        expect.check_keys(("allow",))
        allow = expect.raw("allow", required=False) or []
        if not isinstance(allow, list) or not all(isinstance(item, str) for item in allow):
            raise ScenarioError(f"expect.allow: expected a list of probe strings, got {_show(allow)}")
        expect_allow = tuple(" ".join(item.split()) for item in allow)

    digest = hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()
    scenario = Scenario(
        cluster=cluster,
        underlay=underlay,
        nodes=tuple(nodes),
        pods=tuple(pods),
        services=tuple(services),
        vms=tuple(vms),
        policy=policy,
        expect_allow=expect_allow,
        digest=digest,
        path=source,
        upstream_dns=upstream_dns,
        vulnerabilities=parse_findings(root.raw("vulnerabilities", required=False), pods),
    )
    if expect_allow is not None:
        # Imported here: probes.py builds on the scenario model.
        from lab.probes import probe_matrix  # noqa: PLC0415

        known = {probe.id for probe in probe_matrix(scenario, ipv6=True)}
        for index, line in enumerate(expect_allow):
            if line not in known:
                raise ScenarioError(
                    f"expect.allow[{index}]: {line!r} is not a probe of this lab; write 'SOURCE -> TARGET' "
                    "with SOURCE pod:NS/NAME or vm:NAME and TARGET pod:NS/NAME:PROTO/PORT, svc:..., nodeport:... or vm:NAME:PROTO/PORT"
                )
    return scenario

# SPDX-License-Identifier: GPL-3.0-or-later
"""The probe matrix, the expected table, and the truth-table rendering (pure; no I/O).

Sources are every pod and VM; targets are every pod port (``pod:NS/NAME:PROTO/PORT``), every
service port on its ClusterIP (``svc:...``, probed from pods only), every NodePort on every
node (``nodeport:NS/NAME:PROTO/PORT`` named by the service port) and every VM port
(``vm:NAME:PROTO/PORT``). A workload does not probe itself. With ``ipv6`` the pod and VM
targets are probed over IPv6 too, as ``...@ipv6``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lab.scenario import Scenario

CONNECTED = "."
BLOCKED = "X"
PARTIAL = "~"
UNKNOWN = "?"
NOT_IN_MATRIX = "-"
ATTEMPTS_PER_ENDPOINT = 4
"""A service cell is tried until every endpoint answered or this many times its endpoints, per node."""
LEGEND = (
    f"legend: '{CONNECTED}' connected  '{BLOCKED}' blocked  '{PARTIAL}' partly connected (some endpoints or entry nodes fail)  "
    f"'{UNKNOWN}' not measured  "
    f"'{NOT_IN_MATRIX}' not in the matrix (a workload and itself; ClusterIPs from VMs)"
)


@dataclass(frozen=True)
class Destination:
    """One address:port a probe connects to; ``node`` names the node for NodePort probes.

    ``serves`` is False for a node that cannot answer whatever the policy: a NodePort with
    ``externalTrafficPolicy: Local`` on a node without a local endpoint (kube-proxy drops it there).
    """

    address: str
    port: int
    node: str | None = None
    serves: bool = True


@dataclass(frozen=True)
class Probe:
    """One cell of the matrix: a source workload and a target port."""

    source: str
    target: str
    protocol: str  # "tcp" | "udp"
    destinations: tuple[Destination, ...]

    @property
    def id(self) -> str:
        """``SOURCE -> TARGET``, the spelling of ``expect.allow``."""
        return f"{self.source} -> {self.target}"


@dataclass
class Result:
    """The measured outcome of one probe."""

    probe: Probe
    result: str
    detail: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The JSON form of a cell."""
        return {"source": self.probe.source, "target": self.probe.target, "result": self.result, "detail": self.detail}


def sources(scenario: Scenario) -> list[str]:
    """Every probe source, pods first, in scenario order."""
    return [f"pod:{pod.key}" for pod in scenario.pods] + [f"vm:{vm.name}" for vm in scenario.vms]


@dataclass(frozen=True)
class Target:
    """One column of the matrix: its id, protocol and destinations; ``owner`` (a workload does not probe itself) and
    ``pods_only`` (ClusterIPs are probed from pods only)."""

    id: str
    protocol: str
    destinations: tuple[Destination, ...]
    owner: str | None
    pods_only: bool


def probe_targets(scenario: Scenario, ipv6: bool = False) -> list[Target]:
    """Every column of the matrix, in the table's order."""
    targets: list[tuple[str, str, tuple[Destination, ...], str | None, bool]] = []  # id, proto, dsts, owner, pods-only
    for pod in scenario.pods:
        for port in pod.ports:
            proto = port.protocol.lower()
            targets.append((f"pod:{pod.key}:{port.label}", proto, (Destination(str(pod.ip), port.port),), f"pod:{pod.key}", False))
            if ipv6 and pod.ipv6 is not None:
                targets.append(
                    (f"pod:{pod.key}:{port.label}@ipv6", proto, (Destination(str(pod.ipv6), port.port),), f"pod:{pod.key}", False)
                )
    for service in scenario.services:
        for sport in service.ports:
            proto = sport.protocol.lower()
            targets.append((f"svc:{service.key}:{sport.label}", proto, (Destination(str(service.cluster_ip), sport.port),), None, True))
    for service in scenario.services:
        for sport in service.ports:
            if sport.node_port is None:
                continue
            node_port = sport.node_port
            local = {pod.node for pod in scenario.service_endpoints(service)} if service.external_traffic_policy == "Local" else None
            destinations = tuple(
                Destination(str(node.address), node_port, node.name, serves=local is None or node.name in local) for node in scenario.nodes
            )
            targets.append((f"nodeport:{service.key}:{sport.label}", sport.protocol.lower(), destinations, None, False))
    for vm in scenario.vms:
        for port in vm.ports:
            proto = port.protocol.lower()
            targets.append((f"vm:{vm.name}:{port.label}", proto, (Destination(str(vm.address), port.port),), f"vm:{vm.name}", False))
            if ipv6 and vm.ipv6 is not None:
                targets.append((f"vm:{vm.name}:{port.label}@ipv6", proto, (Destination(str(vm.ipv6), port.port),), f"vm:{vm.name}", False))
    return [Target(*target) for target in targets]


def in_matrix(scenario: Scenario, source: str, target: Target) -> bool:
    """Whether the cell (source, target) is probed: not a workload to itself, no ClusterIP from a VM, IPv6 only from IPv6 sources."""
    if target.owner == source or (target.pods_only and not source.startswith("pod:")):
        return False
    return not (target.id.endswith("@ipv6") and not _has_ipv6(scenario, source))


def probe_matrix(scenario: Scenario, ipv6: bool = False) -> list[Probe]:
    """Every probe of the lab, row by row."""
    targets = probe_targets(scenario, ipv6)
    return [
        Probe(source=source, target=target.id, protocol=target.protocol, destinations=target.destinations)
        for source in sources(scenario)
        for target in targets
        if in_matrix(scenario, source, target)
    ]


def _has_ipv6(scenario: Scenario, source: str) -> bool:
    kind, _, name = source.partition(":")
    if kind == "pod":
        return scenario.pod(name).ipv6 is not None
    return any(vm.ipv6 is not None for vm in scenario.vms if vm.name == name)


def target_columns(probes: Iterable[Probe]) -> list[str]:
    """The targets in first-seen order (the table's columns)."""
    columns: list[str] = []
    for probe in probes:
        if probe.target not in columns:
            columns.append(probe.target)
    return columns


def expected_from_allow(probes: Iterable[Probe], allow: Iterable[str]) -> dict[str, str]:
    """The expected cell of every probe: connected when listed in ``allow`` (IPv6 twins follow IPv4)."""
    allowed = set(allow)
    return {probe.id: CONNECTED if probe.id.removesuffix("@ipv6") in allowed else BLOCKED for probe in probes}


def combine_nodeport(outcomes: list[bool]) -> str:
    """Connected only if every attempt (every serving node, every endpoint) connects; blocked if none; else partly connected."""
    if all(outcomes):
        return CONNECTED
    if not any(outcomes):
        return BLOCKED
    return PARTIAL


def mismatches(observed: Mapping[str, str], expected: Mapping[str, str]) -> list[str]:
    """The probe ids whose observed cell differs from the expected one, in observed order."""
    return [probe_id for probe_id, cell in observed.items() if probe_id in expected and expected[probe_id] != cell]


def render_tables(
    scenario: Scenario,
    probes: list[Probe],
    observed: Mapping[str, str],
    expected: Mapping[str, str] | None,
    expected_note: str = "",
) -> str:
    """The observed truth table and, beside it, the expected one, with numbered target columns."""
    columns = target_columns(probes)
    rows = sources(scenario)
    cell_of = {(probe.source, probe.target): probe.id for probe in probes}
    width = max(len(row) for row in rows) if rows else 6
    col_width = max(2, len(str(len(columns))) + 1)

    def line(row: str, table: Mapping[str, str] | None) -> str:
        cells = []
        for column in columns:
            probe_id = cell_of.get((row, column))
            if probe_id is None:
                cells.append(NOT_IN_MATRIX)
            elif table is None:
                cells.append(" ")
            else:
                cells.append(table.get(probe_id, UNKNOWN))
        return "".join(cell.rjust(col_width) for cell in cells)

    header_numbers = "".join(str(index + 1).rjust(col_width) for index in range(len(columns)))
    gap = "    "
    observed_title = "observed".ljust(len(header_numbers))
    out = [f"{'':<{width}}  {observed_title}{gap}expected{(' (' + expected_note + ')') if expected_note else ''}"]
    out.append(f"{'source':<{width}}  {header_numbers}{gap}{header_numbers if expected is not None else ''}")
    for row in rows:
        out.append(f"{row:<{width}}  {line(row, observed)}{gap}{line(row, expected) if expected is not None else ''}".rstrip())
    out.append("")
    out.append("targets:")
    for index, column in enumerate(columns):
        out.append(f"  {str(index + 1).rjust(col_width)} {column}")
    out.append(LEGEND)
    return "\n".join(out)

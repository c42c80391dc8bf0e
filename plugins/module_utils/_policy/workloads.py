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
from collections.abc import Mapping
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy import vulns
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import WorkloadError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.vulns import Vulnerabilities

KINDS = ("pod", "service", "node", "vm")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One workload, normalised: canonical addresses, sorted tuples, plain dicts."""

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
    ports: tuple[Mapping[str, Any], ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    tunnel_addresses: tuple[str, ...] = ()
    vulnerabilities: Optional[Vulnerabilities] = None
    record: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    hostvars: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> str:
        """``namespace/name`` for namespaced objects, else the name."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

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
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    try:
        return tuple(sorted({canonical_address(item) for item in value}, key=_address_sort_key))
    except ValueError as error:
        raise WorkloadError(f"{where} holds something that is not an IP address: {error}") from error


def _address_sort_key(text: str) -> tuple[int, int]:
    address = ipaddress.ip_address(text)
    return (address.version, int(address))


def _networks(value: Any, where: str) -> tuple[str, ...]:
    try:
        return tuple(str(ipaddress.ip_network(str(item), strict=False)) for item in (value or ()))
    except ValueError as error:
        raise WorkloadError(f"{where} holds something that is not a CIDR: {error}") from error


def workload_from_record(host: str, record: Mapping[str, Any], hostvars: Mapping[str, Any]) -> Workload:
    """Build a workload from a ``workload`` hostvar (contracts.md section 1)."""
    if not isinstance(record, Mapping):
        raise WorkloadError(f"host {host}: workload must be a mapping, got {type_phrase(record)}")
    kind = record.get("kind")
    if kind not in KINDS:
        raise WorkloadError(f"host {host}: workload.kind {kind!r} is not one of {', '.join(KINDS)}")
    addresses = record.get("addresses")
    if kind == "service" and not addresses:
        addresses = record.get("cluster_ips")
    ports = record.get("ports") or ()
    if not isinstance(ports, (list, tuple)) or not all(isinstance(port, Mapping) for port in ports):
        raise WorkloadError(f"host {host}: workload.ports must be a list of mappings")
    enforce_host = hostvars.get("zt_enforce_host")
    return Workload(
        host=host,
        kind=str(kind),
        name=str(record.get("name") or host),
        addresses=_addresses(addresses, f"host {host}: workload.addresses"),
        namespace=None if record.get("namespace") is None else str(record.get("namespace")),
        cluster=None if record.get("cluster") is None else str(record.get("cluster")),
        labels=_str_map(record.get("labels"), f"host {host}: workload.labels"),
        annotations=_str_map(record.get("annotations"), f"host {host}: workload.annotations"),
        groups=tuple(sorted(str(group) for group in hostvars.get("group_names") or ())),
        node=None if record.get("node") is None else str(record.get("node")),
        enforce_host=None if enforce_host is None else str(enforce_host),
        uid=None if record.get("uid") is None else str(record.get("uid")),
        container_ids=tuple(str(item) for item in record.get("container_ids") or ()),
        ports=tuple(dict(port) for port in ports),
        pod_cidrs=_networks(record.get("pod_cidrs"), f"host {host}: workload.pod_cidrs"),
        tunnel_addresses=_addresses(record.get("tunnel_addresses"), f"host {host}: workload.tunnel_addresses"),
        vulnerabilities=vulns.from_record(record.get("vulnerabilities"), f"host {host}: workload.vulnerabilities"),
        record=record,
        hostvars=hostvars,
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
            if variables.get("workload") is not None:
                workloads.append(workload_from_record(str(host), variables["workload"], variables))
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

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Raw cluster snapshots -> hosts (with their hostvars) and group memberships.

Pure and deterministic: the plugin feeds it what the API returned (or what the cache holds)
and copies the result into Ansible's inventory. Host names come from ``host_format``; when
two objects would share a name (e.g. nodes called alike in two clusters), all of them get the
cluster-qualified form instead, so the outcome does not depend on the order of clusters.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import records, vulnerabilities
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.naming import (
    QUALIFIED_HOST_FORMAT,
    render_host_name,
    safe_group_name,
)

LOGICAL_CONNECTION = "zerotrust.workloads.logical"
DEFAULT_SKIP_PHASES = ("Pending", "Succeeded", "Failed")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
DEFAULT_DROP_ANNOTATIONS = (LAST_APPLIED,)
"""Annotations left out of the records by default: ``kubectl apply`` stores the whole object again in this one."""
KIND_GROUPS = {"pod": "k8s_pods", "service": "k8s_services", "node": "k8s_nodes"}


@dataclasses.dataclass
class BuildSettings:
    """What shapes the hosts: name formats, which kinds become hosts, which pod phases are skipped."""

    host_format: Mapping[str, str]
    kinds: Sequence[str] = ("pods", "services", "nodes")
    skip_pod_phases: Sequence[str] = DEFAULT_SKIP_PHASES
    keep_annotations: Sequence[str] = ()
    drop_annotations: Sequence[str] = DEFAULT_DROP_ANNOTATIONS
    vulnerabilities: bool = False
    """Give pods ``workload.vulnerabilities`` from the snapshots' VulnerabilityReports (the plugin's ``vulnerabilities: trivy``)."""


class AnnotationFilter:
    """Which annotations a record keeps: those matching ``keep`` (all when empty), less those matching ``drop``.

    Patterns are annotation keys, with shell wildcards (``*``, ``?``, ``[...]``) allowed. Matching is
    cached per key: a cluster has few distinct annotation keys and many objects carrying them.
    """

    def __init__(self, keep: Sequence[str], drop: Sequence[str]) -> None:
        self.keep = _pattern(keep)
        self.drop = _pattern(drop)
        self._verdicts: dict[str, bool] = {}

    def wanted(self, key: str) -> bool:
        """Does a record keep the annotation ``key``?"""
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = (self.keep is None or bool(self.keep.match(key))) and not (self.drop is not None and self.drop.match(key))
            self._verdicts[key] = verdict
        return verdict

    def apply(self, record: dict[str, Any]) -> None:
        """Filter ``record["annotations"]`` in place (after anything derived from them, such as tunnel addresses)."""
        annotations = record["annotations"]
        if annotations and not all(self.wanted(key) for key in annotations):
            record["annotations"] = {key: value for key, value in annotations.items() if self.wanted(key)}


def _pattern(patterns: Sequence[str]) -> Optional[re.Pattern[str]]:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns))


@dataclasses.dataclass
class InventoryModel:
    """The result: hostvars per host name and member host names per group (insertion-ordered)."""

    hosts: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    groups: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Candidate:
    kind: str
    cluster: str
    namespace: str
    name: str
    uid: str
    node: str
    obj: Mapping[str, Any]
    host: str = ""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _candidate(kind: str, cluster: str, obj: Mapping[str, Any]) -> _Candidate:
    metadata = _meta(obj)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    return _Candidate(kind, cluster, str(metadata.get("namespace") or ""), str(metadata.get("name") or ""), str(metadata.get("uid") or ""),
                      str((spec or {}).get("nodeName") or ""), obj)


def _assign_names(candidates: list[_Candidate], formats: Mapping[str, str], warnings: list[str]) -> None:
    """Name every candidate; colliding names fall back to the qualified format, then to a hash suffix."""
    def render(candidate: _Candidate, template: str) -> str:
        return render_host_name(template, name=candidate.name, namespace=candidate.namespace, cluster=candidate.cluster,
                                kind=candidate.kind, uid=candidate.uid, node=candidate.node)

    counts: dict[str, int] = defaultdict(int)
    for candidate in candidates:
        candidate.host = render(candidate, formats[candidate.kind])
        counts[candidate.host] += 1
    colliding = [candidate for candidate in candidates if counts[candidate.host] > 1]
    if not colliding:
        return
    for candidate in colliding:
        original = candidate.host
        candidate.host = render(candidate, QUALIFIED_HOST_FORMAT[candidate.kind])
        warnings.append(f"host name {original!r} is shared by several objects; {candidate.kind} "
                        f"{candidate.namespace + '/' if candidate.namespace else ''}{candidate.name} of cluster {candidate.cluster!r} "
                        f"is named {candidate.host!r}")
    final_counts: dict[str, int] = defaultdict(int)
    for candidate in candidates:
        final_counts[candidate.host] += 1
    for candidate in candidates:
        if final_counts[candidate.host] > 1:
            # Sanitising made distinct objects look alike (e.g. "a b" and "a_b"): the hash of the raw identity separates them.
            identity = "\0".join((candidate.cluster, candidate.kind, candidate.namespace, candidate.name))
            candidate.host = f"{candidate.host}-{hashlib.sha256(identity.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


class _Groups:
    """Group memberships with name sanitising cached per raw name."""

    def __init__(self) -> None:
        self.members: dict[str, list[str]] = {}

    def add(self, raw_group: str, host: str) -> None:
        group = safe_group_name(raw_group)
        members = self.members.get(group)
        if members is None:
            self.members[group] = [host]
        else:
            members.append(host)


def _collect(snapshots: Mapping[str, Mapping[str, list[dict[str, Any]]]], settings: BuildSettings,
             ) -> tuple[list[_Candidate], dict[tuple[str, str], _Candidate]]:
    """The objects that become hosts, and every node by (cluster, name) for the pods' addresses."""
    kinds = set(settings.kinds)
    skip_phases = set(settings.skip_pod_phases)
    candidates: list[_Candidate] = []
    nodes: dict[tuple[str, str], _Candidate] = {}
    for cluster, snapshot in snapshots.items():
        for node in snapshot.get("Node", []):
            candidate = _candidate("node", cluster, node)
            nodes[(cluster, candidate.name)] = candidate
            if "nodes" in kinds:
                candidates.append(candidate)
        if "pods" in kinds:
            for pod in snapshot.get("Pod", []):
                status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
                if (status or {}).get("phase") in skip_phases or not records.pod_ips(pod):
                    continue  # finished, pending or without an IP: nothing to talk to
                candidates.append(_candidate("pod", cluster, pod))
        if "services" in kinds:
            candidates.extend(_candidate("service", cluster, service) for service in snapshot.get("Service", []))
    return candidates, nodes


class _Builder:
    """Turns named candidates into hostvars and group memberships."""

    def __init__(self, snapshots: Mapping[str, Mapping[str, list[dict[str, Any]]]], settings: BuildSettings,
                 nodes: dict[tuple[str, str], _Candidate]) -> None:
        self.settings = settings
        self.annotations = AnnotationFilter(settings.keep_annotations, settings.drop_annotations)
        self.groups = _Groups()
        self.node_hosts = {key: candidate.host for key, candidate in nodes.items()}
        self.node_addresses = {key: records.node_internal_ips(candidate.obj) for key, candidate in nodes.items()}
        # (cluster, namespace, label key, label value) -> pod hosts, to resolve service selectors by set intersection.
        self.pod_index: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
        self.pods_by_namespace: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.slices_by_service = _slices_by_service(snapshots)
        # Per cluster; None where the cluster does not serve the reports (the pods then carry no summary).
        self.reports: dict[str, Optional[vulnerabilities.ReportIndex]] = {}
        if settings.vulnerabilities:
            for cluster, snapshot in snapshots.items():
                absent = vulnerabilities.absent_warning(cluster, snapshot)
                reports = snapshot.get(vulnerabilities.VULNERABILITY_REPORTS.name, [])
                self.reports[cluster] = None if absent else vulnerabilities.ReportIndex(reports)

    def pod(self, candidate: _Candidate) -> dict[str, Any]:
        """A pod's hostvars: its record, its node's inventory name and address.

        Nothing of the record is repeated in other variables: ``ansible-inventory --list`` and every
        play pay per value for each host's variables (ansible-core encodes and merges them one by
        one), so a copy of the pod's UID, IPs, container IDs and node beside ``workload`` would cost
        a third more per pod and say nothing new.
        """
        cluster, host = candidate.cluster, candidate.host
        ips = records.pod_ips(candidate.obj)
        record = records.pod_record(candidate.obj, cluster, ips)
        self.annotations.apply(record)
        reports = self.reports.get(cluster)
        if reports is not None:
            record["vulnerabilities"] = reports.summary(candidate.obj)
        node_key = (cluster, candidate.node)
        enforce_host = self.node_hosts.get(node_key)
        if enforce_host is None and candidate.node:
            enforce_host = render_host_name(self.settings.host_format["node"], name=candidate.node, namespace="", cluster=cluster,
                                            kind="node", uid="", node="")
        hostvars: dict[str, Any] = {"workload": record, "zt_enforce_host": enforce_host}
        node_ips = self.node_addresses.get(node_key)
        status = candidate.obj.get("status")
        host_ip = status.get("hostIP") if isinstance(status, dict) else None
        if node_ips:
            hostvars["ansible_host"] = node_ips[0]
        elif host_ip:
            hostvars["ansible_host"] = str(host_ip)  # the node is not readable: the pod reports its node's address
        if candidate.node:
            self.groups.add(f"k8s_node_{candidate.node}", host)
        for key, value in record["labels"].items():
            self.pod_index[(cluster, candidate.namespace, key, value)].add(host)
        self.pods_by_namespace[(cluster, candidate.namespace)].append(host)
        return hostvars

    def service(self, candidate: _Candidate) -> dict[str, Any]:
        """A service's hostvars: a logical host whose connection explains what to target instead."""
        slices = self.slices_by_service.get((candidate.cluster, candidate.namespace, candidate.name), [])
        record = records.service_record(candidate.obj, candidate.cluster, slices)
        self.annotations.apply(record)
        hint = f"target its pods (group {safe_group_name(f'service_{candidate.namespace}_{candidate.name}')}) or its nodes"
        return {"workload": record, "ansible_connection": LOGICAL_CONNECTION, "zt_logical_hint": hint}

    def node(self, candidate: _Candidate) -> dict[str, Any]:
        """A node's hostvars: reached on its first InternalIP."""
        record = records.node_record(candidate.obj, candidate.cluster)
        self.annotations.apply(record)
        hostvars: dict[str, Any] = {"workload": record}
        if record["addresses"]:
            hostvars["ansible_host"] = record["addresses"][0]
        return hostvars

    def common_groups(self, candidate: _Candidate, labels: Mapping[str, str]) -> None:
        """Cluster, kind, namespace and label groups."""
        host = candidate.host
        self.groups.add(f"k8s_cluster_{candidate.cluster}", host)
        self.groups.add(KIND_GROUPS[candidate.kind], host)
        if candidate.namespace:
            self.groups.add(f"k8s_namespace_{candidate.namespace}", host)
        for key, value in labels.items():
            self.groups.add(f"label_{key}_{value}", host)

    def service_group(self, candidate: _Candidate, selector: Mapping[str, str]) -> None:
        """The pods a service selects (a service without a selector selects nothing, as in Kubernetes)."""
        if not selector:
            return
        selected: Optional[set[str]] = None
        for key, value in selector.items():
            matching = self.pod_index.get((candidate.cluster, candidate.namespace, key, value), set())
            selected = set(matching) if selected is None else selected & matching
            if not selected:
                break
        group = f"service_{candidate.namespace}_{candidate.name}"
        if not selected:
            self.groups.members.setdefault(safe_group_name(group), [])
            return
        for host in self.pods_by_namespace[(candidate.cluster, candidate.namespace)]:
            if host in selected:
                self.groups.add(group, host)


def build(snapshots: Mapping[str, Mapping[str, list[dict[str, Any]]]], settings: BuildSettings) -> InventoryModel:
    """Hosts and groups for every cluster snapshot (``{cluster: {kind: [objects]}}``)."""
    model = InventoryModel()
    candidates, nodes = _collect(snapshots, settings)
    if settings.vulnerabilities:
        model.warnings.extend(warning for cluster, snapshot in snapshots.items()
                              if (warning := vulnerabilities.absent_warning(cluster, snapshot)) is not None)
    _assign_names(candidates, settings.host_format, model.warnings)
    for candidate in nodes.values():
        if not candidate.host:  # nodes read for their addresses only, not hosts themselves
            candidate.host = render_host_name(settings.host_format["node"], name=candidate.name, namespace="", cluster=candidate.cluster,
                                              kind="node", uid=candidate.uid, node="")
    assembler = _Builder(snapshots, settings, nodes)
    per_kind = {"pod": assembler.pod, "service": assembler.service, "node": assembler.node}
    for candidate in candidates:
        hostvars = per_kind[candidate.kind](candidate)
        model.hosts[candidate.host] = hostvars
        assembler.common_groups(candidate, hostvars["workload"]["labels"])
    for candidate in candidates:
        if candidate.kind == "service":
            assembler.service_group(candidate, model.hosts[candidate.host]["workload"]["selector"])
    model.groups = assembler.groups.members
    return model


def _slices_by_service(snapshots: Mapping[str, Mapping[str, list[dict[str, Any]]]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for cluster, snapshot in snapshots.items():
        for endpoint_slice in snapshot.get("EndpointSlice", []):
            metadata = _meta(endpoint_slice)
            labels = metadata.get("labels") if isinstance(metadata.get("labels"), dict) else {}
            service = (labels or {}).get(records.SERVICE_NAME_LABEL)
            if service:
                found[(cluster, str(metadata.get("namespace") or ""), str(service))].append(endpoint_slice)
    return found

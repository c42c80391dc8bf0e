# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""trivy-operator's VulnerabilityReports joined to pods (docs/vulnerabilities.md).

trivy-operator writes one VulnerabilityReport per workload and container, in the workload's
namespace, labelled ``trivy-operator.resource.kind/name/namespace`` and
``trivy-operator.container.name`` and owned by the workload. The workload is the pod's
controller as trivy-operator sees it: the ReplicaSet of a Deployment's pod, the StatefulSet,
DaemonSet or Job, or the pod itself when nothing controls it. The join therefore needs no
extra list: a pod's own controller owner reference names the workload (and its UID). Reports
written for the Deployment itself (older operators, other scanners) are found through the
pod's ``pod-template-hash`` label, which is the suffix the Deployment adds to its ReplicaSet's
name, and reports for a CronJob through the Job name (``<cronjob>-<scheduled minute>``).

Everything here is pure: the plugin lists the reports (api.py) and the builder asks
:meth:`ReportIndex.summary` for each pod.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.api import ClusterClient, Kind, ListOptions, fetch_cluster
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import ApiCallError

VULNERABILITY_REPORTS = Kind("VulnerabilityReport", "/apis/aquasecurity.github.io/v1alpha1", "vulnerabilityreports", namespaced=True)
"""Namespaced, one per workload and container; needs get/list/watch (docs/rbac.md)."""

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
_SUMMARY_KEYS = {severity: f"{severity}Count" for severity in SEVERITIES}
KIND_LABEL = "trivy-operator.resource.kind"
NAME_LABEL = "trivy-operator.resource.name"
NAMESPACE_LABEL = "trivy-operator.resource.namespace"
CONTAINER_LABEL = "trivy-operator.container.name"
TEMPLATE_HASH_LABEL = "pod-template-hash"

ABSENT_WARNING = (
    "cluster {cluster!r}: VulnerabilityReports (aquasecurity.github.io/v1alpha1) are not served ({cause}); "
    "is trivy-operator installed? Pods get no vulnerability summary, so vuln.* conditions match none of them"
)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _count(value: Any) -> int:
    """A report's count as a whole number >= 0; anything else (absent, text, negative) counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclasses.dataclass(frozen=True)
class Finding:
    """One report's counts per severity and its vulnerability IDs."""

    counts: tuple[int, ...]
    ids: frozenset[str]


def finding(report: Mapping[str, Any]) -> Finding:
    """Counts from ``report.summary`` (``criticalCount``...); counted from ``report.vulnerabilities`` when there is no summary."""
    body = _dict(report.get("report"))
    entries = [entry for entry in _list(body.get("vulnerabilities")) if isinstance(entry, dict)]
    ids = frozenset(str(entry["vulnerabilityID"]) for entry in entries if entry.get("vulnerabilityID"))
    summary = body.get("summary")
    if isinstance(summary, dict):
        counts = tuple(_count(summary.get(_SUMMARY_KEYS[severity])) for severity in SEVERITIES)
    else:
        severities = [str(entry.get("severity") or "UNKNOWN").lower() for entry in entries]
        counts = tuple(sum(1 for found in severities if found == severity) + (
            sum(1 for found in severities if found not in SEVERITIES) if severity == "unknown" else 0) for severity in SEVERITIES)
    return Finding(counts, ids)


def _controller(metadata: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    """The owner reference with ``controller: true``, else the only owner reference, else None."""
    owners = [owner for owner in _list(metadata.get("ownerReferences")) if isinstance(owner, dict)]
    for owner in owners:
        if owner.get("controller") is True:
            return owner
    return owners[0] if len(owners) == 1 else None


class ReportIndex:
    """The reports of one cluster, by the workload and container they describe."""

    def __init__(self, reports: Iterable[Mapping[str, Any]]) -> None:
        # (namespace, kind, name, container) and (owner uid, container) -> finding
        self.by_workload: dict[tuple[str, str, str, str], Finding] = {}
        self.by_uid: dict[tuple[str, str], Finding] = {}
        self.ignored = 0
        for report in reports:
            self._add(report)

    def _add(self, report: Mapping[str, Any]) -> None:
        metadata = _dict(report.get("metadata"))
        labels = _dict(metadata.get("labels"))
        container = labels.get(CONTAINER_LABEL)
        owner = _controller(metadata)
        kind = labels.get(KIND_LABEL) or (owner or {}).get("kind")
        name = labels.get(NAME_LABEL) or (owner or {}).get("name")
        namespace = labels.get(NAMESPACE_LABEL) or metadata.get("namespace")
        uid = (owner or {}).get("uid")
        if not container or not ((kind and name and namespace) or uid):
            self.ignored += 1  # a report that names no container or no workload describes nothing we can join
            return
        found = finding(report)
        if kind and name and namespace:
            self.by_workload[(str(namespace), str(kind), str(name), str(container))] = found
        if uid:
            self.by_uid[(str(uid), str(container))] = found

    def _workloads(self, pod: Mapping[str, Any]) -> list[tuple[Optional[str], str, str]]:
        """The workloads a pod's reports may be filed under, most specific first: (uid, kind, name)."""
        metadata = _dict(pod.get("metadata"))
        owner = _controller(metadata)
        if owner is None:
            return [(metadata.get("uid"), "Pod", str(metadata.get("name") or ""))]
        kind, name = str(owner.get("kind") or ""), str(owner.get("name") or "")
        result: list[tuple[Optional[str], str, str]] = [(owner.get("uid"), kind, name)]
        if kind == "ReplicaSet":
            template_hash = str(_dict(metadata.get("labels")).get(TEMPLATE_HASH_LABEL) or "")
            if template_hash and name.endswith(f"-{template_hash}"):
                result.append((None, "Deployment", name[: -len(template_hash) - 1]))
        elif kind == "Job":
            base, _separator, minute = name.rpartition("-")
            if base and minute.isdigit():
                result.append((None, "CronJob", base))
        return result

    def summary(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        """The pod's ``vulnerabilities`` record: sums over its containers, IDs sorted and unique.

        ``scanned`` says whether any of its containers has a report: zeros without a report
        mean "not scanned", not "clean".
        """
        metadata = _dict(pod.get("metadata"))
        namespace = str(metadata.get("namespace") or "")
        spec = _dict(pod.get("spec"))
        containers = [str(_dict(item).get("name")) for key in ("initContainers", "containers")
                      for item in _list(spec.get(key)) if _dict(item).get("name")]
        workloads = self._workloads(pod)
        totals = [0] * len(SEVERITIES)
        ids: set[str] = set()
        scanned = False
        for container in dict.fromkeys(containers):
            found = self._lookup(namespace, workloads, container)
            if found is None:
                continue
            scanned = True
            totals = [total + count for total, count in zip(totals, found.counts, strict=True)]
            ids |= found.ids
        record: dict[str, Any] = dict(zip(SEVERITIES, totals, strict=True))
        record["ids"] = sorted(ids)
        record["scanned"] = scanned
        return record

    def _lookup(self, namespace: str, workloads: list[tuple[Optional[str], str, str]], container: str) -> Optional[Finding]:
        for uid, kind, name in workloads:
            found = self.by_uid.get((str(uid), container)) if uid else None
            if found is None:
                found = self.by_workload.get((namespace, kind, name, container))
            if found is not None:
                return found
        return None


ABSENT_KEY = "VulnerabilityReport.absent"
"""Snapshot key recording that the cluster does not serve the reports (kept in the cache with the rest)."""


def fetch_reports(client: ClusterClient, page_size: int) -> dict[str, list[dict[str, Any]]]:
    """The cluster's VulnerabilityReports as snapshot entries: ``{VulnerabilityReport: [...]}``.

    Paginated and restricted to the connection's namespaces as every other kind. When the API
    does not serve the kind (404: trivy-operator's CRD is not installed) the result is
    ``{VulnerabilityReport.absent: [{"cause": ...}]}`` instead, which the builder turns into a
    warning; any other failure (403, timeout, a malformed answer) fails as for every kind.
    """
    try:
        return fetch_cluster(client, (VULNERABILITY_REPORTS,), {VULNERABILITY_REPORTS.name: ListOptions(page_size=page_size)})
    except ApiCallError as exc:
        if exc.status != 404:
            raise
        return {ABSENT_KEY: [{"cause": f"GET {VULNERABILITY_REPORTS.list_path()} answered 404 Not Found"}]}


def absent_warning(cluster: str, snapshot: Mapping[str, Any]) -> Optional[str]:
    """The warning for a snapshot whose cluster did not serve the reports, else None."""
    absent = snapshot.get(ABSENT_KEY)
    if not absent:
        return None
    cause = str(_dict(absent[0]).get("cause") or "not found") if isinstance(absent, list) else "not found"
    return ABSENT_WARNING.format(cluster=cluster, cause=cause)

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""VulnerabilityReports joined to pods: each owner kind, containers, sums, absent CRD, pagination."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api, builder, naming, vulnerabilities
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import ClusterConnection
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import ApiCallError

from lab.kubeapi import KubeApiServer, start_server
from tests.unit.plugins.module_utils._kubernetes import k8s_factories as k8s

NS = "shop"
ZERO = {"critical": 0, "high": 0, "medium": 0, "low": 0, "unknown": 0, "ids": [], "scanned": False}


def pod(name: str = "web-7d9f8b6c5d-x2x7q", labels: dict[str, str] | None = None, containers: tuple[str, ...] = ("main",),
        init: tuple[str, ...] = ()) -> dict[str, Any]:
    manifest = k8s.pod(name, NS, "n1", "10.0.0.5", labels)
    manifest["spec"]["containers"] = [{"name": container, "image": "app"} for container in containers]
    if init:
        manifest["spec"]["initContainers"] = [{"name": container, "image": "setup"} for container in init]
    return manifest


def deployment_pod() -> dict[str, Any]:
    return k8s.owned_by(pod(labels={"pod-template-hash": "7d9f8b6c5d"}), "ReplicaSet", "web-7d9f8b6c5d")


def report(kind: str, name: str, container: str = "main", **counts: Any) -> dict[str, Any]:
    return k8s.vulnerability_report(NS, kind, name, container, **counts)


def summary(*, critical: int = 0, high: int = 0, medium: int = 0, low: int = 0, unknown: int = 0, ids: tuple[str, ...] = (),
            scanned: bool = True) -> dict[str, Any]:
    return {"critical": critical, "high": high, "medium": medium, "low": low, "unknown": unknown, "ids": list(ids), "scanned": scanned}


JOINS = [
    # (case, pod, reports, expected summary)
    ("ReplicaSet (trivy-operator's own choice for a Deployment's pod)", deployment_pod(),
     [report("ReplicaSet", "web-7d9f8b6c5d", critical=1, high=2, ids=("CVE-2024-3094", "CVE-2023-1", "CVE-2023-2"))],
     summary(critical=1, high=2, ids=("CVE-2023-1", "CVE-2023-2", "CVE-2024-3094"))),
    ("Deployment, through the pod-template-hash suffix", deployment_pod(),
     [report("Deployment", "web", medium=4)], summary(medium=4)),
    ("the ReplicaSet's report wins over the Deployment's for the same container", deployment_pod(),
     [report("Deployment", "web", critical=9), report("ReplicaSet", "web-7d9f8b6c5d", low=1)], summary(low=1)),
    ("an older ReplicaSet's report does not apply", deployment_pod(),
     [report("ReplicaSet", "web-5c4b3a2910", critical=3)], ZERO),
    ("StatefulSet", k8s.owned_by(pod("db-0"), "StatefulSet", "db"), [report("StatefulSet", "db", high=1, ids=("CVE-1",))],
     summary(high=1, ids=("CVE-1",))),
    ("DaemonSet", k8s.owned_by(pod("agent-x7k2p"), "DaemonSet", "agent"), [report("DaemonSet", "agent", unknown=2)], summary(unknown=2)),
    ("Job", k8s.owned_by(pod("migrate-q8z2d"), "Job", "migrate", api_version="batch/v1"), [report("Job", "migrate", critical=1)],
     summary(critical=1)),
    ("CronJob, through its Job's name", k8s.owned_by(pod("backup-28912345-q8z2d"), "Job", "backup-28912345", api_version="batch/v1"),
     [report("CronJob", "backup", high=3)], summary(high=3)),
    ("bare Pod", pod("debug"), [report("Pod", "debug", critical=2)], summary(critical=2)),
    ("a report of another namespace does not apply", pod("debug"),
     [k8s.vulnerability_report("other", "Pod", "debug", "main", critical=2)], ZERO),
    ("a report of another container does not apply", pod("debug"), [report("Pod", "debug", "sidecar", critical=2)], ZERO),
    ("sums over containers and init containers, IDs unique and sorted",
     pod("debug", containers=("main", "sidecar"), init=("setup",)),
     [report("Pod", "debug", "main", critical=1, high=1, ids=("CVE-B", "CVE-A")),
      report("Pod", "debug", "sidecar", critical=2, low=5, ids=("CVE-A", "CVE-C")),
      report("Pod", "debug", "setup", medium=1, ids=("CVE-D",))],
     summary(critical=3, high=1, medium=1, low=5, ids=("CVE-A", "CVE-B", "CVE-C", "CVE-D"))),
    ("a clean scan is scanned with zeros", pod("debug"), [report("Pod", "debug")], summary()),
    ("no report: not scanned", deployment_pod(), [], ZERO),
]


@pytest.mark.parametrize(("case", "pod_manifest", "reports", "expected"), JOINS, ids=[row[0] for row in JOINS])
def test_join_through_owner_kinds(case: str, pod_manifest: dict[str, Any], reports: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert vulnerabilities.ReportIndex(reports).summary(pod_manifest) == expected, case


def test_join_by_owner_uid_when_the_name_label_is_missing() -> None:
    # trivy-operator leaves out resource labels whose value is not a valid label (names over 63 characters).
    long_name = "a" * 70
    manifest = k8s.owned_by(pod(), "StatefulSet", long_name, uid="1111-2222")
    found = report("StatefulSet", long_name, critical=1)
    found["metadata"]["labels"] = {"trivy-operator.container.name": "main"}
    found["metadata"]["ownerReferences"][0]["uid"] = "1111-2222"
    assert vulnerabilities.ReportIndex([found]).summary(manifest) == summary(critical=1)


FINDINGS = [
    # (report body, counts, ids)
    ({"summary": {"criticalCount": 2, "highCount": 1, "mediumCount": 0, "lowCount": 3, "unknownCount": 1}}, (2, 1, 0, 3, 1), frozenset()),
    # No summary: counted from the entries, unknown severities as unknown.
    ({"vulnerabilities": [{"vulnerabilityID": "CVE-1", "severity": "CRITICAL"}, {"vulnerabilityID": "CVE-2", "severity": "LOW"},
                          {"vulnerabilityID": "CVE-3", "severity": "weird"}, {"severity": "HIGH"}]},
     (1, 1, 0, 1, 1), frozenset({"CVE-1", "CVE-2", "CVE-3"})),
    # Hostile or broken counts count 0, never fail the inventory.
    ({"summary": {"criticalCount": "9", "highCount": -1, "mediumCount": True, "lowCount": None}}, (0, 0, 0, 0, 0), frozenset()),
    ({}, (0, 0, 0, 0, 0), frozenset()),
]


@pytest.mark.parametrize(("body", "counts", "ids"), FINDINGS)
def test_finding_counts(body: dict[str, Any], counts: tuple[int, ...], ids: frozenset[str]) -> None:
    assert vulnerabilities.finding({"report": body}) == vulnerabilities.Finding(counts, ids)


@pytest.mark.parametrize("metadata", [
    {"name": "r", "namespace": NS, "labels": {"trivy-operator.resource.kind": "Pod", "trivy-operator.resource.name": "debug"}},
    {"name": "r", "namespace": NS, "labels": {"trivy-operator.container.name": "main"}},
    {"name": "r", "namespace": NS, "labels": "not a mapping"},
])
def test_reports_naming_no_container_or_workload_are_ignored(metadata: dict[str, Any]) -> None:
    index = vulnerabilities.ReportIndex([{"metadata": metadata, "report": {"summary": {"criticalCount": 1}}}])
    assert index.ignored == 1
    assert index.summary(pod("debug")) == ZERO


def build(snapshot: dict[str, Any], enabled: bool = True) -> builder.InventoryModel:
    settings = builder.BuildSettings(host_format=naming.validate_host_format({}), vulnerabilities=enabled)
    return builder.build({"lab": snapshot}, settings)


def test_builder_gives_pods_their_summary_and_leaves_services_and_nodes_alone() -> None:
    objects = [k8s.node("n1", "172.18.0.1", "10.0.0.0/24"), deployment_pod(), pod("debug"),
               k8s.service("web", NS, {"app": "web"}, [{"port": 80}])]
    snapshot = {"Node": [objects[0]], "Pod": objects[1:3], "Service": [objects[3]],
                "VulnerabilityReport": [report("ReplicaSet", "web-7d9f8b6c5d", critical=1, ids=("CVE-2024-3094",))]}
    model = build(snapshot)
    assert model.hosts["web-7d9f8b6c5d-x2x7q.shop.pod.lab"]["workload"]["vulnerabilities"] == summary(critical=1, ids=("CVE-2024-3094",))
    assert model.hosts["debug.shop.pod.lab"]["workload"]["vulnerabilities"] == ZERO
    assert "vulnerabilities" not in model.hosts["web.shop.service.lab"]["workload"]
    assert "vulnerabilities" not in model.hosts["n1"]["workload"]
    assert model.warnings == []
    assert "vulnerabilities" not in build(snapshot, enabled=False).hosts["debug.shop.pod.lab"]["workload"]


def test_builder_warns_for_a_cluster_without_the_crd() -> None:
    snapshot = {"Pod": [pod("debug")], vulnerabilities.ABSENT_KEY: [{"cause": "GET /apis/... answered 404 Not Found"}]}
    model = build(snapshot)
    assert model.warnings == [
        "cluster 'lab': VulnerabilityReports (aquasecurity.github.io/v1alpha1) are not served (GET /apis/... answered 404 Not Found); "
        "is trivy-operator installed? Pods get no vulnerability summary, so vuln.* conditions match none of them"
    ]
    assert "vulnerabilities" not in model.hosts["debug.shop.pod.lab"]["workload"]


@pytest.fixture(scope="module")
def reports_api() -> Iterator[KubeApiServer]:
    objects = [k8s.namespace(NS), pod("debug")] + [report("Pod", f"p{index}", critical=index) for index in range(7)]
    server = start_server(objects)
    yield server
    server.stop()


def client_for(server: KubeApiServer) -> api.ClusterClient:
    return api.ClusterClient(ClusterConnection(name="lab", server=server.url, token=server.token, ca_file=server.ca_file), timeout=5.0)


def test_fetch_reports_paginates(reports_api: KubeApiServer) -> None:
    client = client_for(reports_api)
    snapshot = vulnerabilities.fetch_reports(client, page_size=3)
    assert sorted(item["metadata"]["name"] for item in snapshot["VulnerabilityReport"]) == [f"pod-p{index}-main" for index in range(7)]
    assert client.requests_made == 3


def test_fetch_reports_absent_crd_is_a_warning_not_a_failure(reports_api: KubeApiServer) -> None:
    reports_api.faults.add(r"/apis/aquasecurity\.github\.io/", status=404)
    try:
        snapshot = vulnerabilities.fetch_reports(client_for(reports_api), page_size=3)
    finally:
        reports_api.faults.clear()
    cause = "GET /apis/aquasecurity.github.io/v1alpha1/vulnerabilityreports answered 404 Not Found"
    assert snapshot == {vulnerabilities.ABSENT_KEY: [{"cause": cause}]}


def test_fetch_reports_forbidden_fails_naming_rbac(reports_api: KubeApiServer) -> None:
    reports_api.faults.add(r"/apis/aquasecurity\.github\.io/", status=403)
    try:
        with pytest.raises(ApiCallError) as caught:
            vulnerabilities.fetch_reports(client_for(reports_api), page_size=3)
    finally:
        reports_api.faults.clear()
    assert "403 Forbidden" in str(caught.value) and "docs/rbac.md" in str(caught.value)

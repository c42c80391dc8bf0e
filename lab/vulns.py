# SPDX-License-Identifier: GPL-3.0-or-later
"""trivy-operator's VulnerabilityReports in the lab: the scenario key, the manifests, the live command.

A scenario may list findings per pod under ``vulnerabilities:``::

    vulnerabilities:
      - {pod: wordpress/wordpress-mysql-5b58bbd695-gxtc4, critical: 1, high: 2, ids: [CVE-2024-3094]}

The emulated API serves each as the VulnerabilityReport trivy-operator would write: named
``<kind>-<workload>-<container>`` in the pod's namespace, labelled with the workload and the
container, owned by the workload, with the summary counts and one entry per ID. The workload is
the pod's controller as the lab's Pod objects name it (:func:`pod_owner`): the ReplicaSet for a
Deployment-style name (``<deployment>-<hash>-<suffix>``), else the pod itself.

``python -m lab vuln-report POD --critical N ...`` adds or replaces a report in the running lab
through the real API, as trivy-operator does when a rescan finds something new.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.errors import ScenarioError

if TYPE_CHECKING:
    from lab.scenario import Pod, Scenario

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
FIELDS = ("pod", "container", *SEVERITIES, "ids")
SCANNED_AT = "2026-11-27T00:05:00Z"
_DEPLOYMENT_POD = re.compile(r"^(?P<replicaset>[a-z0-9.-]+-[a-z0-9]{6,10})-[a-z0-9]{5}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


@dataclass(frozen=True)
class Finding:
    """One container's scan result."""

    pod: str  # namespace/name
    container: str
    counts: Mapping[str, int]
    ids: tuple[str, ...] = ()


def container_name(pod: Pod) -> str:
    """The lab pod's one container: its name without the ReplicaSet hash and pod suffix (as lab/objects.py names it)."""
    return pod.name.rsplit("-", 2)[0] if pod.name.count("-") >= 2 else pod.name


def pod_owner(pod: Pod) -> tuple[str, str]:
    """The pod's controller ``(kind, name)``: its ReplicaSet for a Deployment-style name, else ``("Pod", name)``."""
    match = _DEPLOYMENT_POD.match(pod.name)
    if match:
        return "ReplicaSet", match.group("replicaset")
    return "Pod", pod.name


def parse_findings(raw: Any, pods: Sequence[Pod], path: str = "vulnerabilities") -> tuple[Finding, ...]:
    """Validate the scenario key; every error names the field path and the offending text."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ScenarioError(f"{path}: expected a list of findings ({{pod: NS/NAME, critical: N, ...}}), got {type(raw).__name__}")
    by_key = {pod.key: pod for pod in pods}
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: expected a mapping, got {type(item).__name__}")
        unknown = sorted(set(map(str, item)) - set(FIELDS))
        if unknown:
            raise ScenarioError(f"{where}.{unknown[0]}: unknown field; allowed fields: {', '.join(FIELDS)}")
        key = item.get("pod")
        if key not in by_key:
            raise ScenarioError(f"{where}.pod: unknown pod {key!r}; known pods: {', '.join(by_key)}")
        pod = by_key[key]
        container = item.get("container", container_name(pod))
        if container != container_name(pod):
            raise ScenarioError(f"{where}.container: pod {key} has one container, {container_name(pod)!r}, not {container!r}")
        counts: dict[str, int] = {}
        for severity in SEVERITIES:
            count = item.get(severity, 0)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ScenarioError(f"{where}.{severity}: expected a whole number >= 0, got {count!r}")
            counts[severity] = count
        ids = item.get("ids", [])
        if not isinstance(ids, list) or not all(isinstance(vid, str) and _ID.match(vid) for vid in ids):
            raise ScenarioError(f"{where}.ids: expected a list of vulnerability IDs such as CVE-2024-3094, got {ids!r}")
        if len(ids) > sum(counts.values()):
            raise ScenarioError(f"{where}.ids: {len(ids)} IDs but only {sum(counts.values())} findings counted")
        if (pod.key, container) in seen:
            raise ScenarioError(f"{where}: a second finding for pod {key} container {container}; one report per container")
        seen.add((pod.key, container))
        findings.append(Finding(pod=pod.key, container=container, counts=counts, ids=tuple(ids)))
    return tuple(findings)


def report_manifest(scenario: Scenario, finding: Finding) -> dict[str, Any]:
    """The VulnerabilityReport trivy-operator would write for this finding."""
    from lab.objects import object_uid  # noqa: PLC0415 - objects imports this module for pod_owner

    pod = scenario.pod(finding.pod)
    kind, name = pod_owner(pod)
    severities = [severity.upper() for severity in SEVERITIES for _ in range(finding.counts[severity])]
    return {
        "apiVersion": "aquasecurity.github.io/v1alpha1",
        "kind": "VulnerabilityReport",
        "metadata": {
            "name": f"{kind.lower()}-{name}-{finding.container}",
            "namespace": pod.namespace,
            "labels": {
                "trivy-operator.resource.kind": kind,
                "trivy-operator.resource.name": name,
                "trivy-operator.resource.namespace": pod.namespace,
                "trivy-operator.container.name": finding.container,
            },
            "ownerReferences": [{"apiVersion": "v1" if kind == "Pod" else "apps/v1", "kind": kind, "name": name, "controller": True,
                                 "blockOwnerDeletion": False, "uid": object_uid(scenario.cluster.name, kind, pod.namespace, name)}],
        },
        "report": {
            "updateTimestamp": SCANNED_AT,
            "artifact": {"repository": "zerotrust.lab/listener", "tag": "1"},
            "registry": {"server": "zerotrust.lab"},
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.57.0"},
            "summary": {f"{severity}Count": finding.counts[severity] for severity in SEVERITIES},
            "vulnerabilities": [
                {"vulnerabilityID": vid, "severity": severity, "resource": "lab-package", "installedVersion": "1.0", "fixedVersion": "1.1"}
                for vid, severity in zip(finding.ids, severities, strict=False)
            ],
        },
    }


def report_manifests(scenario: Scenario) -> list[dict[str, Any]]:
    """Every report of the scenario's ``vulnerabilities`` key."""
    return [report_manifest(scenario, finding) for finding in scenario.vulnerabilities]


def add_report(scenario: Scenario, state: dict[str, Any], raw: Mapping[str, Any]) -> str:
    """Add or replace one pod's report in the running lab through the real API (``python -m lab vuln-report``).

    The finding is recorded in the lab's state (``vuln_reports``), which :func:`live_findings`
    applies on top of the scenario, so the probe compares with what the policy now implies.
    """
    from lab import kubeapi  # noqa: PLC0415 - needs the kubernetes client
    from lab.build import write_state  # noqa: PLC0415 - build imports the scenario, which imports this module

    finding = parse_findings([dict(raw)], scenario.pods, "vuln-report")[0]
    kubeconfig = state.get("kubeconfig")
    if not kubeconfig:
        raise ScenarioError("the lab has no emulated API (no kubeconfig in its state); run `python -m lab up` first")
    done = kubeapi.apply_objects(kubeconfig, [report_manifest(scenario, finding)], context=scenario.cluster.name)
    state.setdefault("vuln_reports", {})[f"{finding.pod}/{finding.container}"] = {
        "pod": finding.pod, "container": finding.container, **finding.counts, "ids": list(finding.ids)}
    write_state(state)
    return ", ".join(done)


def live_findings(scenario: Scenario, state: Mapping[str, Any]) -> Scenario:
    """The scenario with the reports ``vuln-report`` added in the running lab (each replaces the pod's container's).

    Its ``expect.allow`` no longer holds once a finding changed, so it is dropped: the probe then
    compares with the table the policy implies for the live findings.
    """
    import dataclasses  # noqa: PLC0415

    live = state.get("vuln_reports") or {}
    if not live:
        return scenario
    findings = {(finding.pod, finding.container): finding for finding in scenario.vulnerabilities}
    for raw in parse_findings(list(live.values()), scenario.pods, "state vuln_reports"):
        findings[(raw.pod, raw.container)] = raw
    return dataclasses.replace(scenario, vulnerabilities=tuple(findings.values()), expect_allow=None)


def pod_summary(scenario: Scenario, pod: Pod) -> dict[str, Any]:
    """The ``workload.vulnerabilities`` the inventory derives for a lab pod from the scenario's reports."""
    findings = [finding for finding in scenario.vulnerabilities if finding.pod == pod.key]
    summary: dict[str, Any] = {severity: sum(finding.counts[severity] for finding in findings) for severity in SEVERITIES}
    summary["ids"] = sorted({vid for finding in findings for vid in finding.ids})
    summary["scanned"] = bool(findings)
    return summary

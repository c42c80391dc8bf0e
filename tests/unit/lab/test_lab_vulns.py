# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's VulnerabilityReports: the scenario key, the manifests, the join, the quarantine scenario's tables."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api, vulnerabilities
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import ClusterConnection

from lab.errors import ScenarioError
from lab.expected import expected_from_policy, scenario_hostvars
from lab.kubeapi import start_server
from lab.objects import pod_manifest, scenario_objects
from lab.probes import BLOCKED, CONNECTED, expected_from_allow, mismatches, probe_matrix
from lab.scenario import build_scenario, load_scenario
from lab.system import REPO_ROOT
from lab.vulns import Finding, parse_findings, pod_owner, report_manifest

VULNERABLE = REPO_ROOT / "lab" / "scenarios" / "vulnerable.yml"
SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"
FRONTEND = "wordpress/wordpress-6dfdd9f64f-d75j2"
DB = "wordpress/wordpress-mysql-5b58bbd695-gxtc4"


def with_findings(findings: Any) -> dict[str, Any]:
    document = yaml.safe_load(SEED.read_text())
    document["vulnerabilities"] = findings
    return document


@pytest.mark.parametrize(("findings", "message"), [
    ("lots", "vulnerabilities: expected a list of findings"),
    ([{"pod": "wordpress/nope", "critical": 1}], "vulnerabilities[0].pod: unknown pod 'wordpress/nope'; known pods: "),
    ([{"pod": DB, "critical": -1}], "vulnerabilities[0].critical: expected a whole number >= 0, got -1"),
    ([{"pod": DB, "high": "2"}], "vulnerabilities[0].high: expected a whole number >= 0, got '2'"),
    ([{"pod": DB, "critical": 1, "severity": "x"}], "vulnerabilities[0].severity: unknown field; allowed fields: pod, container,"),
    ([{"pod": DB, "container": "php"}], "vulnerabilities[0].container: pod " + DB + " has one container, 'wordpress-mysql', not 'php'"),
    ([{"pod": DB, "critical": 1, "ids": ["CVE-1; rm -rf /"]}], "vulnerabilities[0].ids: expected a list of vulnerability IDs"),
    ([{"pod": DB, "critical": 1, "ids": ["CVE-1", "CVE-2"]}], "vulnerabilities[0].ids: 2 IDs but only 1 findings counted"),
    ([{"pod": DB, "critical": 1}, {"pod": DB, "low": 1}], "vulnerabilities[1]: a second finding for pod " + DB),
])
def test_bad_findings_name_the_field(findings: Any, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        build_scenario(with_findings(findings))
    assert message in str(caught.value)


@pytest.mark.parametrize(("pod", "owner"), [
    ("wordpress-6dfdd9f64f-d75j2", ("ReplicaSet", "wordpress-6dfdd9f64f")),
    ("coredns-7c65d6cfc9-zt5lb", ("ReplicaSet", "coredns-7c65d6cfc9")),
    ("db-0", ("Pod", "db-0")),
    ("debug", ("Pod", "debug")),
])
def test_pod_owner(pod: str, owner: tuple[str, str]) -> None:
    scenario = load_scenario(SEED)
    assert pod_owner(dataclasses.replace(scenario.pods[0], name=pod)) == owner


def test_reports_join_back_to_the_lab_pods_as_the_inventory_would() -> None:
    """The served reports, joined by the plugin's code to the served pods, give the summary the oracle assumes."""
    scenario = load_scenario(VULNERABLE)
    objects = scenario_objects(scenario)
    reports = [obj for obj in objects if obj["kind"] == "VulnerabilityReport"]
    assert [obj["metadata"]["name"] for obj in reports] == [
        "replicaset-wordpress-mysql-5b58bbd695-wordpress-mysql", "replicaset-wordpress-6dfdd9f64f-wordpress"]
    index = vulnerabilities.ReportIndex(reports)
    hostvars = scenario_hostvars(scenario)
    for pod in scenario.pods:
        host = f"{pod.name}.{pod.namespace}.pod.{scenario.cluster.name}"
        assert index.summary(pod_manifest(scenario, pod)) == hostvars[host]["workload"]["vulnerabilities"], pod.key
    assert hostvars[f"{DB.split('/')[1]}.wordpress.pod.lab"]["workload"]["vulnerabilities"] == {
        "critical": 1, "high": 2, "medium": 0, "low": 0, "unknown": 0, "ids": ["CVE-2023-44487", "CVE-2024-2511", "CVE-2024-6387"],
        "scanned": True}


def test_the_emulated_api_serves_reports_paginated() -> None:
    scenario = load_scenario(VULNERABLE)
    with start_server(scenario_objects(scenario)) as server:
        client = api.ClusterClient(ClusterConnection(name="lab", server=server.url, token=server.token, ca_file=server.ca_file))
        snapshot = vulnerabilities.fetch_reports(client, page_size=1)
    assert len(snapshot["VulnerabilityReport"]) == 2 and client.requests_made == 2


def test_the_scenario_policy_quarantines_exactly_the_critical_pod() -> None:
    scenario = load_scenario(VULNERABLE)
    probes = probe_matrix(scenario)
    from_policy = expected_from_policy(scenario, probes)
    assert mismatches(expected_from_allow(probes, scenario.expect_allow or ()), from_policy) == []
    frontend_to_db = f"pod:{FRONTEND} -> pod:{DB}:tcp/3306"
    assert from_policy[frontend_to_db] == BLOCKED  # the seed allows it; the quarantine wins
    assert expected_from_policy(load_scenario(SEED), probe_matrix(load_scenario(SEED)))[frontend_to_db] == CONNECTED
    assert from_policy["vm:haproxy -> nodeport:wordpress/wordpress:tcp/80"] == CONNECTED


def test_a_new_critical_finding_quarantines_the_frontend_too() -> None:
    scenario = load_scenario(VULNERABLE)
    rescanned = dataclasses.replace(scenario, vulnerabilities=(
        *scenario.vulnerabilities[:1], Finding(pod=FRONTEND, container="wordpress", counts={"critical": 1, "high": 0, "medium": 1, "low": 0,
                                                                                             "unknown": 0}, ids=("CVE-2024-3094",))))
    table = expected_from_policy(rescanned, probe_matrix(rescanned))
    # HAProxy is cut off through every node, the pod's own node too: the connection masqueraded there to the
    # node's gateway meets the absolute deny before the implicit node-to-pods allowance (docs/semantics.md).
    assert table["vm:haproxy -> nodeport:wordpress/wordpress:tcp/80"] == BLOCKED
    assert table[f"pod:{DB} -> pod:{FRONTEND}:tcp/80"] == BLOCKED
    assert report_manifest(rescanned, rescanned.vulnerabilities[1])["report"]["summary"]["criticalCount"] == 1


def test_parse_findings_default_container_and_empty() -> None:
    scenario = load_scenario(SEED)
    assert parse_findings(None, scenario.pods) == ()
    assert parse_findings([{"pod": DB}], scenario.pods)[0].container == "wordpress-mysql"

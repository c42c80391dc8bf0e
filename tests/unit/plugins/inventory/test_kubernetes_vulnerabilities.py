# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""``vulnerabilities: trivy`` through ansible-inventory against the emulated API; its RBAC role."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import vulnerabilities

from lab.kubeapi import start_server, write_kubeconfig
from lab.objects import scenario_objects
from lab.scenario import load_scenario
from tests.unit.plugins.inventory.test_kubernetes import REPO, ansible_inventory, inventory_list, write_config

FRONTEND = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"
DB = "wordpress-mysql-5b58bbd695-gxtc4.wordpress.pod.lab"
DNS = "coredns-7c65d6cfc9-zt5lb.kube-system.pod.lab"


def test_pods_get_their_summary_from_the_reports(tmp_path: Path) -> None:
    objects = scenario_objects(load_scenario(REPO / "lab" / "scenarios" / "vulnerable.yml"))
    with start_server(objects) as api:
        kubeconfig = write_kubeconfig(api, tmp_path / "kubeconfig", "lab")
        listed = inventory_list(write_config(tmp_path, connections=[{"kubeconfig": str(kubeconfig), "context": "lab"}],
                                             vulnerabilities="trivy", page_size=1))
        connections = [{"kubeconfig": str(kubeconfig), "context": "lab"}]
        plain = inventory_list(write_config(tmp_path, "plain.kubernetes.yml", connections=connections))
    hostvars = listed["_meta"]["hostvars"]
    assert hostvars[DB]["workload"]["vulnerabilities"] == {
        "critical": 1, "high": 2, "medium": 0, "low": 0, "unknown": 0, "ids": ["CVE-2023-44487", "CVE-2024-2511", "CVE-2024-6387"],
        "scanned": True}
    assert hostvars[FRONTEND]["workload"]["vulnerabilities"] == {
        "critical": 0, "high": 0, "medium": 1, "low": 0, "unknown": 0, "ids": ["CVE-2023-5678"], "scanned": True}
    assert hostvars[DNS]["workload"]["vulnerabilities"]["scanned"] is False
    assert "vulnerabilities" not in hostvars["wordpress.wordpress.service.lab"]["workload"]
    assert all("vulnerabilities" not in host["workload"] for host in plain["_meta"]["hostvars"].values())


def test_a_cluster_without_the_crd_is_a_warning(tmp_path: Path) -> None:
    objects = scenario_objects(load_scenario(REPO / "lab" / "scenarios" / "seed.yml"))
    with start_server(objects) as api:
        api.faults.add(r"^/apis/aquasecurity\.github\.io/", status=404)
        kubeconfig = write_kubeconfig(api, tmp_path / "kubeconfig", "lab")
        result = ansible_inventory("-i", str(write_config(tmp_path, connections=[{"kubeconfig": str(kubeconfig), "context": "lab"}],
                                                          vulnerabilities="trivy")), "--list")
    assert result.returncode == 0, result.stderr
    warning = " ".join(result.stderr.split())
    assert ("cluster 'lab': VulnerabilityReports (aquasecurity.github.io/v1alpha1) are not served (GET "
            "/apis/aquasecurity.github.io/v1alpha1/vulnerabilityreports answered 404 Not Found); is trivy-operator installed?") in warning
    assert FRONTEND in result.stdout


def test_forbidden_reports_fail_the_inventory_naming_rbac(tmp_path: Path) -> None:
    objects = scenario_objects(load_scenario(REPO / "lab" / "scenarios" / "seed.yml"))
    with start_server(objects) as api:
        api.faults.add(r"^/apis/aquasecurity\.github\.io/", status=403)
        kubeconfig = write_kubeconfig(api, tmp_path / "kubeconfig", "lab")
        result = ansible_inventory("-i", str(write_config(tmp_path, connections=[{"kubeconfig": str(kubeconfig), "context": "lab"}],
                                                          vulnerabilities="trivy")), "--list")
    assert result.returncode != 0
    assert "vulnerabilityreports?limit=500 failed: the API refused the request (403 Forbidden): grant get/list/watch" in result.stderr


def test_rbac_role_grants_exactly_the_reports() -> None:
    text = (REPO / "docs" / "rbac.md").read_text()
    documents = [doc for block in text.split("```yaml")[1:] for doc in yaml.safe_load_all(block.split("```")[0]) if doc]
    roles = [doc for doc in documents if doc.get("kind") == "ClusterRole"]
    role = next(doc for doc in roles if doc["metadata"]["name"] == "zerotrust-vulnerability-reader")
    kind = vulnerabilities.VULNERABILITY_REPORTS
    assert role["rules"] == [{"apiGroups": [kind.path.split("/")[2]], "resources": [kind.plural], "verbs": ["get", "list", "watch"]}]

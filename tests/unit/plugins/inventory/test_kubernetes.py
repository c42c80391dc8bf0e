# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The inventory plugin end to end: ansible-inventory against the emulated API over HTTPS."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.zerotrust.workloads.plugins.inventory.kubernetes import InventoryModule
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api

from lab.kubeapi import KubeApiServer, start_server, write_kubeconfig
from tests.unit.plugins.module_utils._kubernetes import k8s_factories as k8s

REPO = Path(__file__).resolve().parents[4]
POD = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"
SERVICE = "wordpress.wordpress.service.lab"


def unwrap(value: Any) -> Any:
    """Drop ansible-core 2.21's ``{"__ansible_unsafe": ...}`` wrappers from --list output."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def ansible_inventory(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ansible-inventory from the repository root (ansible.cfg finds the collection there)."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("K8S_AUTH_")}
    environ.update(env or {})
    environ["ANSIBLE_INVENTORY_ENABLED"] = "zerotrust.workloads.kubernetes,yaml,ini"
    # As AWX and CI should: a source that fails to parse fails the command instead of a warning.
    environ["ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"] = "true"
    return subprocess.run([str(REPO / ".venv/bin/ansible-inventory"), *args], cwd=REPO, env=environ, capture_output=True, text=True,
                          timeout=120, check=False)


def inventory_list(path: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = ansible_inventory("-i", str(path), "--list", *extra, env=env)
    assert result.returncode == 0, result.stderr
    return unwrap(json.loads(result.stdout))  # type: ignore[no-any-return]


def write_config(tmp_path: Path, name: str = "lab.kubernetes.yml", **options: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"plugin": "zerotrust.workloads.kubernetes", **options}))
    return path


@pytest.fixture
def kube_api() -> Iterator[KubeApiServer]:
    with start_server(k8s.seed()) as api:
        yield api


@pytest.fixture
def kubeconfig(kube_api: KubeApiServer, tmp_path: Path) -> Path:
    return write_kubeconfig(kube_api, tmp_path / "kubeconfig", "lab")


@pytest.mark.parametrize(
    ("name", "ours"),
    [("lab.kubernetes.yml", True), ("lab.kubernetes.yaml", True), ("kubernetes.yml", False), ("lab.k8s.yml", True), ("lab.yml", False)],
)
def test_verify_file_checks_the_suffix(tmp_path: Path, name: str, ours: bool) -> None:
    (tmp_path / name).write_text("plugin: zerotrust.workloads.kubernetes\n")
    assert InventoryModule().verify_file(str(tmp_path / name)) is ours


def test_list_has_hosts_groups_and_records(kubeconfig: Path, tmp_path: Path) -> None:
    data = inventory_list(write_config(tmp_path, connections=[{"kubeconfig": str(kubeconfig), "context": "lab"}]))
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == sorted(["k8s-master", "k8s-node1", "k8s-node2", "k8s-node3", POD,
                                       "wordpress-mysql-5b58bbd695-gxtc4.wordpress.pod.lab", SERVICE])
    assert data["service_wordpress_wordpress"]["hosts"] == [POD]
    assert hostvars[SERVICE]["workload"]["ports"] == [
        {"name": "http", "port": 80, "target_port": 80, "node_port": 30358, "protocol": "TCP"},
    ]
    assert hostvars[POD]["ansible_host"] == "172.18.221.11" and hostvars[POD]["zt_enforce_host"] == "k8s-node1"
    assert "token" not in json.dumps(hostvars).lower()


def test_constructed_compose_groups_and_keyed_groups(kubeconfig: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        connections=[{"kubeconfig": str(kubeconfig)}],
        compose={"zt_app": "workload.labels.app | default('none')"},
        groups={"frontends": "workload.labels.tier | default('') == 'frontend'"},
        keyed_groups=[{"key": "workload.kind", "prefix": "kind"}, {"key": "zt_app", "prefix": "app"}],
        strict=True,
    )
    data = inventory_list(config)
    assert data["frontends"]["hosts"] == [POD]
    assert sorted(data["kind_service"]["hosts"]) == [SERVICE]
    assert len(data["kind_node"]["hosts"]) == 4
    assert sorted(data["app_wordpress"]["hosts"]) == sorted([POD, "wordpress-mysql-5b58bbd695-gxtc4.wordpress.pod.lab", SERVICE])
    assert data["_meta"]["hostvars"]["k8s-node1"]["zt_app"] == "none"


def test_cache_hit_rebuilds_hosts_and_constructed_groups_without_the_api(kube_api: KubeApiServer, kubeconfig: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        connections=[{"kubeconfig": str(kubeconfig)}],
        keyed_groups=[{"key": "workload.kind", "prefix": "kind"}],
        cache=True, cache_plugin="ansible.builtin.jsonfile", cache_connection=str(tmp_path / "cache"),
    )
    first = inventory_list(config)
    kube_api.stop()
    second = inventory_list(config)
    assert second == first
    assert second["kind_pod"]["hosts"] and second["service_wordpress_wordpress"]["hosts"] == [POD]
    cached = json.dumps([json.loads(path.read_text()) for path in (tmp_path / "cache").iterdir()])
    assert kube_api.token not in cached
    refreshed = ansible_inventory("-i", str(config), "--list", "--flush-cache")
    # The API (and its CA file) are gone: a refresh must fail, not serve the stale cache.
    assert refreshed.returncode != 0 and "cluster 'lab': cannot load the CA certificate" in " ".join(refreshed.stderr.split())


def test_connection_from_k8s_auth_variables(kube_api: KubeApiServer, tmp_path: Path) -> None:
    env = {"K8S_AUTH_HOST": kube_api.url, "K8S_AUTH_API_KEY": kube_api.token, "K8S_AUTH_SSL_CA_CERT": str(kube_api.ca_file)}
    data = inventory_list(write_config(tmp_path), env=env)
    assert POD.replace(".lab", ".127-0-0-1") in data["_meta"]["hostvars"]


def test_api_failure_fails_the_whole_inventory_without_the_token(kube_api: KubeApiServer, kubeconfig: Path, tmp_path: Path) -> None:
    kube_api.faults.add(r"/api/v1/services$", status=403)
    result = ansible_inventory("-i", str(write_config(tmp_path, connections=[{"kubeconfig": str(kubeconfig)}])), "--list")
    assert result.returncode != 0
    flat = " ".join(result.stderr.split())
    assert f"cluster 'lab': GET {kube_api.url}/api/v1/services?limit=500 failed: the API refused the request (403 Forbidden)" in flat
    assert kube_api.token not in result.stderr + result.stdout
    assert POD not in result.stdout


def test_selectors_reach_the_api(kubeconfig: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, connections=[{"kubeconfig": str(kubeconfig)}], kinds=["pods"],
                          label_selectors={"pods": "tier in (mysql)"}, field_selectors={"pods": "spec.nodeName=k8s-node3"})
    data = inventory_list(config)
    assert sorted(data["_meta"]["hostvars"]) == ["wordpress-mysql-5b58bbd695-gxtc4.wordpress.pod.lab"]


def test_bad_options_are_reported(kubeconfig: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, connections=[{"kubeconfig": str(kubeconfig)}], host_format={"pod": "{nme}"})
    result = ansible_inventory("-i", str(config), "--list")
    assert result.returncode != 0
    assert "host_format.pod '{nme}': placeholder {nme} is not allowed" in " ".join(result.stderr.split())


def test_templates_in_cluster_metadata_are_never_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "evaluated"
    evil = "{{ lookup('ansible.builtin.pipe', 'touch " + str(marker) + "') }}"
    objects = [*k8s.seed(), k8s.pod("evil", "wordpress", "k8s-node1", "10.244.1.66", {"app": "evil", "note": "x"})]
    objects[-1]["metadata"]["annotations"] = {"note": evil}
    with start_server(objects) as api:
        config = write_config(tmp_path, connections=[{"kubeconfig": str(write_kubeconfig(api, tmp_path / "kubeconfig", "lab"))}],
                              compose={"zt_note": "workload.annotations.note"})
        environ = {key: value for key, value in os.environ.items() if not key.startswith("K8S_AUTH_")}
        argv = [str(REPO / ".venv/bin/ansible"), "-i", str(config), "evil.wordpress.pod.lab",
                "-m", "ansible.builtin.debug", "-a", "var=zt_note"]
        result = subprocess.run(argv, cwd=REPO, env=environ, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert evil in result.stdout
    assert not marker.exists()


def test_rbac_manifest_grants_exactly_what_the_plugin_reads() -> None:
    text = (REPO / "docs" / "rbac.md").read_text()
    documents = [doc for block in text.split("```yaml")[1:] for doc in yaml.safe_load_all(block.split("```")[0]) if doc]
    role = next(doc for doc in documents if doc.get("kind") == "ClusterRole" and doc["metadata"]["name"] == "zerotrust-inventory-reader")
    granted = {(group, resource) for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]}
    read = {(kind.path.split("/")[2] if kind.path.startswith("/apis/") else "", kind.plural) for kind in api.ALL_KINDS}
    assert granted == read
    assert all(sorted(rule["verbs"]) == ["get", "list", "watch"] for rule in role["rules"])

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Integration: `python -m lab.kubeapi serve` in its own process, real HTTPS, the real ansible CLIs.

No mocks: the emulated API runs out of process as the lab runs it, faults are injected through its
/_lab/faults endpoint, objects change through `python -m lab.kubeapi apply` (the kubernetes client).
All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.kubeapi import write_kubeconfig
from tests.unit.plugins.module_utils._kubernetes import k8s_factories as k8s

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv/bin/python")
POD = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"
MYSQL = "wordpress-mysql-5b58bbd695-gxtc4.wordpress.pod.lab"
SERVICE = "wordpress.wordpress.service.lab"


class Api:
    """A `python -m lab.kubeapi serve` process and its endpoint."""

    def __init__(self, state_dir: Path, objects: list[dict[str, Any]]) -> None:
        self.state_dir = state_dir
        objects_file = state_dir / "objects.json"
        state_dir.mkdir(parents=True, exist_ok=True)
        objects_file.write_text(json.dumps(objects))
        argv = [PYTHON, "-m", "lab.kubeapi", "serve", "--state-dir", str(state_dir), "--objects", str(objects_file)]
        self.process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        endpoint = state_dir / "endpoint.json"
        deadline = time.monotonic() + 30
        while not endpoint.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulated API did not start: {self.process.stderr.read() if self.process.stderr else ''}")
            time.sleep(0.05)
        self.endpoint = json.loads(endpoint.read_text())

    def admin(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call /_lab/faults over HTTPS with the server's CA and token."""
        context = ssl.create_default_context(cafile=self.endpoint["ca_file"])
        headers = {"Authorization": f"Bearer {self.endpoint['token']}", "Content-Type": "application/json"}
        data = json.dumps(body).encode() if body else None
        request = urllib.request.Request(f"{self.endpoint['url']}/_lab/faults", method=method, data=data, headers=headers)  # noqa: S310
        assert request.full_url.startswith("https://127.0.0.1:")  # loopback only
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310 - https on loopback, checked above
            return json.loads(response.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ansible(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("K8S_AUTH_")}
    environ["ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"] = "true"
    argv = [str(REPO / ".venv/bin" / tool), *args]
    return subprocess.run(argv, cwd=REPO, env=environ, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def lab_api(tmp_path: Path) -> Iterator[Api]:
    api = Api(tmp_path / "kubeapi", k8s.seed())
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def inventory_files(lab_api: Api, tmp_path: Path) -> tuple[Path, Path]:
    kubeconfig = write_kubeconfig(lab_api.state_dir / "endpoint.json", tmp_path / "kubeconfig", "lab")
    config = tmp_path / "lab.kubernetes.yml"
    connections = [{"kubeconfig": str(kubeconfig), "context": "lab"}]
    config.write_text(yaml.safe_dump({"plugin": "zerotrust.workloads.kubernetes", "connections": connections}))
    vms = tmp_path / "vms.yml"
    vms.write_text(yaml.safe_dump({"all": {"children": {"vms": {"hosts": {
        "haproxy": {"ansible_host": "172.18.221.1", "zt_labels": {"role": "lb"}},
        "outsider": {"ansible_host": "172.18.221.99"},
    }}}}}))
    return config, vms


def graph_groups(text: str) -> dict[str, list[str]]:
    """Parse `ansible-inventory --graph` into {group: direct hosts}."""
    groups: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        name = re.sub(r"^[\s|-]+", "", line).strip()
        if name.startswith("@"):
            current = name[1:-1]
            groups.setdefault(current, [])
        elif name:
            groups[current].append(name)
    return groups


def test_graph_puts_pods_services_nodes_and_vms_side_by_side(inventory_files: tuple[Path, Path]) -> None:
    config, vms = inventory_files
    result = ansible("ansible-inventory", "-i", str(config), "-i", str(vms), "--graph")
    assert result.returncode == 0, result.stderr
    groups = graph_groups(result.stdout)
    assert groups["vms"] == ["haproxy", "outsider"]
    assert groups["k8s_pods"] == [POD, MYSQL]
    assert groups["k8s_services"] == [SERVICE]
    assert groups["k8s_nodes"] == ["k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"]
    assert groups["service_wordpress_wordpress"] == [POD]
    assert groups["k8s_node_k8s_node1"] == [POD]
    assert groups["k8s_namespace_wordpress"] == [POD, MYSQL, SERVICE]
    assert groups["label_tier_frontend"] == [POD]


def test_host_shows_the_service_workload_with_its_nodeport(inventory_files: tuple[Path, Path]) -> None:
    config, _vms = inventory_files
    result = ansible("ansible-inventory", "-i", str(config), "--host", SERVICE)
    assert result.returncode == 0, result.stderr
    workload = json.loads(result.stdout)["workload"]
    assert workload["ports"] == [{"name": "http", "port": 80, "target_port": 80, "node_port": 30358, "protocol": "TCP"}]
    assert (workload["type"], workload["cluster_ips"]) == ("NodePort", ["172.18.202.253"])
    assert workload["selector"] == {"app": "wordpress", "tier": "frontend"}
    assert workload["endpoints"][0]["pod"] == "wordpress/wordpress-6dfdd9f64f-d75j2"


def test_a_play_against_a_service_fails_at_once_with_a_clear_message(inventory_files: tuple[Path, Path]) -> None:
    config, _vms = inventory_files
    started = time.monotonic()
    result = ansible("ansible", "-i", str(config), SERVICE, "-m", "ansible.builtin.ping")
    assert result.returncode != 0
    assert time.monotonic() - started < 30
    assert (f"{SERVICE} is a Kubernetes Service, a logical host: target its pods (group service_wordpress_wordpress) or its nodes"
            in result.stdout + result.stderr)


def test_changes_applied_through_the_api_show_up(lab_api: Api, inventory_files: tuple[Path, Path], tmp_path: Path) -> None:
    config, _vms = inventory_files
    moved = k8s.pod("wordpress-6dfdd9f64f-d75j2", "wordpress", "k8s-node2", "10.244.2.7", {"app": "wordpress", "tier": "frontend"})
    new = k8s.pod("wordpress-6dfdd9f64f-zzzzz", "wordpress", "k8s-node3", "10.244.3.9", {"app": "wordpress", "tier": "frontend"})
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps([moved, new]))
    applied = subprocess.run([PYTHON, "-m", "lab.kubeapi", "apply", "--kubeconfig", str(tmp_path / "kubeconfig"), str(changes)],
                             cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        "replaced Pod wordpress/wordpress-6dfdd9f64f-d75j2",
        "created Pod wordpress/wordpress-6dfdd9f64f-zzzzz",
    ]
    result = ansible("ansible-inventory", "-i", str(config), "--graph", "service_wordpress_wordpress")
    assert graph_groups(result.stdout)["service_wordpress_wordpress"] == [POD, "wordpress-6dfdd9f64f-zzzzz.wordpress.pod.lab"]
    host = json.loads(ansible("ansible-inventory", "-i", str(config), "--host", POD).stdout)
    assert (host["ansible_host"], host["zt_enforce_host"], host["workload"]["addresses"]) == ("172.18.221.12", "k8s-node2", ["10.244.2.7"])


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ({"path": "/api/v1/pods$", "status": 401},
         "GET {url}/api/v1/pods?limit=500 failed: the API rejected the credentials (401 Unauthorized)"),
        ({"path": "/api/v1/nodes$", "body": "<html>"}, "GET {url}/api/v1/nodes?limit=500 failed: malformed response body"),
        ({"path": "/apis/discovery.k8s.io/v1/endpointslices$", "status": 404},
         "GET {url}/apis/discovery.k8s.io/v1/endpointslices?limit=500 failed: the API does not serve"),
    ],
)
def test_injected_faults_fail_the_inventory_naming_cluster_call_and_cause(
    lab_api: Api, inventory_files: tuple[Path, Path], fault: dict[str, Any], cause: str,
) -> None:
    config, vms = inventory_files
    lab_api.admin("POST", {"faults": [fault]})
    result = ansible("ansible-inventory", "-i", str(config), "-i", str(vms), "--list")
    assert result.returncode != 0
    flat = " ".join(result.stderr.split())
    assert f"cluster 'lab': {cause.format(url=lab_api.endpoint['url'])}" in flat
    assert lab_api.endpoint["token"] not in result.stderr + result.stdout
    assert lab_api.admin("GET")["faults"][0]["hits"] >= 1


def test_namespace_rbac_fallback(lab_api: Api, inventory_files: tuple[Path, Path], tmp_path: Path) -> None:
    lab_api.admin("POST", {"rbac_namespaces": ["wordpress"]})
    config, _vms = inventory_files
    forbidden = ansible("ansible-inventory", "-i", str(config), "--list")
    assert forbidden.returncode != 0 and "403 Forbidden" in forbidden.stderr
    scoped = tmp_path / "scoped.kubernetes.yml"
    scoped.write_text(yaml.safe_dump({"plugin": "zerotrust.workloads.kubernetes",
                                      "connections": [{"kubeconfig": str(tmp_path / "kubeconfig"), "namespaces": ["wordpress"]}]}))
    result = ansible("ansible-inventory", "-i", str(scoped), "--graph")
    assert result.returncode == 0, result.stderr
    assert graph_groups(result.stdout)["service_wordpress_wordpress"] == [POD]


def test_two_clusters_with_the_same_names(tmp_path: Path) -> None:
    first, second = Api(tmp_path / "one", k8s.seed()), None
    try:
        second = Api(tmp_path / "two", k8s.seed())
        connections = []
        for name, api in (("east", first), ("west", second)):
            kubeconfig = write_kubeconfig(api.state_dir / "endpoint.json", tmp_path / f"{name}.kubeconfig", name)
            connections.append({"kubeconfig": str(kubeconfig)})
        config = tmp_path / "two.kubernetes.yml"
        config.write_text(yaml.safe_dump({"plugin": "zerotrust.workloads.kubernetes", "connections": connections}))
        result = ansible("ansible-inventory", "-i", str(config), "--list")
        assert result.returncode == 0, result.stderr
        hosts = json.loads(result.stdout)["_meta"]["hostvars"]
        assert "k8s-node1.node.east" in hosts and "k8s-node1.node.west" in hosts and "k8s-node1" not in hosts
        assert POD.replace(".lab", ".east") in hosts and POD.replace(".lab", ".west") in hosts
        assert "is shared by several objects" in result.stderr
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_the_emulator_answers_like_an_api_server(lab_api: Api) -> None:
    """Cluster-wide namespace lists, kinds on lists, resourceVersion and pagination with the official client."""
    code = f"""
import json
from kubernetes import client, config
api = config.new_client_from_config(config_file={str(lab_api.state_dir / 'kc')!r})
core = client.CoreV1Api(api)
namespaces = json.loads(core.list_namespace(_preload_content=False).data)
page = json.loads(core.list_node(limit=3, _preload_content=False).data)
rest = json.loads(core.list_node(limit=3, _continue=page["metadata"]["continue"], _preload_content=False).data)
typed = core.list_pod_for_all_namespaces(label_selector="tier notin (mysql)", field_selector="status.phase=Running")
print(json.dumps([namespaces["kind"], sorted(n["metadata"]["name"] for n in namespaces["items"]), len(page["items"]), len(rest["items"]),
                  "continue" in rest["metadata"], [p.metadata.name for p in typed.items], bool(namespaces["metadata"]["resourceVersion"])]))
"""
    write_kubeconfig(lab_api.state_dir / "endpoint.json", lab_api.state_dir / "kc", "lab")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["NamespaceList", ["default", "wordpress"], 3, 1, False, ["wordpress-6dfdd9f64f-d75j2"], True]


def test_watch_streams_existing_objects_then_changes(lab_api: Api, tmp_path: Path) -> None:
    """Watches (for the event source): ADDED for what exists, then changes, filtered by namespace and labels."""
    kubeconfig = write_kubeconfig(lab_api.state_dir / "endpoint.json", tmp_path / "kubeconfig", "lab")
    code = f"""
import json, threading, time, subprocess, sys
from kubernetes import client, config, watch
core = client.CoreV1Api(config.new_client_from_config(config_file={str(kubeconfig)!r}))
def change():
    time.sleep(1.0)
    argv = [sys.executable, "-m", "lab.kubeapi", "apply", "--kubeconfig", {str(kubeconfig)!r}, {str(tmp_path / "change.json")!r}]
    subprocess.run(argv, check=True, capture_output=True)
threading.Thread(target=change).start()
seen = []
for event in watch.Watch().stream(core.list_namespaced_pod, "wordpress", label_selector="app=wordpress", timeout_seconds=4):
    seen.append([event["type"], event["object"].metadata.name])
namespaces = [e["object"].metadata.name for e in watch.Watch().stream(core.list_namespace, timeout_seconds=1)]
print(json.dumps([seen, namespaces]))
"""
    moved = k8s.pod("wordpress-6dfdd9f64f-d75j2", "wordpress", "k8s-node2", "10.244.2.7", {"app": "wordpress", "tier": "frontend"})
    other = k8s.pod("unrelated", "wordpress", "k8s-node2", "10.244.2.8", {"app": "other"})
    (tmp_path / "change.json").write_text(json.dumps([moved, other]))
    result = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    seen, namespaces = json.loads(result.stdout)
    assert seen == [["ADDED", "wordpress-6dfdd9f64f-d75j2"], ["ADDED", "wordpress-mysql-5b58bbd695-gxtc4"],
                    ["MODIFIED", "wordpress-6dfdd9f64f-d75j2"]]
    assert namespaces == ["default", "wordpress"]


def test_watch_resumes_from_a_list_resource_version(lab_api: Api, tmp_path: Path) -> None:
    """A change made between a list and the watch that follows it is not lost; the history's limit answers 410."""
    kubeconfig = write_kubeconfig(lab_api.state_dir / "endpoint.json", tmp_path / "kubeconfig", "lab")
    moved = k8s.pod("wordpress-6dfdd9f64f-d75j2", "wordpress", "k8s-node2", "10.244.2.7", {"app": "wordpress", "tier": "frontend"})
    (tmp_path / "change.json").write_text(json.dumps([moved]))
    code = f"""
import json, subprocess, sys
from kubernetes import client, config, watch
core = client.CoreV1Api(config.new_client_from_config(config_file={str(kubeconfig)!r}))
version = json.loads(core.list_pod_for_all_namespaces(_preload_content=False).data)["metadata"]["resourceVersion"]
subprocess.run([sys.executable, "-m", "lab.kubeapi", "apply", "--kubeconfig", {str(kubeconfig)!r}, {str(tmp_path / "change.json")!r}],
               check=True, capture_output=True)
events = [[e["type"], e["object"].metadata.name, e["object"].spec.node_name]
          for e in watch.Watch().stream(core.list_pod_for_all_namespaces, resource_version=version, timeout_seconds=1)]
print(json.dumps(events))
"""
    result = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["MODIFIED", "wordpress-6dfdd9f64f-d75j2", "k8s-node2"]]

# SPDX-License-Identifier: GPL-3.0-or-later
"""The inventory plugin against hostile and kubernetes.core-shaped configuration (issue 15, items 14, 15, 17).

- 14: kubernetes.core's aliases (ssl_ca_cert, verify_ssl, cert_file, key_file), its proxy and impersonation
  settings are accepted and used; TLS verification stays on by default; secrets never reach output.
- 15: ``kubectl.kubernetes.io/last-applied-configuration`` is dropped by default; keep/drop options.
- 17: ``*.k8s.yml``/``*.k8s.yaml`` files are read; another name gets a warning saying which suffix is expected.
"""

from __future__ import annotations

import json
import os
import select
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from ansible_collections.zerotrust.workloads.plugins.inventory.kubernetes import InventoryModule
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api, builder
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import resolve_connection
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import ConnectionConfigError
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.naming import validate_host_format

from lab.kubeapi import KubeApiServer, start_server
from tests.unit.plugins.module_utils._kubernetes import k8s_factories as k8s

REPO = Path(__file__).resolve().parents[4]
POD = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def ansible_inventory(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("K8S_AUTH_")}
    environ.update(env or {})
    environ["ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"] = "true"
    environ["ANSIBLE_NOCOLOR"] = "1"
    return subprocess.run([str(REPO / ".venv/bin/ansible-inventory"), *args], cwd=REPO, env=environ, capture_output=True, text=True,
                          timeout=120, check=False)


def unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def write_config(tmp_path: Path, name: str = "lab.kubernetes.yml", **options: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"plugin": "zerotrust.workloads.kubernetes", **options}))
    return path


@pytest.fixture
def kube_api() -> Iterator[KubeApiServer]:
    objects = k8s.seed()
    for manifest in objects:
        if manifest["kind"] in ("Pod", "Service", "Node"):
            # What kubectl apply leaves on every object: the object again, as JSON.
            manifest["metadata"].setdefault("annotations", {})[LAST_APPLIED] = json.dumps(manifest) + " " * 2000
            manifest["metadata"]["annotations"]["team"] = "blue"
    with start_server(objects) as server:
        yield server


# ----- item 17: file names ------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "ours"), [("lab.k8s.yml", True), ("lab.k8s.yaml", True), ("lab.kubernetes.yml", True),
                                            ("lab.yml", False), ("k8s.yml", False)])
def test_verify_file_accepts_kubernetes_core_suffixes(tmp_path: Path, name: str, ours: bool) -> None:
    (tmp_path / name).write_text("plugin: zerotrust.workloads.kubernetes\n")
    assert InventoryModule().verify_file(str(tmp_path / name)) is ours


def test_a_k8s_yml_file_is_read(kube_api: KubeApiServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, "cluster.k8s.yml", connections=[{"name": "lab", "host": kube_api.url, "api_key": kube_api.token,
                                                                        "ca_cert": kube_api.ca_file}])
    result = ansible_inventory("-i", str(config), "--list")
    assert result.returncode == 0, result.stderr
    assert POD in json.loads(result.stdout)["_meta"]["hostvars"]


def test_another_name_says_which_suffix_is_expected(tmp_path: Path) -> None:
    config = write_config(tmp_path, "cluster.yml", connections=[{"host": "https://127.0.0.1:9"}])
    result = ansible_inventory("-i", str(config), "--list")
    flat = " ".join(result.stderr.split())
    assert "is not read because its name does not end in .kubernetes.yml, .kubernetes.yaml, .k8s.yml, .k8s.yaml; rename it" in flat


# ----- item 14: kubernetes.core's settings --------------------------------------------------------

def test_kubernetes_core_aliases_through_ansible_inventory(kube_api: KubeApiServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, connections=[{"name": "lab", "host": kube_api.url, "api_key": kube_api.token,
                                                  "ssl_ca_cert": kube_api.ca_file, "verify_ssl": True}])
    result = ansible_inventory("-i", str(config), "--list")
    assert result.returncode == 0, result.stderr
    assert POD in json.loads(result.stdout)["_meta"]["hostvars"]
    assert kube_api.token not in result.stdout + result.stderr


@pytest.mark.parametrize(("settings", "expected"), [
    ({"ssl_ca_cert": "/etc/ca.pem"}, {"ca_file": "/etc/ca.pem", "validate_certs": True}),
    ({"verify_ssl": "no"}, {"validate_certs": False}),
    ({"verify_ssl": False, "validate_certs": False}, {"validate_certs": False}),
    ({"cert_file": "/etc/c.crt", "key_file": "/etc/c.key"}, {"client_cert_file": "/etc/c.crt", "client_key_file": "/etc/c.key"}),
    ({}, {"validate_certs": True, "proxy": None, "impersonate_user": None}),
    ({"proxy": "http://proxy.test:3128", "no_proxy": "a.test,.corp.test"}, {"proxy": "http://proxy.test:3128",
                                                                           "no_proxy": ("a.test", ".corp.test")}),
    ({"impersonate_user": "auditor", "impersonate_groups": ["g1", "g2"]}, {"impersonate_user": "auditor",
                                                                           "impersonate_groups": ("g1", "g2")}),
    ({"persist_config": True}, {"validate_certs": True}),
])
def test_aliases_and_settings(settings: dict[str, Any], expected: dict[str, Any]) -> None:
    connection = resolve_connection({"host": "https://api.test:6443", "api_key": "t0ken-secret", **settings}, {})
    assert {key: getattr(connection, key) for key in expected} == expected


def test_environment_fallbacks_for_proxy_and_impersonation() -> None:
    environ = {"K8S_AUTH_HOST": "https://api.test:6443", "K8S_AUTH_PROXY": "http://proxy.test:3128", "K8S_AUTH_NO_PROXY": "10.0.0.0/8",
               "K8S_AUTH_IMPERSONATE_USER": "auditor", "K8S_AUTH_IMPERSONATE_GROUPS": "g1, g2"}
    connection = resolve_connection({}, environ)
    assert (connection.proxy, connection.no_proxy, connection.impersonate_user, connection.impersonate_groups) == (
        "http://proxy.test:3128", ("10.0.0.0/8",), "auditor", ("g1", "g2"))


@pytest.mark.parametrize(("settings", "message"), [
    ({"ssl_ca_cert": "/a", "ca_cert": "/b"}, "ca_cert and its alias ssl_ca_cert are both set, to different values: keep one"),
    ({"username": "admin", "password": "pw"}, "username is set, but Kubernetes removed basic authentication (1.19)"),
    ({"proxy": "socks5://user:hunter22@proxy.test:1080"}, "proxy must be an http:// or https:// URL, not socks5"),
    ({"proxy_headers": {"proxy_basic_auth": "nocolon"}}, "proxy_headers.proxy_basic_auth must be USER:PASSWORD"),
    ({"proxy_headers": {"colour": "x"}}, "proxy_headers must be a mapping with basic_auth, proxy_basic_auth, user_agent"),
    ({"impersonate_groups": ["g"]}, "impersonate_groups needs impersonate_user"),
    ({"colour": 1}, "unknown connection settings ['colour']"),
])
def test_bad_settings_are_named(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConnectionConfigError) as caught:
        resolve_connection({"host": "https://api.test:6443", **settings}, {})
    assert message in str(caught.value)
    assert "hunter22" not in str(caught.value)


@pytest.mark.parametrize(("no_proxy", "server", "through_proxy"), [
    ((), "https://api.test:6443", True),
    (("api.test",), "https://api.test:6443", False),
    ((".test",), "https://api.test:6443", False),
    (("other.test",), "https://api.test:6443", True),
    (("10.0.0.0/8",), "https://10.1.2.3:6443", False),
    (("10.0.0.0/8",), "https://192.0.2.1:6443", True),
    (("*",), "https://api.test:6443", False),
])
def test_no_proxy(no_proxy: tuple[str, ...], server: str, through_proxy: bool) -> None:
    connection = resolve_connection({"host": server, "proxy": "http://proxy.test:3128", "no_proxy": list(no_proxy)}, {})
    assert (connection.proxy_for_server() is not None) is through_proxy


class _Tunnel(socketserver.ThreadingTCPServer):
    """A minimal HTTP CONNECT proxy on loopback that records what it was asked and tunnels the bytes."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _TunnelHandler)


class _TunnelHandler(socketserver.StreamRequestHandler):
    server: _Tunnel

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.connection.recv(4096)
            if not chunk:
                return
            head += chunk
        self.server.requests.append(head.decode("latin-1"))
        target = head.split(b" ")[1].decode()
        host, _sep, port = target.rpartition(":")
        if host != "127.0.0.1":  # this test proxy reaches loopback only
            self.connection.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            return
        upstream = socket.create_connection((host, int(port)))
        self.connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        sockets = [self.connection, upstream]
        while True:
            readable, _w, _x = select.select(sockets, [], [], 10)
            if not readable:
                break
            for source in readable:
                data = source.recv(65536)
                if not data:
                    upstream.close()
                    return
                (upstream if source is self.connection else self.connection).sendall(data)


@pytest.fixture
def tunnel() -> Iterator[_Tunnel]:
    server = _Tunnel()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_api_is_reached_through_the_proxy_with_tls_verified_end_to_end(kube_api: KubeApiServer, tunnel: _Tunnel) -> None:
    proxy = f"http://127.0.0.1:{tunnel.server_address[1]}"
    connection = resolve_connection({"host": kube_api.url, "api_key": kube_api.token, "ca_cert": kube_api.ca_file, "proxy": proxy,
                                     "proxy_headers": {"proxy_basic_auth": "ops:hunter22"}}, {})
    client = api.ClusterClient(connection, timeout=10)
    try:
        pods = client.list_all(api.PODS, api.ListOptions())
    finally:
        client.close()
    assert len(pods) == 2
    assert tunnel.requests and tunnel.requests[0].startswith(f"CONNECT 127.0.0.1:{kube_api.url.rsplit(':', 1)[1]} ")
    assert "proxy-authorization: basic b3bzomh1bnrlcjiy" in tunnel.requests[0].lower()  # base64("ops:hunter22"), to the proxy only
    assert "hunter22" in connection.secrets()


def test_a_proxy_does_not_turn_tls_verification_off(kube_api: KubeApiServer, tunnel: _Tunnel) -> None:
    proxy = f"http://127.0.0.1:{tunnel.server_address[1]}"
    connection = resolve_connection({"host": kube_api.url, "api_key": kube_api.token, "proxy": proxy}, {})  # no CA given
    client = api.ClusterClient(connection, timeout=10)
    with pytest.raises(Exception, match="TLS verification failed"):
        client.list_all(api.PODS, api.ListOptions())
    client.close()


class _Recorder(BaseHTTPRequestHandler):
    """A plain-HTTP stand-in for the API that records request headers and answers an empty list."""

    seen: ClassVar[list[list[tuple[str, str]]]] = []

    def do_GET(self) -> None:
        type(self).seen.append(list(self.headers.items()))
        body = b'{"kind": "PodList", "metadata": {}, "items": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_impersonation_headers_are_sent_one_group_per_header() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = resolve_connection({"host": f"http://127.0.0.1:{server.server_address[1]}", "api_key": "t0ken",
                                         "impersonate_user": "auditor", "impersonate_groups": ["readers", "system:authenticated"]}, {})
        client = api.ClusterClient(connection, timeout=5)
        client.list_all(api.PODS, api.ListOptions())
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    headers = _Recorder.seen[-1]
    assert ("Impersonate-User", "auditor") in headers
    assert [value for name, value in headers if name == "Impersonate-Group"] == ["readers", "system:authenticated"]
    assert ("Authorization", "Bearer t0ken") in headers


# ----- item 15: annotations -----------------------------------------------------------------------

def build(snapshot: dict[str, Any], **settings: Any) -> builder.InventoryModel:
    return builder.build({"lab": snapshot}, builder.BuildSettings(host_format=validate_host_format({}), **settings))


def seed_snapshot() -> dict[str, list[dict[str, Any]]]:
    snapshot: dict[str, list[dict[str, Any]]] = {}
    for manifest in k8s.seed():
        manifest["metadata"].setdefault("annotations", {}).update({LAST_APPLIED: "{}", "team": "blue", "example.com/owner": "ops"})
        snapshot.setdefault(manifest["kind"], []).append(manifest)
    return snapshot


@pytest.mark.parametrize(("settings", "expected"), [
    ({}, {"team": "blue", "example.com/owner": "ops"}),
    ({"drop_annotations": ()}, {LAST_APPLIED: "{}", "team": "blue", "example.com/owner": "ops"}),
    ({"keep_annotations": ("example.com/*",)}, {"example.com/owner": "ops"}),
    ({"keep_annotations": ("team", LAST_APPLIED)}, {"team": "blue"}),
    ({"drop_annotations": ("kubectl.kubernetes.io/*", "team")}, {"example.com/owner": "ops"}),
])
def test_annotation_filters(settings: dict[str, Any], expected: dict[str, str]) -> None:
    model = build(seed_snapshot(), **settings)
    for host in (POD, "wordpress.wordpress.service.lab", "k8s-node1"):
        assert model.hosts[host]["workload"]["annotations"] == expected, host


def test_tunnel_addresses_are_read_before_annotations_are_dropped() -> None:
    snapshot = seed_snapshot()
    snapshot["Node"][1]["metadata"]["annotations"]["projectcalico.org/IPv4IPIPTunnelAddr"] = "10.244.1.0"
    model = build(snapshot, keep_annotations=("team",))
    assert model.hosts["k8s-node1"]["workload"]["tunnel_addresses"] == ["10.244.1.0"]
    assert model.hosts["k8s-node1"]["workload"]["annotations"] == {"team": "blue"}


def test_last_applied_is_not_in_the_hostvars_by_default(kube_api: KubeApiServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, connections=[{"name": "lab", "host": kube_api.url, "api_key": kube_api.token,
                                                  "ca_cert": kube_api.ca_file}])
    result = ansible_inventory("-i", str(config), "--list")
    assert result.returncode == 0, result.stderr
    hostvars = unwrap(json.loads(result.stdout))["_meta"]["hostvars"]
    assert hostvars[POD]["workload"]["annotations"] == {"team": "blue"}
    assert LAST_APPLIED not in result.stdout
    kept = write_config(tmp_path, "kept.kubernetes.yml", drop_annotations=[],
                        connections=[{"name": "lab", "host": kube_api.url, "api_key": kube_api.token, "ca_cert": kube_api.ca_file}])
    result = ansible_inventory("-i", str(kept), "--list")
    assert LAST_APPLIED in unwrap(json.loads(result.stdout))["_meta"]["hostvars"][POD]["workload"]["annotations"]

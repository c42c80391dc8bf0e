# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Listing against the emulated API over real HTTPS: pagination, 410, RBAC fallback, selectors, faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import ClusterConnection, resolve_connection
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import ApiCallError

from lab.kubeapi import KubeApiServer, start_server
from tests.unit.plugins.module_utils._kubernetes import k8s_factories as k8s


def client_for(server: KubeApiServer, timeout: float = 5.0, **overrides: Any) -> api.ClusterClient:
    settings: dict[str, Any] = {"name": "lab", "server": server.url, "token": server.token, "ca_file": server.ca_file}
    settings.update(overrides)
    return api.ClusterClient(ClusterConnection(**settings), timeout=timeout)


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["metadata"]["name"] for item in items]


@pytest.fixture(scope="module")
def many_pods() -> Iterator[KubeApiServer]:
    objects = [k8s.pod(f"p{index:03d}", f"ns{index % 3}", "n1", f"10.0.{index // 200}.{index % 200 + 1}", {"index": str(index % 2)},
                       phase="Running" if index % 4 else "Pending") for index in range(25)]
    server = start_server(objects)
    yield server
    server.stop()


def test_pagination_reads_every_page(many_pods: KubeApiServer) -> None:
    client = client_for(many_pods)
    items = client.list_all(api.PODS, api.ListOptions(page_size=4))
    assert len(items) == 25 and len(set(names(items))) == 25
    assert client.requests_made == 7  # 6 full pages of 4, one of 1


def test_label_and_field_selectors_are_sent(many_pods: KubeApiServer) -> None:
    client = client_for(many_pods)
    running_even = client.list_all(api.PODS, api.ListOptions(label_selector="index=0", field_selector="status.phase=Running", page_size=3))
    assert sorted(names(running_even)) == [f"p{index:03d}" for index in range(25) if index % 2 == 0 and index % 4]
    set_based = client.list_all(api.PODS, api.ListOptions(label_selector="index in (1),!missing", page_size=100))
    assert len(set_based) == 12


def test_410_mid_pagination_relists_from_the_start(many_pods: KubeApiServer) -> None:
    fault = many_pods.faults.add(r"/api/v1/pods$", status=410, continue_only=True, times=1)
    try:
        client = client_for(many_pods)
        items = client.list_all(api.PODS, api.ListOptions(page_size=10))
    finally:
        many_pods.faults.clear()
    assert fault.hits == 1
    assert len(items) == 25 and len(set(names(items))) == 25  # no duplicates from the aborted first pass
    assert client.requests_made == 2 + 3  # first page, the 410, then a full re-list of 3 pages


def test_410_forever_is_an_error(many_pods: KubeApiServer) -> None:
    many_pods.faults.add(r"/api/v1/pods$", status=410, continue_only=True)
    try:
        with pytest.raises(ApiCallError) as caught:
            client_for(many_pods).list_all(api.PODS, api.ListOptions(page_size=10))
    finally:
        many_pods.faults.clear()
    assert str(caught.value).startswith(f"cluster 'lab': GET {many_pods.url}/api/v1/pods failed: the list expired (410 Gone)")


def test_namespace_fallback_when_cluster_wide_list_is_forbidden(many_pods: KubeApiServer) -> None:
    many_pods.faults.restrict_to_namespaces(["ns0", "ns2"])
    try:
        client = client_for(many_pods, namespaces=("ns0", "ns2"))
        snapshot = api.fetch_cluster(client, (api.NAMESPACES, api.PODS), {"Pod": api.ListOptions(page_size=5)})
        with pytest.raises(ApiCallError) as caught:
            api.fetch_cluster(client_for(many_pods), (api.PODS,), {})
    finally:
        many_pods.faults.clear()
    assert sorted({pod["metadata"]["namespace"] for pod in snapshot["Pod"]}) == ["ns0", "ns2"]
    assert len(snapshot["Pod"]) == 17
    assert names(snapshot["Namespace"]) == ["ns0", "ns2"]  # stand-ins: listing namespaces is forbidden too
    assert "403 Forbidden" in str(caught.value) and "set the connection's namespaces" in str(caught.value)


def test_namespaces_option_filters_when_cluster_wide_is_allowed(many_pods: KubeApiServer) -> None:
    snapshot = api.fetch_cluster(client_for(many_pods, namespaces=("ns1",)), (api.PODS,), {})
    assert {pod["metadata"]["namespace"] for pod in snapshot["Pod"]} == {"ns1"}


FAULTS = [
    ({"status": 401}, "the API rejected the credentials (401 Unauthorized)"),
    ({"status": 403}, "the API refused the request (403 Forbidden)"),
    ({"status": 404}, "the API does not serve this resource (404 Not Found)"),
    ({"status": 500}, "the API answered HTTP 500"),
    ({"body": b"{not json"}, "malformed response body (not JSON"),
    ({"body": b"[1, 2]"}, "malformed response body (JSON holding a list, expected an object)"),
    ({"body": b'{"metadata": {}}'}, "malformed response body (no 'items' list)"),
    ({"delay": 2.0}, "timed out (ReadTimeoutError)"),
    ({"disconnect": True}, "connection failed (ProtocolError"),
]


@pytest.mark.parametrize(("fault", "cause"), FAULTS)
def test_faults_name_cluster_call_and_cause(kube_api: KubeApiServer, fault: dict[str, Any], cause: str) -> None:
    kube_api.faults.add(r"/apis/discovery.k8s.io/v1/endpointslices$", **fault)
    with pytest.raises(ApiCallError) as caught:
        api.fetch_cluster(client_for(kube_api, timeout=0.5), api.ALL_KINDS, {})
    message = str(caught.value)
    assert message.startswith(f"cluster 'lab': GET {kube_api.url}/apis/discovery.k8s.io/v1/endpointslices?limit=500 failed: ")
    assert cause in message
    assert kube_api.token not in message


def test_pagination_interrupted_by_a_dropped_connection_fails(kube_api: KubeApiServer) -> None:
    kube_api.faults.add(r"/api/v1/nodes$", disconnect=True, continue_only=True)
    with pytest.raises(ApiCallError, match=r"GET .*/api/v1/nodes\?limit=2&continue=.* failed: connection failed"):
        client_for(kube_api).list_all(api.NODES, api.ListOptions(page_size=2))


def test_wrong_token_is_401_and_never_shown(kube_api: KubeApiServer) -> None:
    with pytest.raises(ApiCallError) as caught:
        client = client_for(kube_api, token="wrong-token-123456")  # noqa: S106 - a deliberately wrong token
        client.list_all(api.PODS, api.ListOptions())
    assert "401 Unauthorized" in str(caught.value) and "wrong-token-123456" not in str(caught.value)


def test_tls_is_verified_by_default(kube_api: KubeApiServer) -> None:
    with pytest.raises(ApiCallError, match="TLS verification failed"):
        client_for(kube_api, ca_file=None).list_all(api.PODS, api.ListOptions())
    items = client_for(kube_api, ca_file=None, validate_certs=False).list_all(api.PODS, api.ListOptions())
    assert len(items) == 2


def test_connection_refused_names_the_cluster() -> None:
    connection = ClusterConnection(name="gone", server="https://127.0.0.1:9", token="t0ken-value")  # noqa: S106 - test value
    with pytest.raises(ApiCallError, match=r"cluster 'gone': GET https://127.0.0.1:9/api/v1/pods\?limit=500 failed: connection failed"):
        api.ClusterClient(connection, timeout=2).list_all(api.PODS, api.ListOptions())


def test_fetch_cluster_returns_every_kind(kube_api: KubeApiServer) -> None:
    snapshot = api.fetch_cluster(client_for(kube_api), api.ALL_KINDS, {})
    assert {kind: len(items) for kind, items in snapshot.items()} == {"Namespace": 2, "Node": 4, "Pod": 2, "Service": 1, "EndpointSlice": 1}
    assert snapshot["Pod"][0]["kind"] == "Pod" and snapshot["Pod"][0]["metadata"]["resourceVersion"]


def test_kubeconfig_exec_plugin_goes_through_the_kubernetes_loader(kube_api: KubeApiServer, tmp_path: Path) -> None:
    plugin = tmp_path / "credential-plugin"
    credential = {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", "status": {"token": kube_api.token}}
    plugin.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(credential)}\nEOF\n")
    plugin.chmod(0o700)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "c", "cluster": {"server": kube_api.url, "certificate-authority": kube_api.ca_file}}],
        "users": [{"name": "u", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin),
                                                  "interactiveMode": "Never"}}}],
        "contexts": [{"name": "lab", "context": {"cluster": "c", "user": "u"}}],
    }))
    connection = resolve_connection({"kubeconfig": str(kubeconfig)}, {})
    assert connection.token == kube_api.token
    assert len(api.ClusterClient(connection).list_all(api.PODS, api.ListOptions())) == 2

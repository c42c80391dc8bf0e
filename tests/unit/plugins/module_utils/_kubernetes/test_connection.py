# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Connections from kubeconfig, host + token, K8S_AUTH_* variables; secrets never shown."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import resolve_connection, resolve_connections
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import ConnectionConfigError, scrub

TOKEN = "s3cr3t-token-value"  # noqa: S105 - a test value that must never appear in output


def kubeconfig(tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None, current: str | None = "lab") -> str:
    config: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c1", "cluster": cluster or {"server": "https://127.0.0.1:6443", "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u1", "user": user}],
        "contexts": [
            {"name": "lab", "context": {"cluster": "c1", "user": "u1"}},
            {"name": "other", "context": {"cluster": "c1", "user": "u1"}},
        ],
    }
    if current:
        config["current-context"] = current
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_kubeconfig_token_and_relative_ca(tmp_path: Path) -> None:
    connection = resolve_connection({"kubeconfig": kubeconfig(tmp_path, {"token": TOKEN})}, {})
    assert (connection.name, connection.server, connection.token) == ("lab", "https://127.0.0.1:6443", TOKEN)
    assert connection.ca_file == str(tmp_path / "ca.crt")
    assert connection.validate_certs is True
    assert TOKEN not in repr(connection)


def test_kubeconfig_context_and_name_override(tmp_path: Path) -> None:
    connection = resolve_connection({"kubeconfig": kubeconfig(tmp_path, {"token": TOKEN}), "context": "other", "name": "prod"}, {})
    assert connection.name == "prod"
    assert connection.source.endswith("context other")


def test_kubeconfig_token_file_and_inline_ca(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority-data": base64.b64encode(b"PEM").decode(),
               "insecure-skip-tls-verify": True}
    connection = resolve_connection({"kubeconfig": kubeconfig(tmp_path, {"tokenFile": "token"}, cluster)}, {})
    assert connection.token == TOKEN
    assert connection.ca_data == "PEM"
    assert connection.validate_certs is False


def test_kubeconfig_client_certificate_data(tmp_path: Path) -> None:
    user = {"client-certificate-data": base64.b64encode(b"CERT").decode(), "client-key-data": base64.b64encode(b"KEY-MATERIAL").decode()}
    connection = resolve_connection({"kubeconfig": kubeconfig(tmp_path, user)}, {})
    assert (connection.client_cert_data, connection.client_key_data) == (b"CERT", b"KEY-MATERIAL")
    assert "KEY-MATERIAL" in connection.secrets()


def test_environment_fills_unset_fields() -> None:
    environ = {"K8S_AUTH_HOST": "https://api.example.test:6443", "K8S_AUTH_API_KEY": TOKEN, "K8S_AUTH_SSL_CA_CERT": "/etc/ca.pem",
               "K8S_AUTH_VERIFY_SSL": "no"}
    connection = resolve_connection({}, environ)
    assert (connection.name, connection.server, connection.token, connection.ca_file, connection.validate_certs) == (
        "api-example-test", "https://api.example.test:6443", TOKEN, "/etc/ca.pem", False)


def test_explicit_settings_beat_the_environment(tmp_path: Path) -> None:
    environ = {"K8S_AUTH_KUBECONFIG": kubeconfig(tmp_path, {"token": "from-file"}), "K8S_AUTH_CONTEXT": "other",
               "K8S_AUTH_API_KEY": "from-env"}
    connection = resolve_connection({"api_key": TOKEN, "context": "lab"}, environ)
    assert (connection.name, connection.token) == ("lab", TOKEN)


@pytest.mark.parametrize(
    ("settings", "environ", "message"),
    [
        ({"bogus": 1}, {}, "unknown connection settings ['bogus']"),
        ({"kubeconfig": "/nonexistent/config"}, {}, "kubeconfig /nonexistent/config does not exist"),
        ({"host": "ftp://x"}, {}, "must be an https:// URL"),
        ({"host": "https://x", "validate_certs": "maybe"}, {}, "validate_certs must be a boolean"),
        ({"host": "https://x", "namespaces": "default"}, {}, "namespaces must be a list"),
        ({"in_cluster": True}, {}, "KUBERNETES_SERVICE_HOST is not"),
        ({"host": "https://x"}, {"K8S_AUTH_PROXY": "ftp://proxy:3128"}, "proxy must be an http:// or https:// URL, not ftp"),
    ],
)
def test_invalid_settings(settings: dict[str, Any], environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConnectionConfigError) as caught:
        resolve_connection(settings, environ)
    assert message in str(caught.value)


def test_kubeconfig_proxy_url_is_used_not_bypassed(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, {"token": TOKEN}, {"server": "https://127.0.0.1:6443", "proxy-url": "http://proxy:3128"})
    assert resolve_connection({"kubeconfig": config}, {}).proxy_for_server() == "http://proxy:3128"


def test_missing_context_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConnectionConfigError, match="no context named 'nope'"):
        resolve_connection({"kubeconfig": kubeconfig(tmp_path, {"token": TOKEN}), "context": "nope"}, {})


def test_duplicate_cluster_names_are_refused() -> None:
    with pytest.raises(ConnectionConfigError, match=r"cluster names must be unique, \['a'\]"):
        resolve_connections([{"host": "https://x", "name": "a"}, {"host": "https://y", "name": "a"}], {})


def test_scrub_removes_tokens_and_bearer_values() -> None:
    assert scrub(f"failed with {TOKEN} and Authorization: Bearer abc.def-ghi", [TOKEN]) == (
        "failed with <redacted> and Authorization: Bearer <redacted>")

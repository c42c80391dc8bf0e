# SPDX-License-Identifier: GPL-3.0-or-later
"""The emulated API's listen address and certificate names (the lab serves it on the control-plane node's address)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from lab.kubeapi import KubeApiServer, make_tls_material


def test_certificate_names_every_san(tmp_path: Path) -> None:
    _ca, cert, _key = make_tls_material(tmp_path, sans=["172.18.221.10", "172.18.192.1", "kubernetes.default.svc"])
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(address) for address in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "172.18.221.10", "172.18.192.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "kubernetes.default.svc"]


@pytest.mark.parametrize("server_name", ["127.0.0.1", "kubernetes.default.svc"])
def test_clients_verify_the_server_by_any_of_its_names(tmp_path: Path, server_name: str) -> None:
    """A TLS client checking the hostname accepts the address it dialled and the in-cluster name."""
    with KubeApiServer([], host="127.0.0.1", sans=["kubernetes.default.svc"], state_dir=tmp_path).start() as api:
        assert api.url == f"https://127.0.0.1:{api.port}"
        context = ssl.create_default_context(cafile=api.ca_file)
        with context.wrap_socket(socket.create_connection(("127.0.0.1", api.port), timeout=5), server_hostname=server_name) as tls:
            assert tls.version() is not None

# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of pod namespace discovery that need no namespaces of their own."""

from __future__ import annotations

import os
from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import netns
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import NamespaceNotFoundError
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import Namespace


@pytest.mark.parametrize(("hint", "expected"), [
    (str(os.getpid()), None),  # our own PID is in the root namespace
    ("/etc/passwd", None),
    ("999999999", None),
    ("/nonexistent/ns/net", None),
    ("ztd-surely-not-created", None),
    ("../../etc/passwd", None),
    ("bad name;rm", None),
])
def test_namespace_from_hint(hint: str, expected: Optional[Namespace]) -> None:
    assert netns.namespace_from_hint(hint) == expected


def test_the_root_namespace_is_never_a_pod_namespace() -> None:
    assert netns.namespace_from_hint("/proc/self/ns/net") is None


@pytest.mark.parametrize(("inspect", "path"), [
    ({"info": {"runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1"}]}}}},
     "/var/run/netns/cni-1"),
    ({"info": {"runtimeSpec": {"linux": {"namespaces": [{"type": "network"}]}}}}, None),
    ({}, None),
])
def test_sandbox_netns_path(inspect: dict[str, Any], path: Optional[str]) -> None:
    assert netns.sandbox_netns_path(inspect) == path


def test_gone_pod_reason_lists_what_was_tried() -> None:
    pod = {"name": "gone", "namespace": "default", "netns": "ztd-surely-not-created", "ips": ["192.0.2.213"]}
    with pytest.raises(NamespaceNotFoundError) as caught:
        netns.resolve_pod_namespace(pod)
    message = str(caught.value)
    assert message.startswith("network namespace not found (the pod is gone or not on this node): "
                              "netns hint 'ztd-surely-not-created' does not exist; ")
    assert message.endswith("no namespace under /run/netns or /var/run/netns holds 192.0.2.213")


def test_pod_without_ips_or_hint() -> None:
    with pytest.raises(NamespaceNotFoundError, match="the pod has no IPs to search for"):
        netns.resolve_pod_namespace({"name": "x", "namespace": "y", "ips": []})

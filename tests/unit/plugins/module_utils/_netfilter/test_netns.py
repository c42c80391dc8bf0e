# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of pod namespace discovery that need no namespaces of their own."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import netns
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import NamespaceNotFoundError
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import CommandResult, Namespace, Runner


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


class CrictlRunner(Runner):
    """Answers crictl the way containerd's does (the unit under test only parses)."""

    def __init__(self, sandboxes: dict[str, dict[str, Any]]) -> None:
        super().__init__(Namespace())
        self.sandboxes = sandboxes
        self.calls: list[list[str]] = []

    def run(self, argv: Any, stdin: Optional[str] = None, check: bool = True, write: bool = False) -> CommandResult:
        self.calls.append(list(argv))
        if argv[1] == "pods":
            return CommandResult(tuple(argv), 0, "\n".join(self.sandboxes) + "\n", "")
        return CommandResult(tuple(argv), 0, json.dumps(self.sandboxes[argv[-1]]), "")


def sandbox(name: str, namespace: str, path: str) -> dict[str, Any]:
    """``crictl inspectp -o json`` output, trimmed to what we read."""
    return {"status": {"metadata": {"name": name, "namespace": namespace, "uid": "u1"}},
            "info": {"runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": path}]}}}}


def test_cri_lookup_checks_the_exact_pod_and_its_path() -> None:
    runner = CrictlRunner({
        "aaa": sandbox("web-1-canary", "shop", "/proc/1/ns/net"),  # --name is a pattern: a different pod matched
        "bbb": sandbox("web-1", "shop", "/proc/self/ns/net"),
    })
    found = netns.namespace_from_cri(runner, "shop", "web-1", "u1")
    assert found == Namespace(path="/proc/self/ns/net")
    assert runner.calls[0] == ["crictl", "pods", "--namespace", "shop", "--name", "web-1", "--state", "ready", "-q"]
    assert runner.calls[1:] == [["crictl", "inspectp", "-o", "json", "aaa"], ["crictl", "inspectp", "-o", "json", "bbb"]]


def test_cri_lookup_without_a_match() -> None:
    runner = CrictlRunner({"aaa": sandbox("other", "shop", "/proc/1/ns/net")})
    assert netns.namespace_from_cri(runner, "shop", "web-1") is None

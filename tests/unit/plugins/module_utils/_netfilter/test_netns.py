# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of pod namespace discovery (one test, marked netns, makes a throwaway namespace of its own)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Sequence
from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import netns
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import CommandError, NamespaceNotFoundError
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


class AddrRunner(Runner):
    """Answers ``ip -n NAME -j addr show`` from a table and counts the calls; ``ip netns list`` shows ``linked`` with an id."""

    def __init__(self, addresses: dict[str, list[str]], linked: Sequence[str] = ()) -> None:
        super().__init__(Namespace())
        self.addresses = addresses
        self.linked = linked
        self.calls: list[str] = []
        self.listings = 0

    def run(self, argv: Any, stdin: Optional[str] = None, check: bool = True, write: bool = False) -> CommandResult:
        if list(argv) == ["ip", "netns", "list"]:
            self.listings += 1
            listing = [f"{name} (id: {number})" if name in self.linked else name for number, name in enumerate(self.addresses)]
            return CommandResult(tuple(argv), 0, "\n".join(listing) + "\n", "")
        self.calls.append(argv[2])
        listing = [{"ifname": "eth0", "addr_info": [{"local": address} for address in self.addresses[argv[2]]]}]
        return CommandResult(tuple(argv), 0, json.dumps(listing), "")


def test_address_index_reads_each_namespace_once_for_all_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {f"ztd-pod-{number}": [f"10.0.0.{number}", f"fd00::{number}"] for number in range(6)}
    monkeypatch.setattr(netns, "named_namespaces", lambda: sorted(table))
    runner = AddrRunner(table)
    index = netns.AddressIndex(runner, in_process=False)
    assert index.find(["10.0.0.2"]) == Namespace(name="ztd-pod-2")
    assert runner.calls == ["ztd-pod-0", "ztd-pod-1", "ztd-pod-2"]
    assert index.find(["fd00::1"]) == Namespace(name="ztd-pod-1"), "an address seen on the way is remembered"
    assert index.find(["10.0.0.5/32", "not an ip"]) == Namespace(name="ztd-pod-5")
    assert index.find(["192.0.2.1"]) is None
    assert runner.calls == [f"ztd-pod-{number}" for number in range(6)], "no namespace was read twice"


def test_address_index_reads_the_namespaces_linked_here_first(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {f"ztd-pod-{number}": [f"10.0.0.{number}"] for number in range(6)}
    monkeypatch.setattr(netns, "named_namespaces", lambda: sorted(table))
    runner = AddrRunner(table, linked=["ztd-pod-5", "ztd-pod-3"])
    index = netns.AddressIndex(runner, in_process=False)
    assert index.search_order() == ["ztd-pod-3", "ztd-pod-5", "ztd-pod-0", "ztd-pod-1", "ztd-pod-2", "ztd-pod-4"]
    assert index.find(["10.0.0.5"]) == Namespace(name="ztd-pod-5")
    assert runner.calls == ["ztd-pod-3", "ztd-pod-5"], "this node's pods are found before any other namespace is read"
    assert index.find(["10.0.0.1"]) == Namespace(name="ztd-pod-1"), "a pod not linked here is still found"
    assert runner.calls == ["ztd-pod-3", "ztd-pod-5", "ztd-pod-0", "ztd-pod-1"]


class FailingListRunner(AddrRunner):
    """``ip netns list`` fails (no ip, no permission): the order is the plain one."""

    def run(self, argv: Any, stdin: Optional[str] = None, check: bool = True, write: bool = False) -> CommandResult:
        if list(argv) == ["ip", "netns", "list"]:
            raise CommandError("ip netns failed in namespace root (exit 1): boom", tuple(argv), 1, "boom")
        return super().run(argv, stdin, check, write)


def test_without_the_namespace_ids_the_search_reads_in_name_order(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {f"ztd-pod-{number}": [f"10.0.0.{number}"] for number in range(3)}
    monkeypatch.setattr(netns, "named_namespaces", lambda: sorted(table))
    runner = FailingListRunner(table, linked=["ztd-pod-2"])
    index = netns.AddressIndex(runner, in_process=False)
    assert index.find(["10.0.0.2"]) == Namespace(name="ztd-pod-2")
    assert runner.calls == ["ztd-pod-0", "ztd-pod-1", "ztd-pod-2"]


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="creates network namespaces")
def test_a_namespace_with_a_veth_to_the_node_comes_first_in_the_search() -> None:
    # A throwaway node with two pods: "a" unlinked, "b" linked by a veth, as a CNI links a pod to its node.
    node, pod_a, pod_b = (f"ztd-order-{os.getpid()}-{suffix}" for suffix in ("node", "a", "b"))
    for name in (node, pod_a, pod_b):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", node, "link", "add", "ztd0", "type", "veth", "peer", "name", "ztd1", "netns", pod_b], check=True)
        order = netns.AddressIndex(Runner(Namespace(name=node))).search_order()
        assert order.index(pod_b) < order.index(pod_a)
        assert set(order) >= {node, pod_a, pod_b}
    finally:
        for name in (node, pod_a, pod_b):
            subprocess.run(["ip", "netns", "del", name], check=False)


def test_address_index_reads_in_process_and_asks_ip_only_for_what_it_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {f"ztd-pod-{number}": [f"10.0.0.{number}"] for number in range(4)}
    # ztd-pod-3's interface is down: the in-process read (fib_trie) does not see its IPv4 address, ip does.
    seen = {f"/run/netns/{name}": {ipaddress.ip_address(a) for a in addresses} for name, addresses in table.items() if name != "ztd-pod-3"}
    monkeypatch.setattr(netns, "named_namespaces", lambda: sorted(table))
    monkeypatch.setattr(netns, "addresses_in_namespace", lambda path: seen.get(path, set()))
    runner = AddrRunner(table)
    index = netns.AddressIndex(runner)
    assert index.find(["10.0.0.1"]) == Namespace(name="ztd-pod-1") and runner.calls == []
    assert index.find(["10.0.0.3"]) == Namespace(name="ztd-pod-3")
    assert runner.calls == [f"ztd-pod-{number}" for number in range(4)]
    assert index.find(["10.9.9.9"]) is None and len(runner.calls) == 4
    assert runner.listings == 1, "both passes search in the same order, listed once"


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="creates a network namespace")
def test_addresses_in_namespace_reads_a_real_namespace_and_comes_back() -> None:
    name = f"ztd-addr-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "link", "add", "ztd0", "type", "veth", "peer", "name", "ztd1"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "192.0.2.77/24", "dev", "ztd0"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "2001:db8::77/64", "dev", "ztd0", "nodad"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "ztd0", "up"], check=True)
        own = os.stat("/proc/self/ns/net").st_ino
        found = netns.addresses_in_namespace(f"/run/netns/{name}")
        assert {ipaddress.ip_address("192.0.2.77"), ipaddress.ip_address("2001:db8::77")} <= found
        assert os.stat("/proc/thread-self/ns/net").st_ino == own, "the module must be back in its own namespace"
        assert netns.AddressIndex().find(["2001:db8::77"]) == Namespace(name=name)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_hint_verified_in_process_starts_no_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"ztd-pod-1": ["10.0.0.1"], "ztd-pod-2": ["10.0.0.2"]}
    # ztd-pod-2's interface is down: the in-process read misses its address, so only that hint asks ip.
    seen = {"/run/netns/ztd-pod-1": {ipaddress.ip_address("10.0.0.1")}}
    monkeypatch.setattr(netns, "addresses_in_namespace", lambda path: seen.get(path, set()))
    monkeypatch.setattr(netns, "namespace_from_hint", lambda hint: Namespace(name=hint))
    monkeypatch.setattr(netns, "_is_root_namespace", lambda path: False)
    runner = AddrRunner(table)
    index = netns.AddressIndex(runner)
    assert netns.resolve_pod_namespace({"ips": ["10.0.0.1"], "netns": "ztd-pod-1"}, runner, index) == Namespace(name="ztd-pod-1")
    assert runner.calls == []
    assert netns.resolve_pod_namespace({"ips": ["10.0.0.2"], "netns": "ztd-pod-2"}, runner, index) == Namespace(name="ztd-pod-2")
    assert runner.calls == ["ztd-pod-2"]

# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared sets: the plan ships a node's sets once, and every pod namespace still gets its own real set.

Two throwaway namespaces stand for two pods of one node; both rulesets name the set ``zt-peers``
as ``shared: true`` and the module gets its members once in ``sets``. The module runs for real
through ``ansible localhost -c local``, and real TCP connections check the result.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns_helpers import NetnsPair, in_ns, netns_pair
from test_allowlist_iptables import run_module

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

ALLOWED, FORBIDDEN = 80, 8080


@pytest.fixture
def pair() -> Iterator[NetnsPair]:
    with netns_pair("ztd") as created:
        created.listen_many([(port, family) for port in (ALLOWED, FORBIDDEN) for family in (4, 6)])
        yield created


def pod_ruleset() -> dict[str, Any]:
    """tcp/80 from the shared set's peers, deny the rest; the set itself is only named."""
    rules = [
        {"verdict": "accept", "origin": "implicit:established", "conntrack": ["established", "related"]},
        {"verdict": "accept", "origin": "implicit:icmpv6-nd", "protocol": "icmpv6"},
        {"verdict": "accept", "origin": "default[0] peers tcp/80", "protocol": "tcp", "ports": [str(ALLOWED)], "peer_set": "zt-peers"},
    ]
    return {
        "chains": [
            {"name": "ingress", "hook": "input", "default_verdict": "deny", "rules": rules},
            {"name": "egress", "hook": "output", "default_verdict": "accept", "rules": []},
        ],
        "address_sets": [{"name": "zt-peers", "shared": True}],
    }


def arguments(pair: NetnsPair, backend: str, sets: dict[str, Any]) -> dict[str, Any]:
    pods = [
        {"host": f"{name}.shop.pod.lab", "namespace": "shop", "name": name, "uid": name, "ips": [address], "container_ids": [],
         "netns": None, "ruleset": pod_ruleset()}
        for name, address in (("server", pair.server_v4), ("client", pair.client_v4))
    ]
    return {"backend": backend, "pods": pods, "sets": sets, "default_action": "reject"}


def truth(pair: NetnsPair) -> dict[str, bool]:
    return {f"v{family}/{port}": pair.connect(pair.server_v4 if family == 4 else pair.server_v6, port)
            for family in (4, 6) for port in (ALLOWED, FORBIDDEN)}


def live_sets(backend: str, namespace: str) -> str:
    return in_ns(namespace, ["nft", "list", "table", "inet", "zerotrust"] if backend == "nftables" else ["ipset", "save"]).stdout


@pytest.mark.parametrize("backend", ["iptables-nft", "nftables"])
def test_each_pod_namespace_gets_its_own_set_from_the_shared_one(pair: NetnsPair, backend: str) -> None:
    peers = [pair.client_v4, pair.client_v6, "198.51.100.7"]
    args = arguments(pair, backend, {"zt-peers": {"members": peers, "comment": "peers of default[0]"}})
    first = run_module(args)
    assert (first["failed"], first["changed"]) == (False, True), first
    assert [(result["target"], result["changed"]) for result in first["results"]] == [
        ("server.shop.pod.lab", True), ("client.shop.pod.lab", True)]
    for namespace in (pair.server, pair.client):
        text = live_sets(backend, namespace)
        assert all(member in text for member in peers), f"{namespace} holds its own copy of the set: {text}"
    assert truth(pair) == {"v4/80": True, "v4/8080": False, "v6/80": True, "v6/8080": False}
    again = run_module(args)
    assert (again["failed"], again["changed"]) == (False, False), again


def test_a_missing_shared_set_fails_before_any_namespace_is_written(pair: NetnsPair) -> None:
    result = run_module(arguments(pair, "iptables-nft", {"zt-other": {"members": ["192.0.2.1"]}}))
    assert result["failed"] is True
    assert result["msg"] == ("pod server.shop.pod.lab: address set 'zt-peers' is shared, but sets has no set of that name "
                             "(pass the compiled plan's sets of this host beside its rulesets)")
    for namespace in (pair.server, pair.client):
        assert "ZT-" not in in_ns(namespace, ["iptables-save"]).stdout
        assert "zt-" not in in_ns(namespace, ["ipset", "save"]).stdout
    assert truth(pair) == dict.fromkeys(("v4/80", "v4/8080", "v6/80", "v6/8080"), True)

# SPDX-License-Identifier: GPL-3.0-or-later
"""Pods written without a read first (``pristine_pods``): the same rules as the usual way, fewer commands.

The enforce role's preview reads every pod before the apply; a pod it found holding nothing at all is
handed to the apply as pristine, which writes its rules straight away (chains with ``-N``, sets with
``create``, both refused when the object exists) and then reads once, to verify. Two throwaway
namespaces stand for two pods of one node; the module runs for real through ``ansible localhost -c
local`` and real TCP connections check what the rules let through.
"""

from __future__ import annotations

import os
import re
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
PODS = ("server.shop.pod.lab", "client.shop.pod.lab")
SAVES = {"iptables-nft": ("iptables-nft-save", "ip6tables-nft-save"), "iptables-legacy": ("iptables-legacy-save", "ip6tables-legacy-save")}


@pytest.fixture
def pair() -> Iterator[NetnsPair]:
    with netns_pair("ztp") as created:
        created.listen_many([(port, family) for port in (ALLOWED, FORBIDDEN) for family in (4, 6)])
        yield created


def arguments(pair: NetnsPair, backend: str, port: int, pristine: tuple[str, ...] = ()) -> dict[str, Any]:
    """Both pods accept tcp/``port`` from the shared set's peers (the client) and deny the rest."""
    rules = [
        {"verdict": "accept", "origin": "implicit:established", "conntrack": ["established", "related"]},
        {"verdict": "accept", "origin": "implicit:icmpv6-nd", "protocol": "icmpv6"},
        {"verdict": "accept", "origin": f"default[0] peers tcp/{port}", "protocol": "tcp", "ports": [str(port)], "peer_set": "zt-peers"},
    ]
    ruleset = {
        "chains": [
            {"name": "ingress", "hook": "input", "default_verdict": "deny", "rules": rules},
            {"name": "egress", "hook": "output", "default_verdict": "accept", "rules": []},
        ],
        "address_sets": [{"name": "zt-peers", "shared": True}],
    }
    pods = [
        {"host": host, "namespace": "shop", "name": host.split(".")[0], "uid": host, "ips": [address], "container_ids": [],
         "netns": None, "ruleset": ruleset}
        for host, address in zip(PODS, (pair.server_v4, pair.client_v4), strict=True)
    ]
    return {"backend": backend, "pods": pods, "default_action": "reject", "pristine_pods": list(pristine),
            "sets": {"zt-peers": {"members": [pair.client_v4, pair.client_v6], "comment": "peers of default[0]"}}}


def truth(pair: NetnsPair) -> dict[str, bool]:
    return {f"v{family}/{port}": pair.connect(pair.server_v4 if family == 4 else pair.server_v6, port)
            for family in (4, 6) for port in (ALLOWED, FORBIDDEN)}


def ours(backend: str, namespace: str) -> list[str]:
    """Our chains' declarations, our rules and our sets as the tools list them.

    Left out: packet counters, and the random hash seed (``initval``) the kernel gives each set it creates.
    """
    lines = [line for save in SAVES[backend] for line in in_ns(namespace, [save]).stdout.splitlines()]
    lines += in_ns(namespace, ["ipset", "save"]).stdout.splitlines()
    return sorted(re.sub(r"\[\d+:\d+\]| initval 0x[0-9a-f]+", "", line) for line in lines if "ZT-" in line or "zt-" in line)


def each(counts: dict[str, int]) -> dict[str, dict[str, int]]:
    """The same command counts for both pods."""
    return {pod: dict(counts) for pod in PODS}


def commands(result: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {entry["target"]: entry["commands"] for entry in result["results"]}


@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy"])
def test_pristine_pods_get_the_same_rules_with_one_read(pair: NetnsPair, backend: str) -> None:
    first = run_module(arguments(pair, backend, ALLOWED, pristine=PODS))
    assert (first["failed"], first["changed"]) == (False, True), first
    # Written straight away (ipset restore, one restore per family), then read once to verify: iptables-nft asks the
    # kernel whether the namespace holds exactly what was written (no command); iptables-legacy runs its two saves and
    # lists the ipsets over netlink.
    verified = {"reads": 0, "netlink_reads": 1} if backend == "iptables-nft" else {"reads": 2, "netlink_reads": 1}
    assert commands(first) == each({**verified, "writes": 3, "cached_reads": 0})
    assert truth(pair) == {"v4/80": True, "v4/8080": False, "v6/80": True, "v6/8080": False}
    written = {namespace: ours(backend, namespace) for namespace in (pair.server, pair.client)}
    assert any(line.startswith(":ZT-INGRESS") for line in written[pair.server]), written
    # Exactly what the usual read-then-write makes of the same namespaces...
    removed = run_module({**arguments(pair, backend, ALLOWED), "state": "absent"})
    assert (removed["failed"], removed["changed"]) == (False, True), removed
    assert ours(backend, pair.server) == []
    usual = run_module(arguments(pair, backend, ALLOWED))
    assert (usual["failed"], usual["changed"]) == (False, True), usual
    # Read, written, read to verify. iptables-nft's two saves before the write print what the removal's verifying read
    # printed (nothing was committed since): from the read cache; its verifying read asks the kernel.
    nft = backend == "iptables-nft"
    assert commands(usual) == each({"reads": 0 if nft else 4, "writes": 3, "cached_reads": 2 if nft else 0, "netlink_reads": 2})
    assert {namespace: ours(backend, namespace) for namespace in (pair.server, pair.client)} == written
    # ... and a run after it finds nothing to change.
    again = run_module(arguments(pair, backend, ALLOWED))
    assert (again["failed"], again["changed"]) == (False, False), again


def test_a_pod_named_pristine_that_holds_our_rules_is_read_and_applied(pair: NetnsPair) -> None:
    backend = "iptables-nft"
    before = run_module(arguments(pair, backend, FORBIDDEN))
    assert (before["failed"], before["changed"]) == (False, True), before
    assert truth(pair) == {"v4/80": False, "v4/8080": True, "v6/80": False, "v6/8080": True}
    # Named pristine although its chains and set exist (a run in between): the first write refuses to create the
    # set that is there, and the pod is read, compared and written as usual.
    wrong = run_module(arguments(pair, backend, ALLOWED, pristine=PODS))
    assert (wrong["failed"], wrong["changed"]) == (False, True), wrong
    # The refused ipset restore counts as a write; then a read (its two saves, the ipsets over netlink), the two changed
    # families, and the verifying read (asked of the kernel).
    assert commands(wrong) == each({"reads": 2, "writes": 3, "cached_reads": 0, "netlink_reads": 2})
    assert truth(pair) == {"v4/80": True, "v4/8080": False, "v6/80": True, "v6/8080": False}
    expected = {namespace: ours(backend, namespace) for namespace in (pair.server, pair.client)}
    again = run_module(arguments(pair, backend, ALLOWED))
    assert (again["failed"], again["changed"]) == (False, False), again
    assert {namespace: ours(backend, namespace) for namespace in (pair.server, pair.client)} == expected


def test_check_mode_and_nftables_look_first_whatever_the_hint(pair: NetnsPair) -> None:
    preview = run_module(arguments(pair, "iptables-nft", ALLOWED, pristine=PODS), check=True)
    assert (preview["failed"], preview["changed"]) == (False, True), preview
    # Fresh namespaces: the kernel shows over netlink that they hold no table and no set; no command reads them.
    assert commands(preview) == each({"reads": 0, "writes": 0, "cached_reads": 0, "netlink_reads": 0})
    assert [entry["in_place"] for entry in preview["results"]] == [0, 0]
    assert all("ZT-" not in in_ns(namespace, ["iptables-save"]).stdout for namespace in (pair.server, pair.client))
    applied = run_module(arguments(pair, "nftables", ALLOWED, pristine=PODS))
    assert (applied["failed"], applied["changed"]) == (False, True), applied
    # nft: no table of ours seen over netlink, one write (nft -f), one verifying read; in the first namespace also
    # the check whether the kernel takes our table (nft -c), once per run.
    assert commands(applied) == {
        PODS[0]: {"reads": 2, "writes": 1, "cached_reads": 0, "netlink_reads": 0},
        PODS[1]: {"reads": 1, "writes": 1, "cached_reads": 0, "netlink_reads": 0},
    }
    assert truth(pair) == {"v4/80": True, "v4/8080": False, "v6/80": True, "v6/8080": False}

# SPDX-License-Identifier: GPL-3.0-or-later
"""Parsing conntrack and the observer's sets, and merging many namespaces' views."""

from __future__ import annotations

import json

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.errors import AuditError
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.observation import (
    Connection,
    Record,
    merge,
    merge_sources,
    observer_script,
    parse_conntrack,
    parse_observer,
)

CONNTRACK = """\
ipv4     2 tcp      6 119 TIME_WAIT src=172.18.221.1 dst=172.18.221.11 sport=40000 dport=30358 \
src=10.244.1.94 dst=10.244.1.1 sport=80 dport=40000 [ASSURED] mark=0 use=1
ipv4     2 tcp      6 118 SYN_SENT src=172.18.221.99 dst=172.18.221.11 sport=40001 dport=30358 [UNREPLIED] \
src=10.244.1.94 dst=10.244.1.1 sport=80 dport=40001 mark=0 use=1
ipv6     10 udp      17 29 src=fd00::1 dst=fd00::2 sport=5353 dport=53 src=fd00::2 dst=fd00::1 sport=53 dport=5353 mark=0 use=1
ipv4     2 icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=1 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=1 mark=0 use=1
tcp      6 431999 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=1 dport=2 src=127.0.0.1 dst=127.0.0.1 sport=2 dport=1 [ASSURED] mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 5 flow entries have been shown.
"""


def test_parse_conntrack_reads_original_reply_and_answer() -> None:
    records = parse_conntrack(CONNTRACK, "k8s-node1")
    assert [(r.original.to_list(), r.reply.to_list() if r.reply else None, r.answered) for r in records] == [
        (["tcp", "172.18.221.1", 40000, "172.18.221.11", 30358], ["tcp", "10.244.1.94", 80, "10.244.1.1", 40000], True),
        (["tcp", "172.18.221.99", 40001, "172.18.221.11", 30358], ["tcp", "10.244.1.94", 80, "10.244.1.1", 40001], False),
        (["udp", "fd00::1", 5353, "fd00::2", 53], ["udp", "fd00::2", 53, "fd00::1", 5353], True),
        (["tcp", "127.0.0.1", 1, "127.0.0.1", 2], ["tcp", "127.0.0.1", 2, "127.0.0.1", 1], True),
    ]
    assert [r.translated for r in records] == [True, True, False, False]
    assert {r.seen_at for r in records} == {"k8s-node1"}


def _set(name: str, elements: list[list[object]]) -> dict[str, object]:
    return {
        "set": {
            "family": "inet",
            "table": "zt_audit",
            "name": name,
            "elem": [{"elem": {"val": {"concat": e}, "expires": 10}} for e in elements],
        }
    }


def test_parse_observer_merges_families_and_skips_foreign_tables() -> None:
    document = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            _set("attempts4", [["10.0.0.1", "10.0.0.2", "tcp", 1000, 80]]),
            _set("attempts6", [["fd00::1", "fd00::2", 17, 1001, 53]]),
            _set("answered4", [["10.0.0.1", "10.0.0.2", "tcp", 1000, 80]]),
            _set("legs4", [["10.244.1.1", "10.244.1.94", "tcp", 1000, 80]]),
            {
                "set": {
                    "family": "inet",
                    "table": "zerotrust",
                    "name": "attempts4",
                    "elem": [{"elem": {"val": {"concat": ["1.1.1.1", "2.2.2.2", "tcp", 1, 2]}}}],
                }
            },
        ]
    }
    sets = parse_observer(json.dumps(document))
    assert sets == {
        "attempts": {Connection("tcp", "10.0.0.1", 1000, "10.0.0.2", 80), Connection("udp", "fd00::1", 1001, "fd00::2", 53)},
        "answered": {Connection("tcp", "10.0.0.1", 1000, "10.0.0.2", 80)},
        "legs": {Connection("tcp", "10.244.1.1", 1000, "10.244.1.94", 80)},
    }


@pytest.mark.parametrize(("text", "expected"), [("", set()), ('{"nftables": []}', set())])
def test_parse_observer_empty(text: str, expected: set[Connection]) -> None:
    assert parse_observer(text)["attempts"] == expected


def test_parse_observer_rejects_garbage() -> None:
    with pytest.raises(AuditError, match="nft -j output is not JSON"):
        parse_observer("table inet zt_audit {")


def test_merge_sources_prefers_the_observer_and_keeps_conntrack_legs() -> None:
    seen = Connection("tcp", "10.0.0.1", 1000, "10.0.0.2", 80)
    dropped = Connection("tcp", "10.0.0.1", 1001, "10.0.0.3", 80)
    stale = Connection("tcp", "10.0.0.1", 999, "10.0.0.2", 80)  # in conntrack, older than the audit window
    nodeport = Connection("tcp", "172.18.221.1", 40000, "172.18.221.11", 30358)
    pod_view = Connection("tcp", "10.244.1.1", 40000, "10.244.1.94", 80)
    conntrack = [Record("n1", stale, stale.reversed(), True), Record("n1", nodeport, pod_view.reversed(), True)]
    sets = {"attempts": {seen, dropped}, "answered": {seen}, "legs": set()}
    records, legs = merge_sources(conntrack, sets, "n1", observed=True)
    assert [(r.original, r.answered) for r in records] == [(seen, True), (dropped, False)]
    assert legs == [pod_view]
    records, legs = merge_sources(conntrack, sets, "n1", observed=False)
    assert [r.original for r in records] == [stale, nodeport]


def test_parse_observer_window_uses_element_age() -> None:
    document = {
        "nftables": [
            {
                "set": {
                    "table": "zt_audit",
                    "name": "attempts4",
                    "timeout": 3600,
                    "elem": [
                        {"elem": {"val": {"concat": ["10.0.0.1", "10.0.0.2", "tcp", 1, 80]}, "expires": 3590}},  # 10 s old
                        {"elem": {"val": {"concat": ["10.0.0.1", "10.0.0.2", "tcp", 2, 80]}, "expires": 3000}},  # 600 s old
                    ],
                }
            }
        ]
    }
    text = json.dumps(document)
    assert {c.source_port for c in parse_observer(text)["attempts"]} == {1, 2}
    assert {c.source_port for c in parse_observer(text, max_age=60)["attempts"]} == {1}


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        (Connection("tcp", "172.18.221.11", 22, "172.18.221.254", 51234), Connection("tcp", "172.18.221.254", 51234, "172.18.221.11", 22)),
        (Connection("tcp", "172.18.221.254", 51234, "172.18.221.11", 22), Connection("tcp", "172.18.221.254", 51234, "172.18.221.11", 22)),
        (Connection("udp", "10.0.0.1", 53, "10.0.0.2", 53), Connection("udp", "10.0.0.1", 53, "10.0.0.2", 53)),
    ],
)
def test_merge_turns_mid_stream_pickups_round(connection: Connection, expected: Connection) -> None:
    [merged] = merge([Record("n1", connection, None, True)])
    assert merged.original == expected


def test_merge_drops_translated_legs_and_combines_views() -> None:
    nodeport = Connection("tcp", "172.18.221.1", 40000, "172.18.221.11", 30358)
    pod_view = Connection("tcp", "10.244.1.1", 40000, "10.244.1.94", 80)
    direct = Connection("tcp", "10.244.1.94", 5000, "10.244.3.18", 3306)
    records = [
        Record("haproxy", nodeport, None, False),  # the consumer's observer saw the attempt
        Record("k8s-node1", nodeport, pod_view.reversed(), True),  # the node's conntrack: DNAT + masquerade
        Record("wordpress-pod", pod_view, None, True),  # the pod's observer: the translated leg
        Record("k8s-node1", direct, direct.reversed(), True),
        Record("k8s-node3", direct, direct.reversed(), True),
    ]
    merged = merge(records)
    assert [(m.original, m.answered, m.seen_at) for m in merged] == [
        (direct, True, ("k8s-node1", "k8s-node3")),
        (nodeport, True, ("haproxy", "k8s-node1")),
    ]


def test_merge_uses_observer_legs_when_conntrack_forgot() -> None:
    pod_view = Connection("tcp", "10.244.1.1", 40000, "10.244.1.94", 80)
    assert merge([Record("pod", pod_view, None, True)], legs=[pod_view]) == []


def test_record_wire_round_trip() -> None:
    original = Connection("tcp", "172.18.221.1", 40000, "172.18.221.11", 30358)
    record = Record("k8s-node1", original, Connection("tcp", "10.244.1.94", 80, "10.244.1.1", 40000), True)
    assert record.to_list() == ["tcp", "172.18.221.1", 40000, "172.18.221.11", 30358, "10.244.1.94", 80, "10.244.1.1", 40000, True]
    assert Record.from_list("k8s-node1", record.to_list()) == record
    bare = Record("vm", original, None, False)
    assert Record.from_list("vm", bare.to_list()) == bare


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["tcp", "1.2.3.4"], "must have 10 fields"),
        (["tcp", "not-an-ip", 1, "1.2.3.4", 2, None, None, None, None, True], "must be \\[protocol, source"),
    ],
)
def test_record_wire_errors(data: list[object], message: str) -> None:
    with pytest.raises(AuditError, match=message):
        Record.from_list("x", data)


def test_observer_script_is_passive_and_validated() -> None:
    script = observer_script("30m", 1024)
    assert script.startswith("add table inet zt_audit\ndelete table inet zt_audit\nadd table inet zt_audit\n")
    assert "priority -175; policy accept;" in script
    # passive: no verdict statements anywhere
    for verdict in (" drop", " reject", " accept\n", " jump ", " goto "):
        assert verdict not in script.replace("policy accept;", "")
    assert script.count("timeout 30m; size 1024;") == 6
    with pytest.raises(AuditError, match="observer timeout"):
        observer_script("1h; flush ruleset")

# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the nftables backend: rendering, parsing the JSON listing, comparing.

Whole scripts are compared with golden files under ``golden/``; regenerate them with
``ZT_UPDATE_GOLDEN=1 pytest tests/unit/plugins/module_utils/_netfilter/test_nftables.py``
and review the diff. ``golden/nft_listing_basic.json`` is what nft 1.0.6 listed after
applying ``golden/nft_basic_drop.nft`` in a throwaway namespace.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import nftables
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import (
    Changes,
    LiveState,
    Options,
    hash_from_comment,
    members_hash,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import rule_hash as backend_rule_hash
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import (
    AddressSet,
    Chain,
    ModelError,
    PortRange,
    Rule,
    Ruleset,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import Namespace, Runner

GOLDEN = Path(__file__).parent / "golden"
DROP = Options()
REJECT = Options(default_action="reject")


def golden(name: str, text: str) -> None:
    """Compare ``text`` with golden/<name> (or write it when ZT_UPDATE_GOLDEN is set)."""
    path = GOLDEN / name
    if os.environ.get("ZT_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def basic_ruleset(members: tuple[str, ...] = ("10.0.0.1", "10.0.0.2", "10.1.0.0/16", "10.1.2.3", "fd00::1")) -> Ruleset:
    """A small ruleset touching every rendering branch: sets, conntrack, loopback, ICMP, the guard."""
    http = (PortRange(80, 80), PortRange(8000, 8080))
    nodeport = (PortRange(30358, 30358),)
    return Ruleset(
        address_sets=(AddressSet("zt-peers", members), AddressSet("zt-dns", ("10.96.0.10",))),
        chains=(
            Chain(
                "ingress",
                "input",
                (
                    Rule("accept", "implicit:conntrack", conntrack=("established", "related")),
                    Rule("accept", "implicit:loopback", interface="lo"),
                    Rule("accept", "default[0] haproxy->wordpress tcp/80", protocol="tcp", ports=http, peer_set="zt-peers"),
                    Rule("accept", "implicit:icmp", protocol="icmp", icmp_types=(8,)),
                    Rule("accept", "implicit:ndp", protocol="icmpv6", icmp_types=(135, 136)),
                ),
                "deny",
            ),
            Chain(
                "egress",
                "output",
                (
                    Rule("accept", "implicit:conntrack", conntrack=("established", "related")),
                    Rule("accept", "implicit:loopback", interface="lo"),
                    Rule("accept", "implicit:dns", protocol="udp", ports=(PortRange(53, 53),), peer_set="zt-dns", family=4),
                ),
                "deny",
            ),
            Chain(
                "nodeport_guard",
                "prerouting",
                (
                    Rule("accept", "guard wordpress", protocol="tcp", ports=nodeport, peer_set="zt-peers", local_destination=True),
                    Rule("deny", "guard wordpress others", protocol="tcp", ports=nodeport, local_destination=True),
                ),
                "return",
            ),
        ),
    )


def backend(options: Options = DROP) -> nftables.NftablesBackend:
    """A backend whose runner is never used: these tests run no command."""
    return nftables.NftablesBackend(Runner(Namespace()), options)


def listing() -> dict[str, Any]:
    """The recorded JSON listing of golden/nft_basic_drop.nft."""
    data: dict[str, Any] = json.loads((GOLDEN / "nft_listing_basic.json").read_text())
    return data


def live_state(data: dict[str, Any]) -> LiveState:
    """A read() result for a JSON listing."""
    live = nftables.parse_listing(json.dumps(data))
    return LiveState(present=True, raw=live)


def rules_of(data: dict[str, Any], chain: str) -> list[dict[str, Any]]:
    """The listing's rule objects of one chain."""
    return [item["rule"] for item in data["nftables"] if "rule" in item and item["rule"]["chain"] == chain]


# --------------------------------------------------------------------------- rendering


RULE_CASES = [
    # (rule, hook, options, expected rule texts)
    (Rule("accept", "o", conntrack=("related", "established")), "input", DROP, ["ct state established,related accept"]),
    (Rule("accept", "o", interface="lo"), "input", DROP, ['iifname "lo" accept']),
    (Rule("accept", "o", interface="lo"), "output", DROP, ['oifname "lo" accept']),
    (Rule("accept", "o", protocol="tcp", ports=(PortRange(22, 22),)), "input", DROP, ["tcp dport 22 accept"]),
    (Rule("accept", "o", protocol="udp"), "input", DROP, ["meta l4proto udp accept"]),
    (Rule("accept", "o", protocol="tcp", source_ports=(PortRange(22, 22),)), "output", DROP, ["tcp sport 22 accept"]),
    (
        Rule("accept", "o", protocol="tcp", source_ports=(PortRange(22, 22), PortRange(2222, 2222)), ports=(PortRange(80, 80),)),
        "output",
        DROP,
        ["tcp sport { 22, 2222 } tcp dport 80 accept"],
    ),
    (Rule("accept", "o", protocol="sctp", ports=(PortRange(5000, 5001),)), "input", DROP, ["sctp dport 5000-5001 accept"]),
    (
        Rule("accept", "o", protocol="tcp", ports=(PortRange(80, 80),), peer_set="p"),
        "input",
        DROP,
        ["ip saddr @p_4 tcp dport 80 accept", "ip6 saddr @p_6 tcp dport 80 accept"],
    ),
    (Rule("accept", "o", peer_set="p"), "output", DROP, ["ip daddr @p_4 accept", "ip6 daddr @p_6 accept"]),
    (Rule("accept", "o", peer_set="p", family=6), "input", DROP, ["ip6 saddr @p_6 accept"]),
    (Rule("accept", "o", family=4, protocol="tcp"), "input", DROP, ["meta nfproto ipv4 meta l4proto tcp accept"]),
    (Rule("accept", "o", protocol="icmp"), "input", DROP, ["meta nfproto ipv4 meta l4proto icmp accept"]),
    (Rule("accept", "o", protocol="icmp", icmp_types=(8, 0)), "input", DROP, ["meta nfproto ipv4 icmp type { 0, 8 } accept"]),
    (Rule("accept", "o", protocol="icmpv6"), "input", DROP, ["meta nfproto ipv6 meta l4proto ipv6-icmp accept"]),
    (Rule("accept", "o", protocol="icmpv6", icmp_types=(135,)), "input", DROP, ["meta nfproto ipv6 icmpv6 type 135 accept"]),
    (Rule("accept", "o", local_destination=True, conntrack=("new",)), "prerouting", DROP, ["fib daddr type local ct state new accept"]),
    # return leaves our base chain and lets the hook's other base chains decide: accept.
    (Rule("return", "o"), "prerouting", DROP, ["accept"]),
    (Rule("drop", "o"), "input", REJECT, ["drop"]),
    (Rule("deny", "o"), "input", DROP, ["drop"]),
    (Rule("deny", "o", protocol="tcp"), "input", REJECT, ["meta l4proto tcp reject with tcp reset"]),
    (Rule("deny", "o", protocol="udp", ports=(PortRange(53, 53),)), "input", REJECT, ["udp dport 53 reject"]),
    (Rule("deny", "o"), "output", REJECT, ["meta l4proto tcp reject with tcp reset", "reject"]),
    # prerouting never rejects (old kernels refuse it there; a guard need not answer).
    (Rule("deny", "o", protocol="tcp"), "prerouting", REJECT, ["meta l4proto tcp drop"]),
]


@pytest.mark.parametrize(("rule", "hook", "options", "expected"), RULE_CASES)
def test_rule_rendering(rule: Rule, hook: str, options: Options, expected: list[str]) -> None:
    assert [nft_rule.text for nft_rule in nftables._render_rule(rule, hook, options)] == expected


def test_rule_hash_ignores_origin_and_follows_the_verdict() -> None:
    first = nftables._render_rule(Rule("accept", "policy one", protocol="tcp"), "input", DROP)[0]
    second = nftables._render_rule(Rule("accept", "policy two", protocol="tcp"), "input", DROP)[0]
    denied = nftables._render_rule(Rule("deny", "policy one", protocol="tcp"), "input", DROP)[0]
    assert first.hash == second.hash
    assert first.hash != denied.hash


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("default[0] a->b tcp/80", "zt:{h} default[0] a->b tcp/80"),
        ('evil" ; drop\nnewline\\', "zt:{h} evil_ ; drop_newline_"),
        ("x" * 300, "zt:{h} " + "x" * (128 - 20)),
    ],
)
def test_comment_is_sanitised_and_fits_nft(origin: str, expected: str) -> None:
    rendered = nftables._render_rule(Rule("accept", origin), "input", DROP)[0]
    assert rendered.comment == expected.format(h=rendered.hash)
    assert len(rendered.comment) <= 128
    assert hash_from_comment(rendered.comment) == rendered.hash


def test_last_rule_records_the_chain_digest_within_128_characters() -> None:
    chain = nftables._render_chain(Chain("ingress", "input", (Rule("accept", "a"),), "deny", default_origin="c" * 200), DROP)
    last = chain.rules[-1]
    assert last.chain_digest == backend_rule_hash(*chain.hashes)
    assert last.comment.startswith(f"zt:{last.hash} ~{last.chain_digest} ccc")
    assert len(last.comment) == 128
    assert all(not rule.chain_digest for rule in chain.rules[:-1])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (DROP, ["accept", "drop"]),
        (Options(log_denied=True, log_rate="3/second"), ["accept", 'limit rate 3/second log prefix "zt-denied ingress "', "drop"]),
    ],
)
def test_chain_ends_in_its_default_with_optional_log(options: Options, expected: list[str]) -> None:
    chain = nftables._render_chain(Chain("ingress", "input", (Rule("accept", "a"),), "deny"), options)
    assert [rule.text for rule in chain.rules] == expected
    assert chain.declaration == "{ type filter hook input priority -10; policy accept; }"


@pytest.mark.parametrize(
    ("hook", "priority"),
    [("input", -10), ("output", -10), ("forward", -10), ("prerouting", -150)],
)
def test_chain_priorities(hook: str, priority: int) -> None:
    assert nftables._render_chain(Chain("c", hook, (), "accept"), DROP).priority == priority


@pytest.mark.parametrize(
    ("name", "family", "expected"),
    [("zt-abc", 4, "zt-abc_4"), ("zt_abc", 6, "zt_abc_6"), ("1abc", 4, "s1abc_4"), ("-x", 6, "s-x_6")],
)
def test_set_object_name(name: str, family: int, expected: str) -> None:
    assert nftables.set_object_name(name, family) == expected


@pytest.mark.parametrize(
    ("members", "family", "expected"),
    [
        (["10.0.0.3", "10.0.0.1"], 4, ("10.0.0.1", "10.0.0.3")),
        (["10.0.0.2", "10.0.0.1"], 4, ("10.0.0.1-10.0.0.2",)),  # adjacent: one interval, as nft may list it
        (["10.0.0.0/31", "10.0.0.1"], 4, ("10.0.0.0/31",)),
        (["10.0.0.0/25", "10.0.0.128/25", "fd00::1"], 4, ("10.0.0.0/24",)),
        (["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"], 4, ("10.0.0.4/30",)),
        (["10.1.2.3", "10.0.0.0/8", "fd00::/64", "fd00::5"], 6, ("fd00::/64",)),
        (["10.1.2.3", "10.0.0.0/8", "11.0.0.0/8"], 4, ("10.0.0.0/7",)),
        (["fd00::ffff", "fd00::1:0"], 6, ("fd00::ffff-fd00::1:0",)),
        ([], 4, ()),
    ],
)
def test_collapse_members(members: list[str], family: int, expected: tuple[str, ...]) -> None:
    assert nftables.collapse_members(members, family) == expected


def test_a_member_that_is_no_address_is_refused() -> None:
    with pytest.raises(nftables.NftablesError, match=r"'10.0.0.300' is not an IPv4 address or network"):
        nftables.collapse_members(["10.0.0.300"], 4)


def test_set_names_that_collide_are_refused() -> None:
    # The model refuses them now (issue #15), before any backend renders them.
    with pytest.raises(ModelError, match=r"address set names '1a' and 's1a' both become the nft sets s1a_4/_6; rename one of them"):
        Ruleset(chains=(), address_sets=(AddressSet("1a", ()), AddressSet("s1a", ())))


def test_an_interface_name_that_is_not_one_is_refused() -> None:
    with pytest.raises(ModelError, match=r"rule 'bad': interface 'lo\" accept; drop' is not an interface name"):
        Ruleset(chains=(Chain("ingress", "input", (Rule("accept", "bad", interface='lo" accept; drop'),), "deny"),))


@pytest.mark.parametrize(("options", "name"), [(DROP, "nft_basic_drop.nft"), (REJECT, "nft_basic_reject.nft")])
def test_full_script_golden(options: Options, name: str) -> None:
    golden(name, nftables.full_script(nftables.render_table(basic_ruleset(), options)))


def test_describe_golden() -> None:
    golden("nft_basic_describe.txt", backend().render(basic_ruleset()))


def test_empty_set_writes_no_element_line() -> None:
    table = nftables.render_table(Ruleset(chains=(), address_sets=(AddressSet("zt-empty", ()),)), DROP)
    assert nftables.full_script(table) == (
        "add table inet zerotrust\n"
        "delete table inet zerotrust\n"
        "add table inet zerotrust\n"
        "add set inet zerotrust zt-empty_4 { type ipv4_addr; flags interval; }\n"
        "flush set inet zerotrust zt-empty_4\n"
        "add set inet zerotrust zt-empty_6 { type ipv6_addr; flags interval; }\n"
        "flush set inet zerotrust zt-empty_6\n"
    )


def test_a_set_and_its_rule_going_away_flush_the_chain_before_deleting_the_set() -> None:
    ruleset = basic_ruleset()
    egress = Chain("egress", "output", ruleset.chains[1].rules[:2], "deny")
    smaller = Ruleset(chains=(ruleset.chains[0], egress, ruleset.chains[2]), address_sets=ruleset.address_sets[:1])
    plan = backend().plan(smaller, live_state(listing()))
    lines = plan.steps[0].stdin.splitlines()
    assert lines[:4] == [
        "add table inet zerotrust",
        "flush chain inet zerotrust egress",
        "delete set inet zerotrust zt-dns_4",
        "delete set inet zerotrust zt-dns_6",
    ]


# --------------------------------------------------------------------------- reading and comparing


def test_parse_listing_of_our_table() -> None:
    live = nftables.parse_listing(json.dumps(listing()))
    assert sorted(live.chains) == ["egress", "ingress", "nodeport_guard"]
    assert live.sets["zt-peers_4"].members == ("10.0.0.1-10.0.0.2", "10.1.0.0/16")
    assert live.sets["zt-peers_6"].members == ("fd00::1",)
    assert live.sets["zt-peers_4"].flags == ("interval",)
    ingress = live.chains["ingress"]
    assert (ingress.type, ingress.hook, ingress.priority, ingress.policy) == ("filter", "input", -10, "accept")
    assert ingress.hashes == nftables.render_table(basic_ruleset(), DROP).chain("ingress").hashes  # type: ignore[union-attr]
    assert not ingress.hand_edited()
    assert live.others == ()


@pytest.mark.parametrize(
    ("element", "family", "expected"),
    [
        ("10.0.0.1", 4, ("10.0.0.1",)),
        ({"prefix": {"addr": "10.0.0.0", "len": 8}}, 4, ("10.0.0.0/8",)),
        ({"range": ["10.0.0.1", "10.0.0.4"]}, 4, ("10.0.0.1-10.0.0.4",)),
        ({"range": ["fd00::", "fd00::3"]}, 6, ("fd00::/126",)),
    ],
)
def test_element_forms(element: Any, family: int, expected: tuple[str, ...]) -> None:
    assert nftables._format_spans([nftables._element_span(element, family)], family) == expected


def test_unknown_element_form_is_an_error() -> None:
    with pytest.raises(nftables.NftablesError, match=r'unexpected element \{"concat": \[1, 2\]\} in a set of table inet zerotrust'):
        nftables._element_span({"concat": [1, 2]}, 4)


def test_garbage_listing_is_an_error() -> None:
    with pytest.raises(nftables.NftablesError, match=r"cannot read nft's JSON listing of table inet zerotrust"):
        nftables.parse_listing("Error: not json")


def test_noop_plan_writes_nothing_and_before_equals_after() -> None:
    plan = backend().plan(basic_ruleset(), live_state(listing()))
    assert plan.steps == []
    assert plan.drift == []
    assert plan.before == plan.after


def test_first_apply_creates_the_whole_table() -> None:
    plan = backend().plan(basic_ruleset(), LiveState(present=False))
    assert plan.drift == []
    assert [step.argv for step in plan.steps] == [("nft", "-f", "-")]
    assert plan.steps[0].stdin == nftables.full_script(nftables.render_table(basic_ruleset(), DROP))
    assert plan.before == ""


def test_member_change_rewrites_only_that_set() -> None:
    plan = backend().plan(basic_ruleset(("10.0.0.1", "10.0.0.9", "fd00::1")), live_state(listing()))
    assert plan.drift == []  # a policy change, not a hand edit
    digest = members_hash(("10.0.0.1", "10.0.0.9"))
    assert plan.steps[0].stdin == (
        "add table inet zerotrust\n"
        "add set inet zerotrust zt-peers_4 { type ipv4_addr; flags interval; }\n"
        "flush set inet zerotrust zt-peers_4\n"
        f'add element inet zerotrust zt-peers_4 {{ 10.0.0.1 comment "zt:{digest}", 10.0.0.9 }}\n'
    )
    assert plan.steps[0].origin_of_line(4) == "set zt-peers_4"


def test_rule_change_rewrites_only_that_chain() -> None:
    ruleset = basic_ruleset()
    egress = Chain("egress", "output", (*ruleset.chains[1].rules, Rule("accept", "new rule", protocol="tcp")), "deny")
    changed = Ruleset(chains=(ruleset.chains[0], egress, ruleset.chains[2]), address_sets=ruleset.address_sets)
    plan = backend().plan(changed, live_state(listing()))
    assert plan.drift == []
    lines = plan.steps[0].stdin.splitlines()
    assert lines[:3] == [
        "add table inet zerotrust",
        "flush chain inet zerotrust egress",
        "add chain inet zerotrust egress { type filter hook output priority -10; policy accept; }",
    ]
    assert all(line.startswith("add rule inet zerotrust egress ") for line in lines[3:])
    assert len(lines) == 3 + 5
    assert plan.steps[0].origin_of_line(7) == "new rule"


def test_hand_deleted_rule_is_drift_and_repaired() -> None:
    data = listing()
    doomed = rules_of(data, "ingress")[2]
    data["nftables"].remove({"rule": doomed})
    plan = backend().plan(basic_ruleset(), live_state(data))
    assert plan.drift == ["chain ingress: rules changed by hand (6 rules found, 7 expected, 1 expected rule(s) missing, 0 not ours)"]
    assert "flush chain inet zerotrust ingress" in plan.steps[0].stdin
    assert "chain egress" not in plan.steps[0].stdin


def test_hand_added_rule_is_drift_and_repaired() -> None:
    data = listing()
    extra = copy.deepcopy(rules_of(data, "egress")[0])
    extra.pop("comment")
    extra["handle"] = 999
    data["nftables"].append({"rule": extra})
    plan = backend().plan(basic_ruleset(), live_state(data))
    assert plan.drift == ["chain egress: rules changed by hand (5 rules found, 4 expected, 0 expected rule(s) missing, 1 not ours)"]
    assert "flush chain inet zerotrust egress" in plan.steps[0].stdin
    assert "(not ours: handle 999)" in plan.before


def test_hand_removed_member_is_drift_and_repaired() -> None:
    data = listing()
    for item in data["nftables"]:
        if item.get("set", {}).get("name") == "zt-peers_4":
            item["set"]["elem"] = [element for element in item["set"]["elem"] if element != "10.1.0.0/16" and "prefix" not in element]
    plan = backend().plan(basic_ruleset(), live_state(data))
    assert plan.drift == ["set zt-peers_4: members changed by hand (1 expected member(s) missing, 0 unexpected)"]
    assert "flush set inet zerotrust zt-peers_4" in plan.steps[0].stdin


def test_wrong_chain_priority_rebuilds_the_table() -> None:
    data = listing()
    for item in data["nftables"]:
        if item.get("chain", {}).get("name") == "egress":
            item["chain"]["prio"] = 0
    plan = backend().plan(basic_ruleset(), live_state(data))
    assert plan.drift == ["chain egress: filter hook output priority 0, expected filter hook output priority -10"]
    assert plan.steps[0].stdin.startswith("add table inet zerotrust\ndelete table inet zerotrust\nadd table inet zerotrust\n")


def test_objects_we_no_longer_want_are_deleted_after_flushing() -> None:
    ruleset = basic_ruleset()
    smaller = Ruleset(chains=ruleset.chains[:1], address_sets=ruleset.address_sets[:1])
    plan = backend().plan(smaller, live_state(listing()))
    assert plan.drift == []
    assert plan.steps[0].stdin == (
        "add table inet zerotrust\n"
        "flush chain inet zerotrust egress\n"
        "flush chain inet zerotrust nodeport_guard\n"
        "delete chain inet zerotrust egress\n"
        "delete chain inet zerotrust nodeport_guard\n"
        "delete set inet zerotrust zt-dns_4\n"
        "delete set inet zerotrust zt-dns_6\n"
    )


def test_absent_deletes_only_our_table() -> None:
    plan = backend().plan(None, live_state(listing()))
    assert [step.stdin for step in plan.steps] == ["delete table inet zerotrust\n"]
    assert plan.after == ""
    assert backend().plan(None, LiveState(present=False)).steps == []


def test_restore_steps_replay_the_listing() -> None:
    target = live_state(listing())
    (step,) = backend().restore_steps(target, LiveState(present=False))
    assert step.argv == ("nft", "-j", "-f", "-")
    commands = json.loads(step.stdin)["nftables"]
    assert commands[:2] == [
        {"add": {"table": {"family": "inet", "name": "zerotrust"}}},
        {"delete": {"table": {"family": "inet", "name": "zerotrust"}}},
    ]
    added = [next(iter(command["add"])) for command in commands[2:]]
    assert added.count("table") == 1 and added.count("chain") == 3 and added.count("set") == 4
    assert all("handle" not in body for command in commands[2:] for body in command["add"].values())
    (removal,) = backend().restore_steps(LiveState(present=False), target)
    assert json.loads(removal.stdin)["nftables"] == commands[:2]


# --------------------------------------------------------------------------- the structured plan


def _summary(changes: Changes) -> tuple[list[tuple[str, str]], list[tuple[str, str]], int, list[tuple[str, int, int, int]]]:
    """(added (chain, origin), removed (chain, origin or text), kept count, sets with changes)."""
    return (
        [(entry.chain, entry.origin) for entry in changes.added],
        [(entry.chain, entry.origin or entry.text) for entry in changes.removed],
        len(changes.kept),
        [(entry.name, entry.added, entry.removed, entry.kept) for entry in changes.sets if entry.added or entry.removed],
    )


def _edited(edit: str) -> dict[str, Any]:
    data = listing()
    if edit == "delete rule":
        data["nftables"].remove({"rule": rules_of(data, "ingress")[2]})
    elif edit == "add foreign rule":
        extra = copy.deepcopy(rules_of(data, "egress")[0])
        extra.pop("comment")
        extra["handle"] = 999
        data["nftables"].append({"rule": extra})
    elif edit == "remove member":
        for item in data["nftables"]:
            if item.get("set", {}).get("name") == "zt-peers_4":
                item["set"]["elem"] = [element for element in item["set"]["elem"] if element != "10.1.0.0/16" and "prefix" not in element]
    return data


@pytest.mark.parametrize(("edit", "expected"), [
    ("none", ([], [], 15, [])),
    ("delete rule", ([("ingress", "default[0] haproxy->wordpress tcp/80")], [], 14, [])),
    ("add foreign rule", ([], [("egress", "handle 999")], 15, [])),
    ("remove member", ([], [], 15, [("zt-peers_4", 1, 0, 1)])),
], ids=["noop", "delete-rule", "foreign-rule", "removed-member"])
def test_plan_changes_after_a_hand_edit(edit: str, expected: Any) -> None:
    plan = backend().plan(basic_ruleset(), live_state(_edited(edit)))
    assert _summary(plan.changes) == expected
    assert plan.changed == (edit != "none")


def test_plan_changes_of_first_apply_and_absent() -> None:
    first = backend().plan(basic_ruleset(), LiveState(present=False))
    assert (len(first.changes.added), first.changes.removed, first.changes.kept) == (15, (), ())
    assert first.changes.counts() == {"rules_added": 15, "rules_removed": 0, "set_members_added": 4, "set_members_removed": 0,
                                      "in_place": 0}
    absent = backend().plan(None, live_state(listing()))
    assert absent.changes.counts() == {"rules_added": 0, "rules_removed": 15, "set_members_added": 0, "set_members_removed": 4,
                                       "in_place": 19}
    assert absent.changes.removed[-1].origin == "catch_all"  # the chain digest (~...) is not part of the origin

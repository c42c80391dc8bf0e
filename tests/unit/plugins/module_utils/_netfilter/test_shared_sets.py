# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared sets on the wire: a host's sets travel once, its rulesets name them (docs/contracts.md section 3)."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import NetfilterError
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import (
    AddressSet,
    Chain,
    ModelError,
    Rule,
    Ruleset,
    sets_from_dict,
    sets_to_dict,
    shared_sets,
)


def ruleset(*sets: AddressSet) -> Ruleset:
    rules = tuple(Rule("accept", f"to {item.name}", peer_set=item.name) for item in sets)
    return Ruleset(chains=(Chain("egress", "output", rules, "deny"),), address_sets=sets)


WEB = AddressSet("zt-web", ("10.0.0.2", "10.0.0.1"), "web pods")
WEB_MOVED = AddressSet("zt-web", ("10.0.0.3",), "web pods")
WEB_RENAMED = AddressSet("zt-web", ("10.0.0.1", "10.0.0.2"), "other comment")
DNS = AddressSet("zt-dns", ("10.96.0.10",), "cluster DNS")


@pytest.mark.parametrize(("rulesets", "expected"), [
    ([ruleset(WEB), ruleset(WEB, DNS)], ["zt-dns", "zt-web"]),  # the same set in two rulesets: once
    ([ruleset(WEB), ruleset(AddressSet("zt-web", ("10.0.0.1", "10.0.0.2"), "web pods"))], ["zt-web"]),  # equal, not the same object
    ([ruleset(WEB, DNS), ruleset(WEB_MOVED)], ["zt-dns"]),  # one name, other members: not merged, stays inline
    ([ruleset(WEB), ruleset(WEB_RENAMED)], []),  # one name, other comment: not merged either
    ([ruleset(WEB), ruleset(WEB_MOVED), ruleset(WEB)], []),
    ([], []),
])
def test_shared_sets_dedupe(rulesets: list[Ruleset], expected: list[str]) -> None:
    found = shared_sets(rulesets)
    assert list(found) == expected
    # Whatever is shared or not, every ruleset comes back as it was.
    wire = sets_to_dict(found.values())
    for item in rulesets:
        assert Ruleset.from_dict(item.to_dict(shared=found), sets_from_dict(wire)) == item


def test_wire_form_of_a_shared_set() -> None:
    found = shared_sets([ruleset(WEB, DNS), ruleset(WEB_MOVED)])
    assert sets_to_dict(found.values()) == {"zt-dns": {"members": ["10.96.0.10"], "comment": "cluster DNS"}}
    assert ruleset(WEB, DNS).to_dict(shared=found)["address_sets"] == [
        {"name": "zt-web", "members": ["10.0.0.1", "10.0.0.2"], "comment": "web pods"},
        {"name": "zt-dns", "shared": True},
    ]


def test_memo_shares_forms_and_changes_nothing() -> None:
    memo: dict[int, Any] = {}
    first = ruleset(WEB, DNS)
    second = Ruleset(chains=first.chains, address_sets=first.address_sets)
    one, two = first.to_dict(memo=memo), second.to_dict(memo=memo)
    assert one == two == first.to_dict()
    assert one["chains"][0]["rules"][0] is two["chains"][0]["rules"][0]


@pytest.mark.parametrize(("data", "sets", "message"), [
    ({"name": "zt-web", "shared": True}, {}, "address set 'zt-web' is shared, but the host's sets have no set 'zt-web'"),
    ({"name": "zt-web", "shared": True, "members": ["10.0.0.1"]}, {"zt-web": WEB},
     "address set 'zt-web' is shared, so its members travel in the host's sets, not here"),
    ({"name": "zt-web", "shared": "yes"}, {"zt-web": WEB}, "address set 'zt-web': shared must be true or false, got a string"),
    ({"name": "zt-web", "sharing": True}, {"zt-web": WEB},
     "address set 1 has unknown fields: sharing (known: comment, members, name, shared)"),
])
def test_shared_reference_errors(data: dict[str, Any], sets: dict[str, AddressSet], message: str) -> None:
    wire = {"chains": [], "address_sets": [data]}
    with pytest.raises(ModelError) as caught:
        Ruleset.from_dict(wire, sets)
    assert str(caught.value) == message


def test_inline_sets_need_no_shared_sets() -> None:
    data = ruleset(WEB).to_dict()
    assert Ruleset.from_dict(data) == Ruleset.from_dict(data, {}) == ruleset(WEB)
    assert Ruleset.from_dict({**data, "address_sets": [{"name": "zt-web", "shared": False, "members": ["10.0.0.1"]}]}).address_sets == (
        AddressSet("zt-web", ("10.0.0.1",)),)


@pytest.mark.parametrize(("data", "message"), [
    ([], "the shared sets must be a mapping of set name to members and comment, got a list"),
    ({"zt-web": ["10.0.0.1"]}, "shared address set 'zt-web' must be a mapping, got a list"),
    ({"zt-web": {"members": "10.0.0.1"}}, "shared address set 'zt-web': members must be a list, got a string"),
    ({"zt web": {"members": []}}, "address set name 'zt web' must be 1-24 ASCII characters of [A-Za-z0-9_-]"),
    ({"zt-web": {"members": ["10.0.0.1/8"]}},
     "address set 'zt-web': member '10.0.0.1/8' is not an IP address or network: it has host bits set"),
])
def test_sets_from_dict_errors(data: Any, message: str) -> None:
    with pytest.raises(ModelError) as caught:
        sets_from_dict(data)
    assert str(caught.value) == message


SHARING = {"chains": [{"name": "egress", "hook": "output", "default_verdict": "deny",
                       "rules": [{"verdict": "accept", "origin": "to zt-web", "peer_set": "zt-web"}]}],
           "address_sets": [{"name": "zt-web", "shared": True}]}
WIRE = {"zt-web": {"members": ["10.0.0.2", "10.0.0.1"], "comment": "web pods"}}


def test_module_resolution_parses_each_shared_set_once() -> None:
    pods = [{"host": f"p{index}", "ips": ["192.0.2.1"], "netns": "ztd-surely-not-created", "ruleset": SHARING} for index in range(3)]
    sets = apply.shared_sets(WIRE, SHARING, pods)
    assert sets == {"zt-web": WEB}
    options = apply.RunOptions(keep_ssh=False, sets=sets)
    targets = apply.build_targets(None, pods, options, {})
    assert [target.ruleset for target in targets] == [ruleset(WEB)] * 3
    assert all(target.ruleset is not None and target.ruleset.address_sets[0] is sets["zt-web"] for target in targets)


@pytest.mark.parametrize(("sets", "host", "pods", "message"), [
    ({}, SHARING, [], "the host ruleset: address set 'zt-web' is shared, but sets has no set of that name "
     "(pass the compiled plan's sets of this host beside its rulesets)"),
    ({"zt-dns": WIRE["zt-web"]}, None, [{"namespace": "shop", "name": "web-1", "ruleset": SHARING}],
     "pod shop/web-1: address set 'zt-web' is shared, but sets has no set of that name "
     "(pass the compiled plan's sets of this host beside its rulesets)"),
    ({"zt-web": {"members": ["not an address"]}}, SHARING, [],
     "sets: address set 'zt-web': member 'not an address' is not an IP address or network: "
     "it does not appear to be an IPv4 or IPv6 address"),
])
def test_module_resolution_errors(sets: Any, host: Any, pods: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(NetfilterError) as caught:
        apply.shared_sets(sets, host, pods)
    assert str(caught.value) == message


def test_build_targets_without_the_sets_names_the_pod() -> None:
    pods = [{"host": "p1", "ips": ["192.0.2.1"], "netns": "ztd-surely-not-created", "ruleset": SHARING}]
    with pytest.raises(NetfilterError) as caught:
        apply.build_targets(None, pods, apply.RunOptions(keep_ssh=False), {})
    assert str(caught.value) == "pod p1: address set 'zt-web' is shared, but the host's sets have no set 'zt-web'"

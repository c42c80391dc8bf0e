# SPDX-License-Identifier: GPL-3.0-or-later
"""The compiled rule record, its serializer into the model, and the plan's shared sets."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import model
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.rules import (
    ChainSpec,
    CompiledRule,
    Serializer,
    chain_rules,
    inline_sets,
)

from tests.unit.plugins.module_utils._policy.policy_seed import MYSQL_POD, WORDPRESS_POD, seed_hostvars, seed_policy

GOLDEN = Path(__file__).parent / "golden"
OPTIONS = {"management_addresses": ["172.18.221.254"]}
PEERS = ("default[0]", "from", "all")
PEERS_NAME = model.stable_name("zt-", *PEERS)
HTTP = (model.PortRange(80, 80),)
BASE = {"protocol": None, "ports": [], "peer_set": None, "interface": None, "conntrack": [], "local_destination": False,
        "family": None, "icmp_types": []}


def rule_dict(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


@pytest.mark.parametrize(("rule", "expected"), [
    (CompiledRule("accept", "implicit:established", conntrack=("related", "established")),
     rule_dict(verdict="accept", origin="implicit:established", conntrack=["established", "related"])),
    (CompiledRule("accept", "implicit:loopback", interface="lo"), rule_dict(verdict="accept", origin="implicit:loopback", interface="lo")),
    (CompiledRule("accept", "implicit:icmpv6_neighbour_discovery", "icmpv6", icmp_types=(136, 133)),
     rule_dict(verdict="accept", origin="implicit:icmpv6_neighbour_discovery", protocol="icmpv6", icmp_types=[133, 136])),
    (CompiledRule("accept", "default[0] a->b tcp/80", "tcp", HTTP, PEERS, order=(1, 1, 0)),
     rule_dict(verdict="accept", origin="default[0] a->b tcp/80", protocol="tcp", ports=["80"], peer_set=PEERS_NAME)),
    (CompiledRule("deny", "absolute[0] x->y tcp/8000-8080", "tcp", (model.PortRange(8000, 8080), model.PortRange(22, 22)), PEERS),
     rule_dict(verdict="deny", origin="absolute[0] x->y tcp/8000-8080", protocol="tcp", ports=["22", "8000-8080"], peer_set=PEERS_NAME)),
    (CompiledRule("return", "default[0] h->w tcp/80", "tcp", (model.PortRange(30358, 30358),), PEERS, conntrack=("new",),
                  local_destination=True),
     rule_dict(verdict="return", origin="default[0] h->w tcp/80", protocol="tcp", ports=["30358"], peer_set=PEERS_NAME, conntrack=["new"],
               local_destination=True)),
])
def test_serializer_rule_to_model_and_dict(rule: CompiledRule, expected: dict[str, Any]) -> None:
    serializer = Serializer()
    serializer.add_members(PEERS, "consumers", ["10.0.0.1"])
    built = serializer.model_rule(rule)
    assert model.to_dict(built) == expected
    assert serializer.model_rule(rule) is built, "one model rule per distinct compiled rule"
    equal = CompiledRule(**{field: getattr(rule, field) for field in rule.__dataclass_fields__})
    assert serializer.model_rule(equal) is built, "an equal record (another object) shares it too"


@pytest.mark.parametrize(("rule", "message"), [
    (CompiledRule("accept", "p", None, HTTP), "rule 'p' has ports but protocol None has none"),
    (CompiledRule("maybe", "p"), "rule verdict 'maybe' is not one of accept, deny, drop, return"),
    (CompiledRule("accept", "p", "tcp", icmp_types=(1,)), "rule 'p' has ICMP types but protocol 'tcp'"),
    (CompiledRule("accept", "p", interface="not an interface"),
     "rule 'p': interface 'not an interface' is not an interface name (1-15 characters of letters, digits, . _ - @ : and a "
     "trailing + wildcard)"),
])
def test_serializer_refuses_what_the_model_refuses(rule: CompiledRule, message: str) -> None:
    with pytest.raises(model.ModelError) as caught:
        Serializer().ruleset([ChainSpec("ingress", "input", [rule], "deny")])
    assert str(caught.value) == message


def test_serializer_checks_set_members() -> None:
    serializer = Serializer()
    serializer.add_members(PEERS, "consumers", ["10.0.0.1", "10.1.2.3/8"])
    with pytest.raises(model.ModelError) as caught:
        serializer.ruleset([ChainSpec("ingress", "input", [CompiledRule("accept", "p", peer=PEERS)], "deny")])
    assert str(caught.value) == f"address set '{PEERS_NAME}': member '10.1.2.3/8' is not an IP address or network: it has host bits set"


def test_serializer_ruleset_skips_empty_peers_and_sorts_sets() -> None:
    serializer = Serializer()
    serializer.add_members(("b",), "b", ["10.0.0.2", "10.0.0.1", "10.0.0.1"])
    serializer.add_members(("a",), "a", ["2001:db8::1", "10.0.0.3"])
    serializer.add_members(("empty",), "nobody", [])
    rules = [CompiledRule("accept", "to b", peer=("b",)), CompiledRule("accept", "to nobody", peer=("empty",)),
             CompiledRule("accept", "to a", peer=("a",))]
    ruleset = serializer.ruleset([ChainSpec("egress", "output", rules, "deny"), ChainSpec("nodeport_guard", "prerouting", [], "return")])
    data = ruleset.to_dict()
    assert [rule["origin"] for rule in data["chains"][0]["rules"]] == ["to b", "to a"]
    assert [chain["default_origin"] for chain in data["chains"]] == ["catch_all", "nodeport_guard"]
    names = sorted([serializer.set_name(("a",)), serializer.set_name(("b",))])
    assert [item["name"] for item in data["address_sets"]] == names
    assert {item["name"]: item["members"] for item in data["address_sets"]} == {
        serializer.set_name(("a",)): ["10.0.0.3", "2001:db8::1"],
        serializer.set_name(("b",)): ["10.0.0.1", "10.0.0.2"],
    }
    assert model.Ruleset.from_dict(data) == ruleset


def test_chain_rules_order_icmp_and_duplicates() -> None:
    later = CompiledRule("accept", "default[1] b", "tcp", HTTP, PEERS, order=(1, 1, 1))
    first = CompiledRule("accept", "default[0] a", "tcp", HTTP, PEERS, order=(1, 1, 0))
    deny = CompiledRule("deny", "absolute[0] q", None, (), PEERS, order=(0, 0, 0))
    ping = CompiledRule("accept", "default[2] ping", "icmp", (), PEERS, order=(1, 1, 2))
    written = chain_rules([later, ping, first, deny])
    assert [(rule.origin, rule.protocol) for rule in written] == [
        ("absolute[0] q", None),
        ("default[0] a", "tcp"),  # default[1] matches the same: written once, with the first origin
        ("default[2] ping", "icmp"),
        ("default[2] ping", "icmpv6"),
    ]


@pytest.fixture(scope="module")
def seed_plan() -> dict[str, Any]:
    return compile_policy(seed_policy(), seed_hostvars(), OPTIONS)


def rulesets(entry: dict[str, Any]) -> list[dict[str, Any]]:
    own: list[Optional[dict[str, Any]]] = [entry["ruleset"], *(pod["ruleset"] for pod in entry["pods"])]
    return [ruleset for ruleset in own if ruleset is not None]


def test_every_set_travels_once_per_host(seed_plan: dict[str, Any]) -> None:
    for host, entry in seed_plan["hosts"].items():
        named = {item["name"] for ruleset in rulesets(entry) for item in ruleset["address_sets"]}
        assert set(entry["sets"]) == named, host
        for ruleset in rulesets(entry):
            assert all(item == {"name": item["name"], "shared": True} for item in ruleset["address_sets"]), host


def test_pods_of_a_node_share_their_sets() -> None:
    hostvars = seed_hostvars()
    second = copy.deepcopy(hostvars[MYSQL_POD])
    second["workload"].update(name="wordpress-mysql-5b58bbd695-second", uid="second", addresses=["10.244.3.19"])
    hostvars["wordpress-mysql-5b58bbd695-second.wordpress.pod.lab"] = second
    plan = compile_policy(seed_policy(), hostvars, OPTIONS)
    node3 = plan["hosts"]["k8s-node3"]
    first_sets, second_sets = ({item["name"] for item in pod["ruleset"]["address_sets"]} for pod in node3["pods"])
    assert first_sets == second_sets and len(first_sets) > 1, "both database pods have the same peers"
    assert set(node3["sets"]) == first_sets | {item["name"] for item in node3["ruleset"]["address_sets"]}
    inline = inline_sets(plan)["hosts"]["k8s-node3"]
    written = sum(len(item["members"]) for item in node3["sets"].values())
    written_inline = sum(len(item["members"]) for ruleset in rulesets(inline) for item in ruleset["address_sets"])
    assert (written, written_inline) == (9, 11), "each set's members once for the node instead of once per ruleset"


def test_shared_plan_resolves_to_the_golden_inline_plan(seed_plan: dict[str, Any]) -> None:
    golden = json.loads((GOLDEN / "seed.json").read_text())
    assert inline_sets(seed_plan) == golden
    assert all("sets" not in entry for entry in golden["hosts"].values())


def test_plan_rulesets_are_the_models_to_dict(seed_plan: dict[str, Any]) -> None:
    for entry in seed_plan["hosts"].values():
        sets = model.sets_from_dict(entry["sets"])
        for data in rulesets(entry):
            ruleset = model.Ruleset.from_dict(data, sets)
            assert ruleset.to_dict(shared=sets) == data


def test_a_plan_missing_a_shared_set_says_which(seed_plan: dict[str, Any]) -> None:
    node3 = seed_plan["hosts"]["k8s-node3"]
    name = node3["pods"][0]["ruleset"]["address_sets"][0]["name"]
    cut = {"hosts": {"k8s-node3": {**node3, "sets": {key: value for key, value in node3["sets"].items() if key != name}}}}
    with pytest.raises(model.ModelError) as caught:
        inline_sets(cut)
    assert str(caught.value) == f"address set '{name}' is shared, but the host's sets have no set '{name}'"
    assert node3["pods"][0]["host"] == MYSQL_POD
    assert seed_plan["hosts"]["k8s-node1"]["pods"][0]["host"] == WORDPRESS_POD

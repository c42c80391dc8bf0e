# SPDX-License-Identifier: GPL-3.0-or-later
"""Regression tests of the dataplane defects found by hostile input (issue #15, items 1-7 and 18).

Each table row is one input and the exact outcome: the error text, or what the backend
writes. The states of our own objects that a run must be able to repair are built by
parsing the save text iptables prints for them.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply, iptables, netns, nftables
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import LiveState, Options
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import NamespaceNotFoundError
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import ModelError, PortRange, Ruleset
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import CommandResult, Namespace, Runner
from detect_fakes import SaveRunner


def chain(name: str, hook: str = "input", rules: Optional[list[dict[str, Any]]] = None, verdict: str = "deny") -> dict[str, Any]:
    """One chain in the dictionary form."""
    return {"name": name, "hook": hook, "default_verdict": verdict, "rules": rules or []}


# --------------------------------------------------------------------------- items 1 and 2: chain names


@pytest.mark.parametrize(("chains", "message"), [
    ([chain("ingress"), chain("INGRESS", "output", verdict="accept")],
     "chain names 'INGRESS' and 'ingress' both become the iptables chain ZT-INGRESS; rename one of them"),
    ([chain("Egress", "output"), chain("egress", "input")],
     "chain names 'Egress' and 'egress' both become the iptables chain ZT-EGRESS; rename one of them"),
    ([chain("ingréss")],
     "chain name 'ingréss' must be 1-16 ASCII letters, digits and _, starting with a letter"),
    ([chain("ingress\u0130")],
     "chain name 'ingressİ' must be 1-16 ASCII letters, digits and _, starting with a letter"),
    ([chain("1ingress")],
     "chain name '1ingress' must be 1-16 ASCII letters, digits and _, starting with a letter"),
    ([chain("_ingress")],
     "chain name '_ingress' must be 1-16 ASCII letters, digits and _, starting with a letter"),
    ([chain("a" * 17)],
     "chain name 'aaaaaaaaaaaaaaaaa' must be 1-16 ASCII letters, digits and _, starting with a letter"),
    ([chain("ingress\uff11")],
     "chain name 'ingress\uff11' must be 1-16 ASCII letters, digits and _, starting with a letter"),
])
def test_chain_names_both_backends_accept(chains: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ModelError) as raised:
        Ruleset.from_dict({"chains": chains})
    assert str(raised.value) == message


def test_valid_chain_names_still_pass() -> None:
    ruleset = Ruleset.from_dict({"chains": [chain("ingress"), chain("nodeport_guard", "prerouting", verdict="return"), chain("Web2")]})
    assert [item.name for item in ruleset.chains] == ["ingress", "nodeport_guard", "Web2"]


SAVE_WITH_BROKEN_OBJECTS = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ZT-INGRÉSS - [0:0]
:ZT-EGRESS - [0:0]
-A INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
-A INPUT -m comment --comment "zt:0123456789abcdef jump ingréss" -j ZT-INGRÉSS
-A INPUT -m comment --comment "zt:0123456789abcdef jump ingréss" -j ZT-INGRÉSS
-A OUTPUT -m comment --comment "zt:fedcba9876543210 jump egress" -j ZT-EGRESS
-A OUTPUT -m comment --comment "zt:fedcba9876543210 jump egress" -j ZT-EGRESS
-A ZT-INGRÉSS -j DROP
COMMIT
"""


def test_jumps_to_any_of_our_chains_are_recognised_and_removed() -> None:
    """A jump to a ZT- chain whose name has characters we no longer write is still ours: absent removes it all."""
    state = iptables.State()
    iptables.parse_save(SAVE_WITH_BROKEN_OBJECTS, 4, state)
    assert state.jumps[(4, "filter", "INPUT")] == [
        '-m comment --comment "zt:0123456789abcdef jump ingréss" -j ZT-INGRÉSS',
        '-m comment --comment "zt:0123456789abcdef jump ingréss" -j ZT-INGRÉSS',
    ]
    restore, _unused_origins = iptables._rules_restore(iptables.State(), state, 4)
    assert restore == """*filter
-D INPUT -m comment --comment "zt:0123456789abcdef jump ingréss" -j ZT-INGRÉSS
-D INPUT -m comment --comment "zt:0123456789abcdef jump ingréss" -j ZT-INGRÉSS
-D OUTPUT -m comment --comment "zt:fedcba9876543210 jump egress" -j ZT-EGRESS
-D OUTPUT -m comment --comment "zt:fedcba9876543210 jump egress" -j ZT-EGRESS
-F ZT-EGRESS
-F ZT-INGRÉSS
-X ZT-EGRESS
-X ZT-INGRÉSS
COMMIT
"""


# --------------------------------------------------------------------------- item 4: zoned IPv6 members


@pytest.mark.parametrize(("member", "message"), [
    ("fe80::1%eth0", "address set 'zt-peers': member 'fe80::1%eth0' has a zone (%eth0); a firewall matches addresses without zones"),
    ("fe80::%1/64", "address set 'zt-peers': member 'fe80::%1/64' has a zone (%1); a firewall matches addresses without zones"),
    ("10.1.2.3/8", "address set 'zt-peers': member '10.1.2.3/8' is not an IP address or network: it has host bits set"),
])
def test_bad_members_are_refused_naming_the_set(member: str, message: str) -> None:
    with pytest.raises(ModelError) as raised:
        Ruleset.from_dict({"chains": [], "address_sets": [{"name": "zt-peers", "members": ["10.0.0.1", member]}]})
    assert str(raised.value) == message


# --------------------------------------------------------------------------- item 7: ports


@pytest.mark.parametrize(("text", "message"), [
    ("0", "port 0 is outside 1-65535"),
    (0, "port 0 is outside 1-65535"),
    ("65536", "port 65536 is outside 1-65535"),
    ("0-80", "port range 0-80 starts outside 1-65535"),
    ("80-70", "port range 80-70 is reversed: write 70-80"),
    ("80-70000", "port range 80-70000 ends outside 1-65535"),
    ("http", "port 'http' is not a number or a range like 8000-8080"),
    ("80-", "port '80-' is not a number or a range like 8000-8080"),
    ("-80", "port '-80' is not a number or a range like 8000-8080"),
])
def test_port_errors_say_what_is_wrong(text: Any, message: str) -> None:
    with pytest.raises(ModelError) as raised:
        PortRange.parse(text)
    assert str(raised.value) == message


def test_port_error_names_the_rule() -> None:
    rule = {"verdict": "accept", "origin": "default[3] a->b tcp/0", "protocol": "tcp", "ports": ["0"]}
    with pytest.raises(ModelError) as raised:
        Ruleset.from_dict({"chains": [chain("ingress", rules=[rule])]})
    assert str(raised.value) == "chain 'ingress' rule 1 ('default[3] a->b tcp/0'): port 0 is outside 1-65535"


# --------------------------------------------------------------------------- item 5: origin changes


def origin_ruleset(origin: str) -> Ruleset:
    """One accept rule whose only variable part is its origin."""
    rule = {"verdict": "accept", "origin": origin, "protocol": "tcp", "ports": ["80"], "peer_set": "zt-peers"}
    return Ruleset.from_dict({"chains": [chain("ingress", rules=[rule])], "address_sets": [{"name": "zt-peers", "members": ["10.0.0.1"]}]})


def iptables_live(ruleset: Ruleset) -> LiveState:
    """What a read would find after ``ruleset`` was applied by the iptables backend."""
    state = iptables.Renderer(Options()).state(ruleset)
    state.builtins = {key: list(specs) for key, specs in state.jumps.items()}
    return LiveState(present=True, raw=state)


def test_iptables_origin_change_rewrites_the_comment() -> None:
    backend = iptables.IptablesBackend(Runner(Namespace()), Options())
    backend.families = iptables.FAMILIES
    old, new = origin_ruleset("default[0] web->db tcp/80"), origin_ruleset("default[0] frontend->db tcp/80")
    assert not backend.plan(old, iptables_live(old)).changed
    plan = backend.plan(new, iptables_live(old))
    assert plan.changed and plan.drift == []
    written = "".join(step.stdin for step in plan.steps)
    assert "frontend->db tcp/80" in written and "web->db" not in written
    assert [step.what for step in plan.steps] == ["iptables-restore (IPv4)", "ip6tables-restore (IPv6)"]
    assert not backend.plan(new, iptables_live(new)).changed


def nft_live(ruleset: Ruleset) -> LiveState:
    """What a read would find after ``ruleset`` was applied by the nftables backend (handles 1, 2, ...)."""
    table = nftables.render_table(ruleset, Options())
    chains = {
        item.name: nftables.LiveChain(item.name, "filter", item.hook, item.priority, "accept", tuple(
            nftables.LiveRule(rule.hash, rule.comment, index, rule.chain_digest or None) for index, rule in enumerate(item.rules, 1)))
        for item in table.chains
    }
    sets = {item.name: nftables.LiveSet(item.name, item.type, ("interval",), item.members, item.digest if item.members else None)
            for item in table.sets}
    return LiveState(present=True, raw=nftables.LiveTable(chains, sets, (), ()))


def test_nftables_origin_change_rewrites_the_comment() -> None:
    backend = nftables.NftablesBackend(Runner(Namespace()), Options())
    old, new = origin_ruleset("default[0] web->db tcp/80"), origin_ruleset("default[0] frontend->db tcp/80")
    assert not backend.plan(old, nft_live(old)).changed
    plan = backend.plan(new, nft_live(old))
    assert plan.changed and plan.drift == []
    assert "frontend->db tcp/80" in plan.steps[0].stdin and "web->db" not in plan.steps[0].stdin
    assert not backend.plan(new, nft_live(new)).changed


# --------------------------------------------------------------------------- item 3: set sizes


@pytest.mark.parametrize(("members", "options"), [
    (3, "hash:net family inet comment"),
    (65536, "hash:net family inet hashsize 65536 maxelem 131072 comment"),
    (100000, "hash:net family inet hashsize 131072 maxelem 262144 comment"),
])
def test_ipset_is_sized_from_its_members(members: int, options: str) -> None:
    addresses = [f"10.{n // 65536}.{(n // 256) % 256}.{n % 256}" for n in range(members)]
    ruleset = Ruleset.from_dict({"chains": [], "address_sets": [{"name": "zt-big", "members": addresses}]})
    state = iptables.Renderer(Options()).state(ruleset)
    lines, _unused_origins, _unused_runs = iptables._set_update_lines(state, iptables.State())
    assert lines[0] == f"create zt-big-4 {options}"
    assert lines[1 + members] == "create zt-big-6 hash:net family inet6 comment"


def test_an_ipv6_ipset_is_sized_from_its_members_too() -> None:
    """The IPv6 set of a model set gets its own size: 100,000 IPv6 members beside 3 IPv4 ones."""
    addresses = ["10.0.0.1", "10.0.0.2", "10.0.0.3"] + [f"fd00::{n // 65536:x}:{n % 65536:x}" for n in range(100000)]
    ruleset = Ruleset.from_dict({"chains": [], "address_sets": [{"name": "zt-big", "members": addresses}]})
    lines, _unused_origins, _unused_runs = iptables._set_update_lines(iptables.Renderer(Options()).state(ruleset), iptables.State())
    assert [line for line in lines if line.startswith("create ")] == [
        "create zt-big-4 hash:net family inet comment", "create zt-big-6 hash:net family inet6 hashsize 131072 maxelem 262144 comment"]
    assert sum(line.startswith("add zt-big-6 ") for line in lines) == 100000


def test_a_full_ipset_is_replaced_by_a_bigger_one_in_the_same_restore() -> None:
    live = iptables.State()
    iptables.parse_ipset_save(
        "create zt-big-4 hash:net family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0x1234abcd\n"
        'add zt-big-4 10.0.0.1 comment "0011223344556677"\n'
        "create zt-big-4n hash:net family inet hashsize 1024 maxelem 4 comment bucketsize 12 initval 0x99\n", live)
    addresses = [f"10.{1 + n // 65536}.{(n // 256) % 256}.{n % 256}" for n in range(65537)]
    ruleset = Ruleset.from_dict({"chains": [], "address_sets": [{"name": "zt-big", "members": addresses}]})
    target = iptables.Renderer(Options()).state(ruleset)
    lines, _unused_origins, _unused_runs = iptables._set_update_lines(target, live)
    # A temporary set left by an interrupted run is destroyed first: ``create -exist`` would refuse its other size.
    assert lines[:3] == ["destroy zt-big-4n", "create zt-big-4n hash:net family inet hashsize 131072 maxelem 262144 comment -exist",
                         "flush zt-big-4n"]
    swap = lines.index("swap zt-big-4n zt-big-4")
    assert lines[swap:] == ["swap zt-big-4n zt-big-4", "destroy zt-big-4n", "create zt-big-6 hash:net family inet6 comment"]
    # ... and the final clean-up of sets no longer wanted does not destroy that temporary set a second time.
    steps = iptables.IptablesBackend(Runner(Namespace()), Options()).transaction(target, live)
    assert [step.what for step in steps] == ["ipset restore"]


# --------------------------------------------------------------------------- item 6: pod namespace hints


class AddressRunner(Runner):
    """``ip -n NAME -j addr show`` answers with the given addresses per namespace name."""

    def __init__(self, held: dict[str, list[str]]) -> None:
        super().__init__(Namespace())
        self.held = held

    def run(self, argv: Any, stdin: Optional[str] = None, check: bool = True, write: bool = False) -> CommandResult:
        addresses = self.held.get(argv[2], [])
        return CommandResult(tuple(argv), 0, '[{"addr_info": [' + ",".join(f'{{"local": "{ip}"}}' for ip in addresses) + "]}]", "")


@pytest.mark.parametrize(("pod", "message"), [
    ({"ips": ["10.0.0.9"], "netns": "other"},
     "netns hint 'other' holds none of the pod's addresses (10.0.0.9): it is another namespace"),
    ({"ips": ["10.0.0.9", "not-an-ip"], "netns": "mine"},
     "the pod's ips are not all IP addresses: 'not-an-ip'"),
    ({"ips": ["fe80::1%eth0"], "netns": "mine"},
     "the pod's ips are not all IP addresses: 'fe80::1%eth0'"),
    ({"ips": "10.0.0.9", "netns": "mine"},
     "the pod's ips must be a list of addresses, got a string"),
    ({"ips": {"v4": "10.0.0.9"}, "netns": "mine"},
     "the pod's ips must be a list of addresses, got a mapping"),
    ({"ips": 167772169, "netns": "mine"},
     "the pod's ips must be a list of addresses, got an integer"),
    ({"ips": [], "netns": "mine"},
     "netns hint 'mine' cannot be verified: the pod has no IPs"),
])
def test_pod_hints_are_verified(monkeypatch: pytest.MonkeyPatch, pod: dict[str, Any], message: str) -> None:
    monkeypatch.setattr(netns, "namespace_from_hint", lambda hint: Namespace(name=hint))
    monkeypatch.setattr(netns, "tool_exists", lambda tool: False)
    runner = AddressRunner({"other": ["10.0.0.7"], "mine": ["10.0.0.9"]})
    with pytest.raises(NamespaceNotFoundError) as raised:
        netns.resolve_pod_namespace(pod, runner, netns.AddressIndex(runner, in_process=False))
    assert message in str(raised.value)


def test_a_pod_hint_holding_its_address_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "namespace_from_hint", lambda hint: Namespace(name=hint))
    runner = AddressRunner({"other": ["10.0.0.7"], "mine": ["10.0.0.9", "fd00::9"]})
    found = netns.resolve_pod_namespace({"ips": ["fd00::9"], "netns": "mine"}, runner, netns.AddressIndex(runner, in_process=False))
    assert found == Namespace(name="mine")


# --------------------------------------------------------------------------- item 18: backend detection


KUBELET_CHAINS = "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n*filter\n:KUBE-FIREWALL - [0:0]\nCOMMIT\n"


@pytest.mark.parametrize(("outputs", "expected"), [
    # kube-proxy in nftables mode; the kubelet still made its KUBE- chains with iptables-nft.
    ({"iptables-nft-save": KUBELET_CHAINS, "nft": "table ip filter\ntable ip kube-proxy\ntable ip6 kube-proxy\n"}, "nftables"),
    ({"iptables-legacy-save": KUBELET_CHAINS, "nft": "table ip6 kube-proxy\n"}, "nftables"),
    ({"iptables-nft-save": KUBELET_CHAINS, "nft": "table ip filter\ntable ip mangle\n"}, "iptables-nft"),
    ({"iptables-nft-save": KUBELET_CHAINS, "nft": "table ip kube-proxy-old\n"}, "iptables-nft"),
])
def test_detect_prefers_kube_proxys_nftables_tables(outputs: dict[str, str], expected: str) -> None:
    assert apply.detect_backend(SaveRunner(outputs)) == expected

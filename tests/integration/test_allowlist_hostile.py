# SPDX-License-Identifier: GPL-3.0-or-later
"""The allowlist module against hostile input and broken states of its own objects (issue #15).

A throwaway namespace holds foreign objects of every kind we live beside: iptables and
ip6tables rules and chains (kube-proxy- and Docker-like), an ipset, and nft tables of
their own. A good ruleset is applied, then 30+ bad rulesets go through the module's code
path (``apply.run``, what ``main()`` calls; a few through Ansible itself). After each one
the foreign objects are byte-identical and ours are exactly the good state: a bad ruleset
is refused before anything is written. Both backends.

Then the states a crash or an older release can leave of our own objects (duplicate
jumps, a chain with a name we no longer write and a jump into it, a chain left without
its jump, a temporary set left over) are made by hand with the real tools, and both a
valid ruleset and ``state: absent`` repair them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply, backend
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import NetfilterError
from netns_helpers import (
    KUBE_PROXY_LIKE_NAT,
    NetnsPair,
    create_netns,
    delete_netns,
    in_ns,
    netns_pair,
    unique_name,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

REPO = Path(__file__).resolve().parents[2]

FOREIGN_V6 = """*filter
:DOCKER-USER - [0:0]
-A INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -s fd00:99::/64 -j DROP
COMMIT
"""
FOREIGN_NFT = """table inet cni_foreign {
  set peers { type ipv4_addr; flags interval; elements = { 10.99.0.0/16, 192.0.2.7 } }
  chain input { type filter hook input priority 5; policy accept; ip saddr @peers tcp dport 9999 drop comment "foreign"; }
}
table ip6 kube-proxy-like {
  chain output { type nat hook output priority -100; policy accept; }
}
"""
FOREIGN_IPSET = "create KUBE-FOREIGN hash:ip family inet hashsize 1024 maxelem 65536\nadd KUBE-FOREIGN 10.96.0.10\n"


def good_ruleset() -> dict[str, Any]:
    """A small ruleset with every kind of object: two chains, a set of both families."""
    return {
        "chains": [
            {"name": "ingress", "hook": "input", "default_verdict": "deny", "rules": [
                {"verdict": "accept", "origin": "implicit:established", "conntrack": ["established", "related"]},
                {"verdict": "accept", "origin": "default[0] peers->me tcp/80", "protocol": "tcp", "ports": ["80"], "peer_set": "zt-peers"},
            ]},
            {"name": "egress", "hook": "output", "default_verdict": "accept", "rules": []},
        ],
        "address_sets": [{"name": "zt-peers", "members": ["192.0.2.1", "2001:db8::1"]}],
    }


def with_rule(**fields: Any) -> dict[str, Any]:
    """The good ruleset with one more ingress rule."""
    data = good_ruleset()
    data["chains"][0]["rules"].append({"verdict": "accept", "origin": "hostile", **fields})
    return data


def with_member(member: Any) -> dict[str, Any]:
    data = good_ruleset()
    data["address_sets"][0]["members"].append(member)
    return data


def with_chain(**fields: Any) -> dict[str, Any]:
    data = good_ruleset()
    data["chains"].append({"name": "extra", "hook": "forward", "default_verdict": "accept", "rules": [], **fields})
    return data


def changed(function: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    data = good_ruleset()
    function(data)
    return data


BAD: list[tuple[str, Any, str]] = [
    # (id, ruleset, a part of the error)
    ("case-collision", with_chain(name="INGRESS", hook="output"), "both become the iptables chain ZT-INGRESS"),
    ("non-ascii-chain", with_chain(name="ingréss"), "chain name 'ingréss' must be 1-16 ASCII letters"),
    ("digit-chain", with_chain(name="1extra"), "chain name '1extra'"),
    ("long-chain", with_chain(name="e" * 17), "must be 1-16 ASCII letters"),
    ("dash-chain", with_chain(name="ex-tra"), "chain name 'ex-tra'"),
    ("repeated-chain", with_chain(name="ingress"), "chain names repeat"),
    ("bad-hook", with_chain(hook="INPUT"), "hook 'INPUT' is not one of"),
    ("bad-default", with_chain(default_verdict="jump"), "default verdict 'jump'"),
    ("missing-hook", changed(lambda data: data["chains"][1].pop("hook")), "chain 'egress' has no 'hook'"),
    ("bad-verdict", with_rule(verdict="ACCEPT"), "rule verdict 'ACCEPT'"),
    ("bad-protocol", with_rule(protocol="gre"), "rule protocol 'gre'"),
    ("port-zero", with_rule(protocol="tcp", ports=["0"]), "port 0 is outside 1-65535"),
    ("reversed-range", with_rule(protocol="tcp", ports=["80-70"]), "port range 80-70 is reversed: write 70-80"),
    ("named-port", with_rule(protocol="tcp", ports=["80", "http"]), "port 'http' is not a number"),
    ("ports-without-protocol", with_rule(ports=["80"]), "has ports but protocol None has none"),
    ("icmp-type-injection", with_rule(protocol="icmp", icmp_types=["8 -j ACCEPT"]), "ICMP type '8 -j ACCEPT' must be a number 0-255"),
    ("icmp-type-range", with_rule(protocol="icmp", icmp_types=[300]), "ICMP type 300 must be a number 0-255"),
    ("interface-newline", with_rule(interface="lo\n-A INPUT -j ACCEPT"), "is not an interface name"),
    ("interface-nft-quote", with_rule(interface='lo" accept; drop'), "is not an interface name"),
    ("interface-long", with_rule(interface="a-very-long-interface"), "is not an interface name"),
    ("conntrack-upper", with_rule(conntrack=["NEW"]), "conntrack state 'NEW'"),
    ("family-five", with_rule(family=5), "rule family 5 must be 4, 6 or unset"),
    ("origin-mapping", with_rule(origin={"a": 1}), "rule origin must be a string, got a mapping"),
    ("local-destination-text", with_rule(local_destination="yes"), "local_destination must be true or false"),
    ("unknown-rule-field", with_rule(jump="DOCKER"), "rule has unknown fields: jump"),
    ("unknown-peer-set", with_rule(peer_set="zt-missing"), "refers to unknown address set 'zt-missing'"),
    ("zoned-member", with_member("fe80::1%eth0"), "member 'fe80::1%eth0' has a zone (%eth0)"),
    ("host-bits", with_member("10.1.2.3/8"), "member '10.1.2.3/8' is not an IP address or network"),
    ("not-an-address", with_member("not-an-ip"), "member 'not-an-ip' is not an IP address"),
    ("integer-member", with_member(3232235777), "member 3232235777 is not an IP address or network: an integer"),
    ("huge-member", with_member("1" * 5000), "is not an IP address or network: too long"),
    ("non-ascii-set", changed(lambda data: data["address_sets"].append({"name": "zt-é", "members": []})), "address set name 'zt-é'"),
    ("set-collision", changed(lambda data: data["address_sets"].append({"name": "peers", "members": []})),
     "address set names 'peers' and 'zt-peers' both become the ipsets zt-peers-4/-6"),
    ("long-set-name", changed(lambda data: data["address_sets"].append({"name": "z" * 25, "members": []})), "must be 1-24 ASCII"),
    ("members-text", changed(lambda data: data["address_sets"][0].update(members="192.0.2.1")), "members must be a list, got a string"),
    ("unknown-top-field", changed(lambda data: data.update(chain=data.pop("chains"))), "ruleset has unknown fields: chain"),
    ("chains-text", changed(lambda data: data.update(chains="ingress")), "ruleset field chains must be a list, got a string"),
    ("rule-text", changed(lambda data: data["chains"][0]["rules"].append("-j ACCEPT")), "a rule must be a mapping, got a string"),
    ("version-two", changed(lambda data: data.update(version=2)), "ruleset model version 2 is not supported"),
    ("not-a-mapping", ["ingress"], "a ruleset must be a mapping, got a list"),
]


def nft_foreign(namespace: str) -> str:
    """The foreign nft tables, as nft lists them."""
    tables = ("inet cni_foreign", "ip6 kube-proxy-like")
    listed = [in_ns(namespace, ["nft", "list", "table", *table.split()], check=False) for table in tables]
    return "".join(result.stdout if result.returncode == 0 else "(no table)\n" for result in listed)


def snapshot(namespace: str, backend_name: str) -> tuple[str, str]:
    """(foreign objects, our objects) as text: iptables both families, ipsets, nft tables."""
    foreign: list[str] = []
    ours: list[str] = []
    for save in ("iptables-save", "ip6tables-save"):
        for saved in in_ns(namespace, [save]).stdout.splitlines():
            if saved.startswith("#"):
                continue
            line = saved.rsplit(" ", 1)[0] if saved.startswith(":") else saved
            (ours if "ZT-" in line else foreign).append(f"{save}: {line}")
    for saved in in_ns(namespace, ["ipset", "save"]).stdout.splitlines():
        # initval is random per set: a recreated set of ours differs there only.
        line = saved.split(" initval ")[0]
        (ours if line.split(" ")[1].startswith("zt-") else foreign).append(line)
    foreign.append(nft_foreign(namespace))
    if backend_name == "nftables":
        listed = in_ns(namespace, ["nft", "list", "table", "inet", "zerotrust"], check=False)
        ours.append(listed.stdout if listed.returncode == 0 else "(no table)")
    return "\n".join(foreign), "\n".join(ours)


@pytest.fixture
def hostile_namespace() -> Iterator[str]:
    """A namespace holding foreign iptables, ip6tables, ipset and nft objects."""
    name = unique_name("zth")
    create_netns(name)
    try:
        in_ns(name, ["iptables-restore"], stdin=KUBE_PROXY_LIKE_NAT)
        in_ns(name, ["ip6tables-restore"], stdin=FOREIGN_V6)
        in_ns(name, ["ipset", "restore"], stdin=FOREIGN_IPSET)
        in_ns(name, ["nft", "-f", "-"], stdin=FOREIGN_NFT)
        yield name
    finally:
        delete_netns(name)


def run(args: dict[str, Any]) -> dict[str, Any]:
    """``apply.run`` as the module's ``main()`` calls it (a NetfilterError there becomes fail_json)."""
    options = backend.Options(default_action=args.get("default_action", "drop"))
    run_options = apply.RunOptions(state=args.get("state", "present"), backend=args["backend"], options=options, keep_ssh=False,
                                   host_netns=args["netns"], state_dir=args.get("state_dir", apply.lockout.STATE_DIR))
    try:
        return apply.run(args.get("ruleset"), args.get("pods", []), run_options, {})
    except NetfilterError as error:
        return {"failed": True, "msg": str(error), "changed": False}


def run_module(args: dict[str, Any]) -> dict[str, Any]:
    """The module through Ansible on localhost (``-c local``)."""
    argv = ["ansible", "localhost", "-c", "local", "-o", "-m", "zerotrust.workloads.allowlist", "-a", json.dumps(args)]
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("localhost | ") and " => " in line:
            result = dict(json.loads(line.split(" => ", 1)[1]))
            result["failed"] = line.startswith("localhost | FAILED!")
            return result
    raise AssertionError(f"ansible printed no result: {done.stdout[-2000:]} {done.stderr[-2000:]}")


@pytest.mark.parametrize("backend_name", ["iptables-nft", "nftables"])
def test_bad_rulesets_change_nothing(hostile_namespace: str, backend_name: str, tmp_path: Path) -> None:
    assert len(BAD) >= 30
    args = {"netns": hostile_namespace, "backend": backend_name, "state_dir": str(tmp_path)}
    foreign_before, ours_before = snapshot(hostile_namespace, backend_name)
    applied = run({**args, "ruleset": good_ruleset()})
    assert applied["changed"] is True and not applied.get("failed"), applied
    foreign_good, ours_good = snapshot(hostile_namespace, backend_name)
    assert foreign_good == foreign_before and ours_good != ours_before
    failures: list[str] = []
    for case, ruleset, message in BAD:
        result = run({**args, "ruleset": ruleset})
        foreign, ours = snapshot(hostile_namespace, backend_name)
        problems = [
            "not refused" if not result.get("failed") else "",
            f"message {result.get('msg', '')[:300]!r} lacks {message!r}" if message not in result.get("msg", "") else "",
            "foreign objects changed" if foreign != foreign_before else "",
            "our objects changed" if ours != ours_good else "",
            "reported a change" if result.get("changed") else "",
        ]
        failures.extend(f"{case}: {problem}" for problem in problems if problem)
    assert failures == []
    # The good ruleset is still in place as written: a re-run is a no-op, and absent removes only ours.
    assert run({**args, "ruleset": good_ruleset()})["changed"] is False
    assert run({**args, "state": "absent"})["changed"] is True
    assert snapshot(hostile_namespace, backend_name) == (foreign_before, ours_before)


def test_bad_rulesets_through_ansible(hostile_namespace: str) -> None:
    """The same refusals through the real module: FAILED, the message, nothing written."""
    args = {"netns": hostile_namespace, "backend": "iptables-nft", "keep_ssh": False}
    assert run_module({**args, "ruleset": good_ruleset()})["changed"] is True
    good = snapshot(hostile_namespace, "iptables-nft")
    for case in ("case-collision", "non-ascii-chain", "zoned-member", "reversed-range"):
        _unused_id, ruleset, message = next(item for item in BAD if item[0] == case)
        result = run_module({**args, "ruleset": ruleset})
        assert result["failed"] is True and result["changed"] is False, (case, result)
        assert message in result["msg"], (case, result["msg"])
        assert snapshot(hostile_namespace, "iptables-nft") == good, case


BROKEN_V4 = """*filter
:ZT-INGRÉSS - [0:0]
:ZT-INGRESS - [0:0]
:ZT-EGRESS - [0:0]
:ZT-AOLD - [0:0]
:ZT-BOLD - [0:0]
-A ZT-BOLD -j ZT-AOLD
-A INPUT -m comment --comment "zt:0123456789abcdef jump ingréss" -j ZT-INGRÉSS
-A INPUT -m comment --comment "zt:0123456789abcdef jump ingréss" -j ZT-INGRÉSS
-A INPUT -m comment --comment "zt:1111111111111111 jump ingress" -j ZT-INGRESS
-A INPUT -m comment --comment "zt:1111111111111111 jump ingress" -j ZT-INGRESS
-A ZT-INGRÉSS -j DROP
-A ZT-INGRESS -j ACCEPT
COMMIT
"""
"""What the issue saw after ``ingréss``: duplicate jumps into a chain the apply could not delete, plus a
chain left without its jump (ZT-EGRESS), our jump rule duplicated, and two chains of ours left behind,
one jumping into the other (so they must be flushed before either is deleted)."""
BROKEN_SETS = "create zt-peers-4n hash:net family inet hashsize 1024 maxelem 8 comment\ncreate zt-stale-6 hash:net family inet6 comment\n"


def break_our_objects(namespace: str) -> None:
    in_ns(namespace, ["iptables-restore", "--noflush"], stdin=BROKEN_V4)
    in_ns(namespace, ["ipset", "restore"], stdin=BROKEN_SETS)


@pytest.mark.parametrize("repair", ["valid ruleset", "state absent"])
def test_broken_objects_of_ours_are_repaired(hostile_namespace: str, repair: str, tmp_path: Path) -> None:
    args = {"netns": hostile_namespace, "backend": "iptables-nft", "state_dir": str(tmp_path)}
    foreign_before, _unused_ours = snapshot(hostile_namespace, "iptables-nft")
    # What a clean namespace gets from the good ruleset, for comparison.
    assert run({**args, "ruleset": good_ruleset()})["changed"] is True
    _unused_foreign, ours_good = snapshot(hostile_namespace, "iptables-nft")
    assert run({**args, "state": "absent"})["changed"] is True

    break_our_objects(hostile_namespace)
    if repair == "valid ruleset":
        result = run({**args, "ruleset": good_ruleset()})
        expected = ours_good
    else:
        result = run({**args, "state": "absent"})
        expected = ""
    assert result["changed"] is True and not result.get("failed"), result
    foreign, ours = snapshot(hostile_namespace, "iptables-nft")
    assert foreign == foreign_before
    assert ours == expected
    # Nothing is left to repair: the next run is a no-op.
    again = run({**args, "ruleset": good_ruleset()} if repair == "valid ruleset" else {**args, "state": "absent"})
    assert again["changed"] is False, again


@pytest.fixture
def pair() -> Iterator[NetnsPair]:
    with netns_pair("zth") as created:
        yield created


def test_a_pod_hint_naming_another_namespace_is_refused(pair: NetnsPair, tmp_path: Path) -> None:
    """The hint says the client namespace, the pod's address is the server's: the pod is skipped, nothing written."""
    pod = {"host": "web", "namespace": "default", "name": "web", "ips": [pair.server_v4], "netns": pair.client, "ruleset": good_ruleset()}
    before = snapshot(pair.client, "iptables-nft"), snapshot(pair.server, "iptables-nft")
    options = apply.RunOptions(backend="iptables-nft", keep_ssh=False, state_dir=str(tmp_path))
    result = apply.run(None, [pod], options, {})
    assert result["changed"] is False
    assert result["skipped_pods"] == [{"target": "web", "reason": (
        f"netns hint {pair.client!r} holds none of the pod's addresses ({pair.server_v4}): it is another namespace; "
        "fix or remove the pod's zt_netns")}]
    assert (snapshot(pair.client, "iptables-nft"), snapshot(pair.server, "iptables-nft")) == before
    # The right hint is used.
    result = apply.run(None, [{**pod, "netns": pair.server}], options, {})
    assert result["changed"] is True and result["results"][0]["namespace"] == pair.server


def test_a_set_outgrowing_its_size_is_replaced_by_swap(hostile_namespace: str, tmp_path: Path) -> None:
    """100,000 members into a set that has ipset's default size (maxelem 65536, as every set had before)."""
    args = {"netns": hostile_namespace, "backend": "iptables-nft", "state_dir": str(tmp_path)}
    small = good_ruleset()
    small["address_sets"][0]["members"] = [f"10.{100 + n // 62500}.{(n // 250) % 250}.{(n % 250) + 2}" for n in range(30000)]
    assert run({**args, "ruleset": small})["changed"] is True
    assert "maxelem 65536 " in in_ns(hostile_namespace, ["ipset", "list", "-t", "zt-peers-4"]).stdout.replace("\n", " ")
    big = good_ruleset()
    big["address_sets"][0]["members"] = [f"10.{100 + n // 62500}.{(n // 250) % 250}.{(n % 250) + 2}" for n in range(100000)]
    result = run({**args, "ruleset": big})
    assert result["changed"] is True and not result.get("failed"), result.get("msg")
    header = in_ns(hostile_namespace, ["ipset", "list", "-t", "zt-peers-4"]).stdout
    assert "maxelem 262144" in header and "Number of entries: 100000" in header, header
    assert sorted(in_ns(hostile_namespace, ["ipset", "list", "-n"]).stdout.split()) == ["KUBE-FOREIGN", "zt-peers-4", "zt-peers-6"]
    assert run({**args, "ruleset": big})["changed"] is False


@pytest.mark.parametrize("backend_name", ["iptables-nft", "nftables"])
def test_an_origin_change_rewrites_the_comment(hostile_namespace: str, backend_name: str, tmp_path: Path) -> None:
    """Only the policy label of a rule changes: the live comment follows (the audit reads it), then no-op."""
    args = {"netns": hostile_namespace, "backend": backend_name, "state_dir": str(tmp_path)}
    assert run({**args, "ruleset": good_ruleset()})["changed"] is True
    relabelled = good_ruleset()
    relabelled["chains"][0]["rules"][1]["origin"] = "default[7] frontend->me tcp/80"
    result = run({**args, "ruleset": relabelled})
    assert result["changed"] is True and result["results"][0]["drift"] == [], result
    _unused_foreign, ours = snapshot(hostile_namespace, backend_name)
    if backend_name == "nftables":
        live = ours
    else:
        live = in_ns(hostile_namespace, ["iptables-save", "-t", "filter"]).stdout + in_ns(hostile_namespace, ["ip6tables-save"]).stdout
    # One rule per family: nft's two set variants, iptables' IPv4 and IPv6 chains.
    assert live.count("default[7] frontend->me tcp/80") == 2, live
    assert "peers->me" not in live
    assert run({**args, "ruleset": relabelled})["changed"] is False

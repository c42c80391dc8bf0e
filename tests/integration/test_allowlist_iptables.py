# SPDX-License-Identifier: GPL-3.0-or-later
"""The allowlist module with the iptables + ipset backend, in throwaway namespaces, with real traffic.

Each test builds a client and a server namespace (``ztd-<hex>c`` / ``ztd-<hex>s``) joined
by one veth, with IPv4 and IPv6 and no route anywhere else; listeners run in the
server. The module runs for real through ``ansible localhost -c local`` (host target
with ``netns:``), or through ``apply.run`` where 200 runs or a rollback timer make the
Ansible round trip too slow. Every probe is a real TCP connection whose route was
checked to stay inside the pair.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply, backend, lockout
from netns_helpers import (
    NetnsPair,
    foreign_lines,
    in_ns,
    install_foreign_rules,
    netns_pair,
    save_without_counters,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

REPO = Path(__file__).resolve().parents[2]
ALLOWED, FORBIDDEN, UNLISTED = 80, 8080, 9090


def server_ruleset(pair: NetnsPair, extra_port: int = 0, extra_member: str = "") -> dict[str, Any]:
    """Ingress: established, loopback, tcp/80 from the client only, tcp/8080 from a stranger; deny the rest."""
    rules: list[dict[str, Any]] = [
        {"verdict": "accept", "origin": "implicit:established", "conntrack": ["established", "related"]},
        {"verdict": "accept", "origin": "implicit:loopback", "interface": "lo"},
        {"verdict": "accept", "origin": "default[0] client->server tcp/80", "protocol": "tcp", "ports": [str(ALLOWED)],
         "peer_set": "zt-client"},
        {"verdict": "accept", "origin": "default[1] stranger->server tcp/8080", "protocol": "tcp", "ports": [str(FORBIDDEN)],
         "peer_set": "zt-stranger"},
        {"verdict": "accept", "origin": "implicit:icmpv6-nd", "protocol": "icmpv6"},
    ]
    if extra_port:
        rules.append({"verdict": "accept", "origin": f"extra tcp/{extra_port}", "protocol": "tcp", "ports": [str(extra_port)]})
    strangers = ["192.0.2.10", "2001:db8::10"] + ([extra_member] if extra_member else [])
    return {
        "chains": [
            {"name": "ingress", "hook": "input", "default_verdict": "deny", "rules": rules},
            {"name": "egress", "hook": "output", "default_verdict": "accept", "rules": []},
        ],
        "address_sets": [
            {"name": "zt-client", "members": [pair.client_v4, pair.client_v6, "198.51.100.0/24"]},
            {"name": "zt-stranger", "members": strangers},
        ],
    }


def run_module(args: dict[str, Any], check: bool = False, diff: bool = False) -> dict[str, Any]:
    """Run the module through Ansible on localhost and return its result."""
    argv = ["ansible", "localhost", "-c", "local", "-o", "-m", "zerotrust.workloads.allowlist", "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env.pop("SSH_CONNECTION", None)
    env.pop("SSH_CLIENT", None)
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    # One-line output: ``localhost | CHANGED => {...}`` (or SUCCESS / FAILED!).
    for line in done.stdout.splitlines():
        if line.startswith("localhost | ") and " => " in line:
            result = dict(json.loads(line.split(" => ", 1)[1]))
            # The one-line callback shows failure in the status, not in the dictionary.
            result["failed"] = line.startswith("localhost | FAILED!")
            return result
    raise AssertionError(f"ansible printed no result: {done.stdout[-2000:]} {done.stderr[-2000:]}")


def truth(pair: NetnsPair) -> dict[str, bool]:
    """Which (family, port) the client reaches on the server."""
    return {
        f"v{family}/{port}": pair.connect(pair.server_v4 if family == 4 else pair.server_v6, port)
        for family in (4, 6)
        for port in (ALLOWED, FORBIDDEN, UNLISTED)
    }


EXPECTED = {"v4/80": True, "v4/8080": False, "v4/9090": False, "v6/80": True, "v6/8080": False, "v6/9090": False}
OPEN = dict.fromkeys(EXPECTED, True)


@pytest.fixture
def pair() -> Iterator[NetnsPair]:
    """A fresh client/server pair with listeners on 80, 8080 and 9090 (IPv4 and IPv6)."""
    with netns_pair("ztd") as created:
        created.listen_many([(port, family) for port in (ALLOWED, FORBIDDEN, UNLISTED) for family in (4, 6)])
        yield created


def base_args(pair: NetnsPair, backend_name: str = "iptables-nft", **extra: Any) -> dict[str, Any]:
    """Module arguments for the server namespace as the host target."""
    return {"netns": pair.server, "backend": backend_name, "ruleset": server_ruleset(pair), "keep_ssh": False, "default_action": "reject",
            **extra}


def api_run(args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    """``apply.run`` in this process with module-like arguments (no Ansible start-up cost).

    Used around the Ansible runs that prove a behaviour, and where 200 runs are needed.
    """
    options = backend.Options(default_action=args.get("default_action", "drop"), log_denied=args.get("log_denied", False))
    run_options = apply.RunOptions(
        state=args.get("state", "present"), backend=args.get("backend", "auto"), options=options, keep_ssh=args.get("keep_ssh", True),
        management_addresses=tuple(args.get("management_addresses", ())), rollback_timeout=args.get("rollback_timeout", 0),
        confirm=args.get("confirm", ""), host_netns=args.get("netns"), check_mode=check,
    )
    result = apply.run(args.get("ruleset"), args.get("pods", []), run_options, {})
    assert not result.get("failed"), result
    return result


def test_truth_table_idempotence_check_and_absent(pair: NetnsPair) -> None:
    assert truth(pair) == OPEN
    # A foreign rule, so the tables exist before us (an empty namespace keeps the empty
    # built-in tables iptables creates; their absence is not something we restore).
    for tool in ("iptables", "ip6tables"):
        in_ns(pair.server, [tool, "-A", "INPUT", "-p", "tcp", "--dport", "6443", "-j", "ACCEPT"])
    original = save_without_counters(pair.server)
    original_v6 = save_without_counters(pair.server, "ip6tables-save")
    args = base_args(pair)

    checked = run_module(args, check=True, diff=True)
    assert checked["changed"] is True
    assert save_without_counters(pair.server) == original, "check mode wrote something"
    assert checked["results"][0]["commands"]["writes"] == 0
    assert "-A ZT-INGRESS" in checked["results"][0]["diff"]["after"]
    assert checked["results"][0]["diff"]["before"] == ""

    first = run_module(args, diff=True)
    assert first["changed"] is True, first
    assert first["backend"] == "iptables-nft"
    entry = first["results"][0]
    assert (entry["namespace"], entry["rules"], entry["set_members"], entry["drift"]) == (pair.server, 5, 5, [])
    assert truth(pair) == EXPECTED
    applied = save_without_counters(pair.server)

    second = run_module(args, diff=True)
    assert second["changed"] is False
    assert second["results"][0]["commands"]["writes"] == 0
    assert second["results"][0]["diff"]["before"] == second["results"][0]["diff"]["after"]
    assert save_without_counters(pair.server) == applied

    removed = run_module({"netns": pair.server, "backend": "iptables-nft", "state": "absent"})
    assert removed["changed"] is True
    assert save_without_counters(pair.server) == original
    assert save_without_counters(pair.server, "ip6tables-save") == original_v6
    assert in_ns(pair.server, ["ipset", "list", "-n"]).stdout == ""
    assert truth(pair) == OPEN
    assert api_run({"netns": pair.server, "backend": "iptables-nft", "state": "absent"})["changed"] is False


def test_drift_is_reported_and_repaired(pair: NetnsPair) -> None:
    args = base_args(pair, log_denied=True)
    api_run(args)
    applied = save_without_counters(pair.server)
    in_ns(pair.server, ["iptables", "-D", "ZT-INGRESS", "3"])  # the tcp/80 rule
    in_ns(pair.server, ["ip6tables", "-I", "ZT-INGRESS", "1", "-p", "tcp", "--dport", str(UNLISTED), "-j", "ACCEPT"])
    in_ns(pair.server, ["ipset", "del", "zt-client-4", "198.51.100.0/24"])
    in_ns(pair.server, ["iptables", "-I", "INPUT", "1", "-p", "udp", "--dport", "5353", "-j", "ACCEPT"])
    assert truth(pair)["v4/80"] is False and truth(pair)["v6/9090"] is True

    repaired = run_module(args)
    assert repaired["changed"] is True
    assert sorted(repaired["results"][0]["drift"]) == [
        "IPv4 filter INPUT: our jump is no longer first (something was inserted above it)",
        "IPv4 filter chain ZT-INGRESS: rule missing: default[0] client->server tcp/80",
        "IPv6 filter chain ZT-INGRESS: rule added by hand: -p tcp -m tcp --dport 9090 -j ACCEPT",
        "set zt-client-4: members changed by hand (missing 198.51.100.0/24)",
    ]
    assert truth(pair) == EXPECTED
    after = save_without_counters(pair.server)
    # Only our jump moved back to the top; the hand-made foreign rule stays, second.
    assert after.replace('-A INPUT -p udp -m udp --dport 5353 -j ACCEPT\n', "") == applied
    assert after.splitlines().index("-A INPUT -p udp -m udp --dport 5353 -j ACCEPT") == 1 + applied.splitlines().index(
        next(line for line in applied.splitlines() if line.startswith("-A INPUT")))
    assert api_run(args)["changed"] is False


@pytest.mark.parametrize("flavour", ["iptables-nft", "iptables-legacy"])
def test_foreign_rules_stay_byte_identical(pair: NetnsPair, flavour: str) -> None:
    save, save_v6 = f"{flavour}-save", f"{flavour.replace('iptables', 'ip6tables')}-save"
    install_foreign_rules(pair.server, f"{flavour}-restore")
    in_ns(pair.server, [flavour.replace("iptables", "ip6tables"), "-A", "INPUT", "-p", "tcp", "--dport", "6443", "-j", "ACCEPT"])
    before = save_without_counters(pair.server, save)
    before_v6 = save_without_counters(pair.server, save_v6)
    args = base_args(pair, flavour, log_denied=True)
    assert run_module(args)["changed"] is True
    assert truth(pair) == EXPECTED
    during = save_without_counters(pair.server, save)
    assert "ZT-INGRESS" in during
    assert foreign_lines(during) == foreign_lines(before)
    assert foreign_lines(save_without_counters(pair.server, save_v6)) == foreign_lines(before_v6)
    # Our jump is first, above KUBE-FIREWALL.
    input_rules = [line for line in during.splitlines() if line.startswith("-A INPUT")]
    assert "-j ZT-INGRESS" in input_rules[0] and "-j KUBE-FIREWALL" in input_rules[1]
    assert api_run(args)["changed"] is False
    assert run_module({"netns": pair.server, "backend": flavour, "state": "absent"})["changed"] is True
    assert save_without_counters(pair.server, save) == before
    assert save_without_counters(pair.server, save_v6) == before_v6


def test_auto_follows_kube_proxy_flavour(pair: NetnsPair) -> None:
    install_foreign_rules(pair.server, "iptables-legacy-restore")
    result = run_module({**base_args(pair), "backend": "auto"})
    assert result["backend"] == "iptables-legacy"
    assert "ZT-INGRESS" in in_ns(pair.server, ["iptables-legacy-save"]).stdout
    assert "ZT-INGRESS" not in in_ns(pair.server, ["iptables-nft-save"]).stdout
    assert truth(pair) == EXPECTED


def test_management_addresses_keep_ssh_open(pair: NetnsPair) -> None:
    pair.listen(22, 4)
    closed = api_run(base_args(pair))
    assert closed["changed"] is True and pair.connect(pair.server_v4, 22) is False
    kept = run_module({**base_args(pair), "keep_ssh": True, "management_addresses": [pair.client_v4]})
    # 5 + tcp/22 in from the management addresses + sshd's replies (sport 22) out to them.
    assert kept["changed"] is True and kept["results"][0]["rules"] == 7
    assert pair.connect(pair.server_v4, 22) is True
    assert truth(pair) == EXPECTED


def test_atomic_under_traffic(pair: NetnsPair) -> None:
    one = base_args(pair)
    two = {**one, "ruleset": server_ruleset(pair, extra_port=7777, extra_member="192.0.2.77")}
    api_run(one)
    targets = [("A4", pair.server_v4, ALLOWED), ("B4", pair.server_v4, FORBIDDEN), ("A6", pair.server_v6, ALLOWED),
               ("B6", pair.server_v6, FORBIDDEN)]
    changes = 0
    with pair.connection_loop(targets) as counts:
        for index in range(200):
            changes += bool(api_run(two if index % 2 == 0 else one)["changed"])
    assert changes == 200
    assert counts["A4"]["failed"] == 0 and counts["A6"]["failed"] == 0, counts
    assert counts["B4"]["ok"] == 0 and counts["B6"]["ok"] == 0, counts
    assert min(counts["A4"]["ok"], counts["A6"]["ok"], counts["B4"]["failed"]) > 50, counts


def test_two_runs_at_once_both_finish_correct(pair: NetnsPair) -> None:
    args = base_args(pair)
    results: list[dict[str, Any]] = []

    def worker() -> None:
        results.append(run_module(args))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result["changed"] for result in results) == [False, True], results
    assert all(not result.get("failed") for result in results)
    assert truth(pair) == EXPECTED
    assert api_run(args)["changed"] is False


def test_pods_found_by_ip_and_gone_pod_skipped(pair: NetnsPair) -> None:
    pods = [
        {"host": "wp.wordpress.pod.lab", "namespace": "wordpress", "name": "wp", "uid": "u1", "ips": [pair.server_v4],
         "container_ids": [], "netns": None, "ruleset": server_ruleset(pair)},
        {"host": "gone.wordpress.pod.lab", "namespace": "wordpress", "name": "gone", "uid": "u2", "ips": ["10.231.255.254"],
         "container_ids": [], "netns": "ztd-never-created", "ruleset": server_ruleset(pair)},
    ]
    # A third pod found by the PID of a process inside it (the client namespace).
    pair.listen(5000, 4, namespace=pair.client)
    open_ruleset = {"chains": [{"name": "ingress", "hook": "input", "default_verdict": "accept", "rules": []}]}
    # Its hint is used because that namespace holds its address (issue #15: a hint is verified).
    pods.append({"host": "cli.pod.lab", "namespace": "x", "name": "cli", "uid": "u3", "ips": [pair.client_v4], "container_ids": [],
                 "netns": str(pair.listeners[-1].pid), "ruleset": open_ruleset})
    result = run_module({"backend": "iptables-nft", "pods": pods, "default_action": "reject"})
    assert result["changed"] is True
    found, gone, by_pid = result["results"]
    assert (by_pid["namespace"], by_pid["changed"]) == (f"/proc/{pair.listeners[-1].pid}/ns/net", True)
    assert "-A ZT-INGRESS" in in_ns(pair.client, ["iptables-save"]).stdout
    assert (found["target"], found["namespace"], found["changed"]) == ("wp.wordpress.pod.lab", pair.server, True)
    assert (gone["target"], gone["skipped"]) == ("gone.wordpress.pod.lab", True)
    assert gone["reason"].startswith("network namespace not found (the pod is gone or not on this node): netns hint 'ztd-never-created'")
    assert result["skipped_pods"] == [{"target": "gone.wordpress.pod.lab", "reason": gone["reason"]}]
    assert truth(pair) == EXPECTED
    # The root namespace was not touched.
    assert "ZT-" not in subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def members(pair: NetnsPair) -> list[str]:
    """The server's zt-client-4 entries (without the create line and its random initval)."""
    return sorted(line for line in in_ns(pair.server, ["ipset", "save", "zt-client-4"]).stdout.splitlines() if line.startswith("add "))


def test_failed_apply_leaves_the_namespace_as_it_was(pair: NetnsPair) -> None:
    args = base_args(pair)
    api_run(args)
    # A foreign rule uses one of our sets: the last step (destroying the set a new ruleset no longer needs) fails
    # after the set refill and both rule restores were applied. (A bad ICMP type used to fail the rule restore;
    # the model refuses it up front now.)
    for tool, family in (("iptables", 4), ("ip6tables", 6)):
        in_ns(pair.server, [tool, "-A", "FORWARD", "-m", "set", "--match-set", f"zt-stranger-{family}", "src", "-j", "ACCEPT"])
    before = (save_without_counters(pair.server), save_without_counters(pair.server, "ip6tables-save"),
              members(pair))
    for _attempt in range(2):
        broken = server_ruleset(pair, extra_port=7777)
        broken["address_sets"][0]["members"] = ["203.0.113.9"]  # the set change is applied first, then undone
        broken["chains"][0]["rules"] = [rule for rule in broken["chains"][0]["rules"] if rule.get("peer_set") != "zt-stranger"]
        broken["address_sets"] = [item for item in broken["address_sets"] if item["name"] != "zt-stranger"]
        result = run_module({**args, "ruleset": broken})
        assert result["failed"] is True, result
        # (``ipset restore`` says it, or the kernel over netlink, in ipset's words: see IptablesBackend.apply.)
        assert re.fullmatch(rf"ipset destroy failed in namespace {pair.server}, input line 1: "
                            r"ipset (?:v[0-9.]+|\(netlink\)): Error in line 1: "
                            r"Set cannot be destroyed: it is in use by a kernel component \(the previous rules were restored\)",
                            result["msg"]), result["msg"]
        after = (save_without_counters(pair.server), save_without_counters(pair.server, "ip6tables-save"),
                 members(pair))
        assert after == before
        assert truth(pair) == EXPECTED
    assert api_run(args)["changed"] is False


def test_rollback_restores_unless_confirmed(pair: NetnsPair) -> None:
    args = base_args(pair)
    api_run(args)
    locked = {**args, "ruleset": {**server_ruleset(pair), "address_sets": [
        {"name": "zt-client", "members": ["198.51.100.0/24"]}, {"name": "zt-stranger", "members": []}]}}
    # Through Ansible: the detached watchdog must outlive the module process.
    applied = run_module({**locked, "rollback_timeout": 2})
    token = applied["rollback"]["token"]
    assert pair.connect(pair.server_v4, ALLOWED) is False
    deadline = time.monotonic() + 10
    while lockout.rollback_status(token) == "pending" and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.3)
    assert lockout.rollback_status(token) == "rolled_back"
    assert truth(pair) == EXPECTED
    follow_up = api_run(args)
    assert follow_up["changed"] is False and follow_up["rolled_back"] is True
    assert [item["token"] for item in follow_up["rollbacks"]] == [token] and follow_up["rollbacks"][0]["errors"] == []
    too_late = run_module({"confirm": token})
    assert too_late["failed"] is True and "already restored the previous rules" in too_late["msg"]

    started = time.monotonic()
    confirmed_run = run_module({**locked, "rollback_timeout": 4})
    confirmation = api_run({"confirm": confirmed_run["rollback"]["token"]})
    assert confirmation.get("confirmed") is True, confirmation
    assert confirmation["changed"] is False
    time.sleep(max(0.0, 4.5 - (time.monotonic() - started)))
    assert lockout.rollback_status(confirmed_run["rollback"]["token"]) == "confirmed"
    assert pair.connect(pair.server_v4, ALLOWED) is False
    assert api_run(locked)["changed"] is False


def guard_ruleset(consumers: list[str]) -> dict[str, Any]:
    """Only a NodePort-style guard: new tcp/8080 connections to this host only from ``consumers``."""
    guarded = {"protocol": "tcp", "ports": [str(FORBIDDEN)], "local_destination": True, "conntrack": ["new"]}
    return {
        "chains": [{"name": "nodeport_guard", "hook": "prerouting", "default_verdict": "return", "rules": [
            {"verdict": "return", "origin": "guard consumers tcp/8080", "peer_set": "zt-consumers", **guarded},
            {"verdict": "drop", "origin": "guard others tcp/8080", **guarded},
        ]}],
        "address_sets": [{"name": "zt-consumers", "members": consumers}],
    }


def test_nodeport_guard_in_mangle_prerouting(pair: NetnsPair) -> None:
    install_foreign_rules(pair.server)
    foreign_mangle = foreign_lines(in_ns(pair.server, ["iptables-save", "-t", "mangle"]).stdout)
    args = {"netns": pair.server, "backend": "iptables-nft", "keep_ssh": False}
    assert run_module({**args, "ruleset": guard_ruleset([pair.client_v4, pair.client_v6])})["changed"] is True
    assert truth(pair) == OPEN
    mangle = in_ns(pair.server, ["iptables-save", "-t", "mangle"]).stdout
    prerouting = [line for line in mangle.splitlines() if line.startswith("-A PREROUTING")]
    assert "-j ZT-NODEPORT-GUARD" in prerouting[0] and "--dport 4789" in prerouting[1]
    assert api_run({**args, "ruleset": guard_ruleset(["192.0.2.1"])})["changed"] is True
    assert truth(pair) == {**OPEN, "v4/8080": False, "v6/8080": False}
    api_run({**args, "state": "absent"})
    assert foreign_lines(in_ns(pair.server, ["iptables-save", "-t", "mangle"]).stdout) == foreign_mangle
    assert truth(pair) == OPEN

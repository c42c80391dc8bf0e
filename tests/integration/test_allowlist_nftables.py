# SPDX-License-Identifier: GPL-3.0-or-later
"""The nftables backend against real nft in throwaway network namespaces, with real traffic.

Topology (namespaces ``ztn-<random>-*``, removed also on failure)::

    cli (10.99.1.2, fd99:1::2) ── srv ── oth (10.99.2.2, fd99:2::2)
                 10.99.1.1, fd99:1::1    10.99.2.1, fd99:2::1

``srv`` listens on tcp/80, tcp/3306 and tcp/8080 (IPv4 and IPv6) and carries the
ruleset: port 80 only from ``cli`` (an address set), port 3306 from anyone as far as
``ingress`` is concerned but guarded before routing (``nodeport_guard``) to ``cli``
only, everything else denied. Traffic only ever flows between these namespaces: every
probe first checks with ``ip route get`` that the route stays inside them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply as orchestrator
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Options, Plan
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import ApplyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import AddressSet, Chain, PortRange, Rule, Ruleset
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.nftables import NftablesBackend
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import Namespace, Runner

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft"),
]

REPO = Path(__file__).resolve().parents[2]
SRV4, SRV6 = "10.99.1.1", "fd99:1::1"
SRV4_OTHER_SIDE, SRV6_OTHER_SIDE = "10.99.2.1", "fd99:2::1"
CLI4, CLI6 = "10.99.1.2", "fd99:1::2"
OTH4, OTH6 = "10.99.2.2", "fd99:2::2"
PORTS = (80, 3306, 8080)

LISTENER = """
import selectors, socket, sys
selector = selectors.DefaultSelector()
for port in (80, 3306, 8080):
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(("::", port))
    server.listen(1024)
    selector.register(server, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in selector.select():
        connection, _ = key.fileobj.accept()
        connection.close()
"""

PROBE = """
import json, socket, sys
results = []
for address, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((address, port), timeout=float(sys.argv[2])).close()
        results.append(True)
    except OSError:
        results.append(False)
print(json.dumps(results))
"""

LOOP_PROBE = """
import json, os, socket, struct, sys
allowed, denied, stop = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
counts = {"a_ok": 0, "a_failed": 0, "b_ok": 0, "b_blocked": 0}
errors = {}
def attempt(target):
    try:
        connection = socket.create_connection(tuple(target), timeout=2)
    except OSError as error:
        key = f"{target[1]}: {error}"
        errors[key] = errors.get(key, 0) + 1
        return False
    # Close with a reset: ~30,000 connections in 20 s would otherwise leave as many sockets in
    # TIME_WAIT and run out of local ports ("Cannot assign requested address"), which is not a
    # firewall failure.
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
    return True
print("ready", flush=True)
while not os.path.exists(stop):
    counts["a_ok" if attempt(allowed) else "a_failed"] += 1
    counts["b_ok" if attempt(denied) else "b_blocked"] += 1
counts["errors"] = errors
print(json.dumps(counts), flush=True)
"""


def run(*argv: str, stdin: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (argv list, never a shell)."""
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=check, timeout=120)


def in_ns(name: str, *argv: str, stdin: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command inside namespace ``name``."""
    return run("ip", "netns", "exec", name, *argv, stdin=stdin, check=check)


class Lab:
    """Three namespaces, a listener in ``srv``, and probes from ``cli`` and ``oth``."""

    def __init__(self, prefix: str) -> None:
        self.srv, self.cli, self.oth = f"{prefix}-srv", f"{prefix}-cli", f"{prefix}-oth"
        self.listener: Optional[subprocess.Popen[str]] = None

    def build(self) -> None:
        for name in (self.srv, self.cli, self.oth):
            run("ip", "netns", "add", name)
            in_ns(name, "ip", "link", "set", "lo", "up")
        for peer, index, (srv4, srv6, peer4, peer6) in (
            (self.cli, 1, (SRV4, SRV6, CLI4, CLI6)),
            (self.oth, 2, (SRV4_OTHER_SIDE, SRV6_OTHER_SIDE, OTH4, OTH6)),
        ):
            # Both ends are created inside our namespaces: nothing appears in the root one.
            run("ip", "-n", self.srv, "link", "add", f"to{index}", "type", "veth", "peer", "name", "eth0", "netns", peer)
            run("ip", "-n", self.srv, "addr", "add", f"{srv4}/24", "dev", f"to{index}")
            run("ip", "-n", self.srv, "addr", "add", f"{srv6}/64", "dev", f"to{index}", "nodad")
            run("ip", "-n", self.srv, "link", "set", f"to{index}", "up")
            run("ip", "-n", peer, "addr", "add", f"{peer4}/24", "dev", "eth0")
            run("ip", "-n", peer, "addr", "add", f"{peer6}/64", "dev", "eth0", "nodad")
            run("ip", "-n", peer, "link", "set", "eth0", "up")
        self.listener = subprocess.Popen(
            ["ip", "netns", "exec", self.srv, sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True
        )
        assert self.listener.stdout is not None
        assert self.listener.stdout.readline().strip() == "ready"

    def destroy(self) -> None:
        if self.listener is not None:
            self.listener.kill()
            self.listener.wait()
        for name in (self.srv, self.cli, self.oth):
            run("ip", "netns", "delete", name, check=False)

    def check_route(self, source: str, address: str) -> None:
        """Refuse to send anything that would leave our namespaces."""
        route = in_ns(source, "ip", "-j", "route", "get", address).stdout
        assert json.loads(route)[0]["dev"] == "eth0", f"route from {source} to {address} leaves the lab: {route}"

    def probe(self, source: str, targets: list[tuple[str, int]], timeout: float = 0.5) -> list[bool]:
        """Connect from ``source`` to each target; True where the connection opened."""
        for address, _ in targets:
            self.check_route(source, address)
        result = in_ns(source, sys.executable, "-c", PROBE, json.dumps(targets), str(timeout))
        return [bool(value) for value in json.loads(result.stdout)]

    def truth_table(self) -> dict[str, str]:
        """``.`` connected, ``X`` blocked, per client, address family and port."""
        table = {}
        for source, name in ((self.cli, "cli"), (self.oth, "oth")):
            addresses = ((SRV4, SRV6) if source == self.cli else (SRV4_OTHER_SIDE, SRV6_OTHER_SIDE))
            for family, address in zip((4, 6), addresses, strict=True):
                results = self.probe(source, [(address, port) for port in PORTS])
                table[f"{name}/v{family}"] = "".join("." if ok else "X" for ok in results)
        return table


# Columns: tcp/80, tcp/3306, tcp/8080.
EXPECTED = {"cli/v4": "..X", "cli/v6": "..X", "oth/v4": "XXX", "oth/v6": "XXX"}
OPEN = {"cli/v4": "...", "cli/v6": "...", "oth/v4": "...", "oth/v6": "..."}


def ruleset(extra_members: tuple[str, ...] = (), extra_rule: bool = False, nobody_set: bool = True) -> Ruleset:
    """The server's ruleset (``extra_*`` vary it without changing what it allows)."""
    ingress_rules = [
        Rule("accept", "implicit:conntrack", conntrack=("established", "related")),
        Rule("accept", "implicit:loopback", interface="lo"),
        Rule("accept", "implicit:ndp", protocol="icmpv6", icmp_types=(133, 134, 135, 136)),
        Rule("accept", "default[0] cli->srv tcp/80", protocol="tcp", ports=(PortRange(80, 80),), peer_set="zt-cli"),
        Rule("accept", "default[1] any->srv tcp/3306", protocol="tcp", ports=(PortRange(3306, 3306),)),
    ]
    if extra_rule:
        ingress_rules.append(Rule("accept", "default[2] nobody tcp/9", protocol="tcp", ports=(PortRange(9, 9),), peer_set="zt-nobody"))
    guard = (
        Rule("accept", "guard cli->3306", protocol="tcp", ports=(PortRange(3306, 3306),), peer_set="zt-cli", local_destination=True),
        Rule("deny", "guard others->3306", protocol="tcp", ports=(PortRange(3306, 3306),), local_destination=True),
    )
    return Ruleset(
        address_sets=(
            AddressSet("zt-cli", (CLI4, CLI6, *extra_members)),
            *([AddressSet("zt-nobody", ("192.0.2.0/24",))] if nobody_set or extra_rule else []),
        ),
        chains=(
            Chain("ingress", "input", tuple(ingress_rules), "deny"),
            Chain("egress", "output", (), "accept"),
            Chain("nodeport_guard", "prerouting", guard, "return"),
        ),
    )


def backend(lab: Lab, options: Optional[Options] = None) -> NftablesBackend:
    """A fresh backend (fresh read/write counters) acting in the server namespace."""
    return NftablesBackend(Runner(Namespace(name=lab.srv)), options or Options(default_action="reject"))


def apply(
    lab: Lab, desired: Optional[Ruleset], options: Optional[Options] = None, check_mode: bool = False
) -> tuple[Plan, NftablesBackend]:
    """One run as the module does it: read, plan, apply unless check mode."""
    nft = backend(lab, options)
    plan = nft.plan(desired, nft.read())
    if not check_mode:
        nft.apply(plan.steps)
    return plan, nft


def run_module(args: dict[str, Any], *flags: str) -> dict[str, Any]:
    """Run the allowlist module for real (``ansible localhost -c local``) and return its result."""
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="minimal",
               ANSIBLE_DEPRECATION_WARNINGS="0")
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    for variable in ("SSH_CONNECTION", "SSH_CLIENT"):
        env.pop(variable, None)
    argv = [str(REPO / ".venv" / "bin" / "ansible"), "localhost", "-c", "local", "-m", "zerotrust.workloads.allowlist",
            "-a", json.dumps(args), *flags]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300)
    head, separator, body = done.stdout.partition(" => ")
    assert separator, f"ansible printed no result: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(body)
    result["_status"] = head.rsplit("|", 1)[-1].strip()
    return result


def module_args(lab: Lab, desired: Optional[Ruleset], **extra: Any) -> dict[str, Any]:
    """Arguments applying ``desired`` with the nftables backend in the server namespace."""
    args: dict[str, Any] = {"netns": lab.srv, "backend": "nftables", "keep_ssh": False, "default_action": "reject", **extra}
    if desired is not None:
        args["ruleset"] = desired.to_dict()
    return args


def ruleset_text(lab: Lab) -> str:
    """``nft list ruleset`` of the server namespace."""
    return in_ns(lab.srv, "nft", "list", "ruleset").stdout


def foreign_text(lab: Lab) -> str:
    """Everything but our table, as nft lists it."""
    tables = json.loads(in_ns(lab.srv, "nft", "-j", "list", "tables").stdout)["nftables"]
    parts = []
    for item in tables:
        table = item.get("table")
        if table and (table["family"], table["name"]) != ("inet", "zerotrust"):
            parts.append(in_ns(lab.srv, "nft", "list", "table", table["family"], table["name"]).stdout)
    return "".join(parts)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """The three namespaces, removed whatever happens."""
    built = Lab(f"ztn-{secrets.token_hex(3)}")
    try:
        built.build()
        yield built
    finally:
        built.destroy()


def test_truth_table_idempotence_and_absent(lab: Lab) -> None:
    assert lab.truth_table() == OPEN
    plan, first = apply(lab, ruleset())
    assert plan.changed and plan.drift == [] and first.runner.writes == 1
    assert lab.truth_table() == EXPECTED

    before = ruleset_text(lab)
    plan, second = apply(lab, ruleset())
    assert not plan.changed
    assert (second.runner.reads, second.runner.writes) == (1, 0)
    assert plan.before == plan.after
    assert ruleset_text(lab) == before

    plan, _ = apply(lab, None)
    assert plan.changed
    assert "zerotrust" not in in_ns(lab.srv, "nft", "list", "tables").stdout
    assert lab.truth_table() == OPEN
    plan, again = apply(lab, None)
    assert not plan.changed and again.runner.writes == 0


def test_drop_mode_blocks_too(lab: Lab) -> None:
    apply(lab, ruleset(), Options(default_action="drop"))
    assert lab.truth_table() == EXPECTED
    assert "reject" not in ruleset_text(lab)


def test_member_change_rewrites_the_set_not_the_chains(lab: Lab) -> None:
    apply(lab, ruleset())
    handles = in_ns(lab.srv, "nft", "-a", "list", "chain", "inet", "zerotrust", "ingress").stdout
    plan, _ = apply(lab, ruleset(extra_members=("10.99.2.2",)))
    assert plan.changed and plan.drift == []
    assert "flush chain" not in plan.steps[0].stdin
    assert in_ns(lab.srv, "nft", "-a", "list", "chain", "inet", "zerotrust", "ingress").stdout == handles
    assert lab.truth_table() == {**EXPECTED, "oth/v4": "..X"}


def test_a_set_and_its_rule_can_go_away_together(lab: Lab) -> None:
    apply(lab, ruleset(extra_rule=True))
    plan, _ = apply(lab, ruleset(nobody_set=False))
    assert plan.changed and plan.drift == []
    assert "zt-nobody" not in ruleset_text(lab)
    assert lab.truth_table() == EXPECTED
    assert not apply(lab, ruleset(nobody_set=False))[0].changed


def test_drift_is_reported_and_repaired(lab: Lab) -> None:
    # A second IPv6 member: a set emptied by hand is repaired but cannot be told from a
    # policy change (the marker travels on an element), so leave one behind.
    desired = ruleset(extra_members=("fd99:1::99",))
    apply(lab, desired)
    listing = in_ns(lab.srv, "nft", "-a", "list", "chain", "inet", "zerotrust", "ingress").stdout
    handle = next(line.rsplit("# handle ", 1)[1] for line in listing.splitlines() if "cli->srv tcp/80" in line and "ip saddr" in line)
    in_ns(lab.srv, "nft", "delete", "rule", "inet", "zerotrust", "ingress", "handle", handle)
    in_ns(lab.srv, "nft", "delete", "element", "inet", "zerotrust", "zt-cli_6", "{ fd99:1::2 }")
    in_ns(lab.srv, "nft", "insert", "rule", "inet", "zerotrust", "nodeport_guard", "tcp", "dport", "3306", "accept")
    # tcp/80 lost its IPv4 rule and its IPv6 member; the hand-made guard rule opens 3306 to all.
    assert lab.truth_table() == {"cli/v4": "X.X", "cli/v6": "X.X", "oth/v4": "X.X", "oth/v6": "X.X"}

    plan, _ = apply(lab, desired)
    assert plan.drift == [
        "set zt-cli_6: members changed by hand (1 expected member(s) missing, 0 unexpected)",
        "chain ingress: rules changed by hand (7 rules found, 8 expected, 1 expected rule(s) missing, 0 not ours)",
        "chain nodeport_guard: rules changed by hand (5 rules found, 4 expected, 0 expected rule(s) missing, 1 not ours)",
    ]
    assert lab.truth_table() == EXPECTED
    plan, _ = apply(lab, desired)
    assert not plan.changed and plan.drift == []


def test_check_mode_writes_nothing(lab: Lab) -> None:
    plan, nft = apply(lab, ruleset(), check_mode=True)
    assert plan.changed and nft.runner.writes == 0
    assert ruleset_text(lab) == ""
    apply(lab, ruleset())
    before = ruleset_text(lab)
    plan, nft = apply(lab, ruleset(extra_rule=True), check_mode=True)
    assert plan.changed and nft.runner.writes == 0
    assert ruleset_text(lab) == before


def test_foreign_tables_are_byte_identical(lab: Lab) -> None:
    # iptables-nft's tables, a kube-proxy-like nat table and a Docker-like chain.
    in_ns(lab.srv, "iptables-nft", "-A", "INPUT", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
    in_ns(lab.srv, "iptables-nft", "-N", "DOCKER-USER")
    in_ns(lab.srv, "iptables-nft", "-A", "FORWARD", "-j", "DOCKER-USER")
    in_ns(lab.srv, "iptables-nft", "-t", "nat", "-N", "KUBE-SERVICES")
    in_ns(lab.srv, "iptables-nft", "-t", "nat", "-A", "PREROUTING", "-j", "KUBE-SERVICES")
    kube_proxy = "chain dstnat { type nat hook prerouting priority dstnat; policy accept; tcp dport 30358 dnat to 10.99.1.1:80; }"
    in_ns(lab.srv, "nft", "-f", "-", stdin=f"table ip kube-proxy {{\n {kube_proxy}\n}}\n")
    foreign = foreign_text(lab)
    assert "kube-proxy" in foreign and "DOCKER-USER" in foreign
    apply(lab, ruleset())
    assert foreign_text(lab) == foreign
    apply(lab, ruleset(extra_members=("10.99.2.2",), extra_rule=True))
    assert foreign_text(lab) == foreign
    apply(lab, None)
    assert foreign_text(lab) == foreign
    assert "zerotrust" not in ruleset_text(lab)


def test_restore_steps_put_back_what_was_there(lab: Lab) -> None:
    apply(lab, ruleset())
    nft = backend(lab)
    before = nft.read()
    before_text = ruleset_text(lab)
    apply(lab, ruleset(extra_members=("10.99.2.2",), extra_rule=True))
    nft.apply(nft.restore_steps(before, nft.read()))
    assert ruleset_text(lab) == before_text
    nft.apply(nft.restore_steps(type(before)(present=False), nft.read()))
    assert ruleset_text(lab) == ""


def test_atomic_under_traffic(lab: Lab, tmp_path: Path) -> None:
    """200 re-applies alternating two rulesets that both allow A and both deny B."""
    one, two = ruleset(), ruleset(extra_members=("192.0.2.7",), extra_rule=True)
    apply(lab, one)
    stop = tmp_path / "stop"
    allowed, denied = [SRV4, 80], [SRV4, 8080]
    lab.check_route(lab.cli, SRV4)
    client = subprocess.Popen(
        ["ip", "netns", "exec", lab.cli, sys.executable, "-c", LOOP_PROBE, json.dumps(allowed), json.dumps(denied), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "ready"
        # Through the module's own orchestrator (lock, read, plan, apply, verify): 200
        # ansible-playbook runs would take minutes and add nothing the module test lacks.
        run_options = orchestrator.RunOptions(
            backend="nftables", options=Options(default_action="reject"), keep_ssh=False, host_netns=lab.srv, state_dir=str(tmp_path)
        )
        changed = 0
        for index in range(200):
            result = orchestrator.run((two if index % 2 == 0 else one).to_dict(), [], run_options, {})
            assert not result.get("failed"), result
            changed += bool(result["changed"])
        stop.touch()
        counts: dict[str, Any] = json.loads(client.stdout.readline())
    finally:
        stop.touch()
        with contextlib.suppress(subprocess.TimeoutExpired):
            client.wait(timeout=10)
        if client.poll() is None:
            client.kill()
    assert changed == 200
    assert counts["a_failed"] == 0 and counts["b_ok"] == 0, json.dumps(counts)
    assert counts["a_ok"] > 50 and counts["b_blocked"] > 50, counts


def test_timing_of_a_noop_run(lab: Lab) -> None:
    """A no-op run is one read; keep an eye on it staying cheap."""
    apply(lab, ruleset())
    started = time.monotonic()
    plan, nft = apply(lab, ruleset())
    assert not plan.changed and nft.runner.writes == 0
    assert time.monotonic() - started < 2.0


def test_through_the_module(lab: Lab) -> None:
    """The allowlist module, run for real by Ansible: apply, no-op, check, diff, drift, absent."""
    in_ns(lab.srv, "nft", "add", "table", "ip", "kube-proxy")
    in_ns(lab.srv, "nft", "add", "chain", "ip", "kube-proxy", "services")
    foreign = foreign_text(lab)

    first = run_module(module_args(lab, ruleset()))
    assert first["_status"] == "CHANGED" and first["backend"] == "nftables"
    (result,) = first["results"]
    assert (result["changed"], result["commands"]["writes"], result["drift"]) == (True, 1, [])
    assert lab.truth_table() == EXPECTED

    listing = ruleset_text(lab)
    second = run_module(module_args(lab, ruleset()))
    assert second["_status"] == "SUCCESS" and second["changed"] is False
    assert second["results"][0]["commands"]["writes"] == 0
    assert ruleset_text(lab) == listing

    checked = run_module(module_args(lab, ruleset(extra_members=("10.99.2.2",))), "--check", "--diff")
    assert checked["changed"] is True and checked["results"][0]["commands"]["writes"] == 0
    diff = checked["results"][0]["diff"]
    assert "    10.99.2.2" in diff["after"] and "10.99.2.2" not in diff["before"]
    assert ruleset_text(lab) == listing

    in_ns(lab.srv, "nft", "flush", "chain", "inet", "zerotrust", "nodeport_guard")
    repaired = run_module(module_args(lab, ruleset()))
    assert repaired["changed"] is True
    assert repaired["results"][0]["drift"] == [
        "chain nodeport_guard: rules changed by hand (0 rules found, 4 expected, 4 expected rule(s) missing, 0 not ours)"
    ]
    assert ruleset_text(lab) == listing

    removed = run_module(module_args(lab, None, state="absent"))
    assert removed["changed"] is True
    assert "zerotrust" not in ruleset_text(lab)
    assert foreign_text(lab) == foreign
    assert lab.truth_table() == OPEN
    assert run_module(module_args(lab, None, state="absent"))["changed"] is False


def test_a_failed_transaction_names_the_rule_and_changes_nothing(lab: Lab) -> None:
    apply(lab, ruleset())
    before = ruleset_text(lab)
    nft = backend(lab)
    broken = nft._step([
        ("add table inet zerotrust", "table inet zerotrust"),
        ("flush chain inet zerotrust ingress", "chain ingress"),
        ("add rule inet zerotrust no_such_chain accept", "default[7] a->b tcp/80"),
    ])
    expected = rf"nft -f \(table inet zerotrust\) failed in namespace {lab.srv}, rule 'default\[7\] a->b tcp/80'"
    with pytest.raises(ApplyError, match=expected):
        nft.apply([broken])
    assert ruleset_text(lab) == before

# SPDX-License-Identifier: GPL-3.0-or-later
"""TCP connection rate through an allowlist of 10,000 peers: sets vs one rule per peer vs none.

One client namespace is wired to one server namespace per case (``ztb-<random>-*``,
removed at the end whatever happens), each server listening on tcp/80 behind:

- ``none``: no firewall at all;
- ``conntrack``: only the stateful part (an nft table with ``ct state established,related
  accept`` and nothing else): what any stateful firewall costs before it matches a peer;
- ``nft_sets``: our nftables rendering (``table inet zerotrust``, the 10,000 peers in
  one interval set, conntrack first, default deny);
- ``ipset_sets``: our iptables rendering (``ZT-INGRESS`` with ``-m set`` on one ipset);
- ``per_rule``: the naive way, one ``iptables -s PEER -p tcp --dport 80 -j ACCEPT`` per
  peer in INPUT, the client's address last (what a ``loop:`` over peers produces).

The client opens and closes connections (RST on close, so no TIME_WAIT pile-up) one
after the other for ``--seconds`` per case; cases alternate within each round, in an
order that rotates every round, each sample starts from an empty conntrack table, and
the ratios are those of the medians over ``--rounds`` (many short interleaved samples
spread background load over every case alike). Only the SYN of a connection walks the rules
(the rest is matched by ``ct state established``), so the figure is the per-new-
connection cost of the allowlist. Traffic stays inside the benchmark's namespaces:
each route is checked with ``ip route get`` before the first packet.

Run as root: ``.venv/bin/python benchmarks/bench_dataplane.py`` (``make bench-dataplane``).
The last line is ``RESULT dataplane sets_vs_none=... per_rule_vs_none=... ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / ".collections"), str(REPO)]

from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Backend, Options  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import (  # noqa: E402
    AddressSet,
    Chain,
    PortRange,
    Rule,
    Ruleset,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.nftables import NftablesBackend  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import Namespace, Runner  # noqa: E402

CASES = ("none", "conntrack", "nft_sets", "ipset_sets", "per_rule")

LISTENER = """
import socket
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 80))
server.listen(4096)
print("ready", flush=True)
while True:
    connection, _ = server.accept()
    connection.close()
"""

CONNECTOR = """
import socket, struct, sys, time
address, seconds = sys.argv[1], float(sys.argv[2])
linger = struct.pack("ii", 1, 0)
count = failures = 0
deadline = time.monotonic() + seconds
started = time.monotonic()
while time.monotonic() < deadline:
    client = socket.socket()
    client.settimeout(1.0)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    try:
        client.connect((address, 80))
        count += 1
    except OSError:
        failures += 1
    finally:
        client.close()
print(count / (time.monotonic() - started), failures)
"""


CONNTRACK_ONLY = """table inet ztb_conntrack {
  chain input { type filter hook input priority -10; policy accept; ct state established,related accept; }
}
"""


def run(*argv: str, stdin: Optional[str] = None) -> str:
    """Run a command (argv list, never a shell); return its stdout."""
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=True, timeout=300).stdout


def pin(cpu: int) -> list[str]:
    """``taskset`` prefix keeping client and servers on separate CPUs (less noise), if possible."""
    cpus = os.cpu_count() or 1
    return ["taskset", "-c", str(cpu % cpus)] if cpus > 1 and shutil.which("taskset") else []


def peers(count: int) -> list[str]:
    """``count`` scattered /32s (none adjacent, so no set can merge them)."""
    return [f"10.{200 + index // 62500}.{(index // 250) % 250}.{(index % 250) + 2}" for index in range(0, 2 * count, 2)][:count]


def allowlist(peer_list: list[str]) -> Ruleset:
    """The server's ruleset: conntrack, loopback, tcp/80 from the peers, deny."""
    return Ruleset(
        address_sets=(AddressSet("zt-bench", tuple(peer_list)),),
        chains=(
            Chain(
                "ingress",
                "input",
                (
                    Rule("accept", "implicit:conntrack", conntrack=("established", "related")),
                    Rule("accept", "implicit:loopback", interface="lo"),
                    Rule("accept", "bench peers tcp/80", protocol="tcp", ports=(PortRange(80, 80),), peer_set="zt-bench"),
                ),
                "deny",
            ),
        ),
    )


def per_rule_restore(peer_list: list[str]) -> str:
    """One ACCEPT per peer in INPUT (the client last), as a ``loop:`` would leave it."""
    lines = ["*filter", "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-A INPUT -i lo -j ACCEPT"]
    lines += [f"-A INPUT -s {peer}/32 -p tcp -m tcp --dport 80 -j ACCEPT" for peer in peer_list]
    lines += ["-A INPUT -j DROP", "COMMIT"]
    return "\n".join(lines) + "\n"


class Bench:
    """The namespaces, listeners and firewalls of one benchmark run."""

    def __init__(self, peer_count: int) -> None:
        prefix = f"ztb-{secrets.token_hex(3)}"
        self.client = f"{prefix}-c"
        self.servers = {case: f"{prefix}-{index}" for index, case in enumerate(CASES)}
        self.addresses: dict[str, tuple[str, str]] = {}
        self.listeners: list[subprocess.Popen[str]] = []
        self.peer_count = peer_count
        self.skipped: dict[str, str] = {}

    def build(self) -> None:
        run("ip", "netns", "add", self.client)
        run("ip", "-n", self.client, "link", "set", "lo", "up")
        for index, (case, server) in enumerate(self.servers.items(), start=1):
            server_address, client_address = f"10.98.{index}.1", f"10.98.{index}.2"
            self.addresses[case] = (server_address, client_address)
            run("ip", "netns", "add", server)
            run("ip", "-n", server, "link", "set", "lo", "up")
            run("ip", "-n", server, "link", "add", "eth0", "type", "veth", "peer", "name", f"s{index}", "netns", self.client)
            run("ip", "-n", server, "addr", "add", f"{server_address}/24", "dev", "eth0")
            run("ip", "-n", server, "link", "set", "eth0", "up")
            run("ip", "-n", self.client, "addr", "add", f"{client_address}/24", "dev", f"s{index}")
            run("ip", "-n", self.client, "link", "set", f"s{index}", "up")
            listener = subprocess.Popen(
                [*pin(1), "ip", "netns", "exec", server, sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True
            )
            self.listeners.append(listener)
            assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
            route = json.loads(run("ip", "-n", self.client, "-j", "route", "get", server_address))[0]
            assert route["dev"] == f"s{index}", f"route to {server_address} leaves the benchmark namespaces: {route}"

    def firewalls(self) -> None:
        for case, server in self.servers.items():
            client_address = self.addresses[case][1]
            peer_list = [*peers(self.peer_count - 1), client_address]
            if case == "conntrack":
                run("ip", "netns", "exec", server, "nft", "-f", "-", stdin=CONNTRACK_ONLY)
            elif case == "per_rule":
                run("ip", "netns", "exec", server, "iptables-restore", "-w", "--noflush", stdin=per_rule_restore(peer_list))
            elif case in ("nft_sets", "ipset_sets"):
                backend = self._backend(case, server)
                if backend is not None:
                    backend.apply(backend.plan(allowlist(peer_list), backend.read()).steps)

    def _backend(self, case: str, server: str) -> Optional[Backend]:
        runner = Runner(Namespace(name=server))
        if case == "nft_sets":
            return NftablesBackend(runner, Options())
        try:
            from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.iptables import IptablesBackend  # noqa: PLC0415
        except ImportError as error:
            self.skipped[case] = f"iptables backend not importable: {error}"
            return None
        return IptablesBackend(runner, Options())

    def rate(self, case: str, seconds: float) -> float:
        server_address = self.addresses[case][0]
        # Start every sample from an empty conntrack table in our namespaces: entries of
        # earlier samples (10 s each after the RST) would otherwise slow later ones.
        for server in self.servers.values():
            subprocess.run(["ip", "netns", "exec", server, "conntrack", "-F"], capture_output=True, check=False)
        output = run(*pin(0), "ip", "netns", "exec", self.client, sys.executable, "-c", CONNECTOR, server_address, str(seconds))
        rate, failures = output.split()
        if int(failures):
            raise SystemExit(f"case {case}: {failures} connections failed; the allowlist should admit the client")
        return float(rate)

    def destroy(self) -> None:
        for listener in self.listeners:
            listener.kill()
            listener.wait()
        for name in (self.client, *self.servers.values()):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def main() -> int:
    """Measure, print a table and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="measuring time per case and round")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--peers", type=int, default=10_000)
    args = parser.parse_args()
    bench = Bench(args.peers)
    samples: dict[str, list[float]] = {case: [] for case in CASES}
    try:
        bench.build()
        bench.firewalls()
        cases = [case for case in CASES if case not in bench.skipped]
        for round_number in range(args.rounds):
            # Rotate the order every round: no case always runs first or last.
            shift = round_number % len(cases)
            for case in cases[shift:] + cases[:shift]:
                samples[case].append(bench.rate(case, args.seconds))
    finally:
        bench.destroy()
    medians = {case: statistics.median(values) for case, values in samples.items() if values}
    print(f"TCP connections per second, {args.peers} peers allowed, median of {args.rounds} x {args.seconds:g}s (min-max)")
    for case, value in medians.items():
        print(f"  {case:<11} {value:10.0f} /s   ({min(samples[case]):.0f}-{max(samples[case]):.0f})")
    for case, reason in bench.skipped.items():
        print(f"  {case:<11} skipped: {reason}")
    # Many short samples, the order rotating every round, so that background load
    # falls on every case alike; then the ratio of the medians.
    ratios = {f"{case}_vs_none": medians[case] / medians["none"] for case in medians if case != "none"}
    sets_vs_conntrack = medians["nft_sets"] / medians["conntrack"]
    fields = {
        "sets_vs_none": f"{ratios['nft_sets_vs_none']:.3f}",
        "sets_vs_conntrack": f"{sets_vs_conntrack:.3f}",
        "per_rule_vs_none": f"{ratios['per_rule_vs_none']:.3f}",
        **({"ipset_sets_vs_none": f"{ratios['ipset_sets_vs_none']:.3f}"} if "ipset_sets_vs_none" in ratios else {}),
        **{f"{case}_cps": f"{value:.0f}" for case, value in medians.items()},
        "peers": str(args.peers),
        "goal_sets_within_10pct": str(ratios["nft_sets_vs_none"] >= 0.9).lower(),
    }
    print("RESULT dataplane " + " ".join(f"{key}={value}" for key, value in fields.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

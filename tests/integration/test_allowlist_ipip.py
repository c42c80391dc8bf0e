# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``ipip`` protocol (Calico's IP-in-IP overlay, IP protocol 4) with real packets, both backends.

Two throwaway namespaces joined by a veth (netns_helpers). The server's ingress accepts
protocol 4 from the client's address set and denies everything else; raw IPv4 packets of
protocol 4 and of protocol 94 (the number /etc/protocols calls ``ipip``) are sent from the
client and counted by raw sockets in the server, which see only what INPUT let through. A second
run of the module changes nothing: what the kernel lists back (``ipencap``) is our rule.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns_helpers import NetnsPair, assert_route_into, in_ns, netns_pair

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft"),
]

REPO = Path(__file__).resolve().parents[2]

RECEIVER = r"""
import json, select, socket, sys
sockets = {int(proto): socket.socket(socket.AF_INET, socket.SOCK_RAW, int(proto)) for proto in sys.argv[1].split(",")}
print("ready", flush=True)
counts = dict.fromkeys(sockets, 0)
while True:
    ready, _, _ = select.select(list(sockets.values()), [], [], float(sys.argv[2]))
    if not ready:
        break
    for proto, sock in sockets.items():
        if sock in ready:
            sock.recv(2048)
            counts[proto] += 1
print(json.dumps(counts), flush=True)
"""

SENDER = r"""
import socket, sys
for proto in sys.argv[2].split(","):
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, int(proto))
    for _ in range(3):
        sock.sendto(b"zerotrust-ipip-test", (sys.argv[1], 0))
"""


def ruleset(peers: list[str]) -> dict[str, Any]:
    """Server ingress: protocol 4 from ``peers``, deny the rest; egress open."""
    return {
        "chains": [
            {
                "name": "ingress",
                "hook": "input",
                "default_verdict": "deny",
                "rules": [
                    {"verdict": "accept", "origin": "implicit:cluster overlay calico-ipip", "protocol": "ipip", "peer_set": "zt-peers"}
                ],
            },
            {"name": "egress", "hook": "output", "default_verdict": "accept", "rules": []},
        ],
        "address_sets": [{"name": "zt-peers", "members": peers}],
    }


def run_module(args: dict[str, Any]) -> dict[str, Any]:
    """The allowlist module through Ansible on localhost (one-line output)."""
    argv = [str(REPO / ".venv" / "bin" / "ansible"), "localhost", "-c", "local", "-o", "-m", "zerotrust.workloads.allowlist"]
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env.pop("SSH_CONNECTION", None)
    env.pop("SSH_CLIENT", None)
    done = subprocess.run([*argv, "-a", json.dumps(args)], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300)
    for line in done.stdout.splitlines():
        if line.startswith("localhost | ") and " => " in line:
            result = dict(json.loads(line.split(" => ", 1)[1]))
            result["failed"] = line.startswith("localhost | FAILED!")
            return result
    raise AssertionError(f"ansible printed no result: {done.stdout[-2000:]} {done.stderr[-2000:]}")


def received(pair: NetnsPair) -> dict[int, int]:
    """Send three packets each of protocol 4 and 94 from the client; how many the server's raw sockets got."""
    assert_route_into(pair.client, pair.server_v4, pair.client_dev)
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", pair.server, sys.executable, "-c", RECEIVER, "4,94", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    assert receiver.stdout.readline().strip() == "ready"
    in_ns(pair.client, [sys.executable, "-c", SENDER, pair.server_v4, "4,94"])
    out, err = receiver.communicate(timeout=10)
    assert receiver.returncode == 0, err
    return {int(key): value for key, value in json.loads(out).items()}


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_ipip_passes_from_the_peers_only(backend: str) -> None:
    with netns_pair("ztp") as pair:
        assert received(pair) == {4: 3, 94: 3}
        args = {"netns": pair.server, "backend": backend, "keep_ssh": False, "default_action": "drop"}
        first = run_module({**args, "ruleset": ruleset([pair.client_v4])})
        assert (first["failed"], first["changed"]) == (False, True), first
        assert received(pair) == {4: 3, 94: 0}
        again = run_module({**args, "ruleset": ruleset([pair.client_v4])})
        assert (again["failed"], again["changed"]) == (False, False), again
        # The client is no peer any more: the set changes and protocol 4 is dropped too.
        other = run_module({**args, "ruleset": ruleset(["192.0.2.7"])})
        assert (other["failed"], other["changed"]) == (False, True), other
        assert received(pair) == {4: 0, 94: 0}

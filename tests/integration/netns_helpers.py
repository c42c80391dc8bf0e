# SPDX-License-Identifier: GPL-3.0-or-later
"""Throwaway network namespaces for integration tests (shared by the dataplane tests).

Everything here only ever sends traffic between namespaces it created itself: a
pair is two namespaces joined by one veth, with no default route and no link to the
root namespace, and :func:`assert_route_into` checks the route before any traffic.
Namespaces are named ``<prefix>-<random>`` so parallel test runs do not collide, and
:func:`netns_pair` removes them (and kills listeners) even when the test fails.

Typical use::

    with netns_pair("ztd") as pair:
        pair.listen(8080)
        assert pair.connect(pair.server_v4, 8080)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Optional

LISTENER = r"""
import socket, sys, threading
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
server = socket.socket(family, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(512)
print("ready", flush=True)
def serve(conn):
    try:
        conn.sendall(b"ok\n")
    finally:
        conn.close()
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

CONNECTOR = r"""
import socket, sys
address, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
family = socket.AF_INET6 if ":" in address else socket.AF_INET
sock = socket.socket(family, socket.SOCK_STREAM)
sock.settimeout(timeout)
try:
    sock.connect((address, port))
    data = sock.recv(3)
    sys.exit(0 if data == b"ok\n" else 3)
except OSError:
    sys.exit(1)
"""

LOOPER = r"""
import json, os, socket, sys, time
targets = json.loads(sys.argv[1])  # [[label, address, port], ...]
stop_file, timeout = sys.argv[2], float(sys.argv[3])
counts = {label: {"ok": 0, "failed": 0} for label, _, _ in targets}
while not os.path.exists(stop_file):
    for label, address, port in targets:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
            ok = sock.recv(3) == b"ok\n"
        except OSError:
            ok = False
        finally:
            sock.close()
        counts[label]["ok" if ok else "failed"] += 1
print(json.dumps(counts), flush=True)
"""


def sh(argv: Sequence[str], stdin: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (argv list, no shell) and return its result."""
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=check)


def in_ns(namespace: str, argv: Sequence[str], stdin: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside the named namespace."""
    return sh(["ip", "netns", "exec", namespace, *argv], stdin=stdin, check=check)


def unique_name(prefix: str) -> str:
    """``<prefix>-<6 hex>``: short enough for interface names derived from it."""
    return f"{prefix}-{secrets.token_hex(3)}"


def create_netns(name: str) -> None:
    """Create a namespace with loopback up."""
    sh(["ip", "netns", "add", name])
    sh(["ip", "-n", name, "link", "set", "lo", "up"])


def delete_netns(name: str) -> None:
    """Delete a namespace we created (ignores one that is already gone)."""
    sh(["ip", "netns", "delete", name], check=False)


def assert_route_into(namespace: str, destination: str, device: str) -> None:
    """Refuse to send unless ``destination`` is routed out of ``device`` inside ``namespace``."""
    route = in_ns(namespace, ["ip", "route", "get", destination], check=False).stdout
    if f" dev {device} " not in route + " ":
        raise AssertionError(f"refusing to send: route to {destination} in {namespace} is {route!r}, not via {device}")


def wait_link_up(links: Sequence[tuple[str, str]], timeout: float = 5.0) -> None:
    """Wait until every (namespace, device) is operationally up with no tentative address.

    A SYN sent before the veth carrier is up is lost and retried only after a second,
    longer than the probes wait.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = True
        for namespace, device in links:
            link = sh(["ip", "-n", namespace, "link", "show", "dev", device]).stdout
            addresses = sh(["ip", "-n", namespace, "addr", "show", "dev", device]).stdout
            ready = ready and "state UP" in link and "tentative" not in addresses
        if ready:
            return
        time.sleep(0.05)
    raise AssertionError(f"links {links} did not come up within {timeout}s")


@dataclasses.dataclass
class NetnsPair:
    """A client and a server namespace joined by one veth (IPv4 and IPv6)."""

    client: str
    server: str
    client_dev: str
    server_dev: str
    client_v4: str
    server_v4: str
    client_v6: str
    server_v6: str
    listeners: list[subprocess.Popen[str]] = dataclasses.field(default_factory=list)

    def listen(self, port: int, family: int = 4, namespace: Optional[str] = None) -> None:
        """Start a TCP listener on the server (or ``namespace``) that answers ``ok``."""
        self.listen_many([(port, family)], namespace)

    def listen_many(self, endpoints: Sequence[tuple[int, int]], namespace: Optional[str] = None) -> None:
        """Start listeners on (port, family) pairs at once, then wait until all are ready."""
        where = namespace or self.server
        started = []
        for port, family in endpoints:
            address = self.server_v4 if family == 4 else self.server_v6
            if where == self.client:
                address = self.client_v4 if family == 4 else self.client_v6
            process = subprocess.Popen(
                ["ip", "netns", "exec", where, sys.executable, "-c", LISTENER, address, str(port)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            self.listeners.append(process)
            started.append((process, address, port))
        for process, address, port in started:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                problem = process.stderr.read() if process.stderr else ""
                raise AssertionError(f"listener on {address}:{port} in {where} did not start: {problem}")

    def connect(self, address: str, port: int, timeout: float = 0.7, source: Optional[str] = None) -> bool:
        """One TCP connection from the client (or ``source``) namespace; True when it got ``ok``."""
        where = source or self.client
        device = self.client_dev if where == self.client else self.server_dev
        assert_route_into(where, address, device)
        result = in_ns(where, [sys.executable, "-c", CONNECTOR, address, str(port), str(timeout)], check=False)
        return result.returncode == 0

    @contextlib.contextmanager
    def connection_loop(self, targets: Sequence[tuple[str, str, int]], timeout: float = 1.0) -> Iterator[dict[str, dict[str, int]]]:
        """Connect to every (label, address, port) without pause until the block ends; fills the counts."""
        for _, address, _ in targets:
            assert_route_into(self.client, address, self.client_dev)
        counts: dict[str, dict[str, int]] = {}
        stop_file = f"/tmp/{self.client}-stop-{secrets.token_hex(4)}"
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.client, sys.executable, "-c", LOOPER, json.dumps([list(t) for t in targets]), stop_file,
             str(timeout)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(0.2)
            yield counts
        finally:
            with open(stop_file, "w", encoding="utf-8"):
                pass
            out, err = process.communicate(timeout=30)
            os.unlink(stop_file)
            if process.returncode != 0:
                raise AssertionError(f"connection loop failed: {err}")
            counts.update(json.loads(out))


@contextlib.contextmanager
def netns_pair(prefix: str, subnet_v4: Optional[str] = None, subnet_v6: Optional[str] = None) -> Iterator[NetnsPair]:
    """Create ``<prefix>-<hex>c`` and ``...s`` joined by a veth; always removed afterwards.

    Subnets default to a random ``10.231.N`` / ``fd00:231:N`` so pairs of parallel runs
    do not hold the same addresses (tests that search namespaces by IP rely on it).
    """
    octet = secrets.randbelow(250) + 2
    subnet_v4 = subnet_v4 or f"10.231.{octet}"
    subnet_v6 = subnet_v6 or f"fd00:231:{octet:x}"
    base = unique_name(prefix)
    client, server = f"{base}c", f"{base}s"
    # Interface names are at most 15 characters; they live only inside the namespaces.
    client_dev, server_dev = "ztc0", "zts0"
    pair = NetnsPair(client, server, client_dev, server_dev, f"{subnet_v4}.2", f"{subnet_v4}.1", f"{subnet_v6}::2", f"{subnet_v6}::1")
    created: list[str] = []
    try:
        for name in (client, server):
            create_netns(name)
            created.append(name)
        sh(["ip", "-n", client, "link", "add", client_dev, "type", "veth", "peer", "name", server_dev, "netns", server])
        ends = ((client, client_dev, pair.client_v4, pair.client_v6), (server, server_dev, pair.server_v4, pair.server_v6))
        for name, device, v4, v6 in ends:
            sh(["ip", "-n", name, "addr", "add", f"{v4}/24", "dev", device])
            sh(["ip", "-n", name, "addr", "add", f"{v6}/64", "dev", device, "nodad"])
            sh(["ip", "-n", name, "link", "set", device, "up"])
        wait_link_up(((client, client_dev), (server, server_dev)))
        yield pair
    finally:
        for process in pair.listeners:
            process.kill()
            process.wait()
        for name in created:
            delete_netns(name)


KUBE_PROXY_LIKE_NAT = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SVC-WORDPRESS - [0:0]
:KUBE-SEP-WORDPRESS - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-SERVICES -d 172.18.202.253/32 -p tcp -m comment --comment "wordpress/wordpress cluster IP" -m tcp --dport 80 -j KUBE-SVC-WORDPRESS
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "wordpress/wordpress" -m tcp --dport 30358 -j KUBE-SVC-WORDPRESS
-A KUBE-SVC-WORDPRESS -m comment --comment "wordpress/wordpress -> 10.244.1.94:80" -j KUBE-SEP-WORDPRESS
-A KUBE-SEP-WORDPRESS -p tcp -m comment --comment "wordpress/wordpress" -m tcp -j DNAT --to-destination 10.244.1.94:80
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
COMMIT
*filter
:KUBE-FIREWALL - [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
-A INPUT -j KUBE-FIREWALL
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" \
-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A DOCKER-USER -j RETURN
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
COMMIT
*mangle
:KUBE-KUBELET-CANARY - [0:0]
-A PREROUTING -p udp -m udp --dport 4789 -j MARK --set-xmark 0x1/0x1
COMMIT
"""
"""Foreign rules like kube-proxy's (nat, KUBE-FIREWALL) and Docker's (DOCKER, DOCKER-USER from FORWARD)."""


def install_foreign_rules(namespace: str, restore: str = "iptables-restore") -> None:
    """Load :data:`KUBE_PROXY_LIKE_NAT` into ``namespace`` (replacing those tables there)."""
    in_ns(namespace, [restore], stdin=KUBE_PROXY_LIKE_NAT)


def save_without_counters(namespace: str, save: str = "iptables-save") -> str:
    """``iptables-save`` of the namespace without comments and counters."""
    text = in_ns(namespace, [save]).stdout
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        lines.append(line.rsplit(" ", 1)[0] if line.startswith(":") else line)
    return "\n".join(lines) + "\n"


def foreign_lines(save_text: str) -> str:
    """The lines of a save that are not ours (no ``ZT-`` chain, no jump to one), without comments and counters."""
    lines = []
    for line in save_text.splitlines():
        if "ZT-" in line or line.startswith("#"):
            continue
        lines.append(line.rsplit(" ", 1)[0] if line.startswith(":") else line)
    return "\n".join(lines) + "\n"

# SPDX-License-Identifier: GPL-3.0-or-later
"""Cluster DNS (lab/dnsserver.py), the upstream resolver (lab/upstream_dns.py) and the probe's query (lab/dnsquery.py).

The end-to-end tests run everything for real on loopback: the emulated Kubernetes API over
HTTPS (lab.kubeapi), dnsmasq as the upstream, and lab/dnsserver.py under /usr/bin/python3 as
the lab runs it; queries are real UDP and TCP datagrams.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import dnsquery, dnsserver, upstream_dns
from lab.errors import LabError
from lab.kubeapi import KubeApiServer, start_server

REPO = Path(__file__).resolve().parents[3]
SYSTEM_PYTHON = "/usr/bin/python3"


def service(name: str, namespace: str, *cluster_ips: str) -> dict[str, Any]:
    """A Service manifest as the API stores it (``None`` for headless)."""
    spec: dict[str, Any] = {"type": "ClusterIP", "clusterIP": cluster_ips[0], "ports": [{"port": 53, "protocol": "UDP"}]}
    if cluster_ips[0] != "None":
        spec["clusterIPs"] = list(cluster_ips)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


SERVICES = [
    service("kubernetes", "default", "10.96.0.1"),
    service("kube-dns", "kube-system", "10.96.0.10"),
    service("web", "shop", "10.96.0.20", "fd00:96::20"),
    service("db", "shop", "None"),
]

# --------------------------------------------------------------------------- wire format, no sockets


def test_build_query_is_a_standard_recursive_query() -> None:
    assert dnsquery.build_query("www.example.test", "AAAA", 0x1234) == (
        bytes.fromhex("1234 0100 0001 0000 0000 0000".replace(" ", "")) + b"\x03www\x07example\x04test\x00" + b"\x00\x1c\x00\x01"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a..b", "invalid DNS name 'a..b': label '' must be 1 to 63 characters"),
        ("x" * 64 + ".test", f"invalid DNS name '{'x' * 64}.test': label '{'x' * 64}' must be 1 to 63 characters"),
        (".".join(["abcdefghi"] * 26), f"invalid DNS name '{'.'.join(['abcdefghi'] * 26)}': longer than 255 bytes"),
    ],
)
def test_encode_name_refuses_bad_names(name: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        dnsquery.encode_name(name)
    assert str(error.value) == message


QUERY = dnsquery.build_query("web.shop.svc.cluster.local", "A", 7)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (b"", "shorter than a DNS header"),
        (QUERY[:11], "shorter than a DNS header"),
        (QUERY[:4] + b"\x00\x02" + QUERY[6:], "2 questions (expected 1)"),
        (QUERY[:12] + b"\x03web", "name runs past the end"),
        (QUERY[:12] + b"\x40abc\x00\x00\x01\x00\x01", "bad label type 0x40"),
        (QUERY[:12] + b"\xc0\x0c\x00\x01\x00\x01", "compression pointer loop"),
        (QUERY[:12] + b"\xc0", "truncated compression pointer"),
        (QUERY[:12] + b"\x05ab", "label runs past the end"),
        (QUERY[:-2], "question runs past the end"),
        (QUERY[:12] + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x00\x00\x01\x00\x01",
         "name longer than 255 bytes"),
    ],
)
def test_parse_query_names_what_is_malformed(message: bytes, problem: str) -> None:
    with pytest.raises(dnsserver.FormatError) as error:
        dnsserver.parse_query(message)
    assert str(error.value) == problem


def test_parse_query_follows_a_compression_pointer_in_the_question() -> None:
    # "web.shop.svc" then a pointer to "cluster.local", stored after the question (offset 31).
    message = QUERY[:12] + b"\x03web\x04shop\x03svc\xc0\x1f" + b"\x00\x01\x00\x01" + b"\x07cluster\x05local\x00"
    parsed = dnsserver.parse_query(message)
    assert parsed.name == "web.shop.svc.cluster.local"
    assert parsed.qtype == 1


def _resolver(services: dict[tuple[str, str], tuple[str, ...]] | None) -> dnsserver.Resolver:
    table = dnsserver.ServiceTable()
    if services is not None:
        table.replace(services)
    return dnsserver.Resolver(table, "cluster.local", [])


TABLE = dnsserver.services_from_list({"items": SERVICES})


def test_services_from_list() -> None:
    assert TABLE == {
        ("default", "kubernetes"): ("10.96.0.1",),
        ("kube-system", "kube-dns"): ("10.96.0.10",),
        ("shop", "web"): ("10.96.0.20", "fd00:96::20"),
        ("shop", "db"): (),
    }


def _rcode_and_addresses(reply: bytes | None, ident: int, qtype: str) -> tuple[str, list[str]]:
    assert reply is not None
    try:
        return "NOERROR", dnsquery.parse_answer(reply, ident, qtype)
    except LookupError as exc:
        return str(exc), []


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "addresses"),
    [
        ("kubernetes.default.svc.cluster.local", "A", "NOERROR", ["10.96.0.1"]),
        ("Kubernetes.Default.SVC.cluster.local.", "A", "NOERROR", ["10.96.0.1"]),
        ("web.shop.svc.cluster.local", "A", "NOERROR", ["10.96.0.20"]),
        ("web.shop.svc.cluster.local", "AAAA", "NOERROR", ["fd00:96::20"]),
        ("kubernetes.default.svc.cluster.local", "AAAA", "NOERROR", []),  # no v6 ClusterIP: no records
        ("db.shop.svc.cluster.local", "A", "NOERROR", []),  # headless
        ("nothing.shop.svc.cluster.local", "A", "NXDOMAIN", []),
        ("web.other.svc.cluster.local", "A", "NXDOMAIN", []),
        ("a.web.shop.svc.cluster.local", "A", "NXDOMAIN", []),
        ("shop.svc.cluster.local", "A", "NXDOMAIN", []),
        ("svc.cluster.local", "A", "NOERROR", []),
        ("cluster.local", "A", "NOERROR", []),
        ("www.example.test", "A", "SERVFAIL", []),  # no upstream configured: never answered from anywhere else
    ],
)
def test_resolver_truth_table(name: str, qtype: str, rcode: str, addresses: list[str]) -> None:
    reply = _resolver(TABLE).handle(dnsquery.build_query(name, qtype, 99), tcp=False)
    assert _rcode_and_addresses(reply, 99, qtype) == (rcode, addresses)


def test_cluster_answers_are_authoritative_with_the_question_echoed() -> None:
    query = dnsquery.build_query("web.shop.svc.cluster.local", "A", 0xBEEF)
    reply = _resolver(TABLE).handle(query, tcp=False)
    assert reply is not None
    ident, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", reply[:12])
    assert (ident, flags, qd, an, ns, ar) == (0xBEEF, 0x8580, 1, 1, 0, 0)  # QR AA RD RA, NOERROR
    assert reply[12 : len(query)] == query[12:]
    assert reply[len(query) :] == struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + bytes([10, 96, 0, 20])


def test_before_the_first_list_cluster_names_get_servfail() -> None:
    reply = _resolver(None).handle(dnsquery.build_query("kubernetes.default.svc.cluster.local", "A", 5), tcp=False)
    assert _rcode_and_addresses(reply, 5, "A") == ("SERVFAIL", [])


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"", None),  # no header: dropped
        (b"\x12\x34\x01", None),
        (QUERY[:2] + b"\x81\x80" + QUERY[4:], None),  # a response: never answered (no loops)
        (QUERY[:2] + b"\x01\x00\x00\x02" + QUERY[6:], bytes.fromhex("0007 8181 0000 0000 0000 0000".replace(" ", ""))),  # FORMERR
        (QUERY[:2] + b"\x11\x00" + QUERY[4:], None),  # opcode 2 (STATUS): NOTIMP with the question
    ],
)
def test_malformed_queries(message: bytes, expected: bytes | None) -> None:
    reply = _resolver(TABLE).handle(message, tcp=False)
    if message[2:4] == b"\x11\x00":
        assert reply is not None and struct.unpack("!H", reply[2:4])[0] & 0xF == 4
    else:
        assert reply == expected


def test_random_garbage_never_raises() -> None:
    resolver = _resolver(TABLE)
    rng = random.Random(1234)  # noqa: S311 - reproducible fuzzing, not cryptography
    for _ in range(3000):
        message = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        if rng.random() < 0.5:  # mutate a valid query instead
            mutated = bytearray(QUERY)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            message = bytes(mutated[: rng.randrange(len(mutated) + 1)])
        resolver.handle(message, tcp=bool(rng.randrange(2)))


# --------------------------------------------------------------------------- upstream dnsmasq argv


def test_dnsmasq_argv() -> None:
    assert upstream_dns.dnsmasq_argv(["10.0.0.53", "fd00::53"], binary="/usr/sbin/dnsmasq") == [
        "/usr/sbin/dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll", "--pid-file=",
        "--user=root", "--bind-interfaces", "--port=53", "--local-ttl=30", "--cache-size=0",
        "--listen-address=10.0.0.53", "--listen-address=fd00::53",
        "--host-record=www.example.test,192.0.2.80,2001:db8::80", "--host-record=mirror.example.test,192.0.2.81",
        "--address=/#/", "--log-queries",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"listen": []}, "the upstream resolver needs at least one address to listen on"),
        ({"listen": ["upstream"]}, "upstream resolver: 'upstream' does not appear to be an IPv4 or IPv6 address"),
        ({"listen": ["10.0.0.53"], "names": {"a.test": "fd00::1"}}, "upstream resolver: Expected 4 octets in 'fd00::1'"),
        ({"listen": ["10.0.0.53"], "names": {"a,b.test": "192.0.2.1"}},
         "upstream resolver: 'a,b.test' is not a DNS name (letters, digits and '-' in dot-separated labels)"),
    ],
)
def test_dnsmasq_argv_refuses_bad_input(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LabError) as error:
        upstream_dns.dnsmasq_argv(binary="dnsmasq", **kwargs)
    assert str(error.value) == message


def test_server_argv() -> None:
    assert dnsserver.server_argv(["10.244.1.5", "fd00:10:244:1::5"], "https://10.0.0.11:6443", "/t", "/ca", ["10.0.0.53"]) == [
        "/usr/bin/python3", str(REPO / "lab" / "dnsserver.py"), "--listen=10.244.1.5", "--listen=fd00:10:244:1::5", "--port=53",
        "--api-url=https://10.0.0.11:6443", "--token-file=/t", "--ca-file=/ca", "--upstream=10.0.0.53", "--domain=cluster.local",
        "--refresh=2",
    ]


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ("dns.example.test", "'dns.example.test' does not appear to be an IPv4 or IPv6 address"),
        ("10.0.0.53#0", "upstream '10.0.0.53#0': port 0 is out of range"),
    ],
)
def test_server_argv_refuses_bad_upstreams(upstream: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        dnsserver.server_argv(["10.244.1.5"], "https://10.0.0.11:6443", "/t", None, [upstream])
    assert str(error.value) == message


# --------------------------------------------------------------------------- end to end on loopback


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, contextlib.suppress(OSError):
                tcp.bind(("127.0.0.1", port))
                return port
    raise AssertionError("no free port")


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, contextlib.suppress(OSError):
            sock.connect(("127.0.0.1", port))
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Dns:
    """The running trio."""

    api: KubeApiServer
    port: int
    upstream: subprocess.Popen[bytes]
    server: subprocess.Popen[bytes]

    def ask(self, name: str, qtype: str = "A") -> tuple[list[str], str | None]:
        return dnsquery.query("127.0.0.1", name, qtype, port=self.port, timeout=3)


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dns]:
    if shutil.which("dnsmasq") is None or not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("needs dnsmasq (dnsmasq-base) and /usr/bin/python3")
    tmp = tmp_path_factory.mktemp("dns")
    with start_server(SERVICES) as api, contextlib.ExitStack() as stack:
        token_file = tmp / "token"
        token_file.write_text(api.token + "\n")
        upstream_port, port = _free_port(), _free_port()
        upstream = subprocess.Popen(
            upstream_dns.dnsmasq_argv(["127.0.0.1"], port=upstream_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        stack.callback(_stop, upstream)
        _wait_port(upstream_port, upstream)
        argv = dnsserver.server_argv(
            ["127.0.0.1"], api.url, str(token_file), api.ca_file, [f"127.0.0.1#{upstream_port}"], port=port, refresh=0.2
        )
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        stack.callback(_stop, server)
        _wait_port(port, server)
        # Listening comes before the first Service list; until then cluster names get SERVFAIL.
        deadline = time.monotonic() + 10
        while dnsquery.query("127.0.0.1", "kubernetes.default.svc.cluster.local", port=port)[1] == "SERVFAIL":
            assert time.monotonic() < deadline, "the DNS server never read the Services"
            time.sleep(0.05)
        yield Dns(api, port, upstream, server)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        ("kubernetes.default.svc.cluster.local", "A", (["10.96.0.1"], None)),
        ("kube-dns.kube-system.svc.cluster.local", "A", (["10.96.0.10"], None)),
        ("web.shop.svc.cluster.local", "AAAA", (["fd00:96::20"], None)),
        ("db.shop.svc.cluster.local", "A", ([], "no A record")),
        ("nothing.default.svc.cluster.local", "A", ([], "NXDOMAIN")),
        # Through the upstream (dnsmasq): its names, its NXDOMAIN.
        (next(iter(upstream_dns.NAMES)), "A", ([next(iter(upstream_dns.NAMES.values()))], None)),
        ("www.example.test", "AAAA", (["2001:db8::80"], None)),
        (upstream_dns.UNKNOWN_NAME, "A", ([], "NXDOMAIN")),
        ("kubernetes.io", "A", ([], "NXDOMAIN")),
    ],
)
def test_udp_truth_table(dns: Dns, name: str, qtype: str, expected: tuple[list[str], str | None]) -> None:
    assert dns.ask(name, qtype) == expected


def _tcp_query(port: int, name: str, ident: int) -> bytes:
    message = dnsquery.build_query(name, "A", ident)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(struct.pack("!H", len(message)) + message)
        length = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
        return sock.recv(length, socket.MSG_WAITALL)


@pytest.mark.parametrize(
    ("name", "expected"), [("kube-dns.kube-system.svc.cluster.local", ["10.96.0.10"]), ("mirror.example.test", ["192.0.2.81"])]
)
def test_tcp_answers_cluster_and_forwarded_names(dns: Dns, name: str, expected: list[str]) -> None:
    assert dnsquery.parse_answer(_tcp_query(dns.port, name, 4321), 4321, "A") == expected


def test_new_services_appear_after_a_refresh(dns: Dns) -> None:
    name = f"new-{secrets.token_hex(3)}.shop.svc.cluster.local"
    assert dns.ask(name) == ([], "NXDOMAIN")
    dns.api.emulator.put_object(service(name.split(".", maxsplit=1)[0], "shop", "10.96.0.99"))
    deadline = time.monotonic() + 5
    while dns.ask(name)[0] != ["10.96.0.99"]:
        assert time.monotonic() < deadline, "the new Service never appeared"
        time.sleep(0.1)


def test_garbage_on_udp_and_tcp_does_not_stop_the_server(dns: Dns) -> None:
    rng = random.Random(99)  # noqa: S311 - reproducible fuzzing, not cryptography
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(200):
            sock.sendto(bytes(rng.randrange(256) for _ in range(rng.randrange(60))), ("127.0.0.1", dns.port))
    for garbage in (b"\x00", b"\x00\x05abc", b"\x00\x02\xff\xff", b"\xff\xff" + b"x" * 100):
        with socket.create_connection(("127.0.0.1", dns.port), timeout=3) as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                sock.recv(100)
    assert dns.server.poll() is None
    assert dns.ask("kubernetes.default.svc.cluster.local") == (["10.96.0.1"], None)


def test_a_silent_upstream_delays_only_forwarded_names_and_gets_servfail(dns: Dns, tmp_path: Path) -> None:
    # A second server whose only upstream is a socket that reads queries and never answers.
    token = tmp_path / "token"
    token.write_text(dns.api.token)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = _free_port()
        upstream = f"127.0.0.1#{silent.getsockname()[1]}"
        argv = dnsserver.server_argv(["127.0.0.1"], dns.api.url, str(token), dns.api.ca_file, [upstream], port=port)
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_port(port, server)
            deadline = time.monotonic() + 5
            while dnsquery.query("127.0.0.1", "kubernetes.default.svc.cluster.local", port=port)[1] is not None:
                assert time.monotonic() < deadline, "the server never read the Services"
                time.sleep(0.05)
            with ThreadPoolExecutor(max_workers=24) as pool:
                # More waiting forwards than the server has workers for them.
                forwarded = [pool.submit(dnsquery.query, "127.0.0.1", "www.example.test", "A", port, 8) for _ in range(20)]
                time.sleep(0.3)
                started = time.monotonic()
                assert dnsquery.query("127.0.0.1", "kubernetes.default.svc.cluster.local", port=port, timeout=1) == (["10.96.0.1"], None)
                assert time.monotonic() - started < 0.5
                assert [future.result() for future in forwarded] == [([], "SERVFAIL")] * 20
            # Forwarded to exactly the upstream given, which saw the name.
            silent.settimeout(1)
            assert b"\x03www\x07example\x04test\x00" in silent.recv(512)
        finally:
            _stop(server)


def test_query_errors_are_texts() -> None:
    # Nothing listens on this port: a UDP query either gets ICMP refused or times out; both are texts.
    port = _free_port()
    addresses, error = dnsquery.query("127.0.0.1", "www.example.test", port=port, timeout=0.3)
    assert addresses == []
    assert error in {"Connection refused", "no answer within 0.3 s"}
    assert dnsquery.query("127.0.0.1", "a..b", port=port) == ([], "invalid DNS name 'a..b': label '' must be 1 to 63 characters")
    assert dnsquery.query("127.0.0.1", "a.test", "MX", port=port) == ([], "unsupported query type 'MX' (A or AAAA)")

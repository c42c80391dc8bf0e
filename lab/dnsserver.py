# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's cluster DNS: a small CoreDNS stand-in (stdlib only; runs under /usr/bin/python3 in a pod).

What it does, as CoreDNS's ``kubernetes`` and ``forward`` plugins do:

- lists the Services from the Kubernetes API (``--api-url`` https, bearer token from
  ``--token-file``, re-read each time, CA from ``--ca-file``) every ``--refresh`` seconds over
  one kept-alive connection, keeping the last good list when a refresh fails;
- answers ``<service>.<namespace>.svc.<domain>`` authoritatively: A with the IPv4 ClusterIP(s),
  AAAA with the IPv6 one(s), no records for other types or headless Services, NXDOMAIN for
  names in the domain that are no Service, SERVFAIL while no list has been read yet;
- forwards every other name, over the transport it came in on, to the ``--upstream`` resolvers
  in order (only those addresses, ever), relaying the first answer;
- listens on UDP and TCP port ``--port`` of each ``--listen`` address.

Malformed input never stops it: datagrams shorter than a header are dropped, other unparsable
queries get FORMERR, opcodes other than QUERY get NOTIMP, and any unexpected error in one
request is logged and answered with SERVFAIL.

    python3 lab/dnsserver.py --listen 10.244.1.5 --api-url https://10.0.0.11:6443 \\
        --token-file .lab/kubeapi/token --ca-file .lab/kubeapi/ca.crt --upstream 10.0.0.53
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import secrets
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HEADER = struct.Struct("!HHHHHH")
TYPE_A, TYPE_AAAA, TYPE_SOA, CLASS_IN = 1, 28, 6, 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP = 0, 1, 2, 3, 4
UPSTREAM_TIMEOUT = 2.0
TCP_IDLE_TIMEOUT = 10.0


class FormatError(ValueError):
    """The query cannot be parsed."""


@dataclass(frozen=True)
class Query:
    """The parts of a query the server uses."""

    ident: int
    flags: int
    labels: tuple[bytes, ...]
    qtype: int
    qclass: int

    @property
    def name(self) -> str:
        """The lower-case dotted name (non-ASCII bytes kept as latin-1 so they never match a Service)."""
        return ".".join(label.decode("latin-1") for label in self.labels).lower()


def _read_name(message: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """The labels of the name at ``offset`` (following compression pointers) and the offset after it."""
    labels: list[bytes] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if offset >= len(message):
            raise FormatError("name runs past the end")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(message):
                raise FormatError("truncated compression pointer")
            if end < 0:
                end = offset + 2
            jumps += 1
            if jumps > 16:
                raise FormatError("compression pointer loop")
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            continue
        if length & 0xC0:
            raise FormatError(f"bad label type {length:#x}")
        if length == 0:
            return tuple(labels), end if end >= 0 else offset + 1
        label = message[offset + 1 : offset + 1 + length]
        if len(label) != length:
            raise FormatError("label runs past the end")
        total += length + 1
        if total > 255:
            raise FormatError("name longer than 255 bytes")
        labels.append(label)
        offset += 1 + length


def parse_query(message: bytes) -> Query:
    """The question of a query message; FormatError when it is not a one-question query."""
    if len(message) < HEADER.size:
        raise FormatError("shorter than a DNS header")
    ident, flags, qdcount, _, _, _ = HEADER.unpack_from(message)
    if qdcount != 1:
        raise FormatError(f"{qdcount} questions (expected 1)")
    labels, offset = _read_name(message, HEADER.size)
    if offset + 4 > len(message):
        raise FormatError("question runs past the end")
    qtype, qclass = struct.unpack_from("!HH", message, offset)
    return Query(ident, flags, labels, qtype, qclass)


def _encode_labels(labels: Sequence[bytes]) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def _question(query: Query) -> bytes:
    return _encode_labels(query.labels) + struct.pack("!HH", query.qtype, query.qclass)


def response(
    query: Query, rcode: int, answers: Sequence[tuple[int, bytes]] = (), *, authoritative: bool = False, ttl: int = 5,
    authority: bytes = b"", authority_count: int = 0,
) -> bytes:
    """A reply to ``query``: ``answers`` are (type, rdata) for the question's name."""
    flags = 0x8000 | (query.flags & 0x7900) | 0x0080 | rcode  # QR, opcode and RD copied, RA, rcode
    if authoritative:
        flags |= 0x0400
    records = b"".join(
        struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, ttl, len(rdata)) + rdata for rtype, rdata in answers
    )
    return HEADER.pack(query.ident, flags, 1, len(answers), authority_count, 0) + _question(query) + records + authority


def error_response(message: bytes, rcode: int) -> bytes | None:
    """A question-less reply carrying ``rcode`` to an unparsable message (None when it has no header)."""
    if len(message) < HEADER.size:
        return None
    ident, flags = struct.unpack_from("!HH", message)
    return HEADER.pack(ident, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


class ServiceTable:
    """The Services' ClusterIPs by (namespace, name), swapped whole on each refresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[tuple[str, str], tuple[str, ...]] | None = None

    def replace(self, services: dict[tuple[str, str], tuple[str, ...]]) -> None:
        """Install a freshly read list."""
        with self._lock:
            self._services = services

    def get(self) -> dict[tuple[str, str], tuple[str, ...]] | None:
        """The current list (None before the first successful read)."""
        with self._lock:
            return self._services


def services_from_list(body: object) -> dict[tuple[str, str], tuple[str, ...]]:
    """(namespace, name) -> ClusterIPs from a ServiceList; headless Services map to ()."""
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise ValueError("not a ServiceList (no items)")
    result: dict[tuple[str, str], tuple[str, ...]] = {}
    for item in body["items"]:
        if not isinstance(item, dict):
            continue
        metadata, spec = item.get("metadata") or {}, item.get("spec") or {}
        name, namespace = metadata.get("name"), metadata.get("namespace")
        if not isinstance(name, str) or not isinstance(namespace, str):
            continue
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        valid = []
        for ip in ips:
            try:
                valid.append(str(ipaddress.ip_address(ip)))
            except ValueError:
                continue  # "None" for headless Services, or garbage: never answered
        result[(namespace.lower(), name.lower())] = tuple(valid)
    return result


class ApiClient:
    """Lists Services from the API over one kept-alive HTTPS connection."""

    def __init__(self, url: str, token_file: str, ca_file: str | None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise ValueError(f"--api-url {url!r}: expected https://HOST:PORT")
        self.host, self.port, self.scheme = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), parsed.scheme
        self.token_file = token_file
        self.context = ssl.create_default_context(cafile=ca_file) if parsed.scheme == "https" else None
        self.connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.connection is None:
            if self.context is not None:
                self.connection = http.client.HTTPSConnection(self.host, self.port, timeout=5, context=self.context)
            else:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        return self.connection

    def list_services(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """Every Service (following continue tokens); raises on any failure."""
        with open(self.token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
        services: dict[tuple[str, str], tuple[str, ...]] = {}
        continue_token = ""
        while True:
            path = "/api/v1/services?limit=500" + (f"&continue={urllib.parse.quote(continue_token)}" if continue_token else "")
            connection = self._connect()
            try:
                connection.request("GET", path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
                reply = connection.getresponse()
                body = reply.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self.connection = None
                raise
            if reply.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {reply.status} {body[:200].decode(errors='replace')}")
            data = json.loads(body)
            services.update(services_from_list(data))
            continue_token = (data.get("metadata") or {}).get("continue") or ""
            if not continue_token:
                return services


class Resolver:
    """Answers one query: the cluster zone from the ServiceTable, everything else from upstream."""

    def __init__(self, table: ServiceTable, domain: str, upstreams: Sequence[tuple[str, int]], ttl: int = 5) -> None:
        self.table = table
        self.domain = domain.lower().strip(".")
        self.upstreams = list(upstreams)
        self.ttl = ttl

    def in_zone(self, name: str) -> bool:
        """Whether ``name`` belongs to the cluster domain."""
        return name == self.domain or name.endswith("." + self.domain)

    def _soa(self) -> bytes:
        apex = tuple(label.encode() for label in self.domain.split("."))
        rdata = _encode_labels((b"ns", b"dns", *apex)) + _encode_labels((b"hostmaster", *apex)) + struct.pack(
            "!IIIII", 1, 7200, 1800, 86400, self.ttl
        )
        return _encode_labels(apex) + struct.pack("!HHIH", TYPE_SOA, CLASS_IN, self.ttl, len(rdata)) + rdata

    def cluster_answer(self, query: Query) -> bytes:
        """The authoritative reply for a name in the cluster domain."""
        services = self.table.get()
        if services is None:
            return response(query, SERVFAIL)
        suffix = f".svc.{self.domain}"
        name = query.name
        if name in (self.domain, f"svc.{self.domain}"):
            return response(query, NOERROR, authoritative=True, authority=self._soa(), authority_count=1, ttl=self.ttl)
        parts = name[: -len(suffix)].split(".") if name.endswith(suffix) else []
        if len(parts) != 2 or (parts[1], parts[0]) not in services:
            return response(query, NXDOMAIN, authoritative=True, authority=self._soa(), authority_count=1, ttl=self.ttl)
        addresses = [ipaddress.ip_address(ip) for ip in services[(parts[1], parts[0])]]
        wanted = {TYPE_A: 4, TYPE_AAAA: 6}.get(query.qtype) if query.qclass == CLASS_IN else None
        answers = [(query.qtype, address.packed) for address in addresses if address.version == wanted]
        if not answers:
            return response(query, NOERROR, authoritative=True, authority=self._soa(), authority_count=1, ttl=self.ttl)
        return response(query, NOERROR, answers, authoritative=True, ttl=self.ttl)

    def forward(self, message: bytes, query: Query, tcp: bool) -> bytes:
        """Relay ``message`` to the upstreams in order; SERVFAIL when none answers."""
        for address, port in self.upstreams:
            ident = secrets.randbits(16)
            outgoing = struct.pack("!H", ident) + message[2:]
            try:
                reply = _ask_tcp(address, port, outgoing) if tcp else _ask_udp(address, port, outgoing, ident)
            except (OSError, ValueError) as exc:
                log(f"upstream {address}:{port} failed for {query.name}: {exc}")
                continue
            if reply is not None and len(reply) >= HEADER.size and struct.unpack_from("!H", reply)[0] == ident:
                return struct.pack("!H", query.ident) + reply[2:]
        return response(query, SERVFAIL)

    def local_reply(self, message: bytes) -> tuple[bool, bytes | None]:
        """(True, reply or None to stay silent) when answered without upstream; (False, None) to forward. Never raises."""
        try:
            if len(message) >= 4 and message[2] & 0x80:
                return True, None  # a response, not a query: never answer those (no loops)
            try:
                query = parse_query(message)
            except FormatError:
                return True, error_response(message, FORMERR)
            if (query.flags >> 11) & 0xF:
                return True, response(query, NOTIMP)
            if self.in_zone(query.name):
                return True, self.cluster_answer(query)
            return False, None
        except Exception:  # one bad request must never stop the server
            log(f"error answering a query: {traceback.format_exc()}")
            return True, error_response(message, SERVFAIL)

    def handle(self, message: bytes, tcp: bool) -> bytes | None:
        """The reply to one message (None: send nothing), forwarding when needed. Never raises."""
        local, reply = self.local_reply(message)
        if local:
            return reply
        try:
            return self.forward(message, parse_query(message), tcp)
        except Exception:  # one bad request must never stop the server
            log(f"error forwarding a query: {traceback.format_exc()}")
            return error_response(message, SERVFAIL)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _ask_udp(address: str, port: int, message: bytes, ident: int) -> bytes | None:
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        sock.settimeout(UPSTREAM_TIMEOUT)
        sock.connect((address, port))  # a connected socket only accepts replies from that address
        sock.send(message)
        deadline = time.monotonic() + UPSTREAM_TIMEOUT
        while time.monotonic() < deadline:
            reply = sock.recv(65535)
            if len(reply) >= 2 and struct.unpack_from("!H", reply)[0] == ident:
                return reply
        return None


def _recv_exact(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _ask_tcp(address: str, port: int, message: bytes) -> bytes | None:
    with socket.create_connection((address, port), timeout=UPSTREAM_TIMEOUT) as sock:
        sock.sendall(struct.pack("!H", len(message)) + message)
        header = _recv_exact(sock, 2)
        return _recv_exact(sock, struct.unpack("!H", header)[0]) if header else None


def log(text: str) -> None:
    """One line on stderr (the lab keeps it in .lab/logs)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def refresh_loop(client: ApiClient, table: ServiceTable, interval: float) -> None:
    """Re-read the Services forever; log only changes of state (failing / recovered)."""
    failing = ""
    while True:
        try:
            services = client.list_services()
            table.replace(services)
            if failing:
                log(f"Kubernetes API reachable again: {len(services)} Services")
            failing = ""
        except Exception as exc:  # keep serving the last good list
            text = f"{type(exc).__name__}: {exc}"
            if text != failing:
                log(f"listing Services failed (keeping the last good list): {text}")
            failing = text
        time.sleep(interval)


def serve_udp(sock: socket.socket, resolver: Resolver, pool: ThreadPoolExecutor) -> None:
    """Answer datagrams: cluster names at once, forwarded ones in the pool (so a slow or blocked
    upstream never delays the cluster's own names, as with CoreDNS)."""

    def send(reply: bytes | None, peer: tuple[str, int]) -> None:
        if reply is not None:
            try:
                sock.sendto(reply, peer)
            except OSError as exc:
                log(f"reply to {peer[0]} failed: {exc}")

    def forward(message: bytes, peer: tuple[str, int]) -> None:
        send(resolver.handle(message, tcp=False), peer)

    while True:
        try:
            message, peer = sock.recvfrom(65535)
        except OSError as exc:
            log(f"udp receive failed: {exc}")
            continue
        local, reply = resolver.local_reply(message)
        if local:
            send(reply, peer)
        else:
            pool.submit(forward, message, peer)


def serve_tcp_connection(conn: socket.socket, resolver: Resolver) -> None:
    """Length-prefixed queries on one connection until the client closes or idles out."""
    with conn:
        conn.settimeout(TCP_IDLE_TIMEOUT)
        try:
            while True:
                header = _recv_exact(conn, 2)
                if header is None:
                    return
                message = _recv_exact(conn, struct.unpack("!H", header)[0])
                if message is None:
                    return
                reply = resolver.handle(message, tcp=True)
                if reply is None:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return


def serve_tcp(sock: socket.socket, resolver: Resolver) -> None:
    """Accept connections, one thread each."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError as exc:
            log(f"tcp accept failed: {exc}")
            time.sleep(0.1)
            continue
        threading.Thread(target=serve_tcp_connection, args=(conn, resolver), daemon=True).start()


def bind(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """The UDP and TCP sockets on address:port."""
    udp = socket.socket(_family(address), socket.SOCK_DGRAM)
    udp.bind((address, port))
    tcp = socket.socket(_family(address), socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((address, port))
    tcp.listen(64)
    return udp, tcp


def _upstream(text: str) -> tuple[str, int]:
    """``ADDRESS`` or ``ADDRESS#PORT`` (dnsmasq's notation) -> (address, port); addresses only, never names."""
    address, _, port = text.partition("#")
    number = int(port or 53)
    if not 0 < number < 65536:
        raise ValueError(f"upstream {text!r}: port {number} is out of range")
    return str(ipaddress.ip_address(address)), number


def server_argv(
    listen: Sequence[str],
    api_url: str,
    token_file: str,
    ca_file: str | None,
    upstreams: Sequence[str],
    *,
    port: int = 53,
    domain: str = "cluster.local",
    refresh: float = 2.0,
    python: str = "/usr/bin/python3",
) -> list[str]:
    """The command line that runs this server (wrap it in ``ip netns exec`` for a pod).

    ``upstreams``: resolver addresses, optionally ``ADDRESS#PORT``; validated here so a bad one
    fails before anything starts (ValueError naming it).
    """
    for text in upstreams:
        _upstream(text)
    for address in listen:
        ipaddress.ip_address(address)
    argv = [python, str(Path(__file__).resolve()), *(f"--listen={address}" for address in listen), f"--port={port}",
            f"--api-url={api_url}", f"--token-file={token_file}"]
    if ca_file is not None:
        argv.append(f"--ca-file={ca_file}")
    return [*argv, *(f"--upstream={text}" for text in upstreams), f"--domain={domain}", f"--refresh={refresh:g}"]


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", required=True, help="an address to serve on (repeat for more)")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--ca-file", help="the API's CA bundle (https only)")
    parser.add_argument("--upstream", action="append", default=[], metavar="ADDRESS[#PORT]", help="a resolver for other names")
    parser.add_argument("--domain", default="cluster.local")
    parser.add_argument("--refresh", type=float, default=2.0, help="seconds between Service lists")
    parser.add_argument("--ttl", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        upstreams = [_upstream(text) for text in args.upstream]
        listen = [str(ipaddress.ip_address(address)) for address in args.listen]
        client = ApiClient(args.api_url, args.token_file, args.ca_file)
    except ValueError as exc:
        parser.error(str(exc))
    table = ServiceTable()
    resolver = Resolver(table, args.domain, upstreams, args.ttl)
    pool = ThreadPoolExecutor(max_workers=16)
    for address in listen:
        udp, tcp = bind(address, args.port)
        threading.Thread(target=serve_udp, args=(udp, resolver, pool), daemon=True).start()
        threading.Thread(target=serve_tcp, args=(tcp, resolver), daemon=True).start()
    log(f"serving {args.domain} on {', '.join(listen)} port {args.port}; upstream {args.upstream or 'none'}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    refresh_loop(client, table, args.refresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

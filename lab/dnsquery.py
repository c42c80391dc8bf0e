# SPDX-License-Identifier: GPL-3.0-or-later
"""One DNS question over UDP, for the probe (stdlib only; runs under /usr/bin/python3 in a namespace).

``query(server, name, "A")`` sends one query to ``server:53`` and returns the answer's addresses
or an error text, never raising. Importable (``from lab.dnsquery import query``) and runnable::

    python3 lab/dnsquery.py 10.96.0.10 kubernetes.default.svc.cluster.local A --timeout 1
    {"addresses": ["10.96.0.1"], "error": null}
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import socket
import struct
import sys
import time

QTYPES = {"A": 1, "AAAA": 28}
RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
HEADER = struct.Struct("!HHHHHH")


class MalformedAnswerError(ValueError):
    """The reply is not a well-formed DNS message."""


class NotOursError(MalformedAnswerError):
    """A datagram that does not answer our query (wrong ID, or not a reply)."""


def encode_name(name: str) -> bytes:
    """``www.example.test`` in DNS wire format; ValueError when a label is empty or too long."""
    labels = name.rstrip(".").split(".") if name.strip(".") else []
    wire = b""
    for label in labels:
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"invalid DNS name {name!r}: label {label!r} must be 1 to 63 characters")
        wire += bytes([len(raw)]) + raw
    if len(wire) + 1 > 255:
        raise ValueError(f"invalid DNS name {name!r}: longer than 255 bytes")
    return wire + b"\0"


def build_query(name: str, qtype: str, ident: int) -> bytes:
    """A standard query (recursion desired) for ``name``/``qtype``."""
    return HEADER.pack(ident, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", QTYPES[qtype], 1)


def skip_name(message: bytes, offset: int) -> int:
    """The offset just after the (possibly compressed) name at ``offset``."""
    while True:
        if offset >= len(message):
            raise MalformedAnswerError("name runs past the end")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length & 0xC0:
            raise MalformedAnswerError(f"bad label type {length:#x}")
        if length == 0:
            return offset + 1
        offset += 1 + length


def parse_answer(message: bytes, ident: int, qtype: str) -> list[str]:
    """The ``qtype`` addresses in a reply to query ``ident``; MalformedAnswerError / LookupError (rcode) otherwise."""
    if len(message) < HEADER.size:
        raise MalformedAnswerError(f"{len(message)} bytes, shorter than a DNS header")
    got_id, flags, qdcount, ancount, _, _ = HEADER.unpack_from(message)
    if got_id != ident or not flags & 0x8000:
        raise NotOursError("not a reply to our query")
    rcode = flags & 0x000F
    if rcode:
        raise LookupError(RCODES.get(rcode, f"rcode {rcode}"))
    offset = HEADER.size
    for _ in range(qdcount):
        offset = skip_name(message, offset) + 4
    addresses = []
    for _ in range(ancount):
        offset = skip_name(message, offset)
        if offset + 10 > len(message):
            raise MalformedAnswerError("record header runs past the end")
        rtype, _, _, length = struct.unpack_from("!HHIH", message, offset)
        offset += 10
        rdata = message[offset : offset + length]
        if len(rdata) != length:
            raise MalformedAnswerError("record data runs past the end")
        offset += length
        if rtype == QTYPES[qtype] and length in (4, 16):
            addresses.append(str(ipaddress.ip_address(rdata)))
    return addresses


def query(  # noqa: PLR0911 - one return per outcome reads best here
    server: str, name: str, qtype: str = "A", port: int = 53, timeout: float = 1.0
) -> tuple[list[str], str | None]:
    """Ask ``server:port`` over UDP; ``(addresses, None)`` on an answer, ``([], error text)`` otherwise.

    A NOERROR reply without a ``qtype`` record gives ``"no A record"`` (or AAAA); rcodes are
    named (``NXDOMAIN``, ``SERVFAIL``, ...). Never raises.
    """
    if qtype not in QTYPES:
        return [], f"unsupported query type {qtype!r} (A or AAAA)"
    ident = secrets.randbits(16)
    try:
        packet = build_query(name, qtype, ident)
    except ValueError as exc:
        return [], str(exc)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((server, port))
            sock.send(packet)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                reply = sock.recv(65535)
                try:
                    addresses = parse_answer(reply, ident, qtype)
                except NotOursError:
                    continue  # a stray datagram: keep waiting for ours
                except MalformedAnswerError as exc:
                    return [], f"malformed answer: {exc}"
                return addresses, None if addresses else f"no {qtype} record"
    except LookupError as exc:
        return [], str(exc)
    except TimeoutError:
        return [], f"no answer within {timeout:g} s"
    except OSError as exc:
        return [], exc.strerror or str(exc)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the result as JSON; exit 0 when addresses came back."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server")
    parser.add_argument("name")
    parser.add_argument("qtype", nargs="?", default="A", choices=sorted(QTYPES))
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args(argv)
    addresses, error = query(args.server, args.name, args.qtype, args.port, args.timeout)
    print(json.dumps({"addresses": addresses, "error": error}))
    return 0 if addresses else 1


if __name__ == "__main__":
    sys.exit(main())

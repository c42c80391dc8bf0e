# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Questions asked of the kernel over netfilter netlink, without starting a command.

Which nf_tables tables and chains exist, and which ipsets: names only, so that a namespace holding nothing
of ours can be told from one that may in well under a millisecond, where the tools' reads cost
three processes (a node's module run meets 100 fresh pod namespaces on a first enforce). And which
generation of nf_tables a namespace is at (:func:`nftables_generation`): the kernel counts up on every
committed change, so an unchanged generation means the read commands would print what they printed
before (``readcache.py``). The answers only ever let a caller skip a read; they never decide what to
write. Anything unexpected (no netlink, an error answer, a malformed message) raises
:class:`NetlinkError` and the caller reads with the tools as before.

Both calls work in the network namespace of the calling thread: the socket belongs to the
namespace it was opened in (:meth:`Runner.call_inside`).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_HEADER = struct.Struct("=IHHII")
NFGENMSG = struct.Struct("=BBH")
ATTRIBUTE_HEADER = struct.Struct("=HH")
ATTRIBUTE_TYPE_MASK = 0x3FFF
"""An attribute's type without its NLA_F_NESTED and NLA_F_NET_BYTEORDER flags."""

NFNL_SUBSYS_IPSET = 6
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETTABLE = 1
NFT_MSG_GETCHAIN = 4
NFT_MSG_NEWGEN = 15
NFT_MSG_GETGEN = 16
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_NAME = 3
NFTA_GEN_ID = 1
SO_NETNS_COOKIE = 71
"""getsockopt: the 64-bit cookie of the socket's network namespace, unique until the machine reboots (Linux 5.14)."""
IPSET_CMD_LIST = 7
IPSET_PROTOCOL_MIN = 6
"""The oldest ipset netlink protocol; every kernel that speaks a newer one still accepts it for a listing."""
IPSET_ATTR_PROTOCOL = 1
IPSET_ATTR_SETNAME = 2
IPSET_ATTR_FLAGS = 6
IPSET_FLAG_LIST_SETNAME = 1 << 1
"""List the names only: no header, no members."""

NFPROTO_INET = 1
NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10
TIMEOUT_SECONDS = 5.0
RECEIVE_BUFFER = 1 << 16


class NetlinkError(Exception):
    """The kernel could not be asked, or answered something this reader does not understand."""


def nftables_tables() -> set[tuple[int, str]]:
    """Every nf_tables table of this thread's namespace as ``(NFPROTO family, name)``: iptables-nft's included."""
    found: set[tuple[int, str]] = set()
    for family, payload in _dump((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, socket.AF_UNSPEC, b""):
        for kind, value in _attributes(payload):
            if kind == NFTA_TABLE_NAME:
                found.add((family, _string(value)))
    return found


def nftables_chains() -> set[tuple[int, str, str]]:
    """Every nf_tables chain of this thread's namespace as ``(NFPROTO family, table, chain)``, without their rules."""
    found: set[tuple[int, str, str]] = set()
    for family, payload in _dump((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN, socket.AF_UNSPEC, b""):
        names = {kind: _string(value) for kind, value in _attributes(payload) if kind in (NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME)}
        if NFTA_CHAIN_TABLE in names and NFTA_CHAIN_NAME in names:
            found.add((family, names[NFTA_CHAIN_TABLE], names[NFTA_CHAIN_NAME]))
    return found


def ipset_names() -> set[str]:
    """The names of every ipset of this thread's namespace."""
    request = _attribute(IPSET_ATTR_PROTOCOL, struct.pack("=B", IPSET_PROTOCOL_MIN))
    request += _attribute(IPSET_ATTR_FLAGS, struct.pack("=I", IPSET_FLAG_LIST_SETNAME))
    names: set[str] = set()
    for _family, payload in _dump((NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_LIST, socket.AF_INET, request):
        for kind, value in _attributes(payload):
            if kind == IPSET_ATTR_SETNAME:
                names.add(_string(value))
    return names


def nftables_generation() -> tuple[int, int]:
    """``(namespace cookie, nf_tables generation)`` of this thread's network namespace.

    The generation is the kernel's count of committed nf_tables transactions in this namespace (every
    rule, chain, table or set change by any tool). The cookie names the namespace itself: inode numbers
    of namespace files are reused once a namespace is gone, a new namespace's generation starts at the
    same small number, and a cookie is never handed out twice before the machine reboots.
    """
    with _socket() as sock:
        cookie = _namespace_cookie(sock)
        _family, payload = _ask(sock, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)
    for kind, value in _attributes(payload):
        if kind == NFTA_GEN_ID and len(value) == 4:
            return cookie, struct.unpack("!I", value)[0]
    raise NetlinkError("the kernel's nf_tables generation answer has no generation id")


def _namespace_cookie(sock: socket.socket) -> int:
    try:
        value = sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
    except OSError as error:
        raise NetlinkError(f"this kernel does not tell a network namespace's cookie (Linux 5.14 or later does): {error}") from error
    if len(value) != 8:
        raise NetlinkError(f"a network namespace cookie of {len(value)} bytes instead of 8")
    return int(struct.unpack("=Q", value)[0])


def _attribute(kind: int, value: bytes) -> bytes:
    length = ATTRIBUTE_HEADER.size + len(value)
    return ATTRIBUTE_HEADER.pack(length, kind) + value + b"\0" * (-length % 4)


def _attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The top-level attributes of one message's payload (after its nfgenmsg)."""
    offset = 0
    while offset + ATTRIBUTE_HEADER.size <= len(data):
        length, kind = ATTRIBUTE_HEADER.unpack_from(data, offset)
        if length < ATTRIBUTE_HEADER.size or offset + length > len(data):
            raise NetlinkError(f"malformed netlink attribute (length {length} at offset {offset} of {len(data)})")
        yield kind & ATTRIBUTE_TYPE_MASK, data[offset + ATTRIBUTE_HEADER.size:offset + length]
        offset += (length + 3) & ~3


def _string(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


def _socket() -> socket.socket:
    """A netfilter netlink socket of this thread's network namespace, with the module's timeout."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except (OSError, AttributeError) as error:
        raise NetlinkError(f"no netfilter netlink socket: {error}") from error
    sock.settimeout(TIMEOUT_SECONDS)
    return sock


def _send(sock: socket.socket, message_type: int, flags: int, sequence: int, body: bytes) -> None:
    sock.send(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), message_type, flags, sequence, 0) + body)


def _dump(message_type: int, family: int, request: bytes) -> Iterator[tuple[int, bytes]]:
    """Send one dump request; yield ``(nfgenmsg family, attributes)`` of every answer up to NLMSG_DONE."""
    with _socket() as sock:
        sequence = 1
        try:
            _send(sock, message_type, NLM_F_REQUEST | NLM_F_DUMP, sequence, NFGENMSG.pack(family, 0, 0) + request)
            while True:
                data = sock.recv(RECEIVE_BUFFER)
                if not data:
                    raise NetlinkError("the netlink socket closed before the end of the dump")
                done = False
                for kind, payload in _messages(data, sequence):
                    if kind == NLMSG_DONE:
                        done = True
                        break
                    if len(payload) < NFGENMSG.size:
                        raise NetlinkError("a netlink answer without its nfgenmsg header")
                    yield payload[0], payload[NFGENMSG.size:]
                if done:
                    return
        except OSError as error:
            raise NetlinkError(f"netfilter netlink dump failed: {error}") from error


def _ask(sock: socket.socket, message_type: int, answer_type: int) -> tuple[int, bytes]:
    """Send one request that is not a dump on ``sock``; ``(nfgenmsg family, attributes)`` of its answer of ``answer_type``."""
    sequence = 1
    try:
        _send(sock, message_type, NLM_F_REQUEST, sequence, NFGENMSG.pack(socket.AF_UNSPEC, 0, 0))
        data = sock.recv(RECEIVE_BUFFER)
    except OSError as error:
        raise NetlinkError(f"netfilter netlink request failed: {error}") from error
    for kind, payload in _messages(data, sequence):
        if kind == answer_type and len(payload) >= NFGENMSG.size:
            return payload[0], payload[NFGENMSG.size:]
    raise NetlinkError(f"no answer of type {answer_type:#x} to netfilter netlink request {message_type:#x}")


def _messages(data: bytes, sequence: int) -> Iterator[tuple[int, bytes]]:
    """The messages of one datagram that answer ``sequence``; an error answer raises."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind, _flags, answered, _port = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size or offset + length > len(data):
            raise NetlinkError(f"malformed netlink message (length {length} at offset {offset} of {len(data)})")
        payload = data[offset + NLMSG_HEADER.size:offset + length]
        offset += (length + 3) & ~3
        if answered != sequence:
            continue
        if kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else -1
            if code == 0:
                # An acknowledgement instead of NLMSG_DONE: the dump is over.
                yield NLMSG_DONE, b""
                return
            raise NetlinkError(f"the kernel refused the dump: {os.strerror(-code)}")
        yield kind, payload

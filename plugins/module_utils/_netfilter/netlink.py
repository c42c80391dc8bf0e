# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Questions asked of the kernel over netfilter netlink, and our ipsets written, without starting a command.

Which nf_tables tables and chains exist, and which ipsets: names only, so that a namespace holding nothing
of ours can be told from one that may in well under a millisecond, where the tools' reads cost
three processes (a node's module run meets 100 fresh pod namespaces on a first enforce). And which
generation of nf_tables a namespace is at (:func:`nftables_generation`): the kernel counts up on every
committed change, so an unchanged generation means the read commands would print what they printed
before (``readcache.py``). Those answers only ever let a caller skip a read.

Two answers stand for reads: :func:`iptables_rules` summarises the rules of an iptables-nft table (each rule's
chain, comment and jump target: what the iptables-nft backend's look for exactly the desired state compares), and
:func:`ipset_list` lists our ipsets as ``ipset save`` would, for the
iptables backends' every read (ipsets have no generation, so without it each read of each pod
namespace started ``ipset save``). It is strict: a set of ours whose listing holds anything
:class:`IpsetListing` cannot hold exactly as ``ipset save`` would print it (another type, timeouts,
counters, ``nomatch`` entries, an attribute this reader does not know) is a :class:`NetlinkError`, like
no netlink, an error answer or a malformed message, and the caller reads with the tools as before.

And one call writes: :func:`ipset_write` sends what ``ipset restore`` would send for one of our scripts
(:func:`ipset_writes` builds the messages), refusing lines the way ``ipset`` does.

All calls work in the network namespace of the calling thread: the socket belongs to the
namespace it was opened in (:meth:`Runner.call_inside`).
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import re
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple, Optional

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
NFT_MSG_GETRULE = 7
NFT_MSG_NEWGEN = 15
NFT_MSG_GETGEN = 16
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_NAME = 3
NFTA_GEN_ID = 1
NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
NFTA_RULE_EXPRESSIONS = 4
NFTA_MATCH_NAME = 1
NFTA_MATCH_REVISION = 2
NFTA_MATCH_INFO = 3
NFTA_VERDICT_CODE = 1
NFTA_VERDICT_CHAIN = 2
NFT_JUMP = -3
NFT_GOTO = -4
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
IPSET_FLAG_LIST_HEADER = 1 << 2
"""List the header only: no members."""
IPSET_PROTOCOL = 7
"""The protocol ``ipset`` 7 speaks; a full listing asked in it carries every creation option (bucketsize)."""
IPSET_ATTR_TYPENAME = 3
IPSET_ATTR_REVISION = 4
IPSET_ATTR_FAMILY = 5
IPSET_ATTR_DATA = 7
IPSET_ATTR_ADT = 8
IPSET_ATTR_INDEX = 11
IPSET_ATTR_IP = 1
IPSET_ATTR_CIDR = 3
IPSET_ATTR_CADT_FLAGS = 8
IPSET_ATTR_INITVAL = 17
IPSET_ATTR_HASHSIZE = 18
IPSET_ATTR_MAXELEM = 19
IPSET_ATTR_BUCKETSIZE = 21
IPSET_ATTR_ELEMENTS = 24
IPSET_ATTR_REFERENCES = 25
IPSET_ATTR_MEMSIZE = 26
IPSET_ATTR_COMMENT = 26
"""In an entry, attribute 26 is its comment; in a set's header, the same number is its memory size."""
IPSET_ATTR_IPADDR_IPV4 = 1
IPSET_ATTR_IPADDR_IPV6 = 2
IPSET_FLAG_WITH_COMMENT = 1 << 4
"""A set created with ``comment``: the only creation flag of the sets :func:`ipset_list` reads."""
IPSET_LISTED_TYPE = "hash:net"
_IPSET_LISTING = {IPSET_ATTR_PROTOCOL, IPSET_ATTR_SETNAME, IPSET_ATTR_TYPENAME, IPSET_ATTR_REVISION, IPSET_ATTR_FAMILY,
                  IPSET_ATTR_INDEX, IPSET_ATTR_DATA, IPSET_ATTR_ADT}
"""The attributes of a set's listing message; one more (a newer kernel's) means the set is not read here."""
_IPSET_CREATE_KNOWN = {IPSET_ATTR_HASHSIZE, IPSET_ATTR_MAXELEM, IPSET_ATTR_BUCKETSIZE, IPSET_ATTR_INITVAL, IPSET_ATTR_CADT_FLAGS,
                       IPSET_ATTR_ELEMENTS, IPSET_ATTR_REFERENCES, IPSET_ATTR_MEMSIZE}

NFPROTO_INET = 1
NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10
_IPSET_FAMILIES: dict[int, tuple[str, int, int, int]] = {
    NFPROTO_IPV4: ("inet", socket.AF_INET, 4, 32),
    NFPROTO_IPV6: ("inet6", socket.AF_INET6, 16, 128),
}
"""NFPROTO family -> (ipset's name for it, address family, address bytes, address bits)."""
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


def nftables_chains(family: int = socket.AF_UNSPEC, table: str = "") -> set[tuple[int, str, str]]:
    """Every nf_tables chain of this thread's namespace as ``(NFPROTO family, table, chain)``, without their rules.

    ``family`` and ``table`` ask for the chains of one table only (a node's ``nat`` table holds one chain per
    service and endpoint).
    """
    found: set[tuple[int, str, str]] = set()
    request = _attribute(NFTA_CHAIN_TABLE, table.encode() + b"\0") if table else b""
    for answer_family, payload in _dump((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN, family, request):
        names = {kind: _string(value) for kind, value in _attributes(payload) if kind in (NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME)}
        if table and names.get(NFTA_CHAIN_TABLE) != table:
            continue
        if NFTA_CHAIN_TABLE in names and NFTA_CHAIN_NAME in names:
            found.add((answer_family, names[NFTA_CHAIN_TABLE], names[NFTA_CHAIN_NAME]))
    return found


class RuleSummary(NamedTuple):
    """What one iptables-nft rule says of itself: its chain, its comment and the chain it jumps to."""

    chain: str
    comment: Optional[str]
    """The text of its first ``comment`` match (``-m comment --comment``), or ``None``."""
    jump: Optional[str]
    """The chain its verdict jumps or goes to (``-j CHAIN``, ``-g CHAIN``), or ``None``."""


def iptables_rules(family: int, table: str) -> list[RuleSummary]:
    """The rules of one table of ``family`` (an NFPROTO number), chain by chain in their order, as summaries.

    iptables-nft keeps a rule's ``-m comment`` as an xtables ``comment`` match and a jump to a chain as an
    ``immediate`` verdict: both are found in the rule's expressions by their fixed encoding, and every other
    expression is skipped unread (what a rule matches is not compared by comparing comments, see ``iptables.py``).
    A pod namespace holds a hundred rules of ours per family, asked on every run: a walk through every expression's
    attributes would cost more than the command it replaces.
    """
    rules: list[RuleSummary] = []
    request = _attribute(NFTA_RULE_TABLE, table.encode() + b"\0")
    comment_of, jump_of = _COMMENT_MATCH.search, _JUMP_VERDICT.search
    for answer_family, payload in _dump((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE, family, request):
        found = dict(_attributes(payload))
        if answer_family != family or _string(found.get(NFTA_RULE_TABLE, b"")) != table or NFTA_RULE_CHAIN not in found:
            continue
        expressions = found.get(NFTA_RULE_EXPRESSIONS, b"")
        comment = comment_of(expressions)
        jump = jump_of(expressions)
        rules.append(RuleSummary(_string(found[NFTA_RULE_CHAIN]), comment.group(1).decode("utf-8", "replace") if comment else None,
                                 jump.group(1).decode("utf-8", "replace") if jump else None))
    return rules


def _header(length: int, kind: int) -> bytes:
    return ATTRIBUTE_HEADER.pack(length, kind)


_COMMENT_MATCH = re.compile(
    re.escape(_header(4 + 8, NFTA_MATCH_NAME) + b"comment\0") + re.escape(_header(8, NFTA_MATCH_REVISION)) + b".{4}"
    + b".." + re.escape(struct.pack("=H", NFTA_MATCH_INFO)) + b"([^\0]*)",
    re.DOTALL,
)
"""An xtables ``comment`` match's name, revision and the start of its text (``struct xt_comment_info``)."""
_JUMP_VERDICT = re.compile(
    re.escape(_header(8, NFTA_VERDICT_CODE))
    + b"(?:" + re.escape(struct.pack("!i", NFT_JUMP)) + b"|" + re.escape(struct.pack("!i", NFT_GOTO)) + b")"
    + b".." + re.escape(struct.pack("=H", NFTA_VERDICT_CHAIN)) + b"([^\0]+)\0",
    re.DOTALL,
)
"""A jump or goto verdict and the chain it names."""


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


class IpsetListing(NamedTuple):
    """One set as ``ipset save`` would list it."""

    options: str
    """What follows the set's name on its ``create`` line: type, family, hashsize, maxelem, ``comment``, bucketsize,
    initval, in ``ipset save``'s order."""
    members: list[str]
    """Its entries as its ``add`` lines write them: the address as ``inet_ntop`` writes it, ``/PREFIX`` unless it is a
    single address; sorted (the kernel lists a hash set in an order of its own, different in every copy of it)."""
    comments: set[str]
    """The distinct comments of its entries (``""`` for an entry without one)."""


def ipset_list(prefix: str) -> dict[str, IpsetListing]:
    """The ipsets of this thread's namespace whose names start with ``prefix``, as ``ipset save`` would list them.

    Other sets are skipped unread. Raises :class:`NetlinkError` for a set of ``prefix`` that is not a
    ``hash:net`` set with only the options and entry fields :class:`IpsetListing` holds, or whose entries
    do not add up to the count its header gives (it changed while it was listed): the caller then runs
    ``ipset save`` itself.
    """
    request = _attribute(IPSET_ATTR_PROTOCOL, struct.pack("=B", IPSET_PROTOCOL))
    answers = _dump((NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_LIST, socket.AF_INET, request)
    return ipset_listing((payload for _family, payload in answers), prefix)


def ipset_listing(payloads: Iterable[bytes], prefix: str) -> dict[str, IpsetListing]:
    """:func:`ipset_list` of the attributes of an ipset listing's messages (each after its nfgenmsg)."""
    headers: dict[str, _IpsetHeader] = {}
    listings: dict[str, IpsetListing] = {}
    uniform: dict[str, list[_UniformRun]] = {}
    for payload in payloads:
        found = dict(_attributes(payload))
        name = _string(found.get(IPSET_ATTR_SETNAME, b""))
        if not name.startswith(prefix):
            continue
        if not set(found) <= _IPSET_LISTING:
            raise NetlinkError(f"ipset {name}: listing attributes {sorted(set(found) - _IPSET_LISTING)} are not read here")
        # A set's first message carries its header; a large set's entries go on in messages of their own.
        if IPSET_ATTR_DATA in found:
            headers[name] = _ipset_header(name, found)
            listings[name] = IpsetListing(headers[name].options, [], set())
            uniform[name] = []
        if name not in headers:
            raise NetlinkError(f"ipset {name}: entries listed before the set's header")
        entries = found.get(IPSET_ATTR_ADT, b"")
        run = _uniform_run(entries, headers[name].family)
        if run is not None:
            uniform[name].append(run)
        else:
            _read_entries(name, entries, headers[name].family, listings[name])
    for name, header in headers.items():
        listing = listings[name]
        if uniform[name]:
            members, comments = _decoded(name, uniform[name], header.family)
            listing.members.extend(members)
            listing.comments.update(comments)
        count = len(listing.members)
        if count != header.elements:
            raise NetlinkError(f"ipset {name}: {count} entries listed where its header counts {header.elements} (changed while listed)")
        listing.members.sort()
    return listings


def _read_entries(name: str, entries: bytes, family: tuple[str, int, int, int], listing: IpsetListing) -> None:
    """Add the entries of one message (its ``IPSET_ATTR_ADT``) to ``listing``, attribute by attribute."""
    for kind, entry in _attributes(entries):
        if kind != IPSET_ATTR_DATA:
            raise NetlinkError(f"ipset {name}: an entry of attribute type {kind}")
        member, comment = _ipset_entry(name, entry, family)
        listing.members.append(member)
        listing.comments.add(comment)


_ENTRY_HEAD = struct.Struct("=HHHHHH")
"""The start of an entry: its header, the header of its nested address, the header of the address itself."""
_ENTRY_TAIL = struct.Struct("=HHB3xHH")
"""What follows the address in an entry with a comment: the prefix length, the comment's header."""


class _UniformRun(NamedTuple):
    """The entries of one message that all have the first one's shape, each as its bytes (see :func:`_uniform_run`)."""

    layout: struct.Struct
    """How one entry's bytes come apart: (address, prefix length, comment)."""
    records: list[bytes]


def _uniform_run(entries: bytes, family: tuple[str, int, int, int]) -> Optional[_UniformRun]:
    """The entries of one message when all have the first one's shape: address, prefix length, a comment of its length.

    A pod namespace holds copies of its node's shared sets, thousands of entries, all written by us in that one shape:
    the shape is checked for all of them at once (a regular expression made of the first entry), and they are cut
    into one ``bytes`` each without being taken apart (:func:`_decoded` does that, once per run of the module for
    the same entries). ``None`` when they do not all have it.
    """
    _label, _address_family, size, _bits = family
    start = _ENTRY_HEAD.size + size
    if len(entries) < start + _ENTRY_TAIL.size:
        return None
    length, kind, nested_length, nested_kind, address_length, address_kind = _ENTRY_HEAD.unpack_from(entries)
    prefix_length, prefix_kind, _prefix, comment_header, comment_kind = _ENTRY_TAIL.unpack_from(entries, start)
    address_type = IPSET_ATTR_IPADDR_IPV4 if size == 4 else IPSET_ATTR_IPADDR_IPV6
    text_start = start + _ENTRY_TAIL.size
    text_length = comment_header - ATTRIBUTE_HEADER.size - 1
    mask = ATTRIBUTE_TYPE_MASK
    shape = (kind & mask, nested_length, nested_kind & mask, address_length, address_kind & mask, prefix_length, prefix_kind & mask,
             comment_kind & mask)
    if (shape != (IPSET_ATTR_DATA, 8 + size, IPSET_ATTR_IP, 4 + size, address_type, 5, IPSET_ATTR_CIDR, IPSET_ATTR_COMMENT)
            or text_length < 0 or length != text_start - ATTRIBUTE_HEADER.size + ((comment_header + 3) & ~3) or len(entries) % length):
        return None
    first = entries[:length]
    matcher, layout, cutter = _uniform_entries(first[:12], size, first[start:start + 4], first[start + 5:text_start], text_length,
                                               first[text_start + text_length:])
    if not matcher.fullmatch(entries):
        return None
    return _UniformRun(layout, cutter.findall(entries))


@functools.lru_cache(maxsize=16)
def _uniform_entries(  # noqa: PLR0917 - the fixed parts of one entry, in their order
    head: bytes, size: int, middle: bytes, to_text: bytes, text_length: int, tail: bytes
) -> tuple[re.Pattern[bytes], struct.Struct, re.Pattern[bytes]]:
    """(pattern of a run of entries shaped like the first, layout of one entry, pattern that cuts a run into entries)."""
    one = (re.escape(head) + b".{%d}" % size + re.escape(middle) + b"." + re.escape(to_text) + b"[^\\0]{%d}" % text_length
           + re.escape(tail))
    layout = struct.Struct(f"={len(head)}x{size}s{len(middle)}xB{len(to_text)}x{text_length}s{len(tail)}x")
    return re.compile(b"(?:" + one + b")*", re.DOTALL), layout, re.compile(b".{%d}" % layout.size, re.DOTALL)


_DECODED: dict[tuple[int, frozenset[bytes]], tuple[list[str], frozenset[str]]] = {}
"""The members (sorted) and comments of the entries already taken apart in this process, by the entries' bytes."""
_DECODED_MAX = 64


def _decoded(name: str, runs: Sequence[_UniformRun], family: tuple[str, int, int, int]) -> tuple[list[str], frozenset[str]]:
    """(members sorted, distinct comments) of one set's uniform entries, taken apart once per process for the same entries.

    A node's module run reads one copy of each shared set in every pod namespace (and reads it again after a write):
    the copies hold the same entries in another order, so the entries as a set of byte strings find the members
    another namespace's copy already gave, without an address formatted again.
    """
    records = frozenset(itertools.chain.from_iterable(run.records for run in runs))
    if len(records) < sum(len(run.records) for run in runs):
        raise NetlinkError(f"ipset {name}: an entry listed twice (changed while listed)")
    key = (family[1], records)
    found = _DECODED.get(key)
    if found is not None:
        return found
    _label, address_family, _size, bits = family
    ntop = socket.inet_ntop
    members: list[str] = []
    comments: set[str] = set()
    for run in runs:
        rows = list(run.layout.iter_unpack(b"".join(run.records)))
        if any(prefix > bits for _raw, prefix, _comment in rows):
            # Not a prefix length ipset save would print: the entry by entry reading raises, naming it.
            _read_entries(name, b"".join(run.records), family, IpsetListing("", [], set()))
        members.extend(ntop(address_family, raw) if prefix == bits else f"{ntop(address_family, raw)}/{prefix}"
                       for raw, prefix, _comment in rows)
        comments.update(comment.decode("utf-8", "replace") for comment in {comment for _raw, _prefix, comment in rows})
    members.sort()
    if len(_DECODED) >= _DECODED_MAX:
        _DECODED.clear()
    _DECODED[key] = found = (members, frozenset(comments))
    return found


class _IpsetHeader(NamedTuple):
    options: str
    """What follows the name on the ``create`` line."""
    elements: int
    family: tuple[str, int, int, int]
    """See ``_IPSET_FAMILIES``."""


def _ipset_header(name: str, found: dict[int, bytes]) -> _IpsetHeader:
    """A set's ``create`` options, entry count and family from its first listing message."""
    kind = _string(found.get(IPSET_ATTR_TYPENAME, b""))
    if kind != IPSET_LISTED_TYPE:
        raise NetlinkError(f"ipset {name}: type {kind or 'missing'} is not read here")
    family = found.get(IPSET_ATTR_FAMILY, b"")
    if len(family) != 1 or family[0] not in _IPSET_FAMILIES:
        raise NetlinkError(f"ipset {name}: family {family.hex() or 'missing'} is not inet or inet6")
    options = dict(_attributes(found[IPSET_ATTR_DATA]))
    unknown = set(options) - _IPSET_CREATE_KNOWN
    if unknown:
        raise NetlinkError(f"ipset {name}: creation attributes {sorted(unknown)} are not read here")
    try:
        hashsize, maxelem, elements = (_net32(options[key]) for key in (IPSET_ATTR_HASHSIZE, IPSET_ATTR_MAXELEM, IPSET_ATTR_ELEMENTS))
    except KeyError as error:
        raise NetlinkError(f"ipset {name}: its header has no attribute {error}") from error
    flags = _net32(options.get(IPSET_ATTR_CADT_FLAGS, b"\0\0\0\0"))
    if flags & ~IPSET_FLAG_WITH_COMMENT:
        raise NetlinkError(f"ipset {name}: creation flags {flags:#x} are not read here")
    text = f"{kind} family {_IPSET_FAMILIES[family[0]][0]} hashsize {hashsize} maxelem {maxelem}"
    if flags & IPSET_FLAG_WITH_COMMENT:
        text += " comment"
    if IPSET_ATTR_BUCKETSIZE in options:
        if len(options[IPSET_ATTR_BUCKETSIZE]) != 1:
            raise NetlinkError(f"ipset {name}: a bucketsize of {len(options[IPSET_ATTR_BUCKETSIZE])} bytes")
        text += f" bucketsize {options[IPSET_ATTR_BUCKETSIZE][0]}"
    if IPSET_ATTR_INITVAL in options:
        text += f" initval {_net32(options[IPSET_ATTR_INITVAL]):#010x}"
    return _IpsetHeader(text, elements, _IPSET_FAMILIES[family[0]])


def _ipset_entry(name: str, data: bytes, family: tuple[str, int, int, int]) -> tuple[str, str]:
    """(member, comment) of one entry, attribute by attribute: one without a comment, or of another shape or order."""
    _label, address_family, size, bits = family
    address = ""
    prefix = bits
    comment = ""
    for kind, value in _attributes(data):
        if kind == IPSET_ATTR_IP:
            inner = list(_attributes(value))
            if len(inner) != 1 or inner[0][0] not in (IPSET_ATTR_IPADDR_IPV4, IPSET_ATTR_IPADDR_IPV6) or len(inner[0][1]) != size:
                raise NetlinkError(f"ipset {name}: an entry's address is not one {size}-byte address")
            address = socket.inet_ntop(address_family, inner[0][1])
        elif kind == IPSET_ATTR_CIDR and len(value) == 1 and value[0] <= bits:
            prefix = value[0]
        elif kind == IPSET_ATTR_COMMENT:
            comment = _string(value)
        elif kind == IPSET_ATTR_CADT_FLAGS and _net32(value) == 0:
            continue
        else:
            raise NetlinkError(f"ipset {name}: entry attribute {kind} ({value.hex()}) is not read here")
    if not address:
        raise NetlinkError(f"ipset {name}: an entry without an address")
    return (address if prefix == bits else f"{address}/{prefix}"), comment


def _net32(value: bytes) -> int:
    if len(value) != 4:
        raise NetlinkError(f"a 32-bit attribute of {len(value)} bytes")
    return int(struct.unpack("!I", value)[0])


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
    # Locals, not attribute lookups: an ipset listing walks tens of thousands of attributes.
    offset, end, header, unpack = 0, len(data), ATTRIBUTE_HEADER.size, ATTRIBUTE_HEADER.unpack_from
    while offset + header <= end:
        length, kind = unpack(data, offset)
        if length < header or offset + length > end:
            raise NetlinkError(f"malformed netlink attribute (length {length} at offset {offset} of {end})")
        yield kind & ATTRIBUTE_TYPE_MASK, data[offset + header:offset + length]
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


def _answers(data: bytes, sequence: int) -> Iterator[tuple[int, bytes]]:
    """``(type, payload)`` of the messages of one datagram that answer ``sequence``; a malformed one raises."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind, _flags, answered, _port = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size or offset + length > len(data):
            raise NetlinkError(f"malformed netlink message (length {length} at offset {offset} of {len(data)})")
        payload = data[offset + NLMSG_HEADER.size:offset + length]
        offset += (length + 3) & ~3
        if answered == sequence:
            yield kind, payload


def _messages(data: bytes, sequence: int) -> Iterator[tuple[int, bytes]]:
    """The messages of one datagram that answer ``sequence``; an error answer raises."""
    for kind, payload in _answers(data, sequence):
        if kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else -1
            if code == 0:
                # An acknowledgement instead of NLMSG_DONE: the dump is over.
                yield NLMSG_DONE, b""
                return
            raise NetlinkError(f"the kernel refused the dump: {os.strerror(-code)}")
        yield kind, payload


# --------------------------------------------------------------------------- writing our ipsets

IPSET_CMD_CREATE = 2
IPSET_CMD_DESTROY = 3
IPSET_CMD_FLUSH = 4
IPSET_CMD_SWAP = 6
IPSET_CMD_ADD = 9
IPSET_ATTR_SETNAME2 = 3
"""In a swap, attribute 3 is the other set's name (in a create, the type's)."""
IPSET_ATTR_LINENO = 9
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
"""Fail where the object exists: what ``ipset`` sends unless told ``-exist``."""
NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
_ADD_CHUNK = 16 * 1024
"""Bytes of entries per add message (a large set goes in several)."""
_IPSET_ERRORS = {
    4097: "Kernel error received: ipset protocol error",
    4098: "Kernel error received: set type not supported",
    4099: "Kernel error received: maximal number of sets reached, cannot create more.",
    4100: "Set cannot be destroyed: it is in use by a kernel component",
    4101: "Sets cannot be swapped: the second set does not exist",
    4102: "The sets cannot be swapped: their type does not match",
    4103: "Element cannot be added to the set: it's already added",
    4104: "The value of the CIDR parameter of the IP address is invalid",
    4106: "Protocol family not supported by the set type",
    4112: "Comment extension is not supported",
    4352: "Hash is full, cannot add more elements",
}
"""ipset's own error numbers (``IPSET_ERR_*``) as ``ipset`` reports them; the others are errno values."""
_RESTORE_CREATE = re.compile(
    r"create (zt-\S+) hash:net family (inet6?)(?: hashsize (\d+) maxelem (\d+))? comment( -exist)?")
_RESTORE_ADD = re.compile(r'add (zt-\S+) ([0-9A-Fa-f.:]+)(?:/(\d+))?(?: comment "([!#-~ ]*)")?')


class IpsetWrite(NamedTuple):
    """One message of an ``ipset restore`` script written over netlink."""

    line: int
    """The script's line it stands for (an add message: its first)."""
    command: int
    flags: int
    body: bytes
    """nfgenmsg and attributes."""


class IpsetRefusedError(Exception):
    """The kernel refused one line of the script: ``line`` and ``message`` as ``ipset restore`` would say them."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"Error in line {line}: {message}")
        self.line = line
        self.message = message


@functools.lru_cache(maxsize=32)
def ipset_writes(script: str, revision: int) -> tuple[IpsetWrite, ...]:
    """The messages that do what ``ipset restore`` does with ``script``: the scripts the iptables backends write only.

    Lines: ``create zt-… hash:net family inet|inet6 [hashsize N maxelem M] comment [-exist]`` (``revision`` is the
    set type's revision, as ``ipset`` itself creates it), ``add zt-… ADDRESS[/PREFIX] [comment "…"]``, ``flush``,
    ``swap``, ``destroy``. A run of adds to one set goes in few messages, each entry carrying its line number, so a
    refused entry is reported by its line. Once per script text: the pods of a node get the same script.
    Raises :class:`NetlinkError` for a line of another shape (the caller runs ``ipset restore`` then).
    """
    writes: list[IpsetWrite] = []
    families: dict[str, int] = {}
    pending: list[bytes] = []
    pending_set = ""
    pending_line = 0
    pending_bytes = 0

    def flush_adds() -> None:
        nonlocal pending_bytes
        pending_bytes = 0
        if pending:
            body = (_ipset_head(pending_set) + _attribute(IPSET_ATTR_LINENO, struct.pack("=I", 0))
                    + _attribute(NLA_F_NESTED | IPSET_ATTR_ADT, b"".join(pending)))
            writes.append(IpsetWrite(pending_line, IPSET_CMD_ADD, NLM_F_EXCL, body))
            pending.clear()

    for number, line in enumerate(script.splitlines(), start=1):
        words = line.split(" ")
        added = _RESTORE_ADD.fullmatch(line) if words[0] == "add" else None
        if added is not None:
            name = added.group(1)
            entry = _ipset_entry_attributes(name, added, families, number)
            if name != pending_set or pending_bytes + len(entry) > _ADD_CHUNK:
                flush_adds()
                pending_set, pending_line = name, number
            pending.append(entry)
            pending_bytes += len(entry)
            continue
        flush_adds()
        created = _RESTORE_CREATE.fullmatch(line) if words[0] == "create" else None
        if created is not None:
            name, family, hashsize, maxelem, exist = created.groups()
            number_family = NFPROTO_IPV6 if family == "inet6" else NFPROTO_IPV4
            families[name] = number_family
            options = _attribute(NLA_F_NET_BYTEORDER | IPSET_ATTR_CADT_FLAGS, struct.pack("!I", IPSET_FLAG_WITH_COMMENT))
            if hashsize is not None:
                options += (_attribute(NLA_F_NET_BYTEORDER | IPSET_ATTR_HASHSIZE, struct.pack("!I", int(hashsize)))
                            + _attribute(NLA_F_NET_BYTEORDER | IPSET_ATTR_MAXELEM, struct.pack("!I", int(maxelem))))
            body = (_ipset_head(name) + _attribute(IPSET_ATTR_TYPENAME, IPSET_LISTED_TYPE.encode() + b"\0")
                    + _attribute(IPSET_ATTR_REVISION, bytes([revision])) + _attribute(IPSET_ATTR_FAMILY, bytes([number_family]))
                    + _attribute(NLA_F_NESTED | IPSET_ATTR_DATA, options))
            writes.append(IpsetWrite(number, IPSET_CMD_CREATE, 0 if exist else NLM_F_EXCL, body))
        elif len(words) == 2 and words[0] in ("flush", "destroy") and words[1].startswith("zt-"):
            writes.append(IpsetWrite(number, IPSET_CMD_FLUSH if words[0] == "flush" else IPSET_CMD_DESTROY, 0, _ipset_head(words[1])))
        elif len(words) == 3 and words[0] == "swap" and words[1].startswith("zt-") and words[2].startswith("zt-"):
            body = _ipset_head(words[1]) + _attribute(IPSET_ATTR_SETNAME2, words[2].encode() + b"\0")
            writes.append(IpsetWrite(number, IPSET_CMD_SWAP, 0, body))
        elif line:
            raise NetlinkError(f"line {number} of the ipset script is not one this writer knows: {line[:80]!r}")
    flush_adds()
    return tuple(writes)


def _ipset_head(name: str) -> bytes:
    """A message's nfgenmsg, protocol and set name."""
    return (NFGENMSG.pack(NFPROTO_IPV4, 0, 0) + _attribute(IPSET_ATTR_PROTOCOL, bytes([IPSET_PROTOCOL]))
            + _attribute(IPSET_ATTR_SETNAME, name.encode() + b"\0"))


def _ipset_entry_attributes(name: str, added: re.Match[str], families: dict[str, int], number: int) -> bytes:
    """One entry of an add message (``IPSET_ATTR_DATA``): its address, prefix length, comment and line number."""
    _name, address, prefix, comment = added.groups()
    family = families.get(name, NFPROTO_IPV6 if ":" in address else NFPROTO_IPV4)
    try:
        packed = socket.inet_pton(socket.AF_INET6 if family == NFPROTO_IPV6 else socket.AF_INET, address)
    except OSError as error:
        raise NetlinkError(f"line {number} of the ipset script: {address!r} is not an address of the set's family") from error
    kind = IPSET_ATTR_IPADDR_IPV6 if family == NFPROTO_IPV6 else IPSET_ATTR_IPADDR_IPV4
    fields = _attribute(NLA_F_NESTED | IPSET_ATTR_IP, _attribute(NLA_F_NET_BYTEORDER | kind, packed))
    if prefix is not None:
        fields += _attribute(IPSET_ATTR_CIDR, bytes([int(prefix)]))
    if comment:
        fields += _attribute(IPSET_ATTR_COMMENT, comment.encode() + b"\0")
    fields += _attribute(IPSET_ATTR_LINENO, struct.pack("=I", number))
    return _attribute(NLA_F_NESTED | IPSET_ATTR_DATA, fields)


def ipset_write(writes: Sequence[IpsetWrite]) -> bool:
    """Send ``writes`` in order in this thread's namespace, each acknowledged before the next; True once all were.

    Raises :class:`IpsetRefusedError` at the first line the kernel refuses (what came before it stays written, as with
    ``ipset restore``), and :class:`NetlinkError` where the kernel cannot be asked before anything was written. Once a
    message was acknowledged, a failing socket is an :class:`IpsetRefusedError` at the line it failed on: the caller
    must not start the script again from its first line.
    """
    with _socket() as sock:
        for sequence, write in enumerate(writes, start=1):
            try:
                _send(sock, (NFNL_SUBSYS_IPSET << 8) | write.command, NLM_F_REQUEST | NLM_F_ACK | write.flags, sequence, write.body)
                data = sock.recv(RECEIVE_BUFFER)
                _acknowledged(data, sequence, write)
            except (OSError, NetlinkError) as error:
                if sequence == 1:
                    raise NetlinkError(f"ipset netlink write failed: {error}") from error
                message = f"the netlink write failed after {sequence - 1} of {len(writes)} messages: {error}"
                raise IpsetRefusedError(write.line, message) from error
    return True


def _acknowledged(data: bytes, sequence: int, write: IpsetWrite) -> None:
    """Check the answer to one write: an acknowledgement, or the kernel's refusal (its line, for an entry)."""
    for kind, payload in _answers(data, sequence):
        if kind != NLMSG_ERROR or len(payload) < 4:
            continue
        code = -struct.unpack_from("=i", payload)[0]
        if code == 0:
            return
        # The refused message comes back after the code; the kernel put the refused entry's line number in it.
        refused = _refused_line(payload[4:]) or write.line
        if code == errno.EEXIST and write.command == IPSET_CMD_CREATE:
            raise IpsetRefusedError(refused, "Set cannot be created: set with the same name already exists")
        if code == errno.ENOENT:
            raise IpsetRefusedError(refused, "The set with the given name does not exist")
        raise IpsetRefusedError(refused, _IPSET_ERRORS.get(code) or os.strerror(code))
    raise NetlinkError(f"no acknowledgement of ipset netlink write {sequence}")


def _refused_line(message: bytes) -> int:
    if len(message) < NLMSG_HEADER.size + NFGENMSG.size:
        return 0
    length = min(NLMSG_HEADER.unpack_from(message)[0], len(message))
    try:
        for kind, value in _attributes(message[NLMSG_HEADER.size + NFGENMSG.size:length]):
            if kind == IPSET_ATTR_LINENO and len(value) == 4:
                return int(struct.unpack("=I", value)[0])
    except NetlinkError:
        return 0
    return 0


def ipset_revision(name: str) -> int:
    """The revision of the set ``name`` of this thread's namespace (what ``ipset`` created it with)."""
    request = _attribute(IPSET_ATTR_PROTOCOL, bytes([IPSET_PROTOCOL])) + _attribute(IPSET_ATTR_SETNAME, name.encode() + b"\0")
    request += _attribute(IPSET_ATTR_FLAGS, struct.pack("=I", IPSET_FLAG_LIST_HEADER))
    for _family, payload in _dump((NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_LIST, socket.AF_INET, request):
        for kind, value in _attributes(payload):
            if kind == IPSET_ATTR_REVISION and len(value) == 1:
                return value[0]
    raise NetlinkError(f"ipset {name}: its listing has no revision")

# SPDX-License-Identifier: GPL-3.0-or-later
"""The netlink look at a namespace: the kernel's tables and ipsets by name, our ipsets in full, and the backends'
"nothing of ours".

The parsing is checked on crafted datagrams (a table of input and expected output); the answers and the
backends' verdicts on real throwaway namespaces against what the tools themselves list (``ipset save`` for the
listing of our sets).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply, iptables, netlink
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Options
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.iptables import (
    IptablesBackend,
    IptablesLegacyBackend,
    IptablesNftBackend,
    State,
    parse_ipset_save,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import Ruleset
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.nftables import NftablesBackend
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import Namespace, Runner


def message(kind: int, payload: bytes, sequence: int = 1) -> bytes:
    length = 16 + len(payload)
    return struct.pack("=IHHII", length, kind, 0, sequence, 0) + payload + b"\0" * (-length % 4)


def table(family: int, name: str) -> bytes:
    """A NEWTABLE answer: nfgenmsg, then the name attribute (and a use count, which is skipped)."""
    body = struct.pack("=BBH", family, 0, 0) + netlink._attribute(1, name.encode() + b"\0") + netlink._attribute(3, struct.pack(">I", 0))
    return message((10 << 8) | 0, body)


DONE = message(3, struct.pack("=i", 0))
ACK = message(2, struct.pack("=i", 0) + b"\0" * 16)
REFUSED = message(2, struct.pack("=i", -93) + b"\0" * 16)  # EPROTONOSUPPORT


@pytest.mark.parametrize(
    ("datagram", "expected"),
    [
        (DONE, [3]),
        (table(2, "filter") + table(10, "filter") + DONE, [(10 << 8), (10 << 8), 3]),
        # An answer to another request on the same socket is not ours.
        (message((10 << 8), b"\0" * 4, sequence=7) + DONE, [3]),
        # An acknowledgement ends the dump like NLMSG_DONE.
        (ACK + table(2, "nat"), [3]),
    ],
)
def test_messages_of_one_datagram(datagram: bytes, expected: list[int]) -> None:
    assert [kind for kind, _payload in netlink._messages(datagram, 1)] == expected


@pytest.mark.parametrize(
    ("datagram", "error"),
    [
        (REFUSED, "the kernel refused the dump: Protocol not supported"),
        (struct.pack("=IHHII", 8, 0, 0, 1, 0), "malformed netlink message (length 8 at offset 0 of 16)"),
        (struct.pack("=IHHII", 64, 0, 0, 1, 0), "malformed netlink message (length 64 at offset 0 of 16)"),
    ],
)
def test_messages_that_are_refused_or_malformed(datagram: bytes, error: str) -> None:
    with pytest.raises(netlink.NetlinkError) as raised:
        list(netlink._messages(datagram, 1))
    assert str(raised.value) == error


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", []),
        (netlink._attribute(1, b"filter\0"), [(1, b"filter\0")]),
        # The nested and byte-order flags are not part of the type; padding is skipped.
        (netlink._attribute(0x8000 | 7, b"abc") + netlink._attribute(0x4000 | 2, b"zt-x\0"), [(7, b"abc"), (2, b"zt-x\0")]),
    ],
)
def test_attributes(payload: bytes, expected: list[tuple[int, bytes]]) -> None:
    assert list(netlink._attributes(payload)) == expected


def test_a_malformed_attribute_is_an_error() -> None:
    with pytest.raises(netlink.NetlinkError, match=r"^malformed netlink attribute \(length 40 at offset 0 of 8\)$"):
        list(netlink._attributes(struct.pack("=HH", 40, 1) + b"abcd"))


# --------------------------------------------------------------------------- ipsets listed as ipset save lists them

def nested(kind: int, *attributes: bytes) -> bytes:
    return netlink._attribute(0x8000 | kind, b"".join(attributes))


def net32(kind: int, value: int) -> bytes:
    return netlink._attribute(0x4000 | kind, struct.pack("!I", value))


def text(kind: int, value: str) -> bytes:
    return netlink._attribute(kind, value.encode() + b"\0")


def byte(kind: int, value: int) -> bytes:
    return netlink._attribute(kind, bytes([value]))


def set_header(name: str, elements: int, *, family: int = 2, kind: str = "hash:net", flags: int = 0x10, extra: bytes = b"") -> bytes:
    """A set's first listing message as the kernel sends it: name, type, family, then its creation attributes."""
    options = net32(18, 1024) + net32(19, 65536) + byte(21, 12) + net32(17, 0xAF62307F) + net32(25, 1) + net32(26, 1234)
    return (byte(1, 7) + text(2, name) + text(3, kind) + byte(5, family) + byte(4, 7) + net32(11, 0)
            + nested(7, options, net32(24, elements), net32(8, flags), extra))


def entries(*items: bytes) -> bytes:
    return nested(8, *items)


def entry(address: str, cidr: int, comment: str = "", extra: bytes = b"") -> bytes:
    """One entry (``IPSET_ATTR_DATA``): the address nested in its own attribute, its prefix length, its comment."""
    import ipaddress  # noqa: PLC0415 - only the crafted entries need it

    packed = ipaddress.ip_address(address).packed
    fields = nested(1, netlink._attribute(1 if len(packed) == 4 else 2, packed)) + byte(3, cidr)
    return nested(7, fields, text(26, comment) if comment else b"", extra)


def more(name: str, *items: bytes) -> bytes:
    """A later message of the same set: its name and more entries, no header."""
    return byte(1, 7) + text(2, name) + entries(*items)


CREATE = "hash:net family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0xaf62307f"


def listings_of(save: str, prefix: str = "zt-") -> dict[str, netlink.IpsetListing]:
    """What ``ipset save`` text says of the sets of ``prefix``: options, members sorted, distinct comments."""
    found: dict[str, netlink.IpsetListing] = {}
    for line in save.splitlines():
        command, name, rest = line.split(" ", 2) if line.count(" ") >= 2 else (*line.split(" ", 1), "")
        if not name.startswith(prefix):
            continue
        if command == "create":
            found[name] = netlink.IpsetListing(rest, [], set())
        else:
            member, _space, tail = rest.partition(" ")
            found[name].members.append(member)
            found[name].comments.add(tail[len('comment "'):-1] if tail.startswith('comment "') else tail)
    for listing in found.values():
        listing.members.sort()
    return found


@pytest.mark.parametrize(
    ("payloads", "expected"),
    [
        ([], ""),
        (
            [set_header("zt-a-4", 2) + entries(entry("10.244.1.0", 24, "9835935d668d1097"), entry("172.18.221.254", 32, "98359"))],
            f'create zt-a-4 {CREATE}\nadd zt-a-4 10.244.1.0/24 comment "9835935d668d1097"\nadd zt-a-4 172.18.221.254 comment "98359"\n',
        ),
        # Sets of others are skipped unread, whatever their type; an empty set of ours is its create line.
        (
            [set_header("theirs", 1, kind="hash:ip,port", flags=0xFF) + entries(b"junk"), set_header("zt-b-4", 0)],
            f"create zt-b-4 {CREATE}\n",
        ),
        # A large set goes on in messages of its own; IPv6 without comment, a single address without its /128.
        (
            [set_header("zt-c-6", 3, family=10, flags=0) + entries(entry("fd00::1", 128)),
             more("zt-c-6", entry("2001:db8::", 32), entry("::ffff:1.2.3.4", 128))],
            "create zt-c-6 hash:net family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0xaf62307f\n"
            "add zt-c-6 fd00::1\nadd zt-c-6 2001:db8::/32\nadd zt-c-6 ::ffff:1.2.3.4\n",
        ),
        # Entries of one shape (a comment of one length) are taken apart at once; their comments may still differ.
        (
            [set_header("zt-e-4", 4) + entries(entry("10.0.0.0", 8, "aaaa"), entry("10.1.0.0", 16, "bbbb"), entry("10.1.2.3", 32, "aaaa"),
                                               entry("10.1.2.4", 31, "aaaa"))],
            f'create zt-e-4 {CREATE}\nadd zt-e-4 10.0.0.0/8 comment "aaaa"\nadd zt-e-4 10.1.0.0/16 comment "bbbb"\n'
            'add zt-e-4 10.1.2.3 comment "aaaa"\nadd zt-e-4 10.1.2.4/31 comment "aaaa"\n',
        ),
        (
            [set_header("zt-f-6", 3, family=10)
             + entries(entry("fd00::1", 128, "ab"), entry("2001:db8::", 32, "ab"), entry("fd00::2", 127, "ab"))],
            "create zt-f-6 hash:net family inet6 hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0xaf62307f\n"
            'add zt-f-6 fd00::1 comment "ab"\nadd zt-f-6 2001:db8::/32 comment "ab"\nadd zt-f-6 fd00::2/127 comment "ab"\n',
        ),
        # Zero entry flags say nothing ipset save would print.
        (
            [set_header("zt-d-4", 1) + entries(entry("10.0.0.0", 8, "x", extra=net32(8, 0)))],
            f'create zt-d-4 {CREATE}\nadd zt-d-4 10.0.0.0/8 comment "x"\n',
        ),
    ],
)
def test_an_ipset_listing_reads_as_ipset_save(payloads: list[bytes], expected: str) -> None:
    assert netlink.ipset_listing(payloads, "zt-") == listings_of(expected)


@pytest.mark.parametrize(
    ("payloads", "error"),
    [
        ([set_header("zt-a-4", 0, kind="hash:ip")], "ipset zt-a-4: type hash:ip is not read here"),
        ([set_header("zt-a-4", 0, family=7)], "ipset zt-a-4: family 07 is not inet or inet6"),
        # Timeouts, counters, a nomatch entry: what ipset save would print beyond a listing.
        ([set_header("zt-a-4", 0, extra=net32(6, 0))], "ipset zt-a-4: creation attributes [6] are not read here"),
        ([set_header("zt-a-4", 0, flags=0x18)], "ipset zt-a-4: creation flags 0x18 are not read here"),
        ([set_header("zt-a-4", 1) + entries(entry("10.0.0.0", 8, extra=net32(8, 4)))],
         "ipset zt-a-4: entry attribute 8 (00000004) is not read here"),
        ([set_header("zt-a-4", 1) + entries(entry("10.0.0.0", 8, extra=net32(24, 1)))],
         "ipset zt-a-4: entry attribute 24 (00000001) is not read here"),
        ([set_header("zt-a-4", 1) + entries(nested(7, byte(3, 8)))], "ipset zt-a-4: an entry without an address"),
        # An entry of the first one's size but another shape (flags where the prefix length was) is not taken for one.
        ([set_header("zt-a-4", 2) + entries(entry("10.0.0.0", 8, "aaaa"), nested(7, nested(1, netlink._attribute(1, bytes(4))), net32(8, 4),
                                                                             text(26, "aaaa")))],
         "ipset zt-a-4: entry attribute 8 (00000004) is not read here"),
        ([set_header("zt-a-4", 2) + entries(entry("10.0.0.0", 8, "aaaa"), entry("10.0.0.0", 33, "aaaa"))],
         "ipset zt-a-4: entry attribute 3 (21) is not read here"),
        ([set_header("zt-a-4", 1, family=10) + entries(entry("10.0.0.0", 8))],
         "ipset zt-a-4: an entry's address is not one 16-byte address"),
        ([set_header("zt-a-4", 1) + net32(9, 1)], "ipset zt-a-4: listing attributes [9] are not read here"),
        # Entries that do not add up to the header's count: the set changed while it was listed.
        ([set_header("zt-a-4", 2) + entries(entry("10.0.0.0", 8))],
         "ipset zt-a-4: 1 entries listed where its header counts 2 (changed while listed)"),
        ([more("zt-a-4", entry("10.0.0.0", 8))], "ipset zt-a-4: entries listed before the set's header"),
        # The same entry twice (a set resized while it was listed): not one entry, nor two.
        ([set_header("zt-a-4", 2) + entries(entry("10.0.0.0", 8, "aaaa")), more("zt-a-4", entry("10.0.0.0", 8, "aaaa"))],
         "ipset zt-a-4: an entry listed twice (changed while listed)"),
    ],
)
def test_an_ipset_listing_ipset_save_would_print_otherwise_is_refused(payloads: list[bytes], error: str) -> None:
    with pytest.raises(netlink.NetlinkError) as raised:
        netlink.ipset_listing(payloads, "zt-")
    assert str(raised.value) == error


def test_copies_of_one_set_in_another_order_list_the_same() -> None:
    # Every pod namespace of a node holds its own copy of a shared set, listed in an order of that copy's hash table.
    items = [entry(f"10.{index}.0.0", 16, "0123456789abcdef") for index in range(40)] + [entry("192.0.2.1", 32, "0123456789abcdef")]
    listed = [netlink.ipset_listing([set_header("zt-s-4", len(items)) + entries(*ordered)], "zt-")["zt-s-4"]
              for ordered in (items, items[::-1], items[20:] + items[:20])]
    expected = sorted([f"10.{index}.0.0/16" for index in range(40)] + ["192.0.2.1"])
    assert [listing.members for listing in listed] == [expected] * 3
    assert [listing.comments for listing in listed] == [{"0123456789abcdef"}] * 3
    # One entry more or one comment another: other members, other comments.
    other = netlink.ipset_listing([set_header("zt-s-4", len(items)) + entries(*items[:-1], entry("192.0.2.1", 32, "fedcba9876543210"))],
                                  "zt-")["zt-s-4"]
    assert (other.members, other.comments) == (expected, {"0123456789abcdef", "fedcba9876543210"})
    fewer = netlink.ipset_listing([set_header("zt-s-4", len(items) - 1) + entries(*items[1:])], "zt-")["zt-s-4"]
    assert fewer.members == sorted(set(expected) - {"10.0.0.0/16"})


# --------------------------------------------------------------------------- real namespaces

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creates a network namespace")


def inside(namespace: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, *argv], check=True, capture_output=True)


def verdicts(namespace: str) -> dict[str, bool]:
    runner = Runner(Namespace(name=namespace))
    backends = (IptablesNftBackend, IptablesLegacyBackend, IptablesBackend, NftablesBackend)
    return {cls.name: cls(runner, Options()).holds_nothing_of_ours() for cls in backends}


@pytest.mark.netns
@needs_root
def test_the_kernel_answers_what_the_tools_list(namespace: str) -> None:
    runner = Runner(Namespace(name=namespace))
    assert runner.call_inside(netlink.nftables_tables) == set()
    assert runner.call_inside(netlink.ipset_names) == set()
    inside(namespace, "iptables-nft", "-t", "mangle", "-N", "SOMEONE-ELSE")
    inside(namespace, "nft", "add", "table", "inet", "other")
    inside(namespace, "ipset", "create", "theirs", "hash:ip")
    assert runner.call_inside(netlink.nftables_tables) == {(netlink.NFPROTO_IPV4, "mangle"), (netlink.NFPROTO_INET, "other")}
    # (iptables-nft adds the table's built-in chains when it first needs them: not asserted either way.)
    chains = runner.call_inside(netlink.nftables_chains)
    assert chains is not None and (netlink.NFPROTO_IPV4, "mangle", "SOMEONE-ELSE") in chains
    assert {(family, table_name) for family, table_name, _chain in chains} == {(netlink.NFPROTO_IPV4, "mangle")}
    assert runner.call_inside(netlink.ipset_names) == {"theirs"}
    assert (runner.reads, runner.writes) == (0, 0), "no command was started"


@pytest.mark.netns
@needs_root
def test_nothing_of_ours_is_told_from_what_may_be_ours(namespace: str) -> None:
    # iptables-legacy and the host's default iptables always read: netlink shows neither x_tables nor the alternative.
    fresh = {"iptables-nft": True, "iptables-legacy": False, "iptables": False, "nftables": True}
    assert verdicts(namespace) == fresh
    # Where the look says nothing, the read finds nothing.
    for cls in (IptablesNftBackend, NftablesBackend):
        backend = cls(Runner(Namespace(name=namespace)), Options())
        assert backend.read() == backend.nothing_of_ours()
        # iptables-nft: its two saves (its ipsets are listed over netlink); nftables: its one read.
        assert backend.holds_nothing_of_ours() and backend.runner.reads == (2 if cls is IptablesNftBackend else 1)
        assert backend.runner.netlink_reads == (1 if cls is IptablesNftBackend else 0)
    # Tables and sets of others change nothing...
    inside(namespace, "iptables-nft", "-t", "nat", "-N", "SOMEONE-ELSE")
    inside(namespace, "ipset", "create", "theirs", "hash:ip")
    inside(namespace, "nft", "add", "table", "ip", "zerotrust")
    assert verdicts(namespace) == fresh
    # ... an ipset of ours, a filter table where our chains live, or our nftables table do.
    inside(namespace, "ipset", "create", "zt-0123456789-4", "hash:net")
    assert verdicts(namespace)["iptables-nft"] is False
    inside(namespace, "ipset", "destroy", "zt-0123456789-4")
    for tool, family, table_name in (("iptables-nft", "ip", "mangle"), ("ip6tables-nft", "ip6", "filter")):
        inside(namespace, tool, "-t", table_name, "-N", "SOMEONE-ELSE")
        assert verdicts(namespace) == {**fresh, "iptables-nft": False}, (family, table_name)
        inside(namespace, "nft", "delete", "table", family, table_name)
        assert verdicts(namespace) == fresh
    inside(namespace, "nft", "add", "table", "inet", "zerotrust")
    assert verdicts(namespace)["nftables"] is False


@pytest.mark.netns
@needs_root
def test_a_process_that_cannot_enter_the_namespace_reads(namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Runner, "in_process", False)
    assert verdicts(namespace) == {"iptables-nft": False, "iptables-legacy": False, "iptables": False, "nftables": False}


@pytest.mark.netns
@needs_root
def test_auto_detection_asks_nf_tables_over_netlink(namespace: str) -> None:
    runner = Runner(Namespace(name=namespace))
    # Nothing of kube-proxy's: the host's iptables alternative (checked by the detection tests with canned output).
    fallback = apply.detect_backend(Runner(Namespace(name=namespace)))
    assert fallback in ("iptables-nft", "iptables-legacy", "iptables")
    # The kubelet's KUBE- chain in iptables-legacy, no nf_tables chain: legacy (its save is a command).
    inside(namespace, "iptables-legacy", "-t", "mangle", "-N", "KUBE-KUBELET-CANARY")
    assert apply.detect_backend(runner) == "iptables-legacy"
    # A KUBE- chain in a table iptables does not know (family ip, table "other") is not iptables-nft's ...
    inside(namespace, "nft", "add", "table", "ip", "other")
    inside(namespace, "nft", "add", "chain", "ip", "other", "KUBE-LOOKALIKE")
    assert apply.detect_backend(runner) == "iptables-legacy"
    # ... one in its nat table is, and wins over legacy; kube-proxy's own IPv6 table wins over both.
    inside(namespace, "iptables-nft", "-t", "nat", "-N", "KUBE-SERVICES")
    assert apply.detect_backend(runner) == "iptables-nft"
    inside(namespace, "nft", "add", "table", "ip6", "kube-proxy")
    assert apply.detect_backend(runner) == "nftables"
    assert runner.reads == 2, "iptables-legacy-save only, in the two runs that found no KUBE- chain in nf_tables"


SETS = [
    "create zt-big-4 hash:net family inet hashsize 4096 maxelem 8192 comment",
    *(f'add zt-big-4 10.{index // 250}.{index % 250}.0/24 comment "0123456789abcdef"' for index in range(3000)),
    'add zt-big-4 192.0.2.8/31 comment "0123456789abcdef"',
    'add zt-big-4 192.0.2.11 comment "0123456789abcdef"',
    "create zt-v6-6 hash:net family inet6 comment",
    *(f'add zt-v6-6 {address} comment "x"'
      for address in ("fd00::1", "fd00:0:0:1::/64", "2001:db8::/32", "::ffff:1.2.3.4", "1:0:1:1:1:1:1:1")),
    "create zt-plain-4 hash:net family inet",
    "add zt-plain-4 192.0.2.7",
    "create zt-empty-4 hash:net family inet comment",
    "create theirs hash:ip,port",
    "add theirs 192.0.2.1,tcp:80",
]


def ipset_save(namespace: str) -> str:
    return subprocess.run(["ip", "netns", "exec", namespace, "ipset", "save"], check=True, capture_output=True, text=True).stdout


@pytest.mark.netns
@needs_root
def test_the_kernel_lists_our_ipsets_as_ipset_save_does(namespace: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, "ipset", "restore"], input="\n".join(SETS) + "\n", check=True, text=True)
    runner = Runner(Namespace(name=namespace))
    listed = runner.call_inside(lambda: netlink.ipset_list("zt-"))
    assert listed == listings_of(ipset_save(namespace))
    assert listed is not None and len(listed["zt-big-4"].members) == 3002 and "theirs" not in listed
    assert (listed["zt-big-4"].comments, listed["zt-plain-4"].comments, listed["zt-empty-4"].members) == ({"0123456789abcdef"}, {""}, [])
    assert listed["zt-empty-4"].options.startswith("hash:net family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0x")
    # The backend's read takes it instead of starting ipset save, and finds what ipset save shows.
    backend = IptablesNftBackend(runner, Options())
    from_netlink = backend.read().raw.sets
    assert (runner.reads, runner.netlink_reads) == (2, 1)
    from_text = State()
    parse_ipset_save(ipset_save(namespace), from_text)
    assert from_netlink == from_text.sets and set(from_netlink) == {"zt-big-4", "zt-v6-6", "zt-plain-4", "zt-empty-4"}


@pytest.mark.netns
@needs_root
@pytest.mark.parametrize(
    ("create", "add"),
    [("hash:net timeout 0 comment", "10.0.0.0/8"), ("hash:net counters comment", "10.0.0.0/8"), ("hash:net comment", "10.0.0.0/8 nomatch"),
     ("hash:ip comment", "10.0.0.1")],
)
def test_a_set_of_ours_the_listing_cannot_hold_is_read_with_ipset_save(namespace: str, create: str, add: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, "ipset", "restore"], input=f"create zt-odd-4 {create}\nadd zt-odd-4 {add}\n",
                   check=True, text=True)
    runner = Runner(Namespace(name=namespace))
    with pytest.raises(netlink.NetlinkError, match=r"^ipset zt-odd-4: "):
        runner.call_inside(lambda: netlink.ipset_list("zt-"))
    live = IptablesNftBackend(runner, Options()).read().raw.sets["zt-odd-4"]
    assert (runner.reads, runner.netlink_reads) == (3, 0), "the two saves and ipset save"
    assert live.options.startswith(create.split(" ", 1)[0] + " family inet ") and live.members == (add.split(" ", 1)[0],)


# --------------------------------------------------------------------------- exactly the desired state, asked of the kernel

EXACT_RULESET: dict[str, Any] = {
    "version": 1,
    "address_sets": [{"name": "zt-peers", "members": ["192.0.2.10", "198.51.100.0/24", "2001:db8::10"]}],
    "chains": [
        {"name": "ingress", "hook": "input", "default_verdict": "deny", "default_origin": "catch_all",
         "rules": [{"verdict": "accept", "origin": "p[0]", "protocol": "tcp", "ports": ["80", "443"], "peer_set": "zt-peers"}]},
        {"name": "egress", "hook": "output", "default_verdict": "accept", "default_origin": "catch_all", "rules": []},
    ],
}


def written_backend(namespace: str) -> tuple[IptablesNftBackend, Ruleset]:
    """The iptables-nft backend in ``namespace``, after writing ``EXACT_RULESET`` there and reading it back."""
    desired = Ruleset.from_dict(EXACT_RULESET, {})
    backend = IptablesNftBackend(Runner(Namespace(name=namespace)), Options())
    backend.apply(backend.plan(desired, backend.read()).steps)
    return backend, desired


@pytest.mark.netns
@needs_root
@pytest.mark.parametrize(
    ("by_hand", "exact"),
    [
        ([], True),
        # Below our jump and outside our objects: nothing a plan compares.
        ([("iptables-nft", "-A", "INPUT", "-p", "udp", "-j", "DROP")], True),
        ([("iptables-nft", "-t", "nat", "-N", "ZT-ELSEWHERE")], True),
        ([("ipset", "create", "theirs", "hash:ip")], True),
        # A rule in a chain of ours, one above our jump, our jump gone, a foreign jump to our chain, a chain of ours more.
        ([("iptables-nft", "-A", "ZT-INGRESS", "-j", "ACCEPT")], False),
        ([("ip6tables-nft", "-I", "ZT-EGRESS", "1", "-j", "DROP")], False),
        ([("iptables-nft", "-I", "INPUT", "1", "-j", "ACCEPT")], False),
        ([("iptables-nft", "-D", "INPUT", "1")], False),
        ([("iptables-nft", "-A", "INPUT", "-g", "ZT-INGRESS")], False),
        ([("iptables-nft", "-t", "mangle", "-N", "ZT-OLD")], False),
        ([("ip6tables-nft", "-N", "ZT-OLD")], False),
        # A rule of ours replaced by one of the same matches and another comment (the chain's fingerprint changed).
        ([("iptables-nft", "-R", "ZT-EGRESS", "1", "-m", "comment", "--comment", "zt:0123456789abcdef catch_all fp=0123456789abcdef",
           "-j", "ACCEPT")], False),
        # Sets: a member more, one less, another comment, a set of ours more.
        ([("ipset", "add", "zt-peers-4", "203.0.113.1")], False),
        ([("ipset", "del", "zt-peers-4", "192.0.2.10")], False),
        ([("ipset", "del", "zt-peers-6", "2001:db8::10"), ("ipset", "add", "zt-peers-6", "2001:db8::10", "comment", "x")], False),
        ([("ipset", "create", "zt-peers-4n", "hash:net")], False),
    ],
)
def test_the_kernel_says_exactly_where_a_read_plans_nothing(namespace: str, by_hand: list[tuple[str, ...]], exact: bool) -> None:
    backend, desired = written_backend(namespace)
    for command in by_hand:
        inside(namespace, *command)
    found = backend.holding_exactly(desired)
    read_plan = backend.plan(desired, backend.read())
    assert (found is not None, read_plan.changed or bool(read_plan.drift)) == (exact, not exact)
    if found is not None:
        # The plan from the look is the plan from the read: no step, no drift, the same rules and members kept.
        plan = backend.plan(desired, found)
        assert (plan.steps, plan.drift, plan.changes) == ([], [], read_plan.changes)
        assert backend.runner.netlink_reads >= 1


@pytest.mark.netns
@needs_root
def test_the_kernel_says_not_exactly_where_it_cannot_be_asked(namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend, desired = written_backend(namespace)
    assert backend.holding_exactly(desired) is not None
    monkeypatch.setattr(Runner, "in_process", False)
    assert backend.holding_exactly(desired) is None
    assert IptablesLegacyBackend(Runner(Namespace(name=namespace)), Options()).holding_exactly(desired) is None


# --------------------------------------------------------------------------- our ipsets written over netlink

CREATE4 = "create zt-a-4 hash:net family inet comment"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("", []),
        # A create fails where the set exists, unless -exist; a run of adds to one set is one message (its first line).
        (f'{CREATE4}\nadd zt-a-4 10.0.0.0/8 comment "ab"\nadd zt-a-4 192.0.2.1 comment "ab"\n',
         [(1, netlink.IPSET_CMD_CREATE, netlink.NLM_F_EXCL), (2, netlink.IPSET_CMD_ADD, netlink.NLM_F_EXCL)]),
        ("create zt-an-6 hash:net family inet6 hashsize 65536 maxelem 131072 comment -exist\nflush zt-an-6\n"
         'add zt-an-6 2001:db8::/32 comment "ab"\nswap zt-an-6 zt-a-6\ndestroy zt-an-6\n',
         [(1, netlink.IPSET_CMD_CREATE, 0), (2, netlink.IPSET_CMD_FLUSH, 0), (3, netlink.IPSET_CMD_ADD, netlink.NLM_F_EXCL),
          (4, netlink.IPSET_CMD_SWAP, 0), (5, netlink.IPSET_CMD_DESTROY, 0)]),
        # Adds to another set start another message.
        (f'{CREATE4}\ncreate zt-b-4 hash:net family inet comment\nadd zt-a-4 10.0.0.1\nadd zt-b-4 10.0.0.2\nadd zt-b-4 10.0.0.3\n',
         [(1, 2, netlink.NLM_F_EXCL), (2, 2, netlink.NLM_F_EXCL), (3, 9, netlink.NLM_F_EXCL), (4, 9, netlink.NLM_F_EXCL)]),
        # A large set goes in several messages.
        (CREATE4 + "\n" + "".join(f'add zt-a-4 10.{index // 250}.{index % 250}.0/24 comment "0123456789abcdef"\n' for index in range(1000)),
         [(1, 2, netlink.NLM_F_EXCL), (2, 9, netlink.NLM_F_EXCL), (294, 9, netlink.NLM_F_EXCL), (586, 9, netlink.NLM_F_EXCL),
          (878, 9, netlink.NLM_F_EXCL)]),
    ],
)
def test_an_ipset_script_as_netlink_messages(script: str, expected: list[tuple[int, int, int]]) -> None:
    assert [(write.line, write.command, write.flags) for write in netlink.ipset_writes(script, 7)] == expected


def test_an_entry_as_ipset_sends_it() -> None:
    [_create, add] = netlink.ipset_writes(f'{CREATE4}\nadd zt-a-4 10.1.0.0/16 comment "ab"\n', 7)
    entry = nested(7, netlink._attribute(0x8000 | 1, netlink._attribute(0x4000 | 1, bytes([10, 1, 0, 0]))), byte(3, 16), text(26, "ab"),
                   netlink._attribute(9, struct.pack("=I", 2)))
    assert add.body == (struct.pack("=BBH", 2, 0, 0) + byte(1, 7) + text(2, "zt-a-4") + netlink._attribute(9, struct.pack("=I", 0))
                        + nested(8, entry))


UNKNOWN = "line {} of the ipset script is not one this writer knows: {!r}"


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ("create zt-a-4 hash:ip family inet comment\n", UNKNOWN.format(1, "create zt-a-4 hash:ip family inet comment")),
        ("create theirs hash:net family inet comment\n", UNKNOWN.format(1, "create theirs hash:net family inet comment")),
        (f"{CREATE4}\nadd zt-a-4 10.0.0.1 timeout 5\n", UNKNOWN.format(2, "add zt-a-4 10.0.0.1 timeout 5")),
        (f"{CREATE4}\nadd zt-a-4 fd00::1\n", "line 2 of the ipset script: 'fd00::1' is not an address of the set's family"),
        ("rename zt-a-4 zt-b-4\n", UNKNOWN.format(1, "rename zt-a-4 zt-b-4")),
    ],
)
def test_an_ipset_script_this_writer_does_not_know_is_refused(script: str, error: str) -> None:
    with pytest.raises(netlink.NetlinkError) as raised:
        netlink.ipset_writes(script, 7)
    assert str(raised.value) == error


def ipset_restore(namespace: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, "ipset", "restore"], input=script, capture_output=True, text=True, check=False)


def saved_sets(namespace: str) -> list[str]:
    """``ipset save`` without the random hash seed the kernel gives each set."""
    return sorted(re.sub(r" initval 0x[0-9a-f]+", "", line) for line in ipset_save(namespace).splitlines())


WRITTEN = [
    CREATE4,
    *(f'add zt-a-4 10.{index}.0.0/16 comment "0123456789abcdef"' for index in range(200)),
    'add zt-a-4 192.0.2.1 comment "0123456789abcdef"',
    "create zt-b-6 hash:net family inet6 hashsize 4096 maxelem 8192 comment",
    'add zt-b-6 2001:db8::/32 comment "ff"',
    'add zt-b-6 fd00::1 comment "ff"',
    "create zt-c-4 hash:net family inet comment",
    "create zt-cn-4 hash:net family inet comment -exist",
    "flush zt-cn-4",
    'add zt-cn-4 10.9.9.9 comment "x"',
    "swap zt-cn-4 zt-c-4",
    "destroy zt-cn-4",
]


@pytest.mark.netns
@needs_root
def test_sets_written_over_netlink_are_the_sets_ipset_restore_makes(namespace: str, other_namespace: str) -> None:
    other = other_namespace
    assert ipset_restore(other, "\n".join(WRITTEN) + "\n").returncode == 0
    revision = Runner(Namespace(name=other)).call_inside(lambda: netlink.ipset_revision("zt-a-4"))
    assert isinstance(revision, int)
    writes = netlink.ipset_writes("\n".join(WRITTEN) + "\n", revision)
    assert Runner(Namespace(name=namespace)).call_inside(lambda: netlink.ipset_write(writes)) is True
    assert saved_sets(namespace) == saved_sets(other) and len(saved_sets(namespace)) == 207


@pytest.mark.netns
@needs_root
@pytest.mark.parametrize(
    ("script", "line", "message"),
    [
        (CREATE4, 1, "Set cannot be created: set with the same name already exists"),
        ('create zt-n-4 hash:net family inet comment\nadd zt-n-4 10.0.0.1 comment "x"\nadd zt-n-4 10.0.0.2 comment "x"\n'
         'add zt-n-4 10.0.0.1 comment "x"', 4, "Element cannot be added to the set: it's already added"),
        ("flush zt-none-4", 1, "The set with the given name does not exist"),
        ("swap zt-a-4 zt-none-4", 1, "Sets cannot be swapped: the second set does not exist"),
        ("destroy zt-a-4", 1, "Set cannot be destroyed: it is in use by a kernel component"),
    ],
)
def test_a_line_the_kernel_refuses_is_reported_as_ipset_restore_reports_it(
    namespace: str, other_namespace: str, script: str, line: int, message: str
) -> None:
    other = other_namespace
    for each in (namespace, other):
        assert ipset_restore(each, f"{CREATE4}\n").returncode == 0
        inside(each, "iptables-nft", "-A", "INPUT", "-m", "set", "--match-set", "zt-a-4", "src", "-j", "ACCEPT")
    told = ipset_restore(other, script + "\n")
    assert told.returncode == 1 and f"Error in line {line}: {message}" in told.stderr
    with pytest.raises(netlink.IpsetRefusedError) as raised:
        Runner(Namespace(name=namespace)).call_inside(lambda: netlink.ipset_write(netlink.ipset_writes(script + "\n", 7)))
    assert (raised.value.line, raised.value.message) == (line, message)
    # What came before the refused line stays written, as with ipset restore (the first three lines of the second case).
    assert saved_sets(namespace) == saved_sets(other)


@pytest.mark.netns
@needs_root
def test_the_backend_writes_its_sets_over_netlink_once_ipset_created_one(namespace: str, other_namespace: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iptables, "_CREATED_REVISION", {})
    started: list[str] = []
    original = subprocess.Popen.__init__

    def counting(self: subprocess.Popen[Any], args: Any, *more: Any, **options: Any) -> None:
        started.append(" ".join(args))
        original(self, args, *more, **options)

    monkeypatch.setattr(subprocess.Popen, "__init__", counting)
    # The run's first script goes to ipset restore, which tells the revision of the sets it creates ...
    by_tool, _desired = written_backend(other_namespace)
    assert [command for command in started if command.startswith("ipset")] == ["ipset restore"]
    assert by_tool.runner.writes == 3
    # ... and the later ones go over netlink: one write each still, and the same sets.
    started.clear()
    over_netlink, desired = written_backend(namespace)
    assert [command for command in started if command.startswith("ipset")] == []
    assert over_netlink.runner.writes == 3
    assert saved_sets(namespace) == saved_sets(other_namespace)
    assert over_netlink.holding_exactly(desired) is not None


class AnsweringSocket:
    """A netlink socket that answers each message with the next of ``answers`` (an exception is raised)."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.sent: list[bytes] = []

    def __enter__(self) -> AnsweringSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, _size: int) -> bytes:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return bytes(answer)


def ack(sequence: int, code: int = 0) -> bytes:
    return message(2, struct.pack("=i", code) + b"\0" * 16, sequence=sequence)


@pytest.mark.parametrize(
    ("answers", "raised", "text"),
    [
        ([ack(1), ack(2)], None, ""),
        # Nothing written yet: the caller may run ipset restore instead.
        ([OSError("Connection refused")], netlink.NetlinkError, "ipset netlink write failed: Connection refused"),
        ([b""], netlink.NetlinkError, "ipset netlink write failed: no acknowledgement of ipset netlink write 1"),
        # The set is created: starting the script again would fail on its create line, so the write fails at its line.
        ([ack(1), OSError("Connection reset")], netlink.IpsetRefusedError,
         "Error in line 2: the netlink write failed after 1 of 2 messages: Connection reset"),
        ([ack(1), ack(2, -4352)], netlink.IpsetRefusedError, "Error in line 2: Hash is full, cannot add more elements"),
    ],
)
def test_what_an_ipset_write_makes_of_the_kernels_answers(monkeypatch: pytest.MonkeyPatch, answers: list[Any],
                                                          raised: Any, text: str) -> None:
    sock = AnsweringSocket(answers)
    monkeypatch.setattr(netlink, "_socket", lambda: sock)
    writes = netlink.ipset_writes(f'{CREATE4}\nadd zt-a-4 10.0.0.1 comment "x"\n', 7)
    if raised is None:
        assert netlink.ipset_write(writes) is True
        assert len(sock.sent) == 2
        return
    with pytest.raises(raised) as error:
        netlink.ipset_write(writes)
    assert str(error.value) == text

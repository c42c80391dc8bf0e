# SPDX-License-Identifier: GPL-3.0-or-later
"""The netlink look at a namespace: the kernel's tables and ipsets by name, and the backends' "nothing of ours".

The parsing is checked on crafted datagrams (a table of input and expected output); the answers and the
backends' verdicts on real throwaway namespaces against what the tools themselves list.
"""

from __future__ import annotations

import os
import struct
import subprocess

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply, netlink
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Options
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.iptables import (
    IptablesBackend,
    IptablesLegacyBackend,
    IptablesNftBackend,
)
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
        assert backend.holds_nothing_of_ours() and backend.runner.reads == (3 if cls is IptablesNftBackend else 1)
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

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Observed connections: parse conntrack and the observer's sets, merge many namespaces' views.

Two sources, read by the ``flows`` module in every namespace it visits:

- the **conntrack table** (``conntrack -L -o extended`` or ``/proc/net/nf_conntrack``): the
  original and reply tuples of every tracked connection, ``[UNREPLIED]`` when no answer
  came back. A namespace only tracks connections once something there uses conntrack
  (kube-proxy's nat rules on a node, our allowlist's ``established`` rule after
  enforcement), so before enforcement VMs and pods have an empty table;
- the **observer** (``table inet zt_audit``, installed by ``flows state=observe``): a
  passive base chain before the filter hooks that (a) makes the namespace track
  connections and (b) remembers, for an hour, every NEW connection attempt
  (``attempts``), every connection that saw a reply (``answered``) and, on nodes, the
  translated leg of every NAT-ed connection (``legs``). It records attempts that a
  firewall later drops, which conntrack never confirms: that is how *rejected* flows are
  seen after enforcement.

The same connection appears in several namespaces (the consumer, each node it crosses,
the provider) and, behind kube-proxy, under translated addresses: :func:`merge` keeps one
entry per original connection and drops the translated legs (``haproxy -> node:30358``
is kept, the pod's view ``node gateway -> pod:80`` of the same connection is not).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from .errors import AuditError

PORTED = ("tcp", "udp", "sctp")
_PROTOCOL_NUMBERS = {6: "tcp", 17: "udp", 132: "sctp"}
OBSERVER_TABLE = "zt_audit"
OBSERVER_SETS = ("attempts", "answered", "legs")


@dataclasses.dataclass(frozen=True, order=True)
class Connection:
    """One direction of a connection: protocol, source address:port -> destination address:port."""

    protocol: str
    source: str
    source_port: int
    destination: str
    destination_port: int

    def reversed(self) -> Connection:
        """The same connection seen from the other end."""
        return Connection(self.protocol, self.destination, self.destination_port, self.source, self.source_port)

    def to_list(self) -> list[Any]:
        """Wire form ``[protocol, source, source_port, destination, destination_port]``."""
        return [self.protocol, self.source, self.source_port, self.destination, self.destination_port]

    @classmethod
    def from_list(cls, data: Sequence[Any]) -> Connection:
        """Read the wire form; raise AuditError when it is not one."""
        try:
            protocol, source, source_port, destination, destination_port = data
            return cls(str(protocol), _address(source), int(source_port), _address(destination), int(destination_port))
        except (TypeError, ValueError) as error:
            raise AuditError(f"a connection must be [protocol, source, sport, destination, dport], got {data!r}: {error}") from error


@dataclasses.dataclass(frozen=True)
class Record:
    """One connection as one namespace saw it. ``reply`` is the reply tuple (conntrack only)."""

    seen_at: str
    original: Connection
    reply: Optional[Connection]
    answered: bool

    @property
    def translated(self) -> bool:
        """True when NAT rewrote the connection here (the reply is not the original reversed)."""
        return self.reply is not None and self.reply != self.original.reversed()

    def to_list(self) -> list[Any]:
        """Wire form: the original's five fields, the reply's address and port pairs (or None), answered."""
        reply = self.reply.to_list()[1:] if self.reply is not None else [None] * 4
        return [*self.original.to_list(), *reply, self.answered]

    @classmethod
    def from_list(cls, seen_at: str, data: Sequence[Any]) -> Record:
        """Read the wire form."""
        if not isinstance(data, (list, tuple)) or len(data) != 10:
            raise AuditError(f"a flow record from {seen_at} must have 10 fields, got {data!r}")
        reply = None if data[5] is None else Connection.from_list([data[0], *data[5:9]])
        return cls(seen_at, Connection.from_list(data[:5]), reply, bool(data[9]))


@dataclasses.dataclass(frozen=True)
class Observed:
    """One original connection after merging every namespace's view."""

    original: Connection
    answered: bool
    seen_at: tuple[str, ...]


def _address(text: Any) -> str:
    return str(ipaddress.ip_address(str(text)))


def _protocol(value: Any) -> Optional[str]:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return _PROTOCOL_NUMBERS.get(int(value))
    text = str(value).lower()
    return text if text in PORTED else None


def parse_conntrack(text: str, seen_at: str) -> list[Record]:
    """Records from ``conntrack -L [-o extended]`` or ``/proc/net/nf_conntrack`` text.

    Only tcp, udp and sctp are kept (policies name ports); lines that are not entries
    (the ``N flow entries have been shown`` trailer) are skipped.
    """
    records = []
    for line in text.splitlines():
        words = line.split()
        protocol = next((_protocol(word) for word in words[:4] if _protocol(word) is not None and not word.isdigit()), None)
        if protocol is None:
            continue
        tuples: list[dict[str, str]] = [{}]
        for word in words:
            key, equals, value = word.partition("=")
            if not equals or key not in ("src", "dst", "sport", "dport"):
                continue
            if key in tuples[-1]:
                tuples.append({})
            tuples[-1][key] = value
        try:
            original = _tuple(protocol, tuples[0])
            reply = _tuple(protocol, tuples[1]) if len(tuples) > 1 else None
        except (KeyError, ValueError):
            continue
        records.append(Record(seen_at, original, reply, "[UNREPLIED]" not in words))
    return records


def _tuple(protocol: str, fields: dict[str, str]) -> Connection:
    return Connection(protocol, _address(fields["src"]), int(fields["sport"]), _address(fields["dst"]), int(fields["dport"]))


def parse_observer(text: str, max_age: int = 0) -> dict[str, set[Connection]]:
    """The observer's sets from ``nft -j list table inet zt_audit``: ``{attempts, answered, legs}``.

    Both families are merged; an empty or missing table gives empty sets. With ``max_age``
    (seconds), elements added longer ago are left out: an element's age is its set's timeout
    minus the time it still has to live (``add`` never refreshes it, so the age counts from
    the first packet).
    """
    found: dict[str, set[Connection]] = {name: set() for name in OBSERVER_SETS}
    if not text.strip():
        return found
    try:
        document = json.loads(text)
    except ValueError as error:
        raise AuditError(f"nft -j output is not JSON ({error}); is nftables 0.9.3 or newer installed?") from error
    for item in document.get("nftables", []) if isinstance(document, dict) else []:
        nft_set = item.get("set") if isinstance(item, dict) else None
        if not isinstance(nft_set, dict) or nft_set.get("table") != OBSERVER_TABLE:
            continue
        kind = str(nft_set.get("name", "")).rstrip("46")
        if kind not in found:
            continue
        timeout = int(nft_set.get("timeout") or 0)
        for element in nft_set.get("elem", []) or []:
            inner = element.get("elem") if isinstance(element, dict) else None
            wrapped: dict[str, Any] = inner if isinstance(inner, dict) else {}
            value = wrapped.get("val", element)
            parts = value.get("concat") if isinstance(value, dict) else None
            if not isinstance(parts, list) or len(parts) != 5:
                continue
            protocol = _protocol(parts[2])
            if protocol is None:
                continue
            age = timeout - int(wrapped.get("expires", timeout))
            if max_age and age > max_age:
                continue
            found[kind].add(Connection(protocol, _address(parts[0]), int(parts[3]), _address(parts[1]), int(parts[4])))
    return found


def observer_records(sets: dict[str, set[Connection]], seen_at: str) -> list[Record]:
    """Records from the observer's attempts and answers (a connection answered but whose
    attempt expired or predates the observer counts too)."""
    answered = sets.get("answered", set())
    connections = sorted(sets.get("attempts", set()) | answered)
    return [Record(seen_at, connection, None, connection in answered) for connection in connections]


def merge_sources(
    conntrack: Sequence[Record], sets: dict[str, set[Connection]], seen_at: str, observed: bool
) -> tuple[list[Record], list[Connection]]:
    """One namespace's records and translated legs.

    Where the observer runs (``observed``) its sets are the records: they cover everything
    conntrack has, remember attempts conntrack never confirms, and know each connection's
    age (so an audit window applies). Conntrack then only contributes the translated legs
    its reply tuples reveal. Elsewhere conntrack's entries are the records.
    """
    translated = [record.reply.reversed() for record in conntrack if record.translated and record.reply is not None]
    legs = sorted(set(translated) | sets.get("legs", set()))
    if observed:
        return observer_records(sets, seen_at), legs
    return list(conntrack), legs


def oriented(connection: Connection) -> Connection:
    """The connection the right way round.

    A namespace that starts tracking in the middle of a connection (the observer was just
    installed, or conntrack entries were flushed) takes the first packet it sees as the
    original direction, which may be the server's answer: ``node:22 -> controller:51234``.
    A well-known source port (below 1024) towards an ephemeral one (32768 and up) is such a
    pickup and is turned round.
    """
    if connection.source_port < 1024 and connection.destination_port >= 32768:
        return connection.reversed()
    return connection


def merge(records: Iterable[Record], legs: Iterable[Connection] = ()) -> list[Observed]:
    """One entry per original connection, translated legs dropped, answers combined.

    A leg is the connection as the far side of a NAT sees it: the reverse of a translated
    record's reply tuple, or an entry of the observer's ``legs`` set. Sorted by connection.
    """
    all_records = list(records)
    translated: set[Connection] = set(legs)
    for record in all_records:
        if record.translated and record.reply is not None:
            translated.add(record.reply.reversed())
    by_connection: dict[Connection, tuple[bool, set[str]]] = {}
    for record in all_records:
        if record.original in translated:
            continue
        connection = oriented(record.original)
        answered, seen = by_connection.get(connection, (False, set()))
        seen.add(record.seen_at)
        by_connection[connection] = (answered or record.answered, seen)
    # An answer seen on a translated leg (the pod replied) answers its original too; the
    # original's own view already says so in conntrack, so nothing more to carry over.
    return [Observed(connection, answered, tuple(sorted(seen))) for connection, (answered, seen) in sorted(by_connection.items())]


def observer_script(timeout: str = "1h", size: int = 65536) -> str:
    """The ``nft -f`` script that (re)creates the observer table in one transaction.

    Base chains at priority -175: after conntrack (-200) has classified the packet, before
    kube-proxy's DNAT (-100) and before any filter chain (0), so attempts that a firewall
    drops later are seen, and NodePort connections are seen with their NodePort.
    """
    if not timeout or not all(ch.isalnum() for ch in timeout):
        raise AuditError(f"observer timeout {timeout!r} must look like 1h, 30m or 3600s")
    lines = [f"add table inet {OBSERVER_TABLE}", f"delete table inet {OBSERVER_TABLE}", f"add table inet {OBSERVER_TABLE}"]
    for family, address in (("4", "ipv4_addr"), ("6", "ipv6_addr")):
        for name in OBSERVER_SETS:
            lines.append(
                f"add set inet {OBSERVER_TABLE} {name}{family} "
                f"{{ type {address} . {address} . inet_proto . inet_service . inet_service; "
                f"flags dynamic,timeout; timeout {timeout}; size {int(size)}; }}"
            )
    for chain, hook in (("observe_in", "prerouting"), ("observe_out", "output")):
        lines.append(f"add chain inet {OBSERVER_TABLE} {chain} {{ type filter hook {hook} priority -175; policy accept; }}")
        for family, ip in (("4", "ip"), ("6", "ip6")):
            nfproto = "ipv4" if family == "4" else "ipv6"
            match = f"meta nfproto {nfproto} meta l4proto {{ tcp, udp, sctp }}"
            original = (
                f"ct original {ip} saddr . ct original {ip} daddr . ct original protocol . ct original proto-src . ct original proto-dst"
            )
            leg = f"ct reply {ip} daddr . ct reply {ip} saddr . ct reply protocol . ct reply proto-dst . ct reply proto-src"
            lines.append(
                f"add rule inet {OBSERVER_TABLE} {chain} {match} ct state new "
                f"add @attempts{family} {{ {ip} saddr . {ip} daddr . meta l4proto . th sport . th dport }}"
            )
            lines.append(f"add rule inet {OBSERVER_TABLE} {chain} {match} ct direction reply add @answered{family} {{ {original} }}")
            for status in ("dnat", "snat"):
                lines.append(
                    f"add rule inet {OBSERVER_TABLE} {chain} {match} ct direction original ct status {status} add @legs{family} {{ {leg} }}"
                )
    return "\n".join(lines) + "\n"

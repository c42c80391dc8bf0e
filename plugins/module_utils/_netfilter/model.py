# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The backend-neutral ruleset model.

This is the one contract between the policy compiler (``_policy``), which produces
rulesets, and the dataplane backends (``_netfilter``), which render and apply them.
It is pure: no Ansible, no subprocess, only frozen dataclasses and their canonical
dictionary form, which is what travels from the controller to the ``allowlist``
module as a module argument.

Shape of a ruleset (one per enforcement point: a VM, a node, or a pod's network
namespace)::

    Ruleset
      address_sets: named groups of peer addresses (IPv4 and IPv6 mixed; a backend
                    splits them per family). Rules refer to sets by name, so a pod
                    IP change rewrites a set and never a chain.
      chains:       one per hook we attach to (ingress -> INPUT, egress -> OUTPUT,
                    nodeport_guard -> mangle PREROUTING). Each chain is an ordered
                    list of rules, first match wins, and ends in ``default_verdict``.

Verdicts are abstract: ``accept``, ``deny`` (a backend renders it as drop or reject
according to the module's ``default_action``), ``drop`` (always drop, used where
reject is impossible, e.g. the mangle table) and ``return`` (leave our chain and let
the host's other rules decide).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import ipaddress
import json
import re
import socket
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any, Optional

MODEL_VERSION = 1

HOOKS = ("input", "output", "forward", "prerouting")
"""Where a chain is attached. ``prerouting`` is the mangle table's PREROUTING, which
sees a NodePort connection before kube-proxy's nat PREROUTING rewrites it."""

VERDICTS = ("accept", "deny", "drop", "return")
PROTOCOLS = ("tcp", "udp", "sctp", "icmp", "icmpv6", "ipip")
"""``icmp`` matches IPv4 only and ``icmpv6`` IPv6 only; a rule without a protocol
matches every protocol. ``ipip`` is IPv4-in-IPv4 encapsulation (IP protocol 4, Calico's
IP-in-IP overlay), IPv4 only; the backends write it as the number 4 because
/etc/protocols calls protocol 4 ``ipencap`` and gives the name ``ipip`` to 94."""
CONNTRACK_STATES = ("new", "established", "related", "invalid")
PORTED_PROTOCOLS = ("tcp", "udp", "sctp")
_CHAIN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,15}\Z")
_SET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,24}\Z")
_INTERFACE = re.compile(r"^(?=.{1,15}\Z)[A-Za-z0-9_.@:-]+\+?\Z")
"""What both backends take as an interface name (with iptables' and nft's trailing ``+`` wildcard)."""


def iptables_chain_name(model_chain: str) -> str:
    """iptables name of a model chain: ``nodeport_guard`` -> ``ZT-NODEPORT-GUARD``."""
    return "ZT-" + model_chain.upper().replace("_", "-")


class ModelError(ValueError):
    """A ruleset (or its dictionary form) is not well formed."""


@dataclasses.dataclass(frozen=True, order=True)
class PortRange:
    """Destination ports ``first``..``last`` inclusive (one port: first == last)."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not (0 < self.first <= self.last <= 65535):
            raise ModelError(f"port range {self.first}-{self.last} is outside 1-65535 or reversed")

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    @classmethod
    def parse(cls, text: str | int) -> PortRange:
        """Read ``80`` or ``"8000-8080"``; the error says what is wrong (not a number, 0, reversed...)."""
        if isinstance(text, int) and not isinstance(text, bool):
            if not 0 < text <= 65535:
                raise ModelError(f"port {_show(text)} is outside 1-65535")
            return cls(text, text)
        value = str(text)
        first_text, separator, last_text = value.partition("-")
        # ASCII digits only: int() would also take " 80", "+80", "٨٠" or "8_0".
        if not (first_text.isascii() and first_text.isdigit()) or (separator and not (last_text.isascii() and last_text.isdigit())):
            raise ModelError(f"port {_show(value)} is not a number or a range like 8000-8080")
        # More than 6 digits is out of range whatever they say (and int() refuses thousands of them).
        first, last = (int(part) if len(part) <= 7 else 9999999 for part in (first_text, last_text or first_text))
        if not separator:
            if not 0 < first <= 65535:
                raise ModelError(f"port {first} is outside 1-65535")
        elif not 0 < first <= 65535:
            raise ModelError(f"port range {first}-{last} starts outside 1-65535")
        elif not 0 < last <= 65535:
            raise ModelError(f"port range {first}-{last} ends outside 1-65535")
        elif first > last:
            raise ModelError(f"port range {first}-{last} is reversed: write {last}-{first}")
        return cls(first, last)


@dataclasses.dataclass(frozen=True)
class AddressSet:
    """A named set of addresses or networks (canonical strings, sorted, unique).

    ``name`` is stable for the logical peer it stands for (for example the endpoints
    of one policy's provider), never derived from the members: membership may change
    without the chains changing.
    """

    name: str
    members: tuple[str, ...]
    comment: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SET_NAME.match(self.name):
            raise ModelError(f"address set name {_show(self.name)} must be 1-24 ASCII characters of [A-Za-z0-9_-]")
        if not isinstance(self.comment, str):
            raise ModelError(f"address set {_show(self.name)}: comment must be a string, got {_kind(self.comment)}")
        # One parse per member gives both its canonical text and its sort key (the main fixed cost of
        # building a large ruleset, e.g. in a no-op module run over 10k peers).
        try:
            entries = {_memo_entry(member) for member in self.members}
        except ModelError as error:
            raise ModelError(f"address set {_show(self.name)}: member {error}") from None
        canonical = tuple(text for text, _unused_key in sorted(entries, key=lambda entry: entry[1]))
        object.__setattr__(self, "members", canonical)

    def family_members(self, family: int) -> tuple[str, ...]:
        """The members of one IP family (4 or 6)."""
        return tuple(member for member in self.members if (":" in member) == (family == 6))


@dataclasses.dataclass(frozen=True)
class Rule:
    """One match-and-verdict line in a chain.

    ``peer_set`` names the address set of the remote side: the source for ``input`` and
    ``prerouting`` chains, the destination for ``output``. ``None`` means any address.
    ``ports`` are destination ports (only with tcp, udp or sctp). ``interface`` is the
    incoming interface for input/prerouting, the outgoing one for output (``lo``).
    ``local_destination`` restricts to packets addressed to this host itself (the
    NodePort guard). ``family`` restricts the rule to IPv4 (4) or IPv6 (6).
    ``origin`` says why the rule exists (``default[0] haproxy->wordpress tcp/80``,
    ``implicit:loopback``...): it goes, sanitised, into the rule's comment and lets an
    audit map a live rule back to the policy that produced it.
    """

    verdict: str
    origin: str
    protocol: Optional[str] = None
    ports: tuple[PortRange, ...] = ()
    peer_set: Optional[str] = None
    interface: Optional[str] = None
    conntrack: tuple[str, ...] = ()
    local_destination: bool = False
    family: Optional[int] = None
    icmp_types: tuple[int, ...] = ()
    source_ports: tuple[PortRange, ...] = ()
    """Source ports (tcp, udp or sctp only). Empty in everything the compiler writes; the
    management allowance uses it for sshd's replies (sport 22), which must pass even where
    conntrack never saw the connection start. Omitted from the dictionary form and the
    match key when empty, so rules without it keep their identity."""

    def __post_init__(self) -> None:
        self._check_types()
        if self.verdict not in VERDICTS:
            raise ModelError(f"rule verdict {_show(self.verdict)} is not one of {', '.join(VERDICTS)}")
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise ModelError(f"rule protocol {_show(self.protocol)} is not one of {', '.join(PROTOCOLS)}")
        if self.ports and self.protocol not in PORTED_PROTOCOLS:
            raise ModelError(f"rule {_show(self.origin)} has ports but protocol {_show(self.protocol)} has none")
        if self.source_ports and self.protocol not in PORTED_PROTOCOLS:
            raise ModelError(f"rule {_show(self.origin)} has source ports but protocol {_show(self.protocol)} has none")
        if self.icmp_types and self.protocol not in ("icmp", "icmpv6"):
            raise ModelError(f"rule {_show(self.origin)} has ICMP types but protocol {_show(self.protocol)}")
        for state in self.conntrack:
            if state not in CONNTRACK_STATES:
                raise ModelError(f"conntrack state {_show(state)} is not one of {', '.join(CONNTRACK_STATES)}")
        if self.family not in (None, 4, 6):
            raise ModelError(f"rule family {_show(self.family)} must be 4, 6 or unset")
        if (self.protocol in ("icmp", "ipip") and self.family == 6) or (self.protocol == "icmpv6" and self.family == 4):
            raise ModelError(f"rule {_show(self.origin)}: protocol {self.protocol} does not exist in IPv{self.family}")
        object.__setattr__(self, "ports", tuple(sorted(set(self.ports))))
        object.__setattr__(self, "source_ports", tuple(sorted(set(self.source_ports))))
        object.__setattr__(self, "conntrack", tuple(sorted(set(self.conntrack))))
        object.__setattr__(self, "icmp_types", tuple(sorted(set(self.icmp_types))))

    def _check_types(self) -> None:
        """Refuse values of the wrong kind before anything renders them (they come from JSON)."""
        if not isinstance(self.origin, str):
            raise ModelError(f"rule origin must be a string, got {_kind(self.origin)}")
        for field in ("verdict", "protocol", "peer_set", "interface"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, str):
                raise ModelError(f"rule {_show(self.origin)}: {field} must be a string, got {_kind(value)}")
        if self.interface is not None and not _INTERFACE.match(self.interface):
            raise ModelError(f"rule {_show(self.origin)}: interface {_show(self.interface)} is not an interface name "
                             "(1-15 characters of letters, digits, . _ - @ : and a trailing + wildcard)")
        if not isinstance(self.local_destination, bool):
            raise ModelError(f"rule {_show(self.origin)}: local_destination must be true or false, got {_kind(self.local_destination)}")
        if isinstance(self.family, bool) or not isinstance(self.family, (int, type(None))):
            raise ModelError(f"rule family {_show(self.family)} must be 4, 6 or unset")
        for icmp_type in self.icmp_types:
            if isinstance(icmp_type, bool) or not isinstance(icmp_type, int) or not 0 <= icmp_type <= 255:
                raise ModelError(f"rule {_show(self.origin)}: ICMP type {_show(icmp_type)} must be a number 0-255")
        for port in (*self.ports, *self.source_ports):
            if not isinstance(port, PortRange):
                raise ModelError(f"rule {_show(self.origin)}: port {_show(port)} is not a port range")
        for state in self.conntrack:
            if not isinstance(state, str):
                raise ModelError(f"rule {_show(self.origin)}: conntrack state {_show(state)} must be a string")

    def families(self) -> tuple[int, ...]:
        """The IP families this rule exists in."""
        if self.family is not None:
            return (self.family,)
        if self.protocol in ("icmp", "ipip"):
            return (4,)
        if self.protocol == "icmpv6":
            return (6,)
        return (4, 6)

    def match_key(self) -> str:
        """Canonical text of everything the rule matches and does, without ``origin``.

        Backends hash this (plus what they add themselves) for the rule comment, so
        the same rule from two policies has the same identity.
        """
        try:
            return _match_key(self)
        except TypeError:  # a field that is not hashable (a list given by a caller): build it uncached
            return _match_key.__wrapped__(self)


@functools.lru_cache(maxsize=1 << 12)
def _match_key(rule: Rule) -> str:
    # Rules are frozen and compare by value: the pods of a node share most of their rules (the implicit
    # ones, a service's peers), so a module run over 100 pod namespaces builds each key once, not 100 times.
    data = to_dict(rule)
    data.pop("origin")
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class Chain:
    """Our chain attached to one hook; first match wins, then ``default_verdict``."""

    name: str
    hook: str
    rules: tuple[Rule, ...]
    default_verdict: str
    default_origin: str = "catch_all"

    def __post_init__(self) -> None:
        if self.hook not in HOOKS:
            raise ModelError(f"chain {_show(self.name)}: hook {_show(self.hook)} is not one of {', '.join(HOOKS)}")
        if self.default_verdict not in VERDICTS:
            raise ModelError(f"chain {_show(self.name)}: default verdict {_show(self.default_verdict)} is not one of {', '.join(VERDICTS)}")
        if not isinstance(self.name, str) or not _CHAIN_NAME.match(self.name):
            # What both backends take: iptables makes it ZT-<NAME> (case-folded), nft uses it as an identifier
            # (ASCII, starting with a letter). str.isalnum() would let "ingréss" through.
            raise ModelError(f"chain name {_show(self.name)} must be 1-16 ASCII letters, digits and _, starting with a letter")


@dataclasses.dataclass(frozen=True)
class Ruleset:
    """Everything we own at one enforcement point."""

    chains: tuple[Chain, ...]
    address_sets: tuple[AddressSet, ...] = ()

    def __post_init__(self) -> None:
        names = [chain.name for chain in self.chains]
        if len(set(names)) != len(names):
            raise ModelError(f"chain names repeat: {', '.join(sorted(names))}")
        kernel_names: dict[str, str] = {}
        for name in names:
            # iptables chains are ZT-<name upper-cased, _ as ->: two names must not share one.
            kernel = iptables_chain_name(name)
            if kernel in kernel_names:
                first, second = sorted((kernel_names[kernel], name))
                raise ModelError(f"chain names {_show(first)} and {_show(second)} both become the iptables chain {kernel}; "
                                 "rename one of them")
            kernel_names[kernel] = name
        set_names = {address_set.name for address_set in self.address_sets}
        if len(set_names) != len(self.address_sets):
            repeated = sorted({name for name in (item.name for item in self.address_sets)
                               if sum(1 for other in self.address_sets if other.name == name) > 1})
            raise ModelError(f"address set names repeat: {', '.join(repeated)}")
        kernel_sets: dict[str, str] = {}
        for name in sorted(set_names):
            # ipset names get a zt- prefix when they lack it, nft set names an s when they start with no letter.
            ipset = name if name.startswith("zt-") else "zt-" + name
            nft = name if name[:1].isalpha() else "s" + name
            for kernel in (f"ipsets {ipset}-4/-6", f"nft sets {nft}_4/_6"):
                if kernel in kernel_sets:
                    raise ModelError(f"address set names {_show(kernel_sets[kernel])} and {_show(name)} both become the {kernel}; "
                                     "rename one of them")
                kernel_sets[kernel] = name
        for chain in self.chains:
            for rule in chain.rules:
                if rule.peer_set is not None and rule.peer_set not in set_names:
                    raise ModelError(f"chain {_show(chain.name)}: rule {_show(rule.origin)} refers to unknown address set "
                                     f"{_show(rule.peer_set)}")

    def address_set(self, name: str) -> AddressSet:
        """The set called ``name``."""
        for address_set in self.address_sets:
            if address_set.name == name:
                return address_set
        raise KeyError(name)

    def rule_count(self) -> int:
        """Number of rules over all chains (not counting chain defaults)."""
        return sum(len(chain.rules) for chain in self.chains)

    def member_count(self) -> int:
        """Number of addresses over all sets."""
        return sum(len(address_set.members) for address_set in self.address_sets)

    def to_dict(self, shared: Container[str] = frozenset(), memo: Optional[dict[int, Any]] = None) -> dict[str, Any]:
        """The canonical dictionary form (JSON-safe, deterministic order).

        A set named in ``shared`` is written as a reference, ``{"name": ..., "shared": true}``: its
        members travel once for a whole host in ``sets_to_dict`` form, and ``from_dict(data, sets)``
        puts them back. ``memo``, a dict the caller keeps across calls, lets every ruleset that holds
        the same rule or set object share one dictionary form (the compiler writes thousands of
        rulesets made of the same rules); the result must then be treated as read-only.
        """
        def form(value: Any) -> Any:
            if memo is None:
                return to_dict(value)
            # Keyed by identity, the object kept beside its form so that its id stays its own.
            found = memo.get(id(value))
            if found is None:
                found = memo[id(value)] = (value, to_dict(value))
            return found[1]

        chains = [
            {"name": chain.name, "hook": chain.hook, "rules": [form(rule) for rule in chain.rules],
             "default_verdict": chain.default_verdict, "default_origin": chain.default_origin}
            for chain in self.chains
        ]
        sets = [{"name": item.name, "shared": True} if item.name in shared else form(item) for item in self.address_sets]
        return {"version": MODEL_VERSION, "chains": chains, "address_sets": sets}

    def to_json(self) -> str:
        """Canonical JSON: byte-identical for equal rulesets."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], sets: Optional[Mapping[str, AddressSet]] = None) -> Ruleset:
        """Build a ruleset from its dictionary form, raising ModelError naming the place of anything off.

        ``sets`` (``sets_from_dict`` of the host's shared sets) resolves the sets written as
        ``{"name": ..., "shared": true}``; such a set missing from it is an error.
        """
        if not isinstance(data, Mapping):
            raise ModelError(f"a ruleset must be a mapping, got {_kind(data)}")
        _refuse_unknown(data, ("version", "chains", "address_sets"), "ruleset")
        version = data.get("version", MODEL_VERSION)
        if version != MODEL_VERSION or isinstance(version, bool):
            raise ModelError(f"ruleset model version {_show(version)} is not supported (this collection speaks {MODEL_VERSION})")
        set_items = _list(data.get("address_sets", ()), "ruleset field address_sets")
        shared = {} if sets is None else sets
        address_sets = tuple(_set_from_dict(item, index, shared) for index, item in enumerate(set_items))
        chains = tuple(_chain_from_dict(item, index) for index, item in enumerate(_list(data.get("chains", ()), "ruleset field chains")))
        return cls(chains=chains, address_sets=address_sets)


def sets_from_dict(data: Any) -> dict[str, AddressSet]:
    """A host's shared sets, ``{name: {"members": [...], "comment": "..."}}``, each parsed and checked once."""
    if not isinstance(data, Mapping):
        raise ModelError(f"the shared sets must be a mapping of set name to members and comment, got {_kind(data)}")
    sets: dict[str, AddressSet] = {}
    for name, item in data.items():
        where = f"shared address set {_show(name)}"
        if not isinstance(item, Mapping):
            raise ModelError(f"{where} must be a mapping, got {_kind(item)}")
        _refuse_unknown(item, ("members", "comment"), where)
        members = _list(item.get("members", ()), f"{where}: members")
        sets[name] = AddressSet(name=name, members=tuple(members), comment=item.get("comment", ""))
    return sets


def sets_to_dict(sets: Iterable[AddressSet], memo: Optional[dict[int, Any]] = None) -> dict[str, dict[str, Any]]:
    """The wire form of shared sets (what ``sets_from_dict`` reads), ordered by name; ``memo`` as in ``Ruleset.to_dict``."""
    data: dict[str, dict[str, Any]] = {}
    for item in sorted(sets, key=lambda item: item.name):
        found = None if memo is None else memo.get(-id(item))  # negated: beside the set's own form under id(item)
        if found is None:
            found = (item, {"members": list(item.members), "comment": item.comment})
            if memo is not None:
                memo[-id(item)] = found
        data[item.name] = found[1]
    return data


def shared_sets(rulesets: Iterable[Ruleset]) -> dict[str, AddressSet]:
    """The sets that can travel once for all of ``rulesets``: each name that stands for the same set everywhere.

    A name holding different members (or comments) in two rulesets is left out, so those rulesets
    keep it inline rather than have one of them enforce the other's members.
    """
    found: dict[str, AddressSet] = {}
    clashing: set[str] = set()
    for ruleset in rulesets:
        for item in ruleset.address_sets:
            known = found.setdefault(item.name, item)
            if known is not item and known != item:
                clashing.add(item.name)
    return {name: found[name] for name in sorted(found) if name not in clashing}


def _list(value: Any, where: str) -> Sequence[Any]:
    """``value`` when it is a list (a string or a mapping is not one)."""
    if not isinstance(value, (list, tuple)):
        raise ModelError(f"{where} must be a list, got {_kind(value)}")
    return value


def _refuse_unknown(data: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(key if isinstance(key, str) and len(key) <= 40 else _show(key, 40) for key in data if key not in known)
    if unknown:
        raise ModelError(f"{where} has unknown fields: {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _required(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ModelError(f"{where} has no {_show(key)}")
    return data[key]


def _set_from_dict(data: Any, index: int, shared: Mapping[str, AddressSet]) -> AddressSet:
    where = f"address set {index + 1}"
    if not isinstance(data, Mapping):
        raise ModelError(f"{where} must be a mapping, got {_kind(data)}")
    _refuse_unknown(data, ("name", "members", "comment", "shared"), where)
    name = _required(data, "name", where)
    if isinstance(name, str):
        where = f"address set {_show(name)}"
    is_shared = data.get("shared", False)
    if not isinstance(is_shared, bool):
        raise ModelError(f"{where}: shared must be true or false, got {_kind(is_shared)}")
    if is_shared:
        inline = [key for key in ("members", "comment") if key in data]
        if inline:
            raise ModelError(f"{where} is shared, so its {' and '.join(inline)} travel in the host's sets, not here")
        found = shared.get(name) if isinstance(name, str) else None
        if found is None:
            raise ModelError(f"{where} is shared, but the host's sets have no set {_show(name)}")
        return found
    members = _list(data.get("members", ()), f"{where}: members")
    return AddressSet(name=name, members=tuple(members), comment=data.get("comment", ""))


def _chain_from_dict(data: Any, index: int) -> Chain:
    where = f"chain {index + 1}"
    if not isinstance(data, Mapping):
        raise ModelError(f"{where} must be a mapping, got {_kind(data)}")
    _refuse_unknown(data, ("name", "hook", "default_verdict", "default_origin", "rules"), where)
    name = _required(data, "name", where)
    if isinstance(name, str):
        where = f"chain {_show(name)}"
    hook = _required(data, "hook", where)
    default_verdict = _required(data, "default_verdict", where)
    default_origin = data.get("default_origin", "catch_all")
    for field, value in (("hook", hook), ("default_verdict", default_verdict), ("default_origin", default_origin)):
        if not isinstance(value, str):
            raise ModelError(f"{where}: {field} must be a string, got {_kind(value)}")
    rules: list[Rule] = []
    for number, item in enumerate(_list(data.get("rules", ()), f"{where}: rules"), start=1):
        origin = item.get("origin") if isinstance(item, Mapping) else None
        place = f"{where} rule {number}" + (f" ({_show(origin)})" if isinstance(origin, str) else "")
        try:
            rules.append(_rule_from_dict(item))
        except ModelError as error:
            raise ModelError(f"{place}: {error}") from None
    return Chain(name=name, hook=hook, default_verdict=default_verdict, default_origin=default_origin, rules=tuple(rules))


def _rule_from_dict(data: Any) -> Rule:
    if not isinstance(data, Mapping):
        raise ModelError(f"a rule must be a mapping, got {_kind(data)}")
    _refuse_unknown(data, [field.name for field in dataclasses.fields(Rule)], "rule")
    values = dict(data)
    for field in ("verdict", "origin"):
        _required(data, field, "rule")
    for name in ("ports", "source_ports"):
        values[name] = tuple(PortRange.parse(_port_text(port)) for port in _list(values.get(name, ()), name))
    for name in ("conntrack", "icmp_types"):
        values[name] = tuple(_list(values.get(name, ()), name))
    return Rule(**values)


def _port_text(port: Any) -> str | int:
    if isinstance(port, bool) or not isinstance(port, (str, int)):
        raise ModelError(f"port {_show(port)} is not a number or a range like 8000-8080")
    return port


def to_dict(value: Any) -> Any:
    """Dictionary form of a model object; ports become ``"80"`` / ``"8000-8080"``."""
    if isinstance(value, PortRange):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {field.name: to_dict(getattr(value, field.name)) for field in dataclasses.fields(value)}
        if isinstance(value, Rule) and not value.source_ports:
            # Added after the first release: leaving it out when empty keeps every existing rule's
            # dictionary form, and so its hash, unchanged.
            del data["source_ports"]
        return data
    if isinstance(value, (tuple, list)):
        return [to_dict(item) for item in value]
    return value


_ENTRIES: dict[str, tuple[str, tuple[int, int, int]]] = {}
_ENTRIES_LIMIT = 1_000_000


def _memo_entry(text: str) -> tuple[str, tuple[int, int, int]]:
    """``canonical_entry``, remembered per member text: a compile builds many sets from the same addresses."""
    found = _ENTRIES.get(text) if isinstance(text, str) else None
    if found is None:
        found = canonical_entry(text)
        if len(_ENTRIES) < _ENTRIES_LIMIT:
            _ENTRIES[text] = found
    return found


def canonical_network(text: str) -> str:
    """``10.0.0.1`` -> ``10.0.0.1``; ``10.0.0.0/8`` stays; ``10.1.2.3/8`` is an error."""
    return canonical_entry(text)[0]


def canonical_entry(text: str) -> tuple[str, tuple[int, int, int]]:
    """The canonical text of an address or network and its sort key (family, first address, prefix), from one parse."""
    if not isinstance(text, str):
        raise ModelError(f"{_show(text)} is not an IP address or network: {_kind(text)}, not a string")
    stripped = text.strip()
    if len(stripped) > 64:
        raise ModelError(f"{_show(text)} is not an IP address or network: too long")
    if "%" in stripped:
        # Python takes fe80::1%eth0 (an address with a zone); no firewall set or match does.
        zone = stripped.partition("%")[2].partition("/")[0]
        raise ModelError(f"{_show(text)} has a zone (%{zone}); a firewall matches addresses without zones")
    try:
        if "/" not in stripped:
            if ":" not in stripped:
                # The common case, a dotted quad: the C parser, taken only when it prints the text back unchanged.
                with contextlib.suppress(OSError):
                    packed = socket.inet_pton(socket.AF_INET, stripped)
                    if socket.inet_ntop(socket.AF_INET, packed) == stripped:
                        return stripped, (4, int.from_bytes(packed, "big"), 32)
            # A plain address: ip_address is cheaper than ip_network and means the same /32 or /128.
            address = ipaddress.ip_address(stripped)
            return str(address), (address.version, int(address), address.max_prefixlen)
        network = ipaddress.ip_network(stripped, strict=True)
    except ValueError as error:
        # ipaddress repeats the whole text in its message: say the text once (shortened), then only the reason.
        reason = str(error).replace(repr(stripped), "it").replace(stripped, "it")
        raise ModelError(f"{_show(text)} is not an IP address or network: {_show_reason(reason)}") from error
    key = (network.version, int(network.network_address), network.prefixlen)
    return (str(network.network_address) if network.num_addresses == 1 else str(network)), key


def _show_reason(reason: str, limit: int = 120) -> str:
    """A library's error reason, cut to ``limit`` characters."""
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def _show(value: Any, limit: int = 80) -> str:
    """``repr`` of a value for a message, cut to ``limit`` characters: input may be huge or hostile."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an integer of thousands of digits, a structure nested too deep
        return _kind(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    """Plain words for a value's type in messages ("a string", "a list"), never an internal class name."""
    if value is None:
        return "null"
    for types, word in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                        (Mapping, "a mapping"), ((list, tuple), "a list")):
        if isinstance(value, types):
            return word
    return "a value of another kind"


def stable_name(prefix: str, *parts: str, length: int = 10) -> str:
    """A short deterministic name like ``zt-1a2b3c4d5e`` for a logical key."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]
    return f"{prefix}{digest}"

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

import dataclasses
import hashlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any, Optional

MODEL_VERSION = 1

HOOKS = ("input", "output", "forward", "prerouting")
"""Where a chain is attached. ``prerouting`` is the mangle table's PREROUTING, which
sees a NodePort connection before kube-proxy's nat PREROUTING rewrites it."""

VERDICTS = ("accept", "deny", "drop", "return")
PROTOCOLS = ("tcp", "udp", "sctp", "icmp", "icmpv6")
"""``icmp`` matches IPv4 only and ``icmpv6`` IPv6 only; a rule without a protocol
matches every protocol."""
CONNTRACK_STATES = ("new", "established", "related", "invalid")
PORTED_PROTOCOLS = ("tcp", "udp", "sctp")


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
        """Read ``80`` or ``"8000-8080"``."""
        value = str(text)
        first, _unused_separator, last = value.partition("-")
        try:
            return cls(int(first), int(last or first))
        except ValueError as error:
            raise ModelError(f"port {value!r} is not a number or a range like 8000-8080") from error


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
        if not self.name or not all(ch.isalnum() or ch in "-_" for ch in self.name) or len(self.name) > 24:
            raise ModelError(f"address set name {self.name!r} must be 1-24 characters of [A-Za-z0-9_-]")
        # One parse per member gives both its canonical text and its sort key (the main fixed cost of
        # building a large ruleset, e.g. in a no-op module run over 10k peers).
        entries = {canonical_entry(member) for member in self.members}
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
        if self.verdict not in VERDICTS:
            raise ModelError(f"rule verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise ModelError(f"rule protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.ports and self.protocol not in PORTED_PROTOCOLS:
            raise ModelError(f"rule {self.origin!r} has ports but protocol {self.protocol!r} has none")
        if self.source_ports and self.protocol not in PORTED_PROTOCOLS:
            raise ModelError(f"rule {self.origin!r} has source ports but protocol {self.protocol!r} has none")
        if self.icmp_types and self.protocol not in ("icmp", "icmpv6"):
            raise ModelError(f"rule {self.origin!r} has ICMP types but protocol {self.protocol!r}")
        for state in self.conntrack:
            if state not in CONNTRACK_STATES:
                raise ModelError(f"conntrack state {state!r} is not one of {', '.join(CONNTRACK_STATES)}")
        if self.family not in (None, 4, 6):
            raise ModelError(f"rule family {self.family!r} must be 4, 6 or unset")
        if (self.protocol == "icmp" and self.family == 6) or (self.protocol == "icmpv6" and self.family == 4):
            raise ModelError(f"rule {self.origin!r}: protocol {self.protocol} does not exist in IPv{self.family}")
        object.__setattr__(self, "ports", tuple(sorted(set(self.ports))))
        object.__setattr__(self, "source_ports", tuple(sorted(set(self.source_ports))))
        object.__setattr__(self, "conntrack", tuple(sorted(set(self.conntrack))))
        object.__setattr__(self, "icmp_types", tuple(sorted(set(self.icmp_types))))

    def families(self) -> tuple[int, ...]:
        """The IP families this rule exists in."""
        if self.family is not None:
            return (self.family,)
        if self.protocol == "icmp":
            return (4,)
        if self.protocol == "icmpv6":
            return (6,)
        return (4, 6)

    def match_key(self) -> str:
        """Canonical text of everything the rule matches and does, without ``origin``.

        Backends hash this (plus what they add themselves) for the rule comment, so
        the same rule from two policies has the same identity.
        """
        data = to_dict(self)
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
            raise ModelError(f"chain {self.name!r}: hook {self.hook!r} is not one of {', '.join(HOOKS)}")
        if self.default_verdict not in VERDICTS:
            raise ModelError(f"chain {self.name!r}: default verdict {self.default_verdict!r} is not one of {', '.join(VERDICTS)}")
        if not self.name or not all(ch.isalnum() or ch == "_" for ch in self.name) or len(self.name) > 16:
            raise ModelError(f"chain name {self.name!r} must be 1-16 characters of [a-z0-9_]")


@dataclasses.dataclass(frozen=True)
class Ruleset:
    """Everything we own at one enforcement point."""

    chains: tuple[Chain, ...]
    address_sets: tuple[AddressSet, ...] = ()

    def __post_init__(self) -> None:
        names = [chain.name for chain in self.chains]
        if len(set(names)) != len(names):
            raise ModelError(f"chain names repeat: {', '.join(sorted(names))}")
        set_names = {address_set.name for address_set in self.address_sets}
        if len(set_names) != len(self.address_sets):
            raise ModelError("address set names repeat")
        for chain in self.chains:
            for rule in chain.rules:
                if rule.peer_set is not None and rule.peer_set not in set_names:
                    raise ModelError(f"chain {chain.name!r}: rule {rule.origin!r} refers to unknown address set {rule.peer_set!r}")

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

    def to_dict(self) -> dict[str, Any]:
        """The canonical dictionary form (JSON-safe, deterministic order)."""
        return {"version": MODEL_VERSION, **to_dict(self)}

    def to_json(self) -> str:
        """Canonical JSON: byte-identical for equal rulesets."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ruleset:
        """Build a ruleset from its dictionary form, raising ModelError on anything off."""
        if not isinstance(data, Mapping):
            raise ModelError(f"a ruleset must be a mapping, got {type(data).__name__}")
        version = data.get("version", MODEL_VERSION)
        if version != MODEL_VERSION:
            raise ModelError(f"ruleset model version {version!r} is not supported (this collection speaks {MODEL_VERSION})")
        try:
            sets = tuple(
                AddressSet(name=item["name"], members=tuple(item.get("members", ())), comment=item.get("comment", ""))
                for item in data.get("address_sets", ())
            )
            chains = tuple(
                Chain(
                    name=chain["name"],
                    hook=chain["hook"],
                    default_verdict=chain["default_verdict"],
                    default_origin=chain.get("default_origin", "catch_all"),
                    rules=tuple(_rule_from_dict(rule) for rule in chain.get("rules", ())),
                )
                for chain in data.get("chains", ())
            )
        except (KeyError, TypeError) as error:
            raise ModelError(f"ruleset is missing or mistypes a field: {error}") from error
        return cls(chains=chains, address_sets=sets)


def _rule_from_dict(data: Mapping[str, Any]) -> Rule:
    unknown = set(data) - {field.name for field in dataclasses.fields(Rule)}
    if unknown:
        raise ModelError(f"rule has unknown fields: {', '.join(sorted(unknown))}")
    values = dict(data)
    values["ports"] = tuple(PortRange.parse(port) for port in values.get("ports", ()))
    values["source_ports"] = tuple(PortRange.parse(port) for port in values.get("source_ports", ()))
    for name in ("conntrack", "icmp_types"):
        values[name] = tuple(values.get(name, ()))
    return Rule(**values)


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


def canonical_network(text: str) -> str:
    """``10.0.0.1`` -> ``10.0.0.1``; ``10.0.0.0/8`` stays; ``10.1.2.3/8`` is an error."""
    return canonical_entry(text)[0]


def canonical_entry(text: str) -> tuple[str, tuple[int, int, int]]:
    """The canonical text of an address or network and its sort key (family, first address, prefix), from one parse."""
    stripped = str(text).strip()
    try:
        if "/" not in stripped:
            # A plain address: ip_address is cheaper than ip_network and means the same /32 or /128.
            address = ipaddress.ip_address(stripped)
            return str(address), (address.version, int(address), address.max_prefixlen)
        network = ipaddress.ip_network(stripped, strict=True)
    except ValueError as error:
        raise ModelError(f"{text!r} is not an IP address or network: {error}") from error
    key = (network.version, int(network.network_address), network.prefixlen)
    return (str(network.network_address) if network.num_addresses == 1 else str(network)), key


def stable_name(prefix: str, *parts: str, length: int = 10) -> str:
    """A short deterministic name like ``zt-1a2b3c4d5e`` for a logical key."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]
    return f"{prefix}{digest}"


def ruleset_summary(rulesets: Sequence[Ruleset]) -> dict[str, int]:
    """Totals used in module and role summaries."""
    return {
        "rules": sum(ruleset.rule_count() for ruleset in rulesets),
        "set_members": sum(ruleset.member_count() for ruleset in rulesets),
    }

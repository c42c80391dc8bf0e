# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The compiler's rule record and its one serializer into the ruleset model.

A :class:`CompiledRule` is one rule of one chain at one enforcement point, from the place
that decides it (a policy, an implicit allowance, the NodePort guard) to the model. Its
peer is a logical set key (``("policy 3", "from", "in")``); the :class:`Serializer` owns the
members gathered under each key and turns a point's chains into a validated
``model.Ruleset`` whose ``to_dict()`` is what the plan carries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import model

SetKey = tuple[str, ...]
"""The logical name of a peer set; the model's set name is derived from it, never from the members."""


@dataclasses.dataclass(frozen=True)
class CompiledRule:
    """One rule before it becomes a ``model.Rule``.

    ``protocol`` None matches every protocol; ``icmp`` in a policy rule stands for ICMP in both
    families (:func:`chain_rules` writes it as ``icmp`` and ``icmpv6``). ``peer`` is the set key
    of the remote side (None: any address). ``order`` places a policy rule in its chain (rank,
    action, index in the policy); implicit allowances have none: they keep the order they are
    written in.
    """

    verdict: str
    origin: str
    protocol: Optional[str] = None
    ports: tuple[model.PortRange, ...] = ()
    peer: Optional[SetKey] = None
    interface: Optional[str] = None
    conntrack: tuple[str, ...] = ()
    icmp_types: tuple[int, ...] = ()
    local_destination: bool = False
    order: Optional[tuple[int, int, int]] = None

    def sort_key(self) -> tuple[Any, ...]:
        """Chain order of policy rules: by ``order``, then what the rule matches, then its origin."""
        return (self.order or (), self.protocol or "", self.ports, self.peer or (), self.verdict, self.origin, self.conntrack,
                self.local_destination)

    def identity(self) -> tuple[Any, ...]:
        """What the rule matches and does, without where it comes from: the same rule from two policies is written once."""
        return (self.verdict, self.protocol, self.ports, self.peer, self.interface, self.conntrack, self.icmp_types,
                self.local_destination)


def chain_rules(rules: Iterable[CompiledRule]) -> list[CompiledRule]:
    """Policy rules in chain order, ICMP doubled for IPv6, each identity once (its first origin kept)."""
    result: list[CompiledRule] = []
    seen: set[tuple[Any, ...]] = set()
    for rule in sorted(rules, key=CompiledRule.sort_key):
        both = rule.protocol == "icmp"
        for written in (rule, dataclasses.replace(rule, protocol="icmpv6")) if both else (rule,):
            identity = written.identity()
            if identity not in seen:
                seen.add(identity)
                result.append(written)
    return result


@dataclasses.dataclass(frozen=True)
class ChainSpec:
    """A chain to write: its model name and hook, its rules in order, and how it ends."""

    name: str
    hook: str
    rules: Sequence[CompiledRule]
    default_verdict: str

    @property
    def default_origin(self) -> str:
        """What the chain's last rule says in its comment."""
        return "nodeport_guard" if self.hook == "prerouting" else "catch_all"


class Serializer:
    """Peer sets by key, and compiled rules -> ``model.Ruleset`` (validated by the model, built once per distinct part).

    Model rules and sets are built once and shared by every ruleset that uses them, and their
    dictionary forms through :attr:`memo`, which keeps compiling linear in the number of workloads.
    """

    def __init__(self) -> None:
        self.members: dict[SetKey, set[str]] = {}
        self.comments: dict[SetKey, str] = {}
        self.memo: dict[int, Any] = {}
        self._sets: dict[SetKey, model.AddressSet] = {}
        self._rules: dict[CompiledRule, model.Rule] = {}
        # Most points hold the very same rule objects (implicit allowances, a policy's egress): by identity
        # first, which spares hashing every field; the object is kept beside its rule so its id stays its own.
        self._by_id: dict[int, tuple[CompiledRule, model.Rule]] = {}

    def add_members(self, key: SetKey, comment: str, members: Iterable[str]) -> SetKey:
        """Add addresses to the set ``key`` (created on first use, with its first comment)."""
        self.members.setdefault(key, set()).update(members)
        self.comments.setdefault(key, comment)
        return key

    @staticmethod
    def set_name(key: SetKey) -> str:
        """The stable model name of a set key."""
        return model.stable_name("zt-", *key)

    def address_set(self, key: SetKey) -> model.AddressSet:
        """The model set of a key, built (and its members checked) on first use; members must be complete by then."""
        found = self._sets.get(key)
        if found is None:
            members = tuple(self.members[key])
            found = self._sets[key] = model.AddressSet(name=self.set_name(key), members=members, comment=self.comments[key])
        return found

    def model_rule(self, rule: CompiledRule) -> model.Rule:
        """The model rule of a compiled rule (built once per distinct rule)."""
        known = self._by_id.get(id(rule))
        if known is not None:
            return known[1]
        found = self._rules.get(rule)
        if found is None:
            found = self._rules[rule] = model.Rule(
                verdict=rule.verdict,
                origin=rule.origin,
                protocol=rule.protocol,
                ports=rule.ports,
                peer_set=None if rule.peer is None else self.set_name(rule.peer),
                interface=rule.interface,
                conntrack=rule.conntrack,
                local_destination=rule.local_destination,
                icmp_types=rule.icmp_types,
            )
        self._by_id[id(rule)] = (rule, found)
        return found

    def ruleset(self, chains: Sequence[ChainSpec]) -> model.Ruleset:
        """One enforcement point's ruleset; a rule whose peer set is empty is left out (it could match nothing)."""
        used: dict[SetKey, model.AddressSet] = {}
        written = []
        by_id = self._by_id
        for chain in chains:
            rules = []
            for rule in chain.rules:
                peer = rule.peer
                if peer is not None and peer not in used:
                    if not self.members.get(peer):
                        continue
                    used[peer] = self.address_set(peer)
                known = by_id.get(id(rule))  # model_rule's first step, here: this loop runs once per rule of every point
                rules.append(self.model_rule(rule) if known is None else known[1])
            written.append(model.Chain(name=chain.name, hook=chain.hook, rules=tuple(rules), default_verdict=chain.default_verdict,
                                       default_origin=chain.default_origin))
        return model.Ruleset(chains=tuple(written), address_sets=tuple(sorted(used.values(), key=lambda item: item.name)))


def inline_sets(plan: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a compiled plan whose rulesets carry their sets' members themselves, without ``sets``.

    Every ruleset goes through the model (``Ruleset.from_dict`` with its host's sets, then
    ``to_dict``), so this is also the check that the shared form resolves. For reading one
    ruleset on its own; the ``allowlist`` module takes the shared form as it is.
    Raises ``model.ModelError`` for a ruleset naming a set its host's ``sets`` lack.
    """
    hosts: dict[str, Any] = {}
    for host, entry in plan["hosts"].items():
        sets = model.sets_from_dict(entry.get("sets") or {})
        resolved = {key: value for key, value in entry.items() if key != "sets"}
        if entry.get("ruleset") is not None:
            resolved["ruleset"] = model.Ruleset.from_dict(entry["ruleset"], sets).to_dict()
        resolved["pods"] = [{**pod, "ruleset": model.Ruleset.from_dict(pod["ruleset"], sets).to_dict()} for pod in entry.get("pods", ())]
        hosts[host] = resolved
    return {**plan, "hosts": hosts}


__all__ = ["ChainSpec", "CompiledRule", "Serializer", "SetKey", "chain_rules", "inline_sets"]

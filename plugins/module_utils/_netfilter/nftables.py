# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The nftables backend: one table of our own, ``table inet zerotrust``.

Everything we own in a namespace lives in that one table, so we never have to touch
anybody else's objects (iptables-nft's ``ip filter``, kube-proxy's ``ip kube-proxy``,
Docker's tables): ``state: absent`` is ``delete table inet zerotrust`` and nothing else.

Layout of the table for a ruleset:

- one set per model address set and family: ``<set>_4`` (``type ipv4_addr``) and
  ``<set>_6`` (``type ipv6_addr``), both ``flags interval`` so networks and addresses
  mix. Members are written as merged intervals (overlapping and adjacent members
  joined; one address, an aligned prefix or an ``a-b`` range each): an interval set
  refuses overlapping elements, and the read-back is merged the same way, so the
  comparison does not depend on how nft happens to split or print intervals. This
  runs on integers, not ``ipaddress`` objects: 10,000 members cost milliseconds.
- one base chain per model chain, named like it: ``ingress`` (hook input), ``egress``
  (hook output), ``nodeport_guard`` (hook prerouting at the mangle priority -150, before
  kube-proxy's dstnat at -100 rewrites the NodePort). Input/output/forward chains sit
  at priority -10, just before the ``filter`` priority where iptables-nft's chains live.
  Chains are declared with ``policy accept`` and end with the model's default verdict
  as an explicit last rule, which carries a hash and its origin like any other rule.
  A policy of ``accept`` also means that a chain being rewritten never drops anything
  by itself, and that deleting our table can never leave a hook dropping traffic.

Verdicts in a base chain: ``drop`` and ``reject`` are final for the packet everywhere.
``accept`` only ends *this* base chain: the packet still traverses every other base
chain on the hook (iptables-nft's INPUT, kube-proxy's, the host's own tables). That is
exactly what the model's ``return`` means (leave our chain, let the host's other rules
decide), so ``return`` renders as ``accept``; a base chain has no caller to return to
(``return`` there would fall to the chain policy, which is also accept, but ``accept``
says it plainly). The same property means our ``accept`` never overrides somebody
else's drop: we only ever take traffic away.

``deny`` becomes ``drop`` or ``reject`` per ``default_action`` (tcp: ``reject with tcp
reset``; other protocols: ``reject``, i.e. ICMP(v6) port unreachable; a rule without a
protocol becomes both). In the prerouting hook ``deny`` is always ``drop``: rejecting
there needs a recent kernel and answering a guarded NodePort probe is not useful.

Idempotence and drift: every rule's comment is ``zt:<16 hex> <origin>``. The last rule
of a chain also carries ``~<16 hex>``, a digest of the hashes of all rules we wrote in
that chain, and the first element of each set carries ``zt:<16 hex>`` of the members we
wrote. A run reads ``nft -j list table inet zerotrust`` once, compares hashes per chain
and members per set, and writes only what differs, in ONE ``nft -f`` transaction
(``flush chain`` + re-add, ``flush set`` + ``add element``: atomic for packets). Live
objects that disagree with their own recorded digest were changed by hand: that is
reported as drift (and repaired like any other difference). A hand edit that keeps our
comment on a rule is not detected: hashes identify rules, they do not re-derive them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import socket
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from . import netlink
from .backend import (
    COMMENT_PREFIX,
    Backend,
    Changes,
    LiveState,
    Options,
    Plan,
    RuleEntry,
    SetEntry,
    Step,
    compare_members,
    compare_rules,
    hash_from_comment,
    members_hash,
    rule_hash,
    sanitise_origin,
)
from .errors import CommandError, NetfilterError
from .model import AddressSet, Chain, Rule, Ruleset
from .runner import Runner, tool_exists

TABLE_FAMILY = "inet"
TABLE_NAME = "zerotrust"
TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"
COMMENT_MAX = 128
"""nft refuses comments longer than 128 bytes."""

CHAIN_PRIORITIES = {"input": -10, "output": -10, "forward": -10, "prerouting": -150}
"""Base chain priority per hook (-150 is ``mangle``: before kube-proxy's dstnat -100)."""

SET_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}$")
_CHAIN_DIGEST = re.compile(r"^zt:[0-9a-f]{16} ~([0-9a-f]{16})(?: |$)")
_ORIGIN = re.compile(r"^zt:[0-9a-f]{16}(?: ~[0-9a-f]{16})?(?: (.*))?$", re.DOTALL)
_SET_MARKER = re.compile(r"^zt:([0-9a-f]{16})$")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class NftablesError(NetfilterError):
    """The nftables backend cannot render or read something."""


# --------------------------------------------------------------------------- rendering


@dataclasses.dataclass(frozen=True)
class NftRule:
    """One rule as written: ``text`` (matches and verdict), its hash and comment."""

    text: str
    hash: str
    origin: str
    chain_digest: str = ""

    @functools.cached_property
    def comment(self) -> str:
        """``zt:<hash> [~<chain digest>] <origin>``, at most 128 characters."""
        head = f"{COMMENT_PREFIX}{self.hash} " + (f"~{self.chain_digest} " if self.chain_digest else "")
        return head + sanitise_origin(self.origin)[: COMMENT_MAX - len(head)]

    def line(self) -> str:
        """The rule with its comment, as it goes after ``add rule inet zerotrust CHAIN``."""
        return f'{self.text} comment "{self.comment}"'


@dataclasses.dataclass(frozen=True)
class NftChain:
    """One base chain of our table."""

    name: str
    hook: str
    priority: int
    rules: tuple[NftRule, ...]

    @property
    def declaration(self) -> str:
        """The chain's ``{ type ... }`` body."""
        return f"{{ type filter hook {self.hook} priority {self.priority}; policy accept; }}"

    @property
    def hashes(self) -> tuple[str, ...]:
        """Rule hashes in order."""
        return tuple(rule.hash for rule in self.rules)


@dataclasses.dataclass(frozen=True)
class NftSet:
    """One set of our table: one family of one model address set, members collapsed."""

    name: str
    family: int
    members: tuple[str, ...]
    origin: str = ""

    @property
    def type(self) -> str:
        """``ipv4_addr`` or ``ipv6_addr``."""
        return SET_TYPES[self.family]

    @functools.cached_property
    def digest(self) -> str:
        """Hash of the members, recorded on the first element."""
        return members_hash(self.members)

    @property
    def declaration(self) -> str:
        """The set's ``{ type ... }`` body."""
        return f"{{ type {self.type}; flags interval; }}"

    def elements(self) -> str:
        """``{ a comment "zt:<digest>", b, ... }`` or ``""`` for an empty set."""
        if not self.members:
            return ""
        first, rest = self.members[0], self.members[1:]
        return "{ " + ", ".join((f'{first} comment "{COMMENT_PREFIX}{self.digest}"', *rest)) + " }"


@dataclasses.dataclass(frozen=True)
class NftTable:
    """Everything we want in ``table inet zerotrust``."""

    sets: tuple[NftSet, ...]
    chains: tuple[NftChain, ...]

    def chain(self, name: str) -> Optional[NftChain]:
        """The chain called ``name``, if any."""
        return next((chain for chain in self.chains if chain.name == name), None)

    def set_names(self) -> frozenset[str]:
        """Names of all our sets (a ruleset may have thousands: look them up in this)."""
        return frozenset(nft_set.name for nft_set in self.sets)


def set_object_name(model_name: str, family: int) -> str:
    """nft name of one family of a model address set: ``zt-abc`` -> ``zt-abc_4``.

    nft identifiers start with a letter; a model name that does not gets ``s`` in front.
    """
    base = model_name if model_name[:1].isalpha() else f"s{model_name}"
    name = f"{base}_{family}"
    if not _IDENTIFIER.match(name):
        raise NftablesError(f"address set name {model_name!r} cannot be an nft set name; use letters, digits, - and _")
    return name


def collapse_members(members: Iterable[str], family: int) -> tuple[str, ...]:
    """Members of one family as merged intervals, sorted, in canonical text.

    Overlapping and adjacent members are joined; each interval is written as a single
    address, an aligned prefix (``10.0.0.0/24``) or a range (``10.0.0.1-10.0.0.3``).
    Members of the other family are left out.
    """
    spans = []
    for member in members:
        if (":" in member) != (family == 6):
            continue
        spans.append(_member_span(member, family))
    return _format_spans(spans, family)


def _member_span(member: str, family: int) -> tuple[int, int]:
    bits = 32 if family == 4 else 128
    address, _slash, length = member.partition("/")
    try:
        start = int.from_bytes(socket.inet_pton(_AF[family], address), "big")
        size = 1 << (bits - int(length)) if length else 1
    except (OSError, ValueError) as error:
        raise NftablesError(f"{member!r} is not an IPv{family} address or network") from error
    start &= ~(size - 1)
    return start, start + size - 1


def _format_spans(spans: list[tuple[int, int]], family: int) -> tuple[str, ...]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple(_format_span(start, end, family) for start, end in merged)


def _format_span(start: int, end: int, family: int) -> str:
    width = 4 if family == 4 else 16
    first = socket.inet_ntop(_AF[family], start.to_bytes(width, "big"))
    if start == end:
        return first
    size = end - start + 1
    if size & (size - 1) == 0 and start % size == 0:
        return f"{first}/{width * 8 - size.bit_length() + 1}"
    return f"{first}-{socket.inet_ntop(_AF[family], end.to_bytes(width, 'big'))}"


def render_table(ruleset: Ruleset, options: Options) -> NftTable:
    """The table we want for ``ruleset`` (pure: no commands run).

    Rendered once per distinct ruleset of a run: the pods of a node share a handful of rulesets
    (one per workload and policy), and the table is immutable.
    """
    try:
        return _cached_table(ruleset, options)
    except TypeError:  # a ruleset built by a caller with a list where the model has tuples: not hashable
        return _render_table(ruleset, options)


@functools.lru_cache(maxsize=64)
def _cached_table(ruleset: Ruleset, options: Options) -> NftTable:
    return _render_table(ruleset, options)


def _render_table(ruleset: Ruleset, options: Options) -> NftTable:
    sets = [_render_set(address_set, family) for address_set in ruleset.address_sets for family in (4, 6)]
    names = [nft_set.name for nft_set in sets]
    if len(set(names)) != len(names):
        raise NftablesError(f"address set names collide once made nft names: {', '.join(sorted(names))}; rename one of them")
    return NftTable(sets=tuple(sets), chains=tuple(_render_chain(chain, options) for chain in ruleset.chains))


@functools.lru_cache(maxsize=1 << 8)
def _render_set(address_set: AddressSet, family: int) -> NftSet:
    """One family of a model set as our nft set; once per set and run (the pods of a node share their sets)."""
    members = collapse_members(address_set.family_members(family), family)
    return NftSet(set_object_name(address_set.name, family), family, members, address_set.comment)


def _render_chain(chain: Chain, options: Options) -> NftChain:
    rules: list[NftRule] = []
    for rule in chain.rules:
        rules.extend(_render_rule(rule, chain.hook, options))
    default = Rule(verdict=chain.default_verdict, origin=chain.default_origin)
    if options.log_denied and chain.default_verdict in ("deny", "drop"):
        count, _slash, unit = options.log_rate.partition("/")
        text = f'limit rate {count}/{unit} log prefix "{options.log_prefix}{chain.name} "'
        rules.append(NftRule(text, rule_hash("log_denied", chain.name, text), "log_denied"))
    rules.extend(_render_rule(default, chain.hook, options))
    # The last rule records which rules we wrote, so a hand edit can be told from a
    # policy change on the next run.
    digest = rule_hash(*(rule.hash for rule in rules))
    rules[-1] = dataclasses.replace(rules[-1], chain_digest=digest)
    return NftChain(chain.name, chain.hook, CHAIN_PRIORITIES[chain.hook], tuple(rules))


def _render_rule(rule: Rule, hook: str, options: Options) -> list[NftRule]:
    """One model rule -> one nft rule per family variant and verdict variant."""
    variants: list[Optional[int]]
    if rule.peer_set is not None:
        variants = list(rule.families())
    elif rule.family is not None:
        variants = [rule.family]
    elif rule.protocol in ("icmp", "ipip"):
        variants = [4]
    elif rule.protocol == "icmpv6":
        variants = [6]
    else:
        variants = [None]
    rendered: list[NftRule] = []
    match_key = rule.match_key()
    for family in variants:
        matches = _matches(rule, hook, family)
        for verdict in _verdicts(rule, hook, options):
            text = " ".join((*matches, verdict))
            rendered.append(NftRule(text, rule_hash(match_key, text), rule.origin))
    return rendered


def _matches(rule: Rule, hook: str, family: Optional[int]) -> list[str]:
    parts: list[str] = []
    if rule.peer_set is not None and family is not None:
        direction = "daddr" if hook == "output" else "saddr"
        parts.append(f"{'ip' if family == 4 else 'ip6'} {direction} @{set_object_name(rule.peer_set, family)}")
    elif family is not None:
        parts.append(f"meta nfproto {'ipv4' if family == 4 else 'ipv6'}")
    if rule.interface is not None:
        if not _IFNAME.match(rule.interface):
            raise NftablesError(f"rule {rule.origin!r}: interface {rule.interface!r} is not an interface name")
        parts.append(f'{"oifname" if hook == "output" else "iifname"} "{rule.interface}"')
    if rule.local_destination:
        parts.append("fib daddr type local")
    if rule.conntrack:
        parts.append("ct state " + ",".join(rule.conntrack))
    if rule.protocol in ("tcp", "udp", "sctp"):
        parts.extend(_port_matches(rule.protocol, rule))
    elif rule.protocol in ("icmp", "icmpv6"):
        keyword = "icmp" if rule.protocol == "icmp" else "icmpv6"
        if rule.icmp_types:
            types = [str(value) for value in rule.icmp_types]
            parts.append(f"{keyword} type " + (types[0] if len(types) == 1 else "{ " + ", ".join(types) + " }"))
        else:
            parts.append("meta l4proto " + ("icmp" if rule.protocol == "icmp" else "ipv6-icmp"))
    elif rule.protocol == "ipip":
        parts.append("meta l4proto 4")  # by number: nft reads 4 back as "ipencap"; "ipip" would be 94
    return parts


def _port_matches(protocol: str, rule: Rule) -> list[str]:
    """``tcp sport ...``, ``tcp dport ...``, or only the protocol when the rule names no port."""
    parts = [
        f"{protocol} {side} " + (texts[0] if len(texts) == 1 else "{ " + ", ".join(texts) + " }")
        for side, texts in (("sport", [str(port) for port in rule.source_ports]), ("dport", [str(port) for port in rule.ports]))
        if texts
    ]
    return parts or [f"meta l4proto {protocol}"]


def _verdicts(rule: Rule, hook: str, options: Options) -> list[str]:
    if rule.verdict in ("accept", "return"):
        return ["accept"]
    if rule.verdict == "drop" or options.default_action == "drop" or hook == "prerouting":
        return ["drop"]
    if rule.protocol == "tcp":
        return ["reject with tcp reset"]
    if rule.protocol is None:
        return ["meta l4proto tcp reject with tcp reset", "reject"]
    return ["reject"]


def describe_table(table: NftTable) -> str:
    """Diff-mode text of a desired table (same format as :func:`describe_live`)."""
    lines = [f"table {TABLE}"]
    for nft_set in sorted(table.sets, key=lambda item: item.name):
        lines.append(f"  set {nft_set.name} {nft_set.type} interval")
        lines.extend(f"    {member}" for member in nft_set.members)
    for chain in sorted(table.chains, key=lambda item: item.name):
        lines.append(f"  chain {chain.name} filter {chain.hook} {chain.priority} accept")
        lines.extend(f"    {rule.comment}" for rule in chain.rules)
    return "\n".join(lines) + "\n"


def script_lines(table: NftTable, change: ChangeSet) -> list[tuple[str, str]]:
    """The ``nft -f`` script for ``change`` as (line, what the line is) pairs.

    Order matters inside the one transaction: every live chain we rewrite or remove is
    flushed first, so no rule still refers to a set or chain we then delete; then
    obsolete objects are deleted, sets are filled, and chains get their rules.
    """
    lines: list[tuple[str, str]] = [(f"add table {TABLE}", f"table {TABLE}")]
    if change.rebuild:
        lines.append((f"delete table {TABLE}", f"table {TABLE}"))
        lines.append((f"add table {TABLE}", f"table {TABLE}"))
    for name in (*change.flush_chains, *change.delete_chains):
        lines.append((f"flush chain {TABLE} {name}", f"chain {name}"))
    for name in change.delete_chains:
        lines.append((f"delete chain {TABLE} {name}", f"chain {name}"))
    for name in change.delete_sets:
        lines.append((f"delete set {TABLE} {name}", f"set {name}"))
    write_sets = frozenset(change.write_sets)
    for nft_set in table.sets:
        if nft_set.name not in write_sets:
            continue
        what = f"set {nft_set.name}"
        lines.append((f"add set {TABLE} {nft_set.name} {nft_set.declaration}", what))
        lines.append((f"flush set {TABLE} {nft_set.name}", what))
        if nft_set.members:
            lines.append((f"add element {TABLE} {nft_set.name} {nft_set.elements()}", what))
    for chain in table.chains:
        if chain.name not in change.write_chains:
            continue
        # ``add chain`` creates the chain or, when it exists (flushed above), resets its policy.
        lines.append((f"add chain {TABLE} {chain.name} {chain.declaration}", f"chain {chain.name}"))
        for rule in chain.rules:
            lines.append((f"add rule {TABLE} {chain.name} {rule.line()}", rule.origin))
    return lines


def full_script(table: NftTable) -> str:
    """The script that creates ``table`` from nothing (or replaces what is there)."""
    change = ChangeSet(
        rebuild=True,
        write_sets=tuple(nft_set.name for nft_set in table.sets),
        write_chains=tuple(chain.name for chain in table.chains),
    )
    return "".join(line + "\n" for line, _what in script_lines(table, change))


# --------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class LiveRule:
    """A rule found in one of our chains: its hash (None when not ours) and handle."""

    hash: Optional[str]
    comment: str
    handle: int
    chain_digest: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class LiveChain:
    """A chain found in our table."""

    name: str
    type: Optional[str]
    hook: Optional[str]
    priority: Optional[int]
    policy: Optional[str]
    rules: tuple[LiveRule, ...]

    @property
    def hashes(self) -> tuple[Optional[str], ...]:
        """Rule hashes in order (None for rules that are not ours)."""
        return tuple(rule.hash for rule in self.rules)

    def hand_edited(self) -> bool:
        """True when the rules are not the ones we wrote last time."""
        if not self.rules or any(rule.hash is None for rule in self.rules):
            return True
        recorded = self.rules[-1].chain_digest
        return recorded != rule_hash(*(rule.hash or "" for rule in self.rules))


@dataclasses.dataclass(frozen=True)
class LiveSet:
    """A set found in our table, members in the canonical text of :func:`collapse_members`.

    Members are merged like :func:`collapse_members` and sorted, except in a set that holds
    exactly what we wrote (its element texts hash to its marker): those are taken as nft
    listed them, in nft's order, without converting a single address.
    """

    name: str
    type: str
    flags: tuple[str, ...]
    members: tuple[str, ...]
    marker: Optional[str]

    @functools.cached_property
    def digest(self) -> str:
        """Hash of the members (order-independent), to compare with a desired set's."""
        return members_hash(self.members)

    def hand_edited(self) -> bool:
        """True when the members are not the ones we wrote last time."""
        if self.marker is None:
            return bool(self.members)
        return self.marker != self.digest


@dataclasses.dataclass(frozen=True)
class LiveTable:
    """What ``nft -j list table inet zerotrust`` showed."""

    chains: dict[str, LiveChain]
    sets: dict[str, LiveSet]
    others: tuple[str, ...]
    """Objects of kinds we never create (maps, counters, flowtables...)."""
    objects: tuple[dict[str, Any], ...]
    """The listing's objects as nft printed them, for an exact restore."""


def parse_listing(text: str) -> LiveTable:
    """Parse ``nft -j list table inet zerotrust`` output."""
    try:
        data = json.loads(text)
        items = data["nftables"]
    except (ValueError, KeyError, TypeError) as error:
        raise NftablesError(f"cannot read nft's JSON listing of table {TABLE}: {error}") from error
    chains: dict[str, dict[str, Any]] = {}
    rules: dict[str, list[LiveRule]] = {}
    sets: dict[str, LiveSet] = {}
    others: list[str] = []
    objects: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        ((kind, body),) = item.items()
        if kind == "metainfo":
            continue
        objects.append(item)
        if kind == "table":
            continue
        if kind == "chain":
            chains[body["name"]] = body
            rules.setdefault(body["name"], [])
        elif kind == "rule":
            comment = str(body.get("comment", ""))
            digest = _CHAIN_DIGEST.match(comment)
            live_rule = LiveRule(hash_from_comment(comment), comment, int(body.get("handle", 0)), digest.group(1) if digest else None)
            rules.setdefault(body["chain"], []).append(live_rule)
        elif kind == "set":
            sets[body["name"]] = _parse_set(body)
        else:
            others.append(f"{kind} {body.get('name', '')}".strip())
    live_chains = {
        name: LiveChain(
            name=name,
            type=body.get("type"),
            hook=body.get("hook"),
            priority=body.get("prio"),
            policy=body.get("policy"),
            rules=tuple(rules.get(name, ())),
        )
        for name, body in chains.items()
    }
    return LiveTable(live_chains, sets, tuple(others), tuple(objects))


def _parse_set(body: dict[str, Any]) -> LiveSet:
    set_type = body.get("type")
    family = 4 if set_type == "ipv4_addr" else 6
    marker: Optional[str] = None
    values: list[Any] = []
    for element in body.get("elem", ()):
        value = element
        if isinstance(element, dict) and "elem" in element:
            match = _SET_MARKER.match(str(element["elem"].get("comment", "")))
            if match:
                marker = match.group(1)
            value = element["elem"]["val"]
        values.append(value)
    members: tuple[str, ...] = ()
    if set_type in ("ipv4_addr", "ipv6_addr"):
        # The texts nft lists are the ones we wrote when they hash to our marker: a no-op run compares
        # digests and never turns 10,000 members into integers. Anything else is merged the slow way.
        listed = tuple(_element_text(value) for value in values)
        if marker is None or "" in listed or members_hash(listed) != marker:
            listed = _format_spans([_element_span(value, family) for value in values], family)
        members = listed
    flags = body.get("flags", ())
    return LiveSet(
        name=body["name"],
        type=str(set_type),
        flags=tuple(sorted([flags] if isinstance(flags, str) else flags)),
        members=members,
        marker=marker,
    )


def _element_text(element: Any) -> str:
    """One element of nft's JSON listing as :func:`collapse_members` writes it, or ``""`` if unusual."""
    if isinstance(element, str):
        return element
    if isinstance(element, dict) and isinstance(element.get("prefix"), dict):
        return f"{element['prefix'].get('addr')}/{element['prefix'].get('len')}"
    if isinstance(element, dict) and isinstance(element.get("range"), list) and len(element["range"]) == 2:
        return f"{element['range'][0]}-{element['range'][1]}"
    return ""


def _element_span(element: Any, family: int) -> tuple[int, int]:
    """(first, last) address of one element of nft's JSON listing, as integers."""
    if isinstance(element, str):
        return _member_span(element, family)
    if isinstance(element, dict) and "prefix" in element:
        prefix = element["prefix"]
        return _member_span(f"{prefix['addr']}/{prefix['len']}", family)
    if isinstance(element, dict) and "range" in element:
        first, last = element["range"]
        return _member_span(str(first), family)[0], _member_span(str(last), family)[0]
    raise NftablesError(f"unexpected element {json.dumps(element)} in a set of table {TABLE}")


def describe_live(live: LiveTable) -> str:
    """Diff-mode text of what we found (same format as :func:`describe_table`)."""
    lines = [f"table {TABLE}"]
    for name in sorted(live.sets):
        live_set = live.sets[name]
        lines.append(f"  set {name} {live_set.type} {','.join(live_set.flags)}")
        family = 4 if live_set.type == "ipv4_addr" else 6
        # In address order, as describe_table has them (a set read as nft listed it is in nft's order).
        lines.extend(f"    {member}" for member in sorted(live_set.members, key=lambda text: _member_span(text.split("-")[0], family)))
    for name in sorted(live.chains):
        chain = live.chains[name]
        lines.append(f"  chain {name} {chain.type} {chain.hook} {chain.priority} {chain.policy}")
        for rule in chain.rules:
            foreign = " ".join(part for part in (f"handle {rule.handle}", rule.comment) if part)
            lines.append(f"    {rule.comment}" if rule.hash else f"    (not ours: {foreign})")
    lines.extend(f"  {other} (not ours)" for other in live.others)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- comparing


@dataclasses.dataclass(frozen=True)
class ChangeSet:
    """What one transaction rewrites."""

    rebuild: bool = False
    write_sets: tuple[str, ...] = ()
    write_chains: tuple[str, ...] = ()
    delete_sets: tuple[str, ...] = ()
    delete_chains: tuple[str, ...] = ()
    flush_chains: tuple[str, ...] = ()
    """Chains in ``write_chains`` that exist live (emptied before anything is deleted)."""

    @property
    def empty(self) -> bool:
        """True when nothing needs writing."""
        return not (self.rebuild or self.write_sets or self.write_chains or self.delete_sets or self.delete_chains)


def compare(table: NftTable, live: Optional[LiveTable]) -> tuple[ChangeSet, list[str]]:  # noqa: PLR0912 -- one flat pass reads best
    """What to write to make ``live`` into ``table``, and the drift found on the way."""
    if live is None:
        return full_change(table), []
    drift: list[str] = []
    rebuild = False
    if live.others:
        drift.append(f"table {TABLE} holds objects we never create: {', '.join(live.others)}")
        rebuild = True
    write_sets: list[str] = []
    for nft_set in table.sets:
        live_set = live.sets.get(nft_set.name)
        if live_set is None:
            write_sets.append(nft_set.name)
            continue
        if live_set.type != nft_set.type or live_set.flags != ("interval",):
            flags = ",".join(live_set.flags) or "-"
            drift.append(f"set {nft_set.name}: type {live_set.type} flags {flags}, expected {nft_set.type} interval")
            rebuild = True
        if live_set.hand_edited():
            drift.append(f"set {nft_set.name}: members changed by hand ({_member_delta(nft_set.members, live_set.members)})")
        expected_marker = nft_set.digest if nft_set.members else None
        if live_set.digest != nft_set.digest or live_set.marker != expected_marker:
            write_sets.append(nft_set.name)
    write_chains: list[str] = []
    for chain in table.chains:
        live_chain = live.chains.get(chain.name)
        if live_chain is None:
            write_chains.append(chain.name)
            continue
        if (live_chain.type, live_chain.hook, live_chain.priority) != ("filter", chain.hook, chain.priority):
            drift.append(
                f"chain {chain.name}: {live_chain.type} hook {live_chain.hook} priority {live_chain.priority}, "
                f"expected filter hook {chain.hook} priority {chain.priority}"
            )
            rebuild = True
        if live_chain.policy != "accept":
            drift.append(f"chain {chain.name}: policy {live_chain.policy}, expected accept")
        if live_chain.hand_edited():
            foreign = sum(1 for rule in live_chain.rules if rule.hash is None)
            drift.append(f"chain {chain.name}: rules changed by hand ({_rule_delta(chain.hashes, live_chain.hashes, foreign)})")
        live_digest = live_chain.rules[-1].chain_digest if live_chain.rules else None
        # Comments too: a rule whose origin changed keeps its hash but must say its new origin (the audit reads it).
        comments_differ = tuple(rule.comment for rule in live_chain.rules) != tuple(rule.comment for rule in chain.rules)
        digest_differs = live_digest != chain.rules[-1].chain_digest
        if live_chain.hashes != chain.hashes or live_chain.policy != "accept" or digest_differs or comments_differ:
            write_chains.append(chain.name)
    delete_chains = tuple(sorted(name for name in live.chains if table.chain(name) is None))
    wanted_sets = table.set_names()
    delete_sets = tuple(sorted(name for name in live.sets if name not in wanted_sets))
    if rebuild:
        return full_change(table), drift
    flush_chains = tuple(name for name in write_chains if name in live.chains)
    return ChangeSet(False, tuple(write_sets), tuple(write_chains), delete_sets, delete_chains, flush_chains), drift


def full_change(table: NftTable) -> ChangeSet:
    """Replace the whole table (first apply, or an object of ours with the wrong shape)."""
    return ChangeSet(True, tuple(nft_set.name for nft_set in table.sets), tuple(chain.name for chain in table.chains))


def _member_delta(expected: Sequence[str], live: Sequence[str]) -> str:
    missing = len(set(expected) - set(live))
    extra = len(set(live) - set(expected))
    return f"{missing} expected member(s) missing, {extra} unexpected"


def _rule_delta(expected: Sequence[str], live: Sequence[Optional[str]], foreign: int) -> str:
    missing = len(set(expected) - set(live))
    return f"{len(live)} rules found, {len(expected)} expected, {missing} expected rule(s) missing, {foreign} not ours"


def comment_origin(comment: str) -> str:
    """The origin in one of our rule comments (after the hash and a chain digest)."""
    match = _ORIGIN.match(comment)
    return (match.group(1) or "") if match else ""


def changes_between(table: Optional[NftTable], live: Optional[LiveTable]) -> Changes:
    """Rules and set members going from ``live`` to ``table`` (``None``: no table)."""
    changes = Changes()
    wanted_chains = {chain.name: chain for chain in table.chains} if table is not None else {}
    live_chains = live.chains if live is not None else {}
    for name in sorted({*wanted_chains, *live_chains}):
        wanted = wanted_chains.get(name)
        found = live_chains.get(name)
        changes += compare_rules(
            name,
            [RuleEntry(name, rule.hash, comment_origin(rule.comment), index) for index, rule in enumerate(wanted.rules)] if wanted else [],
            [_live_entry(name, index, rule) for index, rule in enumerate(found.rules)] if found else [],
        )
    wanted_sets = {nft_set.name: nft_set for nft_set in table.sets} if table is not None else {}
    live_sets = live.sets if live is not None else {}
    sets = tuple(_set_entry(name, wanted_sets.get(name), live_sets.get(name)) for name in sorted({*wanted_sets, *live_sets}))
    return dataclasses.replace(changes, sets=sets)


def _set_entry(name: str, wanted: Optional[NftSet], found: Optional[LiveSet]) -> SetEntry:
    if wanted is not None and found is not None and wanted.digest == found.digest:
        return SetEntry(name, 0, 0, len(found.members))
    return compare_members(name, wanted.members if wanted else None, found.members if found else None)


def _live_entry(chain: str, position: int, rule: LiveRule) -> RuleEntry:
    if rule.hash is None:
        return RuleEntry(chain, "", "", position, " ".join(part for part in (f"handle {rule.handle}", rule.comment) if part))
    return RuleEntry(chain, rule.hash, comment_origin(rule.comment), position)


# --------------------------------------------------------------------------- backend


class NftablesBackend(Backend):
    """``table inet zerotrust`` in one namespace (see the module docstring)."""

    name = "nftables"

    @classmethod
    def available(cls, runner: Runner) -> Optional[str]:
        """None when ``nft`` runs and the kernel accepts our table, else why not.

        ``nft -c`` checks a transaction with the kernel and commits nothing. It is used
        rather than ``nft list tables``, which fetches the whole ruleset (sets and all
        their elements) and costs as much as the full read.
        """
        if not tool_exists("nft"):
            return "backend nftables needs the nft command: install the nftables package"
        try:
            result = runner.run(("nft", "-c", "add", "table", TABLE_FAMILY, TABLE_NAME), check=False)
        except CommandError as error:
            return str(error)
        if result.returncode != 0:
            return f"nft cannot work in namespace {runner.namespace.label} (no nf_tables support?): {result.stderr.strip()}"
        return None

    def holds_nothing_of_ours(self) -> bool:
        """No ``table inet zerotrust``, asked over netlink without starting ``nft``."""

        def look() -> bool:
            return (netlink.NFPROTO_INET, TABLE_NAME) not in netlink.nftables_tables()

        try:
            return bool(self.runner.call_inside(look))
        except netlink.NetlinkError:
            return False

    def read(self) -> LiveState:
        """``nft -j list table inet zerotrust`` (one read; from the runner's read cache while nothing was committed)."""
        (result,) = self.runner.read_nf_tables([("nft", "-j", "list", "table", TABLE_FAMILY, TABLE_NAME)], check=False)
        if result.returncode != 0:
            if "No such file or directory" in result.stderr:
                return LiveState(present=False, raw=None)
            raise CommandError(
                f"nft -j list table {TABLE} failed in namespace {self.runner.namespace.label} (exit {result.returncode}): "
                f"{result.stderr.strip()}",
                result.argv,
                result.returncode,
                result.stderr,
            )
        return LiveState(present=True, raw=parse_listing(result.stdout))

    def render(self, desired: Ruleset) -> str:
        """Diff-mode text of the table we would write for ``desired``."""
        return describe_table(render_table(desired, self.options))

    def plan(self, desired: Optional[Ruleset], live: LiveState) -> Plan:
        """Compare by hashes and build one ``nft -f`` transaction."""
        live_table: Optional[LiveTable] = live.raw if live.present else None
        table = render_table(desired, self.options) if desired is not None else None

        def texts() -> tuple[str, str]:
            return (describe_live(live_table) if live_table is not None else ""), (describe_table(table) if table is not None else "")

        if table is None:
            steps = [self._step([(f"delete table {TABLE}", f"table {TABLE}")])] if live.present else []
            return Plan(steps=steps, drift=[], changes=changes_between(None, live_table), texts=texts)
        change, drift = compare(table, live_table)
        steps = [] if change.empty else [self._step(script_lines(table, change))]
        return Plan(steps=steps, drift=drift, changes=changes_between(table, live_table), texts=texts)

    def restore_steps(self, target: LiveState, current: LiveState) -> list[Step]:
        """Recreate our table exactly as ``target`` listed it (or remove it if it was absent).

        The JSON listing is fed back to ``nft -j -f``: every object it lists becomes an
        ``add`` command, after whatever table ``current`` holds is deleted, all in one
        transaction. ``add table`` first makes the delete safe when there is no table.
        """
        live = target
        commands: list[dict[str, Any]] = [
            {"add": {"table": {"family": TABLE_FAMILY, "name": TABLE_NAME}}},
            {"delete": {"table": {"family": TABLE_FAMILY, "name": TABLE_NAME}}},
        ]
        if live.present and isinstance(live.raw, LiveTable):
            for item in live.raw.objects:
                ((kind, body),) = item.items()
                body = {key: value for key, value in body.items() if key != "handle"}
                commands.append({"add": {kind: body}})
        payload = json.dumps({"nftables": commands}, separators=(",", ":"))
        return [Step(argv=("nft", "-j", "-f", "-"), stdin=payload, what=f"nft -j -f (restore table {TABLE})")]

    def _step(self, lines: Sequence[tuple[str, str]]) -> Step:
        return Step(
            argv=("nft", "-f", "-"),
            stdin="".join(line + "\n" for line, _what in lines),
            what=f"nft -f (table {TABLE})",
            line_origins=tuple((number, origin) for number, (_line, origin) in enumerate(lines, start=1)),
        )

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The iptables + ipset backend (legacy or nft flavour, IPv4 and IPv6).

What we own in a namespace: the chains called ``ZT-*`` in the filter and mangle
tables, the rules that jump to them from the built-in chains, and the ipsets called
``zt-*``. Nothing else is read for comparison or written.

Identity and drift: every rule's comment is ``zt:<hash> <origin>``; the hash covers
the model rule's ``match_key()`` and the rendered rule, so a no-op run compares hash
lists only. The last rule of each chain also carries ``fp=<hash>``, the hash of the
chain's whole hash list as we wrote it: a chain whose live hash list no longer
matches its own ``fp`` was changed by hand (drift), while a chain that is merely
different from a new desired ruleset is a planned change. Set entries carry the hash
of the set's members as their ipset comment, for the same reason.

Transactions: ``ipset restore`` creates sets or refills them through a temporary set
and ``swap`` (atomic for packets); one ``iptables-restore --noflush`` per family
rewrites only the chains whose hashes differ (declaring ``:ZT-X`` flushes it inside
the same commit, so there is no moment with a half-written chain) and puts our jump
rules first in their built-in chains; a last ``ipset restore`` destroys sets that no
rule references any more.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import itertools
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import ClassVar, Optional

from . import netlink
from .backend import (
    COMMENT_PREFIX,
    Backend,
    Changes,
    LiveState,
    Options,
    Plan,
    RuleEntry,
    Step,
    comment_for,
    compare_members,
    compare_rules,
    hash_from_comment,
    members_hash,
    object_chain_name,
    rule_hash,
    sanitise_origin,
    sorted_members_hash,
)
from .errors import CommandError, NetfilterError
from .model import AddressSet, Chain, Rule, Ruleset
from .runner import CommandResult, Runner, tool_exists

FAMILIES = (4, 6)
TABLES = ("filter", "mangle")
HOOKS = {
    "input": ("filter", "INPUT"),
    "output": ("filter", "OUTPUT"),
    "forward": ("filter", "FORWARD"),
    "prerouting": ("mangle", "PREROUTING"),
}
IPSET_RESTORE = ("ipset", "restore")
IPSET_LISTED_TYPE = netlink.IPSET_LISTED_TYPE
_CREATED_REVISION: dict[str, int] = {}
"""The revision ``ipset`` created a set of a type with in this process: what sets written over netlink get."""
BUILTIN_CHAINS = ("INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING")
"""The built-in chains a save lists in ``filter`` and ``mangle``: where our jumps may be."""
CHAIN_PREFIX = "ZT-"
SET_PREFIX = "zt-"
MULTIPORT_SLOTS = 15
SET_DEFAULT_MAXELEM = 65536
XTABLES_WAIT_SECONDS = "30"
_JUMP = re.compile(r"(?:^| )-[jg] (ZT-\S+)(?: |$)")
"""A jump to one of our chains, whatever characters its name has: a chain of ours with a name we
would no longer write (an older release took non-ASCII names) must still be found to be removed."""
_COMMENT = re.compile(r'--comment (?:"([^"]*)"|(\S+))')
_FINGERPRINT = re.compile(r" fp=([0-9a-f]{16})$")
_PROTOCOL_ARGUMENTS = {"icmpv6": "ipv6-icmp", "ipip": "4"}
"""Model protocols iptables knows by another name; ipip by number, as /etc/protocols names 4 "ipencap" and 94 "ipip"."""
_INTERFACE = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}\+?$")

ChainKey = tuple[int, str, str]
"""(family, table, chain)"""


@dataclasses.dataclass
class SetState:
    """One of our ipsets: its creation options, members and the member hash it records."""

    family: int
    members: tuple[str, ...]
    recorded: tuple[str, ...] = ()
    """The distinct entry comments (our member hash) found live."""
    options: str = ""
    """Everything after the name on the ``create`` line (live sets)."""


@dataclasses.dataclass
class State:
    """Our objects in one namespace, either rendered from a ruleset or parsed from a save."""

    chains: dict[ChainKey, list[str]] = dataclasses.field(default_factory=dict)
    """Rule specs (what follows ``-A CHAIN``) of our chains, in order."""
    jumps: dict[ChainKey, list[str]] = dataclasses.field(default_factory=dict)
    """Specs of the rules in a built-in chain that jump to one of ours, in order."""
    builtins: dict[ChainKey, list[str]] = dataclasses.field(default_factory=dict)
    """All rule specs of the built-in chains (live only), to see whether ours are first."""
    foreign_refs: dict[ChainKey, list[str]] = dataclasses.field(default_factory=dict)
    """Specs in foreign user chains that jump to ours (live only)."""
    sets: dict[str, SetState] = dataclasses.field(default_factory=dict)
    origins: dict[tuple[ChainKey, int], str] = dataclasses.field(default_factory=dict)
    """(chain, index) -> rule origin, for error messages (rendered only)."""
    policies: dict[ChainKey, str] = dataclasses.field(default_factory=dict)
    """Policy of each built-in chain (live only)."""
    nf_tables: set[int] = dataclasses.field(default_factory=set)
    """Families whose save came from iptables-nft (live only): there an empty base chain can be deleted."""

    @property
    def present(self) -> bool:
        """True when anything of ours exists."""
        return bool(self.chains or self.sets or any(self.jumps.values()) or any(self.foreign_refs.values()))


def ipset_name(model_name: str, family: int) -> str:
    """``zt-abc`` -> ``zt-abc-4``; names without our prefix get it."""
    base = model_name if model_name.startswith(SET_PREFIX) else SET_PREFIX + model_name
    return f"{base}-{family}"


def set_create_options(family: int, count: int) -> str:
    """``ipset create`` options for a set of ``count`` members.

    ipset's defaults (hashsize 1024, maxelem 65536) stay for sets that fit them well, so existing
    sets keep their identity; a bigger set gets a hash table sized to its members and room to
    double (a full set fails with ``Hash is full``; a set growing past its size is replaced by a
    bigger one through the same create + swap + destroy as any member change).
    """
    kind = f"hash:net family {'inet6' if family == 6 else 'inet'}"
    if count <= SET_DEFAULT_MAXELEM // 2:
        return f"{kind} comment"
    hashsize = 1 << max(count - 1, 1).bit_length()
    return f"{kind} hashsize {hashsize} maxelem {2 * hashsize} comment"


def ipset_members(members: tuple[str, ...]) -> tuple[str, ...]:
    """Members as ``hash:net`` holds them: a /0 (which it refuses) becomes two /1 halves."""
    result: list[str] = []
    for member in members:
        # Model members are canonical already: only the two default routes need work.
        if member in ("0.0.0.0/0", "::/0"):
            result.extend(str(half) for half in ipaddress.ip_network(member).subnets(prefixlen_diff=1))
        else:
            result.append(member)
    return tuple(sorted(set(result)))


@functools.lru_cache(maxsize=1 << 8)
def _set_members(address_set: AddressSet, family: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(members as the ipset holds them, the member hash recorded on them) of one set in one family.

    Once per set and run: the shared sets are the same objects in every pod ruleset of a node.
    """
    members = ipset_members(address_set.family_members(family))
    # An empty set has no entry to carry the member hash.
    return members, ((members_hash(members),) if members else ())


@dataclasses.dataclass(frozen=True)
class SpecParts:
    """What the comment of one rule spec says: its hash and origin when the rule is ours."""

    comment: Optional[str]
    hash: Optional[str]
    written: str
    """Hash and origin without the chain fingerprint (ours), or the whole spec (not ours)."""

    @property
    def key(self) -> str:
        """Comparison identity: our hash, or the whole spec of a foreign rule."""
        return self.hash if self.hash is not None else self.written


@functools.lru_cache(maxsize=1 << 16)
def spec_parts(spec: str) -> SpecParts:
    """Parse the comment of one rule spec once (a run compares every spec several times)."""
    match = _COMMENT.search(spec)
    comment = (match.group(1) if match.group(1) is not None else match.group(2)) if match else None
    found = hash_from_comment(comment) if comment is not None else None
    if comment is None or found is None:
        return SpecParts(comment, None, spec)
    return SpecParts(comment, found, _FINGERPRINT.sub("", comment))


def rule_key(spec: str) -> str:
    """Comparison identity of a rule spec: our hash, or the whole text for a foreign rule."""
    return spec_parts(spec).key


def spec_comment(spec: str) -> Optional[str]:
    """The ``--comment`` text of a rule spec, if any."""
    return spec_parts(spec).comment


def rule_written(spec: str) -> str:
    """What a rule of ours says, hash and origin (without the chain fingerprint): the comparison that
    rewrites a rule whose origin changed, so the comments an audit reads never go stale."""
    return spec_parts(spec).written


def chain_fingerprint(keys: list[str]) -> str:
    """Hash of a chain's ordered rule keys, recorded on its last rule."""
    return rule_hash("chain", *keys)


class Renderer:
    """Turns a model ruleset into our iptables/ipset objects for one set of options."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._match_keys: dict[int, str] = {}

    def _match_key(self, rule: Rule) -> str:
        # Each rule is rendered once per family: compute its canonical JSON once.
        key = self._match_keys.get(id(rule))
        if key is None:
            key = self._match_keys[id(rule)] = rule.match_key()
        return key

    def state(self, ruleset: Ruleset) -> State:
        """The complete state ``ruleset`` stands for."""
        state = State()
        for address_set in ruleset.address_sets:
            for family in FAMILIES:
                members, recorded = _set_members(address_set, family)
                state.sets[ipset_name(address_set.name, family)] = SetState(family, members, recorded)
        for family in FAMILIES:
            for chain in ruleset.chains:
                table, builtin = HOOKS[chain.hook]
                name = object_chain_name(chain.name)
                key: ChainKey = (family, table, name)
                specs: list[str] = []
                for index, (spec, origin) in enumerate(self.chain_specs(chain, family, table)):
                    specs.append(spec)
                    state.origins[(key, index)] = origin
                if specs:
                    fingerprint = chain_fingerprint([rule_key(spec) for spec in specs])
                    specs[-1] = specs[-1].replace('" -j ', f' fp={fingerprint}" -j ', 1)
                state.chains[key] = specs
                jump_comment = comment_for(rule_hash("jump", table, builtin, name), f"jump {chain.name}")
                state.jumps.setdefault((family, table, builtin), []).append(f'-m comment --comment "{jump_comment}" -j {name}')
        return state

    def chain_specs(self, chain: Chain, family: int, table: str) -> list[tuple[str, str]]:
        """(spec, origin) of every rule of ``chain`` in ``family``, the default last."""
        direction = "dst" if chain.hook == "output" else "src"
        result: list[tuple[str, str]] = []
        for rule in chain.rules:
            if family not in rule.families():
                continue
            for matches in self.rule_matches(rule, family, direction):
                for target_matches, target in self.targets(rule.verdict, rule.protocol, family, table):
                    result.append((self._spec(self._match_key(rule), matches + target_matches, target, rule.origin), rule.origin))
        default_key = f"default:{chain.default_verdict}"
        if self.options.log_denied and chain.default_verdict in ("deny", "drop"):
            count, _unused_separator, unit = self.options.log_rate.partition("/")
            log = f'-j LOG --log-prefix "{self.options.log_prefix}"'
            limit = f"-m limit --limit {count}/{unit} --limit-burst {count}"
            result.append((self._spec(default_key + ":log", limit, log, chain.default_origin + " log"), chain.default_origin))
        for target_matches, target in self.targets(chain.default_verdict, None, family, table):
            result.append((self._spec(default_key, target_matches, target, chain.default_origin), chain.default_origin))
        return result

    def rule_matches(self, rule: Rule, family: int, direction: str) -> list[str]:
        """The match part(s) of one model rule; several when ports or ICMP types need splitting."""
        parts: list[str] = []
        if rule.interface:
            if not _INTERFACE.match(rule.interface):
                raise NetfilterError(f"rule {sanitise_origin(rule.origin)!r}: interface {rule.interface!r} is not an interface name "
                                     "(1-15 characters of letters, digits, . _ - @ : and a trailing + wildcard)")
            parts.append(("-o " if direction == "dst" else "-i ") + rule.interface)
        protocol = rule.protocol
        if protocol:
            parts.append(f"-p {_PROTOCOL_ARGUMENTS.get(protocol, protocol)}")
        parts.extend(self._source_port_matches(rule))
        variants: list[str] = [""]
        if rule.ports:
            variants = [self._port_match(protocol or "", chunk) for chunk in _port_chunks(rule)]
        elif rule.icmp_types:
            # The model takes ICMP types from JSON: make sure they are numbers before they reach a restore file.
            if not all(isinstance(icmp_type, int) and not isinstance(icmp_type, bool) for icmp_type in rule.icmp_types):
                raise NetfilterError(f"rule {sanitise_origin(rule.origin)!r}: ICMP types {list(rule.icmp_types)!r} must be numbers")
            if family == 4:
                variants = [f"-m icmp --icmp-type {icmp_type}" for icmp_type in rule.icmp_types]
            else:
                variants = [f"-m icmp6 --icmpv6-type {icmp_type}" for icmp_type in rule.icmp_types]
        tail: list[str] = []
        if rule.peer_set:
            tail.append(f"-m set --match-set {ipset_name(rule.peer_set, family)} {direction}")
        if rule.local_destination:
            tail.append("-m addrtype --dst-type LOCAL")
        if rule.conntrack:
            tail.append("-m conntrack --ctstate " + ",".join(state.upper() for state in rule.conntrack))
        return [" ".join(part for part in [*parts, variant, *tail] if part) for variant in variants]

    def _source_port_matches(self, rule: Rule) -> list[str]:
        """The source-port match of ``rule`` (at most 15 ports: the management allowance has one), or none."""
        if not rule.source_ports:
            return []
        return [self._port_match(rule.protocol or "", [str(port).replace("-", ":") for port in rule.source_ports], "s")]

    @staticmethod
    def _port_match(protocol: str, chunk: list[str], side: str = "d") -> str:
        if len(chunk) == 1:
            return f"-m {protocol} --{side}port {chunk[0]}"
        return f"-m multiport --{side}ports {','.join(chunk)}"

    def targets(self, verdict: str, protocol: Optional[str], family: int, table: str) -> list[tuple[str, str]]:
        """(extra matches, target) pairs for a verdict; reject without protocol needs two rules."""
        if verdict == "accept":
            return [("", "-j ACCEPT")]
        if verdict == "return":
            return [("", "-j RETURN")]
        if verdict == "drop" or self.options.default_action == "drop" or table != "filter":
            # REJECT exists only in the filter table.
            return [("", "-j DROP")]
        unreachable = "icmp-port-unreachable" if family == 4 else "icmp6-port-unreachable"
        if protocol == "tcp":
            return [("", "-j REJECT --reject-with tcp-reset")]
        if protocol is None:
            return [("-p tcp", "-j REJECT --reject-with tcp-reset"), ("", f"-j REJECT --reject-with {unreachable}")]
        return [("", f"-j REJECT --reject-with {unreachable}")]

    @staticmethod
    @functools.lru_cache(maxsize=1 << 14)
    def _spec(match_key: str, matches: str, target: str, origin: str) -> str:
        # Cached: the pods of a node share most rules (a hash and a sanitised comment each, per family).
        body = f"{matches} {target}".strip()
        comment = comment_for(rule_hash(match_key, body), origin)
        return f'{matches} -m comment --comment "{comment}" {target}'.strip()


def _port_chunks(rule: Rule) -> list[list[str]]:
    """Ports as multiport accepts them: at most 15 slots per rule, a range takes two."""
    chunks: list[list[str]] = [[]]
    used = 0
    for port in rule.ports:
        text = str(port).replace("-", ":")
        cost = 1 if port.first == port.last else 2
        if used + cost > MULTIPORT_SLOTS:
            chunks.append([])
            used = 0
        chunks[-1].append(text)
        used += cost
    return chunks


def parse_save(text: str, family: int, state: State) -> None:
    """Add what ``iptables-save`` output ``text`` holds of ours (filter and mangle) to ``state``."""
    table = ""
    for line in text.splitlines():
        if line.startswith("# Generated by") and "(nf_tables)" in line:
            state.nf_tables.add(family)
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if table not in TABLES:
            continue
        if line.startswith(":"):
            chain = line[1:].split(" ", 1)[0]
            if chain.startswith(CHAIN_PREFIX):
                state.chains.setdefault((family, table, chain), [])
            elif chain in BUILTIN_CHAINS:
                state.builtins.setdefault((family, table, chain), [])
                state.policies[(family, table, chain)] = line[1:].split(" ")[1] if " " in line else ""
            continue
        if not line.startswith("-A "):
            continue
        chain, _unused_separator, spec = line[3:].partition(" ")
        key: ChainKey = (family, table, chain)
        if chain.startswith(CHAIN_PREFIX):
            state.chains.setdefault(key, []).append(spec)
        elif key in state.builtins:
            state.builtins[key].append(spec)
            if _JUMP.search(spec):
                state.jumps.setdefault(key, []).append(spec)
        elif _JUMP.search(spec):
            state.foreign_refs.setdefault(key, []).append(spec)


# Anchored on the newline before the line (the text gets one in front), not on ``^`` with MULTILINE: a pattern
# that starts with a literal lets the regex engine skip ahead to it, ten times faster over a big save.
_IPSET_CREATE = re.compile(rf"\ncreate ({SET_PREFIX}\S*) ([^\n]*)")
_IPSET_ADD = re.compile(rf"\nadd ({SET_PREFIX}\S*) (\S+)([^\n]*)")


def parse_ipset_save(text: str, state: State) -> None:
    """Add our sets (``zt-*``) from ``ipset save`` output to ``state``.

    A pod namespace holds copies of its node's shared sets (thousands of entries): the lines are
    picked out by two regular expressions, and each set's distinct entry tails (what carries our
    member hash) are read once per set, not once per entry.
    """
    listings: dict[str, netlink.IpsetListing] = {}
    tails: dict[str, set[str]] = {}
    text = "\n" + text
    for name, options in _IPSET_CREATE.findall(text):
        listings[name] = netlink.IpsetListing(options, [], set())
        tails[name] = set()
    entries = _IPSET_ADD.findall(text)
    if entries:
        names, found_members, found_tails = zip(*entries)  # noqa: B905  (strict= needs 3.10; hosts run 3.9)
        start = 0
        # ipset save lists a set's entries together: one slice per run of a name, not a step per entry.
        for name, run in itertools.groupby(names):
            end = start + sum(1 for _unused in run)
            if name in listings:
                listings[name].members.extend(found_members[start:end])
                tails[name].update(found_tails[start:end])
            start = end
    for name, listing in listings.items():
        listing.comments.update(_entry_comment(tail) for tail in tails[name])
    add_ipset_listings(listings, state)


def add_ipset_listings(listings: Mapping[str, netlink.IpsetListing], state: State) -> None:
    """Add our sets to ``state`` as ``ipset save`` lists them (parsed from its text, or asked over netlink)."""
    for name, listing in listings.items():
        family = 6 if " family inet6" in f" {listing.options}" else 4
        marks = tuple(sorted(listing.comments))
        ordered = sorted(listing.members)
        if len(marks) == 1 and marks[0] and sorted_members_hash(ordered) == marks[0]:
            # Exactly the members we wrote (their hash is the one we recorded): already canonical, no re-parse.
            canonical = tuple(ordered)
        else:
            canonical = tuple(sorted({_canonical_member(member) for member in listing.members}))
        state.sets[name] = SetState(family, canonical, marks, listing.options)


def _entry_comment(tail: str) -> str:
    """The ``comment "..."`` of one ipset entry (what follows its member), or ``""``."""
    start = tail.find('comment "') + len('comment "')
    end = tail.find('"', start) if start >= len('comment "') else -1
    return tail[start:end] if end >= 0 else ""


def _canonical_member(member: str) -> str:
    if ":" not in member:
        # ipset prints IPv4 exactly as the model writes it (no /32, no leading zeros).
        return member
    network = ipaddress.ip_network(member, strict=False)
    return str(network.network_address) if network.num_addresses == 1 else str(network)


def render_text(state: State) -> str:
    """Diff-mode text of our objects: sets, then per family and table the jumps and chains."""
    lines: list[str] = []
    for name in sorted(state.sets):
        found = state.sets[name]
        lines.append(f"ipset {name} ({'inet6' if found.family == 6 else 'inet'}): {' '.join(found.members) or '(empty)'}")
    for family in FAMILIES:
        for table in TABLES:
            block: list[str] = []
            for (jump_family, jump_table, builtin), specs in sorted(state.jumps.items()):
                if (jump_family, jump_table) == (family, table):
                    block.extend(f"-A {builtin} {spec}" for spec in specs)
            for (chain_family, chain_table, chain), specs in sorted(state.chains.items()):
                if (chain_family, chain_table) == (family, table):
                    block.append(f":{chain}")
                    block.extend(f"-A {chain} {spec}" for spec in specs)
            if block:
                lines.append(f"# IPv{family} {table}")
                lines.extend(block)
    return "\n".join(lines) + ("\n" if lines else "")


class IptablesBackend(Backend):
    """iptables/ip6tables with ipset, through the host's default ``iptables`` alternative."""

    name: ClassVar[str] = "iptables"
    tool_prefix: ClassVar[str] = ""
    """``-legacy`` or ``-nft`` to pin a flavour; empty for the host's default."""

    def __init__(self, runner: Runner, options: Options) -> None:
        super().__init__(runner, options)
        self.renderer = Renderer(options)
        # A kernel booted with ipv6.disable=1 has no ip6tables tables to read or write.
        self.families = FAMILIES if os.path.exists("/proc/net/if_inet6") else (4,)

    @classmethod
    def tools(cls, family: int) -> tuple[str, str]:
        """(save, restore) commands of one family."""
        base = "iptables" if family == 4 else "ip6tables"
        return f"{base}{cls.tool_prefix}-save", f"{base}{cls.tool_prefix}-restore"

    @classmethod
    def available(cls, runner: Runner) -> Optional[str]:
        """Why this backend cannot run, or None."""
        missing = [tool for family in FAMILIES for tool in cls.tools(family) if not tool_exists(tool)]
        if not tool_exists("ipset"):
            missing.append("ipset")
        if missing:
            return f"backend {cls.name} needs {', '.join(missing)}: install the iptables and ipset packages"
        return None

    def read(self) -> LiveState:
        """Two saves (IPv4, IPv6) and our ipsets as ``ipset save`` lists them: reads only.

        The ipsets are asked of the kernel over netlink (``netlink.ipset_list``: what ``ipset save`` would
        list, without a process in every pod namespace on every read); ``ipset save`` runs where netlink
        cannot answer.
        """
        state = State()
        saves = [(self.tools(family)[0],) for family in self.families]
        for family, result in zip(self.families, self._run_saves(saves)):  # noqa: B905  (strict= needs 3.10; hosts run 3.9)
            parse_save(result.stdout, family, state)
        listings = self.runner.read_netlink(functools.partial(netlink.ipset_list, SET_PREFIX))
        if listings is None:
            parse_ipset_save(self.runner.run(["ipset", "save"]).stdout, state)
        else:
            add_ipset_listings(listings, state)
        return LiveState(present=state.present, raw=state)

    def _run_saves(self, saves: Sequence[Sequence[str]]) -> list[CommandResult]:
        """The families' saves, each a command of its own."""
        return [self.runner.run(save) for save in saves]

    def render(self, desired: Ruleset) -> str:
        """Diff-mode text of ``desired``."""
        return render_text(self.desired_state(desired))

    def desired_state(self, desired: Ruleset) -> State:
        """Our objects for ``desired`` in the families this host has."""
        try:
            state = _copy(_rendered(desired, self.options))
        except TypeError:  # a ruleset built by a caller with a list where the model has tuples: not hashable
            state = self.renderer.state(desired)
        if self.families != FAMILIES:
            state.chains = {key: specs for key, specs in state.chains.items() if key[0] in self.families}
            state.jumps = {key: specs for key, specs in state.jumps.items() if key[0] in self.families}
            state.sets = {name: found for name, found in state.sets.items() if found.family in self.families}
        return state

    def plan(self, desired: Optional[Ruleset], live: LiveState) -> Plan:
        """Compare by hashes and build the transaction (``desired=None``: remove ours)."""
        return self._plan(desired, live.raw)

    def create_plan(self, desired: Ruleset) -> Plan:
        """The plan from an empty read, for the first write into a namespace that holds nothing of ours.

        Its transaction is the one :meth:`plan` builds from an empty read, except that our chains are created
        with ``-N``, which fails when the chain exists: ``ipset restore`` already refuses to ``create`` a set
        that exists. If anything of ours is there after all, a step fails; a ``-N`` fails its whole
        ``iptables-restore`` (one transaction), and the sets a failed ``ipset restore`` made before the
        failing line are ours and right, so reading and applying the usual way after it converges.
        """
        return self._plan(desired, State(), create_only=True)

    def _plan(self, desired: Optional[Ruleset], current: State, *, create_only: bool = False) -> Plan:
        target = self.desired_state(desired) if desired is not None else State()
        drift = find_drift(target, current) if desired is not None else []
        steps = self.transaction(target, current, create_only=create_only)

        def texts() -> tuple[str, str]:
            # Built-in chains without any jump of ours are of no interest to the diff.
            return render_text(_ours_only(current)), render_text(_diff_after(target, current))

        return Plan(steps=steps, drift=drift, changes=changes_between(target, current), texts=texts)

    def apply(self, steps: Sequence[Step]) -> None:
        """Run ``steps`` in order; our ``ipset restore`` scripts are written over netlink where they can be.

        A pod's first write creates copies of its node's shared sets, a thousand entries and more: ``ipset restore``
        is a process that parses them as text, a third of the CPU of the pod's whole write. The script's messages are
        built once per script text (the pods of a node get the same one) and sent in the pod's namespace. The sets are
        created with the revision ``ipset`` itself used for a set in this run (an ``ipset`` older than the kernel
        cannot list a set of a newer revision), so the first script of a run goes to ``ipset restore``; so does every
        script where netlink cannot be used. The steps themselves stay commands: the rollback watchdog runs them.
        """
        for step in steps:
            if step.argv == IPSET_RESTORE and self._write_sets(step):
                continue
            super().apply([step])
            if step.argv == IPSET_RESTORE and IPSET_LISTED_TYPE not in _CREATED_REVISION:
                self._learn_revision(step)

    def _write_sets(self, step: Step) -> bool:
        """Write an ``ipset restore`` step over netlink; False when it must go to ``ipset restore``."""
        revision = _CREATED_REVISION.get(IPSET_LISTED_TYPE)
        if revision is None:
            return False
        try:
            writes = netlink.ipset_writes(step.stdin, revision)
            return bool(self.runner.write_netlink(functools.partial(netlink.ipset_write, writes)))
        except netlink.IpsetRefusedError as refused:
            error = CommandError(f"ipset restore over netlink failed in namespace {self.runner.namespace.label}: {refused}",
                                 step.argv, 1, f"ipset (netlink): {refused}")
            raise self.step_failed(step, error) from error
        except netlink.NetlinkError:
            return False

    def _learn_revision(self, step: Step) -> None:
        """Remember the revision of a set ``ipset restore`` just created (see :meth:`apply`)."""
        created = next((line.split(" ", 2)[1] for line in step.stdin.splitlines() if line.startswith("create ")), None)
        if created is None:
            return
        try:
            revision = self.runner.call_inside(functools.partial(netlink.ipset_revision, created))
        except netlink.NetlinkError:
            return
        if revision is not None:
            _CREATED_REVISION[IPSET_LISTED_TYPE] = revision

    def restore_steps(self, target: LiveState, current: LiveState) -> list[Step]:
        """Take our objects from ``current`` back to ``target`` (both parsed saves)."""
        return self.transaction(_ours_only(target.raw), current.raw)

    def nothing_of_ours(self) -> LiveState:
        """What :meth:`read` returns in a namespace without any chain, jump or set of ours."""
        return LiveState(present=False, raw=State())

    def transaction(self, target: State, current: State, *, create_only: bool = False) -> list[Step]:
        """The steps taking ``current`` to ``target``: set updates, rules per family, set removals.

        ``create_only``: ``current`` is assumed empty and every chain is created with ``-N`` (see :meth:`create_plan`).
        """
        steps: list[Step] = []
        set_lines, line_origins, member_runs = _set_update_lines(target, current)
        if set_lines:
            steps.append(Step(IPSET_RESTORE, "\n".join(set_lines) + "\n", "ipset restore", line_origins, member_runs))
        for family in self.families:
            restore_input, origins = _rules_restore(target, current, family, create_only=create_only)
            if restore_input:
                _unused_save, restore = self.tools(family)
                what = f"{restore} (IPv{family})"
                steps.append(Step((restore, "-w", XTABLES_WAIT_SECONDS, "--noflush"), restore_input, what, origins))
        # Temporary sets the update already destroyed (left over by an interrupted run) are not destroyed twice.
        destroyed = {line.split(" ", 1)[1] for line in set_lines if line.startswith("destroy ")}
        doomed = sorted(name for name in current.sets if name not in target.sets and name not in destroyed)
        if doomed:
            steps.append(Step(IPSET_RESTORE, "".join(f"destroy {name}\n" for name in doomed), "ipset destroy"))
        return steps


@functools.lru_cache(maxsize=64)
def _rendered(ruleset: Ruleset, options: Options) -> State:
    """Our objects for ``ruleset``, rendered once per distinct ruleset of a run (the pods of a node share a
    handful: one per workload and policy). Never handed out as is: see :func:`_copy`."""
    return Renderer(options).state(ruleset)


def _copy(state: State) -> State:
    """A state whose mappings the caller may change (the rule lists and set states in them are never changed)."""
    return dataclasses.replace(state, chains=dict(state.chains), jumps=dict(state.jumps), sets=dict(state.sets),
                               origins=dict(state.origins))


class IptablesLegacyBackend(IptablesBackend):
    """iptables-legacy (the x_tables kernel interface)."""

    name: ClassVar[str] = "iptables-legacy"
    tool_prefix: ClassVar[str] = "-legacy"


class IptablesNftBackend(IptablesBackend):
    """iptables-nft (the iptables syntax over nf_tables)."""

    name: ClassVar[str] = "iptables-nft"
    tool_prefix: ClassVar[str] = "-nft"

    def _run_saves(self, saves: Sequence[Sequence[str]]) -> list[CommandResult]:
        """The saves print nf_tables objects only: answered from the runner's read cache while nothing was committed."""
        return self.runner.read_nf_tables(saves)

    def holds_nothing_of_ours(self) -> bool:
        """No ``filter`` or ``mangle`` table of iptables-nft (nf_tables families ip, ip6) and no ``zt-*`` ipset.

        Asked over netlink, without the two saves and ``ipset save`` of :meth:`read`. Our chains and jumps
        can only live in those tables; a namespace where nothing ever ran iptables has no table at all.
        """

        def look() -> bool:
            tables = netlink.nftables_tables()
            if any(family in (netlink.NFPROTO_IPV4, netlink.NFPROTO_IPV6) and name in TABLES for family, name in tables):
                return False
            return not any(name.startswith(SET_PREFIX) for name in netlink.ipset_names())

        try:
            return bool(self.runner.call_inside(look))
        except netlink.NetlinkError:
            return False

    def holding_exactly(self, desired: Ruleset) -> Optional[LiveState]:
        """Our chains, jumps and sets asked of the kernel over netlink (:func:`holds_exactly`), instead of the two saves.

        The state returned is ``desired``'s own: where the namespace holds it exactly, a read differs from it only in
        what :meth:`plan` does not compare (a foreign rule below our jumps, the tools' spelling of our rules).
        """
        target = self.desired_state(desired)

        def look() -> Optional[bool]:
            # Counted as a netlink read (one that stood for the saves) only where it answers for them.
            return True if holds_exactly(target, self.families) else None

        if not self.runner.read_netlink(look):
            return None
        target.nf_tables.update(self.families)
        # The built-in chains begin with our jumps (what was looked at); the rules below them are not compared.
        target.builtins = {key: list(specs) for key, specs in target.jumps.items()}
        return LiveState(present=target.present, raw=target)


def holds_exactly(target: State, families: Sequence[int]) -> bool:
    """Whether this thread's namespace holds exactly ``target``'s objects of ours, asked over netlink (iptables-nft).

    What :meth:`IptablesBackend.transaction` compares, compared the same way or stricter: the chains of ours in
    each family's ``filter`` and ``mangle`` tables (no more, no fewer), each chain's rules by their comments in
    order (fingerprint included), our jumps in the built-in chains (every rule there that jumps to a chain of
    ours, and the first rules of the chain, by their comments), and our ipsets (names, members, the member hash
    they record). Raises :class:`netlink.NetlinkError` where the kernel cannot be asked.
    """
    for family in families:
        number = netlink.NFPROTO_IPV4 if family == 4 else netlink.NFPROTO_IPV6
        for table in TABLES:
            wanted = {key[2]: specs for key, specs in target.chains.items() if key[:2] == (family, table)}
            jumps = {key[2]: specs for key, specs in target.jumps.items() if key[:2] == (family, table)}
            chains = {name for _family, _table, name in netlink.nftables_chains(number, table)}
            if {name for name in chains if name.startswith(CHAIN_PREFIX)} != set(wanted):
                return False
            live: dict[str, list[netlink.RuleSummary]] = {}
            for rule in netlink.iptables_rules(number, table) if chains else ():
                live.setdefault(rule.chain, []).append(rule)
            for name, specs in wanted.items():
                if [rule.comment for rule in live.get(name, ())] != [spec_comment(spec) for spec in specs]:
                    return False
            for builtin in BUILTIN_CHAINS:
                comments = [spec_comment(spec) for spec in jumps.get(builtin, ())]
                rules = live.get(builtin, [])
                ours = [rule.comment for rule in rules if rule.jump is not None and rule.jump.startswith(CHAIN_PREFIX)]
                if ours != comments or [rule.comment for rule in rules[: len(comments)]] != comments:
                    return False
    found = State()
    add_ipset_listings(netlink.ipset_list(SET_PREFIX), found)
    if set(found.sets) != set(target.sets):
        return False
    return all((found.sets[name].members, found.sets[name].recorded) == (wanted.members, wanted.recorded)
               for name, wanted in target.sets.items())


def _ours_only(state: State) -> State:
    return dataclasses.replace(state, builtins={}, foreign_refs={})


def chain_label(key: ChainKey) -> str:
    """The name a chain of ours (or a built-in chain holding our jump) has in a plan: ``IPv4 filter ZT-INGRESS``."""
    family, table, chain = key
    return f"IPv{family} {table} {chain}"


@functools.lru_cache(maxsize=1 << 14)
def rule_entry(chain: str, position: int, spec: str) -> RuleEntry:
    """A rule spec as a plan entry: hash and origin from our comment (``fp=`` left out), or the spec when not ours.

    Entries are frozen: the pods of a node share most rules at the same places, so each is built once per run.
    """
    parts = spec_parts(spec)
    if parts.hash is None:
        return RuleEntry(chain, "", "", position, " ".join(spec.split()))
    return RuleEntry(chain, parts.hash, parts.written[len(COMMENT_PREFIX) + len(parts.hash) :].strip(), position)


def changes_between(target: State, current: State) -> Changes:
    """Rules (our chains and our jumps) and set members going from ``current`` to ``target``."""
    changes = Changes()
    for kind in ("jumps", "chains"):
        wanted: dict[ChainKey, list[str]] = getattr(target, kind)
        found: dict[ChainKey, list[str]] = getattr(current, kind)
        for key in sorted({*wanted, *found}):
            label = chain_label(key)
            changes += compare_rules(
                label,
                [rule_entry(label, index, spec) for index, spec in enumerate(wanted.get(key, ()))],
                [rule_entry(label, index, spec) for index, spec in enumerate(found.get(key, ()))],
            )
    sets = tuple(
        compare_members(name, _members(target.sets.get(name)), _members(current.sets.get(name)))
        for name in sorted({*target.sets, *current.sets})
    )
    return dataclasses.replace(changes, sets=sets)


def _members(found: Optional[SetState]) -> Optional[tuple[str, ...]]:
    return found.members if found is not None else None


def _set_update_lines(
    target: State, current: State
) -> tuple[list[str], tuple[tuple[int, str], ...], tuple[tuple[int, str, tuple[str, ...]], ...]]:
    """``ipset restore`` lines creating or refilling the sets that differ, with their origins (see ``Step``)."""
    lines: list[str] = []
    origins: list[tuple[int, str]] = []
    runs: list[tuple[int, str, tuple[str, ...]]] = []
    for name in sorted(target.sets):
        wanted = target.sets[name]
        live = current.sets.get(name)
        record = wanted.recorded[0] if len(wanted.recorded) == 1 else ""
        if live is not None and live.members == wanted.members and live.recorded == wanted.recorded:
            continue
        options = wanted.options or set_create_options(wanted.family, len(wanted.members))
        options = re.sub(r" initval 0x[0-9a-f]+", "", options)
        fill = name if live is None else f"{name}n"
        if live is not None and fill in current.sets:
            # A temporary set left by an interrupted run: ``create -exist`` refuses it when its size differs.
            lines.append(f"destroy {fill}")
        origins.append((len(lines) + 1, f"set {name}"))
        lines.append(f"create {fill} {options}" + (" -exist" if live is not None else ""))
        if live is not None:
            lines.append(f"flush {fill}")
        runs.append((len(lines) + 1, name, wanted.members))
        lines.extend(_add_lines(fill, wanted.members, record))
        if live is not None:
            lines.append(f"swap {fill} {name}")
            lines.append(f"destroy {fill}")
    return lines, tuple(origins), tuple(runs)


@functools.lru_cache(maxsize=1 << 8)
def _add_lines(fill: str, members: tuple[str, ...], record: str) -> tuple[str, ...]:
    """The ``add`` lines filling ``fill`` with ``members``, in their order.

    Once per set and run: the pods of a node get the same shared sets, written the same way into each namespace.
    """
    tail = f' comment "{record}"' if record else ""
    return tuple(f"add {fill} {member}{tail}" for member in members)


def _rules_restore(target: State, current: State, family: int, *, create_only: bool = False) -> tuple[str, tuple[tuple[int, str], ...]]:
    """``iptables-restore --noflush`` input for one family, or "" when nothing differs.

    A chain is declared with ``:CHAIN - [0:0]``, which under ``--noflush`` creates it or empties it;
    ``create_only`` declares it with ``-N CHAIN`` instead, which fails (and with it the whole restore) when it exists.
    """
    lines: list[str] = []
    origins: list[tuple[int, str]] = []
    for table in TABLES:
        declare: list[str] = []
        delete: list[str] = []
        append: list[str] = []
        insert: list[str] = []
        remove: list[str] = []
        append_origins: list[tuple[int, str]] = []
        target_chains = {key: specs for key, specs in target.chains.items() if key[:2] == (family, table)}
        current_chains = {key: specs for key, specs in current.chains.items() if key[:2] == (family, table)}
        for key, specs in sorted(target_chains.items()):
            live = current_chains.get(key)
            if live is not None and [rule_written(spec) for spec in live] == [rule_written(spec) for spec in specs]:
                continue
            declare.append(f"-N {key[2]}" if create_only else f":{key[2]} - [0:0]")
            for index, spec in enumerate(specs):
                append_origins.append((len(append), target.origins.get((key, index), f"{key[2]} rule {index + 1}")))
                append.append(f"-A {key[2]} {spec}")
        doomed_chains = sorted(key for key in current_chains if key not in target_chains)
        builtins = {key for key in (*target.jumps, *current.jumps) if key[:2] == (family, table)}
        for key in sorted(builtins):
            wanted = target.jumps.get(key, [])
            live_jumps = current.jumps.get(key, [])
            head = current.builtins.get(key, live_jumps)[: len(wanted)]
            wanted_keys = [rule_written(spec) for spec in wanted]
            if [rule_written(spec) for spec in live_jumps] == wanted_keys and [rule_written(spec) for spec in head] == wanted_keys:
                continue
            delete.extend(f"-D {key[2]} {spec}" for spec in live_jumps)
            insert.extend(f"-I {key[2]} {position} {spec}" for position, spec in enumerate(wanted, start=1))
        doomed_names = {key[2] for key in doomed_chains}
        for key, specs in sorted(current.foreign_refs.items()):
            if key[:2] == (family, table):
                # A foreign rule that jumps to a chain we remove would make the removal fail.
                delete.extend(f"-D {key[2]} {spec}" for spec in specs if _jump_target(spec) in doomed_names)
        # Every doomed chain is emptied before any is deleted: one of ours may jump into another (a hand edit,
        # a crashed run), and a chain still referenced cannot be deleted.
        remove.extend(f"-F {key[2]}" for key in doomed_chains)
        remove.extend(f"-X {key[2]}" for key in doomed_chains)
        remove.extend(f"-X {key[2]}" for key in _emptied_base_chains(target, current, family, table))
        body = declare + delete + append + insert + remove
        if not body:
            continue
        lines.append(f"*{table}")
        offset = len(lines) + len(declare) + len(delete)
        origins.extend((offset + index + 1, origin) for index, origin in append_origins)
        lines.extend(body)
        lines.append("COMMIT")
    if not lines:
        return "", ()
    return "\n".join(lines) + "\n", tuple(origins)


def _emptied_base_chains(target: State, current: State, family: int, table: str) -> list[ChainKey]:
    """Built-in chains that hold only our jumps, which this transaction removes (iptables-nft only).

    iptables-nft creates a base chain (an nftables hook) the first time a rule goes into it,
    so in a namespace that had none, our jump is what created it: once the jump goes, an
    empty base chain with policy ACCEPT is left that filters nothing. Deleting it (``-X`` of
    a built-in chain, which iptables-nft allows when it is empty) leaves the namespace as it
    was; ``iptables-save`` still lists the chain, as it does for every chain of a table. The
    legacy kernel interface has fixed built-in chains, so nothing is done there.
    """
    if family not in current.nf_tables:
        return []
    emptied: list[ChainKey] = []
    for key, live_jumps in sorted(current.jumps.items()):
        if key[:2] != (family, table) or target.jumps.get(key) or not live_jumps:
            continue
        if len(current.builtins.get(key, [])) == len(live_jumps) and current.policies.get(key) == "ACCEPT":
            emptied.append(key)
    return emptied


def _jump_target(spec: str) -> str:
    match = _JUMP.search(spec)
    return match.group(1) if match else ""


def _diff_after(target: State, current: State) -> State:
    """``target`` for diff mode, keeping the live text of chains that will not change."""
    after = dataclasses.replace(target, chains=dict(target.chains), jumps=dict(target.jumps))
    for key, specs in target.chains.items():
        live = current.chains.get(key)
        if live is not None and [rule_written(spec) for spec in live] == [rule_written(spec) for spec in specs]:
            after.chains[key] = live
    for key, specs in target.jumps.items():
        live_jumps = current.jumps.get(key)
        if live_jumps is not None and [rule_written(spec) for spec in live_jumps] == [rule_written(spec) for spec in specs]:
            after.jumps[key] = live_jumps
    return after


def find_drift(target: State, current: State) -> list[str]:
    """Hand-made changes to our objects (as opposed to a new desired ruleset)."""
    return _chain_drift(target, current) + _jump_drift(target, current) + _set_drift(target, current)


def _chain_drift(target: State, current: State) -> list[str]:
    drift: list[str] = []
    for key, specs in sorted(current.chains.items()):
        family, table, chain = key
        where = f"IPv{family} {table} chain {chain}"
        keys = [rule_key(spec) for spec in specs]
        recorded = _FINGERPRINT.search(spec_comment(specs[-1]) or "") if specs else None
        if recorded is not None and recorded.group(1) == chain_fingerprint(keys):
            continue
        wanted = target.chains.get(key)
        wanted_keys = [rule_key(spec) for spec in wanted] if wanted is not None else []
        if wanted is None or (recorded is not None and recorded.group(1) != chain_fingerprint(wanted_keys)):
            drift.append(f"{where}: rules changed by hand")
            continue
        missing = [spec for spec in wanted if rule_key(spec) not in keys]
        extra = [spec for spec in specs if rule_key(spec) not in wanted_keys]
        drift.extend(f"{where}: rule missing: {_describe(spec)}" for spec in missing)
        drift.extend(f"{where}: rule added by hand: {_describe(spec)}" for spec in extra)
        if not missing and not extra:
            drift.append(f"{where}: rules reordered or duplicated by hand")
    return drift


def _jump_drift(target: State, current: State) -> list[str]:
    drift: list[str] = []
    for key, live_jumps in sorted(current.jumps.items()):
        family, table, builtin = key
        wanted_keys = [rule_key(spec) for spec in target.jumps.get(key, [])]
        live_keys = [rule_key(spec) for spec in live_jumps]
        head = [rule_key(spec) for spec in current.builtins.get(key, [])[: len(wanted_keys)]]
        if live_keys == wanted_keys and head != wanted_keys:
            drift.append(f"IPv{family} {table} {builtin}: our jump is no longer first (something was inserted above it)")
        elif live_keys != wanted_keys and set(live_keys) & set(wanted_keys):
            drift.append(f"IPv{family} {table} {builtin}: our jump rules were duplicated or changed by hand")
    for key, specs in sorted(target.jumps.items()):
        family, table, builtin = key
        chains_present = any((family, table, _jump_target(spec)) in current.chains for spec in specs)
        if chains_present and not current.jumps.get(key):
            drift.append(f"IPv{family} {table} {builtin}: our jump was removed by hand")
    return drift


def _set_drift(target: State, current: State) -> list[str]:
    drift: list[str] = []
    for name, live in sorted(current.sets.items()):
        if not live.recorded or live.recorded == (members_hash(live.members),):
            continue
        wanted = target.sets.get(name)
        if wanted is None or live.recorded != wanted.recorded:
            drift.append(f"set {name}: members changed by hand")
            continue
        details = []
        missing = sorted(set(wanted.members) - set(live.members))
        extra = sorted(set(live.members) - set(wanted.members))
        if missing:
            details.append("missing " + " ".join(missing))
        if extra:
            details.append("added " + " ".join(extra))
        drift.append(f"set {name}: members changed by hand ({'; '.join(details)})")
    return drift


def _describe(spec: str) -> str:
    comment = spec_comment(spec)
    if comment and hash_from_comment(comment):
        return _FINGERPRINT.sub("", comment.split(" ", 1)[1] if " " in comment else comment)
    try:
        return " ".join(shlex.split(spec))
    except ValueError:
        return spec

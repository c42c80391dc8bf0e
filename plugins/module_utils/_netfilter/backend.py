# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The protocol every dataplane backend implements.

A backend owns a fixed set of objects in one network namespace (iptables: our
``ZT-*`` chains, their jump rules and our ``zt-*`` ipsets; nftables: one table of our
own) and never touches anything else. One module run drives a backend through:

1. ``read()``: read back only our own objects -> :class:`LiveState`. Reads only. Skipped, in favour of
   ``nothing_of_ours()``, when ``holds_nothing_of_ours()`` can tell without a command that there is nothing,
   and in favour of ``holding_exactly(desired)`` when it can tell that there is exactly the desired state.
   Commands whose output depends on nothing but nf_tables go through ``runner.read_nf_tables``, which
   answers them from the run's read cache while the namespace's nf_tables generation holds (``readcache.py``).
2. ``plan(desired, live)``: compare by hashes -> :class:`Plan`: the :class:`Changes`
   (rules added, removed and kept, set members per set, as data), the drift found and
   the write :class:`Step` list of ONE atomic transaction (empty = nothing to do).
   ``desired=None`` means ``state: absent``: remove exactly what we own.
3. ``apply(steps)`` (skipped in check mode or when there are no steps): run them.
4. The orchestrator (``apply.py``) then reads again and plans again: a plan with steps
   left means the apply did not stick, and it is reported as an error.

Around that, the orchestrator (not the backend) takes a per-namespace lock, turns a
failed apply into a rollback with ``restore_steps(live_before, read())``, and for
``rollback_timeout`` hands ``restore_steps(live_before, live_after)`` to a detached
watchdog. So ``restore_steps(target, current)`` must take our objects from
``current`` back exactly to ``target`` (which may be "nothing of ours") and must
leave everything that is not ours alone.

The :class:`Changes` of a plan are the one description of what differs: the module's
change counts, the enforce role's change guard and summary, and the audit's drift are
all read from them. Text (``Plan.before`` / ``Plan.after``) is made only when diff mode
asks for it; nothing parses it.

Writing a backend:

- subclass :class:`Backend`, set ``name``, implement the abstract methods;
- run every command through ``self.runner`` (it enters the namespace, adds PATH,
  counts reads and writes); pass ``write=True`` only for commands that change state
  (the default :meth:`Backend.apply` does that for you);
- put :func:`rule_hash` and :func:`sanitise_origin` in each rule's comment so a
  no-op run can compare hashes and an audit can map a live rule back to its policy;
- fill :class:`Changes` with :func:`compare_rules` and :func:`compare_members` from the
  hashes and members it compared anyway;
- honour :class:`Options` and raise only :mod:`errors` exceptions.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import functools
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Optional

from .errors import ApplyError, CommandError
from .model import Ruleset, iptables_chain_name
from .runner import Runner

LOG_RATES = ("second", "minute", "hour", "day")
ORIGIN_MAX = 200
HASH_LENGTH = 16
COMMENT_PREFIX = "zt:"
"""Every rule we write carries ``zt:<16 hex> <origin>`` in its comment."""
_OUR_COMMENT = re.compile(rf"^zt:([0-9a-f]{{{HASH_LENGTH}}})(?: |$)")
_CLEAN_ORIGIN = re.compile(r"[!#-&(-\[\]-_a-~]+(?: [!#-&(-\[\]-_a-~]+)*")
"""Printable ASCII without quotes, backslash or backtick, single spaces between words: what sanitising leaves."""


@dataclasses.dataclass(frozen=True)
class Options:
    """How abstract verdicts and logging are rendered (module options)."""

    default_action: str = "drop"
    """``deny`` becomes ``drop`` or ``reject`` (tcp: reset, others: ICMP port unreachable)."""
    log_denied: bool = False
    """Log denied packets, rate-limited, just before a chain's final deny."""
    log_rate: str = "5/minute"
    """``N/second|minute|hour|day``, the log rule's limit."""
    log_prefix: str = "zt-denied "

    def __post_init__(self) -> None:
        if self.default_action not in ("drop", "reject"):
            raise ValueError(f"default_action {self.default_action!r} must be drop or reject")
        count, _unused_separator, unit = self.log_rate.partition("/")
        if not count.isdigit() or int(count) < 1 or unit not in LOG_RATES:
            raise ValueError(f"log_rate {self.log_rate!r} must look like 5/minute (units: {', '.join(LOG_RATES)})")
        if not re.match(r"^[A-Za-z0-9 _:.-]{1,28}$", self.log_prefix):
            raise ValueError(f"log_prefix {self.log_prefix!r} must be 1-28 characters of letters, digits, space, _ : . -")


@dataclasses.dataclass(frozen=True)
class Step:
    """One write command of a transaction, run in the backend's namespace.

    ``argv`` has no namespace prefix (the runner adds it); ``stdin`` is the restore
    file; ``what`` names the step in messages (``iptables-restore (IPv4)``).
    ``line_origins`` maps 1-based stdin line numbers to what the line is (a rule's
    origin, ``set zt-abc-4``) so a failure can say which rule broke. ``member_runs``
    names the lines that each add one member to a set, a run per set: (first line, set,
    members in line order), shared with the members themselves instead of a string per
    member (a pod's copy of its node's sets has thousands, written into every pod).
    """

    argv: tuple[str, ...]
    stdin: str = ""
    what: str = ""
    line_origins: tuple[tuple[int, str], ...] = ()
    member_runs: tuple[tuple[int, str, tuple[str, ...]], ...] = ()

    def origin_of_line(self, line: int) -> str:
        """What stdin line ``line`` is, or ``""``."""
        for number, origin in self.line_origins:
            if number == line:
                return origin
        for first, name, members in self.member_runs:
            if first <= line < first + len(members):
                return f"set {name} member {members[line - first]}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the rollback watchdog runs steps from a file)."""
        return {"argv": list(self.argv), "stdin": self.stdin, "what": self.what}


@dataclasses.dataclass
class LiveState:
    """What ``read()`` found of our own objects in one namespace.

    ``present``: at least one object of ours exists. ``raw``: backend-private data that
    :meth:`Backend.plan` and :meth:`Backend.restore_steps` use.
    """

    present: bool
    raw: Any = None


@dataclasses.dataclass(frozen=True)
class RuleEntry:
    """One rule of a namespace's plan: where it sits, its hash and the origin its comment names.

    ``chain`` is the backend's name for the place (nftables: ``ingress``; iptables:
    ``IPv4 filter ZT-INGRESS``, or ``IPv4 filter INPUT`` for our jump). ``position`` is
    the 0-based place in that chain (live for kept and removed rules, desired for added
    ones). A rule that is not ours (no hash in its comment) has ``hash == ""`` and the
    rule as the tool printed it in ``text``.
    """

    chain: str
    hash: str
    origin: str
    position: int
    text: str = ""

    @property
    def identity(self) -> str:
        """What makes two rules of one chain the same rule: the hash, or the text of a foreign rule."""
        return self.hash or self.text

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the module result)."""
        data: dict[str, Any] = {"chain": self.chain, "hash": self.hash, "origin": self.origin, "position": self.position}
        if self.text:
            data["text"] = self.text
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Optional[RuleEntry]:
        """The entry back from its JSON form (the audit reads module results); None when ``data`` is not a mapping."""
        if not isinstance(data, Mapping):
            return None
        position = data.get("position")
        return cls(
            chain=str(data.get("chain") or "?"),
            hash=str(data.get("hash") or ""),
            origin=str(data.get("origin") or ""),
            position=position if isinstance(position, int) else 0,
            text=str(data.get("text") or ""),
        )


@dataclasses.dataclass(frozen=True)
class SetEntry:
    """Members of one address set (one family, as the backend names it) added, removed and kept."""

    name: str
    added: int
    removed: int
    kept: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the module result)."""
        return {"name": self.name, "added": self.added, "removed": self.removed, "kept": self.kept}


@dataclasses.dataclass(frozen=True)
class Changes:
    """What one namespace gains, loses and keeps, as data (see :class:`Plan`)."""

    added: tuple[RuleEntry, ...] = ()
    """Rules of the desired state that are not live."""
    removed: tuple[RuleEntry, ...] = ()
    """Live rules (ours or not) that the desired state does not hold."""
    kept: tuple[RuleEntry, ...] = ()
    """Live rules the desired state holds as they are."""
    sets: tuple[SetEntry, ...] = ()

    def counts(self) -> dict[str, int]:
        """The module's per-namespace counts: rules and set members added and removed, and what was in place."""
        return {
            "rules_added": len(self.added),
            "rules_removed": len(self.removed),
            "set_members_added": sum(entry.added for entry in self.sets),
            "set_members_removed": sum(entry.removed for entry in self.sets),
            "in_place": len(self.removed) + len(self.kept) + sum(entry.removed + entry.kept for entry in self.sets),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{rules: {added, removed, kept}, sets: [...]}`` (docs/contracts.md, section 4)."""
        return {
            "rules": {
                "added": [entry.to_dict() for entry in self.added],
                "removed": [entry.to_dict() for entry in self.removed],
                "kept": [entry.to_dict() for entry in self.kept],
            },
            "sets": [entry.to_dict() for entry in self.sets],
        }

    def __add__(self, other: Changes) -> Changes:
        return Changes(self.added + other.added, self.removed + other.removed, self.kept + other.kept, self.sets + other.sets)


def compare_rules(chain: str, desired: Sequence[RuleEntry], live: Sequence[RuleEntry]) -> Changes:
    """The rules of one chain added, removed and kept, matched by identity (duplicates counted).

    ``desired`` and ``live`` are in chain order; every entry must name ``chain``.
    """
    wanted = collections.Counter(entry.identity for entry in desired)
    kept: list[RuleEntry] = []
    removed: list[RuleEntry] = []
    for entry in live:
        if wanted[entry.identity] > 0:
            wanted[entry.identity] -= 1
            kept.append(entry)
        else:
            removed.append(entry)
    found = collections.Counter(entry.identity for entry in live)
    added: list[RuleEntry] = []
    for entry in desired:
        if found[entry.identity] > 0:
            found[entry.identity] -= 1
        else:
            added.append(entry)
    return Changes(tuple(added), tuple(removed), tuple(kept))


def compare_members(name: str, desired: Optional[Sequence[str]], live: Optional[Sequence[str]]) -> SetEntry:
    """Members of one set added, removed and kept (``None``: the set is not wanted / not live)."""
    wanted = desired or ()
    found = live or ()
    if tuple(wanted) == tuple(found):
        return SetEntry(name, 0, 0, len(found))
    kept = len(set(wanted) & set(found))
    return SetEntry(name, len(set(wanted)) - kept, len(set(found)) - kept, kept)


def _no_text() -> tuple[str, str]:
    return "", ""


@dataclasses.dataclass
class Plan:
    """The outcome of comparing desired and live state."""

    steps: list[Step]
    """One atomic transaction; empty when live state already is the desired one."""
    drift: list[str]
    """Differences in our objects that a previous run did not leave (hand edits, removed
    members, a jump no longer first). Empty on first apply and on ``absent``."""
    changes: Changes = Changes()
    """Rules and set members added, removed and kept."""
    texts: Callable[[], tuple[str, str]] = _no_text
    """Makes the diff-mode texts (before, after); only called when diff mode reads them."""

    @property
    def changed(self) -> bool:
        """True when applying would write."""
        return bool(self.steps)

    @functools.cached_property
    def _texts(self) -> tuple[str, str]:
        return self.texts()

    @property
    def before(self) -> str:
        """Diff-mode text of our live objects."""
        return self._texts[0]

    @property
    def after(self) -> str:
        """Diff-mode text of our objects once the plan is applied (``""`` when absent)."""
        return self._texts[1]


class Backend(abc.ABC):
    """One firewall implementation acting in one namespace (see the module docstring)."""

    name: ClassVar[str] = ""

    def __init__(self, runner: Runner, options: Options) -> None:
        self.runner = runner
        self.options = options

    @classmethod
    @abc.abstractmethod
    def available(cls, runner: Runner) -> Optional[str]:
        """``None`` when this backend can work in ``runner``'s namespace, else why not."""

    @abc.abstractmethod
    def read(self) -> LiveState:
        """Read back our own objects (only reads)."""

    @abc.abstractmethod
    def render(self, desired: Ruleset) -> str:
        """Diff-mode text of ``desired`` as this backend would write it."""

    @abc.abstractmethod
    def plan(self, desired: Optional[Ruleset], live: LiveState) -> Plan:
        """Compare and build the transaction; ``desired=None`` removes all of ours."""

    @abc.abstractmethod
    def restore_steps(self, target: LiveState, current: LiveState) -> list[Step]:
        """Steps that take our objects from ``current`` back to exactly ``target``.

        Both are ``read()`` results; ``target`` is usually the state before an apply.
        Objects of ours in ``current`` but not in ``target`` are removed, foreign objects
        are never touched. The steps must not depend on anything but these two states:
        the rollback watchdog runs them later, in another process, without this code.
        """

    def nothing_of_ours(self) -> LiveState:
        """What :meth:`read` returns in a namespace that holds none of our objects."""
        return LiveState(present=False)

    def holds_nothing_of_ours(self) -> bool:
        """True when a look that starts no command shows that :meth:`read` would return :meth:`nothing_of_ours`.

        False when the namespace may hold something of ours, or when this backend (or this process) cannot
        look without a command: the caller then reads. A fresh pod namespace answers in well under a
        millisecond, where a read starts up to three processes. Only the read a plan starts from may be
        skipped this way: what a write just made is always read back.
        """
        return False

    def holding_exactly(self, desired: Ruleset) -> Optional[LiveState]:
        """What :meth:`read` would return for :meth:`plan`, when a look that starts no command finds exactly ``desired``.

        ``None`` when the namespace may hold anything else of ours (or anything of ours otherwise), or when this
        backend (or this process) cannot look without a command: the caller then reads. The look compares what
        :meth:`plan` compares (our objects' identities, in order); where it finds them all as ``desired`` has
        them and nothing else of ours, a plan from the state it returns has no step, no drift and the same
        changes as a plan from a read. A no-op run of a node's hundred pods and the read that checks each of
        their first writes are then a question to the kernel instead of commands and their output parsed.
        """
        del desired
        return None

    def create_plan(self, desired: Ruleset) -> Optional[Plan]:
        """The plan writing ``desired`` into a namespace without reading it first, or ``None`` (this backend reads first).

        For a namespace that a check-mode run found without any object of ours: :meth:`plan` after an empty
        read (:meth:`nothing_of_ours`), with steps that fail, before changing anything that was there, when
        an object of ours exists after all; the caller then reads and applies the usual way. What the steps
        write must be exactly what the plan from an empty read writes.
        """
        del desired
        return None

    def apply(self, steps: Sequence[Step]) -> None:
        """Run ``steps`` in order; raise ApplyError naming the namespace and the rule."""
        for step in steps:
            try:
                self.runner.run(step.argv, stdin=step.stdin, write=True)
            except CommandError as error:
                raise self.step_failed(step, error) from error

    def step_failed(self, step: Step, error: CommandError) -> ApplyError:
        """The ApplyError of ``step`` failing with ``error``: the namespace, and the rule of the line the tool names."""
        line = failed_line(error.stderr)
        rule = step.origin_of_line(line) if line else ""
        where = f", rule {rule!r}" if rule else (f", input line {line}" if line else "")
        return ApplyError(
            f"{step.what or step.argv[0]} failed in namespace {self.runner.namespace.label}{where}: {tool_message(error)}",
            namespace=self.runner.namespace.label,
            rule=rule,
        )


def tool_message(error: CommandError) -> str:
    """The useful part of a tool's complaint (without ``Try ... --help`` boilerplate)."""
    lines = [line.strip() for line in error.stderr.splitlines() if line.strip() and not line.startswith("Try `")]
    return "; ".join(lines) or str(error)


def failed_line(stderr: str) -> int:
    """The stdin line a restore tool complained about (0 when it did not say).

    ``iptables-restore: line 7 failed``, ``Error occurred at line: 4`` (iptables-nft),
    ``ipset v7.17: Error in line 3: ...``,
    ``/dev/stdin:4:1-10: Error: ...`` (nft).
    """
    for pattern in (r"[Ll]ine:? (\d+)", r"^[^:\s]+:(\d+):\d+"):
        match = re.search(pattern, stderr, re.MULTILINE)
        if match:
            return int(match.group(1))
    return 0


def rule_hash(*parts: str) -> str:
    """Deterministic 16-hex identity of a rendered rule.

    Pass the model rule's ``match_key()`` and the backend's rendered rule text (which
    includes the verdict as rendered with the options), never the position or origin:
    the same rule keeps its hash when rules around it move.
    """
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:HASH_LENGTH]


def members_hash(members: Sequence[str]) -> str:
    """Deterministic 16-hex identity of a set's members (order-independent)."""
    return sorted_members_hash(sorted(members))


def sorted_members_hash(ordered: Sequence[str]) -> str:
    """:func:`members_hash` of members already sorted (a big set read back is not sorted twice)."""
    return hashlib.sha256("\n".join(ordered).encode()).hexdigest()[:HASH_LENGTH]


def sanitise_origin(origin: str) -> str:
    """Untrusted text made safe for a rule comment.

    Printable ASCII only, no quotes, backslashes or newlines (anything else becomes
    ``_``), whitespace runs collapsed, at most ``ORIGIN_MAX`` characters.
    """
    if _CLEAN_ORIGIN.fullmatch(origin) and len(origin) <= ORIGIN_MAX:
        # Every compiled origin is clean already: one regex instead of a pass per character.
        return origin
    cleaned = "".join(ch if 32 <= ord(ch) < 127 and ch not in "\"'\\`" else "_" for ch in origin)
    cleaned = " ".join(cleaned.split())
    return cleaned[:ORIGIN_MAX] or "-"


def comment_for(hash_text: str, origin: str) -> str:
    """The comment we put on a rule: ``zt:<hash> <sanitised origin>``."""
    return f"{COMMENT_PREFIX}{hash_text} {sanitise_origin(origin)}"


def hash_from_comment(comment: str) -> Optional[str]:
    """The hash in one of our comments, or None if the comment is not ours."""
    match = _OUR_COMMENT.match(comment)
    return match.group(1) if match else None


def object_chain_name(model_chain: str) -> str:
    """Firewall name of a model chain: ``nodeport_guard`` -> ``ZT-NODEPORT-GUARD``.

    The model refuses two chain names that would share one (``ingress`` and ``INGRESS``).
    """
    return iptables_chain_name(model_chain)

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The protocol every dataplane backend implements.

A backend owns a fixed set of objects in one network namespace (iptables: our
``ZT-*`` chains, their jump rules and our ``zt-*`` ipsets; nftables: one table of our
own) and never touches anything else. One module run drives a backend through:

1. ``read()``: read back only our own objects -> :class:`LiveState`. Reads only.
2. ``plan(desired, live)``: compare by hashes -> :class:`Plan` with the drift found
   and the write :class:`Step` list of ONE atomic transaction (empty = nothing to do).
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

Writing a backend:

- subclass :class:`Backend`, set ``name``, implement the abstract methods;
- run every command through ``self.runner`` (it enters the namespace, adds PATH,
  counts reads and writes); pass ``write=True`` only for commands that change state
  (the default :meth:`Backend.apply` does that for you);
- put :func:`rule_hash` and :func:`sanitise_origin` in each rule's comment so a
  no-op run can compare hashes and an audit can map a live rule back to its policy;
- render ``deny`` with :func:`deny_action` and honour :class:`Options`;
- raise only :mod:`errors` exceptions.

The nftables backend lives in ``nftables.py`` as ``class NftablesBackend(Backend)``
with ``name = "nftables"`` and the constructor of :class:`Backend`.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Optional

from .errors import ApplyError, CommandError
from .model import Ruleset, iptables_chain_name
from .runner import Runner

LOG_RATES = ("second", "minute", "hour", "day")
ORIGIN_MAX = 200
HASH_LENGTH = 16
COMMENT_PREFIX = "zt:"
"""Every rule we write carries ``zt:<16 hex> <origin>`` in its comment."""


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
    origin, ``set zt-abc-4``) so a failure can say which rule broke.
    """

    argv: tuple[str, ...]
    stdin: str = ""
    what: str = ""
    line_origins: tuple[tuple[int, str], ...] = ()

    def origin_of_line(self, line: int) -> str:
        """What stdin line ``line`` is, or ``""``."""
        for number, origin in self.line_origins:
            if number == line:
                return origin
        return ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the rollback watchdog runs steps from a file)."""
        return {"argv": list(self.argv), "stdin": self.stdin, "what": self.what}


@dataclasses.dataclass
class LiveState:
    """What ``read()`` found of our own objects in one namespace.

    ``present``: at least one object of ours exists. ``text``: our live objects as
    text, the ``before`` of diff mode (same format as :meth:`Backend.render`, so an
    unchanged namespace gives ``before == after``). ``raw``: backend-private data that
    :meth:`Backend.plan` and :meth:`Backend.restore_steps` use.
    """

    present: bool
    text: str
    raw: Any = None


@dataclasses.dataclass
class Plan:
    """The outcome of comparing desired and live state."""

    steps: list[Step]
    """One atomic transaction; empty when live state already is the desired one."""
    drift: list[str]
    """Differences in our objects that a previous run did not leave (hand edits, removed
    members, a jump no longer first). Empty on first apply and on ``absent``."""
    before: str
    after: str
    """Diff-mode text of our objects before and after (``""`` when absent)."""

    @property
    def changed(self) -> bool:
        """True when applying would write."""
        return bool(self.steps)


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

    def apply(self, steps: Sequence[Step]) -> None:
        """Run ``steps`` in order; raise ApplyError naming the namespace and the rule."""
        for step in steps:
            try:
                self.runner.run(step.argv, stdin=step.stdin, write=True)
            except CommandError as error:
                line = failed_line(error.stderr)
                rule = step.origin_of_line(line) if line else ""
                where = f", rule {rule!r}" if rule else (f", input line {line}" if line else "")
                raise ApplyError(
                    f"{step.what or step.argv[0]} failed in namespace {self.runner.namespace.label}{where}: {tool_message(error)}",
                    namespace=self.runner.namespace.label,
                    rule=rule,
                ) from error


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
    return hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:HASH_LENGTH]


def sanitise_origin(origin: str) -> str:
    """Untrusted text made safe for a rule comment.

    Printable ASCII only, no quotes, backslashes or newlines (anything else becomes
    ``_``), whitespace runs collapsed, at most ``ORIGIN_MAX`` characters.
    """
    cleaned = "".join(ch if 32 <= ord(ch) < 127 and ch not in "\"'\\`" else "_" for ch in origin)
    cleaned = " ".join(cleaned.split())
    return cleaned[:ORIGIN_MAX] or "-"


def comment_for(hash_text: str, origin: str) -> str:
    """The comment we put on a rule: ``zt:<hash> <sanitised origin>``."""
    return f"{COMMENT_PREFIX}{hash_text} {sanitise_origin(origin)}"


def hash_from_comment(comment: str) -> Optional[str]:
    """The hash in one of our comments, or None if the comment is not ours."""
    match = re.match(rf"^zt:([0-9a-f]{{{HASH_LENGTH}}})(?: |$)", comment)
    return match.group(1) if match else None


def deny_action(options: Options, protocol: Optional[str]) -> str:
    """``drop``, ``reject-tcp-reset`` or ``reject-icmp`` for an abstract ``deny``.

    A rule without a protocol is rendered by a reject-capable backend as a tcp reset
    for tcp plus an ICMP port-unreachable for everything else; this helper answers the
    single-protocol case.
    """
    if options.default_action == "drop":
        return "drop"
    return "reject-tcp-reset" if protocol == "tcp" else "reject-icmp"


def object_chain_name(model_chain: str) -> str:
    """Firewall name of a model chain: ``nodeport_guard`` -> ``ZT-NODEPORT-GUARD``.

    The model refuses two chain names that would share one (``ingress`` and ``INGRESS``).
    """
    return iptables_chain_name(model_chain)


def family_ruleset_sets(ruleset: Ruleset, family: int) -> Mapping[str, tuple[str, ...]]:
    """Members of each address set in one family (``{name: members}``)."""
    return {address_set.name: address_set.family_members(family) for address_set in ruleset.address_sets}

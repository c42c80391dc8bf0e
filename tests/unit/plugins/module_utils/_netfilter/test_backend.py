# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the backend protocol helpers and the runner's namespace handling."""

from __future__ import annotations

import sys
from typing import Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import backend
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import ApplyError, CommandError
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import Ruleset
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import CommandResult, Namespace, Runner


@pytest.mark.parametrize(("origin", "expected"), [
    ("default[0] haproxy->wordpress tcp/80", "default[0] haproxy->wordpress tcp/80"),
    ('say "hi"', "say _hi_"),
    ("back\\slash and 'quote' and `tick`", "back_slash and _quote_ and _tick_"),
    ("line\nbreak\ttab", "line_break_tab"),
    ("   spaced    out   ", "spaced out"),
    ("ünïcode", "_n_code"),
    ("", "-"),
    ("x" * 300, "x" * 200),
])
def test_sanitise_origin(origin: str, expected: str) -> None:
    assert backend.sanitise_origin(origin) == expected


@pytest.mark.parametrize(("comment", "expected"), [
    ("zt:0123456789abcdef origin", "0123456789abcdef"),
    ("zt:0123456789abcdef", "0123456789abcdef"),
    ("zt:0123456789ABCDEF origin", None),
    ("zt:0123456789abcde origin", None),
    ("kubernetes service portals", None),
    ("zt:0123456789abcdef0 x", None),
])
def test_hash_from_comment(comment: str, expected: Optional[str]) -> None:
    assert backend.hash_from_comment(comment) == expected


def test_comment_for_round_trips_the_hash() -> None:
    digest = backend.rule_hash("a", "b")
    assert len(digest) == 16
    assert backend.hash_from_comment(backend.comment_for(digest, 'x "y"')) == digest
    assert backend.comment_for(digest, 'x "y"') == f"zt:{digest} x _y_"


def test_hashes_are_deterministic_and_order_aware() -> None:
    assert backend.rule_hash("a", "b") == backend.rule_hash("a", "b") != backend.rule_hash("b", "a")
    assert backend.rule_hash("ab", "c") != backend.rule_hash("a", "bc")
    assert backend.members_hash(["10.0.0.2", "10.0.0.1"]) == backend.members_hash(["10.0.0.1", "10.0.0.2"])


@pytest.mark.parametrize(("stderr", "line"), [
    ("iptables-restore: line 7 failed", 7),
    ("iptables-nft-restore v1.8.9 (nf_tables): Invalid ICMP type `300'\nError occurred at line: 4\nTry `iptables-restore -h'", 4),
    ("ipset v7.17: Error in line 3: Syntax error", 3),
    ("/dev/stdin:4:1-10: Error: Could not process rule", 4),
    ("something else", 0),
])
def test_failed_line(stderr: str, line: int) -> None:
    assert backend.failed_line(stderr) == line


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"default_action": "accept"}, "default_action 'accept' must be drop or reject"),
    ({"log_rate": "fast"}, "log_rate 'fast' must look like 5/minute (units: second, minute, hour, day)"),
    ({"log_rate": "0/second"}, "log_rate '0/second' must look like 5/minute"),
    ({"log_prefix": 'a"b'}, "log_prefix 'a\"b' must be 1-28 characters"),
])
def test_options_validation(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        backend.Options(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("model", "name"), [("ingress", "ZT-INGRESS"), ("nodeport_guard", "ZT-NODEPORT-GUARD")])
def test_object_chain_name(model: str, name: str) -> None:
    assert backend.object_chain_name(model) == name


class FailingRunner(Runner):
    """Fails every write the way iptables-restore does on line 2."""

    def run(self, argv: object, stdin: Optional[str] = None, check: bool = True, write: bool = False) -> CommandResult:
        self.writes += 1
        raise CommandError("iptables-restore failed", ("iptables-restore",), 2, "iptables-restore: line 2 failed\n")


class Dummy(backend.Backend):
    """The smallest backend: only apply() is exercised."""

    name = "dummy"

    @classmethod
    def available(cls, runner: Runner) -> Optional[str]:
        return None

    def read(self) -> backend.LiveState:
        return backend.LiveState(False)

    def render(self, desired: Ruleset) -> str:
        return ""

    def plan(self, desired: Optional[Ruleset], live: backend.LiveState) -> backend.Plan:
        return backend.Plan([], [])

    def restore_steps(self, target: backend.LiveState, current: backend.LiveState) -> list[backend.Step]:
        return []


def test_apply_error_names_namespace_and_rule() -> None:
    origins = ((2, "default[3] a->b tcp/80"),)
    step = backend.Step(("iptables-restore",), "*filter\n-A X -j DROP\nCOMMIT\n", "iptables-restore (IPv4)", origins)
    dummy = Dummy(FailingRunner(Namespace(name="ztd-x")), backend.Options())
    with pytest.raises(ApplyError) as caught:
        dummy.apply([step])
    assert str(caught.value) == (
        "iptables-restore (IPv4) failed in namespace ztd-x, rule 'default[3] a->b tcp/80': iptables-restore: line 2 failed"
    )
    assert (caught.value.namespace, caught.value.rule) == ("ztd-x", "default[3] a->b tcp/80")


@pytest.mark.parametrize(("namespace", "prefix", "label"), [
    (Namespace(), (), "host"),
    (Namespace(name="ztd-a"), ("ip", "netns", "exec", "ztd-a"), "ztd-a"),
    (Namespace(path="/proc/1/ns/net"), ("nsenter", "--net=/proc/1/ns/net"), "/proc/1/ns/net"),
])
def test_namespace_prefix(namespace: Namespace, prefix: tuple[str, ...], label: str) -> None:
    assert (namespace.prefix(), namespace.label) == (prefix, label)


@pytest.mark.parametrize("name", ["../etc", "a/b", "-rf", "", ".."])
def test_namespace_rejects_unsafe_names(name: str) -> None:
    with pytest.raises(ValueError, match="is not a plain name"):
        Namespace(name=name)


def test_runner_counts_and_reports_failures() -> None:
    runner = Runner(Namespace())
    assert runner.run([sys.executable, "-c", "print('hi')"]).stdout == "hi\n"
    with pytest.raises(CommandError, match=r"failed in namespace host \(exit 3\): boom"):
        runner.run([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"], write=True)
    assert (runner.reads, runner.writes) == (1, 1)
    with pytest.raises(CommandError, match="is not installed or not on PATH"):
        runner.run(["zt-no-such-tool"])


def _rules(*identities: str) -> list[backend.RuleEntry]:
    """Entries of chain X: a 16-character name is a hash, anything else the text of a foreign rule."""
    return [backend.RuleEntry("X", name if len(name) == 16 else "", "o", index, "" if len(name) == 16 else name)
            for index, name in enumerate(identities)]


A, B, C = "a" * 16, "b" * 16, "c" * 16


@pytest.mark.parametrize(("desired", "live", "expected"), [
    ([], [], ([], [], [])),
    ([A, B], [], ([A, B], [], [])),
    ([], [A, B], ([], [A, B], [])),
    ([A, B], [A, B], ([], [], [A, B])),
    ([A, C], [A, B], ([C], [B], [A])),
    ([A], [A, A], ([], [A], [A])),
    ([A, A], [A], ([A], [], [A])),
    ([A], ["-j ACCEPT", A], ([], ["-j ACCEPT"], [A])),
], ids=["nothing", "first", "absent", "same", "one-replaced", "duplicated-by-hand", "duplicate-missing", "foreign"])
def test_compare_rules(desired: list[str], live: list[str], expected: tuple[list[str], list[str], list[str]]) -> None:
    changes = backend.compare_rules("X", _rules(*desired), _rules(*live))
    assert tuple([entry.identity for entry in group] for group in (changes.added, changes.removed, changes.kept)) == expected


@pytest.mark.parametrize(("desired", "live", "expected"), [
    (None, None, (0, 0, 0)),
    (("10.0.0.1", "10.0.0.2"), None, (2, 0, 0)),
    (None, ("10.0.0.1",), (0, 1, 0)),
    (("10.0.0.1", "10.0.0.2"), ("10.0.0.1", "10.0.0.2"), (0, 0, 2)),
    (("10.0.0.1", "10.0.0.3"), ("10.0.0.1", "10.0.0.2"), (1, 1, 1)),
])
def test_compare_members(desired: Optional[tuple[str, ...]], live: Optional[tuple[str, ...]], expected: tuple[int, int, int]) -> None:
    entry = backend.compare_members("zt-a-4", desired, live)
    assert (entry.added, entry.removed, entry.kept) == expected


def test_changes_counts_and_json() -> None:
    changes = backend.compare_rules("X", _rules(A, C), _rules(A, B)) + backend.Changes(sets=(backend.SetEntry("zt-a-4", 2, 1, 5),))
    assert changes.counts() == {"rules_added": 1, "rules_removed": 1, "set_members_added": 2, "set_members_removed": 1, "in_place": 8}
    assert changes.to_dict() == {
        "rules": {
            "added": [{"chain": "X", "hash": C, "origin": "o", "position": 1}],
            "removed": [{"chain": "X", "hash": B, "origin": "o", "position": 1}],
            "kept": [{"chain": "X", "hash": A, "origin": "o", "position": 0}],
        },
        "sets": [{"name": "zt-a-4", "added": 2, "removed": 1, "kept": 5}],
    }


def test_diff_texts_are_made_only_when_read() -> None:
    calls: list[int] = []

    def texts() -> tuple[str, str]:
        calls.append(1)
        return "before", "after"

    plan = backend.Plan([], [], backend.Changes(), texts)
    assert calls == []
    assert (plan.before, plan.after, len(calls)) == ("before", "after", 1)

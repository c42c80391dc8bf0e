# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the orchestration that needs no namespace: targets, backend choice, flavour detection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import (
    Changes,
    LiveState,
    Options,
    Plan,
    RuleEntry,
    SetEntry,
    Step,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import (
    ApplyError,
    BackendUnavailableError,
    CommandError,
    NetfilterError,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.iptables import IptablesLegacyBackend, IptablesNftBackend
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import CommandResult, Namespace, Runner
from detect_fakes import SaveRunner

RULESET = {"chains": [{"name": "ingress", "hook": "input", "default_verdict": "deny", "rules": []}]}
SSH = {"SSH_CONNECTION": "192.0.2.50 40000 192.0.2.1 22"}
GONE_POD = {"host": "gone.pod", "name": "gone", "namespace": "x", "ips": ["192.0.2.250"], "netns": "ztd-surely-not-created",
            "ruleset": RULESET}


def describe(targets: list[apply.Target]) -> list[tuple[str, Optional[str], Optional[list[str]], str]]:
    """(label, namespace, origins of the first chain's rules, skip reason) per target."""
    return [
        (target.label, target.namespace.label if target.namespace else None,
         [rule.origin for rule in target.ruleset.chains[0].rules] if target.ruleset else None, target.skip_reason[:27])
        for target in targets
    ]


@pytest.mark.parametrize(("ruleset", "pods", "options", "environ", "expected"), [
    (RULESET, [], apply.RunOptions(), SSH, [("host", "host", ["implicit:never-lock-out"], "")]),
    (RULESET, [], apply.RunOptions(keep_ssh=False), SSH, [("host", "host", [], "")]),
    (RULESET, [], apply.RunOptions(management_addresses=("10.0.0.0/8",)), {}, [("host", "host", ["implicit:never-lock-out"], "")]),
    (RULESET, [], apply.RunOptions(), {}, [("host", "host", [], "")]),
    (None, [], apply.RunOptions(state="absent"), {}, [("host", "host", None, "")]),
    (None, [], apply.RunOptions(), SSH, []),
    (None, [GONE_POD], apply.RunOptions(), SSH, [("gone.pod", None, [], "network namespace not found")]),
    (None, [GONE_POD], apply.RunOptions(state="absent"), SSH, [("gone.pod", None, None, "network namespace not found")]),
])
def test_build_targets(ruleset: Optional[dict[str, Any]], pods: list[dict[str, Any]], options: apply.RunOptions,
                       environ: dict[str, str], expected: list[Any]) -> None:
    assert describe(apply.build_targets(ruleset, pods, options, environ)) == expected


def test_management_set_holds_configured_and_ssh_addresses() -> None:
    targets = apply.build_targets(RULESET, [], apply.RunOptions(management_addresses=("10.0.0.0/8",)), SSH)
    assert targets[0].ruleset is not None
    assert targets[0].ruleset.address_set("zt-mgmt").members == ("10.0.0.0/8", "192.0.2.50")


def test_pods_never_get_the_management_rule() -> None:
    pod = {**GONE_POD, "netns": None, "ips": []}
    targets = apply.build_targets(None, [pod], apply.RunOptions(), SSH)
    assert targets[0].ruleset is not None and targets[0].ruleset.chains[0].rules == ()


def test_unknown_host_netns_is_an_error() -> None:
    with pytest.raises(NetfilterError, match="netns 'ztd-surely-not-created' does not exist: create it or fix the name"):
        apply.build_targets(RULESET, [], apply.RunOptions(host_netns="ztd-surely-not-created"), {})


def test_backend_class() -> None:
    assert apply.backend_class("iptables-legacy") is IptablesLegacyBackend
    assert apply.backend_class("nftables").name == "nftables"
    with pytest.raises(BackendUnavailableError, match="backend 'pf' is not one of auto, iptables"):
        apply.backend_class("pf")


NETFILTER = "ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter"
IMPORTED_AFTER = f"""
import sys
import {NETFILTER}.apply as apply
for name in sys.argv[1:]:
    apply.backend_class(name)
print(sorted(module.rsplit(".", 1)[1] for module in sys.modules if module.startswith("{NETFILTER}.") and module.endswith("tables")))
"""


@pytest.mark.parametrize(
    ("backends", "loaded"),
    [
        ((), []),
        (("iptables-nft",), ["iptables"]),
        (("iptables-legacy",), ["iptables"]),
        (("nftables",), ["nftables"]),
        (("iptables", "nftables"), ["iptables", "nftables"]),
    ],
)
def test_a_run_imports_only_the_backend_it_uses(backends: tuple[str, ...], loaded: list[str]) -> None:
    # A module run compiles every source it imports from the payload: the backend it does not use stays unread.
    done = subprocess.run([sys.executable, "-c", IMPORTED_AFTER, *backends], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.strip() == repr(loaded)


KUBE = "*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"


@pytest.mark.parametrize(("outputs", "expected"), [
    ({"iptables-legacy-save": KUBE}, "iptables-legacy"),
    ({"iptables-nft-save": KUBE}, "iptables-nft"),
    ({"iptables-legacy-save": KUBE, "iptables-nft-save": KUBE}, "iptables-nft"),
    ({"nft": "table ip filter\ntable ip kube-proxy\n"}, "nftables"),
])
def test_detect_follows_kube_proxy(outputs: dict[str, str], expected: str) -> None:
    assert apply.detect_backend(SaveRunner(outputs)) == expected


@pytest.mark.skipif(os.path.realpath("/usr/sbin/iptables") != "/usr/sbin/xtables-nft-multi",
                    reason="the host's iptables alternative is not the nft flavour")
def test_detect_falls_back_to_the_default_alternative() -> None:
    assert apply.detect_backend(SaveRunner({"iptables-legacy-save": "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"})) == "iptables-nft"


def test_a_refused_confirm_fails_and_still_reports_the_rollback(tmp_path: Any) -> None:
    """The watchdog was faster: the confirm fails, and the rollback it found is in the same result (reported once)."""
    token = "ab" * 12
    state_dir = str(tmp_path)
    host = apply.lockout.host_identity()
    with open(os.path.join(state_dir, f"rollback-{token}.rolledback"), "w", encoding="utf-8") as handle:
        json.dump({"restored_at": 1.5, "errors": [], "host": host}, handle)
    result = apply.run(None, [], apply.RunOptions(confirm=token, state_dir=state_dir), {})
    assert result["failed"] is True and result["confirmed"] is False and result["rolled_back"] is True
    assert result["msg"].startswith(f"rollback {token} already restored the previous rules")
    assert result["rollbacks"] == [{"token": token, "restored_at": 1.5, "errors": []}]
    assert os.path.exists(os.path.join(state_dir, f"rollback-{token}.reported"))
    again = apply.run(None, [], apply.RunOptions(confirm=token, state_dir=state_dir), {})
    assert again["failed"] is True and again["rolled_back"] is False and "rollbacks" not in again


INGRESS = "IPv4 filter ZT-INGRESS"
CHANGES = Changes(
    added=(RuleEntry(INGRESS, "3" * 16, "default[0] a->b tcp/80", 0),),
    removed=(RuleEntry(INGRESS, "1" * 16, "default[0] a->b any", 0),),
    kept=(RuleEntry(INGRESS, "2" * 16, "catch_all", 1),),
    sets=(SetEntry("zt-a-4", 1, 0, 1),),
)


class FakeBackend:
    """A backend whose read and plan are given: enough for apply_target's bookkeeping."""

    def __init__(self, changed: bool) -> None:
        self.runner = Runner(Namespace())
        self.plan_result = Plan(steps=[Step(("true",))] if changed else [], drift=[], changes=CHANGES,
                                texts=lambda: ("before", "after"))

    def holds_nothing_of_ours(self) -> bool:
        return False

    def read(self) -> LiveState:
        return LiveState(present=True)

    def plan(self, desired: Any, live: LiveState) -> Plan:
        return self.plan_result


@pytest.mark.parametrize(("check_mode", "diff_mode", "report_changes", "keys"), [
    (True, False, True, {"changes"}),
    (True, True, True, {"changes", "diff"}),
    (False, False, True, set()),
    # The enforce role's preview: counts only.
    (True, False, False, set()),
    (True, True, False, {"diff"}),
])
def test_each_namespace_reports_its_counts_from_the_plan(
    tmp_path: Any, check_mode: bool, diff_mode: bool, report_changes: bool, keys: set[str]
) -> None:
    target = apply.Target("pod", Namespace(), None)
    run_options = apply.RunOptions(check_mode=check_mode, diff_mode=diff_mode, report_changes=report_changes, state_dir=str(tmp_path))
    entry, restore = apply.apply_target(FakeBackend(check_mode), target, run_options)  # type: ignore[arg-type]
    counts = {key: entry[key] for key in ("rules_added", "rules_removed", "set_members_added", "set_members_removed", "in_place")}
    assert counts == {"rules_added": 1, "rules_removed": 1, "set_members_added": 1, "set_members_removed": 0, "in_place": 3}
    assert {"changes", "diff"} & set(entry) == keys and restore is None
    if "changes" in keys:
        added = {"chain": INGRESS, "hash": "3" * 16, "origin": "default[0] a->b tcp/80", "position": 0}
        assert entry["changes"]["rules"]["added"] == [added]
        assert entry["changes"]["sets"] == [{"name": "zt-a-4", "added": 1, "removed": 0, "kept": 1}]
    if "diff" in keys:
        assert entry["diff"] == {"before": "before", "after": "after"}


IPSET_INPUT = "create zt-a hash:net family inet comment\nadd zt-a 10.0.0.1 comment \"h\"\ncreate zt-b hash:net family inet comment\n"
RULES_INPUT = "*filter\n-N ZT-INGRESS\n-A ZT-INGRESS -j ACCEPT\n-I INPUT 1 -j ZT-INGRESS\nCOMMIT\n"


# (what the write was, what the tool said) -> whether it failed creating an object that exists (then: read and apply as usual)
FAILED_CREATING = [
    (IPSET_INPUT, "ipset v7.17: Error in line 3: Set cannot be created: set with the same name already exists", True),
    (IPSET_INPUT, "ipset v7.17: Error in line 1: Set cannot be created: set with the same name already exists", True),
    (IPSET_INPUT, "ipset v7.17: Error in line 2: Kernel error received: maximal number of elements reached", False),
    (RULES_INPUT, "iptables-nft-restore: line 2 failed: Chain already exists.", True),
    (RULES_INPUT, "iptables-restore: line 2 failed", True),  # legacy names no reason
    (RULES_INPUT, "iptables-restore: line 3 failed", False),
    (RULES_INPUT, "iptables-nft-restore v1.8.9 (nf_tables): Couldn't load match `set'", False),  # no line
    (RULES_INPUT, "iptables-restore: line 9 failed", False),  # past the input
]


@pytest.mark.parametrize(("stdin", "stderr", "expected"), FAILED_CREATING)
def test_a_write_without_reading_falls_back_only_when_it_met_an_object_of_ours(stdin: str, stderr: str, expected: bool) -> None:
    step = Step(("tool", "restore"), stdin, "tool restore")
    error = ApplyError("tool restore failed in namespace pod", "pod")
    error.__cause__ = CommandError("tool restore failed", ("tool", "restore"), 1, stderr)
    assert apply._failed_creating(step, error) is expected


class FailingRunner(Runner):
    """Records every command; ``fail`` maps a program to the stderr it fails with (exit 1); saves print empty tables."""

    def __init__(self, fail: dict[str, str]) -> None:
        super().__init__(Namespace())
        self.fail = fail
        self.calls: list[tuple[str, bool]] = []

    def run(self, argv: Any, stdin: Optional[str] = None, check: bool = True, write: bool = False) -> CommandResult:
        self.calls.append((argv[0], write))
        stderr = self.fail.get(argv[0], "")
        if stderr and check:
            raise CommandError(f"{argv[0]} failed", tuple(argv), 1, stderr)
        printed = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n" if argv[0].endswith("-save") else ""
        return CommandResult(tuple(argv), 1 if stderr else 0, printed, stderr)

    def call_inside(self, function: Any) -> None:
        """Only the recorded commands look at this namespace (not this machine's kernel over netlink)."""
        return None


POD_RULESET = {"chains": [{"name": "ingress", "hook": "input", "default_verdict": "deny",
                           "rules": [{"verdict": "accept", "origin": "default[0] a->b tcp/80", "protocol": "tcp", "ports": ["80"]}]}]}


@pytest.mark.parametrize(("fail", "calls", "message"), [
    # The IPv6 restore fails on a rule, not on creating the chain: the write's own failure. What it made is read and
    # removed (here the saves show nothing left to remove), and the error says so; no second attempt.
    ({"ip6tables-nft-restore": "ip6tables-nft-restore: line 3 failed"},
     [("iptables-nft-restore", True), ("ip6tables-nft-restore", True),
      ("iptables-nft-save", False), ("ip6tables-nft-save", False), ("ipset", False)],
     "ip6tables-nft-restore (IPv6) failed in namespace host, rule 'default[0] a->b tcp/80': "
     "ip6tables-nft-restore: line 3 failed (the previous rules were restored)"),
    # The chain existed: the usual read, plan and write follow (and fail the same way here, restoring what was read).
    ({"iptables-nft-restore": "iptables-nft-restore: line 2 failed: Chain already exists."},
     [("iptables-nft-restore", True),
      ("iptables-nft-save", False), ("ip6tables-nft-save", False), ("ipset", False),
      ("iptables-nft-restore", True),
      ("iptables-nft-save", False), ("ip6tables-nft-save", False), ("ipset", False)],
     "iptables-nft-restore (IPv4) failed in namespace host, input line 2: iptables-nft-restore: line 2 failed: Chain already exists. "
     "(the previous rules were restored)"),
])
def test_a_failed_write_without_reading(tmp_path: Any, fail: dict[str, str], calls: list[tuple[str, bool]], message: str) -> None:
    runner = FailingRunner(fail)
    backend = IptablesNftBackend(runner, Options())
    backend.families = (4, 6)
    target = apply.Target("pod", Namespace(), apply.Ruleset.from_dict(POD_RULESET), pristine=True)
    with pytest.raises(ApplyError) as raised:
        apply.apply_target(backend, target, apply.RunOptions(state_dir=str(tmp_path)))
    assert runner.calls == calls
    assert str(raised.value) == message

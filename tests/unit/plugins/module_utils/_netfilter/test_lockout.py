# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the never-lock-out allowance and the confirm-or-restore watchdog."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import lockout
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Step
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import NetfilterError
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import AddressSet, Chain, PortRange, Rule, Ruleset
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import Namespace


@pytest.mark.parametrize(("environ", "expected"), [
    ({"SSH_CONNECTION": "192.0.2.5 50022 192.0.2.1 22"}, "192.0.2.5"),
    ({"SSH_CLIENT": "2001:db8::5 50022 22"}, "2001:db8::5"),
    ({"SSH_CONNECTION": "::ffff:192.0.2.7 1 ::ffff:192.0.2.1 22"}, "192.0.2.7"),
    ({"SSH_CONNECTION": "fe80::1%eth0 1 fe80::2%eth0 22"}, "fe80::1"),
    ({"SSH_CONNECTION": "garbage", "SSH_CLIENT": "192.0.2.9 1 22"}, "192.0.2.9"),
    ({}, None),
])
def test_ssh_client_address(environ: dict[str, str], expected: str | None) -> None:
    assert lockout.ssh_client_address(environ) == expected


def test_ssh_client_from_an_ancestor(tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415  (only this test starts a process tree)

    env = {"PATH": "/usr/bin:/bin", "SSH_CONNECTION": "192.0.2.44 5000 192.0.2.1 22"}
    # parent (has SSH_CONNECTION) -> child (env cleared, like sudo) asks the tree.
    child = (
        "import sys; sys.path[:0] = sys.argv[1:]; "
        "from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import lockout; "
        "print(lockout.ssh_client_address({}), lockout.ssh_client_from_process_tree())"
    )
    paths = [path for path in sys.path if path]
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}, *{paths!r}], env={{}}, check=True)"
    done = subprocess.run([sys.executable, "-c", parent], env=env, capture_output=True, text=True, check=True,
                          cwd=tmp_path)
    assert done.stdout.split() == ["None", "192.0.2.44"]


def ruleset() -> Ruleset:
    return Ruleset(
        chains=(Chain("ingress", "input", (Rule("accept", "web", protocol="tcp", ports=(PortRange(80, 80),)),), "deny"),
                Chain("egress", "output", (), "accept")),
        address_sets=(AddressSet("zt-mgmt", ("10.0.0.1",)),),
    )


def test_management_rules_go_first_ssh_in_and_its_replies_out() -> None:
    result = lockout.with_management_access(ruleset(), ["192.0.2.0/24", "2001:db8::5"])
    ingress, egress = result.chains
    assert ingress.rules[0] == Rule("accept", "implicit:never-lock-out", protocol="tcp", ports=(PortRange(22, 22),), peer_set="zt-mgmtx")
    assert ingress.rules[1:] == ruleset().chains[0].rules
    # Only what sshd sends (source port 22) goes out to the management addresses, whatever conntrack knows.
    assert egress.rules == (
        Rule("accept", "implicit:never-lock-out replies", protocol="tcp", source_ports=(PortRange(22, 22),), peer_set="zt-mgmtx"),
    )
    assert egress.default_verdict == ruleset().chains[1].default_verdict
    assert result.address_set("zt-mgmtx").members == ("192.0.2.0/24", "2001:db8::5")
    assert result.address_set("zt-mgmt").members == ("10.0.0.1",), "an existing set of that name is left alone"


def test_management_noop_without_addresses_or_input_chain() -> None:
    assert lockout.with_management_access(ruleset(), []) == ruleset()
    egress_only = Ruleset(chains=(Chain("egress", "output", (), "accept"),))
    assert lockout.with_management_access(egress_only, ["192.0.2.1"]) == egress_only


def test_management_address_errors_say_what_to_fix() -> None:
    with pytest.raises(NetfilterError, match=r"management_addresses: '192\.0\.2\.1/24' is not an IP address or network"):
        lockout.with_management_access(ruleset(), ["192.0.2.1/24"])


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def marker_step(path: Path) -> Step:
    """A harmless step: write a file (the watchdog runs argv lists only)."""
    return Step((sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('restored')", str(path)), "", "marker")


def test_watchdog_restores_when_not_confirmed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    target = lockout.RollbackTarget(Namespace(), str(tmp_path / "root.lock"), [marker_step(marker)])
    started = lockout.start_watchdog([target], 1, str(tmp_path))
    assert started["timeout"] == 1 and Path(started["snapshot"]).exists()
    assert lockout.rollback_status(started["token"], str(tmp_path)) == "pending"
    wait_for((tmp_path / f"rollback-{started['token']}.rolledback").exists)
    assert marker.read_text() == "restored"
    reported = lockout.collect_rollbacks(str(tmp_path))
    assert [(item["token"], item["errors"]) for item in reported] == [(started["token"], [])]
    assert lockout.collect_rollbacks(str(tmp_path)) == [], "each rollback is reported once"
    with pytest.raises(lockout.RollbackError, match="already restored the previous rules"):
        lockout.confirm(started["token"], str(tmp_path))


def test_confirm_cancels_the_watchdog(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    target = lockout.RollbackTarget(Namespace(), str(tmp_path / "root.lock"), [marker_step(marker)])
    started = lockout.start_watchdog([target], 1, str(tmp_path))
    assert lockout.confirm(started["token"], str(tmp_path)) == {"confirmed": True, "rolled_back": False}
    assert lockout.confirm(started["token"], str(tmp_path)) == {"confirmed": True, "rolled_back": False}
    time.sleep(1.6)
    assert not marker.exists()
    assert lockout.rollback_status(started["token"], str(tmp_path)) == "confirmed"


def test_snapshot_holds_argv_lists_and_no_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Record the watchdog's start instead of leaving a real process asleep for an hour after the tests.
    launched: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(lockout.subprocess, "Popen", lambda argv, **kwargs: launched.append((argv, kwargs)))
    step = Step(("iptables-restore", "--noflush"), "*filter\nCOMMIT\n", "restore")
    target = lockout.RollbackTarget(Namespace(name="ztd-x"), "/run/x.lock", [step])
    started = lockout.start_watchdog([target], 3600, str(tmp_path))
    assert [argv[3:] for argv, _unused in launched] == [[started["snapshot"], "3600"]]
    assert launched[0][0][1:3] == ["-c", lockout.WATCHDOG_SCRIPT] and launched[0][1]["start_new_session"] is True
    plan = json.loads(Path(started["snapshot"]).read_text())
    assert plan["targets"] == [{"namespace": "ztd-x", "prefix": ["ip", "netns", "exec", "ztd-x"], "lock": "/run/x.lock",
                                "steps": [{"argv": ["iptables-restore", "--noflush"], "stdin": "*filter\nCOMMIT\n", "what": "restore"}]}]
    assert oct(Path(started["snapshot"]).stat().st_mode & 0o777) == "0o600"
    lockout.confirm(started["token"], str(tmp_path))  # so the sleeping watchdog finds nothing to do


@pytest.mark.parametrize(("token", "message"), [
    ("nothex!", "is not a token returned by this module"),
    ("abcdef", "is unknown on this host"),
])
def test_confirm_bad_tokens(tmp_path: Path, token: str, message: str) -> None:
    with pytest.raises(lockout.RollbackError, match=message):
        lockout.confirm(token, str(tmp_path))

# SPDX-License-Identifier: GPL-3.0-or-later
"""The runner enters a namespace itself (setns around the fork) and always comes back; the tools' prefix otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import runner as runner_module
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import CommandError, NetfilterError
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import Namespace, Runner

PRINT_NETNS = [sys.executable, "-c", "import os; print(os.stat('/proc/self/ns/net').st_ino)"]


@pytest.fixture(autouse=True)
def _in_process_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with in-process entering on (a test that turns it off does not leak)."""
    monkeypatch.setattr(Runner, "in_process", True)


def _own() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="creates a network namespace")
def test_a_command_runs_in_the_namespace_without_ip_netns_exec_and_the_module_comes_back(namespace: str) -> None:
    own = _own()
    runner = Runner(Namespace(name=namespace))
    result = runner.run(PRINT_NETNS)
    assert result.argv == tuple(PRINT_NETNS), "no ip netns exec in front"
    assert int(result.stdout) == os.stat(f"/run/netns/{namespace}").st_ino
    assert _own() == own
    with pytest.raises(CommandError, match=rf"failed in namespace {namespace} \(exit 4\)"):
        runner.run([sys.executable, "-c", "raise SystemExit(4)"])
    assert _own() == own, "back after a failing command too"
    path_runner = Runner(Namespace(path=f"/run/netns/{namespace}"))
    assert int(path_runner.run(PRINT_NETNS).stdout) == os.stat(f"/run/netns/{namespace}").st_ino
    assert _own() == own and (runner.reads, path_runner.reads) == (2, 1)


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="creates a network namespace")
def test_without_setns_the_tools_enter_it_from_then_on(namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(fd: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(runner_module, "setns_net", refused)
    result = Runner(Namespace(name=namespace)).run(PRINT_NETNS)
    assert result.argv[:4] == ("ip", "netns", "exec", namespace)
    assert int(result.stdout) == os.stat(f"/run/netns/{namespace}").st_ino
    assert Runner.in_process is False, "one refusal is enough: later runners do not try again"


def test_a_namespace_that_is_gone_is_left_to_the_tools_to_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "setns_net", lambda fd: pytest.fail("nothing to enter"))
    seen: list[list[str]] = []

    def started(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "gone")

    monkeypatch.setattr(subprocess, "run", started)
    with pytest.raises(CommandError, match="failed in namespace /nonexistent/ns/net"):
        Runner(Namespace(path="/nonexistent/ns/net")).run(["iptables-save"])
    assert seen == [["nsenter", "--net=/nonexistent/ns/net", "iptables-save"]]
    assert Runner.in_process is True, "a vanished namespace says nothing about setns"


def test_the_root_namespace_is_not_entered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "setns_net", lambda fd: pytest.fail("the root namespace needs no entering"))
    assert Runner(Namespace()).run([sys.executable, "-c", "print(1)"]).argv[0] == sys.executable


def test_a_module_that_cannot_come_back_stops(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> None:
    calls: list[int] = []

    def enter_then_refuse(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(22, "Invalid argument")

    monkeypatch.setattr(runner_module, "setns_net", enter_then_refuse)
    fake = os.path.join(str(tmp_path), "ns")
    with open(fake, "w", encoding="utf-8"):
        pass
    with pytest.raises(NetfilterError, match=f"could not return to this module's own network namespace after a command in {fake}"):
        Runner(Namespace(path=fake)).run([sys.executable, "-c", "pass"])
    assert len(calls) == 2

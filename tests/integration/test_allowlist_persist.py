# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot persistence of the allowlist module, in throwaway namespaces (no lab, no lock).

A "reboot" here empties the server namespace of every rule, set and table (as a boot
leaves it) and then runs the persisted unit's own ExecStart commands inside it, the way
systemd would (NetworkNamespacePath= points at the namespace). The unit file itself is
checked with ``systemd-analyze verify``. Also here: the two housekeeping fixes of issue 14
(lock files removed; iptables-nft base chains we created removed again by ``state: absent``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.persist")

from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply, backend, persist
from netns_helpers import NetnsPair, in_ns, install_foreign_rules, netns_pair, save_without_counters
from test_allowlist_iptables import ALLOWED, EXPECTED, FORBIDDEN, OPEN, UNLISTED, run_module, server_ruleset, truth

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ("iptables-nft", "iptables-legacy", "nftables")


@pytest.fixture
def pair() -> Iterator[NetnsPair]:
    """A client/server pair with listeners on 22, 80, 8080 and 9090 (IPv4 and IPv6)."""
    with netns_pair("ztp") as created:
        created.listen_many([(port, family) for port in (22, ALLOWED, FORBIDDEN, UNLISTED) for family in (4, 6)])
        yield created


def persist_args(pair: NetnsPair, tmp_path: Path, backend_name: str, **extra: Any) -> dict[str, Any]:
    """Module arguments: the server namespace as host target, persisted below ``tmp_path``."""
    return {"netns": pair.server, "backend": backend_name, "ruleset": server_ruleset(pair), "keep_ssh": False,
            "default_action": "reject", "persist": True, "persist_dir": str(tmp_path / "etc"),
            "unit_dir": str(tmp_path / "systemd"), **extra}


def api_run(args: dict[str, Any], check: bool = False, diff: bool = False) -> dict[str, Any]:
    """``apply.run`` in-process with the persistence options of ``args``."""
    namespace = f"/run/netns/{args['netns']}"
    options = apply.RunOptions(
        state=args.get("state", "present"), backend=args["backend"], options=backend.Options(default_action="reject"),
        keep_ssh=args.get("keep_ssh", False), management_addresses=tuple(args.get("management_addresses", ())),
        host_netns=args["netns"], check_mode=check, diff_mode=diff,
        persist=persist.PersistOptions(enabled=args.get("persist"), boot_policy=args.get("boot_policy", "restore"),
                                       persist_dir=args["persist_dir"], unit_dir=args["unit_dir"], netns_path=namespace),
    )
    result = apply.run(args.get("ruleset"), [], options, {})
    assert not result.get("failed"), result
    return result


def wipe(namespace: str) -> None:
    """Leave ``namespace`` as a boot does: no rules, no sets, no tables, in either flavour."""
    for tool in ("iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy"):
        for table in ("filter", "mangle", "nat"):
            in_ns(namespace, [tool, "-t", table, "-F"], check=False)
            in_ns(namespace, [tool, "-t", table, "-X"], check=False)
    in_ns(namespace, ["nft", "flush", "ruleset"])
    in_ns(namespace, ["ipset", "destroy"], check=False)
    assert in_ns(namespace, ["nft", "list", "ruleset"]).stdout.strip() == ""
    assert in_ns(namespace, ["ipset", "list", "-n"]).stdout.strip() == ""


def boot(namespace: str, unit: Path) -> list[list[str]]:
    """Run the unit's ExecStart commands in ``namespace`` (what systemd does at boot); return them."""
    commands = persist.exec_start_commands(unit.read_text())
    assert commands, unit.read_text()
    for command in commands:
        in_ns(namespace, command)
    return commands


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_restore_after_reboot_gives_the_same_rules(pair: NetnsPair, tmp_path: Path, backend_name: str) -> None:
    args = persist_args(pair, tmp_path, backend_name)
    first = run_module(args)
    assert first["changed"] is True and first["persist"]["changed"] is True, first
    unit = tmp_path / "systemd" / persist.UNIT_NAME
    etc = tmp_path / "etc"
    assert (etc.stat().st_mode & 0o777) == 0o700
    assert all((path.stat().st_mode & 0o777) == 0o600 for path in etc.iterdir())
    assert os.readlink(tmp_path / "systemd" / "multi-user.target.wants" / persist.UNIT_NAME) == str(unit)
    text = unit.read_text()
    assert "Before=network-pre.target" in text and "Wants=network-pre.target" in text
    assert f"NetworkNamespacePath=/run/netns/{pair.server}" in text
    assert truth(pair) == EXPECTED

    wipe(pair.server)
    assert truth(pair) == OPEN
    commands = boot(pair.server, unit)
    if backend_name != "nftables":
        # Sets before rules.
        assert Path(commands[0][0]).name == "ipset"
    assert truth(pair) == EXPECTED
    # The restored objects are exactly what the module applies: a run finds nothing to do.
    again = api_run(args)
    assert again["changed"] is False, again
    assert again["results"][0]["drift"] == []


def test_restore_leaves_foreign_rules_alone(pair: NetnsPair, tmp_path: Path) -> None:
    args = persist_args(pair, tmp_path, "iptables-nft")
    api_run(args)
    wipe(pair.server)
    install_foreign_rules(pair.server, "iptables-nft-restore")
    foreign = save_without_counters(pair.server)
    boot(pair.server, tmp_path / "systemd" / persist.UNIT_NAME)
    restored = save_without_counters(pair.server)
    assert "ZT-INGRESS" in restored
    assert "\n".join(line for line in restored.splitlines() if "ZT-" not in line) + "\n" == foreign
    assert truth(pair) == EXPECTED


@pytest.mark.parametrize("backend_name", ["iptables-nft", "nftables"])
def test_boot_policy_closed_passes_only_ssh_from_management_and_loopback(pair: NetnsPair, tmp_path: Path, backend_name: str) -> None:
    args = persist_args(pair, tmp_path, backend_name, boot_policy="closed", management_addresses=[pair.client_v4])
    api_run(args)
    assert truth(pair) == EXPECTED  # the applied rules are the policy's
    wipe(pair.server)
    boot(pair.server, tmp_path / "systemd" / persist.UNIT_NAME)
    assert pair.connect(pair.server_v4, 22) is True
    assert pair.connect(pair.server_v6, 22) is False  # the management address is the client's IPv4 only
    assert {port: pair.connect(pair.server_v4, port) for port in (ALLOWED, FORBIDDEN, UNLISTED)} == dict.fromkeys(
        (ALLOWED, FORBIDDEN, UNLISTED), False)
    # Loopback inside the server (to its own address: the lo interface) still works.
    connect = f"import socket; socket.create_connection(('{pair.server_v4}', {ALLOWED}), 1)"
    loop = in_ns(pair.server, ["python3", "-c", connect], check=False)
    assert loop.returncode == 0, loop.stderr
    # The next run replaces the closed rules with the policy's.
    assert api_run(args)["changed"] is True
    assert truth(pair) == EXPECTED


def test_boot_policy_closed_without_management_address_fails_before_writing(pair: NetnsPair, tmp_path: Path) -> None:
    result = run_module(persist_args(pair, tmp_path, "iptables-nft", boot_policy="closed"))
    assert result["failed"] is True
    assert "boot_policy closed needs management addresses" in result["msg"]
    assert not (tmp_path / "etc").exists()


def test_check_mode_and_diff_show_files_and_write_nothing(pair: NetnsPair, tmp_path: Path) -> None:
    args = persist_args(pair, tmp_path, "iptables-nft")
    checked = api_run(args, check=True, diff=True)
    assert checked["changed"] is True and checked["persist"]["changed"] is True
    assert not (tmp_path / "etc").exists() and not (tmp_path / "systemd").exists()
    assert set(checked["persist"]["files"]) == {
        str(tmp_path / "etc" / "ipset.restore"), str(tmp_path / "etc" / "iptables-v4.restore"),
        str(tmp_path / "etc" / "iptables-v6.restore"), str(tmp_path / "systemd" / persist.UNIT_NAME),
        str(tmp_path / "systemd" / "multi-user.target.wants" / persist.UNIT_NAME)}
    unit_diff = next(item for item in checked["diff"] if item.get("after_header") == str(tmp_path / "systemd" / persist.UNIT_NAME))
    assert unit_diff["before"] == "" and "ExecStart=" in unit_diff["after"]
    run_module(args)
    # Only the unit changes when the boot policy does; check mode says so and leaves it.
    switched = run_module({**args, "boot_policy": "closed", "management_addresses": [pair.client_v4]}, check=True, diff=True)
    assert switched["changed"] is True
    assert [entry["changed"] for entry in switched["results"]] == [False]
    assert "boot_policy restore" in (tmp_path / "systemd" / persist.UNIT_NAME).read_text()


def test_absent_removes_files_unit_and_link(pair: NetnsPair, tmp_path: Path) -> None:
    args = persist_args(pair, tmp_path, "nftables")
    api_run(args)
    assert (tmp_path / "etc" / "zerotrust.nft").exists()
    removed = run_module({**args, "state": "absent", "ruleset": None})
    assert removed["changed"] is True and removed["persist"]["changed"] is True, removed
    assert not (tmp_path / "etc").exists()
    assert list((tmp_path / "systemd").iterdir()) == []
    assert run_module({**args, "state": "absent", "ruleset": None})["changed"] is False


def test_switching_backend_removes_the_other_files(pair: NetnsPair, tmp_path: Path) -> None:
    args = persist_args(pair, tmp_path, "iptables-nft")
    api_run(args)
    assert sorted(path.name for path in (tmp_path / "etc").iterdir()) == ["ipset.restore", "iptables-v4.restore", "iptables-v6.restore"]
    api_run({**args, "backend": "nftables"})
    assert sorted(path.name for path in (tmp_path / "etc").iterdir()) == ["zerotrust.nft"]


def test_no_systemd_warns_and_writes_nothing(pair: NetnsPair, tmp_path: Path) -> None:
    if os.path.isdir(persist.SYSTEMD_MARKER):
        pytest.skip("this machine runs systemd: the no-systemd warning cannot show here")
    args = {key: value for key, value in persist_args(pair, tmp_path, "iptables-nft").items() if key != "persist"}
    warned = ansible_output(args)
    assert '"skipped": "no systemd"' in warned.stdout
    # Ansible prints module warnings on stderr, wrapped: compare without the line breaks.
    assert "does not run systemd" in " ".join(warned.stderr.split()) and "persist: false" in " ".join(warned.stderr.split())
    assert not (tmp_path / "etc").exists()
    quiet = ansible_output({**args, "persist": False})
    assert "systemd" not in quiet.stderr and '"skipped": "persist is false"' in quiet.stdout


def ansible_output(args: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """The module run through Ansible, with its printed output (warnings go to stderr)."""
    # The default callback (the one-line one drops module warnings).
    argv = ["ansible", "localhost", "-c", "local", "-m", "zerotrust.workloads.allowlist", "-a", json.dumps(args)]
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default",
               PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    env.pop("SSH_CONNECTION", None)
    env.pop("SSH_CLIENT", None)
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)


def test_bad_persist_dir_is_refused_before_any_change(pair: NetnsPair, tmp_path: Path) -> None:
    result = run_module(persist_args(pair, tmp_path, "iptables-nft", persist_dir=str(tmp_path / "a b")))
    assert result["failed"] is True
    assert result["msg"].startswith(f"persist_dir '{tmp_path / 'a b'}' must be an absolute path")
    assert "ZT-" not in in_ns(pair.server, ["iptables-save"]).stdout


@pytest.mark.parametrize("backend_name", ["iptables-nft", "nftables"])
def test_unit_passes_systemd_analyze_verify(pair: NetnsPair, tmp_path: Path, backend_name: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (scripts/setup-system.sh installs the systemd package)")
    args = persist_args(pair, tmp_path, backend_name, boot_policy="closed", management_addresses=["192.0.2.0/24"])
    api_run(args)
    done = subprocess.run([analyze, "verify", str(tmp_path / "systemd" / persist.UNIT_NAME)], capture_output=True, text=True,
                          check=False)
    # verify only warns (exit 0) about unknown keys: any output is a finding.
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), done


def test_lock_files_are_removed(pair: NetnsPair, tmp_path: Path) -> None:
    state_dir = tmp_path / "run"
    options = apply.RunOptions(backend="iptables-nft", keep_ssh=False, host_netns=pair.server, state_dir=str(state_dir))
    apply.run(server_ruleset(pair), [], options, {})
    apply.run(server_ruleset(pair), [], options, {})
    assert [path.name for path in state_dir.iterdir() if path.name.endswith(".lock")] == []


def test_absent_removes_base_chains_it_created(pair: NetnsPair) -> None:
    guard = {"name": "nodeport_guard", "hook": "prerouting", "default_verdict": "accept", "rules": []}
    ruleset = server_ruleset(pair)
    ruleset["chains"].append(guard)
    wipe(pair.server)
    args = {"netns": pair.server, "backend": "iptables-nft", "ruleset": ruleset, "keep_ssh": False}
    assert run_module(args)["changed"] is True
    hooked = in_ns(pair.server, ["nft", "list", "chains"]).stdout
    assert "hook output" in hooked and "hook prerouting" in hooked
    assert run_module({**args, "state": "absent", "ruleset": None})["changed"] is True
    listing = in_ns(pair.server, ["nft", "list", "ruleset"]).stdout
    assert "hook" not in listing, listing
    assert truth(pair) == OPEN

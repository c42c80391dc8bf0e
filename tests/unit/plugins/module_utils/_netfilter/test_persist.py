# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of boot persistence: the files and unit rendered from the backends' own transactions,
the ExecStart reader, option validation, atomic writes, modes and removal (in tmp_path; no namespace)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import iptables, persist
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Options, Step
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import AddressSet, Chain, PortRange, Rule, Ruleset
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.nftables import NftablesBackend
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import Namespace, Runner

RULESET = Ruleset(
    chains=(
        Chain("ingress", "input", (Rule("accept", "web", protocol="tcp", ports=(PortRange(80, 80),), peer_set="zt-web"),), "deny"),
        Chain("egress", "output", (), "accept"),
    ),
    address_sets=(AddressSet("zt-web", ("192.0.2.1", "2001:db8::1")),),
)


def options(tmp_path: Path, **extra: object) -> persist.PersistOptions:
    return persist.PersistOptions(enabled=True, persist_dir=str(tmp_path / "etc"), unit_dir=str(tmp_path / "unit"), **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "path", "expected_tail"),
    [
        (("ipset", "restore"), "/p/ipset.restore", ["-exist", "-file", "/p/ipset.restore", "restore"]),
        (("iptables-nft-restore", "-w", "30", "--noflush"), "/p/v4", ["-w", "30", "--noflush", "/p/v4"]),
        (("nft", "-f", "-"), "/p/zerotrust.nft", ["-f", "/p/zerotrust.nft"]),
    ],
)
def test_exec_argv_reads_the_file_instead_of_stdin(argv: tuple[str, ...], path: str, expected_tail: list[str]) -> None:
    command = persist.exec_argv(Step(argv), path)
    assert os.path.isabs(command[0]) and os.path.basename(command[0]) == argv[0]
    assert command[1:] == expected_tail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[Service]\nExecStart=/usr/sbin/nft -f /etc/z.nft\n", [["/usr/sbin/nft", "-f", "/etc/z.nft"]]),
        ("[Unit]\nExecStart=/bin/false\n[Service]\nType=oneshot\nExecStart=-/a b\nExecStart=/c\n[Install]\nExecStart=/d\n",
         [["/a", "b"], ["/c"]]),
        ("[Service]\nExecStart=\n", []),
        ("", []),
    ],
)
def test_exec_start_commands(text: str, expected: list[list[str]]) -> None:
    assert persist.exec_start_commands(text) == expected


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("persist_dir", "relative/dir", "persist_dir 'relative/dir' must be an absolute path"),
        ("persist_dir", "/etc/with space", "persist_dir '/etc/with space' must be an absolute path"),
        ("unit_dir", "/etc/%n", "unit_dir '/etc/%n' must be an absolute path"),
        ("persist_dir", "/", "persist_dir '/' must be an absolute path"),
        ("boot_policy", "open", "boot_policy 'open' must be one of restore, closed"),
    ],
)
def test_bad_options_are_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(persist.PersistError) as caught:
        persist.PersistOptions(**{field: value})  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


def test_closed_ruleset_needs_a_management_address() -> None:
    with pytest.raises(persist.PersistError, match="boot_policy closed needs management addresses"):
        persist.closed_ruleset([])


def test_closed_ruleset_passes_loopback_established_and_ssh_only() -> None:
    closed = persist.closed_ruleset(["192.0.2.7"])
    assert [(chain.name, chain.hook, chain.default_verdict) for chain in closed.chains] == [
        ("ingress", "input", "deny"), ("egress", "output", "deny")]
    ingress = closed.chains[0].rules
    assert [(rule.protocol, rule.ports, rule.interface, rule.conntrack) for rule in ingress] == [
        ("tcp", (PortRange(22, 22),), None, ()),
        (None, (), "lo", ()),
        (None, (), None, ("established", "related")),
    ]
    assert [address_set.members for address_set in closed.address_sets] == [("192.0.2.7",)]


def test_iptables_files_are_the_backends_own_empty_namespace_transaction(tmp_path: Path) -> None:
    backend = iptables.IptablesNftBackend(Runner(Namespace()), Options())
    files = {Path(item.path).name: item for item in persist.desired_files(backend, RULESET, options(tmp_path))}
    steps = backend.transaction(backend.desired_state(RULESET), iptables.State())
    assert files["ipset.restore"].content == steps[0].stdin
    assert files["iptables-v4.restore"].content == steps[1].stdin
    assert files["zerotrust.nft"].content is None
    v4 = files["iptables-v4.restore"].content or ""
    # Our chains and jumps only, added to what is there.
    assert ":ZT-INGRESS - [0:0]" in v4 and ":ZT-EGRESS - [0:0]" in v4
    assert "-I INPUT 1 " in v4 and "-F " not in v4 and "-X " not in v4
    unit = files[persist.UNIT_NAME].content or ""
    assert unit.index("ipset -exist -file") < unit.index("iptables-nft-restore -w 30 --noflush")
    assert files[persist.UNIT_NAME].mode == 0o644 and files["ipset.restore"].mode == 0o600


def test_nftables_file_replaces_only_our_table(tmp_path: Path) -> None:
    backend = NftablesBackend(Runner(Namespace()), Options())
    files = {Path(item.path).name: item for item in persist.desired_files(backend, RULESET, options(tmp_path))}
    script = files["zerotrust.nft"].content or ""
    assert script.splitlines()[:3] == ["add table inet zerotrust", "delete table inet zerotrust", "add table inet zerotrust"]
    assert all(" inet zerotrust" in line for line in script.splitlines())
    assert files["ipset.restore"].content is None


def test_unit_text_orders_before_the_network(tmp_path: Path) -> None:
    text = persist.unit_text([["/usr/sbin/nft", "-f", "/x"]], options(tmp_path, netns_path="/run/netns/a"), "nftables")
    lines = text.splitlines()
    for expected in ("DefaultDependencies=no", "Wants=network-pre.target", "Before=network-pre.target shutdown.target",
                     "Type=oneshot", "RemainAfterExit=yes", "NetworkNamespacePath=/run/netns/a", "ExecStart=/usr/sbin/nft -f /x",
                     "WantedBy=multi-user.target"):
        assert expected in lines


def test_write_then_nothing_to_do_then_absent(tmp_path: Path) -> None:
    opts = options(tmp_path)
    backend = NftablesBackend(Runner(Namespace()), Options())
    files = persist.desired_files(backend, RULESET, opts)
    changes, diffs = persist.plan_files(files, opts)
    assert [Path(change.path).name for change in changes] == ["zerotrust.nft", persist.UNIT_NAME, persist.UNIT_NAME]
    assert [diff["before"] for diff in diffs] == ["", "", ""]
    persist.write_changes(changes, opts)
    assert (tmp_path / "etc").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "etc" / "zerotrust.nft").stat().st_mode & 0o777 == 0o600
    assert os.readlink(opts.wants_link) == opts.unit_path
    assert [name for name in os.listdir(tmp_path / "etc") if name.startswith(".")] == []  # no temporary left
    assert persist.plan_files(files, opts) == ([], [])
    # A mode changed by hand is a change.
    os.chmod(tmp_path / "etc" / "zerotrust.nft", 0o644)
    assert [change.path for change in persist.plan_files(files, opts)[0]] == [str(tmp_path / "etc" / "zerotrust.nft")]
    removals, _unused = persist.plan_files(persist.absent_files(opts), opts)
    persist.write_changes(removals, opts)
    assert not (tmp_path / "etc").exists() and list((tmp_path / "unit").iterdir()) == []


def test_persist_unset_without_systemd_warns_and_writes_nothing(tmp_path: Path) -> None:
    opts = persist.PersistOptions(persist_dir=str(tmp_path / "etc"), unit_dir=str(tmp_path / "unit"),
                                  systemd_marker=str(tmp_path / "no-systemd"))
    backend = NftablesBackend(Runner(Namespace()), Options())
    result = persist.persist(backend, RULESET, [], opts, present=True, check_mode=False)
    assert result["skipped"] == "no systemd" and result["changed"] is False
    assert "does not run systemd" in result["warnings"][0] and "persist: false" in result["warnings"][0]
    assert not (tmp_path / "etc").exists()
    silent = persist.persist(backend, RULESET, [], persist.PersistOptions(enabled=False, persist_dir=str(tmp_path / "etc")),
                             present=True, check_mode=False)
    assert (silent["skipped"], silent["warnings"]) == ("persist is false", [])


def test_persist_unset_with_systemd_writes(tmp_path: Path) -> None:
    (tmp_path / "systemd-runs").mkdir()
    opts = persist.PersistOptions(persist_dir=str(tmp_path / "etc"), unit_dir=str(tmp_path / "unit"),
                                  systemd_marker=str(tmp_path / "systemd-runs"))
    backend = NftablesBackend(Runner(Namespace()), Options())
    checked = persist.persist(backend, RULESET, [], opts, present=True, check_mode=True)
    assert checked["changed"] is True and not (tmp_path / "etc").exists()
    # systemctl daemon-reload is attempted after a unit change; where it is missing or fails, a warning says so.
    written = persist.persist(backend, RULESET, [], opts, present=True, check_mode=False)
    assert written["changed"] is True and written["systemd"] is True
    assert (tmp_path / "etc" / "zerotrust.nft").exists()


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and link below ``root``: content (a link's target) and mode."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = (os.readlink(path), 0)
        elif path.is_file():
            found[str(path.relative_to(root))] = (path.read_text(), path.stat().st_mode & 0o7777)
    return found


@pytest.mark.parametrize("first_write", [True, False], ids=["over-earlier-files", "over-nothing"])
def test_rollback_step_puts_the_persisted_files_back(tmp_path: Path, first_write: bool) -> None:
    """The watchdog's step (run as the watchdog runs it: argv, JSON on stdin) restores every file, mode and the link."""
    opts = options(tmp_path)
    backend = NftablesBackend(Runner(Namespace()), Options())
    if first_write:
        persist.write_changes(persist.plan_files(persist.desired_files(backend, RULESET, opts), opts)[0], opts)
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "unit" / f"{persist.WANTED_BY}.wants").mkdir(parents=True, exist_ok=True)
    before = _tree(tmp_path)
    refused = persist.closed_ruleset(["192.0.2.254"])
    result = persist.persist(backend, refused, ["192.0.2.254"], opts, present=True, check_mode=False)
    assert result["changed"] and _tree(tmp_path) != before
    step = persist.restore_step(result["previous"], opts)
    done = subprocess.run(list(step.argv), input=step.stdin, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert _tree(tmp_path) == before

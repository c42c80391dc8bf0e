# SPDX-License-Identifier: GPL-3.0-or-later
"""The nf_tables read cache: outputs reused only while the namespace's cookie and generation hold.

The cache itself is checked as tables (what is found for which key, what a file on disk turns into);
the kernel's generation counter and the runner's use of it on real throwaway namespaces, against
what the tools print.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply, netlink, readcache
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Options
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.readcache import ReadCache
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import Namespace, Runner

SAVE4 = ("iptables-nft-save",)
SAVE6 = ("ip6tables-nft-save",)


def recorded(generation: tuple[int, int] = (7, 3)) -> ReadCache:
    cache = ReadCache(None)
    cache.record("zt-pod-1", "/run/netns/zt-pod-1", generation, [SAVE4, SAVE6], ["four\n", "six\n"])
    return cache


@pytest.mark.parametrize(
    ("label", "generation", "commands", "expected"),
    [
        ("zt-pod-1", (7, 3), [SAVE4, SAVE6], ["four\n", "six\n"]),
        ("zt-pod-1", (7, 3), [SAVE6], ["six\n"]),
        # A commit since: the generation moved.
        ("zt-pod-1", (7, 4), [SAVE4, SAVE6], None),
        # Another namespace under the same name (a reused inode starts at the same generation): another cookie.
        ("zt-pod-1", (8, 3), [SAVE4, SAVE6], None),
        # A command never recorded there: all or nothing.
        ("zt-pod-1", (7, 3), [SAVE4, ("nft", "-j", "list", "table", "inet", "zerotrust")], None),
        ("zt-pod-2", (7, 3), [SAVE4], None),
    ],
)
def test_outputs_are_found_only_for_the_same_cookie_and_generation(
    label: str, generation: tuple[int, int], commands: list[tuple[str, ...]], expected: Optional[list[str]]
) -> None:
    assert recorded().outputs(label, generation, commands) == expected


def test_a_record_at_a_new_generation_replaces_every_output_of_the_old_one() -> None:
    cache = recorded()
    cache.record("zt-pod-1", "/run/netns/zt-pod-1", (7, 5), [SAVE4], ["four again\n"])
    assert cache.outputs("zt-pod-1", (7, 5), [SAVE4]) == ["four again\n"]
    assert cache.outputs("zt-pod-1", (7, 5), [SAVE6]) is None
    assert cache.outputs("zt-pod-1", (7, 3), [SAVE4]) is None


def test_a_replaced_program_does_not_reuse_the_outputs_of_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = tmp_path / "iptables-nft-save"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    readcache._program_identity.cache_clear()
    cache = recorded()
    assert cache.outputs("zt-pod-1", (7, 3), [SAVE4]) == ["four\n"]
    os.utime(program, ns=(0, 10**9))  # an upgrade: another file in its place
    readcache._program_identity.cache_clear()
    try:
        assert cache.outputs("zt-pod-1", (7, 3), [SAVE4]) is None
    finally:
        readcache._program_identity.cache_clear()


def document(**overrides: Any) -> dict[str, Any]:
    entry = {"cookie": 7, "generation": 3, "file": None, "outputs": {readcache.command_key(SAVE4): "four\n"}}
    base: dict[str, Any] = {"format": readcache.FORMAT, "boot": readcache.boot_id(), "namespaces": {"host": entry}}
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (json.dumps(document()), ["four\n"]),
        # Written before a reboot: cookies start again.
        (json.dumps(document(boot="another-boot")), None),
        (json.dumps(document(format=readcache.FORMAT + 1)), None),
        ("{not json", None),
        ("", None),
        (json.dumps([1, 2]), None),
        (json.dumps(document(namespaces=[])), None),
        # An entry of the wrong shape is dropped; the others stay.
        (json.dumps(document(namespaces={"host": {"cookie": "7", "generation": 3, "file": None, "outputs": {}}})), None),
        (json.dumps(document(namespaces={"host": {"cookie": 7, "generation": 3, "file": None, "outputs": {"k": 1}}})), None),
    ],
)
def test_a_file_is_read_only_when_it_is_of_this_boot_and_well_formed(tmp_path: Path, content: str, found: Optional[list[str]]) -> None:
    (tmp_path / "reads-netns-1-2.json").write_text(content)
    cache = ReadCache.load(str(tmp_path), "netns-1-2")
    assert cache.path == str(tmp_path / "reads-netns-1-2.json")
    assert cache.outputs("host", (7, 3), [SAVE4]) == found


def test_saving_drops_namespaces_that_are_gone_and_stale_files_of_other_hosts(tmp_path: Path) -> None:
    alive = tmp_path / "alive"
    alive.write_text("")
    stale, fresh = tmp_path / "reads-netns-9-9.json", tmp_path / "reads-netns-8-8.json"
    for path in (stale, fresh):
        path.write_text("{}")
    os.utime(stale, (time.time() - readcache.STALE_SECONDS - 60,) * 2)
    unrelated = tmp_path / "netns-9-9.lock"
    unrelated.write_text("")
    os.utime(unrelated, (0, 0))

    cache = ReadCache.load(str(tmp_path), "netns-1-2")
    cache.save()
    assert not (tmp_path / "reads-netns-1-2.json").exists(), "nothing recorded: nothing written"
    for label, file in (("host", None), ("pod-alive", str(alive)), ("pod-gone", str(tmp_path / "gone"))):
        cache.record(label, file, (1, 1), [SAVE4], [label])
    cache.save()

    written = tmp_path / "reads-netns-1-2.json"
    assert written.stat().st_mode & 0o777 == 0o600
    assert set(json.loads(written.read_text())["namespaces"]) == {"host", "pod-alive"}
    again = ReadCache.load(str(tmp_path), "netns-1-2")
    assert again.outputs("pod-alive", (1, 1), [SAVE4]) == ["pod-alive"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["alive", "netns-9-9.lock", "reads-netns-1-2.json", "reads-netns-8-8.json"]


def test_without_the_boot_id_nothing_is_kept_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readcache, "boot_id", lambda: "")
    cache = ReadCache.load(str(tmp_path), "netns-1-2")
    cache.record("host", None, (1, 1), [SAVE4], ["x"])
    cache.save()
    assert cache.path is None and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- real namespaces

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creates a network namespace")


def inside(namespace: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, *argv], check=True, capture_output=True)


def generation_of(namespace: str) -> tuple[int, int]:
    found = Runner(Namespace(name=namespace)).call_inside(netlink.nftables_generation)
    assert found is not None
    return found


@pytest.mark.netns
@needs_root
def test_every_commit_moves_the_generation_and_reads_do_not(namespace: str) -> None:
    cookie, start = generation_of(namespace)
    assert generation_of(namespace) == (cookie, start)
    inside(namespace, "iptables-nft-save")
    inside(namespace, "nft", "list", "ruleset")
    assert generation_of(namespace) == (cookie, start), "reads commit nothing"
    changes = (
        ("nft", "add", "table", "inet", "other"),
        ("iptables-nft", "-N", "SOMEONE"),
        ("iptables-nft", "-A", "SOMEONE", "-j", "ACCEPT"),
        ("ip6tables-nft", "-P", "FORWARD", "DROP"),
        ("nft", "delete", "table", "inet", "other"),
    )
    seen = [start]
    for change in changes:
        inside(namespace, *change)
        found_cookie, generation = generation_of(namespace)
        assert found_cookie == cookie
        assert generation > seen[-1], change
        seen.append(generation)
    # ipsets are not nf_tables: ipset save always runs for that reason.
    inside(namespace, "ipset", "create", "zt-x", "hash:ip")
    assert generation_of(namespace) == (cookie, seen[-1])


@pytest.mark.netns
@needs_root
def test_a_namespace_made_again_under_the_same_name_has_another_cookie(namespace: str) -> None:
    cookie, generation = generation_of(namespace)
    subprocess.run(["ip", "netns", "del", namespace], check=True)
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    assert generation_of(namespace) == (generation_of(namespace)[0], generation)
    assert generation_of(namespace)[0] != cookie


@pytest.mark.netns
@needs_root
def test_the_runner_reuses_outputs_until_something_is_committed(namespace: str) -> None:
    cache = ReadCache(None)
    inside(namespace, "iptables-nft", "-N", "ZT-INGRESS")

    def read() -> tuple[list[str], Runner]:
        runner = Runner(Namespace(name=namespace), read_cache=cache)
        return [result.stdout for result in runner.read_nf_tables([SAVE4, SAVE6])], runner

    first, runner = read()
    assert (runner.reads, runner.cached_reads) == (2, 0)
    assert ":ZT-INGRESS - [0:0]" in first[0]
    again, runner = read()
    assert (runner.reads, runner.cached_reads) == (0, 2)
    assert again == first
    inside(namespace, "iptables-nft", "-A", "ZT-INGRESS", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    changed, runner = read()
    assert (runner.reads, runner.cached_reads) == (2, 0)
    assert "-A ZT-INGRESS -p tcp -m tcp --dport 22 -j ACCEPT" in changed[0]
    # A command that fails is neither taken from the cache nor recorded.
    failing = Runner(Namespace(name=namespace), read_cache=cache)
    missing = ("nft", "-j", "list", "table", "inet", "zerotrust")
    assert [result.returncode for result in failing.read_nf_tables([missing], check=False)] == [1]
    assert [result.returncode for result in failing.read_nf_tables([missing], check=False)] == [1]
    assert (failing.reads, failing.cached_reads) == (2, 0)


RULESET: dict[str, Any] = {
    "version": 1,
    "address_sets": [{"name": "zt-peers", "members": ["192.0.2.10", "2001:db8::10"]}],
    "chains": [
        {
            "name": "ingress",
            "hook": "input",
            "default_verdict": "deny",
            "default_origin": "catch_all",
            "rules": [{"verdict": "accept", "origin": "p[0]", "protocol": "tcp", "ports": ["80"], "peer_set": "zt-peers"}],
        },
        {"name": "egress", "hook": "output", "default_verdict": "accept", "default_origin": "catch_all", "rules": []},
    ],
}


def module_run(namespace: str, backend: str, state_dir: Path, *, check: bool, read_cache: bool = True,
               diff: bool = False) -> dict[str, Any]:
    options = apply.RunOptions(backend=backend, options=Options(), keep_ssh=False, host_netns=namespace, state_dir=str(state_dir),
                               check_mode=check, read_cache=read_cache, diff_mode=diff)
    result = apply.run(RULESET, [], options, {})
    assert not result.get("failed"), result
    return result


@pytest.mark.netns
@needs_root
@pytest.mark.parametrize(
    ("backend", "diff", "no_op_commands", "by_hand"),
    # nftables: the one read is cached; the other is the run's check that nft works here (``nft -c``), once per run.
    # iptables-nft: the kernel is asked whether the namespace holds exactly the desired state (one netlink read, no
    # command); diff mode reads (its texts are the tools'), the saves from the cache. The iptables backends list their
    # ipsets over netlink; iptables-legacy's two saves always run.
    [
        ("iptables-nft", False, {"reads": 0, "writes": 0, "cached_reads": 0, "netlink_reads": 1},
         ("iptables-nft", "-I", "ZT-INGRESS", "1", "-j", "ACCEPT")),
        ("iptables-nft", True, {"reads": 0, "writes": 0, "cached_reads": 2, "netlink_reads": 1},
         ("iptables-nft", "-I", "ZT-INGRESS", "1", "-j", "ACCEPT")),
        ("nftables", False, {"reads": 1, "writes": 0, "cached_reads": 1, "netlink_reads": 0},
         ("nft", "insert", "rule", "inet", "zerotrust", "ingress", "accept")),
        ("iptables-legacy", False, {"reads": 2, "writes": 0, "cached_reads": 0, "netlink_reads": 1},
         ("iptables-legacy", "-I", "ZT-INGRESS", "1", "-j", "ACCEPT")),
    ],
)
def test_a_no_op_run_reads_from_the_cache_and_a_change_by_hand_is_still_found(  # noqa: PLR0917 - pytest passes the table by name
    namespace: str, tmp_path: Path, backend: str, diff: bool, no_op_commands: dict[str, int], by_hand: tuple[str, ...]
) -> None:
    first = module_run(namespace, backend, tmp_path, check=False)
    assert first["changed"] is True
    if diff:
        # The check of the write asked the kernel: a first read in diff mode records what the saves print.
        module_run(namespace, backend, tmp_path, check=True, diff=True)
    # The read after the write recorded what it found: a check-mode run (a preview, an audit) reads from it.
    [entry] = module_run(namespace, backend, tmp_path, check=True, diff=diff)["results"]
    assert (entry["changed"], entry["commands"]) == (False, no_op_commands)
    [uncached] = module_run(namespace, backend, tmp_path, check=True, read_cache=False, diff=diff)["results"]
    assert uncached["commands"]["cached_reads"] == 0 and uncached["in_place"] == entry["in_place"]

    inside(namespace, *by_hand)
    drifted = module_run(namespace, backend, tmp_path, check=True, diff=diff)
    [entry] = drifted["results"]
    assert (entry["changed"], entry["rules_removed"], entry["commands"]["cached_reads"]) == (True, 1, 0)
    assert module_run(namespace, backend, tmp_path, check=False)["changed"] is True
    if diff:
        module_run(namespace, backend, tmp_path, check=True, diff=True)
    [entry] = module_run(namespace, backend, tmp_path, check=True, diff=diff)["results"]
    assert (entry["changed"], entry["commands"]) == (False, no_op_commands)
    kept = list(tmp_path.glob("reads-*.json"))
    assert len(kept) == (0 if backend == "iptables-legacy" else 1)


@pytest.mark.netns
@needs_root
def test_iptables_nft_checks_a_write_by_asking_the_kernel(namespace: str, tmp_path: Path) -> None:
    # Nothing read before the write (the namespace holds nothing of ours), nothing read after it but over netlink: the
    # look for exactly the desired state, which holds after the write (counted only where it answers for the saves).
    [entry] = module_run(namespace, "iptables-nft", tmp_path, check=False)["results"]
    assert (entry["changed"], entry["commands"]) == (True, {"reads": 0, "writes": 3, "cached_reads": 0, "netlink_reads": 1})
    [entry] = module_run(namespace, "iptables-nft", tmp_path, check=False)["results"]
    assert (entry["changed"], entry["commands"]) == (False, {"reads": 0, "writes": 0, "cached_reads": 0, "netlink_reads": 1})

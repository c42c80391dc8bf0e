# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 14 on the seed lab: hosts reboot, pods come back in new namespaces, kube-proxy and a CNI rewrite
their own chains; the truth table must stay (or come back) right.

- ``lab reboot haproxy`` after enforcing: the VM's namespace is emptied and only the restore unit the
  module installed (its ExecStart commands) brings the rules back; no Ansible runs.
- ``boot_policy: closed``: after the reboot only SSH from the controller and loopback pass.
- kube-proxy's full resync (``iptables-restore --noflush`` of every KUBE-* chain) and its cleanup, and a
  CNI rewriting its chains, while our rules are in place: our objects byte-identical, table unchanged.
- ``lab reboot k8s-node1 --new-pod-ips`` with ansible-rulebook running: the window from "pods running
  in their new namespaces" to "their rules applied" (the end of the playbook run before the table was
  seen right) is measured and printed beside the time the whole-table probe saw it right (goal: 15 s).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
from test_enforce import (  # the lab harness those tests use: LabHold, fresh lab per test, probes, snapshots
    HOLD,
    REPO_ROOT,
    SEED,
    STATE_FILE,
    enforce_seed,
    explain,
    fresh_lab,
    lab,
    probe,
    recap,
    run_on_fresh_lab,
    seed_lab,
)

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]
__all__ = ["run_on_fresh_lab", "seed_lab"]  # fixtures, imported for pytest

HAPROXY_NETNS = "zt-vm-haproxy"


def in_netns(netns: str, argv: list[str]) -> str:
    """A command's output inside a lab namespace."""
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=True, timeout=60).stdout


def ours(netns: str) -> dict[str, list[str]]:
    """Our objects in one namespace, in order: every iptables line naming a ZT- chain, every zt- ipset line, our nft table."""
    found: dict[str, list[str]] = {}
    for tool in ("iptables-save", "ip6tables-save"):
        found[tool] = [re.sub(r"\[\d+:\d+\]", "", line) for line in in_netns(netns, [tool]).splitlines() if "ZT-" in line]
    # A hash set lists its members in hash order, which a set created anew may not repeat: compared sorted.
    found["ipset"] = sorted(re.sub(r" initval 0x[0-9a-f]+", "", line) for line in in_netns(netns, ["ipset", "save"]).splitlines()
                            if re.match(r"^(create|add) zt-", line))
    listing = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "table", "inet", "zerotrust"], capture_output=True,
                             text=True, check=False).stdout
    found["nft"] = [re.sub(r"counter packets \d+ bytes \d+", "counter", line) for line in listing.splitlines()]
    return found


def node_namespaces() -> dict[str, str]:
    """Node name -> its namespace, from the lab's state."""
    state = json.loads(STATE_FILE.read_text())
    return {w["name"]: w["netns"] for w in state["workloads"] if w.get("kind") == "node"}


def address(name: str) -> str:
    """The first IPv4 address of a lab VM or node."""
    state = json.loads(STATE_FILE.read_text())
    return str(next(w["addresses"]["ipv4"][0] for w in state["workloads"] if w.get("name") == name and w.get("kind") in ("vm", "node")))


def reboot(*args: str) -> str:
    """``python -m lab reboot ARGS`` (it takes the lab's lock, so ours is released around it)."""
    with HOLD.released():
        return lab("reboot", *args).stdout


def connects(source_netns: str | None, address: str, port: int) -> bool:
    """Whether a TCP connection from a lab namespace (None: this machine, the controller) to address:port opens."""
    if source_netns is None:
        try:
            with socket.create_connection((address, port), timeout=1.5):
                return True
        except OSError:
            return False
    code = f"import socket,sys\ntry:\n socket.create_connection(({address!r},{port}),1.5)\nexcept OSError:\n sys.exit(1)"
    return subprocess.run(["ip", "netns", "exec", source_netns, sys.executable, "-c", code], check=False, timeout=30).returncode == 0


def test_reboot_vm_restores_the_rules_without_ansible(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    def body() -> None:
        enforced = enforce_seed()
        assert enforced.returncode == 0, explain(enforced)
        unit = REPO_ROOT / ".lab" / "hosts" / "haproxy" / "systemd" / "zerotrust-workloads.service"
        assert unit.exists(), "the enforce run installed no restore unit for haproxy"
        assert probe("--expect-from-scenario")["mismatches"] == []
        before = ours(HAPROXY_NETNS)
        assert before["iptables-save"], "nothing of ours on haproxy after enforcing"
        # The truth table cannot tell (every flow is also enforced at its other end); haproxy's own
        # ingress can: the policy lets nobody reach its tcp/80, the controller included.
        assert connects(None, address("haproxy"), 80) is False

        output = reboot("haproxy")
        assert "restore unit ran 3 command(s)" in output, output
        assert connects(None, address("haproxy"), 80) is False
        assert probe("--expect-from-scenario")["mismatches"] == []
        assert ours(HAPROXY_NETNS) == before
        again = enforce_seed()
        assert again.returncode == 0 and recap(again)["haproxy"]["changed"] == 0, explain(again)

    run_on_fresh_lab(body)


def test_reboot_without_persistence_boots_open(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """The control: with persist off, the same reboot leaves haproxy without any rule of ours."""

    def body() -> None:
        enforced = enforce_seed(extra={"enforce_persist": False})
        assert enforced.returncode == 0, explain(enforced)
        output = reboot("haproxy")
        assert "no restore unit (booted open)" in output, output
        assert not any(ours(HAPROXY_NETNS).values())
        assert connects(None, address("haproxy"), 80) is True

    run_on_fresh_lab(body)


def test_boot_policy_closed_passes_only_ssh_from_the_controller_and_loopback(
        run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    def body() -> None:
        enforced = enforce_seed(extra={"enforce_boot_policy": "closed"})
        assert enforced.returncode == 0, explain(enforced)
        haproxy, node1 = address("haproxy"), address("k8s-node1")
        # Before the reboot: the policy's rules (haproxy reaches the NodePort).
        assert connects(HAPROXY_NETNS, node1, 30358) is True
        reboot("haproxy")
        cells = probe()["cells"]
        involved = {f"{cell['source']} -> {cell['target']}": cell["result"] for cell in cells
                    if "haproxy" in cell["source"] or "haproxy" in cell["target"]}
        assert involved and set(involved.values()) == {"X"}, involved
        assert connects(None, haproxy, 22) is True  # the controller (this machine, on the lab bridge)
        assert connects("zt-vm-outsider", haproxy, 22) is False
        assert connects(HAPROXY_NETNS, node1, 30358) is False
        assert connects(HAPROXY_NETNS, haproxy, 80) is True  # loopback: its own address from inside
        # The next run puts the policy back.
        again = enforce_seed(extra={"enforce_boot_policy": "closed"})
        assert again.returncode == 0, explain(again)
        assert probe("--expect-from-scenario")["mismatches"] == []

    run_on_fresh_lab(body)


def test_kube_proxy_resync_cleanup_and_cni_rewrite_leave_ours_alone(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    from lab import kubeproxy  # noqa: PLC0415
    from lab.move import live_scenario  # noqa: PLC0415
    from lab.scenario import load_scenario  # noqa: PLC0415

    def body() -> None:
        enforced = enforce_seed()
        assert enforced.returncode == 0, explain(enforced)
        table = probe("--expect-from-scenario")
        assert table["mismatches"] == []
        scenario = live_scenario(load_scenario(str(SEED)), json.loads(STATE_FILE.read_text()))
        nodes = node_namespaces()
        before = {netns: ours(netns) for netns in nodes.values()}
        assert any("ZT-NODEPORT-GUARD" in line for snapshot in before.values() for line in snapshot["iptables-save"])

        for name, netns in nodes.items():
            kubeproxy.full_resync(scenario, netns, name)
        assert {netns: ours(netns) for netns in nodes.values()} == before, "a kube-proxy full resync changed our objects"
        assert probe("--expect-from-scenario")["mismatches"] == []

        for name, netns in nodes.items():
            kubeproxy.cleanup(netns)
            assert ":KUBE-" not in in_netns(netns, ["iptables-save"])
            kubeproxy.full_resync(scenario, netns, name)  # the restart after the cleanup: its jumps prepended
        after = {netns: ours(netns) for netns in nodes.values()}
        # Every line of ours is there, byte for byte; kube-proxy's prepended jumps now sit above our jumps.
        assert {netns: {key: sorted(lines) for key, lines in found.items()} for netns, found in after.items()} == {
            netns: {key: sorted(lines) for key, lines in found.items()} for netns, found in before.items()}
        assert probe("--expect-from-scenario")["mismatches"] == []

        for netns in nodes.values():
            kubeproxy.cni_rewrite(netns, str(scenario.cluster.cluster_cidr))
            kubeproxy.cni_rewrite(netns, str(scenario.cluster.cluster_cidr))
        assert {netns: ours(netns) for netns in nodes.values()} == after, "a CNI rewrite changed our objects"
        assert probe("--expect-from-scenario")["mismatches"] == []

    run_on_fresh_lab(body)


def test_node_reboot_with_new_pod_ips_is_followed_by_the_event_source(seed_lab: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The pods of a rebooted node, in new namespaces with new addresses, get their rules from the rulebook."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import bench_sync  # noqa: PLC0415 - the benchmark's harness: test and benchmark measure the same thing

    fresh_lab()
    with bench_sync.lab_with_rulebook() as harness:
        runs = harness.runs_finished()
        took, window = harness.reboot_and_wait()
        applied = harness.applied
        # The measured window belongs in the test's output, passed or not (pytest captures plain prints).
        with capsys.disabled():
            print(f"\nk8s-node1 rebooted with new pod IPs in {took:.2f} s; pods running -> rules applied (end of the last "
                  f"playbook run) in {'-' if applied is None else f'{applied:.2f}'} s, truth table seen right in {window:.2f} s "
                  f"(wrong probes before: {harness.wrong_probes})")
        assert harness.wrong_probes, "the table was right at once: the reboot changed nothing the rules depend on"
        assert harness.runs_finished() > runs, "no playbook run followed the reboot"
        assert bench_sync.table_is_right()
    # The sync goal of issue 14 is on "its rules applied"; the whole-table probe that confirms it adds its own
    # seconds (bench-sync reports both, as reboot_applied_s and reboot_s, over several reboots).
    assert applied is not None, "no playbook run finished between the pods running and the table being right"
    assert applied < 15.0, f"rules applied {applied:.2f} s after the pods ran again (table seen right after {window:.2f} s)"

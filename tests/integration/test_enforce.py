# SPDX-License-Identifier: GPL-3.0-or-later
"""The enforce role and playbooks on the seed lab, for real: SSH to every VM and node, rules in every
namespace, traffic measured by the lab's probe.

Each test starts from a freshly built seed lab (``lab down`` + ``lab up``, a few seconds), runs
``ansible-playbook`` as an operator would, and checks behaviour: the truth table, ``changed``
counts, exact error texts, and byte-for-byte firewall snapshots of every lab namespace.

The lab is a singleton on the machine; when someone rebuilds it under a running test (the lab's
own tests do), the test is run again once on a fresh lab rather than reported as a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.system import lab_lock

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = REPO_ROOT / ".lab"
STATE_FILE = LAB_DIR / "state.json"
INVENTORY = LAB_DIR / "inventory"
SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"
WP_HOST = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"
DB_HOST = "wordpress-mysql-5b58bbd695-gxtc4.wordpress.pod.lab"
DB_KEY = "wordpress/wordpress-mysql-5b58bbd695-gxtc4"
PLAN_HOSTS = ("haproxy", "outsider", "k8s-master", "k8s-node1", "k8s-node2", "k8s-node3")
CATCH_ALL_DENY_ONLY = {"filters": {}, "policies": {"absolute": [], "default": [], "catch_all": "deny"}}

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]


class LabHold:
    """The lab's own change lock (``lab.system.lab_lock``, an flock on .lab that ``lab up/down/move-pod`` take),
    held while a test uses the lab, so that other users' lab commands wait instead of rebuilding the lab under
    the test; released around our own lab commands, which take the same lock."""

    def __init__(self) -> None:
        self.stack: contextlib.ExitStack | None = None

    def acquire(self, timeout: float = 600) -> None:
        """Take the lock (waiting for a running lab command to finish)."""
        stack = contextlib.ExitStack()
        stack.enter_context(lab_lock(timeout=timeout))
        self.stack = stack

    def release(self) -> None:
        """Let other lab commands run again."""
        if self.stack is not None:
            self.stack.close()
            self.stack = None

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Release around one of our own lab commands (they take the same lock)."""
        held = self.stack is not None
        self.release()
        try:
            yield
        finally:
            if held:
                self.acquire()


HOLD = LabHold()


def lab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m lab ARGS`` from the repository root, as the Makefile runs it."""
    argv = [sys.executable, "-m", "lab", *args]
    if args[0] in ("up", "down", "move-pod"):
        with HOLD.released():
            completed = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    else:
        completed = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    if check and completed.returncode != 0:
        raise AssertionError(f"lab {' '.join(args)} failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return completed


def lab_identity() -> str:
    """What changes when the lab is rebuilt: the scenario digest and the processes' pids."""
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return "no lab"
    api = state.get("kubeapi") or {}
    pids = [process.get("pid") for process in state.get("processes", [])]
    return f"{state.get('status')} {state.get('scenario', {}).get('digest')} {api.get('pid')} {pids}"


def fresh_lab() -> str:
    """A newly built seed lab; returns its identity."""
    lab("down")
    lab("up", "--scenario", str(SEED))
    return lab_identity()


def playbook(name: str, *args: str, extra: dict[str, Any] | None = None, inventory: Path = INVENTORY) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook -i INVENTORY playbooks/NAME ARGS`` with the repository's ansible.cfg."""
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(REPO_ROOT / "playbooks" / name), *args]
    if extra is not None:
        argv += ["-e", json.dumps(extra)]
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=env, check=False)


def recap(completed: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters per host."""
    result: dict[str, dict[str, int]] = {}
    for match in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", completed.stdout, re.MULTILINE):
        result[match.group(1)] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return result


def summary_lines(completed: subprocess.CompletedProcess[str]) -> list[str]:
    """The role's summary as printed by the ``Show the summary`` task."""
    match = re.search(r"Show the summary\] \*+\nok: \[[^\]]+\] => \{\n    \"msg\": (\[.*?\n    \])\n\}", completed.stdout, re.DOTALL)
    assert match, f"no summary in the output:\n{completed.stdout[-3000:]}"
    lines: list[str] = json.loads(match.group(1))
    return lines


APPLY_TASK = "Apply the rules on each host and its pods"


def task_outcomes(completed: subprocess.CompletedProcess[str], task: str) -> dict[str, str]:
    """Host -> outcome (``changed``, ``ok``, ``skipping``, ``failed``...) of one role task, as the play printed them."""
    outcomes: dict[str, str] = {}
    for block in re.findall(r"^TASK \[zerotrust\.workloads\.enforce : " + re.escape(task) + r"\] \*+\n(.*?)(?=^TASK |^PLAY RECAP|\Z)",
                            completed.stdout, re.MULTILINE | re.DOTALL):
        for match in re.finditer(r"^(\w+): \[([^\]]+)\]", block, re.MULTILINE):
            outcomes[match.group(2)] = match.group(1)
    return outcomes


def reporter(completed: subprocess.CompletedProcess[str]) -> str:
    """The host the summary ran on."""
    match = re.search(r"Show the summary\] \*+\nok: \[([^\]]+)\]", completed.stdout)
    assert match, f"no summary in the output:\n{completed.stdout[-3000:]}"
    return match.group(1)


def explain(completed: subprocess.CompletedProcess[str]) -> str:
    """The tail of a run's output, for assertion messages."""
    return f"rc={completed.returncode}\n{completed.stdout[-6000:]}\n{completed.stderr[-3000:]}"


def probe(*flags: str) -> dict[str, Any]:
    """The lab's truth table as JSON (``cells``, ``expected``, ``mismatches``)."""
    completed = lab("probe", "--json", "-", *flags, check=False)
    start = completed.stdout.index("{\n")
    document: dict[str, Any] = json.loads(completed.stdout[start:])
    return document


def lab_namespaces() -> list[str]:
    """Every namespace of the running lab."""
    state = json.loads(STATE_FILE.read_text())
    names: list[str] = state["netns"]
    return names


def firewall_snapshot() -> dict[str, str]:
    """Every lab namespace's complete firewall state as text (no counters)."""
    snapshot: dict[str, str] = {}
    for netns in lab_namespaces():
        for argv in (["iptables-save"], ["ip6tables-save"], ["ipset", "save"], ["nft", "list", "ruleset"]):
            done = subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=False, timeout=60)
            text = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("#"))
            # Packet counters move with any traffic (the probe's, SSH's); the rules are what must not.
            text = re.sub(r"\[\d+:\d+\]", "[0:0]", text)
            # An ipset's initval is the random seed of its hash, drawn anew when a set is created again (a rollback
            # re-creates the sets the apply removed): same members, same behaviour.
            text = re.sub(r" initval 0x[0-9a-f]+", "", text)
            snapshot[f"{netns} {argv[0]}"] = re.sub(r"counter packets \d+ bytes \d+", "counter", text)
    return snapshot


def ours_everywhere() -> dict[str, list[str]]:
    """Our objects per namespace: ZT- chains and zt- sets (empty lists when none)."""
    found: dict[str, list[str]] = {}
    for key, text in firewall_snapshot().items():
        found[key] = sorted(set(re.findall(r"(ZT-[A-Z-]+|zt-[0-9a-z]{6,}-[46]|zt-mgmt-[46]|table inet zerotrust)", text)))
    return found


@pytest.fixture(scope="module")
def seed_lab() -> Iterator[None]:
    """The seed lab for this module; taken down at the end so the machine is left as found."""
    fresh_lab()
    yield
    lab("down", check=False)


@pytest.fixture
def run_on_fresh_lab(seed_lab: None) -> Callable[[Callable[[], None]], None]:
    """Run a test body on a fresh lab; once more on another fresh lab if the lab was rebuilt under it."""

    def runner(body: Callable[[], None]) -> None:
        for attempt in (1, 2):
            identity = fresh_lab()
            HOLD.acquire()
            try:
                body()
            except (AssertionError, subprocess.SubprocessError, ValueError, KeyError):
                if attempt == 1 and lab_identity() != identity:
                    continue
                raise
            finally:
                HOLD.release()
            if lab_identity() != identity and attempt == 1:
                continue
            return

    return runner


def persisted_files(host: str) -> dict[str, str]:
    """The boot-persistence files the lab's inventory has ``host`` write (below .lab/hosts/HOST), by path."""
    root = LAB_DIR / "hosts" / host
    return {str(path.relative_to(root)): os.readlink(path) if path.is_symlink() else path.read_text()
            for path in sorted(root.rglob("*")) if path.is_file() or path.is_symlink()}


def enforce_seed(*args: str, extra: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    """The demo's enforce run: the scenario file itself as the policy file."""
    return playbook("enforce.yml", *args, extra={"enforce_policy_file": str(SEED), **(extra or {})})


def test_seed_truth_table_and_idempotence(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """Before: everything open. After: exactly the seed's allowed flows. A second run changes nothing."""

    def body() -> None:
        before = probe("--expect-open")
        assert before["mismatches"] == [], f"the fresh lab is not fully open: {before['mismatches']}"

        first = enforce_seed()
        assert first.returncode == 0, explain(first)
        counters = recap(first)
        assert set(PLAN_HOSTS) <= set(counters), counters
        assert all(counters[host]["changed"] >= 1 for host in PLAN_HOSTS), counters
        assert not any(host.endswith((".pod.lab", ".service.lab")) for host in counters), "pods and services must never be play hosts"
        lines = summary_lines(first)
        assert f"  pod {WP_HOST}: changed" in "\n".join(lines)
        assert lines[-1].startswith("total: 6 hosts and 9 namespaces changed"), lines  # 6 hosts, 3 pods (with CoreDNS)
        # Every host had something to write: none left the role before the apply.
        assert task_outcomes(first, APPLY_TASK) == dict.fromkeys(PLAN_HOSTS, "changed"), task_outcomes(first, APPLY_TASK)

        after = probe("--expect-from-scenario")
        assert after["mismatches"] == [], f"truth table differs from expect.allow: {after['mismatches']}"
        allowed = sorted(cell["source"] + " -> " + cell["target"] for cell in after["cells"] if cell["result"] == ".")
        # Beside the implicit allowances to the control plane (cluster DNS, kube-system pods to the API), exactly the policy's two flows.
        control_plane = [cell for cell in allowed if "kube-system/" in cell or "svc:default/kubernetes" in cell]
        assert len(control_plane) == 11, control_plane
        assert sorted(set(allowed) - set(control_plane)) == sorted(
            [
                "vm:haproxy -> nodeport:wordpress/wordpress:tcp/80",
                "pod:wordpress/wordpress-6dfdd9f64f-d75j2 -> pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4:tcp/3306",
            ]
        )
        assert after["health_failures"] == [], after["health_failures"]

        second = enforce_seed()
        assert second.returncode == 0, explain(second)
        assert all(counts["changed"] == 0 for counts in recap(second).values()), recap(second)
        assert summary_lines(second)[-1].startswith("total: 0 hosts and 0 namespaces changed"), summary_lines(second)
        # Nothing to write anywhere: all hosts but the one that reports left the role after the guard, and the
        # summary still speaks of every host.
        assert task_outcomes(second, APPLY_TASK) == {reporter(second): "skipping"}, task_outcomes(second, APPLY_TASK)
        assert all(any(line.startswith(f"{host}: unchanged") for line in summary_lines(second)) for host in PLAN_HOSTS)

    run_on_fresh_lab(body)


def test_check_mode_previews_without_touching(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """--check --diff reports what would change on every host and pod, and no namespace's rules move."""

    def body() -> None:
        before = firewall_snapshot()
        preview = enforce_seed("--check", "--diff")
        assert preview.returncode == 0, explain(preview)
        assert firewall_snapshot() == before
        lines = summary_lines(preview)
        assert any(line.startswith("haproxy: would change: rules +") for line in lines), lines
        assert any(line.startswith(f"  pod {DB_HOST}: changed, rules +") for line in lines), lines
        assert lines[-1].startswith("total: 6 hosts and 9 namespaces would change"), lines
        # A preview writes nowhere: every host but the one that reports left the role after the guard.
        assert task_outcomes(preview, APPLY_TASK) == {reporter(preview): "skipping"}, task_outcomes(preview, APPLY_TASK)
        assert probe("--expect-open")["mismatches"] == []

    run_on_fresh_lab(body)


def test_rules_follow_the_pod(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """mysql moves to node2 with a new IP; re-enforcing updates every rule and the old IP is no longer allowed."""

    def body() -> None:
        first = enforce_seed()
        assert first.returncode == 0, explain(first)
        assert "10.244.3.18" in "".join(firewall_snapshot().values())

        lab("move-pod", DB_KEY, "--node", "k8s-node2", "--ip", "10.244.2.18")
        again = enforce_seed()
        assert again.returncode == 0, explain(again)
        lines = summary_lines(again)
        assert "  pod " + DB_HOST + ": changed" in "\n".join(lines), lines
        # Only the hosts the move changed entered the apply (besides the one that reports, which skipped it).
        applied = task_outcomes(again, APPLY_TASK)
        changed_hosts = {line.split(":")[0] for line in lines if ": changed" in line and not line.startswith(" ")}
        assert {host for host, outcome in applied.items() if outcome == "changed"} == changed_hosts, (applied, lines)
        assert {host for host, outcome in applied.items() if outcome != "changed"} <= {reporter(again)}, applied
        assert len(changed_hosts) < len(PLAN_HOSTS), lines
        assert probe("--expect-from-scenario")["mismatches"] == []
        everything = firewall_snapshot()
        assert not [key for key, text in everything.items() if "10.244.3.18" in text], "the old mysql IP is still allowed somewhere"
        assert "10.244.2.18" in everything["zt-pod-0 ipset"] or "10.244.2.18" in everything["zt-pod-0 nft"]

        third = enforce_seed()
        assert all(counts["changed"] == 0 for counts in recap(third).values()), recap(third)

    run_on_fresh_lab(body)


def test_catch_all_deny_with_only_implicit_allowances_keeps_ssh(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """Deny everything on every VM and node except the implicit allowances: the play completes and re-runs over SSH."""

    def body() -> None:
        extra = {"enforce_policy": CATCH_ALL_DENY_ONLY, "enforce_scope": "kind in (vm, node)", "enforce_rollback_timeout": 30}
        first = playbook("enforce.yml", extra=extra)
        assert first.returncode == 0, explain(first)
        assert all(recap(first)[host]["changed"] >= 1 for host in PLAN_HOSTS), recap(first)
        second = playbook("enforce.yml", extra=extra)
        assert second.returncode == 0, explain(second)
        assert all(counts["changed"] == 0 and counts["unreachable"] == 0 for counts in recap(second).values()), recap(second)
        table = probe()
        vm_cells = [cell for cell in table["cells"] if cell["source"].startswith("vm:") or cell["target"].startswith(("vm:", "nodeport:"))]
        assert vm_cells, "the probe measured nothing to or from the VMs"
        assert all(cell["result"] == "X" for cell in vm_cells), [cell for cell in vm_cells if cell["result"] != "X"]

    run_on_fresh_lab(body)


def test_lockout_is_rolled_back_and_reported(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """SSH allowance off + rollback_timeout: the host restores its previous rules by itself and the run says so."""

    def body() -> None:
        seeded = enforce_seed()
        assert seeded.returncode == 0, explain(seeded)
        before = firewall_snapshot()
        persisted = persisted_files("outsider")
        assert persisted, "the seed's enforcement persisted nothing for the outsider"
        extra = {
            "enforce_policy": CATCH_ALL_DENY_ONLY,
            "enforce_implicit": {"management_ssh": False},
            "enforce_rollback_timeout": 8,
            "enforce_max_change_percent": 0,
        }
        locked = playbook("enforce.yml", "--limit", "outsider", extra=extra)
        assert locked.returncode != 0, explain(locked)
        assert "outsider rolled back: the controller could not confirm over a new SSH connection" in locked.stdout, explain(locked)
        assert "the host restored its previous rules by itself 8 s after the apply" in locked.stdout, explain(locked)
        assert "outsider: rolled back" in "\n".join(summary_lines(locked))
        assert recap(locked)["outsider"]["failed"] == 1
        assert firewall_snapshot() == before, "the outsider did not come back to exactly its previous rules"
        # The boot restore follows the rollback: a reboot now must not bring back the rules it refused.
        assert persisted_files("outsider") == persisted, "the outsider's persisted boot rules were not rolled back"
        reconnect = enforce_seed("--limit", "outsider")
        assert reconnect.returncode == 0, explain(reconnect)
        assert recap(reconnect)["outsider"]["changed"] == 0

    run_on_fresh_lab(body)


def one_rule_policy(filters: dict[str, str], consumer: str, provider: str, port: str) -> dict[str, Any]:
    """A policy with one default rule."""
    rule = {"consumer": consumer, "provider": provider, "ports": [port]}
    return {"filters": filters, "policies": {"default": [rule], "catch_all": "deny"}}


WRONG_POLICIES = {
    "unknown-filter": (one_rule_policy({"web": "pod_name = x"}, "web", "nosuch", "tcp/80"), "policies.default[0].provider: unknown filter"),
    "unknown-attribute": (one_rule_policy({"web": "podname = x"}, "web", "web", "tcp/80"), "filters.web"),
    "bad-port": (one_rule_policy({"web": "pod_name = x"}, "web", "web", "tcp/99999"), "policies.default[0].ports[0]"),
    "bad-cidr": (one_rule_policy({"net": "address = 10.0.0.0/33"}, "net", "net", "tcp/80"), "filters.net"),
    "syntax-error": (one_rule_policy({"web": "pod_name = (x"}, "web", "web", "tcp/80"), "filters.web"),
}


def test_wrong_policies_fail_before_any_host_changes(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """Each wrong policy fails on the controller, names the place, and no namespace's rules move."""

    def body() -> None:
        seeded = enforce_seed()
        assert seeded.returncode == 0, explain(seeded)
        before = firewall_snapshot()
        for name, (policy, where) in WRONG_POLICIES.items():
            completed = playbook("enforce.yml", extra={"enforce_policy": policy})
            assert completed.returncode != 0, f"{name}: {explain(completed)}"
            assert "zerotrust.workloads.compile: the policy has" in completed.stdout, f"{name}: {explain(completed)}"
            assert where in completed.stdout, f"{name}: expected {where!r} in the error: {explain(completed)}"
            assert "Preview the rules" not in completed.stdout, f"{name}: a host was contacted"
            assert firewall_snapshot() == before, f"{name}: rules moved"

    run_on_fresh_lab(body)


def test_inventory_without_the_cluster_is_an_error(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """A policy on service_name with no cluster in the inventory fails; it does not enforce an empty allowlist."""

    def body() -> None:
        before = firewall_snapshot()
        completed = playbook("enforce.yml", extra={"enforce_policy_file": str(SEED)}, inventory=INVENTORY / "vms.yml")
        assert completed.returncode != 0, explain(completed)
        assert "The inventory lacks workloads the policy needs" in completed.stdout, explain(completed)
        assert "'wordpress' matches no workload" in completed.stdout, explain(completed)
        assert firewall_snapshot() == before

    run_on_fresh_lab(body)


def test_max_change_guard_stops_before_writing(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """Replacing the seed by a policy that drops most rules trips the guard; nothing is written."""

    def body() -> None:
        seeded = enforce_seed()
        assert seeded.returncode == 0, explain(seeded)
        before = firewall_snapshot()
        open_policy = {"filters": {}, "policies": {"default": [], "catch_all": "allow"}}
        completed = playbook("enforce.yml", extra={"enforce_policy": open_policy, "enforce_max_change_percent": 20})
        assert completed.returncode != 0, explain(completed)
        refused = re.search(r"refusing to write: the change is [\d.]+% of the \d+ rules and set members in place", completed.stdout)
        assert refused, explain(completed)
        assert "above enforce_max_change_percent=20. No host was changed." in completed.stdout
        assert firewall_snapshot() == before

    run_on_fresh_lab(body)


def test_remove_takes_everything_of_ours_away(run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """remove.yml after the seed: no ZT- chain or zt- set is left anywhere and the lab is open again."""

    def body() -> None:
        seeded = enforce_seed()
        assert seeded.returncode == 0, explain(seeded)
        assert any(ours_everywhere().values())
        removed = playbook("remove.yml")
        assert removed.returncode == 0, explain(removed)
        assert {key: found for key, found in ours_everywhere().items() if found} == {}
        assert probe("--expect-open")["mismatches"] == []
        again = playbook("remove.yml")
        assert all(counts["changed"] == 0 for counts in recap(again).values()), recap(again)

    run_on_fresh_lab(body)


def test_policy_file_may_be_a_plain_policy(tmp_path: Path, run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    """A file holding only the policy gives the same rules as the scenario file with its policy key."""

    def body() -> None:
        plain = tmp_path / "policy.yml"
        plain.write_text(yaml.safe_dump(yaml.safe_load(SEED.read_text())["policy"]))
        seeded = enforce_seed()
        assert seeded.returncode == 0, explain(seeded)
        same = playbook("enforce.yml", extra={"enforce_policy_file": str(plain)})
        assert same.returncode == 0, explain(same)
        assert all(counts["changed"] == 0 for counts in recap(same).values()), recap(same)

    run_on_fresh_lab(body)

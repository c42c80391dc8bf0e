# SPDX-License-Identifier: GPL-3.0-or-later
"""Rules follow the pods: latency from a pod's IP change to a right truth table, with ansible-rulebook.

With the lab up (brought up here if it is not, and down again afterwards) and ansible-rulebook
running the shipped rulebook ``extensions/eda/rulebooks/enforce_on_change.yml`` over the lab's
inventory, the seed's frontend pod is moved twenty times between k8s-node1 and k8s-node2, each
time with a new IP (``python -m lab move-pod``: the lab rewires the pod and replaces its Pod and
EndpointSlice objects through the API). Each latency runs from the start of the move to the
first probe of the whole truth table (real connections between the lab's namespaces) that
equals the table the policy implies for the moved pod. Each line also shows when the move
command returned, when the event source emitted its event and when the playbook run it triggered
finished (seconds from the start of the move). Before the next move, the runs the change
triggered have finished. The pod is moved back at the end.

Then k8s-node1 is rebooted three times with new pod addresses (``python -m lab reboot k8s-node1
--new-pod-ips``: its firewall emptied, its restore unit run, its pods back in new namespaces with new
IPs). Each reboot window runs from the moment the reboot returned, its pods running again in their
new namespaces, to the first right truth table: the event source saw the new pods and the run it
triggered applied their rules. A whole-table probe takes seconds itself, so each reboot also reports
``rules applied``: from the pods running to the end of the last playbook run that finished before
the right probe did (an upper bound on when the rules were in place; a thread notes each run's
PLAY RECAP as it reaches the log).

Then vulnerabilities drive the policy: the lab is rebuilt from ``lab/scenarios/vulnerable.yml``
(pods with ``vuln.critical > 0`` quarantined by an absolute deny) with ansible-rulebook running
``enforce_on_change_and_vulnerabilities.yml``, and the frontend pod's VulnerabilityReport is
replaced four times (``python -m lab vuln-report``), alternately with a critical finding (the pod
is quarantined: HAProxy no longer reaches WordPress) and without one (released). Each window runs
from the start of the command to the first right truth table (the one the policy implies for the
live findings).

    python benchmarks/bench_sync.py [--changes 20] [--reboots 3] [--vulns 4]

Last line: ``RESULT sync median_s=... worst_s=... changes=20 reboot_s=... reboot_worst_s=... reboots=3
reboot_applied_s=... reboot_applied_worst_s=... vuln_s=... vuln_worst_s=... vulns=4``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(sys.executable).parent
POD = "wordpress/wordpress-6dfdd9f64f-d75j2"
HOME_NODE, HOME_IP = "k8s-node1", "10.244.1.94"
RULEBOOK = REPO / "extensions" / "eda" / "rulebooks" / "enforce_on_change.yml"
VULN_RULEBOOK = REPO / "extensions" / "eda" / "rulebooks" / "enforce_on_change_and_vulnerabilities.yml"
SEED = REPO / "lab" / "scenarios" / "seed.yml"
VULNERABLE = REPO / "lab" / "scenarios" / "vulnerable.yml"
# The frontend's finding in vulnerable.yml, and the rescan that makes it critical.
CLEAN_FINDING = ("--medium", "1", "--id", "CVE-2023-5678")
CRITICAL_FINDING = ("--critical", "1", "--medium", "1", "--id", "CVE-2024-3094", "--id", "CVE-2023-5678")
CHANGE_LINE = r"cluster '[^']+': \d+ change\(s\)"
"""The event source's log line for one burst of changes (one event)."""


def _lab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "lab", *args], cwd=REPO, capture_output=True, text=True, check=check, timeout=600)


def table_is_right() -> bool:
    """One probe of the whole truth table, compared with the one the policy implies."""
    return _lab("probe", "--expect-from-scenario", check=False).returncode == 0


class Harness:
    """The lab with ansible-rulebook running the collection's rulebook."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.moves = 0
        self.phases: list[dict[str, float | None]] = []
        self.run_done: float | None = None
        self.wrong_probes = 0
        self.applied: float | None = None
        """After a reboot: seconds from its pods running to the end of the last playbook run before the table was right."""
        self.finished_at: list[float] = []
        """When each playbook run finished (monotonic), recorded by a thread: a probe blocks for seconds."""
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch_runs, name="run-watcher", daemon=True)

    def _watch_runs(self) -> None:
        """Note the time of every PLAY RECAP as it reaches the log (read on from where the last read ended)."""
        offset, partial = 0, b""
        while not self._stop.wait(0.1):
            if not self.log_path.exists():
                continue
            with self.log_path.open("rb") as log:  # bytes: a read may end inside a character
                log.seek(offset)
                chunk = log.read()
            offset += len(chunk)
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            now = time.monotonic()
            self.finished_at.extend(now for line in lines if b"PLAY RECAP" in line)

    def start_watching(self) -> None:
        """Start recording run ends."""
        self._watcher.start()

    def stop_watching(self) -> None:
        """Stop recording run ends."""
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)

    def _log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _tail(self) -> str:
        """The last lines of ansible-rulebook's log, for an error message."""
        return "\n".join(self._log().splitlines()[-25:])

    def runs_finished(self) -> int:
        """Playbook runs ansible-rulebook has completed."""
        return self._log().count("PLAY RECAP")

    def events(self) -> int:
        """Events the source has put on the queue (the sync, then each burst)."""
        log = self._log()
        return len(re.findall(r"cluster '[^']+' listed:", log)) + len(re.findall(CHANGE_LINE, log))

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until every event has had its playbook run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if events and self.runs_finished() >= events:
                return
            if "Traceback" in self._log():
                raise RuntimeError(f"ansible-rulebook failed:\n{self._tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"ansible-rulebook did not finish its runs within {timeout:.0f} s; the end of its log:\n{self._tail()}")

    def wait_right(self, started: float, timeout: float = 60.0) -> float:
        """Seconds from ``started`` until the truth table is right (notes when the change's run finished).

        ``wrong_probes`` counts the probes that found it wrong first: a change the dataplane had not
        followed yet must show as at least one, or the latency measured nothing.
        """
        runs = self.runs_finished()
        self.wrong_probes = 0
        while time.monotonic() - started < timeout:
            if table_is_right():
                return time.monotonic() - started
            self.wrong_probes += 1
            if self.runs_finished() > runs and self.run_done is None:
                self.run_done = time.monotonic() - started
        probe = _lab("probe", "--expect-from-scenario", check=False)
        mismatches = [line.strip() for line in probe.stdout.splitlines() if "MISMATCH" in line] or [probe.stderr.strip()]
        raise RuntimeError(f"the truth table was still wrong {timeout:.0f} s after the change: {'; '.join(mismatches)}\n"
                           f"last lines of ansible-rulebook's log:\n{self._tail()}")

    def reboot_and_wait(self) -> tuple[float, float]:
        """Reboot k8s-node1 with new pod IPs: (seconds the reboot took, seconds from its pods running to a right table)."""
        self.wait_idle()
        started = time.monotonic()
        _lab("reboot", HOME_NODE, "--new-pod-ips")
        running = time.monotonic()
        self.moves += 1  # the pod has a new address: moved home at the end
        self.run_done = None
        window = self.wait_right(running)
        # The probe that found the table right took seconds of its own: the rules were in place when the last
        # run before its end finished (an upper bound: that run may have changed nothing).
        ends = [end for end in self.finished_at if running < end <= running + window]
        self.applied = ends[-1] - running if ends else None
        self.wait_idle()
        return running - started, window

    def vuln_and_wait(self, critical: bool) -> float:
        """Replace the frontend's VulnerabilityReport (critical or not); seconds until the table is right again."""
        self.wait_idle()
        started = time.monotonic()
        self.run_done = None
        _lab("vuln-report", POD, *(CRITICAL_FINDING if critical else CLEAN_FINDING))
        latency = self.wait_right(started)
        self.phases.append({"move": None, "event": None, "run_done": self.run_done, "right": latency,
                            "wrong_probes": float(self.wrong_probes)})
        self.wait_idle()
        return latency

    def move(self, node: str, address: str) -> None:
        """Move the frontend pod (the lab rewires it and updates the API)."""
        _lab("move-pod", POD, "--node", node, "--ip", address)

    def move_and_wait(self, index: int) -> float:
        """Move the pod to the other node with a new IP; the latency until the table is right again."""
        node, prefix = ("k8s-node2", "10.244.2") if index % 2 == 0 else ("k8s-node1", "10.244.1")
        self.wait_idle()
        started, wall = time.monotonic(), time.time()
        self.run_done = None
        self.move(node, f"{prefix}.{120 + index}")
        self.moves += 1
        moved = time.monotonic() - started
        latency = self.wait_right(started)
        stamps = re.findall(r"^(\S+ \S+),(\d+) - \S+ - INFO - " + CHANGE_LINE, self._log(), re.M)
        event = None
        if stamps:
            day_time, millis = stamps[-1]
            event = time.mktime(time.strptime(day_time, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000 - wall
        self.phases.append({"move": moved, "event": event, "run_done": self.run_done, "right": latency,
                            "wrong_probes": float(self.wrong_probes)})
        self.wait_idle()
        return latency


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first found through /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        children = parents.get(pending.pop(), [])
        found.extend(children)
        pending.extend(children)
    return found


def _inventory_with_static_management(target: Path) -> Path:
    """The lab's inventory plus the controller's addresses as ``enforce_management_addresses``.

    With them given, the enforce role skips asking every host for its SSH client address: a
    round trip per run, as recommended for production (docs/eda.md).
    """
    source = REPO / ".lab" / "inventory"
    (target / "group_vars").mkdir(parents=True)
    for name in ("lab.kubernetes.yml", "vms.yml"):
        (target / name).write_text((source / name).read_text())
    if (source / "host_vars").is_dir():
        # Per-host boot persistence (each lab host's restore unit under .lab/hosts/): a rebooted node restores from it.
        (target / "host_vars").mkdir()
        for path in (source / "host_vars").iterdir():
            (target / "host_vars" / path.name).write_text(path.read_text())
    group_vars = yaml.safe_load((source / "group_vars" / "all.yml").read_text())
    group_vars["enforce_management_addresses"] = list(group_vars["zt_lab_controller_addresses"])
    (target / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))
    return target


@contextlib.contextmanager
def lab_with_rulebook(seed: Path = SEED, rulebook_path: Path = RULEBOOK) -> Iterator[Harness]:
    """The lab of ``seed`` up, enforced by ansible-rulebook's initial sync; everything restored afterwards."""
    status = _lab("status", check=False)
    brought_up = status.returncode != 0
    if brought_up or f"from {seed}:" not in status.stdout:
        _lab("up", "--scenario", str(seed))  # idempotent for the seed; rebuilds a lab of another scenario
    scenario = yaml.safe_load(seed.read_text())
    with tempfile.TemporaryDirectory(prefix="zto-sync-") as scratch:
        work = Path(scratch)
        (work / "policy.yml").write_text(yaml.safe_dump(scenario["policy"]))
        (work / "vars.yml").write_text(yaml.safe_dump({"enforce_policy_file": str(work / "policy.yml")}))
        inventory = _inventory_with_static_management(work / "inventory")
        env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
               # One fork per enforcement point (6 in the seed): no host waits for a second batch.
               "ANSIBLE_FORKS": "10",
               # SSH masters of our own: another run's stale master must not hold ours up.
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "ssh-control"),
               "K8S_AUTH_KUBECONFIG": str(REPO / ".lab" / "kubeconfig")}
        harness = Harness(work / "rulebook.log")
        harness.start_watching()
        with harness.log_path.open("w") as log:
            rulebook = subprocess.Popen([str(BIN / "ansible-rulebook"), "-v", "-i", str(inventory), "--rulebook", str(rulebook_path),
                                         "--vars", str(work / "vars.yml")], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            harness.wait_idle(timeout=180)  # the initial sync's enforcement
            harness.wait_right(time.monotonic(), timeout=30)
            yield harness
            if harness.moves:
                harness.wait_idle()
                harness.move(HOME_NODE, HOME_IP)
                harness.wait_right(time.monotonic())
                harness.wait_idle()
            if seed == VULNERABLE and harness.phases:
                _lab("vuln-report", POD, *CLEAN_FINDING)  # the scenario's own finding again
                harness.wait_right(time.monotonic())
                harness.wait_idle()
        finally:
            # ansible-runner starts each playbook in a session of its own: collect them before they are orphaned.
            runs = _descendants(rulebook.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rulebook.pid, signal.SIGINT)
            try:
                rulebook.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(rulebook.pid, signal.SIGKILL)
                rulebook.wait()
            for pid in runs:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            harness.stop_watching()
            if os.environ.get("ZT_KEEP_RULEBOOK_LOG"):
                print(harness._log())
            if brought_up:
                _lab("down", check=False)


def main() -> int:
    """Measure and print the distribution; the last line is the RESULT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--reboots", type=int, default=3)
    parser.add_argument("--vulns", type=int, default=4)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("RESULT sync status=skipped reason=needs-root")
        return 0
    latencies: list[float] = []
    windows: list[float] = []
    applied: list[float] = []
    with lab_with_rulebook() as harness:
        for index in range(args.changes):
            latency = harness.move_and_wait(index)
            latencies.append(latency)
            node = "k8s-node2" if index % 2 == 0 else "k8s-node1"
            phase = harness.phases[-1]
            steps = "  ".join(f"{key} {value:5.2f}" for key in ("move", "event", "run_done") if (value := phase[key]) is not None)
            print(f"change {index + 1:2d}: pod to {node}, table right after {latency:5.2f} s  ({steps})", flush=True)
        for index in range(args.reboots):
            took, window = harness.reboot_and_wait()
            windows.append(window)
            if harness.applied is not None:
                applied.append(harness.applied)
            run_done = harness.run_done
            print(f"reboot {index + 1}: {HOME_NODE} with new pod IPs in {took:.2f} s; pods running -> table right {window:5.2f} s"
                  + (f"  (rules applied {harness.applied:5.2f})" if harness.applied is not None else "")
                  + (f"  (run_done {run_done:5.2f})" if run_done is not None else ""), flush=True)
    vulns: list[float] = []
    if args.vulns:
        with lab_with_rulebook(VULNERABLE, VULN_RULEBOOK) as harness:
            for index in range(args.vulns):
                critical = index % 2 == 0
                window = harness.vuln_and_wait(critical)
                vulns.append(window)
                what = "critical finding: quarantined" if critical else "finding fixed: released"
                run_done = harness.run_done
                print(f"vuln {index + 1}: frontend {what}, table right after {window:5.2f} s"
                      + (f"  (run_done {run_done:5.2f})" if run_done is not None else ""), flush=True)
    ordered = sorted(latencies) or [0.0]  # --changes 0: only the other figures mean something
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    if latencies:
        print(f"min {ordered[0]:.2f} s  p25 {quartiles[0]:.2f} s  median {statistics.median(ordered):.2f} s  "
              f"p75 {quartiles[2]:.2f} s  p90 {ordered[int(0.9 * (len(ordered) - 1))]:.2f} s  max {ordered[-1]:.2f} s")
    reboot = f" reboot_s={statistics.median(windows):.2f} reboot_worst_s={max(windows):.2f} reboots={len(windows)}" if windows else ""
    if applied:
        reboot += f" reboot_applied_s={statistics.median(applied):.2f} reboot_applied_worst_s={max(applied):.2f}"
    vuln = f" vuln_s={statistics.median(vulns):.2f} vuln_worst_s={max(vulns):.2f} vulns={len(vulns)}" if vulns else ""
    moves = f"median_s={statistics.median(ordered):.2f} worst_s={ordered[-1]:.2f} " if latencies else ""
    print(f"RESULT sync {moves}changes={len(latencies)}{reboot}{vuln}")
    return 0 if ordered[-1] < 15.0 and max(windows, default=0.0) < 15.0 and max(vulns, default=0.0) < 15.0 else 1


if __name__ == "__main__":
    sys.exit(main())

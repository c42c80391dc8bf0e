# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of the enforce role on the lab: the seed policy scaled to many pods.

The seed's shape (frontends behind a NodePort service, databases behind a ClusterIP service,
an HAProxy VM outside the cluster and an outsider) with N pods spread over 3 nodes and 5 VMs,
built by the lab as real namespaces with real sshd, kube-proxy rules and listeners. For
N = 20 and N = 200 it times, on a fresh lab each, one ``ansible-playbook playbooks/enforce.yml``
run and a no-op re-run (wall time of the whole process, as an operator sees it).

Goals: 200 pods take at most 2x the time of 20 pods (one module run per node for all its pods),
and a no-op re-run takes at most half of a first run. The last line is

    RESULT enforce pods_200_s=... pods_20_s=... ratio_200_vs_20=... noop_vs_first=...

Needs root and the lab (it takes the lab down at the end). ``--pods`` and ``--repeat`` change the
sizes and the number of runs (medians are reported).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repository root holds benchmarks/
from benchmarks.scaled_seed import scaled_seed
from lab.system import lab_lock

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
EXTRA_VMS = (("vm-web2", "172.18.221.2", "web"), ("vm-web3", "172.18.221.3", "web"), ("vm-batch", "172.18.221.4", "batch"))
"""Beside the seed's HAProxy and outsider: 5 VMs in all."""
FORKS = 10
"""One fork per VM and node, so the module runs of a task all start at once."""


def scenario(pods: int) -> dict[str, Any]:
    """The seed scaled to ``pods`` pods (half frontends, half databases) on 3 nodes and 5 VMs."""
    return scaled_seed(pods, extra_vms=EXTRA_VMS)


def lab(*args: str) -> str:
    """``python -m lab ARGS``; raise with its output when it fails."""
    done = subprocess.run([PYTHON, "-m", "lab", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"lab {' '.join(args)} failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return done.stdout


def enforce(policy_file: Path) -> tuple[float, dict[str, dict[str, int]]]:
    """Wall time of one enforce run and its PLAY RECAP; raise if it fails."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    argv = [
        str(Path(PYTHON).parent / "ansible-playbook"),
        "-i",
        str(REPO_ROOT / ".lab" / "inventory"),
        "--forks",
        str(FORKS),
        str(REPO_ROOT / "playbooks" / "enforce.yml"),
        "-e",
        json.dumps({"enforce_policy_file": str(policy_file), "enforce_show_summary": False}),
    ]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, env=env, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"enforce failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    recap = {
        match.group(1): {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))}
        for match in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", done.stdout, re.MULTILINE)
    }
    return elapsed, recap


def measure(pods: int, workdir: Path) -> tuple[float, float, float]:
    """(lab up seconds, first enforce seconds, no-op re-run seconds) on a fresh lab with ``pods`` pods."""
    path = workdir / f"scale-{pods}.yml"
    path.write_text(yaml.safe_dump(scenario(pods), sort_keys=False))
    lab("down")
    started = time.monotonic()
    lab("up", "--scenario", str(path))
    up_seconds = time.monotonic() - started
    # The lab's change lock (the one lab up/down take), so nobody rebuilds the lab mid-measurement.
    with lab_lock(timeout=1800):
        first, first_recap = enforce(path)
        noop, noop_recap = enforce(path)
    if not all(counts.get("changed", 0) >= 1 for counts in first_recap.values()):
        raise RuntimeError(f"the first run did not change every host: {first_recap}")
    if any(counts.get("changed", 0) for counts in noop_recap.values()):
        raise RuntimeError(f"the re-run changed something: {noop_recap}")
    return up_seconds, first, noop


def main() -> int:
    """Run the benchmark; print one line per measurement and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, nargs=2, default=(20, 200), metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeat", type=int, default=1, help="fresh labs per size (medians are reported)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("RESULT enforce status=skipped reason=needs-root")
        return 0
    small, large = args.pods
    results: dict[int, tuple[list[float], list[float]]] = {small: ([], []), large: ([], [])}
    with tempfile.TemporaryDirectory(prefix="zte-bench-") as tmp:
        try:
            for _ in range(args.repeat):
                for pods in (small, large):
                    up_seconds, first, noop = measure(pods, Path(tmp))
                    results[pods][0].append(first)
                    results[pods][1].append(noop)
                    print(f"pods={pods} lab_up_s={up_seconds:.1f} first_s={first:.2f} noop_s={noop:.2f}", flush=True)
        finally:
            lab("down")
    first_small = statistics.median(results[small][0])
    first_large = statistics.median(results[large][0])
    noop_large = statistics.median(results[large][1])
    ratio = first_large / first_small
    noop_ratio = noop_large / first_large
    goals = "met" if ratio <= 2.0 and noop_ratio <= 0.5 else "missed"
    print(f"goals (ratio_{large}_vs_{small} <= 2, noop_vs_first <= 0.5): {goals}")
    print(
        f"RESULT enforce pods_{large}_s={first_large:.2f} pods_{small}_s={first_small:.2f} "
        f"ratio_{large}_vs_{small}={ratio:.2f} noop_vs_first={noop_ratio:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

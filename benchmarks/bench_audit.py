# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of the audit role on the lab: 200 pods on 3 nodes, against an enforce run there.

The seed's shape scaled up (frontends behind a NodePort service, databases behind a ClusterIP
service, the HAProxy VM and the outsider), built by the lab as real namespaces with sshd,
kube-proxy rules and listeners. On one fresh lab it times, as an operator sees them (wall time
of the whole ``ansible-playbook`` process):

- ``enforce_s``: ``playbooks/enforce.yml``, the first run (the anchor);
- ``audit_s``: ``playbooks/audit.yml`` in report mode after enforcement, with the observer on
  every host and pod and some traffic (every VM to the NodePort on every node, every frontend
  to one database) - rules and drift of 200 pod namespaces, their flows, the report.

Goal: ``audit_s <= 2 * enforce_s``. The last line is

    RESULT audit pods=200 audit_s=... enforce_s=... ratio=... flows=... rules=... drift=... json_kb=...

Needs root and the lab (it takes the lab down at the end, also on failure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repository root holds benchmarks/
from benchmarks.scaled_seed import Naming, scaled_seed

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
FORKS = 10
NAMING = Naming(namespace="shop", app="shop", frontend_pod="web", database_pod="db", frontend_service="web", database_service="db")


def scaled_scenario(pods: int) -> dict[str, Any]:
    """The seed with ``pods`` pods (even: frontends, odd: databases) spread over 3 nodes, in namespace shop."""
    return scaled_seed(pods, NAMING)


def lab(*args: str) -> str:
    """``python -m lab ARGS``; raise with its output when it fails."""
    done = subprocess.run([PYTHON, "-m", "lab", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"lab {' '.join(args)} failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return done.stdout


def playbook(name: str, extra: dict[str, Any]) -> float:
    """Wall time of one ``ansible-playbook`` run; raise if it fails."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    argv = [str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(REPO_ROOT / ".lab" / "inventory"), "--forks", str(FORKS)]
    argv += [str(REPO_ROOT / "playbooks" / name), "-e", json.dumps(extra)]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=env, check=False)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"{name} did not finish within 900 s (did the lab go away under it?)") from error
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    return elapsed


def traffic(state: dict[str, Any]) -> None:
    """Some flows to classify: every VM to the NodePort on every node, every frontend to the first database.

    Sent from the lab's own namespaces to lab addresses only, after checking the route stays
    inside the lab (the lab's prober does both).
    """
    sys.path.insert(0, str(REPO_ROOT))
    from lab.prober import check_route, lab_addresses  # noqa: PLC0415
    from lab.scenario import load_scenario  # noqa: PLC0415
    from lab.system import SYSTEM_PYTHON, in_netns  # noqa: PLC0415

    scenario = load_scenario(state["scenario"]["path"])
    allowed = lab_addresses(scenario)
    workloads = {workload["id"]: workload for workload in state["workloads"]}
    database = next(pod for pod in scenario.pods if pod.labels.get("tier") == "mysql")
    jobs: dict[str, list[tuple[str, int]]] = {}
    for vm in scenario.vms:
        jobs[f"vm:{vm.name}"] = [(str(node.address), 30358) for node in scenario.nodes]
    for pod in scenario.pods:
        if pod.labels.get("tier") == "frontend":
            jobs[f"pod:{pod.key}"] = [(str(database.ip), 3306)]
    script = (
        "import socket,sys\n"
        "for a,p in [x.split(',') for x in sys.argv[1:]]:\n"
        "    s=socket.socket(); s.settimeout(0.5)\n"
        "    try: s.connect((a,int(p)))\n"
        "    except OSError: pass\n"
        "    s.close()\n"
    )
    for source, targets in jobs.items():
        workload = workloads[source]
        for address, _ in targets:
            check_route(workload["netns"], list(workload["interfaces"]), address, allowed)
        argv = in_netns(workload["netns"], [SYSTEM_PYTHON, "-c", script, *(f"{a},{p}" for a, p in targets)])
        subprocess.run(argv, capture_output=True, timeout=60, check=True)


def measure(path: Path, report_dir: Path) -> tuple[float, float, dict[str, Any]]:
    """(enforce seconds, audit seconds, the report) on a fresh lab built from ``path``."""
    lab("down")
    lab("up", "--scenario", str(path))
    enforce_s = playbook("enforce.yml", {"enforce_policy_file": str(path), "enforce_show_summary": False})
    playbook("audit.yml", {"audit_policy_file": str(path), "audit_mode": "observe"})
    traffic(json.loads((REPO_ROOT / ".lab" / "state.json").read_text()))
    audit_s = playbook("audit.yml", {"audit_policy_file": str(path), "audit_report_dir": str(report_dir), "audit_show_summary": False})
    report: dict[str, Any] = json.loads((report_dir / "audit.json").read_text())
    return enforce_s, audit_s, report


def main() -> int:
    """Run the benchmark; print the measurements and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("RESULT audit status=skipped reason=needs-root")
        return 0
    with tempfile.TemporaryDirectory(prefix="zta-bench-") as tmp:
        workdir = Path(tmp)
        path = workdir / f"scale-{args.pods}.yml"
        path.write_text(yaml.safe_dump(scaled_scenario(args.pods), sort_keys=False))
        try:
            # The lab is shared: when someone rebuilds it under a run, measure again on a fresh one.
            for attempt in range(3):
                try:
                    enforce_s, audit_s, report = measure(path, workdir / f"report{attempt}")
                    break
                except RuntimeError as error:
                    text = str(error)
                    print(f"attempt {attempt + 1} failed (is someone else using the lab?): {text[:300]} ... {text[-300:]}", flush=True)
            else:
                print("RESULT audit status=failed reason=lab-busy")
                return 1
        finally:
            lab("down")
    summary = report["summary"]
    flows = sum(summary["flows"][name] for name in ("permitted", "escaped", "rejected", "unanswered", "unclassified"))
    json_kb = len(json.dumps(report)) // 1024
    ratio = audit_s / enforce_s
    print(f"pods={args.pods} enforce_s={enforce_s:.2f} audit_s={audit_s:.2f} sections={summary['sections']} flows={flows}")
    print(f"goal (audit_s <= 2 x enforce_s): {'met' if ratio <= 2.0 else 'missed'}")
    print(
        f"RESULT audit pods={args.pods} audit_s={audit_s:.2f} enforce_s={enforce_s:.2f} ratio={ratio:.2f} "
        f"flows={flows} rules={summary['rules']} drift={summary['drift']} json_kb={json_kb}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

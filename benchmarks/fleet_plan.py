# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: the controller's share of a 10,000-pod / 50-node fleet, inventory + plan, no host touched.

The cluster has the shape of ``python -m lab generate`` (lab/generate.py: Deployments behind
NodePort and ClusterIP Services in a few namespaces, cluster DNS and the API server from the
lab's control plane, an HAProxy, batch VMs and an outsider, its policy), here with 10,000 pods on
50 nodes. Its objects are served over HTTPS on 127.0.0.1 by lab.kubeapi (in this process, as
benchmarks/bench_inventory.py does) and the VMs are a static inventory file beside the
``zerotrust.workloads.kubernetes`` source, as the lab's own inventory is written. One
``ansible-playbook`` run on ``hosts: localhost`` then does what the enforce role does on the
controller before it touches a host: read the inventory and plan once for every host, with the
roles' planning step ``zerotrust.workloads.plan`` (``--step plan``, the default; the plan stays in
a directory on the controller, one file per host, and is discarded at the end) or, for a
comparison with the way before it, the ``zerotrust.workloads.compile`` filter over ``hostvars``
kept with ``set_fact`` (``--step compile``). The controller's address is given, as
``enforce_management_addresses`` would give it, so one compile is enough.

Figures (a callback records when the play starts and when each task ends):

* ``inventory_s``: from the process's start to the play's (Ansible's start-up and the inventory),
* ``compile_s``: the planning task (its ``hostvars`` reads and, with ``plan``, writing the host files),
* ``plan_<pods>_s``: the two together, the controller's time before the first host would be touched,
* ``cpu_s``: CPU seconds of ``ansible-playbook`` and its forks over the whole run (steadier than wall
  time on a shared machine),
* ``ansible_fixed_s``: the start of an empty playbook on an empty inventory (Ansible's own share),
* ``rss_<pods>_mb``: the peak resident set of ``ansible-playbook`` and its forks (``wait4``),
* ``busiest_host_kb``: the largest host part of the plan (KiB of JSON: what would be handed to that
  host; with ``compile``, its entry of the plan as JSON), ``hosts`` the number of host parts,
  ``plan_kb`` all of them together.

Goals (issue #19): plan <= 20 s, RSS <= 1.5 GB, busiest host <= 5 MB. The last line is

    RESULT fleet_plan plan_10000_s=... rss_10000_mb=... busiest_host_kb=... inventory_s=... compile_s=...

Run: .venv/bin/python benchmarks/fleet_plan.py [--pods N] [--nodes N] [--vms N] [--repeat N] [--step plan|compile]
(medians of the runs). ``measure_fleet_plan()`` is what bench_enforce.py calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run as a script: the repository root holds lab/ and benchmarks/

from lab import generate as lab_generate  # noqa: E402
from lab.access import inventory_sources  # noqa: E402
from lab.kubeapi import start_server, write_kubeconfig  # noqa: E402
from lab.objects import scenario_objects  # noqa: E402
from lab.scenario import Scenario, build_scenario  # noqa: E402

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
PODS, NODES, VMS = 10_000, 50, 5
GOALS = {"plan_s": 20.0, "rss_mb": 1536.0, "busiest_host_kb": 5120.0}
UNDERLAY = "172.18.216.0/21"
"""A fleet of 50 nodes outgrows the lab's /24 underlay (the lab itself stops at lab.generate.MAX_NODES): its nodes are
renumbered into 172.18.222.0/24 of this wider underlay; pods, Services, VMs and the policy stay as generated."""

# Records when the play starts and when each task ends (time.time(), comparable with the parent's clock).
TIMER_PLUGIN = '''
from __future__ import annotations
import json, os, time
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: zt_fleet_timer
type: aggregate
short_description: benchmark timestamps
description: Writes when the play starts and when each task ends to ZT_FLEET_TIMES.
"""

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "zt_fleet_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.times = {}

    def v2_playbook_on_play_start(self, play):
        self.times["play_start"] = time.time()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.times[task.get_name() + ":start"] = time.time()

    def v2_runner_on_start(self, host, task):
        self.times[task.get_name() + ":worker"] = time.time()

    def v2_runner_on_ok(self, result):
        self.times[result.task_name] = time.time()
        if result.task_name == "Plan" and "hosts" in result._result:
            # The plan step's outline: the bytes of each host's part, as it wrote them for the host.
            self.sizes = {host: entry["bytes"] for host, entry in result._result["hosts"].items()}
            self.complete = result._result.get("complete")
        plan = result._result.get("ansible_facts", {}).get("fleet_plan")
        if plan is not None:
            # Outside the timed part: the bytes each host's entry would take as JSON, one host at a time.
            self.sizes = {host: len(json.dumps(entry, default=str)) for host, entry in plan["hosts"].items()}

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["ZT_FLEET_TIMES"], "w", encoding="utf-8") as stream:
            json.dump({"times": self.times, "sizes": getattr(self, "sizes", {}), "complete": getattr(self, "complete", True)}, stream)

'''

PLAY = """
- name: Plan the fleet on the controller (no host is touched)
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
"""
PLAYBOOKS = {
    # The enforce role's planning step: the plan stays in a directory on the controller, its outline is returned.
    "plan": PLAY + """
    - name: Plan
      zerotrust.workloads.plan:
        policy: "{{ fleet_policy }}"
        management_addresses: "{{ fleet_options.management_addresses | default([]) }}"
        upstream_dns: "{{ fleet_options.upstream_dns | default([]) }}"
      register: fleet_outline
    - name: Discard
      zerotrust.workloads.plan:
        discard: "{{ fleet_outline.path }}"
      when: fleet_outline.path is defined
""",
    # Before the plan step: the compile filter over hostvars, kept with set_fact (as the role kept enforce_plan).
    "compile": PLAY + """
    - name: Plan
      ansible.builtin.set_fact:
        fleet_plan: "{{ fleet_policy | zerotrust.workloads.compile(hostvars, fleet_options) }}"
""",
}
DEFAULT_STEP = "plan" if (REPO_ROOT / "plugins" / "action" / "plan.py").exists() else "compile"


def fleet_document(pods: int = PODS, nodes: int = NODES, vms: int = VMS, seed: int = 1) -> dict[str, Any]:
    """lab/generate.py's scenario document at fleet size: its shape and policy, its nodes renumbered into ``UNDERLAY``.

    lab.generate refuses more nodes than the lab's underlay holds; the fleet is never built as namespaces, so the
    limit is lifted for this call only and the node addresses moved to where 50 (up to 240) nodes fit.
    """
    limit = lab_generate.MAX_NODES
    lab_generate.MAX_NODES = max(limit, nodes)
    try:
        document = lab_generate.generate(nodes, pods, vms, seed)
    finally:
        lab_generate.MAX_NODES = limit
    topology = document["topology"]
    topology["underlay"]["cidr"] = UNDERLAY
    for index, node in enumerate(topology["nodes"]):
        node["address"] = f"172.18.222.{10 + index}"
    return document


def fleet_scenario(pods: int = PODS, nodes: int = NODES, vms: int = VMS, seed: int = 1) -> Scenario:
    """The validated fleet scenario (as ``python -m lab up`` would validate it)."""
    return build_scenario(fleet_document(pods, nodes, vms, seed), source=f"fleet {pods} pods / {nodes} nodes")


def compile_options(scenario: Scenario) -> dict[str, Any]:
    """What the enforce role passes to the compile: the controller's address given (the role discovers it otherwise)."""
    options: dict[str, Any] = {"management_addresses": [str(scenario.underlay.controller)]}
    if scenario.upstream_dns is not None:
        options["upstream_dns"] = [str(scenario.upstream_dns.address)]
    return options


def _run_playbook(workdir: Path, inventory: Path, playbook: str, extra: dict[str, Any]) -> dict[str, Any]:
    """One ``ansible-playbook`` run: its start, peak RSS (MB) and CPU seconds with its forks, the callback's times and sizes."""
    record = workdir / "record.json"
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(REPO_ROOT / ".collections")),
        "ANSIBLE_CALLBACK_PLUGINS": str(workdir / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "zt_fleet_timer",
        "ANSIBLE_NOCOLOR": "1",
        "ZT_FLEET_TIMES": str(record),
    }
    (workdir / "callback_plugins").mkdir(exist_ok=True)
    (workdir / "callback_plugins" / "zt_fleet_timer.py").write_text(TIMER_PLUGIN)
    (workdir / "plan.yml").write_text(playbook)
    (workdir / "extra.json").write_text(json.dumps(extra))
    argv = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(workdir / "plan.yml"), "-e", f"@{workdir / 'extra.json'}"]
    log = workdir / "playbook.log"
    record.unlink(missing_ok=True)
    with log.open("w") as output:
        started = time.time()
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT, env=env)
        # wait4: this child's own peak RSS (KiB on Linux) and CPU, its waited-for forks included, not every child's of this process.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed ({process.returncode}):\n{log.read_text()[-4000:]}")
    recorded: dict[str, Any] = json.loads(record.read_text())
    return {"started": started, "rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime, **recorded}


def ansible_fixed(workdir: Path) -> float:
    """Seconds from the start of ``ansible-playbook`` to its play on an empty inventory: Ansible's own share."""
    empty = workdir / "empty.yml"
    empty.write_text("all: {}\n")
    run = _run_playbook(workdir, empty, "- name: Nothing\n  hosts: localhost\n  gather_facts: false\n  tasks: []\n", {})
    return float(run["times"]["play_start"] - run["started"])


def measure_once(scenario: Scenario, workdir: Path, step: str = DEFAULT_STEP) -> dict[str, float]:
    """Serve the scenario's objects, run the plan playbook once; its figures (see the module's docstring)."""
    with start_server(scenario_objects(scenario)) as api:
        kubeconfig = write_kubeconfig(api, workdir / "kubeconfig", scenario.cluster.name)
        inventory = workdir / "inventory"
        inventory.mkdir(exist_ok=True)
        for name, document in inventory_sources(scenario, kubeconfig).items():
            (inventory / name).write_text(yaml.safe_dump(document, sort_keys=False))
        extra = {"fleet_policy": dict(scenario.policy or {}), "fleet_options": compile_options(scenario)}
        run = _run_playbook(workdir, inventory, PLAYBOOKS[step], extra)
    times: dict[str, float] = run["times"]
    sizes: dict[str, int] = run["sizes"]
    if not run["complete"]:
        raise RuntimeError("the plan is not complete (the controller's address was to be read from the hosts): nothing was compiled")
    expected_hosts = len(scenario.nodes) + len(scenario.vms)
    if len(sizes) != expected_hosts:
        raise RuntimeError(f"the plan has {len(sizes)} host entries, expected {expected_hosts} (every node and VM)")
    return {
        "inventory_s": times["play_start"] - run["started"],
        "compile_s": times["Plan"] - times["play_start"],
        "plan_s": times["Plan"] - run["started"],
        "rss_mb": run["rss_mb"],
        "cpu_s": run["cpu_s"],
        "busiest_host_kb": max(sizes.values()) / 1024,
        "hosts": float(len(sizes)),
        "plan_kb": sum(sizes.values()) / 1024,
    }


def measure_fleet_plan(pods: int = PODS, nodes: int = NODES, vms: int = VMS, repeat: int = 1, step: str = DEFAULT_STEP) -> dict[str, float]:
    """The controller-only figures bench_enforce.py reports (medians of ``repeat`` runs).

    ``plan_<pods>_s``, ``rss_<pods>_mb``, ``busiest_host_kb``; the phases ``inventory_s`` and ``compile_s``;
    ``cpu_s`` (ansible-playbook and its forks, the whole run), ``ansible_fixed_s``, ``hosts`` and ``plan_kb`` (all entries).
    """
    scenario = fleet_scenario(pods, nodes, vms)
    with tempfile.TemporaryDirectory(prefix="zt-fleet-") as directory:
        workdir = Path(directory)
        runs = [measure_once(scenario, workdir, step) for _ in range(repeat)]
        fixed = ansible_fixed(workdir)
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return {
        f"plan_{pods}_s": median["plan_s"],
        f"rss_{pods}_mb": median["rss_mb"],
        "busiest_host_kb": median["busiest_host_kb"],
        "inventory_s": median["inventory_s"],
        "compile_s": median["compile_s"],
        "cpu_s": median["cpu_s"],
        "ansible_fixed_s": fixed,
        "hosts": median["hosts"],
        "plan_kb": median["plan_kb"],
    }


def goals_missed(figures: dict[str, float], pods: int = PODS) -> list[str]:
    """The goals the figures miss, each with its figure."""
    checks = (
        (f"plan_{pods}_s", GOALS["plan_s"]),
        (f"rss_{pods}_mb", GOALS["rss_mb"]),
        ("busiest_host_kb", GOALS["busiest_host_kb"]),
    )
    return [f"{key}={figures[key]:.1f} > {goal:g}" for key, goal in checks if figures[key] > goal]


def main() -> int:
    """Measure; print the figures, the goals and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=PODS)
    parser.add_argument("--nodes", type=int, default=NODES)
    parser.add_argument("--vms", type=int, default=VMS)
    parser.add_argument("--repeat", type=int, default=1, help="runs (medians are reported)")
    parser.add_argument("--step", choices=sorted(PLAYBOOKS), default=DEFAULT_STEP,
                        help=f"plan: the zerotrust.workloads.plan step; compile: the compile filter + set_fact (default {DEFAULT_STEP})")
    args = parser.parse_args()
    figures = measure_fleet_plan(args.pods, args.nodes, args.vms, args.repeat, args.step)
    missed = goals_missed(figures, args.pods)
    print(f"{args.pods} pods / {args.nodes} nodes / {args.vms} VMs: " + ", ".join(f"{key} {value:.2f}" for key, value in figures.items()))
    print("goals (plan <= 20 s, RSS <= 1.5 GB, busiest host <= 5 MB): " + ("met" if not missed else "missed: " + "; ".join(missed)))
    fields = (f"{key}={value:.0f}" if key == "hosts" else f"{key}={value:.2f}" for key, value in figures.items())
    print("RESULT fleet_plan " + " ".join(fields))
    return 0


if __name__ == "__main__":
    sys.exit(main())

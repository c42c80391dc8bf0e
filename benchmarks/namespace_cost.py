# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: what the allowlist module costs per pod namespace on a node (issue #19).

A node of ``python -m lab generate --nodes 20 --pods 2000`` carries about 105 pods; its module run
walks them one after the other. This measures that walk without Ansible: ``apply.run()`` (the
module's body) in this process, over ``--namespaces`` throwaway network namespaces
``zt-bench-<random>-<n>`` (not lab namespaces: the lab neither owns nor removes them), each holding
one pod's address on a veth interface, with the rulesets and shared sets the compiler made for the
busiest node of that scenario (compiled once and cached in ``--plan-cache``).

Per backend, on fresh namespaces, in this order:

* ``preview``: check mode on namespaces without our rules (the enforce role's preview of a first run),
* ``first``: the first apply,
* ``noop``: the same run again (nothing to change),
* ``check``: check mode on the applied namespaces (a no-op run's preview, an audit),
* ``pristine``: once our objects are removed again (not measured), the first apply as the enforce role
  makes it after its preview: every pod named in ``pristine_pods``, written without a read first.

Each phase is measured as CPU milliseconds per namespace (``getrusage``: this process plus the
commands it waited for, user + system), wall milliseconds per namespace and processes started per
namespace (every ``subprocess`` the run started, counted). ``--profile`` adds cProfile's top entries
(own time) of each phase. The last line is

    RESULT namespace_cost <backend>_<phase>_cpu_ms=... <backend>_<phase>_procs=... ...

Run as root: .venv/bin/python benchmarks/namespace_cost.py [--namespaces 100] [--backends iptables-nft,nftables]
[--profile [tottime|cumulative]]

To measure an older version beside this one (``ZT_BENCH_COLLECTIONS``: the directory holding its
``ansible_collections``)::

    mkdir -p /tmp/base/ansible_collections/zerotrust/workloads
    git archive HEAD plugins | tar -x -C /tmp/base/ansible_collections/zerotrust/workloads
    ZT_BENCH_COLLECTIONS=/tmp/base .venv/bin/python benchmarks/namespace_cost.py
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import json
import os
import pstats
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = os.environ.get("ZT_BENCH_COLLECTIONS") or str(REPO_ROOT / ".collections")
"""Where ``ansible_collections/zerotrust/workloads`` is imported from: another tree (an older commit unpacked
with ``git archive``) to measure it beside this one."""
for entry in (str(REPO_ROOT), COLLECTIONS):
    if entry not in sys.path:
        sys.path.insert(0, entry)  # run as a script: the repository root holds lab/, .collections the collection link

if "--compile-only" not in sys.argv:
    # The compile (a child process, below) reads the inventory through ansible-core's collection loader, which must
    # import the collection itself; the measuring process imports it plainly, as a module run does.
    from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply
    from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Options

    try:
        from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.targets import pod_label
    except ImportError:  # a tree from before the eleventh session, which kept it in apply.py
        pod_label = apply.pod_label  # type: ignore[attr-defined]

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "zt-bench-namespace-cost-plan.json"
PHASES = ("preview", "first", "noop", "check", "pristine")


def busiest_node_part(nodes: int, pods: int, vms: int) -> dict[str, Any]:
    """The compiled plan's part for the node with the most pods: ``{"host", "pods", "sets"}``."""
    from benchmarks.fleet_plan import compile_options  # noqa: PLC0415
    from lab import generate as lab_generate  # noqa: PLC0415
    from lab.expected import scenario_hostvars  # noqa: PLC0415
    from lab.scenario import build_scenario  # noqa: PLC0415

    scenario = build_scenario(lab_generate.generate(nodes, pods, vms, 1), source=f"generated {pods} pods / {nodes} nodes")
    hostvars = scenario_hostvars(scenario)  # first: it installs ansible-core's collection loader
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy  # noqa: PLC0415

    plan = compile_policy(dict(scenario.policy or {}), hostvars, compile_options(scenario))
    host, part = max(plan["hosts"].items(), key=lambda item: len(item[1].get("pods") or ()))
    return {"host": host, "pods": part["pods"], "sets": part.get("sets") or {}}


def load_part(args: argparse.Namespace) -> dict[str, Any]:
    """The cached node part, compiled when the cache is missing."""
    cache = Path(args.plan_cache)
    if cache.exists():
        part: dict[str, Any] = json.loads(cache.read_text())
        return part
    subprocess.run([sys.executable, __file__, "--compile-only", "--plan-cache", str(cache), "--nodes", str(args.nodes),
                    "--pods", str(args.pods), "--vms", str(args.vms)], check=True)
    part = json.loads(cache.read_text())
    return part


@contextlib.contextmanager
def pod_namespaces(pods: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """One namespace per pod holding the pod's addresses; the pods with ``netns`` pointing at them. Removed at the end."""
    prefix = f"zt-bench-{secrets.token_hex(3)}"
    created: list[str] = []
    try:
        placed = []
        for index, pod in enumerate(pods):
            name = f"{prefix}-{index}"
            subprocess.run(["ip", "netns", "add", name], check=True)
            created.append(name)
            batch = ["link set lo up", "link add eth0 type veth peer name eth0p"]
            batch += [f"addr add {ip}/{128 if ':' in ip else 32} dev eth0" for ip in pod.get("ips") or ()]
            batch += ["link set eth0p up", "link set eth0 up"]
            subprocess.run(["ip", "-n", name, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True)
            placed.append({**pod, "netns": name})
        yield placed
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


class ProcessCounter:
    """Counts the processes started through ``subprocess.Popen`` while active."""

    def __init__(self) -> None:
        self.count = 0
        self._original = subprocess.Popen.__init__

    def __enter__(self) -> ProcessCounter:
        original = self._original
        counter = self

        def counting(popen: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
            counter.count += 1
            original(popen, *args, **kwargs)

        subprocess.Popen.__init__ = counting  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.Popen.__init__ = self._original  # type: ignore[method-assign]


class CommandCosts:
    """CPU milliseconds of the commands the runners start, per program (children's rusage around each one)."""

    def __init__(self) -> None:
        self.costs: dict[str, list[float]] = {}
        self._original = subprocess.Popen.wait

    def __enter__(self) -> CommandCosts:
        original = self._original
        costs = self.costs

        def timed_wait(popen: subprocess.Popen[Any], timeout: Optional[float] = None) -> int:
            if popen.returncode is not None:
                return original(popen, timeout)  # reaped already: counted then
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            code = original(popen, timeout)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            spent = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            argv = popen.args if isinstance(popen.args, list) else [str(popen.args)]
            program = " ".join(str(word) for word in argv[4:6] if not str(word).startswith("-")) if argv[:3] == ["ip", "netns", "exec"] \
                else " ".join(str(word) for word in argv[:2] if not str(word).startswith("-"))
            costs.setdefault(program, []).append(1000 * spent)
            return code

        subprocess.Popen.wait = timed_wait  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.Popen.wait = self._original  # type: ignore[method-assign]


def cpu_seconds() -> tuple[float, float]:
    """User + system CPU of this process, and of the children it waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def measure_phase(pods: list[dict[str, Any]], run_options: apply.RunOptions, profile: Optional[str]) -> dict[str, Any]:
    """One ``apply.run`` over all pods: CPU, wall, processes, the result's changed flags (and a profile, ordered by ``profile``)."""
    profiler = cProfile.Profile() if profile else None
    with ProcessCounter() as counter, CommandCosts() as commands:
        (own, children), wall = cpu_seconds(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = apply.run(None, pods, run_options, {})
        if profiler is not None:
            profiler.disable()
        own, children = (after - before for after, before in zip(cpu_seconds(), (own, children)))  # noqa: B905
        wall = time.perf_counter() - wall
    if result.get("failed"):
        raise SystemExit(f"apply.run failed: {result.get('msg')}")
    entries = result["results"]
    count = len(entries)
    figures: dict[str, Any] = {
        "cpu_ms": 1000 * (own + children) / count,
        "own_ms": 1000 * own / count,
        "wall_ms": 1000 * wall / count,
        "procs": counter.count / count,
        "changed": sum(1 for entry in entries if entry.get("changed")),
        "skipped": sum(1 for entry in entries if entry.get("skipped")),
    }
    figures["commands"] = {program: (len(spent) / count, sum(spent) / len(spent)) for program, spent in sorted(commands.costs.items())}
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(profile or "tottime").print_stats(12)
        figures["profile"] = text.getvalue()
    return figures


def measure_backend(backend: str, part: dict[str, Any], count: int, profile: Optional[str]) -> dict[str, dict[str, Any]]:
    """The four phases on fresh namespaces."""
    sets = apply.shared_sets(part["sets"], None, part["pods"][:count])
    pods = (part["pods"] * (count // max(len(part["pods"]), 1) + 1))[:count]
    figures: dict[str, dict[str, Any]] = {}
    with pod_namespaces(pods) as placed, tempfile.TemporaryDirectory(prefix="zt-bench-state-") as state_dir:
        base = apply.RunOptions(backend=backend, options=Options(), keep_ssh=False, state_dir=state_dir, sets=sets)
        check = dataclasses.replace(base, check_mode=True)
        pristine = dataclasses.replace(base, pristine_pods=frozenset(pod_label(pod) for pod in placed))
        for phase, run_options in zip(PHASES, (check, base, base, check, pristine)):  # noqa: B905  (same length)
            if phase == "pristine":
                removed = apply.run(None, placed, dataclasses.replace(base, state="absent"), {})
                if removed.get("failed") or not removed.get("changed"):
                    raise SystemExit(f"{backend}: removing our objects before the pristine phase failed: {removed.get('msg')}")
            figures[phase] = measure_phase(placed, run_options, profile)
            expected_changed = count if phase in ("preview", "first", "pristine") else 0
            if figures[phase]["changed"] != expected_changed or figures[phase]["skipped"]:
                raise SystemExit(f"{backend} {phase}: {figures[phase]['changed']} of {count} namespaces changed "
                                 f"(expected {expected_changed}), {figures[phase]['skipped']} skipped")
    return figures


def main() -> int:
    """Measure, print the figures and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--backends", default="iptables-nft,nftables")
    parser.add_argument("--profile", nargs="?", const="tottime", choices=("tottime", "cumulative"),
                        help="print cProfile's top entries per phase, by their own time (default) or with what they call")
    parser.add_argument("--plan-cache", default=str(DEFAULT_CACHE), help="the compiled node part (made when missing)")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--vms", type=int, default=5)
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_only:
        Path(args.plan_cache).write_text(json.dumps(busiest_node_part(args.nodes, args.pods, args.vms)))
        return 0
    part = load_part(args)
    rules = sum(len(chain.get("rules") or ()) for pod in part["pods"] for chain in (pod["ruleset"].get("chains") or ()))
    print(f"node {part['host']}: {len(part['pods'])} pods, {rules / max(len(part['pods']), 1):.1f} model rules per pod, "
          f"{len(part['sets'])} shared sets; measuring {args.namespaces} namespaces", flush=True)
    fields: dict[str, str] = {"namespaces": str(args.namespaces)}
    for backend in args.backends.split(","):
        figures = measure_backend(backend, part, args.namespaces, args.profile)
        for phase in PHASES:
            found = figures[phase]
            print(f"{backend:>14} {phase:>8}: {found['cpu_ms']:7.1f} ms CPU/ns ({found['own_ms']:4.1f} this process)  "
                  f"{found['wall_ms']:7.1f} ms wall/ns  "
                  f"{found['procs']:4.1f} processes/ns", flush=True)
            commands = found["commands"].items()
            print(" " * 18 + ", ".join(f"{program} {per_ns:.1f}x {ms:.1f} ms" for program, (per_ns, ms) in commands))
            if "profile" in found:
                print(found["profile"])
            key = backend.replace("-", "_")
            fields[f"{key}_{phase}_cpu_ms"] = f"{found['cpu_ms']:.1f}"
            fields[f"{key}_{phase}_procs"] = f"{found['procs']:.1f}"
    print("RESULT namespace_cost " + " ".join(f"{key}={value}" for key, value in fields.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

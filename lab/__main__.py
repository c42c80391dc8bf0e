# SPDX-License-Identifier: GPL-3.0-or-later
"""``python -m lab``: up, down, status, probe, move-pod.

python -m lab up [--scenario lab/scenarios/seed.yml]
python -m lab generate --nodes 20 --pods 2000 [--vms 5] [--seed 1] -o FILE
python -m lab probe [--json FILE] [--expect-from-scenario | --expect-open] [--ipv6] [--no-health] [--sample [--seed N] | --full]
python -m lab move-pod wordpress/wordpress-6dfdd9f64f-d75j2 --node k8s-node2 --ip 10.244.2.94
python -m lab reboot haproxy | k8s-node1 [--new-pod-ips]
python -m lab vuln-report wordpress/wordpress-6dfdd9f64f-d75j2 --critical 1 [--high N ...] [--id CVE-2024-3094 ...]
python -m lab status
python -m lab down
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.system import REPO_ROOT, lab_lock

DEFAULT_SCENARIO = REPO_ROOT / "lab" / "scenarios" / "seed.yml"


@functools.cache
def _lab_hostvars() -> dict[str, dict[str, Any]]:
    """The running lab's inventory records (``.lab/inventory``), read once per command: the sample, the expected table
    and the health block all use them."""
    from lab.expected import lab_hostvars  # noqa: PLC0415

    return lab_hostvars()


def _expected_from_policy(scenario: Any, probes: Any) -> tuple[dict[str, str] | None, str]:
    """The table the scenario's policy implies (the collection's reachability oracle), or why there is none."""
    from lab.expected import expected_from_policy  # noqa: PLC0415

    if scenario.policy is None:
        return None, "unavailable: the scenario has neither expect.allow nor a policy"
    try:
        return expected_from_policy(scenario, probes, hostvars=_lab_hostvars()), "from the policy"
    except LabError as exc:
        return None, f"unavailable: {exc}"


def _expected_open(scenario: Any, probes: Any) -> tuple[dict[str, str] | None, str]:
    """The table before any policy: the oracle's answer for no policy (kube-proxy's own behaviour), or why there is none."""
    from lab.expected import expected_open  # noqa: PLC0415

    try:
        return expected_open(scenario, probes, hostvars=_lab_hostvars()), "no policy: kube-proxy's behaviour, from the oracle"
    except LabError as exc:
        return None, f"unavailable: {exc}"


def cmd_up(args: argparse.Namespace) -> int:
    from lab.build import up  # noqa: PLC0415 - keep `--help` fast

    started = time.monotonic()
    with lab_lock():
        state, changed = up(args.scenario)
    elapsed = time.monotonic() - started
    if changed:
        print(f"lab up: {len(state['netns'])} namespaces, {len(state['processes'])} processes in {elapsed:.1f} s")
    else:
        print("lab up: already up with this scenario, nothing changed")
    api = state.get("kubeapi") or {}
    print(f"kubeconfig: {state.get('kubeconfig') or 'none (' + api.get('reason', 'API not started') + ')'}")
    print(f"inventory:  {state['inventory']}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import yaml  # noqa: PLC0415

    from lab.generate import generate, header  # noqa: PLC0415
    from lab.scenario import build_scenario  # noqa: PLC0415

    document = generate(args.nodes, args.pods, args.vms, args.seed)
    scenario = build_scenario(document, source=args.output)  # what `lab up` would refuse, refused here
    Path(args.output).write_text(header(args.nodes, args.pods, args.vms, args.seed) + yaml.safe_dump(document, sort_keys=False, width=200))
    print(
        f"{args.output}: {len(scenario.nodes)} nodes, {len(scenario.pods)} pods, {len(scenario.services)} services, "
        f"{len(scenario.vms)} VMs (with the lab's control plane objects)"
    )
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    from lab.build import down  # noqa: PLC0415

    with lab_lock():
        removed = down()
    print(f"lab down: removed {len(removed)} objects" if removed else "lab down: nothing to remove")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    from lab.build import health, read_state, status  # noqa: PLC0415

    print(status())
    state = read_state()
    return 0 if state is not None and not health(state) else 1


def _load_live() -> tuple[Any, dict[str, Any]]:
    from lab.build import health, read_state  # noqa: PLC0415
    from lab.scenario import load_scenario  # noqa: PLC0415

    state = read_state()
    if state is None:
        raise LabError("no lab is up; run `python -m lab up` first")
    problems = health(state)
    if problems:
        raise LabError(f"the lab is not healthy ({'; '.join(problems)}); run `python -m lab up` to rebuild it")
    scenario = load_scenario(state["scenario"]["path"])
    if scenario.digest != state["scenario"]["digest"]:
        raise LabError(f"{state['scenario']['path']} changed since `lab up`; run `python -m lab up` again to rebuild")
    return scenario, state


def cmd_probe(args: argparse.Namespace) -> int:  # noqa: PLR0912, PLR0915 - one pass: measure, print, compare
    from lab.prober import run_probes  # noqa: PLC0415
    from lab.probes import CONNECTED, expected_from_allow, mismatches, probe_matrix, render_tables  # noqa: PLC0415

    out = sys.stderr if args.json == "-" else sys.stdout  # `--json -`: stdout carries the JSON alone
    scenario, state = _load_live()
    # Probes follow the live lab (a moved pod changes addresses), not only the file.
    scenario = _apply_moves(scenario, state)
    sample = _sample(scenario, args)
    probes = sample.probes if sample is not None else probe_matrix(scenario, ipv6=args.ipv6)
    started = time.monotonic()
    # The health block runs beside the table: both mostly wait out connect timeouts, so a probe takes the longer of
    # the two instead of their sum (the sync benchmark's windows end with a probe).
    with ThreadPoolExecutor(max_workers=1) as pool:
        health_job = pool.submit(lambda: [] if args.no_health else _measure_health(scenario, state, args.timeout))
        results = run_probes(scenario, state, probes, timeout=args.timeout, max_attempts=None if sample is None else sample.max_attempts)
        elapsed = time.monotonic() - started
        health = health_job.result()
    observed = {result.probe.id: result.result for result in results}
    expected: dict[str, str] | None
    if args.expect_open:
        expected, note = _expected_open(scenario, probes)
    elif scenario.expect_allow is not None:
        expected, note = expected_from_allow(probes, scenario.expect_allow), "from expect.allow"
        if scenario.policy is not None:
            implied, _ = _expected_from_policy(scenario, probes)
            disagree = mismatches(expected, implied) if implied is not None else []
            if disagree:
                print(f"warning: expect.allow and the policy disagree on {len(disagree)} probes: {', '.join(disagree)}", file=sys.stderr)
    else:
        expected, note = _expected_from_policy(scenario, probes)
    if sample is not None:
        from lab.sampling import render_sample  # noqa: PLC0415

        print(render_sample(sample, observed, expected, note), file=out)
    else:
        print(render_tables(scenario, probes, observed, expected, note), file=out)
    for result in results:
        if result.result in ("?", "~") or args.verbose:
            print(f"  {result.probe.id}: {result.result} {json.dumps(result.detail)}", file=out)
    compare = args.expect_from_scenario or args.expect_open
    wrong = mismatches(observed, expected) if expected is not None else []
    print(
        f"{len(probes)} probes in {elapsed:.2f} s" + (f"; {len(wrong)} differ from the expected table" if expected is not None else ""),
        file=out,
    )
    for probe_id in wrong:
        print(f"  MISMATCH {probe_id}: observed {observed[probe_id]} expected {(expected or {})[probe_id]}", file=out)
    unhealthy = [result for result in health if result.result != CONNECTED]
    if health:
        from lab.health import render_health  # noqa: PLC0415

        print("", file=out)
        print(render_health(health), file=out)
        for result in health:
            if result.result != CONNECTED or args.verbose:
                flag = "HEALTH " if result.result != CONNECTED else ""
                print(f"  {flag}{result.cell.id}: {result.result} {json.dumps(result.detail)}", file=out)
    if args.json:
        document = {
            "scenario": state["scenario"]["path"],
            "elapsed_seconds": round(elapsed, 3),
            "cells": [result.to_dict() for result in results],
            "expected": expected,
            "expected_note": note,
            "sampled": None if sample is None else sample.describe(),
            "mismatches": wrong,
            "health": [result.to_dict() for result in health],
            "health_failures": [result.cell.id for result in unhealthy],
        }
        text = json.dumps(document, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    if compare and expected is None:
        print(f"cannot compare: expected table {note}", file=sys.stderr)
        return 2
    return 1 if compare and (wrong or unhealthy) else 0


def _sample(scenario: Any, args: argparse.Namespace) -> Any:
    """The sampled cells when asked for (``--sample``) or when the matrix is too large to measure whole; else None."""
    from lab.probes import probe_targets  # noqa: PLC0415
    from lab.sampling import FULL_MATRIX_MAX_CELLS, sample_matrix, total_cells  # noqa: PLC0415

    if args.full or (not args.sample and total_cells(scenario, probe_targets(scenario, args.ipv6)) <= FULL_MATRIX_MAX_CELLS):
        return None
    hostvars = None
    if scenario.policy is not None:
        hostvars = _lab_hostvars()  # the policy's cells: its filters over the running lab's inventory
    return sample_matrix(scenario, hostvars, seed=args.seed, ipv6=args.ipv6)


def _measure_health(scenario: Any, state: dict[str, Any], timeout: float) -> list[Any]:
    """The cluster-health block (empty without a control plane)."""
    from lab.expected import api_access_pods, policy_api_pods  # noqa: PLC0415
    from lab.health import health_cells, measure_health  # noqa: PLC0415

    hostvars = _lab_hostvars()
    cells = health_cells(scenario, [*api_access_pods(scenario, hostvars), *policy_api_pods(scenario, hostvars)])
    return measure_health(scenario, state, cells, timeout=timeout) if cells else []


def _apply_moves(scenario: Any, state: dict[str, Any]) -> Any:
    from lab.move import live_scenario  # noqa: PLC0415
    from lab.vulns import live_findings  # noqa: PLC0415

    return live_findings(live_scenario(scenario, state), state)


def cmd_move_pod(args: argparse.Namespace) -> int:
    from lab.move import move_pod  # noqa: PLC0415

    with lab_lock():
        scenario, state = _load_live()
        print(move_pod(_apply_moves(scenario, state), state, args.pod, args.node, args.ip))
    return 0


def cmd_reboot(args: argparse.Namespace) -> int:
    from lab.reboot import reboot  # noqa: PLC0415

    started = time.monotonic()
    with lab_lock():
        scenario, state = _load_live()
        report = reboot(_apply_moves(scenario, state), state, args.host, new_pod_ips=args.new_pod_ips)
    print(report.summary())
    print(f"reboot took {time.monotonic() - started:.2f} s")
    return 0


def cmd_vuln_report(args: argparse.Namespace) -> int:
    from lab.vulns import SEVERITIES, add_report  # noqa: PLC0415

    raw: dict[str, Any] = {"pod": args.pod, "ids": list(args.id)}
    raw.update({severity: getattr(args, severity) for severity in SEVERITIES})
    with lab_lock():
        scenario, state = _load_live()
        print(add_report(_apply_moves(scenario, state), state, raw))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command; LabError becomes a one-line message and exit 1."""
    parser = argparse.ArgumentParser(
        prog="python -m lab", description="The zerotrust.workloads lab: the seed cluster and VMs in network namespaces."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build the lab (idempotent)")
    up.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="scenario YAML (default: the seed)")
    up.set_defaults(func=cmd_up)
    generate = commands.add_parser("generate", help="write a scenario of any size (Deployments behind Services, VMs, a policy)")
    generate.add_argument("--nodes", type=int, required=True, help="nodes, one of them the control plane (2-40)")
    generate.add_argument("--pods", type=int, required=True, help="pods on the workers (besides cluster DNS)")
    generate.add_argument("--vms", type=int, default=4, help="VMs: haproxy, the outsider and batch VMs (2-8, default 4)")
    generate.add_argument("--seed", type=int, default=1, help="names and placement follow it (default 1)")
    generate.add_argument("-o", "--output", required=True, help="the scenario file to write")
    generate.set_defaults(func=cmd_generate)
    commands.add_parser("down", help="remove everything the lab made").set_defaults(func=cmd_down)
    commands.add_parser("status", help="show the lab and its health").set_defaults(func=cmd_status)
    probe = commands.add_parser("probe", help="measure connectivity and print the truth table")
    probe.add_argument("--json", metavar="FILE", help="also write every cell as JSON ('-' for stdout)")
    group = probe.add_mutually_exclusive_group()
    group.add_argument("--expect-from-scenario", action="store_true", help="compare with the scenario's expected table; exit 1 on mismatch")
    group.add_argument(
        "--expect-open", action="store_true", help="compare with the table for no policy (kube-proxy's behaviour); exit 1 on mismatch"
    )
    probe.add_argument("--ipv6", action="store_true", help="also probe pods and VMs over IPv6")
    probe.add_argument("--timeout", type=float, default=0.8, help="connect timeout per probe in seconds (default 0.8)")
    size = probe.add_mutually_exclusive_group()
    size.add_argument("--sample", action="store_true", help="measure a seeded sample of the matrix (the default above 20,000 cells)")
    size.add_argument("--full", action="store_true", help="measure the whole matrix however large")
    probe.add_argument("--seed", type=int, default=1, help="the sample's seed (default 1): the same seed, the same cells")
    probe.add_argument("-v", "--verbose", action="store_true", help="print every cell's detail")
    probe.add_argument("--no-health", action="store_true", help="skip the cluster-health block (control plane cells)")
    probe.set_defaults(func=cmd_probe)
    move = commands.add_parser("move-pod", help="move a pod to another node and IP (the rules-follow-the-pod demo)")
    move.add_argument("pod", help="NAMESPACE/NAME")
    move.add_argument("--node", required=True)
    move.add_argument("--ip", required=True)
    move.set_defaults(func=cmd_move_pod)
    reboot = commands.add_parser("reboot", help="reboot a node or VM: empty firewall, restore unit, processes, pods (in new namespaces)")
    reboot.add_argument("host", help="a node or VM name")
    reboot.add_argument("--new-pod-ips", action="store_true", help="the node's pods come back with new addresses")
    reboot.set_defaults(func=cmd_reboot)
    vuln = commands.add_parser("vuln-report", help="add or replace a pod's VulnerabilityReport, as trivy-operator does after a scan")
    vuln.add_argument("pod", help="NAMESPACE/NAME")
    for severity in ("critical", "high", "medium", "low", "unknown"):
        vuln.add_argument(f"--{severity}", type=int, default=0, metavar="N", help=f"{severity} findings (default 0)")
    vuln.add_argument("--id", action="append", default=[], metavar="ID", help="a vulnerability ID (repeatable)")
    vuln.set_defaults(func=cmd_vuln_report)
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except LabError as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the probe matrix in the live lab: route checks first, then one agent per source namespace."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lab.errors import LabError
from lab.probes import BLOCKED, CONNECTED, UNKNOWN, Probe, Result, combine_nodeport
from lab.scenario import Scenario
from lab.system import REPO_ROOT, SYSTEM_PYTHON, in_netns, ip_json

AGENT = REPO_ROOT / "lab" / "probe_agent.py"


def lab_addresses(scenario: Scenario) -> set[str]:
    """Every address that belongs to the lab (the only destinations a probe may use)."""
    addresses = {str(node.address) for node in scenario.nodes} | {str(pod.ip) for pod in scenario.pods}
    addresses |= {str(vm.address) for vm in scenario.vms} | {str(service.cluster_ip) for service in scenario.services}
    addresses |= {str(node.ipv6) for node in scenario.nodes if node.ipv6} | {str(pod.ipv6) for pod in scenario.pods if pod.ipv6}
    addresses |= {str(vm.ipv6) for vm in scenario.vms if vm.ipv6}
    return addresses


def check_route(netns: str, interfaces: list[str], address: str, allowed: set[str]) -> None:
    """Refuse unless ``address`` is a lab address routed through a lab interface of ``netns``."""
    if address not in allowed:
        raise LabError(f"refusing to probe {address}: not an address of the lab")
    family = "-6" if ipaddress.ip_address(address).version == 6 else "-4"
    routes = ip_json(family, "route", "get", address, netns=netns)
    if not routes:
        raise LabError(f"refusing to probe {address} from {netns}: no route")
    device = routes[0].get("dev")
    if device not in interfaces:
        raise LabError(
            f"refusing to probe {address} from {netns}: the route leaves through {device!r}, not a lab interface ({', '.join(interfaces)})"
        )


def run_probes(scenario: Scenario, state: dict[str, Any], probes: list[Probe], timeout: float = 0.8) -> list[Result]:
    """Measure every probe; one agent process per source namespace, all in parallel."""
    workloads = {workload["id"]: workload for workload in state["workloads"]}
    allowed = lab_addresses(scenario)
    checks = set()
    for probe in probes:
        if probe.source not in workloads:
            raise LabError(f"the lab has no workload {probe.source}; is it up with this scenario? (python -m lab status)")
        workload = workloads[probe.source]
        for destination in probe.destinations:
            checks.add((workload["netns"], tuple(workload["interfaces"]), destination.address))
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda check: check_route(check[0], list(check[1]), check[2], allowed), checks))

    jobs: dict[str, list[dict[str, Any]]] = {}
    for probe_index, probe in enumerate(probes):
        netns = workloads[probe.source]["netns"]
        for dest_index, destination in enumerate(probe.destinations):
            jobs.setdefault(netns, []).append(
                {
                    "key": f"{probe_index}/{dest_index}",
                    "address": destination.address,
                    "port": destination.port,
                    "protocol": probe.protocol,
                    "timeout": timeout,
                }
            )

    def agent(netns: str) -> dict[str, Any]:
        completed = subprocess.run(
            in_netns(netns, [SYSTEM_PYTHON, str(AGENT)]),
            input=json.dumps(jobs[netns]),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if completed.returncode != 0:
            return {"error": completed.stderr.strip()}
        outcome: dict[str, Any] = json.loads(completed.stdout)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        outcomes: dict[str, Any] = {}
        for answer in pool.map(agent, list(jobs)):
            outcomes.update(answer)

    results = []
    for probe_index, probe in enumerate(probes):
        detail: list[dict[str, object]] = []
        oks: list[bool] = []
        measured = True
        for dest_index, destination in enumerate(probe.destinations):
            outcome = outcomes.get(f"{probe_index}/{dest_index}")
            if outcome is None:
                measured = False
                detail.append({"address": destination.address, "port": destination.port, "node": destination.node, "error": "not measured"})
                continue
            oks.append(bool(outcome["ok"]))
            detail.append(
                {
                    "address": destination.address,
                    "port": destination.port,
                    **({"node": destination.node} if destination.node else {}),
                    "connected": outcome["ok"],
                    "seen_source": outcome.get("seen"),
                    **({"error": outcome["error"]} if outcome.get("error") else {}),
                }
            )
        if not measured:
            cell = UNKNOWN
        elif len(probe.destinations) > 1:
            cell = combine_nodeport(oks)
        else:
            cell = CONNECTED if oks[0] else BLOCKED
        results.append(Result(probe=probe, result=cell, detail=detail))
    return results

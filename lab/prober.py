# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the probe matrix in the live lab: route checks first, then one agent per source namespace."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lab.errors import LabError
from lab.partial import attempt_oks, attempts_for, counted, endpoint_names, probe_service, reachable_endpoints, tries_detail
from lab.probes import BLOCKED, CONNECTED, UNKNOWN, Probe, Result, combine_nodeport
from lab.scenario import Scenario
from lab.system import REPO_ROOT, SYSTEM_PYTHON, in_netns, ip_json

AGENT = REPO_ROOT / "lab" / "probe_agent.py"
MAX_AGENTS = 48
"""Agents running at once (each runs its own jobs in parallel)."""


def lab_addresses(scenario: Scenario) -> set[str]:
    """Every address that belongs to the lab (the only destinations a probe may use)."""
    addresses = {str(node.address) for node in scenario.nodes} | {str(pod.ip) for pod in scenario.pods}
    addresses |= {str(vm.address) for vm in scenario.vms} | {str(service.cluster_ip) for service in scenario.services}
    addresses |= {str(node.ipv6) for node in scenario.nodes if node.ipv6} | {str(pod.ipv6) for pod in scenario.pods if pod.ipv6}
    addresses |= {str(vm.ipv6) for vm in scenario.vms if vm.ipv6}
    if scenario.upstream_dns is not None:
        addresses.add(str(scenario.upstream_dns.address))
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


def dns_targets(scenario: Scenario) -> set[tuple[str, int]]:
    """The address:port pairs where a real DNS server answers (kube-dns's ClusterIP and pods): UDP probes there send a DNS query."""
    service = scenario.dns_service
    if service is None:
        return set()
    targets = {(str(service.cluster_ip), 53)}
    targets |= {(str(address), 53) for pod in scenario.dns_pods() for address in (pod.ip, pod.ipv6) if address is not None}
    return targets


def run_probes(
    scenario: Scenario, state: dict[str, Any], probes: list[Probe], timeout: float = 0.8, max_attempts: int | None = None
) -> list[Result]:
    """Measure every probe; one agent process per source namespace, all in parallel.

    ``max_attempts`` caps how often a Service destination is tried (the sampled probe: a Service
    with hundreds of endpoints is otherwise tried 4x that many times per node).
    """
    dns = dns_targets(scenario)
    jobs: list[tuple[str, dict[str, Any]]] = []
    for probe in probes:
        for destination in probe.destinations:
            protocol = probe.protocol
            if protocol == "udp" and (destination.address, destination.port) in dns:
                protocol = "dns"  # a DNS server answers queries, not the listeners' probe line
            job = {"address": destination.address, "port": destination.port, "protocol": protocol, "timeout": timeout}
            # A Service with several endpoints: tried until each answered (lab/partial.py).
            endpoints = reachable_endpoints(scenario, probe, destination) if protocol != "dns" else []
            attempts = attempts_for(endpoints) if max_attempts is None else min(attempts_for(endpoints), max_attempts)
            if attempts > 1:
                job.update(attempts=attempts, endpoints=endpoints)
            jobs.append((probe.source, job))
    outcomes = iter(run_jobs(scenario, state, jobs))
    results = []
    for probe in probes:
        detail: list[dict[str, object]] = []
        oks: list[bool] = []
        measured = True
        # Nodes that cannot serve a Local NodePort (no local endpoint) are measured and shown, not counted.
        counted_destinations = counted(probe)
        service = probe_service(scenario, probe)
        names = endpoint_names(scenario, service) if service is not None else {}
        for destination in probe.destinations:
            outcome = next(outcomes)
            if outcome is None:
                measured = False
                detail.append({"address": destination.address, "port": destination.port, "node": destination.node, "error": "not measured"})
                continue
            if destination in counted_destinations:
                oks.extend(attempt_oks(outcome))
            repeated = tries_detail(outcome, reachable_endpoints(scenario, probe, destination), names) if "tries" in outcome else {}
            detail.append(
                {
                    "address": destination.address,
                    "port": destination.port,
                    **({"node": destination.node} if destination.node else {}),
                    **({} if destination.serves else {"local_endpoint": False}),
                    "connected": outcome["ok"],
                    "seen_source": outcome.get("seen"),
                    **({"error": outcome["error"]} if outcome.get("error") else {}),
                    **repeated,
                }
            )
        if not measured:
            cell = UNKNOWN
        elif len(oks) > 1:
            cell = combine_nodeport(oks)
        else:
            cell = CONNECTED if oks[0] else BLOCKED
        results.append(Result(probe=probe, result=cell, detail=detail))
    return results


def run_jobs(scenario: Scenario, state: dict[str, Any], jobs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any] | None]:
    """Run (source workload id, agent job) pairs: route checks first, then one agent per source namespace, all in parallel.

    Returns each job's outcome in order (None when its agent failed).
    """
    workloads = {workload["id"]: workload for workload in state["workloads"]}
    allowed = lab_addresses(scenario)
    checks = set()
    for source, job in jobs:
        if source not in workloads:
            raise LabError(f"the lab has no workload {source}; is it up with this scenario? (python -m lab status)")
        workload = workloads[source]
        checks.add((workload["netns"], tuple(workload["interfaces"]), job["address"]))
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda check: check_route(check[0], list(check[1]), check[2], allowed), checks))

    by_netns: dict[str, list[dict[str, Any]]] = {}
    for index, (source, job) in enumerate(jobs):
        by_netns.setdefault(workloads[source]["netns"], []).append({**job, "key": str(index)})

    def agent(netns: str) -> dict[str, Any]:
        # The agent runs its jobs in parallel, each job's attempts one after the other: a blocked Service with many
        # endpoints is tried up to 4x that many times, each waiting out the connect timeout.
        longest = max(int(job.get("attempts") or 1) * float(job["timeout"]) for job in by_netns[netns])
        completed = subprocess.run(
            in_netns(netns, [SYSTEM_PYTHON, str(AGENT)]),
            input=json.dumps(by_netns[netns]),
            capture_output=True,
            text=True,
            timeout=30 + 2 * longest,
            check=False,
        )
        if completed.returncode != 0:
            return {"error": completed.stderr.strip()}
        outcome: dict[str, Any] = json.loads(completed.stdout)
        return outcome

    # Each agent is a Python process: at thousands of source namespaces, a bounded number at once.
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_AGENTS, len(by_netns)))) as pool:
        outcomes: dict[str, Any] = {}
        for answer in pool.map(agent, list(by_netns)):
            outcomes.update(answer)
    return [outcomes.get(str(index)) for index in range(len(jobs))]

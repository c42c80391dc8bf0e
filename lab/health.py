# SPDX-License-Identifier: GPL-3.0-or-later
"""The probe's cluster-health block: is the control plane still alive? (cells pure; measuring in ``measure_health``).

A cluster dies of enforcement slowly: established connections survive (conntrack) and only the
next NEW one fails. Every cell here is a NEW connection or a contact that started after the
measurement began. The cells, by name (part of the contract, in ``--json`` too):

- ``node:<node> -> apiserver:tcp/6443``: a TCP connection from the node to the API server;
- ``apiserver -> node:<node>:tcp/10250``: the API server's side reaching the node's kubelet port
  (recorded by ``lab/kubelet.py reach`` in the control-plane node);
- ``kubelet:<node> -> apiserver:last-contact``: the node's kubelet stand-in completed an API
  request that started after the measurement began (its age in seconds in the detail);
- ``pod:<ns>/<name> -> svc:default/kubernetes:tcp/443``: for kube-system pods, the pods the
  policy's ``options.api_access`` query selects (default ``namespace = kube-system``) and the pods
  a policy rule lets reach ``default/kubernetes`` (``lab.expected.policy_api_pods``);
- ``pod:<ns>/<name> -> dns:<svc>.<ns>.svc.cluster.local``: a DNS query to the ``kube-dns``
  ClusterIP answered with the Service's ClusterIP (every pod; the name is the scenario's first
  Service), and ``pod:<ns>/<name> -> dns:<external name>`` once, answered through the upstream resolver.

Cross-node pod traffic over the overlay is in the workload matrix already. Every cell's expected
value is ``.`` (connected).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import upstream_dns
from lab.probes import BLOCKED, CONNECTED, UNKNOWN
from lab.scenario import API_PORT, KUBELET_PORT, Pod, Scenario

CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class HealthCell:
    """One cell of the cluster-health block.

    ``kind``: ``tcp`` (a connection from ``source_workload`` to address:port), ``dns`` (a query
    for ``name`` sent to address:53, connected when ``expect`` is among the answers),
    ``kubelet`` (the node's kubelet record) or ``reach`` (the API server's record of the node).
    """

    source: str
    target: str
    kind: str
    source_workload: str
    address: str = ""
    port: int = 0
    name: str = ""
    expect: str = ""

    @property
    def id(self) -> str:
        """``SOURCE -> TARGET``, as the workload cells are named."""
        return f"{self.source} -> {self.target}"


@dataclass
class HealthResult:
    """A measured health cell."""

    cell: HealthCell
    result: str
    detail: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The JSON form (``expected`` is always connected)."""
        return {"source": self.cell.source, "target": self.cell.target, "result": self.result, "expected": CONNECTED, "detail": self.detail}


def service_dns_name(namespace: str, name: str) -> str:
    """``<name>.<namespace>.svc.cluster.local``."""
    return f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"


def external_name() -> tuple[str, str]:
    """(name, address): the first external name the upstream resolver answers (lab/upstream_dns.py)."""
    return next(iter(upstream_dns.NAMES.items()))


def health_cells(scenario: Scenario, api_access: Iterable[Pod] = ()) -> list[HealthCell]:
    """Every health cell of the lab (none without a control plane), nodes first, in scenario order."""
    control = scenario.control_plane_node
    if control is None:
        return []
    api = str(control.address)
    cells = [
        HealthCell(f"node:{node.name}", f"apiserver:tcp/{API_PORT}", "tcp", f"node:{node.name}", api, API_PORT) for node in scenario.nodes
    ]
    cells += [
        HealthCell("apiserver", f"node:{node.name}:tcp/{KUBELET_PORT}", "reach", f"node:{control.name}", str(node.address), KUBELET_PORT)
        for node in scenario.nodes
    ]
    cells += [HealthCell(f"kubelet:{node.name}", "apiserver:last-contact", "kubelet", f"node:{node.name}") for node in scenario.nodes]
    api_service = scenario.api_service
    if api_service is not None:
        chosen = {pod.key for pod in api_access} | {pod.key for pod in scenario.pods if pod.namespace == "kube-system"}
        cells += [
            HealthCell(f"pod:{pod.key}", "svc:default/kubernetes:tcp/443", "tcp", f"pod:{pod.key}", str(api_service.cluster_ip), 443)
            for pod in scenario.pods
            if pod.key in chosen
        ]
    dns = scenario.dns_service
    if dns is not None and scenario.services:
        looked_up = scenario.services[0]
        name = service_dns_name(looked_up.namespace, looked_up.name)
        server = str(dns.cluster_ip)
        cells += [
            HealthCell(f"pod:{pod.key}", f"dns:{name}", "dns", f"pod:{pod.key}", server, 53, name, str(looked_up.cluster_ip))
            for pod in scenario.pods
        ]
        if scenario.upstream_dns is not None and scenario.pods:
            outside, answer = external_name()
            first = scenario.pods[0]
            cells.append(HealthCell(f"pod:{first.key}", f"dns:{outside}", "dns", f"pod:{first.key}", server, 53, outside, answer))
    return cells


def dns_answered(expect: str, outcome: Mapping[str, Any]) -> bool:
    """A DNS cell is connected when the answers carry the expected address."""
    return bool(outcome.get("ok")) and expect in (outcome.get("answers") or [])


def _record_of(cell: HealthCell, records: Mapping[str, Any]) -> dict[str, Any]:
    """The record a kubelet or reach cell reads ({} when none yet)."""
    if cell.kind == "kubelet":
        return dict(records.get(f"kubelet:{cell.source.partition(':')[2]}") or {})
    node = cell.target.split(":")[1]
    return dict(((records.get("apiserver") or {}).get("nodes") or {}).get(node) or {})


def record_cell(cell: HealthCell, records: Mapping[str, Any], started: float, now: float) -> HealthResult:
    """A kubelet or reach cell from the recorded contacts: connected when one that began after ``started`` succeeded."""
    record = _record_of(cell, records)
    last_ok = record.get("last_contact" if cell.kind == "kubelet" else "last_ok")
    if not record:
        return HealthResult(cell, UNKNOWN, {"error": "no record yet"})
    detail: dict[str, object] = {
        "age_seconds": round(now - last_ok, 2) if last_ok else None,
        "last_attempt_age_seconds": round(now - record["last_attempt"], 2) if record.get("last_attempt") else None,
        **({"error": record["error"]} if record.get("error") else {}),
    }
    return HealthResult(cell, CONNECTED if last_ok is not None and last_ok >= started else BLOCKED, detail)


def attempts_since(records: Mapping[str, Any], cells: Iterable[HealthCell], started: float) -> bool:
    """Whether every kubelet/reach cell has an attempt that began after ``started`` recorded."""
    return all((_record_of(cell, records).get("last_attempt") or 0) >= started for cell in cells)


def read_records(run_dir: Path, scenario: Scenario) -> dict[str, Any]:
    """The kubelet stand-ins' and the API server side's JSON records (absent ones left out)."""
    records: dict[str, Any] = {}
    paths = {f"kubelet:{node.name}": run_dir / f"kubelet.{node.name}.json" for node in scenario.nodes}
    paths["apiserver"] = run_dir / "apiserver-kubelets.json"
    for key, path in paths.items():
        try:
            records[key] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return records


def measure_health(
    scenario: Scenario, state: dict[str, Any], cells: list[HealthCell], timeout: float = 0.8, wait: float = 6.0
) -> list[HealthResult]:
    """Measure every cell: route checks, then one agent per source namespace; the recorded contacts meanwhile."""
    from lab.build import RUN_DIR  # noqa: PLC0415 - build imports the whole lab
    from lab.prober import run_jobs  # noqa: PLC0415

    started = time.time()
    jobs = [
        (cell.source_workload, {"address": cell.address, "port": cell.port, "protocol": cell.kind, "name": cell.name, "timeout": timeout})
        for cell in cells
        if cell.kind in ("tcp", "dns")
    ]
    recorded = [cell for cell in cells if cell.kind in ("kubelet", "reach")]

    def wait_records() -> dict[str, Any]:
        deadline = started + wait
        records = read_records(RUN_DIR, scenario)
        while not attempts_since(records, recorded, started) and time.time() < deadline:
            time.sleep(0.2)
            records = read_records(RUN_DIR, scenario)
        return records

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(wait_records)
        outcomes = run_jobs(scenario, state, jobs)
        records = pending.result()
    now = time.time()
    results: list[HealthResult] = []
    measured = iter(outcomes)
    for cell in cells:
        if cell.kind in ("kubelet", "reach"):
            results.append(record_cell(cell, records, started, now))
            continue
        outcome = next(measured)
        if outcome is None:
            results.append(HealthResult(cell, UNKNOWN, {"address": cell.address, "port": cell.port, "error": "not measured"}))
            continue
        if cell.kind == "dns":
            ok = dns_answered(cell.expect, outcome)
            detail: dict[str, object] = {
                "server": cell.address,
                "name": cell.name,
                "expected_answer": cell.expect,
                "answers": outcome.get("answers"),
            }
        else:
            ok = bool(outcome.get("ok"))
            detail = {"address": cell.address, "port": cell.port}
        if outcome.get("error"):
            detail["error"] = outcome["error"]
        results.append(HealthResult(cell, CONNECTED if ok else BLOCKED, detail))
    return results


def render_health(results: list[HealthResult]) -> str:
    """The cluster-health block: one line per cell, observed beside expected (always ``.``)."""
    if not results:
        return "cluster health: no control plane in this lab"
    width = max(len(result.cell.id) for result in results)
    lines = [f"{'cluster health':<{width + 4}}observed  expected"]
    for result in results:
        age = result.detail.get("age_seconds") if result.cell.kind == "kubelet" else None
        note = f"   (last contact {age} s ago)" if age is not None else ""
        lines.append(f"  {result.cell.id:<{width}}  {result.result:<8}  {CONNECTED}{note}")
    failing = [result.cell.id for result in results if result.result != CONNECTED]
    lines.append(f"{len(results)} health cells; " + (f"{len(failing)} NOT connected" if failing else "all connected"))
    return "\n".join(lines)

# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: compile 200 filters and 1,000 policies over 10,000 and 20,000 workloads.

Goal: under 5 seconds at 20,000 workloads on the 2-core reference machine, and cost
growing linearly with workloads (growth 20,000 vs 10,000 close to 2). The last line is
machine-readable::

    RESULT compile workloads_20000_s=... growth_20000_vs_10000=... ...

Run: .venv/bin/python benchmarks/bench_compile.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / ".collections"), str(REPO)]

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy  # noqa: E402

NAMESPACES = 50
APPS = 200
FILTERS = 200
POLICIES = 1000


def inventory(total: int) -> dict[str, dict[str, Any]]:
    """``total`` workloads: 1/200 nodes, 1/100 services, 1/50 VMs, the rest pods (seeded, deterministic)."""
    rng = random.Random(total)  # noqa: S311 - reproducible test data
    hostvars: dict[str, dict[str, Any]] = {}
    nodes = max(total // 200, 1)
    services = total // 100
    vms = total // 50
    pods = total - nodes - services - vms
    for index in range(nodes):
        name = f"node-{index}"
        hostvars[name] = {
            "group_names": ["k8s_nodes"],
            "workload": {
                "kind": "node",
                "name": name,
                "cluster": "bench",
                "addresses": [f"172.16.{index // 250}.{index % 250 + 1}"],
                "labels": {"zone": f"z{index % 3}"},
                "pod_cidrs": [f"10.{index // 256}.{index % 256}.0/24"],
            },
        }
    for index in range(pods):
        node = index % nodes
        app = rng.randrange(APPS)
        namespace = f"ns{app % NAMESPACES}"
        name = f"app{app}-{index}"
        address = (
            f"10.{node // 256}.{node % 256}.{(index // nodes) % 250 + 2}"
            if pods // nodes < 250
            else f"10.{128 + index // 65536}.{index // 256 % 256}.{index % 256}"
        )
        hostvars[f"{name}.{namespace}.pod.bench"] = {
            "zt_enforce_host": f"node-{node}",
            "group_names": ["k8s_pods"],
            "workload": {
                "kind": "pod",
                "name": name,
                "namespace": namespace,
                "cluster": "bench",
                "addresses": [address],
                "labels": {"app": f"app{app}", "tier": rng.choice(["web", "api", "db"])},
                "node": f"node-{node}",
                "uid": f"uid-{index}",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            },
        }
    for index in range(services):
        app = index % APPS
        namespace = f"ns{app % NAMESPACES}"
        hostvars[f"svc{index}.{namespace}.service.bench"] = {
            "group_names": ["k8s_services"],
            "workload": {
                "kind": "service",
                "name": f"svc{index}",
                "namespace": namespace,
                "cluster": "bench",
                "addresses": [f"10.96.{index // 250}.{index % 250 + 1}"],
                "type": "NodePort",
                "external_traffic_policy": "Cluster",
                "selector": {"app": f"app{app}"},
                "ports": [{"name": "http", "port": 80, "target_port": "http", "node_port": 30000 + index % 2700, "protocol": "TCP"}],
                "endpoints": [],
            },
        }
    for index in range(vms):
        hostvars[f"vm{index}"] = {"ansible_host": f"192.168.{index // 250}.{index % 250 + 1}", "group_names": [f"vmgroup{index % 40}"]}
    return hostvars


def policy() -> dict[str, Any]:
    """200 filters of several shapes and 1,000 policies between them (seeded)."""
    rng = random.Random(7)  # noqa: S311 - reproducible test data
    filters: dict[str, str] = {}
    for index in range(FILTERS):
        shape = index % 5
        if shape == 0:
            filters[f"f{index}"] = f"label.app = app{index % APPS} and namespace = ns{index % APPS % NAMESPACES}"
        elif shape == 1:
            filters[f"f{index}"] = (
                f"label.app in (app{index % APPS}, app{(index + 1) % APPS}) and label.tier = {rng.choice(['web', 'api', 'db'])}"
            )
        elif shape == 2:
            filters[f"f{index}"] = f"service_name = svc{index % 50} or service_name = svc{index % 50 + 50}"
        elif shape == 3:
            filters[f"f{index}"] = f"group = vmgroup{index % 40}"
        else:
            filters[f"f{index}"] = f"kind = pod and label.app = app{index % APPS} and not label.tier = db"
    names = sorted(filters)
    default = [
        {
            "consumer": rng.choice(names),
            "provider": rng.choice(names),
            "ports": [rng.choice(["tcp/80", "tcp/http", "tcp/8080", "udp/53", "tcp/8000-8100"])],
        }
        for _ in range(POLICIES)
    ]
    for rule in default[::10]:
        rule["action"] = "deny"
    return {"filters": filters, "policies": {"absolute": default[:50], "default": default[50:], "catch_all": "deny"}}


def measure(total: int, repeats: int) -> tuple[float, dict[str, Any]]:
    """Best-of-``repeats`` compile time (seconds) and the last plan."""
    hostvars = inventory(total)
    best = float("inf")
    plan: dict[str, Any] = {}
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        plan = compile_policy(policy(), hostvars, {"management_addresses": ["192.0.2.10"]})
        best = min(best, time.perf_counter() - start)
    return best, plan


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition instead of three")
    arguments = parser.parse_args()
    repeats = 1 if arguments.quick else 3
    results = {}
    for total in (10_000, 20_000):
        seconds, plan = measure(total, repeats)
        rulesets = [entry["ruleset"] for entry in plan["hosts"].values() if entry["ruleset"]] + [
            pod["ruleset"] for entry in plan["hosts"].values() for pod in entry["pods"]
        ]
        rules = sum(len(chain["rules"]) for ruleset in rulesets for chain in ruleset["chains"])
        set_names = {item["name"] for ruleset in rulesets for item in ruleset["address_sets"]}
        start = time.perf_counter()
        size = len(json.dumps(plan))
        serialise = time.perf_counter() - start
        # What one host's module run is handed: its entry (ruleset, pods, shared sets).
        busiest = max(len(json.dumps(entry)) for entry in plan["hosts"].values())
        results[total] = seconds
        print(
            f"workloads={total} compile_s={seconds:.2f} enforcement_points={len(rulesets)} rules={rules} "
            f"distinct_sets={len(set_names)} json_mb={size / 1e6:.1f} json_s={serialise:.2f} busiest_host_kb={busiest / 1e3:.0f} "
            f"warnings={len(plan['warnings'])}"
        )
    growth = results[20_000] / results[10_000]
    print(
        f"RESULT compile workloads_20000_s={results[20_000]:.2f} workloads_10000_s={results[10_000]:.2f} "
        f"growth_20000_vs_10000={growth:.2f} goal_s=5 filters={FILTERS} policies={POLICIES}"
    )


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Benchmark: the Kubernetes inventory against the emulated API at 1,000 / 10,000 / 20,000 pods.

Each size is a cluster of that many running pods, 20% as many services (each with an
EndpointSlice), 50 nodes and 20 namespaces, served over HTTPS on 127.0.0.1 by lab.kubeapi.
Per size it measures, as separate processes (so each pays its own imports, as a user does):

* ``ansible-inventory -i bench.kubernetes.yml --list`` (our figure),
* the raw fetch of the same objects with the ``kubernetes`` client alone (every kind, pages of
  500, plain JSON: ``_preload_content=False`` + ``json.loads``),
* ``ansible-inventory --graph`` (the plugin's parse without the hostvars dump),
* the plugin's own work without Ansible (fetch + build of hosts and groups, ``core``),
* ``ansible-inventory --list`` on an empty inventory (Ansible's fixed cost), once,
* at 1,000 and 10,000 pods, the same inventory from a static source: ``ansible-inventory --list`` over
  an inventory script that prints our own ``--list`` output (same hosts, groups and hostvars, no API),
  which shows what Ansible itself costs for an inventory of that size.

Goal: --list within 2x of the raw fetch at 10,000 pods; growth 20,000 vs 10,000 at most 2.2x.
The last line is machine-readable::

    RESULT inventory pods_10000_s=... ratio_vs_raw_10000=... growth_20000_vs_10000=... ...

Run: .venv/bin/python benchmarks/bench_inventory.py [--quick]   (about 2.5 minutes; --quick: 1,000 pods only)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / ".collections"), str(REPO)]

from lab.kubeapi import start_server, write_kubeconfig  # noqa: E402
from tests.unit.plugins.module_utils._kubernetes.k8s_factories import synthetic  # noqa: E402

PYTHON = str(REPO / ".venv/bin/python")
ANSIBLE_INVENTORY = str(REPO / ".venv/bin/ansible-inventory")

RAW_FETCH = """
import json, sys
from kubernetes import client, config
api = config.new_client_from_config(config_file=sys.argv[1])
core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
total = 0
for list_call in (core.list_namespace, core.list_node, core.list_pod_for_all_namespaces, core.list_service_for_all_namespaces,
                  discovery.list_endpoint_slice_for_all_namespaces):
    token = None
    while True:
        page = json.loads(list_call(limit=500, _continue=token, _preload_content=False).data)
        total += len(page["items"])
        token = page["metadata"].get("continue")
        if not token:
            break
print(total)
"""


CORE = """
import sys
sys.path[:0] = sys.argv[2:]
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api, builder, naming
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import resolve_connections
connection = resolve_connections([{"kubeconfig": sys.argv[1]}], {})[0]
snapshot = api.fetch_cluster(api.ClusterClient(connection), api.ALL_KINDS, {})
model = builder.build({connection.name: snapshot}, builder.BuildSettings(host_format=naming.DEFAULT_HOST_FORMAT))
print(len(model.hosts))
"""


CPU_SECONDS: dict[tuple[str, int], list[float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], label: str = "", pods: int = 0) -> tuple[float, str]:
    """Wall time of one process run from the repository root (so ansible.cfg applies), and its stdout.

    The process's CPU time (user + system) is recorded under (label, pods) too: on a shared machine
    it is much steadier than wall time, so the ratios are also reported on it.
    """
    cpu_before = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False, timeout=300)
    elapsed = time.perf_counter() - started
    if label:
        CPU_SECONDS.setdefault((label, pods), []).append(_children_cpu() - cpu_before)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")
    return elapsed, result.stdout


def _floor(listing: str, pods: int, workdir: Path) -> float:
    """``ansible-inventory --list`` over a script that prints ``listing``: Ansible's cost for these hosts without any API."""
    listing_file = workdir / f"listing-{pods}.json"
    listing_file.write_text(listing)
    script = workdir / f"static-{pods}.sh"
    script.write_text(f"#!/bin/sh\nif [ \"$1\" = --list ]; then cat {listing_file}; else echo '{{}}'; fi\n")
    script.chmod(0o700)
    elapsed, output = timed([ANSIBLE_INVENTORY, "-i", str(script), "--list"], "floor", pods)
    assert len(json.loads(output)["_meta"]["hostvars"]) == len(json.loads(listing)["_meta"]["hostvars"])
    return elapsed


def measure(pods: int, runs: int, workdir: Path) -> dict[str, float]:
    """Median timings for one cluster size."""
    objects = synthetic(pods)
    expected = len(objects)
    with start_server(objects) as api:
        kubeconfig = write_kubeconfig(api, workdir / f"kubeconfig-{pods}", "bench")
        config = workdir / f"bench{pods}.kubernetes.yml"
        config.write_text(f"plugin: zerotrust.workloads.kubernetes\nconnections:\n  - kubeconfig: {kubeconfig}\n")
        raw, listed = [], []
        for run in range(runs):
            elapsed, output = timed([PYTHON, "-c", RAW_FETCH, str(kubeconfig)], "raw", pods)
            assert int(output) == expected, f"raw fetch saw {output.strip()} objects, expected {expected}"
            raw.append(elapsed)
            elapsed, output = timed([ANSIBLE_INVENTORY, "-i", str(config), "--list"], "list", pods)
            listing = output
            hosts = len(json.loads(output)["_meta"]["hostvars"])
            assert hosts == pods + int(pods * 0.2) + 50, f"inventory has {hosts} hosts"
            listed.append(elapsed)
            if run == 0 and pods >= 20_000:
                break  # one run of the largest --list keeps the benchmark under three minutes; raw still gets its runs
        while len(raw) < runs:
            raw.append(timed([PYTHON, "-c", RAW_FETCH, str(kubeconfig)], "raw", pods)[0])
        graph, _ = timed([ANSIBLE_INVENTORY, "-i", str(config), "--graph"], "graph", pods)
        floor = _floor(listing, pods, workdir) if pods <= 10_000 else float("nan")
        core, output = timed([PYTHON, "-c", CORE, str(kubeconfig), str(REPO / ".collections")], "core", pods)
        assert int(output) == pods + int(pods * 0.2) + 50
    figures = {"list": statistics.median(listed), "raw": statistics.median(raw), "graph": graph, "core": core, "floor": floor}
    figures.update({f"cpu_{label}": statistics.median(CPU_SECONDS[(label, pods)]) for label in ("list", "raw", "graph", "core")})
    figures["cpu_floor"] = statistics.median(CPU_SECONDS.get(("floor", pods), [float("nan")]))
    return figures


def main() -> None:
    """Measure, print a table and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 pods only")
    args = parser.parse_args()
    sizes = {1_000: 3} if args.quick else {1_000: 3, 10_000: 2, 20_000: 2}  # the 20,000 --list runs once
    with tempfile.TemporaryDirectory(prefix="zti-bench-") as directory:
        workdir = Path(directory)
        empty = workdir / "empty.yml"
        empty.write_text("all: {}\n")
        empty_s, _ = timed([ANSIBLE_INVENTORY, "-i", str(empty), "--list"])
        results = {pods: measure(pods, runs, workdir) for pods, runs in sizes.items()}
    print("wall seconds (CPU seconds of the process in parentheses)")
    print(f"{'pods':>7} {'--list':>15} {'raw fetch':>15} {'ratio':>13} {'--graph':>15} {'core':>15} {'static':>15}")
    for pods, figures in results.items():
        cells = [f"{figures[key]:.2f} ({figures['cpu_' + key]:.2f})" for key in ("list", "raw")]
        ratio = f"{figures['list'] / figures['raw']:.2f} ({figures['cpu_list'] / figures['cpu_raw']:.2f})"
        cells += [ratio] + [f"{figures[key]:.2f} ({figures['cpu_' + key]:.2f})" for key in ("graph", "core", "floor")]
        print(f"{pods:>7} {cells[0]:>15} {cells[1]:>15} {cells[2]:>13} {cells[3]:>15} {cells[4]:>15} {cells[5]:>15}")
    print(f"ansible-inventory --list on an empty inventory: {empty_s:.2f} s")
    fields = {f"pods_{pods}_s": f"{figures['list']:.2f}" for pods, figures in results.items()}
    fields.update({f"raw_{pods}_s": f"{figures['raw']:.2f}" for pods, figures in results.items()})
    fields.update({f"ratio_vs_raw_{pods}": f"{figures['list'] / figures['raw']:.2f}" for pods, figures in results.items()})
    fields.update({f"graph_{pods}_s": f"{figures['graph']:.2f}" for pods, figures in results.items()})
    fields.update({f"core_{pods}_s": f"{figures['core']:.2f}" for pods, figures in results.items()})
    fields.update({f"core_ratio_vs_raw_{pods}": f"{figures['core'] / figures['raw']:.2f}" for pods, figures in results.items()})
    fields.update({f"cpu_ratio_vs_raw_{pods}": f"{figures['cpu_list'] / figures['cpu_raw']:.2f}" for pods, figures in results.items()})
    fields.update({f"cpu_list_{pods}_s": f"{figures['cpu_list']:.2f}" for pods, figures in results.items()})
    fields.update({f"static_{pods}_s": f"{figures['floor']:.2f}" for pods, figures in results.items() if pods <= 10_000})
    fields.update({f"ratio_vs_static_{pods}": f"{figures['list'] / figures['floor']:.2f}"
                   for pods, figures in results.items() if pods <= 10_000})
    if 20_000 in results:
        fields["growth_20000_vs_10000"] = f"{results[20_000]['list'] / results[10_000]['list']:.2f}"
        fields["cpu_growth_20000_vs_10000"] = f"{results[20_000]['cpu_list'] / results[10_000]['cpu_list']:.2f}"
    fields["empty_inventory_s"] = f"{empty_s:.2f}"
    ordered: dict[str, str] = {key: fields[key] for key in ("pods_10000_s", "ratio_vs_raw_10000", "growth_20000_vs_10000") if key in fields}
    ordered.update(fields)
    print("RESULT inventory " + " ".join(f"{key}={value}" for key, value in ordered.items()))


if __name__ == "__main__":
    main()

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
* what ansible-core itself costs for the same inventory, with a minimal inventory plugin that
  reads our ``--list`` output from a local file (no API, no building) and adds it the way our
  plugin does: ``hosts only`` adds the same host names and nothing else, ``bare`` adds them
  with the same group memberships, ``same vars`` with the same groups and hostvars. ``hosts
  only`` is a floor no inventory plugin making these hosts can go under, ``bare`` one for any
  plugin with these groups too; ``--list`` minus ``same vars`` is what our plugin adds on top
  of ansible-core,
* optionally (``--with-kubernetes-core DIR``, at 1,000 and 10,000 pods) the old
  ``kubernetes.core.k8s`` inventory plugin against the same API, side by side (it was removed
  in kubernetes.core 6.0.0: DIR is a collections path holding an older kubernetes.core, e.g.
  3.2.0 from the ``ansible`` 10.x package). It makes one host per container, so its host count
  differs; it runs with ``--flush-cache`` as ansible-core 2.21 needs.

Goal: --list within 2x of the raw fetch at 10,000 pods; growth 20,000 vs 10,000 at most 2.2x.
The last line is machine-readable::

    RESULT inventory pods_10000_s=... ratio_vs_raw_10000=... growth_20000_vs_10000=... ...

Run: .venv/bin/python benchmarks/bench_inventory.py [--quick] [--with-kubernetes-core DIR]
(about 3 minutes; --quick: 1,000 pods only)

``--annotations`` measures instead what ``kubectl.kubernetes.io/last-applied-configuration``
costs: 10,000 pods (and their services and nodes) each carrying it, as every object created
with ``kubectl apply`` does, listed with the default ``drop_annotations`` and with
``drop_annotations: []``; it prints the size of the hostvars and the ``--list`` time of both::

    RESULT inventory_annotations hostvars_mb_dropped=... hostvars_mb_kept=... list_s_dropped=... list_s_kept=...

``--vulnerabilities`` measures what ``vulnerabilities: trivy`` costs: 10,000 pods, each owned by a
ReplicaSet with a trivy-operator VulnerabilityReport of 10 findings for its container (one more
paginated LIST and the join), listed with ``vulnerabilities: none`` and ``trivy``::

    RESULT inventory_vulnerabilities reports=... list_s_none=... list_s_trivy=... core_s_none=... core_s_trivy=...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / ".collections"), str(REPO)]

from lab.kubeapi import start_server, write_kubeconfig  # noqa: E402
from tests.unit.plugins.module_utils._kubernetes.k8s_factories import owned_by, synthetic, vulnerability_report  # noqa: E402

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


# A minimal inventory plugin: the hosts, groups and (optionally) hostvars of a JSON file, added as
# our plugin adds them (variables past ansible-core's compatibility proxy), to measure ansible-core alone.
FLOOR_PLUGIN = '''
from __future__ import annotations
DOCUMENTATION = """
name: zt_bench_floor
short_description: benchmark floor
description: Adds the hosts, groups and hostvars of a JSON model file.
options:
  plugin: {description: marker, required: true}
  model: {description: the model file, type: path}
  with_groups: {description: also add the groups, type: bool, default: true}
  with_vars: {description: also set the hostvars, type: bool, default: true}
"""
import json
from ansible.plugins.inventory import BaseInventoryPlugin

class InventoryModule(BaseInventoryPlugin):
    NAME = "zt_bench_floor"

    def verify_file(self, path):
        return path.endswith(".floor.yml")

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        with open(self.get_option("model"), encoding="utf-8") as stream:
            model = json.load(stream)
        set_variable = getattr(inventory, "__wrapped__", inventory).set_variable
        groups = model["groups"] if self.get_option("with_groups") else {}
        with_vars = self.get_option("with_vars")
        for group in groups:
            inventory.add_group(group)
        for host, hostvars in model["hosts"].items():
            inventory.add_host(host)
            if with_vars:
                for name, value in hostvars.items():
                    set_variable(host, name, value)
        for group, members in groups.items():
            for host in members:
                inventory.add_child(group, host)
'''


CPU_SECONDS: dict[tuple[str, int], list[float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], label: str = "", pods: int = 0, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall time of one process run from the repository root (so ansible.cfg applies), and its stdout.

    The process's CPU time (user + system) is recorded under (label, pods) too: on a shared machine
    it is much steadier than wall time, so the ratios are also reported on it.
    """
    cpu_before = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False, timeout=300,
                            env={**os.environ, **env} if env else None)
    elapsed = time.perf_counter() - started
    if label:
        CPU_SECONDS.setdefault((label, pods), []).append(_children_cpu() - cpu_before)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")
    return elapsed, result.stdout


def _plain(value: Any) -> Any:
    """``--list`` output back to plain data: ``{"__ansible_unsafe": s}`` is the untrusted string ``s``."""
    if isinstance(value, dict):
        if len(value) == 1 and "__ansible_unsafe" in value:
            return value["__ansible_unsafe"]
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _floors(listing: str, pods: int, workdir: Path) -> dict[str, float]:
    """``--list`` through the minimal plugin over our own output: ansible-core's cost for these hosts alone, with groups, with vars."""
    listed = json.loads(listing)
    hosts = _plain(listed["_meta"]["hostvars"])
    groups = {name: group.get("hosts", []) for name, group in listed.items() if name not in ("_meta", "all", "ungrouped")}
    model = workdir / f"model-{pods}.json"
    model.write_text(json.dumps({"hosts": hosts, "groups": groups}))
    plugins = workdir / "inventory_plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "zt_bench_floor.py").write_text(FLOOR_PLUGIN)
    env = {"ANSIBLE_INVENTORY_PLUGINS": str(plugins), "ANSIBLE_INVENTORY_ENABLED": "zt_bench_floor"}
    figures = {}
    for label, with_groups, with_vars in (("hostsonly", False, False), ("bare", True, False), ("samevars", True, True)):
        config = workdir / f"{label}-{pods}.floor.yml"
        config.write_text(f"plugin: zt_bench_floor\nmodel: {model}\nwith_groups: {with_groups}\nwith_vars: {with_vars}\n")
        elapsed, output = timed([ANSIBLE_INVENTORY, "-i", str(config), "--list"], label, pods, env=env)
        dumped = json.loads(output)
        listed_hosts = {host for name, group in dumped.items() if name != "_meta" for host in group.get("hosts", [])}
        if not with_groups:
            assert set(dumped) == {"_meta", "all", "ungrouped"}, f"{label}: unexpected groups"
        assert listed_hosts == set(hosts), f"{label}: {len(listed_hosts)} hosts, expected {len(hosts)}"
        assert len(dumped["_meta"]["hostvars"]) == (len(hosts) if with_vars else 0)
        figures[label] = elapsed
    return figures


def _kubernetes_core(collections: Path, kubeconfig: Path, pods: int, workdir: Path) -> tuple[float, int]:
    """The old ``kubernetes.core.k8s`` plugin's ``--list`` against the same API: wall seconds and its host count."""
    config = workdir / f"old{pods}.k8s.yml"
    config.write_text(f"plugin: kubernetes.core.k8s\nconnections:\n  - kubeconfig: {kubeconfig}\n")
    env = {"ANSIBLE_COLLECTIONS_PATH": f"{collections}:{REPO / '.collections'}", "ANSIBLE_DEPRECATION_WARNINGS": "false"}
    elapsed, output = timed([ANSIBLE_INVENTORY, "-i", str(config), "--list", "--flush-cache"], "kcore", pods, env=env)
    hosts = len(json.loads(output)["_meta"]["hostvars"])
    if hosts < pods:
        raise SystemExit(f"kubernetes.core.k8s listed {hosts} hosts for {pods} pods: did it fail to parse? (try it by hand: {config})")
    return elapsed, hosts


def measure(pods: int, runs: int, workdir: Path, kubernetes_core: Path | None) -> dict[str, float]:
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
                break  # one run of the largest --list keeps the benchmark near three minutes; raw still gets its runs
        while len(raw) < runs:
            raw.append(timed([PYTHON, "-c", RAW_FETCH, str(kubeconfig)], "raw", pods)[0])
        graph, _ = timed([ANSIBLE_INVENTORY, "-i", str(config), "--graph"], "graph", pods)
        core, output = timed([PYTHON, "-c", CORE, str(kubeconfig), str(REPO / ".collections")], "core", pods)
        assert int(output) == pods + int(pods * 0.2) + 50
        figures = {"list": statistics.median(listed), "raw": statistics.median(raw), "graph": graph, "core": core}
        figures.update(_floors(listing, pods, workdir))
        if kubernetes_core is not None and pods <= 10_000:
            figures["kcore"], kcore_hosts = _kubernetes_core(kubernetes_core, kubeconfig, pods, workdir)
            figures["kcore_hosts"] = float(kcore_hosts)
    for label in ("list", "raw", "graph", "core", "hostsonly", "bare", "samevars", "kcore"):
        if (label, pods) in CPU_SECONDS:
            figures[f"cpu_{label}"] = statistics.median(CPU_SECONDS[(label, pods)])
    return figures


def _last_applied(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with the annotation kubectl apply writes: the object as applied (no status), as JSON."""
    metadata = manifest["metadata"]
    applied = {"apiVersion": manifest.get("apiVersion"), "kind": manifest.get("kind"),
               "metadata": {key: metadata[key] for key in ("name", "namespace", "labels") if key in metadata}}
    if "spec" in manifest:
        applied["spec"] = manifest["spec"]
    annotations = metadata.setdefault("annotations", {})
    annotations["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(applied, sort_keys=True) + "\n"
    return manifest


def measure_annotations(pods: int, workdir: Path) -> dict[str, float]:
    """Hostvars size and --list time with last-applied-configuration dropped (the default) and kept."""
    objects = [_last_applied(manifest) if manifest.get("kind") in ("Pod", "Service", "Node") else manifest for manifest in synthetic(pods)]
    figures: dict[str, float] = {}
    with start_server(objects) as api:
        kubeconfig = write_kubeconfig(api, workdir / f"kubeconfig-a{pods}", "bench")
        for label, extra in (("dropped", ""), ("kept", "drop_annotations: []\n")):
            config = workdir / f"annotations-{label}-{pods}.kubernetes.yml"
            config.write_text(f"plugin: zerotrust.workloads.kubernetes\n{extra}connections:\n  - kubeconfig: {kubeconfig}\n")
            elapsed, output = timed([ANSIBLE_INVENTORY, "-i", str(config), "--list"], label, pods)
            hostvars = json.loads(output)["_meta"]["hostvars"]
            assert len(hostvars) == pods + int(pods * 0.2) + 50, f"inventory has {len(hostvars)} hosts"
            figures[f"hostvars_mb_{label}"] = len(json.dumps(hostvars, separators=(",", ":"))) / 1e6
            figures[f"list_s_{label}"] = elapsed
    return figures


CORE_VULNS = """
import sys
sys.path[:0] = sys.argv[3:]
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api, builder, naming, vulnerabilities
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import resolve_connections
connection = resolve_connections([{"kubeconfig": sys.argv[1]}], {})[0]
client = api.ClusterClient(connection)
snapshot = api.fetch_cluster(client, api.ALL_KINDS, {})
trivy = sys.argv[2] == "trivy"
if trivy:
    snapshot.update(vulnerabilities.fetch_reports(client, 500))
model = builder.build({connection.name: snapshot}, builder.BuildSettings(host_format=naming.DEFAULT_HOST_FORMAT, vulnerabilities=trivy))
print(len(model.hosts))
"""


def measure_vulnerabilities(pods: int, workdir: Path) -> dict[str, float]:
    """--list and the plugin's own work with ``vulnerabilities: none`` and ``trivy`` over one report per pod."""
    objects: list[dict[str, Any]] = []
    reports = 0
    for manifest in synthetic(pods):
        if manifest.get("kind") == "Pod":
            metadata = manifest["metadata"]
            replicaset = metadata["name"].rsplit("-", 1)[0]
            objects.append(owned_by(manifest, "ReplicaSet", replicaset))
            ids = tuple(f"CVE-2024-{(reports * 7 + finding) % 50000:05d}" for finding in range(10))
            objects.append(vulnerability_report(metadata["namespace"], "ReplicaSet", replicaset, "main", critical=reports % 2, high=3,
                                                medium=6 - reports % 2, low=1, ids=ids))
            reports += 1
        else:
            objects.append(manifest)
    figures: dict[str, float] = {"reports": float(reports)}
    with start_server(objects) as api:
        kubeconfig = write_kubeconfig(api, workdir / f"kubeconfig-v{pods}", "bench")
        # Twice each, alternating, the best kept: the first run of a process pays cold caches on a shared machine.
        for mode in ("none", "trivy", "none", "trivy"):
            config = workdir / f"vulnerabilities-{mode}-{pods}.kubernetes.yml"
            config.write_text(f"plugin: zerotrust.workloads.kubernetes\nvulnerabilities: {mode}\nconnections:\n"
                              f"  - kubeconfig: {kubeconfig}\n")
            elapsed, output = timed([ANSIBLE_INVENTORY, "-i", str(config), "--list"], f"vulns-{mode}", pods)
            hostvars = json.loads(output)["_meta"]["hostvars"]
            scanned = sum(1 for host in hostvars.values() if (host["workload"].get("vulnerabilities") or {}).get("scanned"))
            assert scanned == (pods if mode == "trivy" else 0), f"{scanned} scanned pods with vulnerabilities: {mode}"
            figures[f"list_s_{mode}"] = min(elapsed, figures.get(f"list_s_{mode}", elapsed))
            core, _ = timed([PYTHON, "-c", CORE_VULNS, str(kubeconfig), mode, str(REPO / ".collections"), str(REPO)])
            figures[f"core_s_{mode}"] = min(core, figures.get(f"core_s_{mode}", core))
    return figures


def _report_vulnerabilities(pods: int) -> None:
    with tempfile.TemporaryDirectory(prefix="zti-bench-") as directory:
        figures = measure_vulnerabilities(pods, Path(directory))
    print("RESULT inventory_vulnerabilities " + " ".join(f"{key}={value:.0f}" if key == "reports" else f"{key}={value:.2f}"
                                                         for key, value in figures.items()))


def _cell(figures: dict[str, float], key: str) -> str:
    return f"{figures[key]:.2f} ({figures['cpu_' + key]:.2f})" if key in figures else "-"


def main() -> None:
    """Measure, print a table and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 pods only")
    parser.add_argument("--annotations", action="store_true",
                        help="measure the hostvars with and without kubectl's last-applied-configuration at 10,000 pods")
    parser.add_argument("--vulnerabilities", action="store_true", help="measure vulnerabilities: trivy (one report per pod) at 10,000 pods")
    parser.add_argument("--with-kubernetes-core", metavar="DIR", type=Path,
                        help="a collections path with an older kubernetes.core (its k8s inventory plugin), measured beside ours")
    args = parser.parse_args()
    kubernetes_core = args.with_kubernetes_core.resolve() if args.with_kubernetes_core else None
    if kubernetes_core is not None and not (kubernetes_core / "ansible_collections/kubernetes/core/plugins/inventory/k8s.py").exists():
        parser.error(f"{kubernetes_core} holds no ansible_collections/kubernetes/core/plugins/inventory/k8s.py")
    if args.vulnerabilities:
        return _report_vulnerabilities(1_000 if args.quick else 10_000)
    if args.annotations:
        with tempfile.TemporaryDirectory(prefix="zti-bench-") as directory:
            figures = measure_annotations(1_000 if args.quick else 10_000, Path(directory))
        print("RESULT inventory_annotations " + " ".join(f"{key}={value:.2f}" for key, value in figures.items()))
        return
    sizes = {1_000: 3} if args.quick else {1_000: 3, 10_000: 2, 20_000: 2}  # the 20,000 --list runs once
    with tempfile.TemporaryDirectory(prefix="zti-bench-") as directory:
        workdir = Path(directory)
        empty = workdir / "empty.yml"
        empty.write_text("all: {}\n")
        empty_s, _ = timed([ANSIBLE_INVENTORY, "-i", str(empty), "--list"])
        results = {pods: measure(pods, runs, workdir, kubernetes_core) for pods, runs in sizes.items()}
    print("wall seconds (CPU seconds of the process in parentheses). hosts only / bare / same vars: ansible-core alone, a minimal")
    print("plugin adding our hosts from a file: without groups or vars / with our groups / with our groups and hostvars")
    columns = ("list", "raw", "ratio", "graph", "core", "hostsonly", "bare", "samevars", "kcore")
    titles = ("--list", "raw fetch", "ratio", "--graph", "core", "hosts only", "bare", "same vars", "kubernetes.core")
    print(f"{'pods':>7} " + " ".join(f"{title:>15}" for title in titles))
    for pods, figures in results.items():
        figures["ratio"], figures["cpu_ratio"] = figures["list"] / figures["raw"], figures["cpu_list"] / figures["cpu_raw"]
        print(f"{pods:>7} " + " ".join(f"{_cell(figures, key):>15}" for key in columns))
        if "kcore" in figures:
            ours = pods + int(pods * 0.2) + 50
            print(f"{'':>7} kubernetes.core.k8s made {figures['kcore_hosts']:.0f} hosts (one per container), ours {ours}")
    print(f"ansible-inventory --list on an empty inventory: {empty_s:.2f} s")
    fields: dict[str, str] = {}
    for pods, figures in results.items():
        fields.update({
            f"pods_{pods}_s": f"{figures['list']:.2f}",
            f"raw_{pods}_s": f"{figures['raw']:.2f}",
            f"ratio_vs_raw_{pods}": f"{figures['ratio']:.2f}",
            f"cpu_ratio_vs_raw_{pods}": f"{figures['cpu_ratio']:.2f}",
            f"cpu_list_{pods}_s": f"{figures['cpu_list']:.2f}",
            f"graph_{pods}_s": f"{figures['graph']:.2f}",
            f"core_{pods}_s": f"{figures['core']:.2f}",
            f"core_ratio_vs_raw_{pods}": f"{figures['core'] / figures['raw']:.2f}",
            f"hostsonly_{pods}_s": f"{figures['hostsonly']:.2f}",
            f"hostsonly_ratio_vs_raw_{pods}": f"{figures['hostsonly'] / figures['raw']:.2f}",
            f"cpu_hostsonly_ratio_vs_raw_{pods}": f"{figures['cpu_hostsonly'] / figures['cpu_raw']:.2f}",
            f"bare_{pods}_s": f"{figures['bare']:.2f}",
            f"cpu_bare_ratio_vs_raw_{pods}": f"{figures['cpu_bare'] / figures['cpu_raw']:.2f}",
            f"bare_ratio_vs_raw_{pods}": f"{figures['bare'] / figures['raw']:.2f}",
            f"samevars_{pods}_s": f"{figures['samevars']:.2f}",
            f"ratio_vs_samevars_{pods}": f"{figures['list'] / figures['samevars']:.2f}",
        })
        if "kcore" in figures:
            fields[f"kubernetes_core_{pods}_s"] = f"{figures['kcore']:.2f}"
            fields[f"kubernetes_core_ratio_vs_ours_{pods}"] = f"{figures['kcore'] / figures['list']:.2f}"
            fields[f"cpu_kubernetes_core_ratio_vs_ours_{pods}"] = f"{figures['cpu_kcore'] / figures['cpu_list']:.2f}"
    if 20_000 in results:
        big, small = results[20_000], results[10_000]
        fields["growth_20000_vs_10000"] = f"{big['list'] / small['list']:.2f}"
        fields["cpu_growth_20000_vs_10000"] = f"{big['cpu_list'] / small['cpu_list']:.2f}"
        fields["bare_growth_20000_vs_10000"] = f"{big['bare'] / small['bare']:.2f}"
        fields["samevars_growth_20000_vs_10000"] = f"{big['samevars'] / small['samevars']:.2f}"
        fields["samevars_cpu_growth_20000_vs_10000"] = f"{big['cpu_samevars'] / small['cpu_samevars']:.2f}"
    fields["empty_inventory_s"] = f"{empty_s:.2f}"
    ordered: dict[str, str] = {key: fields[key] for key in ("pods_10000_s", "ratio_vs_raw_10000", "growth_20000_vs_10000") if key in fields}
    ordered.update(fields)
    print("RESULT inventory " + " ".join(f"{key}={value}" for key, value in ordered.items()))


if __name__ == "__main__":
    main()

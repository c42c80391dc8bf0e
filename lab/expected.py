# SPDX-License-Identifier: GPL-3.0-or-later
"""The expected truth table a scenario's policy implies, from the collection's reachability oracle.

The scenario is turned into the hostvars the inventory would produce (``workload`` records of
contracts.md section 1, host names as the ``zerotrust.workloads.kubernetes`` plugin names them),
and every probe becomes a ``Flow``: pod and VM targets ``direct``, ``svc:`` targets via
``cluster_ip``, ``nodeport:`` targets via ``node_port``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from lab.errors import LabError
from lab.objects import container_id, object_uid, overlay_annotations
from lab.probes import BLOCKED, CONNECTED, PARTIAL, Probe
from lab.scenario import Pod, Scenario, resolve_target_port, static_target_port
from lab.system import REPO_ROOT
from lab.vulns import pod_summary

DEFAULT_API_ACCESS = "namespace = kube-system"


def pod_host(scenario: Scenario, namespace: str, name: str) -> str:
    """The inventory hostname of a pod."""
    return f"{name}.{namespace}.pod.{scenario.cluster.name}"


def service_host(scenario: Scenario, namespace: str, name: str) -> str:
    """The inventory hostname of a service."""
    return f"{name}.{namespace}.service.{scenario.cluster.name}"


def _addresses(v4: Any, v6: Any) -> list[str]:
    return [str(v4)] + ([str(v6)] if v6 is not None else [])


def _collection_on_path() -> None:
    """Make the collection importable from this tree (``make collection`` links .collections to it)."""
    collections = str(REPO_ROOT / ".collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)


def _tunnel_addresses(annotations: Mapping[str, str], pod_cidrs: list[str]) -> list[str]:
    """A node's tunnel addresses, derived by the inventory plugin's own code from the same annotations."""
    _collection_on_path()
    from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.records import (  # noqa: PLC0415
        flannel_tunnel_addresses,
    )

    return flannel_tunnel_addresses(annotations, pod_cidrs)


def scenario_hostvars(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """The hostvars the lab's inventory yields for the scenario (workload records per contracts.md)."""
    cluster = scenario.cluster.name
    hostvars: dict[str, dict[str, Any]] = {}
    for node in scenario.nodes:
        hostvars[node.name] = {
            "ansible_host": str(node.address),
            "group_names": ["k8s_nodes"],
            "workload": {
                "kind": "node",
                "name": node.name,
                "namespace": None,
                "cluster": cluster,
                "addresses": _addresses(node.address, node.ipv6),
                "labels": {"kubernetes.io/hostname": node.name, **node.labels},
                "annotations": overlay_annotations(scenario, node),
                "pod_cidrs": [str(node.pod_cidr)] + ([str(node.pod_cidr_v6)] if node.pod_cidr_v6 is not None else []),
                # flannel's VXLAN device address, as the inventory plugin derives it from the annotations.
                "tunnel_addresses": _tunnel_addresses(
                    overlay_annotations(scenario, node),
                    [str(node.pod_cidr)] + ([str(node.pod_cidr_v6)] if node.pod_cidr_v6 is not None else []),
                ),
            },
        }
    for pod in scenario.pods:
        node = scenario.node(pod.node)
        hostvars[pod_host(scenario, pod.namespace, pod.name)] = {
            "ansible_host": str(node.address),
            "group_names": ["k8s_pods"],
            "zt_enforce_host": node.name,
            "workload": {
                "kind": "pod",
                "name": pod.name,
                "namespace": pod.namespace,
                "cluster": cluster,
                "addresses": _addresses(pod.ip, pod.ipv6),
                "labels": dict(pod.labels),
                "annotations": {},
                "node": pod.node,
                "uid": object_uid(cluster, "Pod", pod.namespace, pod.name),
                "phase": "Running",
                "host_network": False,
                "container_ids": [container_id(cluster, pod)],
                "ports": [{"name": port.name, "port": port.port, "protocol": port.protocol} for port in pod.ports],
                # With findings the lab's inventory reads VulnerabilityReports (lab/vulns.py, `vulnerabilities: trivy`).
                **({"vulnerabilities": pod_summary(scenario, pod)} if scenario.vulnerabilities else {}),
            },
        }
    for service in scenario.services:
        endpoints: list[dict[str, Any]] = [
            {
                "addresses": [str(endpoint.address)],
                "node": None,
                "pod": None,
                "ready": True,
                "ports": [
                    {"name": port.name or "", "port": static_target_port(port), "protocol": port.protocol} for port in service.ports
                ],
            }
            for endpoint in service.static_endpoints
        ]
        for pod in scenario.service_endpoints(service):
            ports = []
            for port in service.ports:
                target = resolve_target_port(port, pod)
                if target is not None:
                    ports.append({"name": port.name or "", "port": target, "protocol": port.protocol})
            if ports:
                endpoints.append(
                    {"addresses": [str(pod.ip)], "node": pod.node, "pod": f"{pod.namespace}/{pod.name}", "ready": True, "ports": ports}
                )
        hostvars[service_host(scenario, service.namespace, service.name)] = {
            "group_names": ["k8s_services"],
            "workload": {
                "kind": "service",
                "name": service.name,
                "namespace": service.namespace,
                "cluster": cluster,
                "addresses": [str(service.cluster_ip)],
                "labels": dict(service.labels),
                "annotations": {},
                "type": service.type,
                "cluster_ips": [str(service.cluster_ip)],
                "external_ips": [],
                "load_balancer_ingress": [],
                "external_traffic_policy": service.external_traffic_policy,
                "selector": dict(service.selector),
                "ports": [
                    {"name": p.name, "port": p.port, "target_port": p.target_port, "node_port": p.node_port, "protocol": p.protocol}
                    for p in service.ports
                ],
                "endpoints": endpoints,
            },
        }
    for vm in scenario.vms:
        hostvars[vm.name] = {
            "ansible_host": str(vm.address),
            "group_names": ["vms"],
            "zt_addresses": _addresses(vm.address, vm.ipv6),
            "zt_labels": dict(vm.labels),
        }
    return hostvars


def _host_of(scenario: Scenario, ref: str) -> str:
    """``pod:NS/NAME`` / ``svc:NS/NAME`` / ``nodeport:NS/NAME`` / ``vm:NAME`` -> inventory hostname."""
    kind, _, name = ref.partition(":")
    if kind == "vm":
        return name
    namespace, _, object_name = name.partition("/")
    if kind == "pod":
        return pod_host(scenario, namespace, object_name)
    return service_host(scenario, namespace, object_name)


def api_access_pods(scenario: Scenario) -> list[Pod]:
    """The pods the policy's ``options.api_access`` query selects (default ``namespace = kube-system``).

    Evaluated with the collection's query language over the workloads the inventory yields; a
    policy without the option, or a lab without the collection importable, falls back to the default.
    """
    options = (scenario.policy or {}).get("options") or {}
    text = options.get("api_access", DEFAULT_API_ACCESS) if isinstance(options, Mapping) else DEFAULT_API_ACCESS
    fallback = [pod for pod in scenario.pods if pod.namespace == "kube-system"]
    if not isinstance(text, str):
        return fallback
    _collection_on_path()
    try:
        from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import (  # noqa: PLC0415
            ZeroTrustPolicyError,
        )
        from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import evaluate, parse_query  # noqa: PLC0415
        from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import (  # noqa: PLC0415
            workloads_from_hostvars,
        )
    except ImportError:
        return fallback
    try:
        query = parse_query(text)
        workloads, _ = workloads_from_hostvars(scenario_hostvars(scenario))
    except ZeroTrustPolicyError as exc:
        raise LabError(f"the scenario's options.api_access is invalid: {exc}") from None
    selected = {(workload.namespace, workload.name) for workload in workloads if workload.kind == "pod" and evaluate(query, workload)}
    return [pod for pod in scenario.pods if (pod.namespace, pod.name) in selected]


OPEN_POLICY: dict[str, Any] = {"filters": {}, "policies": {"absolute": [], "default": [], "catch_all": "allow"}}
"""No policy at all: what the oracle answers for it is kube-proxy's own behaviour (Local NodePorts)."""


def expected_open(scenario: Scenario, probes: list[Probe]) -> dict[str, str]:
    """The table before any policy: everything connects except where kube-proxy itself makes a path fail
    (a pod -> another node's Local NodePort whose reply bypasses that node; Local NodePorts on nodes
    without an endpoint drop outside traffic, which the probe does not count)."""
    return expected_from_policy(scenario, probes, OPEN_POLICY)


def expected_from_policy(scenario: Scenario, probes: list[Probe], policy: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The cell the policy implies for every probe; LabError when the oracle is missing or the policy is invalid."""
    _collection_on_path()
    try:
        from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import (  # noqa: PLC0415
            ZeroTrustPolicyError,
        )
        from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import (  # noqa: PLC0415
            Flow,
            Reachability,
        )
    except ImportError as exc:
        raise LabError(f"the policy oracle is not importable ({exc}); run `make collection`") from None
    policy = policy if policy is not None else scenario.policy
    if policy is None:
        raise LabError("the scenario has no policy section")
    try:
        oracle = Reachability.from_hostvars(dict(policy), scenario_hostvars(scenario))
        expected = {}
        for probe in probes:
            source = _host_of(scenario, probe.source)
            target_ref, _, port_text = probe.target.removesuffix("@ipv6").rpartition(":")
            port = int(port_text.split("/")[1])
            via = {"svc": "cluster_ip", "nodeport": "node_port"}.get(target_ref.partition(":")[0], "direct")
            verdict = oracle.check(
                Flow(source=source, destination=_host_of(scenario, target_ref), protocol=probe.protocol, port=port, via=via)
            )
            expected[probe.id] = CONNECTED if verdict.allowed else PARTIAL if verdict.partial else BLOCKED
    except ZeroTrustPolicyError as exc:
        raise LabError(f"the scenario's policy is invalid: {exc}") from None
    return expected

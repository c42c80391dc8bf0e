# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The codes of the compiler's warnings.

Every warning of a compile run is a text in the plan's ``warnings`` (for people; its wording may
change) and an entry ``{"code", "text", ...data}`` in the plan's ``findings`` (for the roles, the
plan step and the audit, which decide on the code, never on the text). docs/contracts.md lists them.
"""

from __future__ import annotations

WARNING_CODES: dict[str, str] = {
    "host_left_out": "an inventory host is not under policy (a name instead of an address, or a malformed record skipped)",
    "host_network": "pods on the host network are peers but not enforcement points",
    "unmatched_filter": "a policy's consumer or provider filter matches no workload (data: policy, side, filter)",
    "unknown_port_name": "a named port the provider does not have",
    "service_icmp": "ICMP toward a Service, which does not carry it",
    "service_port_missing": "a port the Service does not have",
    "target_port_unresolved": "a Service target port that does not resolve for an endpoint",
    "service_not_outside": "out-of-cluster consumers of a Service without NodePort, LoadBalancer ingress or external IP",
    "local_without_endpoint": "externalTrafficPolicy Local without a ready endpoint on a node of the inventory",
    "node_missing": "a pod whose node is not in the inventory (no node-to-pod allowance)",
    "pod_not_placed": "a pod whose rules cannot be applied (no zt_enforce_host, node not in the inventory)",
    "api_server_without_endpoints": "the API server's Service has no endpoints (no cluster allowance toward it)",
    "overlay_unknown": "a flannel backend the compiler does not know",
    "overlay_not_found": "no overlay shows on a cluster of several nodes",
    "partial_service": "a Service only partly reachable for a consumer (docs/semantics.md, 'Partial services')",
    "partial_service_analysis_limited": "the partial-service analysis stopped at its path budget",
    "compiler": "a warning without a more specific code",
}
"""Code -> what it means."""

UNMATCHED_FILTER = "unmatched_filter"
PARTIAL_SERVICE = "partial_service"

__all__ = ["PARTIAL_SERVICE", "UNMATCHED_FILTER", "WARNING_CODES"]

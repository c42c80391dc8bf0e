# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The audit report model: everything the HTML page shows, as one JSON-safe dictionary.

:func:`build_report` takes the policy, the inventory's hostvars, the ``allowlist``
check-mode results (effective rules and drift), the ``flows`` results (observed
connections) and optionally a measured truth table (``python -m lab probe --json``), and
returns the report. It is deterministic: the same inputs give the same bytes from
:func:`to_json`, so reports can be diffed between runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.partial import findings_of
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import PolicyRule
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Reachability
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.services import match_service_ports

from .classify import CLASSES, Classifier, conformance, policy_matrix, workload_label
from .errors import AuditError
from .observation import Connection, Record, merge
from .rules import sections_from_result

REPORT_VERSION = 1


def build_report(
    policy: Mapping[str, Any],
    hostvars: Mapping[str, Mapping[str, Any]],
    options: Optional[Mapping[str, Any]] = None,
    *,
    rule_results: Optional[Mapping[str, Mapping[str, Any]]] = None,
    flow_results: Optional[Mapping[str, Mapping[str, Any]]] = None,
    probe: Optional[Mapping[str, Any]] = None,
    title: str = "zerotrust.workloads audit",
    matrix_limit: int = 40,
) -> dict[str, Any]:
    """The whole report; raises AuditError (with the policy's problems) when it cannot be built."""
    try:
        reachability = Reachability.from_hostvars(policy, hostvars, options)
    except ZeroTrustPolicyError as error:
        raise AuditError(f"cannot audit: {error}") from error
    classifier = Classifier(reachability)
    filters = filter_preview(reachability)
    graph = policy_graph(reachability, filters)
    hosts = effective_rules(rule_results or {})
    flows = observed_flows(classifier, flow_results or {})
    if probe and isinstance(probe.get("cells"), list):
        table = conformance(classifier, probe["cells"])
        table["source"] = "measured by the probe"
        table["truncated"] = False
    else:
        table = policy_matrix(classifier, matrix_limit)
        table["source"] = "implied by the policy (nothing measured)"
    # The compiler's coded findings (partial services): the same analysis the enforce run warns with;
    # their texts join the warnings below.
    findings = findings_of(reachability)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "title": title,
        "catch_all": reachability.policy.catch_all,
        "filters": filters,
        "graph": graph,
        "hosts": hosts,
        "flows": flows,
        "conformance": table,
        "warnings": list(reachability.warnings),
        "findings": findings,
    }
    report["summary"] = summarise(report)
    return report


def filter_preview(reachability: Reachability) -> list[dict[str, Any]]:
    """For each named filter: its query, the workloads and addresses it matches, the policies using it."""
    policy = reachability.policy
    preview = []
    for name in sorted(policy.filters):
        found = reachability.index.matched.get(name, [])
        networks = list(policy.filters[name].networks or ())
        used_by = [rule.label for rule in policy.ordered_rules() if name in (rule.consumer, rule.provider)]
        preview.append(
            {
                "name": name,
                "query": policy.filters[name].text,
                "matches": [
                    {"host": workload.host, "label": workload_label(workload), "kind": workload.kind, "addresses": list(workload.addresses)}
                    for workload in sorted(found, key=lambda workload: workload.host)
                ],
                "networks": networks,
                "empty": not found and not networks,
                "used_by": used_by,
            }
        )
    return preview


def _nodeports(reachability: Reachability, rule: PolicyRule) -> list[str]:
    notes = []
    for workload in reachability.index.matched.get(rule.provider, []):
        if workload.kind != "service" or not workload.has_node_ports:
            continue
        for spec in rule.ports:
            if spec.protocol == "icmp":
                continue
            for port in match_service_ports(workload, spec):
                if port.node_port is not None:
                    notes.append(f"{workload.key} {port.protocol}/{port.port} -> NodePort {port.node_port}")
    return sorted(set(notes))


def policy_graph(reachability: Reachability, filters: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Filters as nodes, policies as labelled edges (ports, action, NodePorts of services)."""
    nodes = [
        {
            "id": item["name"],
            "matches": len(item["matches"]) + len(item["networks"]),
            "kinds": sorted({match["kind"] for match in item["matches"]} | ({"network"} if item["networks"] else set())),
            "empty": item["empty"],
        }
        for item in filters
    ]
    edges = []
    for rule in reachability.policy.ordered_rules():
        edges.append(
            {
                "policy": rule.label,
                "consumer": rule.consumer,
                "provider": rule.provider,
                "action": rule.action,
                "ports": [str(spec) for spec in rule.ports],
                "label": f"{rule.label}{' deny' if rule.action == 'deny' else ''} {', '.join(str(spec) for spec in rule.ports)}",
                "nodeports": _nodeports(reachability, rule),
            }
        )
    return {"nodes": nodes, "edges": edges}


def effective_rules(rule_results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per host, its own section and one per pod namespace, from ``allowlist`` check-mode results."""
    hosts = []
    for host in sorted(rule_results):
        result = rule_results[host]
        if not isinstance(result, Mapping) or result.get("skipped"):
            continue
        sections = sections_from_result(host, result)
        hosts.append({"host": host, "sections": sections})
    return hosts


def observed_flows(classifier: Classifier, flow_results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Merge every namespace's records, then classify; also counts per class and where we looked."""
    records: list[Record] = []
    legs: list[Connection] = []
    places: list[dict[str, Any]] = []
    for host in sorted(flow_results):
        result = flow_results[host]
        if not isinstance(result, Mapping) or result.get("skipped"):
            continue
        if result.get("failed") or result.get("unreachable"):
            places.append({"name": host, "records": 0, "observer": False, "error": str(result.get("msg") or "the module failed")})
            continue
        for namespace in result.get("namespaces") or []:
            name = str(namespace.get("name"))
            found = [Record.from_list(name, item) for item in namespace.get("records") or []]
            records.extend(found)
            legs.extend(Connection.from_list(item) for item in namespace.get("legs") or [])
            places.append(
                {
                    "name": name,
                    "records": len(found),
                    "observer": bool(namespace.get("observer")),
                    "error": str(namespace.get("error") or ""),
                }
            )
    flows = classifier.classify(merge(records, legs))
    counts = {name: sum(1 for flow in flows if flow["class"] == name) for name in CLASSES}
    counts["implicit"] = sum(1 for flow in flows if flow["implicit"])
    return {"items": flows, "counts": counts, "namespaces": sorted(places, key=lambda place: place["name"])}


def summarise(report: Mapping[str, Any]) -> dict[str, Any]:
    """The counts the play prints and a reader sees first."""
    sections = [section for host in report["hosts"] for section in host["sections"]]
    drift = [dict(item, section=section["name"]) for section in sections for item in section["drift"]]
    return {
        "filters": len(report["filters"]),
        "empty_filters": [item["name"] for item in report["filters"] if item["empty"]],
        "policies": len(report["graph"]["edges"]),
        "hosts": len(report["hosts"]),
        "sections": len(sections),
        "not_enforced": [section["name"] for section in sections if not section["enforced"] and not section["error"]],
        "rules": sum(len(section["rules"]) for section in sections),
        "drift": len(drift) + sum(1 for section in sections if section["reported_drift"] and not section["drift"]),
        "drift_items": drift,
        "section_errors": [f"{section['name']}: {section['error']}" for section in sections if section["error"]],
        "flows": dict(report["flows"]["counts"]),
        "conformance_differences": report["conformance"]["differences"],
        "conformance_measured": report["conformance"]["measured"],
        "partial_services": [finding["text"] for finding in report.get("findings", ()) if finding.get("code") == "partial_service"],
    }


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A short text summary for the play output."""
    summary = report["summary"]
    flows = summary["flows"]
    lines = [
        f"filters: {summary['filters']} ({len(summary['empty_filters'])} match nothing"
        + (f": {', '.join(summary['empty_filters'])}" if summary["empty_filters"] else "")
        + f"); policies: {summary['policies']}; catch-all: {report['catch_all']}",
        f"rules: {summary['rules']} live in {summary['sections']} namespaces on {summary['hosts']} hosts"
        + (f" ({len(summary['not_enforced'])} not enforced yet)" if summary["not_enforced"] else "")
        + f"; drift: {summary['drift']}",
        "flows: " + ", ".join(f"{flows[name]} {name}" for name in CLASSES) + f" ({flows['implicit']} by implicit allowances)",
    ]
    for text in summary["partial_services"][:10]:
        lines.append(f"  {text}")
    for item in summary["drift_items"][:10]:
        lines.append(f"  drift in {item['section']}: {item['kind']} {item['chain']}: {item['origin']}")
    for flow in [flow for flow in report["flows"]["items"] if flow["class"] in ("escaped", "partial", "rejected")][:10]:
        count = f"{flow['connections']} connections, {flow['answered']} answered"
        lines.append(
            f"  {flow['class']}: {flow['source']} -> {flow['destination']} {flow['protocol']}/{flow['port']} ({count}; {flow['reason']})"
        )
    if summary["conformance_measured"]:
        lines.append(f"conformance: {summary['conformance_differences']} measured cells differ from the policy")
    for error in summary["section_errors"]:
        lines.append(f"  could not read {error}")
    return lines


def to_json(report: Mapping[str, Any]) -> str:
    """Canonical JSON of a report (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(report, indent=2, sort_keys=True) + "\n"

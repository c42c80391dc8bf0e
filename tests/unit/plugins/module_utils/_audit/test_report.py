# SPDX-License-Identifier: GPL-3.0-or-later
"""The report model, its JSON twin, the text summary and the self-contained HTML page."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.errors import AuditError
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.html import render_html
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.report import build_report, summary_lines, to_json
from audit_seed import FIXTURES, WORDPRESS_POD

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
NODE1_FLOWS = {
    "namespaces": [
        {
            "name": "k8s-node1",
            "observer": True,
            "records": [
                ["tcp", "172.18.221.1", 40000, "172.18.221.11", 30358, "10.244.1.94", 80, "10.244.1.1", 40000, True],
                ["tcp", "172.18.221.99", 40001, "172.18.221.11", 30358, "10.244.1.94", 80, "10.244.1.1", 40001, True],
                ["tcp", "10.244.1.94", 40002, "10.244.3.18", 3306, "10.244.3.18", 3306, "10.244.1.94", 40002, True],
            ],
            "legs": [],
        },
        {
            "name": WORDPRESS_POD,
            "observer": True,
            "records": [["tcp", "10.244.1.1", 40000, "10.244.1.94", 80, None, None, None, None, True]],
            "legs": [],
        },
    ]
}


@pytest.fixture
def rules() -> dict[str, Any]:
    results = json.loads((FIXTURES / "allowlist_results.json").read_text())
    drifted = results["iptables"]["drifted"]
    drifted["results"][0]["target"] = WORDPRESS_POD
    host = {"target": "host", "namespace": "host", "drift": [], "changes": {"rules": {"added": [], "removed": [], "kept": []}, "sets": []}}
    return {"k8s-node1": {"results": [host, *drifted["results"]]}}


def test_report_sections(policy: dict[str, Any], hostvars: dict[str, Any], rules: dict[str, Any]) -> None:
    policy["filters"]["typo"] = "pod_name = wordpres"
    report = build_report(policy, hostvars, rule_results=rules, flow_results={"k8s-node1": NODE1_FLOWS})
    assert [f["name"] for f in report["filters"] if f["empty"]] == ["typo"]
    assert [m["label"] for m in next(f for f in report["filters"] if f["name"] == "wordpress")["matches"]] == ["svc:wordpress/wordpress"]
    edge = report["graph"]["edges"][0]
    assert (edge["consumer"], edge["provider"], edge["ports"], edge["nodeports"]) == (
        "haproxy",
        "wordpress",
        ["tcp/80"],
        ["wordpress/wordpress tcp/80 -> NodePort 30358"],
    )
    assert [(f["class"], f["source"], f["destination"]) for f in report["flows"]["items"]] == [
        ("permitted", "pod:wordpress/wordpress-6dfdd9f64f-d75j2", "pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4"),
        ("permitted", "vm:haproxy", "nodeport:wordpress/wordpress"),
        ("escaped", "vm:outsider", "nodeport:wordpress/wordpress"),
    ]
    pod_section = report["hosts"][0]["sections"][1]
    assert pod_section["name"] == WORDPRESS_POD
    assert [(d["kind"], d["policy"]) for d in pod_section["drift"]] == [("missing", "default[0]")]
    summary = report["summary"]
    assert (summary["drift"], summary["empty_filters"], summary["flows"]["escaped"]) == (1, ["typo"], 1)
    lines = summary_lines(report)
    assert lines[0] == "filters: 5 (1 match nothing: typo); policies: 2; catch-all: deny"
    assert f"  drift in {WORDPRESS_POD}: missing IPv4 filter ZT-INGRESS: default[0] haproxy->wordpress tcp/80 via nodeport" in lines


def test_report_json_is_deterministic(policy: dict[str, Any], hostvars: dict[str, Any], rules: dict[str, Any]) -> None:
    first = to_json(build_report(policy, hostvars, rule_results=rules, flow_results={"k8s-node1": NODE1_FLOWS}))
    second = to_json(
        build_report(policy, dict(reversed(list(hostvars.items()))), rule_results=rules, flow_results={"k8s-node1": NODE1_FLOWS})
    )
    assert first == second
    assert json.loads(first)["version"] == 1


def test_invalid_policy_is_an_audit_error(hostvars: dict[str, Any]) -> None:
    with pytest.raises(AuditError, match=r"cannot audit: the policy has 1 problem:\n  - policies: missing"):
        build_report({"filters": {}}, hostvars)


def test_html_is_self_contained_and_escapes_hostile_names(policy: dict[str, Any], hostvars: dict[str, Any], rules: dict[str, Any]) -> None:
    hostvars[HOSTILE] = {"zt_addresses": ["172.18.221.77"], "zt_labels": {"role": HOSTILE}}
    policy["filters"]["evil"] = "label.role exists"
    policy["policies"]["default"].append({"consumer": "evil", "provider": "db", "ports": ["tcp/3306"]})
    flows = {
        "k8s-node1": {
            "namespaces": [
                *NODE1_FLOWS["namespaces"],
                {
                    "name": HOSTILE,
                    "records": [["tcp", "172.18.221.77", 1, "10.244.3.18", 3306, "10.244.3.18", 3306, "172.18.221.77", 1, True]],
                    "legs": [],
                },
            ]
        }
    }
    report = build_report(
        policy,
        hostvars,
        rule_results=rules,
        flow_results=flows,
        probe={"cells": [{"source": f"vm:{HOSTILE}", "target": "pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4:tcp/3306", "result": "X"}]},
    )
    page = render_html(report)
    assert "<script" not in page and "<img" not in page and "onerror=alert(2)>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"vm:{HOSTILE}" in json.loads(to_json(report))["conformance"]["rows"]
    # nothing to fetch: no scripts, links, images or fonts; only the SVG namespace URI and in-page references
    assert re.findall(r"(?:src|href)\s*=", page.replace("src=x", "")) == []
    assert re.findall(r"https?://[^\"']+", page) == ["http://www.w3.org/2000/svg"]
    assert set(re.findall(r"url\(([^)]*)\)", page)) == {"#arrow"}
    for section in ('id="summary"', 'id="policy-graph"', 'id="matrix"', 'id="hosts"', 'id="flows"', 'id="filters"'):
        assert section in page
    assert "Content-Security-Policy" in page


def test_html_renders_colour_classes(policy: dict[str, Any], hostvars: dict[str, Any]) -> None:
    probe = {
        "cells": [
            {"source": "vm:haproxy", "target": "nodeport:wordpress/wordpress:tcp/80", "result": "."},
            {"source": "vm:outsider", "target": "nodeport:wordpress/wordpress:tcp/80", "result": "."},
            {"source": "vm:outsider", "target": "vm:haproxy:tcp/80", "result": "X"},
        ]
    }
    page = render_html(build_report(policy, hostvars, probe=probe))
    assert page.count('class="c-allow"') == 1
    assert page.count('class="c-diff"') == 1
    assert page.count('class="c-deny"') == 1
    assert "Differences (1)" in page

# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit_report filter: the report, its JSON and HTML text, the summary; errors as AnsibleFilterError."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.zerotrust.workloads.plugins.filter.audit_report import FilterModule

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils" / "_audit"))
from audit_seed import seed_hostvars, seed_policy


def test_filter_returns_report_json_html_summary() -> None:
    audit_report = FilterModule().filters()["audit_report"]
    result = audit_report(seed_policy(), seed_hostvars(), None, title="lab audit", matrix_limit=5)
    assert sorted(result) == ["html", "json", "report", "summary"]
    assert json.loads(result["json"]) == result["report"]
    assert result["html"].startswith("<!DOCTYPE html>") and "<title>lab audit</title>" in result["html"]
    assert result["summary"][0] == "filters: 4 (0 match nothing); policies: 2; catch-all: deny"


def test_filter_turns_policy_errors_into_filter_errors() -> None:
    audit_report = FilterModule().filters()["audit_report"]
    with pytest.raises(AnsibleFilterError, match=r"zerotrust.workloads.audit_report: cannot audit: the policy has 1 problem"):
        audit_report({"filters": {"a": "kind = pod"}}, seed_hostvars())

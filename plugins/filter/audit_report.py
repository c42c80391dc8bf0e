# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""zerotrust.workloads.audit_report: policy + inventory + what the hosts returned -> the audit report.

Documentation: audit_report.yml beside this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from ansible.errors import AnsibleFilterError
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.errors import AuditError
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.html import render_html
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.report import build_report, summary_lines, to_json


def audit_report(
    policy: Any,
    hostvars: Any,
    options: Optional[dict[str, Any]] = None,
    *,
    rules: Optional[dict[str, Any]] = None,
    flows: Optional[dict[str, Any]] = None,
    probe: Optional[dict[str, Any]] = None,
    title: str = "zerotrust.workloads audit",
    matrix_limit: int = 40,
) -> dict[str, Any]:
    """``{"report": dict, "json": text, "html": text, "summary": [lines]}``."""
    try:
        report = build_report(
            policy,
            hostvars,
            options,
            rule_results=rules,
            flow_results=flows,
            probe=probe or None,
            title=title,
            matrix_limit=int(matrix_limit),
        )
    except AuditError as error:
        raise AnsibleFilterError(f"zerotrust.workloads.audit_report: {error}") from error
    return {"report": report, "json": to_json(report), "html": render_html(report), "summary": summary_lines(report)}


class FilterModule:
    """The audit_report filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        """Filter name -> function."""
        return {"audit_report": audit_report}

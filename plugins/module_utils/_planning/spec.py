# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The argument spec of ``zerotrust.workloads.plan`` (the action validates with it; plugins/modules/plan.py documents it)."""

from __future__ import annotations

from typing import Any

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "policy": {"type": "dict", "default": {}},
    "policy_file": {"type": "str", "default": ""},
    "implicit": {"type": "dict", "default": {}},
    "management_addresses": {"type": "list", "elements": "str", "default": []},
    "dns_service": {"type": "str", "default": ""},
    "upstream_dns": {"type": "list", "elements": "str", "default": []},
    "api_access": {"type": "str", "default": ""},
    "overlay": {"type": "raw", "default": ""},
    "scope": {"type": "str", "default": ""},
    "discover_management": {"type": "bool", "default": True},
    "allow_unmatched_filters": {"type": "bool", "default": False},
    "fail_on_partial_services": {"type": "bool", "default": False},
    "allow_empty_kubernetes": {"type": "bool", "default": False},
    # allowlist options the plan hands to every host; unset, the module's own defaults (or the task's) apply.
    "run": {"type": "dict", "default": {}},
    "variables_prefix": {"type": "str", "default": ""},
    "resume": {"type": "str"},
    "discover_from": {"type": "str"},
    "discard": {"type": "str"},
}
"""Keep in step with the DOCUMENTATION of plugins/modules/plan.py (tests/unit/plugins/action/test_plan.py compares them)."""

MUTUALLY_EXCLUSIVE = [["resume", "discard"]]

__all__ = ["ARGUMENT_SPEC", "MUTUALLY_EXCLUSIVE"]

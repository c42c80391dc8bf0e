# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Effective rules: live rules mapped to the policies that produced them, and drift.

The ``allowlist`` module in check mode returns, per namespace, its structured plan
(``changes``: the rules added, removed and kept with their chain, hash and origin; see
the module's RETURN and docs/contracts.md, section 4) and its own drift lines. The
backend that compared live and intended rules by hash is the only place that reads
the firewall's text: this module reads that data. ``origin`` names the policy
(``default[0] haproxy->wordpress tcp/80``, ``implicit:loopback``, ``catch_all``), which
is how drift is explained.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import RuleEntry

_POLICY_LABEL = re.compile(r"^(absolute|default)\[\d+\]")


def rule_policy(rule: RuleEntry) -> str:
    """The policy that produced the rule: ``default[0]``, ``implicit:dns``, ``catch_all``... or ``not ours``."""
    return policy_of(rule.origin) if rule.hash else "not ours"


def rule_description(rule: RuleEntry) -> str:
    """``<hash> <origin>`` for our rules, the rule's text for others."""
    return f"{rule.hash} {rule.origin}".strip() if rule.hash else rule.text


def policy_of(origin: str) -> str:
    """The policy label at the start of an origin (``default[0] a->b tcp/80`` -> ``default[0]``)."""
    match = _POLICY_LABEL.match(origin)
    if match:
        return match.group(0)
    return origin.split(" ", 1)[0] if origin else "?"


def planned_rules(plan: Mapping[str, Any], kind: str) -> list[RuleEntry]:
    """``changes.rules.<kind>`` (``added``, ``removed`` or ``kept``) of one module result entry."""
    rules = plan.get("rules")
    items = rules.get(kind) if isinstance(rules, Mapping) else None
    found = [RuleEntry.from_dict(item) for item in items] if isinstance(items, list) else []
    return [rule for rule in found if rule is not None]


def drift_items(missing: Sequence[RuleEntry], extra: Sequence[RuleEntry]) -> list[dict[str, Any]]:
    """The plan's added (missing live) and removed (extra live) rules as drift, each with its chain, origin and policy.

    A missing and an extra rule with the same chain and origin are one *modified* rule
    (changed by hand, or by a policy change not enforced yet).
    """
    unpaired = list(extra)
    drift: list[dict[str, Any]] = []
    for rule in missing:
        partner = next((other for other in unpaired if other.hash and other.chain == rule.chain and other.origin == rule.origin), None)
        if partner is not None:
            unpaired.remove(partner)
            drift.append(_drift("modified", rule, f"live: {rule_description(partner)}"))
        else:
            drift.append(_drift("missing", rule, ""))
    drift.extend(_drift("extra", rule, "") for rule in unpaired)
    return sorted(drift, key=lambda item: (item["chain"], item["kind"], item["origin"], item["rule"]))


def _drift(kind: str, rule: RuleEntry, detail: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "chain": rule.chain,
        "origin": rule.origin,
        "policy": rule_policy(rule),
        "rule": rule_description(rule),
        "detail": detail,
    }


def section(
    name: str, kind: str, plan: Optional[Mapping[str, Any]], *, reported_drift: Sequence[str] = (), error: str = ""
) -> dict[str, Any]:
    """One enforcement point's section of the report: live rules and drift.

    ``plan`` is the module's structured plan for the namespace, its ``changes`` (``None`` when it returned
    none); ``reported_drift`` are the module's own drift lines, kept beside the mapped ones
    because they also cover sets and jumps, which carry no origin. A namespace with none of
    our rules is *not enforced* (before the first enforce run), not drifting: its drift is
    empty and ``enforced`` is false.
    """
    added = planned_rules(plan, "added") if plan is not None else []
    removed = planned_rules(plan, "removed") if plan is not None else []
    kept = planned_rules(plan, "kept") if plan is not None else []
    live = sorted((rule for rule in (*kept, *removed) if rule.hash), key=lambda rule: (rule.chain, rule.position))
    intended = len(kept) + len(added) if plan is not None else None
    enforced = bool(live) or not intended
    return {
        "name": name,
        "kind": kind,
        "rules": [{"chain": rule.chain, "origin": rule.origin, "policy": rule_policy(rule), "hash": rule.hash} for rule in live],
        "drift": drift_items(added, removed) if plan is not None and enforced else [],
        "enforced": enforced,
        "reported_drift": [str(line) for line in reported_drift],
        "intended_rules": intended,
        "error": error,
    }


def sections_from_result(host: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Report sections from one ``allowlist`` check-mode result: its ``results`` entries,
    ``target: host`` for the host itself and the pod's inventory hostname for a pod."""
    if result.get("unreachable") or (result.get("failed") and not result.get("results")):
        return [section(host, "host", None, error=str(result.get("msg") or "the allowlist module failed"))]
    sections: list[dict[str, Any]] = []
    for entry in result.get("results") or []:
        if not isinstance(entry, Mapping):
            continue
        is_pod = entry.get("target") != "host"
        name = str(entry.get("target")) if is_pod else host
        kind = "pod" if is_pod else "host"
        if entry.get("skipped"):
            sections.append(section(name, kind, None, error=f"not read: {entry.get('reason') or 'skipped'}"))
            continue
        plan = entry.get("changes")
        error = str(entry.get("msg") or "the allowlist module failed here") if entry.get("failed") else ""
        sections.append(
            section(name, kind, plan if isinstance(plan, Mapping) else None, reported_drift=_lines(entry.get("drift")), error=error)
        )
    return sections


def _lines(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return []

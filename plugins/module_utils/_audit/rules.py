# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Effective rules: live rules mapped to the policies that produced them, and drift.

The ``allowlist`` module in check and diff mode reads our objects back and returns them
as text (``before``: live, ``after``: intended) in its backend's diff format. Every rule
we write carries ``zt:<16 hex> <origin>`` in its comment, whatever the backend, so this
module needs no backend knowledge: it finds those comments, notes the chain each sits in
(``-A ZT-INGRESS`` for iptables, ``chain ingress`` for nftables) and compares live and
intended rules by hash. ``origin`` names the policy (``default[0] haproxy->wordpress
tcp/80``, ``implicit:loopback``, ``catch_all``), which is how drift is explained.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

_COMMENT = re.compile(r"zt:([0-9a-f]{16})(?:[ ]+([^\"\n]*))?")
_FINGERPRINT = re.compile(r"\s*fp=[0-9a-f]+\s*$")
# nftables marks a chain's last rule with ``~<chain fingerprint>`` before the origin.
_NFT_FINGERPRINT = re.compile(r"^~[0-9a-f]+\s+")
_IPTABLES_RULE = re.compile(r"^-A (\S+) ")
_NFT_CHAIN = re.compile(r"^\s*chain (\S+)")
_SECTION = re.compile(r"^# (IPv[46] \S+)")
_POLICY_LABEL = re.compile(r"^(absolute|default)\[\d+\]")


@dataclasses.dataclass(frozen=True)
class LiveRule:
    """One rule of ours as the diff text shows it."""

    chain: str
    hash: str
    origin: str
    text: str

    @property
    def policy(self) -> str:
        """The policy that produced the rule: ``default[0]``, ``implicit:dns``, ``catch_all``..."""
        return policy_of(self.origin)


def policy_of(origin: str) -> str:
    """The policy label at the start of an origin (``default[0] a->b tcp/80`` -> ``default[0]``)."""
    match = _POLICY_LABEL.match(origin)
    if match:
        return match.group(0)
    return origin.split(" ", 1)[0] if origin else "?"


def parse_rules(text: str) -> list[LiveRule]:
    """Our rules, in order, from an iptables-style or nftables-style diff text."""
    rules: list[LiveRule] = []
    section = ""
    chain = ""
    for line in text.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1)
            continue
        nft_chain = _NFT_CHAIN.match(line)
        if nft_chain:
            chain = nft_chain.group(1)
            continue
        iptables_rule = _IPTABLES_RULE.match(line.strip())
        if iptables_rule:
            chain = f"{section} {iptables_rule.group(1)}".strip()
        comment = _COMMENT.search(line)
        if comment is None:
            continue
        origin = _NFT_FINGERPRINT.sub("", _FINGERPRINT.sub("", (comment.group(2) or "").strip()))
        rules.append(LiveRule(chain=chain or "?", hash=comment.group(1), origin=origin, text=line.strip()))
    return rules


def find_drift(live: Sequence[LiveRule], intended: Sequence[LiveRule]) -> list[dict[str, Any]]:
    """Missing, extra and modified rules, each with its chain, origin and policy.

    Rules are compared by hash per chain (counting duplicates). A missing and an extra
    rule with the same chain and origin are one *modified* rule (changed by hand).
    """
    live_count = collections.Counter((rule.chain, rule.hash) for rule in live)
    intended_count = collections.Counter((rule.chain, rule.hash) for rule in intended)
    by_key = {(rule.chain, rule.hash): rule for rule in [*intended, *live]}
    missing = [by_key[key] for key in sorted((intended_count - live_count).elements())]
    extra = [by_key[key] for key in sorted((live_count - intended_count).elements())]
    drift: list[dict[str, Any]] = []
    for rule in missing:
        partner = next((other for other in extra if other.chain == rule.chain and other.origin == rule.origin), None)
        if partner is not None:
            extra.remove(partner)
            drift.append(_drift("modified", rule, f"live: {partner.text}"))
        else:
            drift.append(_drift("missing", rule, ""))
    drift.extend(_drift("extra", rule, "") for rule in extra)
    return sorted(drift, key=lambda item: (item["chain"], item["kind"], item["origin"]))


def _drift(kind: str, rule: LiveRule, detail: str) -> dict[str, Any]:
    return {"kind": kind, "chain": rule.chain, "origin": rule.origin, "policy": rule.policy, "rule": rule.text, "detail": detail}


def section(
    name: str, kind: str, before: str, after: Optional[str], *, reported_drift: Sequence[str] = (), error: str = ""
) -> dict[str, Any]:
    """One enforcement point's section of the report: live rules and drift.

    ``after`` is the intended text (``None`` when the module did not return one);
    ``reported_drift`` are the module's own drift lines, kept beside the mapped ones
    because they also cover sets and jumps, which carry no origin. A namespace with none of
    our rules is *not enforced* (before the first enforce run), not drifting: its drift is
    empty and ``enforced`` is false.
    """
    live = parse_rules(before)
    intended = parse_rules(after) if after is not None else None
    enforced = bool(live) or not intended
    return {
        "name": name,
        "kind": kind,
        "rules": [
            {"chain": rule.chain, "origin": rule.origin, "policy": rule.policy, "hash": rule.hash, "text": rule.text} for rule in live
        ],
        "drift": find_drift(live, intended) if intended is not None and enforced else [],
        "enforced": enforced,
        "reported_drift": [str(line) for line in reported_drift],
        "intended_rules": len(intended) if intended is not None else None,
        "error": error,
    }


def sections_from_result(host: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Report sections from one ``allowlist`` check-and-diff-mode result: its ``results``
    entries, ``target: host`` for the host itself and the pod's inventory hostname for a pod."""
    if result.get("unreachable") or (result.get("failed") and not result.get("results")):
        return [section(host, "host", "", None, error=str(result.get("msg") or "the allowlist module failed"))]
    sections: list[dict[str, Any]] = []
    for entry in result.get("results") or []:
        if not isinstance(entry, Mapping):
            continue
        is_pod = entry.get("target") != "host"
        name = str(entry.get("target")) if is_pod else host
        kind = "pod" if is_pod else "host"
        if entry.get("skipped"):
            sections.append(section(name, kind, "", None, error=f"not read: {entry.get('reason') or 'skipped'}"))
            continue
        diff = entry.get("diff")
        texts: Mapping[str, Any] = diff if isinstance(diff, Mapping) else {}
        error = str(entry.get("msg") or "the allowlist module failed here") if entry.get("failed") else ""
        before, after = _text(texts.get("before")), _optional_text(texts.get("after"))
        sections.append(section(name, kind, before, after, reported_drift=_lines(entry.get("drift")), error=error))
    return sections


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _optional_text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _lines(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return []

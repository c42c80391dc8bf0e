# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""A workload's vulnerability summary (``workload.vulnerabilities``) and the ``vuln.*`` query attributes.

The inventory plugin's ``vulnerabilities: trivy`` option fills the record from trivy-operator's
VulnerabilityReports (docs/vulnerabilities.md); anything else may write it too (a VM's scanner,
a static file). The record is validated here, so a malformed one names the host and the field
instead of silently matching nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import WorkloadError

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
"""The counted severities, as trivy names them (lower case)."""
COUNT_ATTRIBUTES = tuple(f"vuln.{severity}" for severity in SEVERITIES)
ID_ATTRIBUTE = "vuln.id"
ATTRIBUTES = (*COUNT_ATTRIBUTES, ID_ATTRIBUTE)
"""The query attributes this module answers: numbers per severity, and the vulnerability IDs."""


@dataclasses.dataclass(frozen=True)
class Vulnerabilities:
    """Counts per severity (summed over a pod's containers) and the sorted, unique vulnerability IDs."""

    counts: Mapping[str, int]
    ids: tuple[str, ...] = ()


def from_record(value: Any, where: str) -> Optional[Vulnerabilities]:
    """Validate ``workload.vulnerabilities``; None when absent.

    Counts must be whole numbers >= 0 (a missing severity counts 0); ``ids`` a list of strings.
    ``where`` names the host for the error (``host X: workload.vulnerabilities``).
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise WorkloadError(f"{where} must be a mapping of counts per severity and ids, got {type_phrase(value)}")
    counts: dict[str, int] = {}
    for severity in SEVERITIES:
        count = value.get(severity, 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise WorkloadError(f"{where}.{severity} must be a whole number >= 0, got {count!r}")
        counts[severity] = count
    ids = value.get("ids") or []
    if not isinstance(ids, (list, tuple)) or not all(isinstance(item, str) for item in ids):
        raise WorkloadError(f"{where}.ids must be a list of vulnerability IDs (strings), got {type_phrase(ids)}")
    return Vulnerabilities(counts=counts, ids=tuple(sorted(set(ids))))


def attribute_values(attribute: str, found: Optional[Vulnerabilities]) -> Optional[tuple[str, ...]]:
    """The values of a ``vuln.*`` attribute as query text; None for a workload without a summary.

    Counts are given as decimal text, which the numeric comparisons (``vuln.critical > 0``) read
    back as numbers; ``vuln.id`` gives every ID, so ``=`` tests membership and ``contains`` a part
    of any ID (``vuln.id contains CVE-2024-``).
    """
    if found is None:
        return None
    if attribute == ID_ATTRIBUTE:
        return found.ids
    return (str(found.counts[attribute[len("vuln.") :]]),)

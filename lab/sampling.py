# SPDX-License-Identifier: GPL-3.0-or-later
"""The sampled probe: when the matrix is too large to measure whole, a fixed seeded subset of it.

At 2,000 pods the matrix has about four million cells; measuring them all would take hours. The
sample is chosen without building the whole matrix:

- a fixed random set of source rows (``rows``, seeded), every VM among them, plus, for every
  policy rule, two of its consumers when none was drawn (so every rule is exercised);
- in each chosen row, ``per_row`` random targets (the "random" cells, mostly blocked);
- for every policy rule, each chosen consumer row gets the rule's provider columns (up to
  ``per_rule`` of them, drawn at random when there are more): the cells the policy names.

The same scenario, policy and seed give the same cells. The expected value of each sampled cell
comes from the same oracle as the full table (lab/expected.py), asked for those cells only.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.probes import Probe, Target, in_matrix, probe_targets, sources
from lab.scenario import Scenario

FULL_MATRIX_MAX_CELLS = 20_000
"""Up to this many cells the probe measures the whole matrix; above it, a sample."""
ROWS = 40
PER_ROW = 50
PER_RULE = 12
MAX_ATTEMPTS = 4
"""A sampled Service cell is tried at most this often per node (the full table tries 4x its endpoints)."""


@dataclass(frozen=True)
class Sample:
    """The sampled cells and how they were chosen (for the table's title and the JSON)."""

    probes: list[Probe]
    total_cells: int
    random_cells: int
    policy_cells: int
    seed: int
    max_attempts: int = MAX_ATTEMPTS

    def describe(self) -> str:
        """One line: sampled, how many cells of how many, and how they were chosen."""
        return (
            f"sampled: {len(self.probes)} of {self.total_cells} cells (seed {self.seed}; "
            f"{self.random_cells} at random, {self.policy_cells} named by the policy's rules)"
        )


def total_cells(scenario: Scenario, targets: list[Target]) -> int:
    """How many cells the whole matrix has: counted per row from what ``in_matrix`` leaves out, not built."""
    owned: dict[str | None, int] = {}
    owned_v4: dict[str | None, int] = {}
    for target in targets:
        owned[target.owner] = owned.get(target.owner, 0) + 1
        if not target.id.endswith("@ipv6"):
            owned_v4[target.owner] = owned_v4.get(target.owner, 0) + 1
    pods_only = sum(1 for target in targets if target.pods_only)
    ipv6_targets = sum(1 for target in targets if target.id.endswith("@ipv6"))
    total = 0
    for source in sources(scenario):
        probe_v6 = ipv6_targets == 0 or in_matrix(scenario, source, Target("x@ipv6", "tcp", (), None, False))
        row = len(targets) - (0 if probe_v6 else ipv6_targets)
        row -= owned.get(source, 0) if probe_v6 else owned_v4.get(source, 0)
        row -= 0 if source.startswith("pod:") else pods_only
        total += row
    return total


def _refs(workload: Any) -> tuple[list[str], list[str]]:
    """(probe source, target-id prefixes) of one workload of the collection's model."""
    if workload.kind == "pod":
        key = f"{workload.namespace}/{workload.name}"
        return [f"pod:{key}"], [f"pod:{key}:"]
    if workload.kind == "service":
        key = f"{workload.namespace}/{workload.name}"
        return [], [f"svc:{key}:", f"nodeport:{key}:"]
    if workload.kind == "vm":
        return [f"vm:{workload.host}"], [f"vm:{workload.host}:"]
    return [], []


def policy_pairs(policy: Mapping[str, Any], hostvars: Mapping[str, Mapping[str, Any]]) -> list[tuple[list[str], list[str]]]:
    """For every rule of the policy (absolute, then default): (consumer sources, provider target-id prefixes).

    The filters are evaluated by the collection's query language over the inventory's workloads,
    as the compiler evaluates them. LabError when a filter does not parse.
    """
    from lab.expected import _collection_on_path  # noqa: PLC0415 - the collection is importable once linked

    _collection_on_path()
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError  # noqa: PLC0415
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import evaluate, parse_query  # noqa: PLC0415
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import workloads_from_hostvars  # noqa: PLC0415

    filters = policy.get("filters") or {}
    policies = policy.get("policies") or {}
    rules = [*(policies.get("absolute") or []), *(policies.get("default") or [])]
    try:
        workloads, _ = workloads_from_hostvars(hostvars)
        selected: dict[str, list[Any]] = {}

        def select(name: str) -> list[Any]:
            if name not in selected:
                query = parse_query(str(filters.get(name, name)))
                selected[name] = [workload for workload in workloads if evaluate(query, workload)]
            return selected[name]

        pairs = []
        for rule in rules:
            consumers = [ref for workload in select(str(rule["consumer"])) for ref in _refs(workload)[0]]
            providers = [prefix for workload in select(str(rule["provider"])) for prefix in _refs(workload)[1]]
            pairs.append((consumers, providers))
    except (ZeroTrustPolicyError, KeyError, TypeError) as exc:
        raise LabError(f"cannot choose the policy's cells: {exc}") from None
    return pairs


def sample_matrix(
    scenario: Scenario,
    hostvars: Mapping[str, Mapping[str, Any]] | None,
    *,
    seed: int = 1,
    rows: int = ROWS,
    per_row: int = PER_ROW,
    per_rule: int = PER_RULE,
    ipv6: bool = False,
) -> Sample:
    """The sampled cells of the scenario's matrix (see the module docstring). ``hostvars`` None: no policy cells."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible sample, not a secret
    targets = probe_targets(scenario, ipv6)
    all_sources = sources(scenario)
    pods = [source for source in all_sources if source.startswith("pod:")]
    chosen = sorted(rng.sample(pods, min(rows, len(pods)))) + [source for source in all_sources if source.startswith("vm:")]
    pairs = policy_pairs(scenario.policy, hostvars) if scenario.policy is not None and hostvars is not None else []
    known = set(all_sources)
    for consumers, _ in pairs:
        present = [ref for ref in consumers if ref in known]
        if present and not set(present) & set(chosen):
            chosen += sorted(rng.sample(present, min(2, len(present))))
    cells: dict[tuple[str, str], Target] = {}
    for consumers, prefixes in pairs:
        columns = [target for target in targets if target.id.startswith(tuple(prefixes))] if prefixes else []
        consumer_set = set(consumers)
        for source in chosen:
            if source not in consumer_set:
                continue
            eligible = [target for target in columns if in_matrix(scenario, source, target)]
            for target in rng.sample(eligible, min(per_rule, len(eligible))):
                cells[(source, target.id)] = target
    policy_count = len(cells)
    for source in chosen:
        eligible = [target for target in targets if in_matrix(scenario, source, target) and (source, target.id) not in cells]
        for target in rng.sample(eligible, min(per_row, len(eligible))):
            cells[(source, target.id)] = target
    order = {source: index for index, source in enumerate(all_sources)}
    probes = [
        Probe(source=source, target=target.id, protocol=target.protocol, destinations=target.destinations)
        for (source, _), target in sorted(cells.items(), key=lambda item: (order[item[0][0]], item[0][1]))
    ]
    return Sample(probes, total_cells(scenario, targets), len(cells) - policy_count, policy_count, seed)


def render_sample(sample: Sample, observed: Mapping[str, str], expected: Mapping[str, str] | None, note: str) -> str:
    """The sampled table: one line per cell (observed, expected, the cell), under a title that says it is sampled."""
    lines = [f"truth table, {sample.describe()}", f"  obs exp  cell    (expected {note})"]
    for probe in sample.probes:
        wanted = expected.get(probe.id, "?") if expected is not None else " "
        lines.append(f"  {observed.get(probe.id, '?'):>3} {wanted:>3}  {probe.id}")
    counts = {cell: sum(1 for probe in sample.probes if observed.get(probe.id) == cell) for cell in sorted(set(observed.values()))}
    lines.append("observed: " + ", ".join(f"'{cell}' {count}" for cell, count in counts.items()))
    return "\n".join(lines)

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Errors of the policy core.

Every error the core raises is a :class:`ZeroTrustPolicyError`. Validation gathers all
problems of a policy before it raises, so an operator fixes them in one pass instead of
one run per typo.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Optional


class ZeroTrustPolicyError(Exception):
    """Base of every error raised by ``_policy``."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy.

    ``where`` names the place (``filters.db``, ``policies.default[1].ports[0]``),
    ``message`` says what is wrong and how to fix it, ``text`` is the offending text and
    ``position`` the 0-based offset of a query syntax error inside ``text``.
    """

    where: str
    message: str
    text: str = ""
    position: Optional[int] = None

    def __str__(self) -> str:
        located = f" at position {self.position}" if self.position is not None else ""
        quoted = f" (in {self.text!r}{located})" if self.text else located
        return f"{self.where}: {self.message}{quoted}"


class PolicyError(ZeroTrustPolicyError):
    """A policy is not valid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"the policy has {count} problem{'s' if count != 1 else ''}:\n{lines}")


class QuerySyntaxError(ZeroTrustPolicyError):
    """A filter query cannot be parsed; ``position`` is the 0-based offset in ``text``."""

    def __init__(self, message: str, text: str, position: int) -> None:
        self.message = message
        self.text = text
        self.position = position
        super().__init__(f"{message} at position {position} in {text!r}")


class ServiceError(ZeroTrustPolicyError):
    """A service lookup cannot be answered (no such port, no NodePort, not a service)."""


class WorkloadError(ZeroTrustPolicyError):
    """A ``workload`` hostvar is not in the shape of docs/contracts.md."""

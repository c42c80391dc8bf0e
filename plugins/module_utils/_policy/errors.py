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

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import BRIEF_LENGTH, window

MAX_SHOWN = 50
"""Problems a PolicyError's message lists (it keeps all of them in ``problems``)."""


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
        return f"{self.where}: {self.message}{_quote(self.text, self.position)}"


def _quote(text: str, position: Optional[int]) -> str:
    """`` (in 'text' at position N)``; a long text shows only a window around the position (issue 15, item 10)."""
    located = "" if position is None else f" at position {position}"
    if position is not None and len(text) > BRIEF_LENGTH:
        located += f" of {len(text)} characters"
    return f" (in {window(text, position)}{located})" if text else located


class PolicyError(ZeroTrustPolicyError):
    """A policy is not valid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        count = len(self.problems)
        # Hostile input can hold 100,000 bad ports: all are kept in ``problems``, the message shows the first ones.
        lines = "\n".join(f"  - {problem}" for problem in self.problems[:MAX_SHOWN])
        more = f"\n  - ... and {count - MAX_SHOWN} more" if count > MAX_SHOWN else ""
        super().__init__(f"the policy has {count} problem{'s' if count != 1 else ''}:\n{lines}{more}")


class QuerySyntaxError(ZeroTrustPolicyError):
    """A filter query cannot be parsed; ``position`` is the 0-based offset in ``text``."""

    def __init__(self, message: str, text: str, position: int) -> None:
        self.message = message
        self.text = text
        self.position = position
        shown = window(text, position)
        size = f" of {len(text)} characters" if len(text) > BRIEF_LENGTH else ""
        super().__init__(f"{message} at position {position}{size} in {shown}")


class ServiceError(ZeroTrustPolicyError):
    """A service lookup cannot be answered (no such port, no NodePort, not a service)."""


class WorkloadError(ZeroTrustPolicyError):
    """A ``workload`` hostvar is not in the shape of docs/contracts.md."""

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Errors of the planning step."""

from __future__ import annotations


class PlanningError(Exception):
    """Base of every error the planning step raises; the message says what to fix."""


__all__ = ["PlanningError"]

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Errors of the audit core."""

from __future__ import annotations


class AuditError(Exception):
    """Base of every error the audit core raises; the message says what to fix."""

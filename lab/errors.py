# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's one exception type: every failure the CLI reports cleanly."""

from __future__ import annotations


class LabError(Exception):
    """A lab operation failed; the message says what is wrong and how to fix it."""


class ScenarioError(LabError):
    """The scenario file is invalid; the message names the field and the offending text."""

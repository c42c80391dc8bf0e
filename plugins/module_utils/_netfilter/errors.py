# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Errors raised by the dataplane layer.

Only a module's ``main()`` turns these into ``fail_json``. Every message names the
namespace (and, when known, the rule) and says how to fix the problem.
"""

from __future__ import annotations

from typing import Optional


class NetfilterError(Exception):
    """Base of every dataplane error."""


class CommandError(NetfilterError):
    """A firewall or namespace command failed (or could not be started)."""

    def __init__(self, message: str, argv: tuple[str, ...] = (), returncode: Optional[int] = None, stderr: str = "") -> None:
        super().__init__(message)
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class ApplyError(NetfilterError):
    """Applying a transaction failed; the namespace was put back as it was."""

    def __init__(self, message: str, namespace: str = "", rule: str = "") -> None:
        super().__init__(message)
        self.namespace = namespace
        self.rule = rule


class BackendUnavailableError(NetfilterError):
    """The requested backend's tools or kernel support are missing on this host."""


class NamespaceNotFoundError(NetfilterError):
    """A pod's network namespace could not be found (the pod is gone or not on this node)."""

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The action in front of the zerotrust.workloads.flows module: ``plan`` fills in this host's pods.

As for the allowlist module (plugins/action/allowlist.py): without ``plan`` the arguments go to the
module unchanged; with it, the module gets this host's ``pods`` from the plan unless the task gives them.
"""

from __future__ import annotations

from ansible_collections.zerotrust.workloads.plugins.action.allowlist import ActionModule as AllowlistAction

__all__ = ["ActionModule"]


class ActionModule(AllowlistAction):
    """Run the flows module with this host's pods from the plan."""

    MODULE = "zerotrust.workloads.flows"
    PLAN_KEYS = frozenset(("pods",))
    PACKED = False
    WRITES = False

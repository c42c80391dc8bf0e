# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The action in front of the zerotrust.workloads.allowlist module: ``plan`` fills in this host's part.

Without ``plan`` the task's arguments go to the module unchanged (it stays usable alone, with
explicit ``ruleset`` and ``pods``). With ``plan`` (the registered result of zerotrust.workloads.plan)
the module gets the plan's run options and this host's ruleset, pods and shared sets, read on the
controller from the plan's directory; arguments the task gives win. Only this host's part travels.
Check mode, diff mode and async behave as for any module (this is ansible.builtin's normal action
with the arguments filled in).
"""

from __future__ import annotations

from typing import Any, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning import store
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.errors import PlanningError

__all__ = ["ActionModule", "arguments_from_plan"]


def arguments_from_plan(name: str, args: dict[str, Any], host: str, keys: Any = None) -> dict[str, Any]:
    """The module arguments of ``host``: ``args`` as given, or completed from their ``plan``.

    With ``keys`` (only some of the part is needed: the flows module's pods), a plan still waiting for the
    controller's address will do; the whole part needs the complete plan.
    """
    given = dict(args)
    plan = given.pop("plan", None)
    if plan is None:
        return given
    try:
        return store.module_arguments(plan, store.host_part(plan, host, complete=keys is None), given, keys)
    except PlanningError as error:
        raise AnsibleActionFail(f"{name}: {error}") from error


class ActionModule(ActionBase):  # type: ignore[misc]
    """Run the allowlist module with this host's part of the plan."""

    _supports_check_mode = True
    _supports_async = True
    MODULE = "zerotrust.workloads.allowlist"
    PLAN_KEYS: Any = None

    def run(self, tmp: Any = None, task_vars: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Fill the arguments from the plan, then run the module as the normal action does."""
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        host = str(task_vars.get("inventory_hostname", ""))
        module_args = arguments_from_plan(self.MODULE, dict(self._task.args), host, self.PLAN_KEYS)
        wrap_async = self._task.async_val
        result = merge_hash(result, self._execute_module(module_args=module_args, task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

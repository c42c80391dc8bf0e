# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The action in front of the zerotrust.workloads.allowlist module: ``plan`` fills in this host's part.

Without ``plan`` the task's arguments go to the module unchanged (it stays usable alone, with
explicit ``ruleset`` and ``pods``). With ``plan`` (the registered result of zerotrust.workloads.plan)
the module gets the plan's run options and this host's ruleset, pods and shared sets, read on the
controller from the plan's directory; arguments the task gives win. Only this host's part travels,
as one compact JSON text (the module's ``plan_json``): Ansible then checks and copies one string
instead of every rule, pod and set member of a node's part.
Check mode, diff mode and async behave as for any module (this is ansible.builtin's normal action
with the arguments filled in).

``skip_unchanged_pods`` names this host's registered check-mode result of the same plan: the pods it
found unchanged are left out of the run (the host target always stays), so a run that changes a few
pods of a node reads and compares only those, and the pods it found holding nothing at all go to the
module's ``pristine_pods`` (written without a read first). The enforce role's apply uses it after its
fleet-wide preview.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.targets import pod_label
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning import store
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.errors import PlanningError

__all__ = ["ActionModule", "arguments_from_plan", "pod_label", "pristine_pods", "unchanged_pods"]


PACKED_KEYS = ("ruleset", "pods", "sets")
"""The host's part, which the allowlist module takes as one JSON text (``plan_json``)."""


def unchanged_pods(preview: Any) -> frozenset[str]:
    """The pods (their ``target``) a check-mode result found unchanged; none when it is not a usable result.

    Only a namespace that the preview read and found right is left out: skipped, failed and changed ones all run.
    """
    return _previewed_pods(preview, lambda entry: entry.get("changed") is False)


def pristine_pods(preview: Any) -> frozenset[str]:
    """The pods (their ``target``) a check-mode result found holding nothing at all: no rule or set of ours, no other rule.

    Such a pod gains every rule and member and has nothing in place (``in_place`` counts every live rule and member
    the comparison saw, ours or not). The module writes them without reading first (its ``pristine_pods``).
    """
    return _previewed_pods(preview, lambda entry: entry.get("changed") is True and entry.get("in_place") == 0)


def _previewed_pods(preview: Any, chosen: Callable[[Mapping[str, Any]], bool]) -> frozenset[str]:
    """The pods of a usable check-mode result that the preview read (not skipped, not failed) and ``chosen`` picks."""
    if not isinstance(preview, Mapping) or any(preview.get(flag) for flag in ("failed", "skipped", "unreachable")):
        return frozenset()
    return frozenset(
        str(entry["target"])
        for entry in preview.get("results") or ()
        if isinstance(entry, Mapping) and entry.get("target") not in (None, "host")
        and not entry.get("failed") and not entry.get("skipped") and chosen(entry)
    )


def arguments_from_plan(
    name: str, args: dict[str, Any], host: str, keys: Any = None, *, packed: bool = False, leave_out: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The module arguments of ``host``: ``args`` as given, or completed from their ``plan``.

    With ``keys`` (only some of the part is needed: the flows module's pods), a plan still waiting for the
    controller's address will do; the whole part needs the complete plan. ``packed`` hands the part the
    task does not give itself as ``plan_json``. ``leave_out``: pods (by target) of the plan not to hand over.
    """
    given = dict(args)
    plan = given.pop("plan", None)
    if plan is None:
        return given
    try:
        arguments = store.module_arguments(plan, store.host_part(plan, host, complete=keys is None), given, keys)
    except PlanningError as error:
        raise AnsibleActionFail(f"{name}: {error}") from error
    if leave_out and "pods" not in given and isinstance(arguments.get("pods"), list):
        arguments["pods"] = [pod for pod in arguments["pods"] if not (isinstance(pod, Mapping) and pod_label(pod) in leave_out)]
    if packed and "plan_json" not in given:
        part = {key: arguments.pop(key) for key in PACKED_KEYS if key in arguments and key not in given}
        if part:
            arguments["plan_json"] = json.dumps(part, separators=(",", ":"))
    return arguments


class ActionModule(ActionBase):  # type: ignore[misc]
    """Run the allowlist module with this host's part of the plan."""

    _supports_check_mode = True
    _supports_async = True
    MODULE = "zerotrust.workloads.allowlist"
    PLAN_KEYS: Any = None
    PACKED = True
    WRITES = True
    """The module writes rules, so pods a preview found holding nothing are handed over as ``pristine_pods``."""

    def run(self, tmp: Any = None, task_vars: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Fill the arguments from the plan, then run the module as the normal action does."""
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        host = str(task_vars.get("inventory_hostname", ""))
        args = dict(self._task.args)
        preview = args.pop("skip_unchanged_pods", None)
        if preview is not None and (not isinstance(preview, str) or "plan" not in args):
            raise AnsibleActionFail(
                f"{self.MODULE}: skip_unchanged_pods takes the name of the variable this host's check-mode result of the same "
                "plan was registered in (skip_unchanged_pods: enforce_preview), and needs plan"
            )
        # The registered result as stored (task_vars are not templated): only its per-namespace changed flags are read.
        leave_out = unchanged_pods(task_vars.get(preview)) if preview else frozenset()
        module_args = arguments_from_plan(self.MODULE, args, host, self.PLAN_KEYS, packed=self.PACKED, leave_out=leave_out)
        if preview and self.WRITES and "pristine_pods" not in module_args:
            module_args["pristine_pods"] = sorted(pristine_pods(task_vars.get(preview)))
        wrap_async = self._task.async_val
        result = merge_hash(result, self._execute_module(module_args=module_args, task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

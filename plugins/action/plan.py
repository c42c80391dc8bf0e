# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""zerotrust.workloads.plan: the planning step the enforce and audit roles share.

Runs on the controller only and never connects to a host. The work is in
plugin_utils/_planning/; this entry reads what only Ansible knows (hostvars, groups, the
inventory sources, what the hosts reported) and turns PlanningError into a task failure.
Documentation: plugins/modules/plan.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.zerotrust.workloads.plugins.module_utils._planning.spec import ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning import step, store
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.errors import PlanningError
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.hostvars import PlanningHostvars
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.inputs import (
    Request,
    check_kubernetes_inventory,
    kubernetes_hosts,
    kubernetes_sources,
)

__all__ = ["ActionModule"]


def _lookup(variables: Any, *path: str) -> Any:
    """``variables[path[0]][path[1]]...`` or None, for hostvars that may lack any level."""
    for key in path:
        if not isinstance(variables, Mapping):
            return None
        try:
            variables = variables.get(key)
        except Exception:  # a host variable that fails to template is simply not a report
            return None
    return variables


class ActionModule(ActionBase):  # type: ignore[misc]
    """Plan on the controller: first pass, second pass (``resume``) or clean-up (``discard``)."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Validate the arguments and run the step; the result is the plan's outline."""
        result: dict[str, Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _unused_validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE)
        # Each host read once and its cluster record untemplated (see hostvars.py): the plan reads every host.
        hostvars = PlanningHostvars(task_vars.get("hostvars") or {}, self._loader)
        try:
            if args.get("discard"):
                result.update(changed=False, discarded=store.discard(args["discard"]))
                return result
            if args.get("resume"):
                play_hosts = set(task_vars.get("ansible_play_hosts") or ())
                source = args.get("discover_from")

                def reports(hosts: Sequence[str]) -> Iterable[tuple[Any, Any]]:
                    for host in hosts:
                        if host in play_hosts:
                            variables = _lookup(hostvars, host)
                            registered = _lookup(variables, source) if source else None
                            yield _lookup(variables, "ansible_facts", "env", "SSH_CONNECTION"), registered

                outline = step.resume(args["resume"], hostvars, reports)
            else:
                request = Request.from_args(args)
                groups: Mapping[str, Sequence[str]] = task_vars.get("groups") or {}
                check_kubernetes_inventory(
                    request,
                    kubernetes_sources(str(source) for source in task_vars.get("ansible_inventory_sources") or ()),
                    groups,
                    kubernetes_hosts(groups, lambda host: _lookup(hostvars, host, "workload", "kind")),
                )
                outline = step.first_pass(request, hostvars)
        except PlanningError as error:
            if args.get("resume"):
                # The failed result keeps the path, so that the role's clean-up still finds the directory.
                result.update(failed=True, changed=False, msg=str(error), path=args["resume"])
                return result
            raise AnsibleActionFail(str(error)) from error
        result.update(changed=False, **outline)
        return result

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The planning step: load, validate, compile, guard, and keep the plan on the controller.

Two passes when the controller's address must be read from the hosts first (nobody gave management
addresses and SSH stays open from the controller only): :func:`first_pass` validates and compiles,
so that a wrong policy or inventory stops the run before any host is contacted, and returns the
outline with ``complete: false``; the role then reads ``SSH_CONNECTION`` on the hosts and
:func:`resume` compiles again with that address and writes the hosts' parts. Otherwise the first
pass writes them and :func:`resume` returns the stored outline as it is.

The second pass compiles from what the first read of the inventory (``inventory.json``, see
:class:`RecordedHostvars`), not from the inventory again: the same hosts as the first pass saw, without
resolving every host's variables a second time. When the first pass read more than the compiler's own
variables, nothing is written down and the second pass reads the inventory as the first did.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import Options, parse_options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import merge_options, parse_policy
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning import store
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.errors import PlanningError
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.hostvars import RecordedHostvars
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.inputs import (
    Effective,
    Request,
    check_findings,
    discovered_addresses,
    effective,
    load_policy,
    run_options,
)

Reports = Callable[[Sequence[str]], Iterable[tuple[Any, Any]]]
"""Plan hosts -> per host (its facts' SSH_CONNECTION, its registered result): what the hosts reported."""


def compile_request(
    request: Request, policy: Any, hostvars: Mapping[str, Mapping[str, Any]], discovered: Optional[Sequence[str]] = None
) -> tuple[Effective, dict[str, Any], Options]:
    """Validate and compile; the compiler's errors keep the compile filter's wording."""
    chosen = effective(request, policy, discovered)
    try:
        parsed = parse_policy(policy)
        options = parse_options(merge_options(parsed.options, chosen.compile_options))
        plan = compile_policy(parsed, hostvars, options)
    except ZeroTrustPolicyError as error:
        raise PlanningError(f"zerotrust.workloads.compile: {error}") from error
    return chosen, plan, options


def _outline(  # noqa: PLR0917 - the pieces of one compile run
    request: Request, policy: Any, chosen: Effective, plan: Mapping[str, Any], options: Options, directory: str, *, write: bool
) -> dict[str, Any]:
    """What the step returns: everything but the rules (those stay in the directory, or until the second pass only the pods)."""
    hosts = store.write_hosts(directory, plan["hosts"], pods_only=not write)
    return {
        "path": directory,
        "complete": write,
        "state": request.state,
        "hosts": hosts,
        "compiler_warnings": list(plan["warnings"]),
        "findings": list(plan["findings"]),
        "implicit": dict(options.implicit),
        "management_addresses": list(options.management_addresses),
        "discover": chosen.discover,
        "options": chosen.compile_options,
        "run": run_options(request, options.management_addresses, options.enabled("management_ssh")),
        "policy": policy,
    }


def first_pass(request: Request, hostvars: Mapping[str, Mapping[str, Any]], parent: Optional[str] = None) -> dict[str, Any]:
    """Load, validate, compile and guard; write the plan unless the controller's address is still to be read."""
    policy = load_policy(request)
    recorded = RecordedHostvars(hostvars)
    chosen, plan, options = compile_request(request, policy, recorded)
    check_findings(request, plan["findings"])
    directory = store.create(parent)
    try:
        store.write_json(os.path.join(directory, store.REQUEST), {"request": request.to_dict(), "policy": policy})
        if chosen.discover:
            store.write_inventory(directory, recorded.snapshot())
        outline = _outline(request, policy, chosen, plan, options, directory, write=not chosen.discover)
        store.write_json(os.path.join(directory, store.OUTLINE), outline)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return outline


def resume(directory: Any, hostvars: Mapping[str, Mapping[str, Any]], reports: Reports) -> dict[str, Any]:
    """The complete plan: as stored, or compiled again with the addresses the plan's hosts reported.

    ``hostvars`` is read only when the first pass could not write down what it read (see the module's docstring).
    """
    directory = store.check_directory(directory)
    outline = store.read_json(os.path.join(directory, store.OUTLINE), "outline")
    if not isinstance(outline, dict) or outline.get("complete"):
        return dict(outline)
    stored = store.read_json(os.path.join(directory, store.REQUEST), "request")
    request = Request.from_args(stored["request"])
    policy = stored["policy"]
    discovered = discovered_addresses(reports(sorted(outline["hosts"])))
    inventory = store.read_inventory(directory)
    chosen, plan, options = compile_request(request, policy, hostvars if inventory is None else inventory, discovered)
    check_findings(request, plan["findings"])
    outline = _outline(request, policy, chosen, plan, options, directory, write=True)
    store.write_json(os.path.join(directory, store.OUTLINE), outline)
    return outline


__all__ = ["Reports", "compile_request", "first_pass", "resume"]

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The compiled plan on the controller: a private directory per run, one file per host.

The plan of a large inventory is big (every host's rulesets and their sets), and Ansible copies
facts and registered results per host, so the plan step writes it here and hands Ansible only an
outline; the ``allowlist`` (and ``flows``) action reads the part of the host it runs for. Layout::

    zt-plan-XXXXXXXX/          0700, in the controller's temporary directory
        request.json           the step's arguments and the loaded policy (the second pass reads them)
        outline.json           what the step returned (the second pass returns it when nothing is left to do)
        inventory.json         what the first pass read of each host, when the second pass is to compile from it
        hosts/<sha256>.json    one host's part: {"ruleset", "pods", ...} as the compiler made it

Host files are named by a digest of the inventory hostname: names come from cluster metadata and
never become paths. The role removes the directory at its end (:func:`discard`), also on failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.errors import PlanningError

PREFIX = "zt-plan-"
REQUEST = "request.json"
OUTLINE = "outline.json"
INVENTORY = "inventory.json"
HOSTS = "hosts"


def create(parent: str | None = None) -> str:
    """A new private plan directory (mode 0700, like every ``mkdtemp``)."""
    directory = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    os.mkdir(os.path.join(directory, HOSTS), 0o700)
    return directory


def host_file(directory: str, host: str) -> str:
    """Where one host's part lives."""
    return os.path.join(directory, HOSTS, hashlib.sha256(host.encode("utf-8")).hexdigest() + ".json")


def write_json(path: str, data: Any) -> int:
    """Write ``data`` compactly (mode 0600, replaced atomically); the number of bytes written."""
    text = json.dumps(data, separators=(",", ":"), sort_keys=False).encode("utf-8")
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return len(text)


def read_json(path: str, what: str) -> Any:
    """Read back a file of the plan directory; a missing or broken one is a :class:`PlanningError`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise PlanningError(
            f"cannot read the plan's {what} ({path}): {error}; the plan directory is removed at the end of the role, "
            "so plan and use it in the same play"
        ) from error


def write_inventory(directory: str, snapshot: Optional[Mapping[str, Mapping[str, Any]]]) -> None:
    """Keep what the first pass read of each host (``RecordedHostvars.snapshot``), if there is one.

    No snapshot, or a value JSON cannot hold, leaves nothing written: the second pass then reads the inventory itself.
    """
    if snapshot is None:
        return
    # A failed dump raises before anything is written (write_json encodes first).
    with contextlib.suppress(TypeError, ValueError):
        write_json(os.path.join(directory, INVENTORY), snapshot)


def read_inventory(directory: str) -> Optional[dict[str, dict[str, Any]]]:
    """What :func:`write_inventory` kept, or ``None`` when it kept nothing."""
    path = os.path.join(directory, INVENTORY)
    if not os.path.exists(path):
        return None
    snapshot = read_json(path, "inventory snapshot")
    if not isinstance(snapshot, dict):
        raise PlanningError(f"the plan's inventory snapshot ({path}) is not a mapping of hosts; plan again")
    return snapshot


def write_hosts(directory: str, hosts: Mapping[str, Mapping[str, Any]], *, pods_only: bool = False) -> dict[str, dict[str, Any]]:
    """Write every host's part; the outline's ``hosts``: per host its pod count, file and size in bytes.

    ``pods_only`` writes each host's pods without their rulesets: what is final before the controller's
    address is known (the audit reads flows with it), at a small part of the cost.
    """
    outline: dict[str, dict[str, Any]] = {}
    for host, full in hosts.items():
        path = host_file(directory, host)
        part = full
        if pods_only:
            part = {"pods": [{key: value for key, value in pod.items() if key != "ruleset"} for pod in full.get("pods") or ()]}
        size = write_json(path, part)
        outline[host] = {"pods": len(part.get("pods") or ()), "bytes": size, "file": path}
    return outline


def check_directory(directory: Any) -> str:
    """``directory`` if it is a plan directory this step made (so that :func:`discard` never removes anything else)."""
    if not isinstance(directory, str) or not directory:
        raise PlanningError("the plan has no path: pass the registered result of zerotrust.workloads.plan")
    real = os.path.realpath(directory)
    if not os.path.basename(real).startswith(PREFIX) or not os.path.isfile(os.path.join(real, REQUEST)):
        raise PlanningError(f"{directory} is not a plan directory of zerotrust.workloads.plan")
    return real


def discard(directory: Any) -> bool:
    """Remove a plan directory; False when it is already gone."""
    if isinstance(directory, str) and directory and not os.path.exists(directory):
        return False
    shutil.rmtree(check_directory(directory))
    return True


def host_part(plan: Any, host: str, *, complete: bool = True) -> dict[str, Any]:
    """The part of ``host`` in the plan whose outline is ``plan`` (the registered result of the plan step).

    ``complete=False`` accepts a plan still waiting for the controller's address: its parts hold only pods.
    """
    if not isinstance(plan, Mapping) or not isinstance(plan.get("hosts"), Mapping):
        raise PlanningError("plan must be the registered result of zerotrust.workloads.plan (a mapping with hosts and path)")
    if complete and not plan.get("complete"):
        raise PlanningError(
            "the plan is not complete: the controller's address is still to be read from the hosts; "
            "call zerotrust.workloads.plan again with resume (the enforce role's management.yml shows how)"
        )
    entry = plan["hosts"].get(host)
    if not isinstance(entry, Mapping):
        raise PlanningError(f"host {host} has no part in the plan (only VMs and nodes in scope have one)")
    directory = check_directory(plan.get("path"))
    part = read_json(host_file(directory, host), f"part of host {host}")
    if not isinstance(part, dict):
        raise PlanningError(f"the plan's part of host {host} is not a mapping")
    return part


def module_arguments(plan: Any, part: Mapping[str, Any], given: Mapping[str, Any], keys: Any = None) -> dict[str, Any]:
    """A module's arguments on one host: the plan's run options, the host's part, then what the task gives (it wins).

    ``keys`` limits what is taken from the plan (the ``flows`` module needs only ``pods``); None takes the run
    options and the whole part (``ruleset``, ``pods`` and the host's shared ``sets``).
    """
    run = plan.get("run") if isinstance(plan, Mapping) else None
    taken = {**(run if isinstance(run, Mapping) else {}), **part}
    if keys is not None:
        taken = {key: value for key, value in taken.items() if key in keys}
    return {**taken, **given}


__all__ = ["HOSTS", "OUTLINE", "PREFIX", "REQUEST", "check_directory", "create", "discard", "host_file", "host_part",
           "module_arguments", "read_json", "write_hosts", "write_json"]

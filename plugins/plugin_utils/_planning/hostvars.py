# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The inventory as the planning step reads it: cluster records as stored, everything else templated.

Ansible's ``hostvars[host][name]`` renders the value through the template engine on every read.
For the ``workload`` record of a pod or service that is pure cost: it is cluster data written by
the inventory plugin, untrusted, and never a template (Ansible does not render untrusted strings
anyway). At 10,000 pods the rendering of those records alone took 9 of the planning step's 30
CPU-seconds. This view reads each host's variables once with ``HostVars.raw_get`` (the public,
untemplated read) and hands the cluster record and Ansible's own ``group_names`` over as stored;
any other variable (``zt_addresses``, ``zt_labels``, ``zt_enforce_host``, ...) may be a template an
operator wrote, and is rendered under that host's variables, as ``hostvars`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional

from ansible.template import Templar

AS_STORED = frozenset({"workload", "group_names"})
"""Variables that are data, never templates: the inventory plugin's record and Ansible's group list."""


class HostView(Mapping[str, Any]):
    """One host's variables: ``AS_STORED`` names as stored, any other name rendered on read."""

    def __init__(self, variables: Mapping[str, Any], loader: Any) -> None:
        self._variables = variables
        self._loader = loader
        self._templar: Optional[Templar] = None

    def __getitem__(self, name: str) -> Any:
        value = self._variables[name]
        if name in AS_STORED:
            return value
        if self._templar is None:
            # Only hosts with variables of their own to render pay for a template engine.
            self._templar = Templar(loader=self._loader, variables=self._variables)
        return self._templar.template(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


class PlanningHostvars(Mapping[str, Mapping[str, Any]]):
    """``hostvars`` for the compiler: each host read once, untemplated, through :class:`HostView`.

    Anything that is not Ansible's ``HostVars`` (a plain mapping in tests) is used as it is.
    """

    def __init__(self, hostvars: Mapping[str, Any], loader: Any) -> None:
        self._hostvars = hostvars
        self._loader = loader

    def __getitem__(self, host: str) -> Mapping[str, Any]:
        raw_get = getattr(self._hostvars, "raw_get", None)
        if raw_get is None:
            value: Mapping[str, Any] = self._hostvars[host]
            return value
        if host not in self._hostvars:
            raise KeyError(host)
        return HostView(raw_get(host), self._loader)

    def __iter__(self) -> Iterator[str]:
        return iter(self._hostvars)

    def __len__(self) -> int:
        return len(self._hostvars)


SNAPSHOT_NAMES = ("workload", "group_names", "ansible_host", "ansible_connection")
"""Variables a snapshot may hold besides the ``zt_`` ones: what the compiler reads of every host by name."""


class RecordedHostvars(Mapping[str, Mapping[str, Any]]):
    """``hostvars`` that remember what the compiler read of each host, for the second pass to compile from.

    Reading every host's variables is most of a large plan's cost (Ansible resolves each host's variables
    whole: 1.5 s at 2,000 pods), and the pass that adds the controller's address read them all again.
    :meth:`snapshot` is what was read, per host, when that is only the compiler's own variables (the
    ``workload`` record, ``group_names``, ``ansible_host``, ``ansible_connection``, ``zt_*``); ``None`` when a
    policy's ``var.`` query read anything else (which may be a secret: it is never written down) or walked a
    host's variable names.
    """

    def __init__(self, hostvars: Mapping[str, Mapping[str, Any]]) -> None:
        self._hostvars = hostvars
        self._read: dict[str, dict[str, Any]] = {}
        self._complete = True

    def __getitem__(self, host: str) -> Mapping[str, Any]:
        return _RecordedHost(self._hostvars[host], self._read.setdefault(host, {}), on_walk=self._walked)

    def __iter__(self) -> Iterator[str]:
        return iter(self._hostvars)

    def __len__(self) -> int:
        return len(self._hostvars)

    def snapshot(self) -> Optional[dict[str, dict[str, Any]]]:
        """Per host, the variables read and their values; ``None`` when that cannot stand for the hosts (above)."""
        if not self._complete:
            return None
        for variables in self._read.values():
            if any(name not in SNAPSHOT_NAMES and not name.startswith("zt_") for name in variables):
                return None
        return self._read

    def _walked(self) -> None:
        self._complete = False


class _RecordedHost(Mapping[str, Any]):
    """One host's variables, each value read kept in ``read``; ``on_walk`` is told when the names are walked."""

    def __init__(self, variables: Mapping[str, Any], read: dict[str, Any], *, on_walk: Callable[[], None]) -> None:
        self._variables = variables
        self._read = read
        self._on_walk = on_walk

    def __getitem__(self, name: str) -> Any:
        value = self._variables[name]
        self._read[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        # Names alone are not values: a snapshot could not answer a second walk the same way.
        self._on_walk()
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)

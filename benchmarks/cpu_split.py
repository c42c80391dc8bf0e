# SPDX-License-Identifier: GPL-3.0-or-later
"""CPU seconds of one enforce run on the lab, split by who spent them.

This 2-core machine is CPU-bound through a 2,000-pod run, so wall seconds follow CPU seconds; the split
says where to look. Three parts, from cgroup CPU accounting (cgroup v1 ``cpuacct``, or v2 ``cpu.stat``)
and ``/proc/stat``:

* ``controller``: ``ansible-playbook`` and every process it starts (its forks, the SSH clients);
* ``hosts``: the lab's sshd servers, their sessions, and everything those start: the modules on the VMs
  and nodes, and the firewall commands those start;
* ``rest``: the machine's busy time minus both: the lab's own processes (kubelets, API, DNS, listeners)
  and the kernel's threads (network namespaces' cleanup, RCU).

Benchmark tooling only: it moves the lab's sshd processes into a cgroup of its own for the run and back
afterwards. Where no cgroup hierarchy with CPU accounting can be written, :func:`cpu_split` yields ``None``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

LAB_SSHD_CONFIG = "/.lab/ssh/sshd_config."
"""What the lab's sshd command lines hold (``sshd -f .lab/ssh/sshd_config.HOST``)."""
TICKS = os.sysconf("SC_CLK_TCK")


class Hierarchy:
    """One writable cgroup hierarchy that accounts CPU: where groups are made and how their usage is read."""

    def __init__(self, root: Path, usage_file: str, parse: Callable[[str], float]) -> None:
        self.root = root
        self.usage_file = usage_file
        self.parse = parse

    def usage(self, group: Path) -> float:
        """CPU seconds the group's processes used so far."""
        return self.parse((group / self.usage_file).read_text())


def _v2_seconds(text: str) -> float:
    fields = dict(line.split(maxsplit=1) for line in text.splitlines() if " " in line)
    return int(fields["usage_usec"]) / 1e6


def find_hierarchy() -> Optional[Hierarchy]:
    """cgroup v1's cpuacct, else a cgroup v2 hierarchy (``cpu.stat`` is there without the cpu controller)."""
    v1 = Path("/sys/fs/cgroup/cpuacct")
    if (v1 / "cpuacct.usage").exists() and os.access(v1, os.W_OK):
        return Hierarchy(v1, "cpuacct.usage", lambda text: int(text) / 1e9)
    for candidate in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (candidate / "cgroup.procs").exists() and (candidate / "cgroup.controllers").exists() and os.access(candidate, os.W_OK):
            return Hierarchy(candidate, "cpu.stat", _v2_seconds)
    return None


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (every CPU, ``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS


def lab_sshd_pids() -> list[int]:
    """The lab's sshd servers and every process below them.

    The sessions too: an SSH connection that Ansible keeps open between runs (ControlPersist) has its
    session process (``sshd: root@notty``) from an earlier run, and each module of this run is its child.
    """
    parents: dict[int, int] = {}
    servers = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if "sshd" in command and LAB_SSHD_CONFIG in command:
            servers.add(int(entry.name))

    def below_a_server(pid: int) -> bool:
        seen = set()
        while pid > 1 and pid not in seen:
            if pid in servers:
                return True
            seen.add(pid)
            pid = parents.get(pid, 0)
        return False

    return sorted(pid for pid in parents if below_a_server(pid))


class Split:
    """The running measurement: :meth:`join_controller` in the controller's child, :meth:`seconds` at the end."""

    def __init__(self, hierarchy: Hierarchy, controller: Path, hosts: Path) -> None:
        self.hierarchy = hierarchy
        self.controller = controller
        self.hosts = hosts
        self._start = (busy_seconds(), hierarchy.usage(controller), hierarchy.usage(hosts))

    def join_controller(self) -> None:
        """Move the calling process into the controller's group (``preexec_fn`` of the ``ansible-playbook`` child)."""
        (self.controller / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> dict[str, float]:
        """``busy``, ``controller``, ``hosts`` and ``rest`` CPU seconds since the start."""
        busy = busy_seconds() - self._start[0]
        controller = self.hierarchy.usage(self.controller) - self._start[1]
        hosts = self.hierarchy.usage(self.hosts) - self._start[2]
        return {"busy": busy, "controller": controller, "hosts": hosts, "rest": busy - controller - hosts}


@contextlib.contextmanager
def cpu_split(label: str) -> Iterator[Optional[Split]]:
    """Groups ``zt-bench-<pid>-<label>-{controller,hosts}`` for one run, the lab's sshd moved in and back out."""
    hierarchy = find_hierarchy()
    if hierarchy is None:
        yield None
        return
    base = f"zt-bench-{os.getpid()}-{label}"
    controller, hosts = hierarchy.root / f"{base}-controller", hierarchy.root / f"{base}-hosts"
    try:
        controller.mkdir()
        hosts.mkdir()
        for pid in lab_sshd_pids():
            with contextlib.suppress(OSError):  # gone since it was listed
                (hosts / "cgroup.procs").write_text(str(pid))
        yield Split(hierarchy, controller, hosts)
    finally:
        for group in (hosts, controller):
            # Whatever is still inside (the sshd servers, a lingering SSH master) goes back to the root group.
            with contextlib.suppress(OSError):
                for remaining in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (hierarchy.root / "cgroup.procs").write_text(remaining)
            with contextlib.suppress(OSError):
                group.rmdir()

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Run commands inside one network namespace.

Commands are argument lists, never shell strings: names from the cluster reach them
only as separate arguments. A named namespace is entered with ``ip netns exec NAME``,
a path (``/proc/PID/ns/net``, a CRI path) with ``nsenter --net=PATH``; the root
namespace runs the command as is. Restore files travel on stdin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Optional

from .errors import CommandError

DEFAULT_TIMEOUT = 60.0
NETNS_DIRS = ("/run/netns", "/var/run/netns")
_SAFE_NETNS_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$")


@dataclasses.dataclass(frozen=True)
class Namespace:
    """A network namespace: the root one (neither field), a named one, or a path."""

    name: Optional[str] = None
    path: Optional[str] = None

    def __post_init__(self) -> None:
        if self.name is not None and self.path is not None:
            raise ValueError("a namespace has a name or a path, not both")
        if self.name is not None and (not _SAFE_NETNS_NAME.match(self.name) or self.name in (".", "..")):
            raise ValueError(f"network namespace name {self.name!r} is not a plain name under /run/netns")

    @property
    def is_root(self) -> bool:
        """True for the namespace the module itself runs in."""
        return self.name is None and self.path is None

    @property
    def label(self) -> str:
        """How results and errors name this namespace."""
        if self.name is not None:
            return self.name
        if self.path is not None:
            return self.path
        return "host"

    @property
    def lock_id(self) -> str:
        """A file-name-safe identity of the namespace itself (not of how it is named).

        Built from the namespace file's device and inode, so ``/run/netns/a`` and
        ``/proc/PID/ns/net`` of the same namespace share one lock, and two machines'
        worth of namespaces on one host (a lab) do not.
        """
        path = os.path.join(NETNS_DIRS[0], self.name) if self.name is not None else self.path or "/proc/self/ns/net"
        try:
            info = os.stat(path)
        except OSError:
            return "ns-" + hashlib.sha256(self.label.encode()).hexdigest()[:16]
        return f"netns-{info.st_dev}-{info.st_ino}"

    def prefix(self) -> tuple[str, ...]:
        """The argv prefix that runs a command inside this namespace."""
        if self.name is not None:
            return ("ip", "netns", "exec", self.name)
        if self.path is not None:
            return ("nsenter", f"--net={self.path}")
        return ()

    def to_dict(self) -> dict[str, Optional[str]]:
        """JSON form (for the rollback watchdog)."""
        return {"name": self.name, "path": self.path}


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """What one command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Runner:
    """Executes commands in one namespace and counts the writes it made.

    ``reads`` and ``writes`` let a module run prove that a no-op run wrote nothing.
    """

    def __init__(self, namespace: Namespace, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.namespace = namespace
        self.timeout = timeout
        self.reads = 0
        self.writes = 0

    def run(self, argv: Sequence[str], stdin: Optional[str] = None, check: bool = True, write: bool = False) -> CommandResult:
        """Run ``argv`` in the namespace; raise CommandError on failure when ``check``."""
        full = tuple(self.namespace.prefix()) + tuple(argv)
        if write:
            self.writes += 1
        else:
            self.reads += 1
        try:
            completed = subprocess.run(
                list(full),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                env=_command_environment(),
            )
        except FileNotFoundError as error:
            raise CommandError(f"{full[0]} is not installed or not on PATH (namespace {self.namespace.label})", full) from error
        except subprocess.TimeoutExpired as error:
            raise CommandError(
                f"{' '.join(argv[:2])} did not finish within {self.timeout:.0f}s in namespace {self.namespace.label}", full
            ) from error
        result = CommandResult(full, completed.returncode, completed.stdout, completed.stderr)
        if check and completed.returncode != 0:
            raise CommandError(
                f"{' '.join(argv[:2])} failed in namespace {self.namespace.label} (exit {completed.returncode}): "
                f"{completed.stderr.strip() or completed.stdout.strip()}",
                full,
                completed.returncode,
                completed.stderr,
            )
        return result


def tool_exists(name: str) -> bool:
    """True when ``name`` is an executable on PATH (or the sbin directories)."""
    return shutil.which(name, path=_search_path()) is not None


def _search_path() -> str:
    # Ansible may run modules with a PATH that lacks the sbin directories where the
    # firewall tools live.
    parts = os.environ.get("PATH", "").split(os.pathsep)
    for extra in ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"):
        if extra not in parts:
            parts.append(extra)
    return os.pathsep.join(part for part in parts if part)


def _command_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = _search_path()
    # Stable, parseable output from the tools.
    env["LC_ALL"] = "C"
    return env

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Run commands inside one network namespace.

Commands are argument lists, never shell strings: names from the cluster reach them
only as separate arguments. The runner enters a target namespace itself for the moment
it starts a command (``setns`` around the fork: the child is born in the namespace, and
this process always returns to its own before anything else happens), which saves the
extra program and mount namespace of ``ip netns exec NAME`` on every command: a node's
run over 100 pod namespaces starts several hundred commands. Where this process cannot
enter a namespace (no privilege, no ``setns``), it runs them as before: a named
namespace with ``ip netns exec NAME``, a path (``/proc/PID/ns/net``, a CRI path) with
``nsenter --net=PATH``; the root namespace runs the command as is. Restore files travel
on stdin.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar, Optional, TypeVar

from . import netlink
from .errors import CommandError, NetfilterError
from .readcache import ReadCache

DEFAULT_TIMEOUT = 60.0
NETNS_DIRS = ("/run/netns", "/var/run/netns")
CLONE_NEWNET = 0x40000000
_SAFE_NETNS_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$")
T = TypeVar("T")


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
        path = self.file or "/proc/self/ns/net"
        try:
            info = os.stat(path)
        except OSError:
            return "ns-" + hashlib.sha256(self.label.encode()).hexdigest()[:16]
        return f"netns-{info.st_dev}-{info.st_ino}"

    @property
    def file(self) -> Optional[str]:
        """The namespace file to enter (``None`` for the root namespace)."""
        if self.name is not None:
            return os.path.join(NETNS_DIRS[0], self.name)
        return self.path

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

    ``reads`` and ``writes`` let a module run prove that a no-op run wrote nothing; ``cached_reads`` counts the
    read commands :meth:`read_nf_tables` answered from ``read_cache`` instead of starting them, ``netlink_reads``
    those :meth:`read_netlink` answered by asking the kernel itself.
    """

    in_process: ClassVar[bool] = True
    """Enter namespaces with setns in this process; turned off for good (every runner) the first time that fails."""

    def __init__(self, namespace: Namespace, timeout: float = DEFAULT_TIMEOUT, read_cache: Optional[ReadCache] = None) -> None:
        self.namespace = namespace
        self.timeout = timeout
        self.read_cache = read_cache
        self.reads = 0
        self.writes = 0
        self.cached_reads = 0
        self.netlink_reads = 0

    def run(self, argv: Sequence[str], stdin: Optional[str] = None, check: bool = True, write: bool = False) -> CommandResult:
        """Run ``argv`` in the namespace; raise CommandError on failure when ``check``."""
        if write:
            self.writes += 1
        else:
            self.reads += 1
        with self._entered() as prefix:
            full = prefix + tuple(argv)
            completed = self._start(full, argv, stdin)
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

    def read_nf_tables(self, commands: Sequence[Sequence[str]], check: bool = True) -> list[CommandResult]:
        """Run read-only ``commands`` whose output depends on nothing but this namespace's nf_tables objects.

        With a ``read_cache``, their outputs come from it while the namespace's nf_tables generation is the one
        they were recorded at (no command starts), and they are recorded when they all succeeded and nothing
        was committed while they ran (``readcache.py``). Without netlink, or without a cache, they just run.
        """
        generation = self._nf_tables_generation() if self.read_cache is not None else None
        if self.read_cache is not None and generation is not None:
            outputs = self.read_cache.outputs(self.namespace.label, generation, commands)
            if outputs is not None:
                self.cached_reads += len(commands)
                return [CommandResult(tuple(command), 0, output, "") for command, output in zip(commands, outputs)]  # noqa: B905 (3.9)
        results = [self.run(command, check=check) for command in commands]
        if (self.read_cache is not None and generation is not None and all(result.returncode == 0 for result in results)
                and self._nf_tables_generation() == generation):
            self.read_cache.record(self.namespace.label, self.namespace.file, generation, commands, [result.stdout for result in results])
        return results

    def read_netlink(self, function: Callable[[], T]) -> Optional[T]:
        """``function()``, a read over netlink that stands for a read command, run inside the namespace.

        ``None`` when it cannot answer (this process cannot enter the namespace, no netlink, an answer
        ``function`` does not read): the caller then starts the command.
        """
        try:
            answer = self.call_inside(function)
        except netlink.NetlinkError:
            return None
        if answer is not None:
            self.netlink_reads += 1
        return answer

    def write_netlink(self, function: Callable[[], T]) -> Optional[T]:
        """``function()``, a write over netlink that stands for a write command, run inside the namespace (a write).

        ``None`` when this process cannot enter the namespace: the caller then starts the command. Exceptions of
        ``function`` pass through.
        """
        answer = self.call_inside(function)
        if answer is not None:
            self.writes += 1
        return answer

    def _nf_tables_generation(self) -> Optional[tuple[int, int]]:
        try:
            return self.call_inside(netlink.nftables_generation)
        except netlink.NetlinkError:
            return None

    def call_inside(self, function: Callable[[], T]) -> Optional[T]:
        """``function()`` run by this thread inside the namespace (a netlink socket it opens belongs there).

        ``None`` when this process cannot enter the namespace itself (no privilege, no ``setns``): then only
        commands can look inside, through :meth:`run`. Exceptions of ``function`` pass through.
        """
        with self._entered() as prefix:
            if prefix:
                return None
            return function()

    @contextlib.contextmanager
    def _entered(self) -> Iterator[tuple[str, ...]]:
        """This thread inside the namespace for the body (yields ``()``), or the argv prefix that enters it.

        The body only starts a command and waits for it: the child is born in the namespace. This thread
        goes back to its own namespace in every case; when it cannot, nothing else may run here.
        """
        path = self.namespace.file
        if path is None or not Runner.in_process:
            yield self.namespace.prefix()
            return
        try:
            target = os.open(path, os.O_RDONLY)
        except OSError:
            # Gone or not a namespace: the tools' own way of entering it says so, in their words.
            yield self.namespace.prefix()
            return
        try:
            own: Optional[int] = enter_namespace(target)
        except OSError:
            # No privilege or no setns here: enter with the tools from now on (nothing changed yet).
            Runner.in_process = False
            own = None
        finally:
            os.close(target)
        if own is None:
            yield self.namespace.prefix()
            return
        try:
            yield ()
        finally:
            return_to(own, f"a command in {self.namespace.label}")

    def _start(self, full: tuple[str, ...], argv: Sequence[str], stdin: Optional[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
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


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, loaded once per run (setns before Python 3.12)."""
    return ctypes.CDLL(None, use_errno=True)


def setns_net(fd: int) -> None:
    """Move this thread into the network namespace open as ``fd`` (os.setns from Python 3.12, libc before)."""
    setns = getattr(os, "setns", None)
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def enter_namespace(target: int) -> int:
    """Move this thread into the network namespace open as ``target``; returns its own, for :func:`return_to`.

    Raises OSError when the namespace cannot be entered: nothing changed then.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        setns_net(target)
    except BaseException:
        os.close(own)
        raise
    return own


def return_to(own: int, after: str) -> None:
    """Move this thread back into its own namespace (from :func:`enter_namespace`) and close it.

    NetfilterError when it cannot (``after`` says what ran in the other namespace): every later command of
    this process would run in the wrong namespace.
    """
    try:
        setns_net(own)
    except OSError as error:
        raise NetfilterError(f"could not return to this module's own network namespace after {after}: {error}") from error
    finally:
        os.close(own)


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

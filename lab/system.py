# SPDX-License-Identifier: GPL-3.0-or-later
"""Thin wrappers over the system tools the lab drives (ip, iptables, sysctl), always as argv lists."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.errors import LabError

REPO_ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = REPO_ROOT / ".lab"
STATE_FILE = LAB_DIR / "state.json"
PREFIX = "zt-"
ROOT_BRIDGE = "zt-lab0"
SYSTEM_PYTHON = "/usr/bin/python3"
# Exactly the names the lab creates, so a sweep never touches another prefix's objects.
LAB_NETNS = re.compile(r"^zt-(node|pod|vm)-[a-z0-9.-]+$")
LAB_ROOT_LINK = re.compile(r"^zt-(lab0|n[0-9]+|m[0-9]+)$")


@contextlib.contextmanager
def lab_lock(timeout: float = 300) -> Iterator[None]:
    """Serialise lab changes (up, down, move-pod) between processes: an flock on the .lab directory itself."""
    LAB_DIR.mkdir(exist_ok=True)
    fd = os.open(LAB_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"another lab command holds {LAB_DIR} for over {timeout:.0f} s; retry when it is done") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def run(argv: list[str], input_text: str | None = None, check: bool = True, timeout: float = 60) -> str:
    """Run a command; return stdout; raise LabError with stderr when it fails and ``check``."""
    try:
        completed = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise LabError(f"{argv[0]} is not installed; run `make setup` (it installs what the lab needs) and retry") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from None
    if check and completed.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({completed.returncode}): {completed.stderr.strip() or completed.stdout.strip()}")
    return completed.stdout


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """``ip [-n NETNS] ARGS``."""
    return run(["ip", *(("-n", netns) if netns else ()), *args], check=check)


def ip_json(*args: str, netns: str | None = None) -> Any:
    """``ip -j [-n NETNS] ARGS`` parsed."""
    out = run(["ip", "-j", *(("-n", netns) if netns else ()), *args])
    return json.loads(out) if out.strip() else []


def in_netns(netns: str, argv: list[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``netns``."""
    return ["ip", "netns", "exec", netns, *argv]


def netns_list() -> list[str]:
    """Every named network namespace."""
    return [entry["name"] for entry in ip_json("netns", "list")]


def sysctl(netns: str, settings: dict[str, str]) -> None:
    """Set sysctls inside a namespace (net.* are per namespace)."""
    run(in_netns(netns, ["sysctl", "-q", "-w", *(f"{key}={value}" for key, value in settings.items())]))


def link_names(netns: str | None = None) -> list[str]:
    """The interface names in a namespace (the root one by default)."""
    return [link["ifname"] for link in ip_json("link", "show", netns=netns)]


def pid_alive(pid: int) -> bool:
    """Whether a process exists (and is not a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def pid_cmdline(pid: int) -> str:
    """The process's command line, space-joined ('' when gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def terminate(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM the given processes, wait, then SIGKILL what is left (each by its own PID)."""
    alive = [pid for pid in pids if pid_alive(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        _reap(alive)
        alive = [pid for pid in alive if pid_alive(pid)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap(alive)


def _reap(pids: list[int]) -> None:
    # Children of this very process (started in the same run) would stay zombies otherwise.
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Never lock the controller out: a management allowance and a rollback watchdog.

The allowance is a model-level transformation (backend-neutral): the host's ingress
chains get, first, an accept for tcp/22 from the management addresses (plus the SSH
client the module was started from).

The watchdog implements confirm-or-restore. After an apply, the restore steps
(computed by the backend from the state before and after) are written to a file
under ``STATE_DIR`` and a detached process sleeps ``timeout`` seconds, then claims
the file by renaming it and runs the steps. A later module run with ``confirm``
claims the file first (``os.rename`` is atomic, so exactly one of them wins) and the
watchdog finds nothing to do. The watchdog is a fixed script run with argv; the
only data it sees is the JSON file, and it runs argv lists from there, never a shell.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from .backend import Step
from .errors import NetfilterError
from .model import AddressSet, ModelError, PortRange, Rule, Ruleset, canonical_network
from .runner import Namespace

STATE_DIR = "/run/zerotrust-workloads"
MANAGEMENT_SET = "zt-mgmt"
MANAGEMENT_ORIGIN = "implicit:never-lock-out"
MANAGEMENT_REPLY_ORIGIN = "implicit:never-lock-out replies"
_TOKEN_CHARS = set("0123456789abcdef")

WATCHDOG_SCRIPT = r"""
import fcntl, json, os, subprocess, sys, time
path, timeout = sys.argv[1], float(sys.argv[2])
time.sleep(timeout)
claimed = path[: -len(".json")] + ".restoring"
try:
    os.rename(path, claimed)
except OSError:
    sys.exit(0)
with open(claimed) as handle:
    plan = json.load(handle)
outcome = {"restored_at": time.time(), "errors": [], "host": plan.get("host", "")}
for target in plan["targets"]:
    while True:
        lock = open(target["lock"], "a")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.stat(target["lock"]), os.fstat(lock.fileno())):
                break
        except FileNotFoundError:
            pass
        lock.close()  # the previous holder removed it: lock the path anew
    with lock:
        for step in target["steps"]:
            argv = list(target["prefix"]) + list(step["argv"])
            done = subprocess.run(argv, input=step["stdin"], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                outcome["errors"].append({"namespace": target["namespace"], "what": step["what"], "stderr": done.stderr[-2000:]})
        try:
            os.unlink(target["lock"])
        except FileNotFoundError:
            pass
result = path[: -len(".json")] + ".rolledback"
with open(result + ".tmp", "w") as handle:
    json.dump(outcome, handle)
os.rename(result + ".tmp", result)
os.unlink(claimed)
"""


class RollbackError(NetfilterError):
    """A confirm token is unknown, or the rollback already happened."""


def ssh_client_address(environ: Mapping[str, str]) -> Optional[str]:
    """The controller's address from ``SSH_CONNECTION`` / ``SSH_CLIENT``, if present."""
    for variable in ("SSH_CONNECTION", "SSH_CLIENT"):
        words = environ.get(variable, "").split()
        if words:
            try:
                address = ipaddress.ip_address(words[0].split("%", 1)[0])
            except ValueError:
                continue
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(address)
    return None


def ssh_client_from_process_tree(pid: Optional[int] = None, depth: int = 12) -> Optional[str]:
    """The SSH client address from an ancestor's environment.

    ``become`` (sudo) resets the environment, so the module itself may not see
    ``SSH_CONNECTION``; the shell sshd started, a few parents up, still has it.
    """
    current = pid if pid is not None else os.getppid()
    for _unused_level in range(depth):
        if current <= 1:
            return None
        try:
            with open(f"/proc/{current}/environ", "rb") as handle:
                raw = handle.read()
            with open(f"/proc/{current}/stat", encoding="utf-8") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        variables = dict(item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0") if "=" in item)
        found = ssh_client_address(variables)
        if found:
            return found
        current = parent
    return None


def with_management_access(ruleset: Ruleset, addresses: Sequence[str], port: int = 22) -> Ruleset:
    """``ruleset`` with tcp/``port`` from ``addresses`` accepted first in every input chain, and
    the SSH server's packets back to them (tcp sport ``port``) accepted first in every output chain.

    The output half keeps the live SSH session alive: on a host where nothing used conntrack
    before our rules, the connection Ansible is on was never seen starting, so the server's
    next packet on it is not ``established`` and the egress catch-all would drop it (the run
    then hangs until TCP gives up). Matching on the source port accepts only what the SSH
    server sends; the host still cannot open connections to the management addresses.
    """
    if not addresses or not any(chain.hook == "input" for chain in ruleset.chains):
        return ruleset
    try:
        members = tuple(canonical_network(address) for address in addresses)
    except ModelError as error:
        raise NetfilterError(f"management_addresses: {error}; give addresses or networks without host bits") from error
    set_name = MANAGEMENT_SET
    taken = {address_set.name for address_set in ruleset.address_sets}
    while set_name in taken:
        set_name += "x"
    allowance = Rule(verdict="accept", origin=MANAGEMENT_ORIGIN, protocol="tcp", ports=(_port(port),), peer_set=set_name)
    replies = Rule(verdict="accept", origin=MANAGEMENT_REPLY_ORIGIN, protocol="tcp", source_ports=(_port(port),), peer_set=set_name)
    first = {"input": allowance, "output": replies}
    chains = tuple(
        dataclasses.replace(chain, rules=(first[chain.hook], *chain.rules)) if chain.hook in first else chain for chain in ruleset.chains
    )
    return Ruleset(chains=chains, address_sets=(*ruleset.address_sets, AddressSet(set_name, members, "management")))


def _port(port: int) -> PortRange:
    return PortRange(port, port)


@dataclasses.dataclass
class RollbackTarget:
    """What the watchdog restores in one namespace."""

    namespace: Namespace
    lock_path: str
    steps: list[Step]


def start_watchdog(targets: Sequence[RollbackTarget], timeout: int, state_dir: str = STATE_DIR,
                   host: Optional[str] = None) -> dict[str, Any]:
    """Write the restore plan and start the detached watchdog; return what the module reports.

    ``host`` identifies the host the rollback belongs to (default: the namespace this
    code runs in); only runs for the same host report it.
    """
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    token = secrets.token_hex(12)
    path = os.path.join(state_dir, f"rollback-{token}.json")
    plan = {
        "host": host or host_identity(),
        "created": time.time(),
        "timeout": timeout,
        "targets": [
            {
                "namespace": target.namespace.label,
                "prefix": list(target.namespace.prefix()),
                "lock": target.lock_path,
                "steps": [step.to_dict() for step in target.steps],
            }
            for target in targets
        ],
    }
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(plan, handle)
    os.chmod(path + ".tmp", 0o600)
    os.rename(path + ".tmp", path)
    subprocess.Popen(
        [sys.executable, "-c", WATCHDOG_SCRIPT, path, str(timeout)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return {"token": token, "timeout": timeout, "snapshot": path}


def confirm(token: str, state_dir: str = STATE_DIR) -> dict[str, Any]:
    """Cancel the rollback of ``token``; raise RollbackError if it is unknown or already done."""
    if not token or set(token) - _TOKEN_CHARS or len(token) > 64:
        raise RollbackError(f"confirm token {token!r} is not a token returned by this module (hex characters)")
    base = os.path.join(state_dir, f"rollback-{token}")
    try:
        os.rename(base + ".json", base + ".confirmed")
    except OSError:
        if os.path.exists(base + ".confirmed"):
            return {"confirmed": True, "rolled_back": False}
        if any(os.path.exists(base + suffix) for suffix in (".restoring", ".rolledback", ".reported")):
            raise RollbackError(
                f"rollback {token} already restored the previous rules: the controller did not confirm within the timeout. "
                "Check that the host is reachable over a new connection with the new rules, then apply again."
            ) from None
        raise RollbackError(f"rollback {token} is unknown on this host (it never existed or /run was cleared by a reboot)") from None
    return {"confirmed": True, "rolled_back": False}


def collect_rollbacks(state_dir: str = STATE_DIR, mark_reported: bool = True, host: Optional[str] = None) -> list[dict[str, Any]]:
    """Rollbacks the watchdog performed for ``host`` since the last run (each reported once).

    ``mark_reported=False`` (check mode) reports them without using them up.
    """
    host = host or host_identity()
    if not os.path.isdir(state_dir):
        return []
    found: list[dict[str, Any]] = []
    for entry in sorted(os.listdir(state_dir)):
        if mark_reported and entry.startswith("rollback-") and entry.endswith((".confirmed", ".reported")):
            _prune(os.path.join(state_dir, entry))
        if not (entry.startswith("rollback-") and entry.endswith(".rolledback")):
            continue
        path = os.path.join(state_dir, entry)
        try:
            with open(path, encoding="utf-8") as handle:
                outcome = json.load(handle)
        except (OSError, ValueError):
            outcome = {}
        if outcome.get("host", "") != host:
            continue  # another network namespace's watchdog (several "hosts" share /run in a lab)
        token = entry[len("rollback-") : -len(".rolledback")]
        found.append({"token": token, "restored_at": outcome.get("restored_at"), "errors": outcome.get("errors", [])})
        if mark_reported:
            os.rename(path, path[: -len(".rolledback")] + ".reported")
    return found


def _prune(path: str, max_age: float = 86400.0) -> None:
    """Forget a finished rollback after a day (status calls only need recent ones)."""
    try:
        if time.time() - os.stat(path).st_mtime > max_age:
            os.unlink(path)
    except OSError:
        pass


def host_identity() -> str:
    """The network namespace this module runs in (a lab runs many "hosts" on one /run)."""
    return Namespace().lock_id


def rollback_status(token: str, state_dir: str = STATE_DIR) -> str:
    """``pending``, ``confirmed``, ``rolled_back`` or ``unknown`` (used by tests and status calls)."""
    base = os.path.join(state_dir, f"rollback-{token}")
    suffixes = ((".json", "pending"), (".confirmed", "confirmed"), (".restoring", "rolled_back"), (".rolledback", "rolled_back"))
    for suffix, status in (*suffixes, (".reported", "rolled_back")):
        if os.path.exists(base + suffix):
            return status
    return "unknown"

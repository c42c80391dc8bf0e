# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Persistence: the host's rules come back at boot, before the network does.

After a successful apply the ``allowlist`` module writes what it applied on the host
target into files under ``persist_dir`` (default ``/etc/zerotrust-workloads``) and installs
a systemd unit in ``unit_dir`` (default ``/etc/systemd/system``) whose ``ExecStart`` lines
load them at boot, ordered ``Before=network-pre.target``.

The files are the restore input a backend would write into an EMPTY namespace, taken
from the backend itself (no second renderer): for iptables the ``ipset restore`` text
(sets first) and one ``iptables-restore --noflush`` text per family (our ``ZT-*`` chains
and our jumps, nothing else); for nftables one ``nft -f`` script for ``table inet
zerotrust`` that deletes and recreates only that table. So a restore never touches a
foreign rule, and the kube-proxy / CNI rules that come up later sit beside ours as they
do after an enforcement run. The unit is ``Type=oneshot`` with ``RemainAfterExit=yes``:
systemd runs it once per boot, into the still-empty namespace (run by hand on a live host
the iptables texts would add our jumps a second time; the next enforcement run reports and
repairs that as drift).

``boot_policy: closed`` persists, instead of the applied rules, a ruleset that passes only
loopback, established/related traffic and SSH from the management addresses (and the
controller) until the next enforcement run replaces it.

Systemd is detected the way ``sd_booted()`` does it: ``/run/systemd/system`` is a directory.
With ``persist`` unset, a host without systemd writes nothing and gets a warning (files that
nothing restores would only look like protection); ``persist: true`` writes the files and
the unit anyway (another init system or an image build uses them; the lab does), and
``persist: false`` writes nothing and says nothing. ``state: absent`` removes the files, the
unit and its ``multi-user.target.wants`` link.

Files are written atomically (a temporary file in the same directory, fsync, rename) with
root-only permissions (directory 0700, files 0600; the unit, which holds no addresses, 0644).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, Optional

from .backend import Backend, Step
from .errors import NetfilterError
from .lockout import with_management_access
from .model import Chain, Rule, Ruleset
from .runner import NETNS_DIRS, Namespace, Runner

PERSIST_DIR = "/etc/zerotrust-workloads"
UNIT_DIR = "/etc/systemd/system"
UNIT_NAME = "zerotrust-workloads.service"
WANTED_BY = "multi-user.target"
SYSTEMD_MARKER = "/run/systemd/system"
BOOT_POLICIES = ("restore", "closed")
TOOL_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
FILE_MODE = 0o600
UNIT_MODE = 0o644
DIR_MODE = 0o700
CLOSED_ORIGIN = "boot_policy closed"

# Every file name this module may own in persist_dir; a backend switch removes the others.
IPSET_FILE = "ipset.restore"
IPTABLES_FILES = {4: "iptables-v4.restore", 6: "iptables-v6.restore"}
NFT_FILE = "zerotrust.nft"
OWNED_FILES = (IPSET_FILE, *IPTABLES_FILES.values(), NFT_FILE)

# ExecStart= words are split by systemd and ``%`` starts a specifier: paths are kept to plain characters.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")


class PersistError(NetfilterError):
    """Persistence cannot be planned or written (a bad directory, a failed write)."""


@dataclasses.dataclass(frozen=True)
class PersistOptions:
    """The module's persistence arguments."""

    enabled: Optional[bool] = None
    """``None``: persist where systemd runs, warn elsewhere; ``True``: always; ``False``: never."""
    boot_policy: str = "restore"
    persist_dir: str = PERSIST_DIR
    unit_dir: str = UNIT_DIR
    systemd_marker: str = SYSTEMD_MARKER
    netns_path: Optional[str] = None
    """The host target's network namespace file when it is not the root one (``NetworkNamespacePath=``)."""

    def __post_init__(self) -> None:
        for name in ("persist_dir", "unit_dir"):
            value = getattr(self, name)
            if isinstance(value, str) and value.startswith("/"):
                object.__setattr__(self, name, os.path.normpath(value))
        if self.boot_policy not in BOOT_POLICIES:
            raise PersistError(f"boot_policy {self.boot_policy!r} must be one of {', '.join(BOOT_POLICIES)}")
        for name, value in (("persist_dir", self.persist_dir), ("unit_dir", self.unit_dir)):
            if not _SAFE_PATH.match(value) or "/../" in value + "/" or value.rstrip("/") == "":
                raise PersistError(
                    f"{name} {value!r} must be an absolute path of letters, digits and . _ / @ + - "
                    "(it goes into the unit's ExecStart lines, which systemd splits on spaces)"
                )
        if self.netns_path is not None and not _SAFE_PATH.match(self.netns_path):
            raise PersistError(f"network namespace path {self.netns_path!r} cannot go into a unit file (plain characters only)")

    @property
    def unit_path(self) -> str:
        """Where the unit file goes."""
        return os.path.join(self.unit_dir, UNIT_NAME)

    @property
    def wants_link(self) -> str:
        """The ``systemctl enable`` symlink."""
        return os.path.join(self.unit_dir, f"{WANTED_BY}.wants", UNIT_NAME)


@dataclasses.dataclass(frozen=True)
class PersistFile:
    """One file this module owns, with the content and mode it should have (``None``: remove it)."""

    path: str
    content: Optional[str]
    mode: int = FILE_MODE


def netns_file(namespace: Optional[Namespace]) -> Optional[str]:
    """The file of a non-root network namespace (for ``NetworkNamespacePath=``), or None for the root one."""
    if namespace is None or namespace.is_root:
        return None
    return namespace.path or os.path.join(NETNS_DIRS[0], namespace.name or "")


def systemd_running(marker: str = SYSTEMD_MARKER) -> bool:
    """``sd_booted()``: systemd is PID 1 when its runtime directory exists."""
    return os.path.isdir(marker)


def closed_ruleset(management: Sequence[str]) -> Ruleset:
    """The ``boot_policy: closed`` ruleset: loopback, established/related and SSH from ``management``."""
    if not management:
        raise PersistError(
            "boot_policy closed needs management addresses (management_addresses, or keep_ssh with an SSH client): "
            "without them the host would boot with SSH closed to everyone"
        )
    chains = []
    for name, hook in (("ingress", "input"), ("egress", "output")):
        rules = (
            Rule(verdict="accept", origin=f"{CLOSED_ORIGIN}: loopback", interface="lo"),
            Rule(verdict="accept", origin=f"{CLOSED_ORIGIN}: established", conntrack=("established", "related")),
        )
        chains.append(Chain(name=name, hook=hook, rules=rules, default_verdict="deny", default_origin=CLOSED_ORIGIN))
    return with_management_access(Ruleset(chains=tuple(chains)), management)


def boot_steps(backend: Backend, ruleset: Ruleset) -> list[Step]:
    """The backend's own transaction that creates ``ruleset`` in an empty namespace (sets before rules)."""
    from .iptables import IptablesBackend, State  # noqa: PLC0415  (keep the module import light)

    if isinstance(backend, IptablesBackend):
        return backend.transaction(backend.desired_state(ruleset), State())
    from .nftables import NftablesBackend, full_script, render_table  # noqa: PLC0415

    if isinstance(backend, NftablesBackend):
        return [Step(("nft", "-f", "-"), full_script(render_table(ruleset, backend.options)), "nft -f (table inet zerotrust)")]
    raise PersistError(f"backend {backend.name} has no boot restore")


def _file_name(step: Step) -> str:
    tool = os.path.basename(step.argv[0])
    if tool == "ipset":
        return IPSET_FILE
    if tool == "nft":
        return NFT_FILE
    return IPTABLES_FILES[6 if tool.startswith("ip6tables") else 4]


def tool_path(name: str) -> str:
    """The absolute path of a tool (systemd wants one); ``/usr/sbin/NAME`` when it cannot be found."""
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":" + TOOL_PATH)
    return os.path.abspath(found) if found else f"/usr/sbin/{name}"


def exec_argv(step: Step, path: str) -> list[str]:
    """The command that runs ``step`` from the file ``path`` instead of stdin.

    ``ipset`` restores with ``-exist`` (creating a set that is there is no error); the
    restore tools and ``nft -f`` take the file as their last argument.
    """
    tool = tool_path(step.argv[0])
    args = list(step.argv[1:])
    if os.path.basename(step.argv[0]) == "ipset":
        return [tool, "-exist", "-file", path, *args]
    if args and args[-1] == "-":
        args = args[:-1]
    return [tool, *args, path]


def unit_text(commands: Sequence[Sequence[str]], options: PersistOptions, backend: str) -> str:
    """The systemd unit that runs ``commands`` at boot, before the network is configured."""
    lines = [
        "# Written by the zerotrust.workloads allowlist module: edits are overwritten by the next run.",
        "[Unit]",
        f"Description=zerotrust.workloads allowlist restore ({backend}, boot_policy {options.boot_policy})",
        "DefaultDependencies=no",
        "Wants=network-pre.target",
        "Before=network-pre.target shutdown.target",
        "After=systemd-modules-load.service local-fs.target",
        "Conflicts=shutdown.target",
        f"ConditionPathIsDirectory={options.persist_dir}",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
    ]
    if options.netns_path:
        lines.append(f"NetworkNamespacePath={options.netns_path}")
    lines.extend("ExecStart=" + " ".join(command) for command in commands)
    lines.extend(["", "[Install]", f"WantedBy={WANTED_BY}", ""])
    return "\n".join(lines)


def exec_start_commands(text: str) -> list[list[str]]:
    """The ``ExecStart=`` commands of a unit file, split as systemd splits them (for the lab's reboot)."""
    commands: list[list[str]] = []
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped
            continue
        if section == "[Service]" and stripped.startswith("ExecStart="):
            value = stripped[len("ExecStart=") :].lstrip("-@:+!")
            if value:
                commands.append(shlex.split(value))
    return commands


def desired_files(backend: Backend, ruleset: Ruleset, options: PersistOptions) -> list[PersistFile]:
    """Every file this module owns, with what it should hold for ``ruleset`` (``None``: should not exist)."""
    steps = boot_steps(backend, ruleset)
    wanted: dict[str, str] = {}
    commands: list[list[str]] = []
    for step in steps:
        name = _file_name(step)
        path = os.path.join(options.persist_dir, name)
        wanted[name] = step.stdin
        commands.append(exec_argv(step, path))
    files = [PersistFile(os.path.join(options.persist_dir, name), wanted.get(name)) for name in OWNED_FILES]
    files.append(PersistFile(options.unit_path, unit_text(commands, options, backend.name), UNIT_MODE))
    return files


def absent_files(options: PersistOptions) -> list[PersistFile]:
    """What ``state: absent`` leaves: none of our files, no unit."""
    return [PersistFile(os.path.join(options.persist_dir, name), None) for name in OWNED_FILES] + [
        PersistFile(options.unit_path, None, UNIT_MODE)
    ]


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise PersistError(f"cannot read {path}: {error}") from error


def _mode(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return -1


def plan_files(files: Sequence[PersistFile], options: PersistOptions) -> tuple[list[PersistFile], list[dict[str, str]]]:
    """The files that differ from what is on disk, and diff-mode entries for them."""
    changes: list[PersistFile] = []
    diffs: list[dict[str, str]] = []
    for wanted in files:
        current = _read(wanted.path)
        if current == wanted.content and (current is None or _mode(wanted.path) == wanted.mode):
            continue
        changes.append(wanted)
        diffs.append({"before_header": wanted.path, "after_header": wanted.path, "before": current or "", "after": wanted.content or ""})
    # The enable link is part of the unit: missing (or pointing elsewhere) while the unit should exist is a change.
    unit_wanted = any(item.path == options.unit_path and item.content is not None for item in files)
    link_ok = os.path.islink(options.wants_link) and os.readlink(options.wants_link) == options.unit_path
    link_there = os.path.lexists(options.wants_link)
    if (unit_wanted and not link_ok) or (not unit_wanted and link_there):
        before = f"{options.wants_link} -> {os.readlink(options.wants_link)}\n" if os.path.islink(options.wants_link) else ""
        after = f"{options.wants_link} -> {options.unit_path}\n" if unit_wanted else ""
        diffs.append({"before_header": options.wants_link, "after_header": options.wants_link, "before": before, "after": after})
        changes.append(PersistFile(options.wants_link, options.unit_path if unit_wanted else None, 0))
    return changes, diffs


def previous_files(changes: Sequence[PersistFile], options: PersistOptions) -> list[PersistFile]:
    """What the changed files are now (content and mode; ``None``: absent): what a rollback puts back."""
    previous = []
    for change in changes:
        if change.path == options.wants_link:
            target = os.readlink(change.path) if os.path.islink(change.path) else None
            previous.append(PersistFile(change.path, target, 0))
        else:
            previous.append(PersistFile(change.path, _read(change.path), max(_mode(change.path), 0) or change.mode))
    return previous


# Run by the rollback watchdog (argv, never a shell): puts persisted files back as they were before an
# apply the controller did not confirm, so a host that rolled back does not boot into the rules it refused.
# stdin: a JSON list of {"path", "content" (null: remove), "mode", "link" (content is a symlink target)}.
RESTORE_FILES_SCRIPT = r"""
import json, os, sys, tempfile
for entry in json.load(sys.stdin):
    path, content = entry["path"], entry["content"]
    if content is None or entry["link"]:
        if os.path.lexists(path):
            os.unlink(path)
        if content is not None:
            os.symlink(content, path)
        continue
    handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=os.path.dirname(path))
    os.fchmod(handle, entry["mode"])
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(content)
    os.replace(temporary, path)
"""


def restore_step(previous: Sequence[PersistFile], options: PersistOptions) -> Step:
    """The watchdog step that writes ``previous`` back (see RESTORE_FILES_SCRIPT)."""
    entries = [
        {"path": item.path, "content": item.content, "mode": item.mode, "link": item.path == options.wants_link} for item in previous
    ]
    return Step((sys.executable, "-c", RESTORE_FILES_SCRIPT), json.dumps(entries), "restore the persisted boot rules")


def write_atomic(path: str, content: str, mode: int) -> None:
    """Replace ``path`` with ``content`` in one rename (never a half-written file), created with ``mode``."""
    directory = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def write_changes(changes: Sequence[PersistFile], options: PersistOptions) -> None:
    """Write or remove every changed file, the unit's enable link last."""
    try:
        for change in changes:
            if change.content is None:
                if os.path.lexists(change.path):
                    os.unlink(change.path)
                continue
            if change.path == options.wants_link:
                os.makedirs(os.path.dirname(change.path), mode=0o755, exist_ok=True)
                if os.path.lexists(change.path):
                    os.unlink(change.path)
                os.symlink(change.content, change.path)
                continue
            directory = os.path.dirname(change.path)
            if directory == options.persist_dir.rstrip("/"):
                os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
                os.chmod(directory, DIR_MODE)
            else:
                os.makedirs(directory, mode=0o755, exist_ok=True)
            write_atomic(change.path, change.content, change.mode)
        wants_dir = os.path.dirname(options.wants_link)
        if os.path.isdir(wants_dir) and not os.listdir(wants_dir) and not os.path.lexists(options.unit_path):
            os.rmdir(wants_dir)
        if os.path.isdir(options.persist_dir) and not os.listdir(options.persist_dir) and not os.path.exists(options.unit_path):
            os.rmdir(options.persist_dir)
    except OSError as error:
        where = getattr(error, "filename", "") or options.persist_dir
        raise PersistError(f"persist: cannot write {where}: {error.strerror or error}") from error


def reload_systemd(options: PersistOptions) -> Optional[str]:
    """``systemctl daemon-reload`` after a unit change on a systemd host; a warning text when it fails."""
    if not systemd_running(options.systemd_marker):
        return None
    systemctl = shutil.which("systemctl", path=os.environ.get("PATH", "") + ":" + TOOL_PATH)
    if systemctl is None:
        return "persist: systemd runs but systemctl was not found; run `systemctl daemon-reload` to load the changed unit"
    # The root namespace's runner: the one place library code runs commands (and says why it is not run_command).
    done = Runner(Namespace()).run([systemctl, "daemon-reload"], check=False, write=True)
    if done.returncode != 0:
        return f"persist: systemctl daemon-reload failed ({done.stderr.strip()}); the unit is written and applies at the next boot"
    return None


def persist(backend: Optional[Backend], ruleset: Optional[Ruleset], management: Sequence[str], options: PersistOptions,
            *, present: bool, check_mode: bool) -> dict[str, Any]:
    """Plan and (outside check mode) write the boot restore; return the module's ``persist`` result.

    ``present`` with a ``ruleset`` persists it (or the closed ruleset); ``present=False``
    removes everything persisted. The result has ``changed``, ``files`` (paths changed),
    ``diff`` (diff-mode entries), ``warnings``, ``previous`` (after a write: the changed files as they
    were, for :func:`restore_step`) and, when nothing was done, ``skipped`` with why.
    """
    result: dict[str, Any] = {"changed": False, "files": [], "diff": [], "warnings": []}
    systemd = systemd_running(options.systemd_marker)
    if present and options.enabled is False:
        result["skipped"] = "persist is false"
        return result
    if present and options.enabled is None and not systemd:
        result["skipped"] = "no systemd"
        result["warnings"].append(
            f"persist: this host does not run systemd ({options.systemd_marker} is missing), so nothing would restore the "
            "rules at boot and none were written; the host boots with an empty firewall until the next run. Set persist: true "
            "to write the files and unit anyway (another init system loads them), or persist: false to silence this warning."
        )
        return result
    if present:
        if backend is None or ruleset is None:
            result["skipped"] = "no host ruleset in this run"
            return result
        boot = closed_ruleset(management) if options.boot_policy == "closed" else ruleset
        files = desired_files(backend, boot, options)
    else:
        files = absent_files(options)
    changes, diffs = plan_files(files, options)
    result["changed"] = bool(changes)
    result["files"] = [change.path for change in changes]
    result["diff"] = diffs
    result["boot_policy"] = options.boot_policy
    result["unit"] = options.unit_path
    result["systemd"] = systemd
    if changes and not check_mode:
        result["previous"] = previous_files(changes, options)
        write_changes(changes, options)
        if any(change.path in (options.unit_path, options.wants_link) for change in changes):
            warning = reload_systemd(options)
            if warning:
                result["warnings"].append(warning)
    return result

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""What the read commands printed about nf_tables, kept while nothing in nf_tables has changed.

Every run reads every namespace it is given, so a run with nothing to change (a no-op enforce, an
audit) costs a node three processes per pod with iptables-nft: ``iptables-nft-save``,
``ip6tables-nft-save`` and ``ipset save``, most of its time. What the first two print depends on
nothing but the namespace's nf_tables objects, and the kernel counts every committed nf_tables
transaction of a namespace, by any tool (its generation, :func:`netlink.nftables_generation`). So a
command's output recorded at generation G is what the command prints again as long as the
namespace is still at G.

An output is recorded only when the generation was the same just before and just after the commands
ran (nothing was committed in between), and is used only when the namespace's cookie and generation
both match: the cookie tells a namespace from a later one with a reused inode (whose generation
starts again at the same small number). ipsets live outside nf_tables and have no such counter: the
iptables backends list them over netlink on every read instead (``netlink.ipset_list``). A backend
asks for this through :meth:`Runner.read_nf_tables`; the iptables-legacy backend never does.

One file per host in the state directory (``/run``: gone with the reboot that resets every namespace,
and it names the boot it belongs to), written by every run, check mode included, as the namespace locks
beside it are: it records what was read and changes nothing on the host. An entry whose namespace file
is gone (a deleted pod) is dropped when the file is written. A file that cannot be read or parsed is
started afresh: it only ever saves commands.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional

FILE_PREFIX = "reads-"
FORMAT = 1
STALE_SECONDS = 86400
"""Another host's file not written for this long is removed (a lab's hosts share one state directory and come and go)."""
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
Generation = tuple[int, int]
"""``(namespace cookie, nf_tables generation)``."""


class ReadCache:
    """The recorded outputs of one host's nf_tables read commands, per namespace (by its label)."""

    def __init__(self, path: Optional[str], entries: Optional[dict[str, dict[str, Any]]] = None) -> None:
        self.path = path
        """The file it is kept in; ``None``: kept for this run only."""
        self.entries: dict[str, dict[str, Any]] = entries or {}
        self.changed = False

    @classmethod
    def load(cls, state_dir: str, host_id: str) -> ReadCache:
        """The host's cache file in ``state_dir`` (``host_id``: a file-name-safe identity of the host's namespace)."""
        if not boot_id():
            # Without the boot's id, a file from before a reboot could name a namespace by a cookie handed out again.
            return cls(None)
        path = os.path.join(state_dir, f"{FILE_PREFIX}{host_id}.json")
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, ValueError):
            return cls(path)
        if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("boot") != boot_id():
            return cls(path)
        entries = document.get("namespaces")
        if not isinstance(entries, dict):
            return cls(path)
        return cls(path, {label: entry for label, entry in entries.items() if _valid_entry(entry)})

    def outputs(self, label: str, generation: Generation, commands: Sequence[Sequence[str]]) -> Optional[list[str]]:
        """What ``commands`` printed in namespace ``label`` when it was at ``generation``, or ``None``."""
        entry = self.entries.get(label)
        if entry is None or (entry["cookie"], entry["generation"]) != generation:
            return None
        recorded: Mapping[str, str] = entry["outputs"]
        found = [recorded.get(command_key(command)) for command in commands]
        return None if any(output is None for output in found) else [str(output) for output in found]

    def record(self, label: str, file: Optional[str], generation: Generation, commands: Sequence[Sequence[str]],
               outputs: Sequence[str]) -> None:
        """Remember what ``commands`` printed in namespace ``label`` (``file``: its namespace file) at ``generation``."""
        entry = self.entries.get(label)
        if entry is None or (entry["cookie"], entry["generation"]) != generation or entry["file"] != file:
            entry = {"cookie": generation[0], "generation": generation[1], "file": file, "outputs": {}}
            self.entries[label] = entry
        for command, output in zip(commands, outputs):  # noqa: B905  (strict= needs 3.10; hosts run 3.9)
            entry["outputs"][command_key(command)] = output
        self.changed = True

    def save(self) -> None:
        """Write the file (when something was recorded), without the namespaces that are gone."""
        if self.path is None or not self.changed:
            return
        kept = {label: entry for label, entry in self.entries.items() if entry["file"] is None or os.path.exists(entry["file"])}
        document = {"format": FORMAT, "boot": boot_id(), "namespaces": kept}
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", dir=directory)
        try:
            # No fsync: a file lost or cut short in a crash is started afresh (see load), nothing more.
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(document, stream, separators=(",", ":"))
            os.replace(temporary, self.path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        self.changed = False
        _remove_stale(directory, keep=self.path)


def _remove_stale(directory: str, keep: str) -> None:
    """Remove the cache files of hosts that have not run here for :data:`STALE_SECONDS` (their namespaces are gone)."""
    now = time.time()
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if not name.startswith(FILE_PREFIX) or not name.endswith(".json") or path == keep:
            continue
        try:
            if now - os.stat(path).st_mtime > STALE_SECONDS:
                os.unlink(path)
        except OSError:
            continue  # removed by another run meanwhile


def command_key(command: Sequence[str]) -> str:
    """How an output is filed: the command line and the identity of the program that printed it.

    A program replaced by an upgrade may print the same objects another way; its outputs are not reused.
    """
    return "\0".join((*command, _program_identity(command[0])))


@functools.lru_cache(maxsize=16)
def _program_identity(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin")
    if found is None:
        return ""
    real = os.path.realpath(found)
    try:
        info = os.stat(real)
    except OSError:
        return real
    return f"{real}:{info.st_size}:{info.st_mtime_ns}"


@functools.lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot's id (namespace cookies start again after a reboot); empty where the kernel does not say."""
    try:
        with open(BOOT_ID_FILE, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _valid_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("cookie"), int)
        and isinstance(entry.get("generation"), int)
        and (entry.get("file") is None or isinstance(entry.get("file"), str))
        and isinstance(entry.get("outputs"), dict)
        and all(isinstance(key, str) and isinstance(value, str) for key, value in entry["outputs"].items())
    )

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Find a pod's network namespace on this node.

Order: the explicit ``netns`` hint (a name under /run/netns or /var/run/netns, a
path, or a PID), then the CRI (``crictl``), then a search of the named namespaces
for one that holds one of the pod's IPs. The root namespace is never a pod's.
Everything from the cluster (names, hints) only ever travels as separate argv
elements or as a file name checked to be a plain name.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from .errors import CommandError, NamespaceNotFoundError
from .runner import NETNS_DIRS, Namespace, Runner, tool_exists

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$")


def resolve_pod_namespace(pod: Mapping[str, Any], runner: Optional[Runner] = None) -> Namespace:
    """The namespace of ``pod`` (a plan entry), or NamespaceNotFoundError saying what was tried."""
    host_runner = runner or Runner(Namespace())
    tried: list[str] = []
    hint = pod.get("netns")
    if hint:
        found = namespace_from_hint(str(hint))
        if found is not None:
            return found
        tried.append(f"netns hint {hint!r} does not exist")
    if tool_exists("crictl") and pod.get("name") and pod.get("namespace"):
        try:
            found = namespace_from_cri(host_runner, str(pod["namespace"]), str(pod["name"]), str(pod.get("uid") or ""))
        except CommandError as error:
            tried.append(f"crictl failed: {error}")
        else:
            if found is not None:
                return found
            tried.append("crictl knows no ready sandbox for it")
    ips = [str(ip) for ip in pod.get("ips") or ()]
    if ips:
        found = namespace_holding(host_runner, ips)
        if found is not None:
            return found
        tried.append(f"no namespace under {' or '.join(NETNS_DIRS)} holds {', '.join(ips)}")
    else:
        tried.append("the pod has no IPs to search for")
    raise NamespaceNotFoundError("network namespace not found (the pod is gone or not on this node): " + "; ".join(tried))


def namespace_from_hint(hint: str) -> Optional[Namespace]:
    """A name under /run/netns, a path to a namespace file, or a PID."""
    if hint.isdigit():
        path = f"/proc/{int(hint)}/ns/net"
        return Namespace(path=path) if _is_namespace_file(path) and not _is_root_namespace(path) else None
    if "/" in hint:
        return Namespace(path=hint) if _is_namespace_file(hint) and not _is_root_namespace(hint) else None
    if not _PLAIN_NAME.match(hint) or hint in (".", ".."):
        return None
    if os.path.exists(os.path.join(NETNS_DIRS[0], hint)):
        return Namespace(name=hint)
    for directory in NETNS_DIRS[1:]:
        path = os.path.join(directory, hint)
        if os.path.exists(path):
            return Namespace(path=path)
    return None


def namespace_from_cri(runner: Runner, pod_namespace: str, pod_name: str, uid: str = "") -> Optional[Namespace]:
    """Ask the CRI: ``crictl pods`` for the sandbox, ``crictl inspectp`` for its netns path."""
    listed = runner.run(["crictl", "pods", "--namespace", pod_namespace, "--name", pod_name, "--state", "ready", "-q"])
    for sandbox in listed.stdout.split():
        inspected = runner.run(["crictl", "inspectp", "-o", "json", sandbox])
        try:
            data = json.loads(inspected.stdout)
        except ValueError:
            continue
        metadata = data.get("status", {}).get("metadata", {})
        if metadata.get("name") != pod_name or metadata.get("namespace") != pod_namespace:
            continue  # crictl's --name is a pattern: make sure it is this pod
        if uid and metadata.get("uid") not in (None, uid):
            continue
        path = sandbox_netns_path(data)
        if path and os.path.exists(path):
            return Namespace(path=path)
    return None


def sandbox_netns_path(inspect: Mapping[str, Any]) -> Optional[str]:
    """The network namespace path in ``crictl inspectp -o json`` output."""
    namespaces = inspect.get("info", {}).get("runtimeSpec", {}).get("linux", {}).get("namespaces", [])
    for entry in namespaces:
        if entry.get("type") == "network" and entry.get("path"):
            return str(entry["path"])
    return None


def named_namespaces() -> list[str]:
    """Names under /run/netns (and /var/run/netns when it is a different directory)."""
    names: list[str] = []
    seen: set[str] = set()
    for directory in NETNS_DIRS:
        try:
            real = os.path.realpath(directory)
            if real in seen:
                continue
            seen.add(real)
            names.extend(sorted(entry for entry in os.listdir(directory) if _PLAIN_NAME.match(entry)))
        except OSError:
            continue
    return names


def namespace_holding(runner: Runner, ips: Sequence[str]) -> Optional[Namespace]:
    """The named namespace (not the root one) that has one of ``ips`` on an interface."""
    wanted = set()
    for ip in ips:
        try:
            wanted.add(ipaddress.ip_address(ip.split("/", 1)[0]))
        except ValueError:
            continue
    for name in named_namespaces():
        if _is_root_namespace(os.path.join(NETNS_DIRS[0], name)):
            continue
        try:
            result = runner.run(["ip", "-n", name, "-j", "addr", "show"])
            interfaces = json.loads(result.stdout or "[]")
        except (CommandError, ValueError):
            continue
        for interface in interfaces:
            for address in interface.get("addr_info", []):
                try:
                    if ipaddress.ip_address(address.get("local", "")) in wanted:
                        return Namespace(name=name)
                except ValueError:
                    continue
    return None


def _is_namespace_file(path: str) -> bool:
    """An absolute path to a namespace (on nsfs, like our own), not any file."""
    if not os.path.isabs(path):
        return False
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def _is_root_namespace(path: str) -> bool:
    try:
        ours = os.stat("/proc/self/ns/net")
        theirs = os.stat(path)
    except OSError:
        return False
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)

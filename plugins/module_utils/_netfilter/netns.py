# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Find a pod's network namespace on this node.

Order: the explicit ``netns`` hint (a name under /run/netns or /var/run/netns, a
path, or a PID), then the CRI (``crictl``), then a search of the named namespaces
for one that holds one of the pod's IPs (those linked to this node first). The root
namespace is never a pod's.
Everything from the cluster (names, hints) only ever travels as separate argv
elements or as a file name checked to be a plain name.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Optional, Union

from .errors import CommandError, NamespaceNotFoundError
from .model import _kind
from .runner import NETNS_DIRS, CommandResult, Namespace, Runner, enter_namespace, return_to, tool_exists

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$")


class AddressIndex:
    """Which named namespace holds which address: each namespace is read at most once per index.

    A node's module run resolves all its pods by IP; searching the named namespaces afresh for
    each pod costs one ``ip`` process per namespace per pod, which grows with the square of the
    pods on the node (200 pods: thousands of processes). The index reads the namespaces in order
    only as far as the next wanted address, and remembers every address it has seen. It reads a
    namespace's addresses by entering it for a moment in this process (:func:`addresses_in_namespace`),
    and with ``ip -n NAME addr`` where that is not possible.
    """

    def __init__(self, runner: Optional[Runner] = None, in_process: bool = True) -> None:
        self.runner = runner or Runner(Namespace())
        self._owners: dict[IPAddress, Namespace] = {}
        self._unread: Optional[Iterator[str]] = None
        self._unread_by_ip: Optional[Iterator[str]] = None
        self._order: Optional[list[str]] = None
        self.in_process = in_process
        """Read addresses by entering each namespace in this process (no process per namespace)."""

    def find(self, ips: Sequence[str]) -> Optional[Namespace]:
        """The first named namespace (not the root one) holding one of ``ips``."""
        wanted = set()
        for ip in ips:
            try:
                wanted.add(ipaddress.ip_address(ip.split("/", 1)[0]))
            except ValueError:
                continue
        for address in sorted(wanted, key=str):
            if address in self._owners:
                return self._owners[address]
        if self._unread is None:
            self._unread = iter(self.search_order())
        found = self._scan(self._unread, self._addresses, wanted)
        if found is None and self.in_process:
            # The in-process read sees IPv4 addresses of interfaces that are up; ``ip`` sees every address.
            # Only a pod not found so far pays for this second pass, and each namespace is read once by it.
            if self._unread_by_ip is None:
                self._unread_by_ip = iter(self.search_order())
            found = self._scan(self._unread_by_ip, self._addresses_by_ip, wanted)
        return found

    def search_order(self) -> list[str]:
        """The named namespaces, those linked to this one first; listed once per index (both passes use it).

        A pod's namespace is linked to its node's: its veth's peer lives there, so the kernel has given it a
        namespace id here (``ip netns list`` shows ``(id: N)``). Where /run/netns also holds namespaces of other
        things (or, on a machine that hosts several nodes, of other nodes' pods) the search reads this node's
        first and usually stops before the rest. Only an order: a pod found nowhere among them is still looked
        for in every other namespace.
        """
        if self._order is None:
            names = named_namespaces()
            try:
                listed = self.runner.run(["ip", "netns", "list"]).stdout
            except (CommandError, OSError):
                linked: set[str] = set()
            else:
                linked = {line.split(maxsplit=1)[0] for line in listed.splitlines() if "(id:" in line}
            self._order = sorted(names, key=lambda name: name not in linked)  # stable: by name within each group
        return self._order

    def _scan(self, names: Iterator[str], read: Callable[[str], set[IPAddress]], wanted: set[IPAddress]) -> Optional[Namespace]:
        for name in names:
            held = read(name)
            namespace = Namespace(name=name)
            for address in held:
                self._owners.setdefault(address, namespace)
            if held & wanted:
                return namespace
        return None

    def addresses_of(self, namespace: Namespace, wanted: Optional[set[IPAddress]] = None) -> set[IPAddress]:
        """The local addresses of one namespace (a name under /run/netns or a path), to verify a hint.

        Every address, or, given ``wanted``, enough of them to see whether the namespace holds one of those.
        """
        if namespace.name is not None:
            held = self._addresses(namespace.name)
            if wanted and held & wanted:
                return held  # the hint is verified: ip would add nothing but one more process per pod
            # The in-process read misses interfaces that are down: ask ip as well before calling it a mismatch.
            return held | (self._addresses_by_ip(namespace.name) if self.in_process else set())
        return self._read(namespace.path or "", lambda: Runner(namespace).run(["ip", "-j", "addr", "show"]))

    def _addresses(self, name: str) -> set[IPAddress]:
        return self._read(os.path.join(NETNS_DIRS[0], name), lambda: self._ip_addr_show(name))

    def _read(self, path: str, ip_addr_show: Callable[[], CommandResult]) -> set[IPAddress]:
        """The addresses of the namespace at ``path``: in-process (setns) while that works, else ``ip -j addr show``."""
        if _is_root_namespace(path):
            return set()
        if self.in_process:
            try:
                return addresses_in_namespace(path)
            except OSError:
                # No setns here (no privilege, no libc): read with ip from now on.
                self.in_process = False
        return _addresses_from_ip(ip_addr_show)

    def _addresses_by_ip(self, name: str) -> set[IPAddress]:
        if _is_root_namespace(os.path.join(NETNS_DIRS[0], name)):
            return set()
        return _addresses_from_ip(lambda: self._ip_addr_show(name))

    def _ip_addr_show(self, name: str) -> CommandResult:
        return self.runner.run(["ip", "-n", name, "-j", "addr", "show"])


def _addresses_from_ip(ip_addr_show: Callable[[], CommandResult]) -> set[IPAddress]:
    """The local addresses in ``ip -j addr show`` output; none when ip fails or prints no JSON."""
    try:
        interfaces = json.loads(ip_addr_show().stdout or "[]")
    except (CommandError, ValueError):
        return set()
    found = set()
    for interface in interfaces:
        for address in interface.get("addr_info", []):
            try:
                found.add(ipaddress.ip_address(address.get("local", "")))
            except ValueError:
                continue
    return found


def addresses_in_namespace(path: str) -> set[IPAddress]:
    """The local addresses of the namespace at ``path``: this thread enters it, reads its /proc/net files, and
    comes back. IPv4 from ``fib_trie`` (its ``/32 host LOCAL`` entries, so addresses of interfaces that are up),
    IPv6 from ``if_inet6``.

    Raises OSError when the namespace cannot be entered (nothing changed then), and NetfilterError when this
    thread cannot return to its own namespace: every later command would run in the wrong one.
    """
    target = os.open(path, os.O_RDONLY)
    try:
        own = enter_namespace(target)
    finally:
        os.close(target)
    try:
        trie = _read_proc_net("fib_trie")
        inet6 = _read_proc_net("if_inet6")
    finally:
        return_to(own, f"reading {path}")
    found: set[IPAddress] = set()
    previous = ""
    for line in trie.splitlines():
        stripped = line.strip()
        if stripped.startswith("|-- "):
            previous = stripped[4:]
        elif stripped == "/32 host LOCAL" and previous:
            found.add(ipaddress.IPv4Address(previous))
    for line in inet6.splitlines():
        words = line.split()
        if words and len(words[0]) == 32:
            found.add(ipaddress.IPv6Address(int(words[0], 16)))
    return found


def _read_proc_net(name: str) -> str:
    try:
        with open(f"/proc/thread-self/net/{name}", encoding="ascii") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""  # if_inet6 is missing where IPv6 is disabled


def resolve_pod_namespace(pod: Mapping[str, Any], runner: Optional[Runner] = None, index: Optional[AddressIndex] = None) -> Namespace:
    """The namespace of ``pod`` (a plan entry), or NamespaceNotFoundError saying what was tried.

    Pass one ``index`` for all the pods of a run so the search by IP reads each namespace once.
    """
    host_runner = runner or Runner(Namespace())
    tried: list[str] = []
    wanted = pod_addresses(pod)
    hint = pod.get("netns")
    if hint:
        found = namespace_from_hint(str(hint))
        if found is not None:
            # A hint is a hostvar, not the CRI's word: trust it only when the namespace holds the pod's address.
            if not wanted:
                raise NamespaceNotFoundError(f"netns hint {hint!r} cannot be verified: the pod has no IPs to look for in it")
            if wanted & (index or AddressIndex(host_runner)).addresses_of(found, wanted):
                return found
            raise NamespaceNotFoundError(
                f"netns hint {hint!r} holds none of the pod's addresses ({', '.join(str(ip) for ip in sorted(wanted, key=str))}): "
                "it is another namespace; fix or remove the pod's zt_netns"
            )
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
        found = (index or AddressIndex(host_runner)).find(ips)
        if found is not None:
            return found
        tried.append(f"no namespace under {' or '.join(NETNS_DIRS)} holds {', '.join(ips)}")
    else:
        tried.append("the pod has no IPs to search for")
    raise NamespaceNotFoundError("network namespace not found (the pod is gone or not on this node): " + "; ".join(tried))


def pod_addresses(pod: Mapping[str, Any]) -> set[IPAddress]:
    """The pod's ``ips`` as addresses; NamespaceNotFoundError (the pod is skipped) when they are not all addresses."""
    ips = pod.get("ips") or []
    if not isinstance(ips, (list, tuple)):
        raise NamespaceNotFoundError(f"the pod's ips must be a list of addresses, got {_kind(ips)}")
    found: set[IPAddress] = set()
    bad: list[str] = []
    for ip in ips:
        text = str(ip).split("/", 1)[0]
        try:
            if "%" in text:
                raise ValueError("zone")  # fe80::1%eth0: no namespace holds an address with a zone
            found.add(ipaddress.ip_address(text))
        except ValueError:
            bad.append(repr(ip))
    if bad:
        raise NamespaceNotFoundError(f"the pod's ips are not all IP addresses: {', '.join(bad)}")
    return found


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

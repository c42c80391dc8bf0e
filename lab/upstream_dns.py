# SPDX-License-Identifier: GPL-3.0-or-later
"""The upstream resolver VM's server: Debian's dnsmasq answering a few fixed external names.

It stands for the resolver a cluster's CoreDNS forwards to. It answers only what it is told
(``NAMES`` / ``NAMES_V6``: documentation addresses, nothing ever listens or is sent there),
says NXDOMAIN for every other name, and never forwards anything anywhere (no upstream servers,
no /etc/resolv.conf, no /etc/hosts, no config file). It binds only the VM's address(es).

    argv = upstream_dns.dnsmasq_argv(["10.0.0.53"])
    state["processes"].append(start_process(in_netns(netns, argv), ...))   # as lab/build.py starts processes
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Mapping, Sequence

from lab.errors import LabError

# External names the upstream answers: name -> IPv4 (TEST-NET-1, RFC 5737) and -> IPv6 (RFC 3849).
NAMES: Mapping[str, str] = {"www.example.test": "192.0.2.80", "mirror.example.test": "192.0.2.81"}
NAMES_V6: Mapping[str, str] = {"www.example.test": "2001:db8::80"}
# A name in the same zone it does not know: the probe can expect NXDOMAIN from it.
UNKNOWN_NAME = "missing.example.test"
PORT = 53
TTL = 30


def dnsmasq_binary() -> str:
    """dnsmasq's path; LabError saying how to install it when missing."""
    path = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if shutil.which("/usr/sbin/dnsmasq") else None)
    if path is None:
        raise LabError("dnsmasq is not installed; install dnsmasq-base (scripts/setup-system.sh does) and retry")
    return path


def dnsmasq_argv(
    listen: Sequence[str],
    *,
    port: int = PORT,
    names: Mapping[str, str] = NAMES,
    names_v6: Mapping[str, str] = NAMES_V6,
    binary: str | None = None,
    log_queries: bool = True,
) -> list[str]:
    """The dnsmasq command line (run it inside the VM's namespace; it stays in the foreground).

    ``listen``: the VM's address(es) (IP literals). Raises LabError on a bad address or name.
    """
    if not listen:
        raise LabError("the upstream resolver needs at least one address to listen on")
    try:
        addresses = [str(ipaddress.ip_address(address)) for address in listen]
        records = {name: [str(ipaddress.IPv4Address(address))] for name, address in names.items()}
        for name, address in names_v6.items():
            records.setdefault(name, []).append(str(ipaddress.IPv6Address(address)))
    except ValueError as exc:
        raise LabError(f"upstream resolver: {exc}") from None
    for name in records:
        labels = name.split(".")
        if not all(label and len(label) < 64 and label.replace("-", "").isalnum() and label.isascii() for label in labels):
            raise LabError(f"upstream resolver: {name!r} is not a DNS name (letters, digits and '-' in dot-separated labels)")
    argv = [
        binary or dnsmasq_binary(),
        "--no-daemon",  # foreground: the lab tracks and stops it by PID
        "--conf-file=/dev/null",  # no /etc/dnsmasq.conf or /etc/dnsmasq.d, whatever the host has
        "--no-resolv",  # never read /etc/resolv.conf: no upstream servers at all
        "--no-hosts",
        "--no-poll",
        "--pid-file=",  # no PID file
        "--user=root",  # stay root inside the namespace (no nobody/dip users needed)
        "--bind-interfaces",  # bind the given addresses only, not the wildcard
        f"--port={port}",
        f"--local-ttl={TTL}",
        "--cache-size=0",
        *(f"--listen-address={address}" for address in addresses),
        *(f"--host-record={name},{','.join(ips)}" for name, ips in records.items()),
        "--address=/#/",  # every other name: NXDOMAIN, answered here, never forwarded
    ]
    if log_queries:
        argv.append("--log-queries")
    return argv

# SPDX-License-Identifier: GPL-3.0-or-later
"""A userspace VXLAN tunnel endpoint behind a TAP device (stdlib only; runs in a node namespace).

Some kernels (minimal VM and container kernels) are built without the ``vxlan`` driver, so
``ip link add flannel.1 type vxlan`` fails with "Unknown device type". Then ``lab/overlay.py``
makes ``flannel.1`` a TAP device, configures it exactly as flannel configures its VXLAN device
(MAC, /32 address, onlink routes, permanent neighbours), and starts this process, which does the
driver's job: every Ethernet frame the kernel routes into ``flannel.1`` is wrapped in a VXLAN
header (RFC 7348: flags 0x08, 24-bit VNI) and sent over UDP from the node's underlay address to
the peer that owns the destination MAC (the static FDB given as ``--peer MAC=ADDRESS``), to port
8472; every VXLAN datagram received on <node address>:8472 from a known peer with our VNI is
unwrapped and written back into ``flannel.1``. The packets on the wire are those of a kernel VTEP
(outer source port: one ephemeral port, as the kernel picks one per flow), so iptables in the
node sees and can drop them in OUTPUT and INPUT like the real thing.

As with ``nolearning`` and no default destination, frames to unknown or multicast MACs are
dropped (flannel installs permanent neighbours, so nothing needs ARP or neighbour discovery).

    python3 lab/vtep.py --device flannel.1 --local 10.0.0.11 --vni 1 --port 8472 \\
        --peer 0e:12:34:56:78:9a=10.0.0.12
    python3 lab/vtep.py --device flannel-v6.1 --local fd00::11 --peer 0e:ab:cd:ef:01:23=fd00::12
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import os
import select
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
VXLAN_FLAGS = 0x08  # "I": the VNI field is valid
HEADER = struct.Struct("!B3xI")  # flags, 3 reserved bytes, VNI << 8 (low byte reserved)
MAX_FRAME = 65535


def parse_mac(text: str) -> bytes:
    """``0e:12:34:56:78:9a`` -> 6 bytes; ValueError on anything else."""
    parts = text.split(":")
    if len(parts) != 6 or not all(len(part) == 2 for part in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(part, 16) for part in parts)


def encapsulate(vni: int, frame: bytes) -> bytes:
    """The VXLAN datagram payload carrying ``frame``."""
    return HEADER.pack(VXLAN_FLAGS, vni << 8) + frame


def decapsulate(vni: int, datagram: bytes) -> bytes | None:
    """The inner frame of a VXLAN payload for ``vni``; None when it is not one (never raises)."""
    if len(datagram) < HEADER.size + 14:
        return None
    flags, vni_field = HEADER.unpack_from(datagram)
    if not flags & VXLAN_FLAGS or vni_field >> 8 != vni:
        return None
    return datagram[HEADER.size :]


def open_tap(device: str) -> int:
    """Attach to the (persistent) TAP device ``device``; returns its file descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def run(device: str, local: str, vni: int, port: int, fdb: dict[bytes, str]) -> None:
    """Forward between the TAP device and the underlay until terminated."""
    peers = set(fdb.values())
    tap = open_tap(device)
    family = socket.AF_INET6 if ":" in local else socket.AF_INET
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((local, port))
    sender = socket.socket(family, socket.SOCK_DGRAM)
    sender.bind((local, 0))
    print(f"vtep {device} vni {vni} on {local}:{port}, {len(fdb)} peer(s)", file=sys.stderr, flush=True)
    while True:
        readable, _, _ = select.select([tap, receiver.fileno()], [], [])
        if tap in readable:
            frame = os.read(tap, MAX_FRAME)
            peer = fdb.get(frame[:6]) if len(frame) >= 14 else None
            if peer is not None:
                try:
                    sender.sendto(encapsulate(vni, frame), (peer, port))
                except OSError as exc:  # e.g. EPERM from an iptables DROP in OUTPUT: the frame is lost, as in the kernel
                    print(f"send to {peer}: {exc}", file=sys.stderr, flush=True)
        if receiver.fileno() in readable:
            datagram, peer_address = receiver.recvfrom(MAX_FRAME)
            source = peer_address[0]
            inner = decapsulate(vni, datagram) if source in peers else None
            if inner is not None:
                try:
                    os.write(tap, inner)
                except OSError as exc:
                    print(f"write to {device}: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="flannel.1")
    parser.add_argument("--local", required=True, help="this node's underlay address (IPv4, or IPv6 for flannel-v6.1)")
    parser.add_argument("--vni", type=int, default=1)
    parser.add_argument("--port", type=int, default=8472)
    parser.add_argument("--peer", action="append", default=[], metavar="MAC=ADDRESS", help="a static FDB entry")
    args = parser.parse_args(argv)
    try:
        local = ipaddress.ip_address(args.local)
    except ValueError as exc:
        parser.error(f"--local: {exc}")
    fdb: dict[bytes, str] = {}
    for entry in args.peer:
        mac, _, address = entry.partition("=")
        try:
            peer = ipaddress.ip_address(address)
            if peer.version != local.version:
                raise ValueError(f"{peer} is not an IPv{local.version} address like --local")
            fdb[parse_mac(mac)] = str(peer)
        except ValueError as exc:
            parser.error(f"--peer {entry!r}: {exc}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run(args.device, str(local), args.vni, args.port, fdb)
    return 0


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: GPL-3.0-or-later
"""A workload's listener: run inside a pod or VM network namespace (stdlib only).

For every TCP port it accepts, writes back one line with the peer address it saw and the local
address the connection arrived at (``PEER LOCAL``), and closes; for every UDP port it answers
each datagram the same way. The probe uses the peer to show the source a pod really sees (e.g.
kube-proxy's masquerade address) and the local address to tell which endpoint of a Service
answered (kube-proxy's DNAT has rewritten the destination to the endpoint's own address).

    python3 lab/listener.py --tcp 80 --tcp 8080 --udp 53
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
from typing import Any


def _peer(address: str) -> str:
    # Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d.
    return address[7:] if address.startswith("::ffff:") else address


def open_socket(kind: int, port: int) -> socket.socket:
    """A dual-stack socket bound to ``port`` (IPv4 only where the namespace has no IPv6); TCP listens, UDP reports destinations."""
    try:
        sock = socket.socket(socket.AF_INET6, kind)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", port))
    except OSError:
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))  # noqa: S104 - inside a lab namespace only
    if kind == socket.SOCK_STREAM:
        sock.listen(128)
    else:
        with contextlib.suppress(OSError):  # a dual-stack socket reports IPv4 destinations as ::ffff:a.b.c.d
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    return sock


def answer_connection(conn: socket.socket, peer: tuple[Any, ...]) -> None:
    """Write ``PEER LOCAL`` on an accepted connection and close it."""
    try:
        conn.settimeout(2)
        conn.sendall(f"{_peer(peer[0])} {_peer(conn.getsockname()[0])}\n".encode())
    except OSError:
        pass
    finally:
        conn.close()


def answer_datagram(server: socket.socket) -> None:
    """Receive one datagram and send back the peer address and the address it was sent to (when the kernel tells)."""
    _, ancillary, _flags, peer = server.recvmsg(2048, socket.CMSG_SPACE(20))
    local = ""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 16:
            local = " " + _peer(socket.inet_ntop(socket.AF_INET6, data[:16]))
    with contextlib.suppress(OSError):
        server.sendto(f"{_peer(peer[0])}{local}\n".encode(), peer)


def serve_tcp(port: int) -> None:
    """Accept forever; answer each connection with the peer address."""
    server = open_socket(socket.SOCK_STREAM, port)
    while True:
        answer_connection(*server.accept())


def serve_udp(port: int) -> None:
    """Answer every datagram with the peer address and the address it was sent to."""
    server = open_socket(socket.SOCK_DGRAM, port)
    while True:
        answer_datagram(server)


def main() -> None:
    """Start one thread per port and wait."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tcp", type=int, action="append", default=[])
    parser.add_argument("--udp", type=int, action="append", default=[])
    args = parser.parse_args()
    threads = [threading.Thread(target=serve_tcp, args=(port,), daemon=True) for port in args.tcp]
    threads += [threading.Thread(target=serve_udp, args=(port,), daemon=True) for port in args.udp]
    for thread in threads:
        thread.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: GPL-3.0-or-later
"""One listener process for many pod namespaces (stdlib only): the lab's pods at scale.

A process per pod costs about 10 MB and a start-up each; with 2,000 pods that is 20 GB and
minutes. This one runs in its node's namespace and, for each pod, enters the pod's network
namespace (``setns``), opens that pod's listening sockets there, and comes back: a socket stays
in the namespace it was created in, so one selector loop serves every pod of the node. Each
socket answers exactly as ``lab/listener.py`` does: a TCP connection gets one line
``PEER LOCAL`` (who connected, and the address the connection arrived at) and is closed; a UDP
datagram gets the same line back.

    python3 lab/podlistener.py --ready FILE --pod zt-pod-7=tcp/80,udp/53 --pod zt-pod-9=tcp/3306

``--ready`` is written once every socket is bound (the lab waits for it instead of asking each
namespace what listens).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import selectors
import socket
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def _peer(address: str) -> str:
    # Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d.
    return address[7:] if address.startswith("::ffff:") else address


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _bind(kind: int, port: int) -> socket.socket:
    """A dual-stack socket on ``port`` (IPv4 only where the namespace has no IPv6), non-blocking."""
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
    sock.setblocking(False)
    return sock


def parse_pod(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``NETNS=tcp/80,udp/53`` -> (netns, [(socket kind, port), ...]); ValueError naming what is wrong."""
    netns, _, ports = text.partition("=")
    if not netns or "/" in netns or not ports:
        raise ValueError(f"--pod {text!r}: expected NETNS=PROTO/PORT[,PROTO/PORT...]")
    kinds: dict[str, int] = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}
    parsed = []
    for item in ports.split(","):
        proto, _, number = item.partition("/")
        if proto not in kinds or not number.isdigit() or not 0 < int(number) < 65536:
            raise ValueError(f"--pod {text!r}: {item!r} is not tcp/PORT or udp/PORT")
        parsed.append((kinds[proto], int(number)))
    return netns, parsed


def open_sockets(pods: list[tuple[str, list[tuple[int, int]]]]) -> list[socket.socket]:
    """Open every pod's sockets inside its namespace; the process ends up back in its own namespace."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    sockets: list[socket.socket] = []
    try:
        for netns, ports in pods:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
            try:
                _setns(fd)
                sockets += [_bind(kind, port) for kind, port in ports]
            finally:
                _setns(home)
                os.close(fd)
    finally:
        os.close(home)
    return sockets


def _answer_tcp(server: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        conn, peer = server.accept()
        try:
            # A fresh connection's send buffer takes one short line without blocking.
            conn.send(f"{_peer(peer[0])} {_peer(conn.getsockname()[0])}\n".encode())
        except OSError:
            pass
        finally:
            conn.close()


def _answer_udp(server: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        _, ancillary, _flags, peer = server.recvmsg(2048, socket.CMSG_SPACE(20))
        local = ""
        for level, kind, data in ancillary:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 16:
                local = " " + _peer(socket.inet_ntop(socket.AF_INET6, data[:16]))
        with contextlib.suppress(OSError):
            server.sendto(f"{_peer(peer[0])}{local}\n".encode(), peer)


def serve(sockets: list[socket.socket]) -> None:
    """Answer on every socket forever, from one selector loop."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ, _answer_tcp if sock.type == socket.SOCK_STREAM else _answer_udp)
    while True:
        for key, _ in selector.select():
            key.data(key.fileobj)


def main() -> None:
    """Open every pod's sockets, say so in the ready file, serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pod", action="append", default=[], metavar="NETNS=PROTO/PORT,...", help="a pod namespace and its ports")
    parser.add_argument("--ready", help="file written once every socket is bound")
    args = parser.parse_args()
    try:
        pods = [parse_pod(text) for text in args.pod]
    except ValueError as exc:
        parser.error(str(exc))
    sockets = open_sockets(pods)
    if args.ready:
        Path(args.ready).write_text(f"{len(sockets)}\n")
    serve(sockets)


if __name__ == "__main__":
    main()

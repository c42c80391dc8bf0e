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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repository root holds lab/
from lab.listener import answer_connection, answer_datagram, open_socket

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _bind(kind: int, port: int) -> socket.socket:
    """``lab/listener.py``'s socket, non-blocking for the selector loop."""
    sock = open_socket(kind, port)
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
        answer_connection(*server.accept())


def _answer_udp(server: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        answer_datagram(server)


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

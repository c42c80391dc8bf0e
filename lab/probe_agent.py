# SPDX-License-Identifier: GPL-3.0-or-later
"""The probe's agent: run inside a source network namespace (stdlib only).

Reads a JSON list of ``{"key", "address", "port", "protocol", "timeout"}`` on stdin, tries them
all in parallel and prints ``{key: {"ok": bool, "seen": str|null, "error": str|null}}``.
TCP: connected when the handshake completes (``seen`` is the listener's echo of our address).
UDP: connected when the listener answers.
"""

from __future__ import annotations

import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def attempt(job: dict[str, Any]) -> dict[str, Any]:
    """Try one connection; never raises."""
    address, port, timeout = job["address"], int(job["port"]), float(job["timeout"])
    kind = socket.SOCK_DGRAM if job["protocol"] == "udp" else socket.SOCK_STREAM
    sock = socket.socket(_family(address), kind)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
        if kind == socket.SOCK_DGRAM:
            sock.send(b"probe\n")
        seen = None
        try:
            data = sock.recv(256)
            seen = data.decode(errors="replace").strip() or None
        except OSError:
            if kind == socket.SOCK_DGRAM:
                return {"ok": False, "seen": None, "error": "no answer"}
        return {"ok": True, "seen": seen, "error": None}
    except OSError as exc:
        return {"ok": False, "seen": None, "error": exc.strerror or type(exc).__name__}
    finally:
        sock.close()


def main() -> None:
    """Run every job from stdin in parallel; print the results as JSON."""
    jobs = json.load(sys.stdin)
    with ThreadPoolExecutor(max_workers=max(1, min(64, len(jobs)))) as pool:
        results = list(pool.map(attempt, jobs))
    json.dump({job["key"]: result for job, result in zip(jobs, results, strict=True)}, sys.stdout)


if __name__ == "__main__":
    main()

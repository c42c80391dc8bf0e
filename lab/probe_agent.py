# SPDX-License-Identifier: GPL-3.0-or-later
"""The probe's agent: run inside a source network namespace (stdlib only).

Reads a JSON list of ``{"key", "address", "port", "protocol", "timeout"}`` on stdin, tries them
all in parallel and prints ``{key: {"ok": bool, "seen": str|null, "error": str|null}}``.
TCP: connected when the handshake completes (``seen`` is the listener's echo of our address,
``served_by`` the address the connection arrived at: the endpoint kube-proxy chose).
UDP: connected when the listener answers (same echo).
A job with ``"attempts": N`` (a Service with several endpoints) is tried up to N times in a row,
stopping once every address in ``"endpoints"`` has answered; it prints ``"tries"``, each
attempt's outcome, and ``"ok"`` true only when every attempt connected.
DNS (``"protocol": "dns"``, optional ``"name"``): one A query over UDP; connected when a DNS
answer to it comes back (any rcode), with ``answers`` the A records it carries.
"""

from __future__ import annotations

import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Run as a script by /usr/bin/python3 inside a namespace: the repository root makes `lab` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lab.dnsquery import RCODES, query

ANSWERED = {*RCODES.values(), "no A record"}  # a DNS server answered, just not with an address


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


DEFAULT_QUERY = "kubernetes.default.svc.cluster.local"


def attempt_dns(job: dict[str, Any]) -> dict[str, Any]:
    """One A query over UDP (lab/dnsquery.py); connected when the server answers at all, even NXDOMAIN."""
    answers, error = query(job["address"], job.get("name") or DEFAULT_QUERY, "A", port=int(job["port"]), timeout=float(job["timeout"]))
    answered = error is None or error in ANSWERED
    return {"ok": answered, "seen": None, "answers": answers, "error": error}


def attempt(job: dict[str, Any]) -> dict[str, Any]:
    """Try one connection; never raises."""
    if job["protocol"] == "dns":
        return attempt_dns(job)
    address, port, timeout = job["address"], int(job["port"]), float(job["timeout"])
    kind = socket.SOCK_DGRAM if job["protocol"] == "udp" else socket.SOCK_STREAM
    sock = socket.socket(_family(address), kind)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
        if kind == socket.SOCK_DGRAM:
            sock.send(b"probe\n")
        seen = served_by = None
        try:
            data = sock.recv(256)
            # "PEER LOCAL" (older listeners echo only PEER)
            words = data.decode(errors="replace").split()
            seen = words[0] if words else None
            served_by = words[1] if len(words) > 1 else None
        except OSError:
            if kind == socket.SOCK_DGRAM:
                return {"ok": False, "seen": None, "error": "no answer"}
        return {"ok": True, "seen": seen, "served_by": served_by, "error": None}
    except OSError as exc:
        return {"ok": False, "seen": None, "error": exc.strerror or type(exc).__name__}
    finally:
        sock.close()


def attempt_many(job: dict[str, Any]) -> dict[str, Any]:
    """Try a job ``attempts`` times in a row, stopping once every expected endpoint has answered."""
    attempts = int(job.get("attempts") or 1)
    if attempts <= 1:
        return attempt(job)
    wanted = set(job.get("endpoints") or ())
    answered: set[str] = set()
    tries = []
    for _ in range(attempts):
        outcome = attempt(job)
        tries.append(outcome)
        if outcome["ok"] and outcome.get("served_by"):
            answered.add(str(outcome["served_by"]))
        if wanted and wanted <= answered:
            break
    first = next((outcome for outcome in tries if outcome["ok"]), tries[0])
    failed = next((outcome for outcome in tries if not outcome["ok"]), None)
    return {
        "ok": all(outcome["ok"] for outcome in tries),
        "seen": first.get("seen"),
        "error": None if failed is None else failed.get("error"),
        "tries": tries,
    }


def main() -> None:
    """Run every job from stdin in parallel; print the results as JSON."""
    jobs = json.load(sys.stdin)
    with ThreadPoolExecutor(max_workers=max(1, min(64, len(jobs)))) as pool:
        results = list(pool.map(attempt_many, jobs))
    json.dump({job["key"]: result for job, result in zip(jobs, results, strict=True)}, sys.stdout)


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: GPL-3.0-or-later
"""Kubelet stand-ins and the API server's side of the kubelet link (stdlib only; runs in node namespaces).

A real kubelet keeps talking to the API server from its node's address (lease renewals, watches,
status updates), and the API server opens connections to every kubelet on tcp/10250 (``kubectl
logs/exec``, metrics). Enforcement that forgets either takes the cluster down slowly: established
connections survive (conntrack) and only the next NEW one fails. So both sides here open a NEW
connection every ``--interval`` seconds and record, as JSON, when the last attempt started and
when the last one succeeded; the probe's cluster-health block waits for an attempt that started
after the probe did.

    python3 lab/kubelet.py kubelet --node k8s-node1 --address 172.18.221.11 --api-url https://172.18.221.10:6443 \\
        --ca .lab/kubeapi/ca.crt --token-file .lab/kubeapi/token --record .lab/run/kubelet.k8s-node1.json
    python3 lab/kubelet.py reach --source 172.18.221.10 --node k8s-node1=172.18.221.11 ... --record .lab/run/apiserver-kubelets.json

``kubelet`` also listens on ``--address``:10250 and answers each connection with one line
(``kubelet NODE``), as the real port answers TLS.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

KUBELET_PORT = 10250


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Replace ``path`` atomically, so a reader never sees half a record."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record) + "\n")
    os.replace(temporary, path)


def api_contact(url: str, context: ssl.SSLContext, token: str, *, source: str, node: str, timeout: float) -> int:
    """One NEW HTTPS connection from ``source`` to the API server: GET this node's object; returns the HTTP status."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPSConnection(
        parsed.hostname or "", parsed.port or 443, context=context, timeout=timeout, source_address=(source, 0)
    )
    try:
        connection.request("GET", f"/api/v1/nodes/{urllib.parse.quote(node)}", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def serve_kubelet_port(address: str, node: str) -> None:
    """Accept on ``address``:10250 forever; answer each connection with one line."""
    server = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, KUBELET_PORT))
    server.listen(64)
    while True:
        connection, _peer = server.accept()
        try:
            connection.settimeout(1)
            connection.sendall(f"kubelet {node}\n".encode())
        except OSError:
            pass
        finally:
            connection.close()


def run_kubelet(args: argparse.Namespace) -> None:
    """The kubelet stand-in: the 10250 listener, and a NEW API contact every interval, recorded."""
    threading.Thread(target=serve_kubelet_port, args=(args.address, args.node), daemon=True).start()
    context = ssl.create_default_context(cafile=args.ca)
    token = Path(args.token_file).read_text().strip()
    record_path = Path(args.record)
    record: dict[str, Any] = {"node": args.node, "source": args.address, "last_contact": None, "last_attempt": None, "error": None}
    while True:
        started = time.time()
        try:
            status = api_contact(args.api_url, context, token, source=args.address, node=args.node, timeout=args.timeout)
            error = None if status == 200 else f"HTTP {status}"
        except (OSError, http.client.HTTPException) as exc:
            error = str(exc) or type(exc).__name__
        record.update(last_attempt=started, error=error)
        if error is None:
            record["last_contact"] = started
        write_record(record_path, record)
        time.sleep(max(0.0, args.interval - (time.time() - started)))


def run_reach(args: argparse.Namespace) -> None:
    """The API server's side: a NEW connection to every kubelet's 10250 from ``--source`` every interval, recorded."""
    nodes = dict(entry.split("=", 1) for entry in args.node)
    record_path = Path(args.record)
    records: dict[str, dict[str, Any]] = {
        name: {"address": address, "last_ok": None, "last_attempt": None, "error": None} for name, address in nodes.items()
    }

    def reach(name: str, address: str) -> None:
        started = time.time()
        try:
            with socket.create_connection((address, KUBELET_PORT), timeout=args.timeout, source_address=(args.source, 0)) as connection:
                connection.recv(64)
            records[name].update(last_attempt=started, last_ok=started, error=None)
        except OSError as exc:
            records[name].update(last_attempt=started, error=exc.strerror or type(exc).__name__)

    while True:
        started = time.time()
        threads = [threading.Thread(target=reach, args=item) for item in nodes.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        write_record(record_path, {"source": args.source, "nodes": records})
        time.sleep(max(0.0, args.interval - (time.time() - started)))


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    kubelet = sub.add_parser("kubelet", help="a node's kubelet stand-in")
    kubelet.add_argument("--node", required=True)
    kubelet.add_argument("--address", required=True, help="the node's address (source of API contacts; the 10250 listener)")
    kubelet.add_argument("--api-url", required=True)
    kubelet.add_argument("--ca", required=True)
    kubelet.add_argument("--token-file", required=True)
    kubelet.add_argument("--record", required=True)
    reach = sub.add_parser("reach", help="the API server's connections to every kubelet")
    reach.add_argument("--source", required=True, help="the API server's address")
    reach.add_argument("--node", action="append", default=[], metavar="NAME=ADDRESS")
    reach.add_argument("--record", required=True)
    for command in (kubelet, reach):
        command.add_argument("--interval", type=float, default=1.0)
        command.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.command == "kubelet":
        run_kubelet(args)
    else:
        run_reach(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: GPL-3.0-or-later
"""Watch streams with a real API server's semantics, on top of the lab's emulated API.

kmock 0.8 streams watches, but every watch starts with the whole collection as ADDED events,
ignores ``resourceVersion`` and ``timeoutSeconds`` and never answers 410 Gone. The event source
of Event-Driven Ansible is tested on exactly those behaviours, so ``WatchingEmulator`` serves
watches of the lab's kinds itself:

- ``resourceVersion=N`` replays the changes after N from a history, then streams new ones;
  without it (or ``0``) the stream starts with the current objects as ADDED, as Kubernetes does;
- a version older than the retained history (``compact()``) gets an ``ERROR`` event with a
  410 ``Status``, as etcd compaction makes a real API server do;
- ``timeoutSeconds`` ends the stream; ``allowWatchBookmarks`` sends a ``BOOKMARK`` with the
  latest version before it ends;
- ``drop_watches()`` cuts every open stream (an API server restart, a load balancer timeout).

Authentication and the fault plan apply to watches as to every other request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp.web

from lab.kubeapi import KubeApiServer, LabKubernetesEmulator, ResourceKind, _error, _route


class WatchingEmulator(LabKubernetesEmulator):
    """The lab's emulator with resumable, expiring, time-limited watches."""

    def __init__(self, token: str | None = None, faults: Any = None) -> None:
        super().__init__(token=token, faults=faults)
        self.watch_history: list[tuple[int, str, dict[str, Any]]] = []  # (revision, kind, event)
        self.watch_compacted = 0  # revisions up to this one are no longer in the history
        self.watch_subscribers: set[asyncio.Queue[tuple[int, str, dict[str, Any]] | None]] = set()
        self.watch_requests: list[dict[str, str]] = []  # every watch request's query, for tests
        self.watch_loop: asyncio.AbstractEventLoop | None = None  # the server's loop: tests call in from other threads

    # -- recording changes ---------------------------------------------------------------------

    def _publish(self, kind: ResourceKind, event_type: str, obj: dict[str, Any]) -> None:
        revision = int(obj["metadata"]["resourceVersion"])
        entry = (revision, kind.kind, {"type": event_type, "object": obj})
        self.watch_history.append(entry)
        for queue in list(self.watch_subscribers):
            queue.put_nowait(entry)

    async def _store(self, kind: ResourceKind, namespace: str | None, name: str, data: dict[str, Any], *args: Any,
                     **kwargs: Any) -> aiohttp.web.StreamResponse:
        # event/code are passed through as the base class takes them (positional or keyword).
        response = await super()._store(kind, namespace, name, data, *args, **kwargs)
        event = str(kwargs.get("event") or args[0])
        stored = self.get_object(kind, namespace if kind.namespaced else None, name)
        if stored is not None and response.status < 400:
            self._publish(kind, event, stored)
        return response

    async def _delete(self, kind: ResourceKind, namespace: str | None, name: str) -> aiohttp.web.StreamResponse:
        current = self.get_object(kind, namespace, name)
        response = await super()._delete(kind, namespace, name)
        if current is not None and response.status < 400:
            final = dict(current)
            final["metadata"] = dict(current["metadata"], resourceVersion=str(self.lab_revision))
            self._publish(kind, "DELETED", final)
        return response

    # -- test controls -------------------------------------------------------------------------

    def _in_loop(self, action: Any) -> None:
        """Run ``action`` in the server's event loop and wait for it (asyncio objects are not thread-safe)."""
        if self.watch_loop is None:
            action()
            return
        done = threading.Event()

        def run() -> None:
            try:
                action()
            finally:
                done.set()

        self.watch_loop.call_soon_threadsafe(run)
        done.wait(timeout=10)

    def compact(self) -> None:
        """Forget the history: resuming from any version seen so far now gets 410 Gone."""

        def forget() -> None:
            self.watch_compacted = self.lab_revision
            self.watch_history.clear()

        self._in_loop(forget)

    def drop_watches(self) -> None:
        """End every open watch stream at once (the client sees the stream end)."""

        def drop() -> None:
            for queue in list(self.watch_subscribers):
                queue.put_nowait(None)

        self._in_loop(drop)

    # -- serving -------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Watches of the lab's kinds are served here; everything else as before."""
        route = _route(raw_request.path)
        if route is None or raw_request.query.get("watch") not in ("true", "1") or route.name is not None:
            return await super().__call__(raw_request)
        if self.lab_token is not None:
            header = raw_request.headers.get("Authorization", "")
            offered = header[7:] if header.startswith("Bearer ") else ""
            if not hmac.compare_digest(offered.encode(), str(self.lab_token).encode()):
                return _error(401, "Unauthorized")
        fault = self.lab_faults.take(raw_request.method, raw_request.path, raw_request.query)
        if fault is not None:
            answer = await self._apply_fault(fault, raw_request)
            if answer is not None:
                return answer
        forbidden = self._rbac_denies(route)
        if forbidden:
            return _error(403, forbidden)
        return await self._serve_lab_watch(route.kind, route.namespace, raw_request)

    async def _serve_lab_watch(self, kind: ResourceKind, namespace: str | None,
                           raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        query = raw_request.query
        self.watch_loop = asyncio.get_running_loop()
        self.watch_requests.append(dict(query))
        try:
            since = int(query.get("resourceVersion") or 0)
            timeout = float(query.get("timeoutSeconds") or 1800)
        except ValueError:
            return _error(400, "resourceVersion and timeoutSeconds must be integers")
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(raw_request)
        queue: asyncio.Queue[tuple[int, str, dict[str, Any]] | None] = asyncio.Queue()
        self.watch_subscribers.add(queue)
        try:
            if since and since < self.watch_compacted:
                gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
                        "message": f"too old resource version: {since} ({self.watch_compacted})"}
                await self._send(response, {"type": "ERROR", "object": gone})
                return response
            if since:
                backlog = [event for revision, event_kind, event in self.watch_history if revision > since and event_kind == kind.kind]
            else:
                backlog = [{"type": "ADDED", "object": obj} for obj in self.iter_objects(kind, namespace)]
            for event in backlog:
                if self._wanted(event, namespace):
                    await self._send(response, event)
            await self._stream(response, queue, kind, namespace, timeout=timeout, bookmarks=query.get("allowWatchBookmarks") == "true")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watch_subscribers.discard(queue)
        return response

    async def _stream(self, response: aiohttp.web.StreamResponse, queue: asyncio.Queue[tuple[int, str, dict[str, Any]] | None],
                      kind: ResourceKind, namespace: str | None, *, timeout: float, bookmarks: bool) -> None:
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout
        while True:
            remaining = ends - loop.time()
            if remaining <= 0:
                if bookmarks:
                    bookmark = {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": {"resourceVersion": str(self.lab_revision)}}
                    await self._send(response, {"type": "BOOKMARK", "object": bookmark})
                return
            try:
                entry = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                continue
            if entry is None:
                return  # drop_watches(): end the stream without a bookmark
            _, event_kind, event = entry
            if event_kind == kind.kind and self._wanted(event, namespace):
                await self._send(response, event)

    @staticmethod
    def _wanted(event: Mapping[str, Any], namespace: str | None) -> bool:
        return namespace is None or (event["object"].get("metadata") or {}).get("namespace") == namespace

    @staticmethod
    async def _send(response: aiohttp.web.StreamResponse, event: Mapping[str, Any]) -> None:
        await response.write(json.dumps(event).encode() + b"\n")


def start_watch_server(objects: Iterable[Mapping[str, Any]] = (), tls: bool = True) -> KubeApiServer:
    """``lab.kubeapi.start_server`` with a ``WatchingEmulator`` (``server.emulator``)."""
    server = KubeApiServer((), tls=tls)
    server.emulator = WatchingEmulator(token=server.token, faults=server.faults)
    for manifest in objects:
        server.emulator.put_object(manifest)
    return server.start()

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Event-Driven Ansible source: Kubernetes changes that matter to the allowlist policy.

Lists, then watches Pods, Services, EndpointSlices and Nodes of one or more clusters (the
inventory plugin's connection settings and ``K8S_AUTH_*`` fallbacks), keeps the policy-relevant
view of every object (its ``workload`` record, docs/contracts.md), and emits one ``sync`` event
once every kind is listed, then one ``change`` event per burst of changes that alter a view.
Watches resume from the last resourceVersion; a 410 Gone re-lists the kind and reports the
difference; errors reconnect with exponential backoff and jitter. See docs/eda.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

DOCUMENTATION = r"""
---
short_description: Kubernetes workload changes that matter to zerotrust.workloads policies.
description:
  - Watches Pods, Services, EndpointSlices and Nodes and emits a C(sync) event, then one
    C(change) event per coalesced burst of policy-relevant changes (addresses, phase, labels,
    annotations, node, ports, endpoints, node addresses and pod CIDRs).
options:
  connections:
    description: Clusters, as the zerotrust.workloads.kubernetes inventory plugin's option of that name.
    type: list
    elements: dict
  kinds:
    description:
      - What to watch, any of pods, services, endpointslices, nodes, vulnerabilityreports.
      - C(vulnerabilityreports) (trivy-operator's, for policies that use C(vuln.*); not watched by default) reports a
        change when a report's counts or IDs change, appear or vanish, so a new critical finding re-runs enforcement.
        A cluster without the CRD gets a warning and is listed again every O(reconnect_max) seconds.
    type: list
    elements: str
    default: [pods, services, endpointslices, nodes]
  drop_annotations:
    description:
      - Annotations left out of the views (and so never reported as changes), as the inventory plugin's option of that name.
        The default drops C(kubectl.kubernetes.io/last-applied-configuration).
    type: list
    elements: str
    default: [kubectl.kubernetes.io/last-applied-configuration]
  keep_annotations:
    description: When set, only these annotations are kept, as the inventory plugin's option of that name.
    type: list
    elements: str
    default: []
  debounce:
    description: Seconds of quiet that close a burst of changes.
    type: float
    default: 1.0
  max_delay:
    description: A burst is emitted at the latest this many seconds after its first change.
    type: float
    default: 5.0
  watch_timeout:
    description: Seconds the API keeps one watch open before the source resumes it.
    type: int
    default: 300
  reconnect_min:
    description: First backoff delay after an error, in seconds; doubles up to reconnect_max.
    type: float
    default: 0.5
  reconnect_max:
    description: Longest backoff delay, in seconds.
    type: float
    default: 30.0
  request_timeout:
    description: Seconds to wait for a LIST answer.
    type: float
    default: 30.0
"""

EXAMPLES = r"""
- zerotrust.workloads.kubernetes_workloads:
    connections:
      - {kubeconfig: /etc/eda/kubeconfig, context: prod, name: prod}
    debounce: 1.0
    max_delay: 5.0
"""


def _import_collection() -> None:
    """ansible-rulebook runs this file with runpy: make ``ansible_collections`` importable first."""
    try:
        import ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes  # noqa: F401, PLC0415 - a probe, not a use
        return
    except ImportError:
        pass
    here = Path(__file__).absolute()
    candidates = [str(here.parents[7])] if here.parents[6].name == "ansible_collections" else []
    for variable in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS"):
        candidates += [entry for entry in os.environ.get(variable, "").split(os.pathsep) if entry]
    candidates += [str(Path("~/.ansible/collections").expanduser()), "/usr/share/ansible/collections"]
    for candidate in candidates:
        if (Path(candidate) / "ansible_collections" / "zerotrust" / "workloads").is_dir() and candidate not in sys.path:
            sys.path.append(candidate)


_import_collection()

from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api, builder, records, vulnerabilities  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import (  # noqa: E402
    ClusterConnection,
    resolve_connections,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import (  # noqa: E402
    ApiCallError,
    KubernetesInventoryError,
    scrub,
)

LOG = logging.getLogger("zerotrust.workloads.kubernetes_workloads")
KINDS: dict[str, api.Kind] = {"pods": api.PODS, "services": api.SERVICES, "endpointslices": api.ENDPOINT_SLICES, "nodes": api.NODES,
                              "vulnerabilityreports": vulnerabilities.VULNERABILITY_REPORTS}
DEFAULT_KINDS = ("pods", "services", "endpointslices", "nodes")
DEFAULTS: dict[str, Any] = {"debounce": 1.0, "max_delay": 5.0, "watch_timeout": 300, "reconnect_min": 0.5, "reconnect_max": 30.0,
                            "request_timeout": 30.0}
Key = tuple[str, str]  # (namespace or "", name)


class EventSourceError(KubernetesInventoryError):
    """Invalid arguments of the event source."""


class RelistNeededError(Exception):
    """The watch's resourceVersion expired (410 Gone): list again."""


# --------------------------------------------------------------------------------------------------
# What matters to the policy


def policy_view(kind: api.Kind, obj: Mapping[str, Any], cluster: str,
                annotations: Optional[builder.AnnotationFilter] = None) -> dict[str, Any]:
    """The fields of an object the policy can see: its workload record (services without endpoints, which come from slices).

    ``annotations`` filters the record's annotations as the inventory does (kubectl's last-applied-configuration
    would otherwise double every view and report each ``kubectl apply`` as a change of its own).
    """
    if kind in (api.PODS, api.NODES, api.SERVICES):
        if kind is api.PODS:
            record = records.pod_record(obj, cluster, records.pod_ips(obj))
        elif kind is api.NODES:
            record = records.node_record(obj, cluster)
        else:
            record = records.service_record(obj, cluster, [])
        if annotations is not None:
            annotations.apply(record)
        return record
    metadata = obj.get("metadata") or {}
    if kind is vulnerabilities.VULNERABILITY_REPORTS:
        # What the join and the vuln.* attributes read; a rescan that finds the same (a new updateTimestamp) is no change.
        labels: Mapping[str, Any] = metadata["labels"] if isinstance(metadata.get("labels"), dict) else {}
        found = vulnerabilities.finding(obj)
        view: dict[str, Any] = {"workload": f"{labels.get(vulnerabilities.KIND_LABEL)}/{labels.get(vulnerabilities.NAME_LABEL)}",
                                "container": labels.get(vulnerabilities.CONTAINER_LABEL)}
        view.update(zip(vulnerabilities.SEVERITIES, found.counts, strict=True))
        view["ids"] = sorted(found.ids)
        return view
    return {
        "service": (metadata.get("labels") or {}).get(records.SERVICE_NAME_LABEL),
        "labels": dict(metadata.get("labels") or {}),
        "endpoints": records.endpoints_from_slices([obj]),
    }


def changed_fields(before: Optional[Mapping[str, Any]], after: Optional[Mapping[str, Any]]) -> list[str]:
    """Names of the view's fields that differ (all of them when the object appeared or vanished)."""
    if before is None or after is None:
        return sorted((before or after or {}).keys())
    return sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))


@dataclasses.dataclass(frozen=True)
class Change:
    """One policy-relevant change of one object."""

    cluster: str
    kind: str
    namespace: Optional[str]
    name: str
    action: str  # added | modified | deleted
    fields: tuple[str, ...]
    nodes: tuple[str, ...] = ()
    service: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        """The entry of an event's ``changes`` list."""
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name, "action": self.action, "fields": list(self.fields)}


def diff_object(cluster: str, kind: api.Kind, key: Key, before: Optional[dict[str, Any]],
                after: Optional[dict[str, Any]]) -> Optional[Change]:
    """The Change between two views of one object, or None when nothing the policy sees moved."""
    if before == after:
        return None
    action = "added" if before is None else "deleted" if after is None else "modified"
    nodes = sorted({str(view.get("node")) for view in (before, after) if view and view.get("node")})
    if kind is api.NODES:
        nodes = [key[1]]
    service = None
    if kind is api.SERVICES:
        service = f"{key[0]}/{key[1]}"
    elif kind is api.ENDPOINT_SLICES:
        owner = (after or before or {}).get("service")
        service = f"{key[0]}/{owner}" if owner else None
        nodes = sorted({str(endpoint["node"]) for view in (before, after) if view
                        for endpoint in view["endpoints"] if endpoint.get("node")})
    return Change(cluster, kind.name, key[0] or None, key[1], action, tuple(changed_fields(before, after)), tuple(nodes), service)


def build_event(event_type: str, reason: str, cluster: str, changes: list[Change]) -> dict[str, Any]:
    """The event put on ansible-rulebook's queue (docs/eda.md)."""
    scope: dict[str, set[str]] = {"namespaces": set(), "nodes": set(), "pods": set(), "services": set()}
    for change in changes:
        if change.namespace:
            scope["namespaces"].add(change.namespace)
        scope["nodes"].update(change.nodes)
        if change.kind == "Pod":
            scope["pods"].add(f"{change.namespace}/{change.name}")
        if change.service:
            scope["services"].add(change.service)
    return {"zerotrust": {"type": event_type, "cluster": cluster, "reason": reason, "count": len(changes),
                          "changes": [change.as_dict() for change in changes],
                          "scope": {key: sorted(value) for key, value in scope.items()}}}


class Coalescer:
    """Collects changes into bursts: due after ``debounce`` s of quiet or ``max_delay`` s after the first change."""

    def __init__(self, debounce: float, max_delay: float) -> None:
        self.debounce = debounce
        self.max_delay = max_delay
        self.pending: list[Change] = []
        self.first = 0.0
        self.last = 0.0

    def add(self, change: Change, now: float) -> None:
        """Add a change; a newer change of the same object replaces the older one in place."""
        if not self.pending:
            self.first = now
        self.last = now
        for index, known in enumerate(self.pending):
            if (known.cluster, known.kind, known.namespace, known.name) == (change.cluster, change.kind, change.namespace, change.name):
                merged_fields = tuple(sorted(set(known.fields) | set(change.fields)))
                action = known.action if known.action == "added" and change.action == "modified" else change.action
                nodes = tuple(sorted(set(known.nodes) | set(change.nodes)))
                self.pending[index] = dataclasses.replace(change, fields=merged_fields, action=action, nodes=nodes)
                return
        self.pending.append(change)

    def deadline(self) -> Optional[float]:
        """When the pending burst is due (monotonic seconds), or None when there is none."""
        if not self.pending:
            return None
        return min(self.last + self.debounce, self.first + self.max_delay)

    def drain(self) -> list[Change]:
        """Take the pending burst."""
        burst, self.pending = self.pending, []
        return burst


# --------------------------------------------------------------------------------------------------
# Talking to the API


class Watcher:
    """LIST + WATCH of one kind of one cluster in a thread; reports changes through ``emit``."""

    def __init__(self, connection: ClusterConnection, kind: api.Kind, settings: Mapping[str, Any],
                 emit: Callable[[str, Any], None], namespace: Optional[str] = None) -> None:
        self.connection = connection
        self.kind = kind
        # With the connection's namespaces set, namespaced kinds are listed and watched per namespace:
        # that works with RBAC bound namespace by namespace (docs/rbac.md).
        self.namespace = namespace
        self.path = kind.list_path(namespace)
        self.settings = settings
        self.annotations = builder.AnnotationFilter(settings.get("keep_annotations", ()),
                                                    settings.get("drop_annotations", builder.DEFAULT_DROP_ANNOTATIONS))
        self.emit = emit
        self.views: dict[Key, dict[str, Any]] = {}
        self.resource_version: Optional[str] = None
        self.listed = False
        self.absent = False  # the API does not serve the kind (a CRD not installed)
        self.stopping = threading.Event()
        self.clock: Callable[[], float] = time.monotonic
        self.delivered = False  # did the current watch deliver an event?
        self.thread = threading.Thread(target=self.run, name=f"zt-watch-{connection.name}-{kind.plural}-{namespace or ''}", daemon=True)
        self._response: Any = None
        import urllib3  # noqa: PLC0415 - dependency of the collection (via kubernetes); imported here to keep loading cheap

        self._urllib3 = urllib3
        self.client = api.ClusterClient(connection, timeout=float(settings["request_timeout"]))
        self._pool = self._stream_pool()

    def _stream_pool(self) -> Any:
        options: dict[str, Any] = {"retries": False, "maxsize": 1,
                                   "timeout": self._urllib3.Timeout(connect=10.0, read=float(self.settings["watch_timeout"]) + 30.0)}
        if self.connection.server.startswith("https://"):
            options["ssl_context"] = self.connection.ssl_context()
            if not self.connection.validate_certs:
                options.update(cert_reqs="CERT_NONE", assert_hostname=False)
            elif self.connection.tls_server_name:
                options["server_hostname"] = self.connection.tls_server_name
        return self.connection.pool_manager(self._urllib3, **options)

    def start(self) -> None:
        """Start the thread."""
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to end and unblock a pending read."""
        self.stopping.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # the stream may already be closed
                response.shutdown()

    def healthy(self, started: Optional[float]) -> bool:
        """Was the watch begun at ``started`` a working one: it delivered an event or lasted past its first second?"""
        return started is not None and (self.delivered or self.clock() - started >= 1.0)

    def run(self) -> None:
        """List, watch, re-list on 410, back off on errors, until stopped."""
        minimum = float(self.settings["reconnect_min"])
        delay = minimum
        while not self.stopping.is_set():
            started: Optional[float] = None
            try:
                if not self.listed or self.resource_version is None:
                    self.relist("initial" if not self.listed else "relist")
                if self.absent:
                    self.stopping.wait(float(self.settings["reconnect_max"]))  # look again later: the CRD may be installed
                    continue
                started = self.clock()
                self.delivered = False
                self.watch()
                if self.clock() - started < 1.0 and not self.stopping.is_set():
                    # A stream that ends at once, again and again, must not become a busy loop.
                    self.stopping.wait(delay)
                    delay = minimum if self.delivered else min(delay * 2, float(self.settings["reconnect_max"]))
                else:
                    delay = minimum  # a watch that lasted resets the backoff
            except RelistNeededError:
                self.resource_version = None
                continue
            except Exception as exc:  # every failure (API, TLS, decoding) reconnects after a backoff
                if self.stopping.is_set():
                    return
                if self.healthy(started):
                    # Whatever ended a working watch (an API server restart breaks the stream), this is a new outage:
                    # it starts from the shortest delay, not from where the previous outage's backoff had grown to.
                    delay = minimum
                message = scrub(str(exc), self.connection.secrets())
                LOG.warning("cluster %r %s: %s; retrying in %.1f s", self.connection.name, self.path, message, delay)
                self.emit("error", {"cluster": self.connection.name, "kind": self.kind.name, "message": message})
                self.stopping.wait(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not cryptography
                delay = min(delay * 2, float(self.settings["reconnect_max"]))

    def _asked_for(self, metadata: Mapping[str, Any]) -> bool:
        """Whether an object is in the namespace this watcher lists (every object when it lists cluster-wide).

        An honest server only answers with those; one that does not is not believed.
        """
        return self.namespace is None or metadata.get("namespace") == self.namespace

    def relist(self, reason: str) -> None:
        """LIST every page, compare with the known views, report the differences (none on the first list)."""
        try:
            objects, version = self._list()
            self.absent = False
        except ApiCallError as exc:
            if exc.status != 404 or self.kind is not vulnerabilities.VULNERABILITY_REPORTS:
                raise
            if not self.absent:
                cause = f"GET {self.path} answered 404 Not Found"
                LOG.warning("%s", vulnerabilities.ABSENT_WARNING.format(cluster=self.connection.name, cause=cause))
            self.absent = True
            objects, version = [], ""
        fresh: dict[Key, dict[str, Any]] = {}
        for obj in objects:
            metadata = obj.get("metadata") or {}
            if not self._asked_for(metadata):
                continue
            key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
            fresh[key] = policy_view(self.kind, obj, self.connection.name, self.annotations)
        first = not self.listed
        changes: list[Change] = []
        if not first:
            for key in sorted(set(self.views) | set(fresh)):
                change = diff_object(self.connection.name, self.kind, key, self.views.get(key), fresh.get(key))
                if change is not None:
                    changes.append(change)
        self.views, self.resource_version, self.listed = fresh, version, True
        if self.absent:
            self.resource_version = None  # nothing to watch: list again after a while
        if first:
            self.emit("listed", {"cluster": self.connection.name, "kind": self.kind.name, "namespace": self.namespace, "count": len(fresh)})
        for change in changes:
            self.emit("change", (change, reason))

    def _list(self) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        continue_token: Optional[str] = None
        version = ""
        while True:
            query: dict[str, Any] = {"limit": 500}
            if continue_token:
                query["continue"] = continue_token
            page = self.client.get_json(self.path, query)
            items.extend(item for item in page.get("items") or [] if isinstance(item, dict))
            metadata = page.get("metadata") or {}
            version = version or str(metadata.get("resourceVersion") or "")
            continue_token = metadata.get("continue") or None
            if not continue_token:
                return items, version

    def watch(self) -> None:
        """One watch request from the last resourceVersion, applied event by event."""
        query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(int(self.settings["watch_timeout"])),
                 "resourceVersion": self.resource_version or ""}
        url = f"{self.connection.server.rstrip('/')}{self.path}?" + "&".join(f"{key}={value}" for key, value in query.items())
        headers = self._urllib3.HTTPHeaderDict()
        for name, value in self.connection.headers("zerotrust.workloads-eda"):
            headers.add(name, value)
        response = self._pool.request("GET", url, headers=headers, preload_content=False)
        self._response = response
        try:
            if response.status == 410 or (response.status == 404 and self.kind is vulnerabilities.VULNERABILITY_REPORTS):
                raise RelistNeededError()  # 404: the CRD was removed; the list notices and says so
            if response.status >= 400:
                body = response.read(2048)
                raise ApiCallError(self.connection.name, f"WATCH {self.path}", self.client._explain(response.status, body),
                                   response.status)
            for line in _lines(response.stream(65536)):
                if self.stopping.is_set():
                    return
                self.apply(json.loads(line))
                self.delivered = True
        finally:
            self._response = None
            response.release_conn()

    def apply(self, event: Mapping[str, Any]) -> None:
        """Apply one watch event to the known views and report a policy-relevant change."""
        event_type = event.get("type")
        obj = event.get("object") or {}
        metadata = obj.get("metadata") or {}
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise RelistNeededError()
            raise ApiCallError(self.connection.name, f"WATCH {self.path}", str(obj.get("message") or obj),
                               int(obj.get("code") or 0))
        if metadata.get("resourceVersion"):
            self.resource_version = str(metadata["resourceVersion"])
        if event_type == "BOOKMARK":
            return
        if not self._asked_for(metadata):
            return
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        before = self.views.get(key)
        after = None if event_type == "DELETED" else policy_view(self.kind, obj, self.connection.name, self.annotations)
        if after is None:
            self.views.pop(key, None)
        else:
            self.views[key] = after
        change = diff_object(self.connection.name, self.kind, key, before, after)
        if change is not None:
            self.emit("change", (change, "watch"))


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Newline-delimited JSON documents from a stream of chunks."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from (line for line in complete if line.strip())
    if buffer.strip():
        yield buffer


# --------------------------------------------------------------------------------------------------
# The entry point


def parse_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the source's arguments; EventSourceError says which one and why."""
    known = {"connections", "kinds", "keep_annotations", "drop_annotations", *DEFAULTS}
    unknown = sorted(set(args) - known)
    if unknown:
        raise EventSourceError(f"unknown arguments {unknown}; known: {sorted(known)}")
    settings: dict[str, Any] = dict(DEFAULTS)
    for key in DEFAULTS:
        if args.get(key) is not None:
            try:
                settings[key] = float(args[key])
            except (TypeError, ValueError):
                raise EventSourceError(f"{key} must be a number of seconds, got {args[key]!r}") from None
            if settings[key] <= 0:
                raise EventSourceError(f"{key} must be positive, got {args[key]!r}")
    kinds = args.get("kinds") or list(DEFAULT_KINDS)
    if isinstance(kinds, str) or not all(kind in KINDS for kind in kinds):
        raise EventSourceError(f"kinds must be a list of {', '.join(KINDS)}, got {kinds!r}")
    settings["kinds"] = [KINDS[kind] for kind in kinds]
    for key, default in (("keep_annotations", ()), ("drop_annotations", builder.DEFAULT_DROP_ANNOTATIONS)):
        patterns = args.get(key)
        if patterns is None:
            patterns = default
        if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)) or not all(isinstance(item, str) for item in patterns):
            raise EventSourceError(f"{key} must be a list of annotation keys (shell wildcards allowed), got {patterns!r}")
        settings[key] = tuple(patterns)
    settings["connections"] = args.get("connections")
    return settings


async def main(queue: asyncio.Queue[Any], args: dict[str, Any]) -> None:
    """ansible-rulebook entry point: put a sync event, then coalesced change events, on ``queue``."""
    settings = parse_args(args)
    connections = resolve_connections(settings["connections"], os.environ)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def emit(what: str, payload: Any) -> None:
        loop.call_soon_threadsafe(inbox.put_nowait, (what, payload))

    watchers = [Watcher(connection, kind, settings, emit, namespace)
                for connection in connections for kind in settings["kinds"]
                for namespace in (connection.namespaces if connection.namespaces and kind.namespaced else (None,))]
    for watcher in watchers:
        watcher.start()
    try:
        await _serve(queue, inbox, watchers, settings)
    finally:
        for watcher in watchers:
            watcher.stop()


async def _serve(queue: asyncio.Queue[Any], inbox: asyncio.Queue[tuple[str, Any]], watchers: list[Watcher],
                 settings: Mapping[str, Any]) -> None:
    """Turn the watchers' reports into events: the sync per cluster once listed, then coalesced bursts."""
    coalescers: dict[str, Coalescer] = {}
    reasons: dict[str, str] = {}
    waiting = {(watcher.connection.name, watcher.kind.name, watcher.namespace) for watcher in watchers}
    counts: dict[str, dict[str, int]] = {}
    while True:
        deadlines = [deadline for deadline in (c.deadline() for c in coalescers.values()) if deadline is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        try:
            what, payload = await asyncio.wait_for(inbox.get(), timeout)
        except TimeoutError:
            what, payload = "tick", None
        if what == "listed":
            waiting.discard((payload["cluster"], payload["kind"], payload["namespace"]))
            kinds = counts.setdefault(payload["cluster"], {})
            kinds[payload["kind"]] = kinds.get(payload["kind"], 0) + payload["count"]
            if not any(pending[0] == payload["cluster"] for pending in waiting):
                LOG.info("cluster %r listed: %s", payload["cluster"], counts[payload["cluster"]])
                event = build_event("sync", "initial", payload["cluster"], [])
                event["zerotrust"]["objects"] = counts[payload["cluster"]]
                await queue.put(event)
        elif what == "change":
            change, reason = payload
            coalescer = coalescers.setdefault(change.cluster, Coalescer(float(settings["debounce"]), float(settings["max_delay"])))
            coalescer.add(change, time.monotonic())
            if reason == "relist" or change.cluster not in reasons:
                reasons[change.cluster] = reason
        now = time.monotonic()
        for cluster, coalescer in coalescers.items():
            deadline = coalescer.deadline()
            if deadline is not None and deadline <= now:
                burst = coalescer.drain()
                LOG.info("cluster %r: %d change(s)", cluster, len(burst))
                await queue.put(build_event("change", reasons.pop(cluster, "watch"), cluster, burst))


if __name__ == "__main__":
    # Manual run: print events, e.g. K8S_AUTH_KUBECONFIG=.lab/kubeconfig python kubernetes_workloads.py

    class _PrintQueue(asyncio.Queue):  # type: ignore[type-arg]
        async def put(self, item: Any) -> None:
            print(json.dumps(item), flush=True)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), {}))

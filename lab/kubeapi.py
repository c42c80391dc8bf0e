# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's Kubernetes API: kmock's KubernetesEmulator, extended, over HTTPS on loopback.

kmock 0.8 stores objects and streams watches, but it cannot list namespaces (its path parser
reads ``namespaces`` as a namespace prefix), its lists carry no ``kind``/``apiVersion`` and it
ignores ``labelSelector``, ``fieldSelector``, ``limit`` and ``continue``. ``LabKubernetesEmulator``
serves reads, writes and watches of the kinds in ``KINDS`` itself (on kmock's object store and
event buses; anything else still goes to kmock) and adds what a real API server does there:
discovery documents, selectors, paginated lists with continue tokens, ``resourceVersion`` on
every object and list, watches that resume from a list's ``resourceVersion`` (or answer 410
when it is older than the retained history), bearer-token auth, and a ``FaultPlan`` that lets
tests inject the failures the inventory plugin must report (401/403, 410 Gone on a continue
token, malformed bodies, slow answers, dropped connections, namespace-only RBAC), in process
(``server.faults``) or over HTTP (``POST/GET/DELETE /_lab/faults``).

Command line::

    python -m lab.kubeapi serve --state-dir DIR --objects OBJECTS.json [--port 0] [--host ADDR] [--san NAME ...] [--no-tls]
    python -m lab.kubeapi apply --kubeconfig FILE OBJECTS.json

In-process (tests)::

    with start_server(objects) as api:
        api.faults.add(path=r"/pods$", status=403)
        write_kubeconfig(api, tmp_path / "kubeconfig", "lab")
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import contextlib
import datetime
import hmac
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import uuid
import weakref
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp.web
import kmock
import yaml

from lab.errors import LabError


class KubeApiError(LabError):
    """The emulated API could not start, load its objects or apply a change."""


@dataclass(frozen=True)
class ResourceKind:
    """One kind the emulator serves itself: where its objects live in the URL space."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise."""
        return self.version if not self.group else f"{self.group}/{self.version}"

    @property
    def base_path(self) -> str:
        """``/api/v1`` or ``/apis/group/version``."""
        return f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"

    def collection_path(self, namespace: str | None) -> str:
        """The list/create URL, namespaced when the kind is and a namespace is given."""
        if self.namespaced and namespace:
            return f"{self.base_path}/namespaces/{namespace}/{self.plural}"
        return f"{self.base_path}/{self.plural}"

    @property
    def resource(self) -> kmock.resource:
        """The key kmock's object store files this kind under."""
        return kmock.resource(self.group, self.version, self.plural)


KINDS: dict[str, ResourceKind] = {
    kind.kind: kind
    for kind in (
        ResourceKind("Namespace", "", "v1", "namespaces", namespaced=False),
        ResourceKind("Node", "", "v1", "nodes", namespaced=False),
        ResourceKind("Pod", "", "v1", "pods", namespaced=True),
        ResourceKind("Service", "", "v1", "services", namespaced=True),
        ResourceKind("Endpoints", "", "v1", "endpoints", namespaced=True),
        ResourceKind("ConfigMap", "", "v1", "configmaps", namespaced=True),
        ResourceKind("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices", namespaced=True),
        # trivy-operator's CRD (served empty when a scenario has no reports; FaultPlan can make it absent).
        ResourceKind("VulnerabilityReport", "aquasecurity.github.io", "v1alpha1", "vulnerabilityreports", namespaced=True),
    )
}
_BY_PATH: dict[tuple[str, str, str], ResourceKind] = {(k.group, k.version, k.plural): k for k in KINDS.values()}

# Field selectors the real API server accepts for these kinds (it answers 400 for others).
SUPPORTED_FIELDS = frozenset({"metadata.name", "metadata.namespace", "status.phase", "spec.nodeName", "spec.type"})


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected failure: requests whose path matches ``path`` (a regex) get it.

    ``status`` answers with that HTTP status and a Kubernetes ``Status`` body; ``body`` answers
    200 with these raw bytes (a malformed body); ``delay`` sleeps first (a slow API, a client
    timeout); ``disconnect`` drops the connection without an answer. ``continue_only`` limits it
    to requests carrying a continue token (a 410 Gone in the middle of a pagination);
    ``times`` to that many hits (``None``: every matching request).
    """

    path: str
    status: int = 0
    body: bytes | None = None
    delay: float = 0.0
    disconnect: bool = False
    continue_only: bool = False
    method: str = "GET"
    times: int | None = None
    hits: int = 0

    def matches(self, method: str, path: str, query: Mapping[str, str]) -> bool:
        """Whether this fault applies to that request (and still has hits left)."""
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and method.upper() != self.method.upper():
            return False
        if self.continue_only and not query.get("continue"):
            return False
        return re.search(self.path, path) is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build from the JSON the ``/_lab/faults`` endpoint takes (``body`` as text)."""
        known = {"path", "status", "body", "delay", "disconnect", "continue_only", "method", "times"}
        unknown = set(data) - known
        if unknown:
            raise KubeApiError(f"unknown fault fields {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if isinstance(values.get("body"), str):
            values["body"] = values["body"].encode()
        return cls(**values)


@dataclass
class FaultPlan:
    """The failures the server injects, changeable while it runs (thread-safe).

    ``rbac_namespaces``, when set, emulates a token bound only to those namespaces: lists and
    reads of namespaced kinds across the cluster, or in other namespaces, answer 403, and so
    does listing namespaces; cluster-scoped kinds (nodes) stay readable.
    """

    faults: list[Fault] = field(default_factory=list)
    rbac_namespaces: frozenset[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, path: str, **kwargs: Any) -> Fault:
        """Add a fault (see ``Fault``) and return it, e.g. to read its ``hits`` later."""
        fault = Fault(path=path, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault and the RBAC restriction."""
        with self._lock:
            self.faults.clear()
            self.rbac_namespaces = None

    def restrict_to_namespaces(self, namespaces: Iterable[str] | None) -> None:
        """Emulate namespace-only RBAC (``None`` lifts it)."""
        with self._lock:
            self.rbac_namespaces = None if namespaces is None else frozenset(namespaces)

    def take(self, method: str, path: str, query: Mapping[str, str]) -> Fault | None:
        """The first fault matching this request, counting the hit."""
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, query):
                    fault.hits += 1
                    return fault
        return None


# ---------------------------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------------------------

_SET_REQUIREMENT = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


class SelectorError(ValueError):
    """A label or field selector the API server would reject with 400."""


def _split_requirements(selector: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b`` has two requirements)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def label_matcher(selector: str) -> Any:
    """Compile a label selector (equality and set-based) into a predicate over a labels dict."""
    checks: list[Any] = []
    for requirement in _split_requirements(selector):
        set_match = _SET_REQUIREMENT.match(requirement)
        if set_match:
            key, operator, raw_values = set_match.groups()
            values = frozenset(value.strip() for value in raw_values.split(",") if value.strip())
            if operator == "in":
                checks.append(lambda labels, k=key, v=values: labels.get(k) in v)
            else:
                checks.append(lambda labels, k=key, v=values: labels.get(k) not in v)
        elif "!=" in requirement:
            key, value = (part.strip() for part in requirement.split("!=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in requirement:
            key, value = (part.strip() for part in requirement.replace("==", "=").split("=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif requirement.startswith("!"):
            key = requirement[1:].strip()
            checks.append(lambda labels, k=key: k not in labels)
        elif re.fullmatch(r"[A-Za-z0-9_./-]+", requirement):
            checks.append(lambda labels, k=requirement: k in labels)
        else:
            raise SelectorError(f"unable to parse requirement: {requirement!r}")
    return lambda labels: all(check(labels) for check in checks)


def _field_value(obj: Mapping[str, Any], dotted: str) -> str:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def field_matcher(selector: str) -> Any:
    """Compile a field selector (``=``, ``==``, ``!=``) over ``SUPPORTED_FIELDS``."""
    checks: list[Any] = []
    for requirement in _split_requirements(selector):
        negate = "!=" in requirement
        key, value = (part.strip() for part in requirement.replace("!=", "=").replace("==", "=").split("=", 1))
        if key not in SUPPORTED_FIELDS:
            raise SelectorError(f'field label not supported: "{key}"')
        if negate:
            checks.append(lambda obj, k=key, v=value: _field_value(obj, k) != v)
        else:
            checks.append(lambda obj, k=key, v=value: _field_value(obj, k) == v)
    return lambda obj: all(check(obj) for check in checks)


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A Kubernetes ``Status`` object, the body of every error answer."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "AlreadyExists",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def _error(code: int, message: str, reason: str | None = None) -> aiohttp.web.Response:
    return aiohttp.web.json_response(status_body(code, reason or _REASONS.get(code, "Unknown"), message), status=code)


@dataclass(frozen=True)
class _Route:
    kind: ResourceKind
    namespace: str | None
    name: str | None
    subresource: str | None


def _route(path: str) -> _Route | None:
    """Map a URL path to a kind we serve (``None``: leave it to kmock, e.g. discovery)."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    # /namespaces/NS/PLURAL... is namespaced; /namespaces and /namespaces/NAME are Namespace objects.
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    kind = _BY_PATH.get((group, version, rest[0]))
    if kind is None:
        return None
    name = rest[1] if len(rest) >= 2 else None
    subresource = "/".join(rest[2:]) or None
    return _Route(kind, namespace if kind.namespaced else None, name, subresource)


HISTORY_LIMIT = 10_000
_SHORT_NAMES = {"Namespace": ["ns"], "Node": ["no"], "Pod": ["po"], "Service": ["svc"], "Endpoints": ["ep"], "ConfigMap": ["cm"]}
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _discovery(path: str) -> dict[str, Any] | None:
    """Discovery documents for the kinds we serve (what the dynamic client and kubectl read first)."""
    path = path.rstrip("/")
    groups = sorted({kind.group for kind in KINDS.values() if kind.group})
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group_document(group) for group in groups]}
    if path.startswith("/apis/") and path.count("/") == 2 and path.split("/")[2] in groups:
        return dict(_group_document(path.split("/")[2]), kind="APIGroup", apiVersion="v1")
    for base in {kind.base_path for kind in KINDS.values()}:
        if path == base:
            served = [kind for kind in KINDS.values() if kind.base_path == base]
            resources = [
                {"name": kind.plural, "singularName": kind.kind.lower(), "namespaced": kind.namespaced, "kind": kind.kind, "verbs": _VERBS,
                 "shortNames": _SHORT_NAMES.get(kind.kind, [])}
                for kind in served
            ]
            resources += [{"name": f"{kind.plural}/status", "singularName": "", "namespaced": kind.namespaced, "kind": kind.kind,
                           "verbs": ["get", "patch", "update"]} for kind in served if kind.kind in ("Pod", "Service", "Node", "Namespace")]
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": served[0].api_version, "resources": resources}
    return None


def _group_document(group: str) -> dict[str, Any]:
    versions = sorted({kind.version for kind in KINDS.values() if kind.group == group})
    entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def _encode_continue(resource_version: int, last_key: tuple[str, str]) -> str:
    raw = json.dumps({"rv": resource_version, "start": list(last_key)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as exc:
        raise SelectorError(f"invalid continue token: {exc}") from exc


class LabKubernetesEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the list, write, auth and fault behaviour of a real API server."""

    def __init__(self, token: str | None = None, faults: FaultPlan | None = None) -> None:
        super().__init__()
        # Plain attributes of this (non-attrs) subclass: kmock never reads them.
        self.lab_token = token
        self.lab_faults = faults or FaultPlan()
        self.lab_revision = 0
        # Sorted (namespace, name) keys per kind, rebuilt lazily after writes: lists page through them.
        self.lab_index: dict[str, list[tuple[str, str]]] = {}
        self.lab_write_lock = threading.Lock()
        # Recent changes (revision, kind, event), so that a watch resuming from a list's resourceVersion misses nothing.
        self.lab_history: collections.deque[tuple[int, str, dict[str, Any]]] = collections.deque(maxlen=HISTORY_LIMIT)

    # -- the store ------------------------------------------------------------------------------

    def _bump(self) -> int:
        self.lab_revision += 1
        return self.lab_revision

    def _stamp(self, kind: ResourceKind, obj: dict[str, Any], namespace: str | None) -> dict[str, Any]:
        obj = dict(obj)
        metadata = dict(obj.get("metadata") or {})
        if kind.namespaced:
            metadata["namespace"] = namespace or metadata.get("namespace") or "default"
        else:
            metadata.pop("namespace", None)
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        metadata["resourceVersion"] = str(self._bump())
        obj["metadata"] = metadata
        obj["kind"] = kind.kind
        obj["apiVersion"] = kind.api_version
        return obj

    def put_object(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace one object from its manifest (synchronously, e.g. at load)."""
        kind = kind_of(manifest)
        name = (manifest.get("metadata") or {}).get("name")
        if not name:
            raise KubeApiError(f"a {kind.kind} manifest has no metadata.name")
        namespace = (manifest.get("metadata") or {}).get("namespace") if kind.namespaced else None
        with self.lab_write_lock:
            stamped = self._stamp(kind, dict(manifest), namespace)
            self.objects[kind.resource, stamped["metadata"].get("namespace"), name] = stamped
            self.lab_index.pop(kind.kind, None)
        return stamped

    def get_object(self, kind: ResourceKind, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object, or ``None`` when absent or deleted."""
        try:
            obj = self.objects[kind.resource, namespace, name]
        except KeyError:
            return None
        if obj.deleted:
            return None
        raw: dict[str, Any] = obj.raw
        return raw

    def _sorted_keys(self, kind: ResourceKind) -> list[tuple[str, str]]:
        keys = self.lab_index.get(kind.kind)
        if keys is None:
            resource = kind.resource
            keys = sorted(
                (namespace or "", name) for (res, namespace, name), obj in self.objects.items() if res == resource and not obj.deleted
            )
            self.lab_index[kind.kind] = keys
        return keys

    def iter_objects(self, kind: ResourceKind, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Every live object of a kind (in one namespace if given), sorted by namespace and name."""
        for key_namespace, name in self._sorted_keys(kind):
            if namespace is not None and key_namespace != namespace:
                continue
            obj = self.get_object(kind, key_namespace or None, name)
            if obj is not None:
                yield obj

    # -- HTTP -----------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:  # noqa: PLR0911 - one return per answer
        """Entry point for aiohttp: auth, faults, our kinds; the rest goes to kmock."""
        if self.lab_token is not None:
            header = raw_request.headers.get("Authorization", "")
            offered = header[7:] if header.startswith("Bearer ") else ""
            if not hmac.compare_digest(offered.encode(), str(self.lab_token).encode()):
                return _error(401, "Unauthorized")
        path = raw_request.path
        query = raw_request.query
        if path.startswith("/_lab/"):
            return await self._serve_admin(raw_request)
        fault = self.lab_faults.take(raw_request.method, path, query)
        if fault is not None:
            answer = await self._apply_fault(fault, raw_request)
            if answer is not None:
                return answer
        discovery = _discovery(path)
        if discovery is not None and raw_request.method == "GET":
            return aiohttp.web.json_response(discovery)
        route = _route(path)
        if route is None:
            return await super().__call__(raw_request)
        forbidden = self._rbac_denies(route)
        if forbidden:
            return _error(403, forbidden)
        try:
            return await self._serve(route, raw_request)
        except SelectorError as exc:
            return _error(400, str(exc))

    async def _apply_fault(self, fault: Fault, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse | None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.disconnect:
            if raw_request.transport is not None:
                raw_request.transport.abort()
            raise asyncio.CancelledError  # nothing is answered: the client sees a dropped connection
        if fault.body is not None:
            return aiohttp.web.Response(body=fault.body, status=fault.status or 200, content_type="application/json")
        if fault.status:
            if fault.status == 410:
                message = "The provided continue parameter is too old to display a consistent list result."
                return _error(410, message, "Expired")
            return _error(fault.status, f"injected fault for {raw_request.method} {raw_request.path}")
        return None

    def _rbac_denies(self, route: _Route) -> str | None:  # noqa: PLR0911 - one return per RBAC rule
        allowed = self.lab_faults.rbac_namespaces
        if allowed is None:
            return None
        plural = route.kind.plural
        if route.kind.kind == "Namespace":
            if route.name is None:
                return 'namespaces is forbidden: User "lab" cannot list resource "namespaces" at the cluster scope'
            return None if route.name in allowed else f'namespaces "{route.name}" is forbidden'
        if not route.kind.namespaced:
            return None
        if route.namespace is None:
            return (
                f'{plural} is forbidden: User "lab" cannot list resource "{plural}" in API group "{route.kind.group}" at the cluster scope'
            )
        if route.namespace not in allowed:
            return f'{plural} is forbidden: User "lab" cannot list resource "{plural}" in the namespace "{route.namespace}"'
        return None

    async def _serve(self, route: _Route, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        method = raw_request.method.upper()
        if method == "GET" and raw_request.query.get("watch") in ("true", "1"):
            return await self._serve_basic_watch(route, raw_request)
        if method == "GET" and route.name is None:
            return self._serve_lab_list(route, raw_request.query)
        if method == "GET" and route.name is not None:  # the object, or a subresource of it (status, ...)
            obj = self.get_object(route.kind, route.namespace, route.name)
            if obj is None:
                return _error(404, f'{route.kind.plural} "{route.name}" not found')
            return aiohttp.web.json_response(obj)
        return await self._serve_write(method, route, raw_request)

    def _serve_lab_list(self, route: _Route, query: Mapping[str, str]) -> aiohttp.web.StreamResponse:
        labels = label_matcher(query["labelSelector"]) if query.get("labelSelector") else None
        fields = field_matcher(query["fieldSelector"]) if query.get("fieldSelector") else None
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            return _error(400, f"invalid limit: {query.get('limit')!r}")
        keys = self._sorted_keys(route.kind)
        start = 0
        list_revision = self.lab_revision
        if query.get("continue"):
            list_revision, last_key = _decode_continue(query["continue"])
            start = bisect_right(keys, last_key)
        items: list[dict[str, Any]] = []
        next_token: str | None = None
        for position in range(start, len(keys)):
            key_namespace, name = keys[position]
            if route.namespace is not None and key_namespace != route.namespace:
                continue
            obj = self.get_object(route.kind, key_namespace or None, name)
            if obj is None:
                continue
            if labels is not None and not labels((obj.get("metadata") or {}).get("labels") or {}):
                continue
            if fields is not None and not fields(obj):
                continue
            if limit and len(items) == limit:
                next_token = _encode_continue(list_revision, (items[-1]["metadata"].get("namespace") or "", items[-1]["metadata"]["name"]))
                break
            items.append(obj)
        metadata: dict[str, Any] = {"resourceVersion": str(list_revision)}
        if next_token:
            metadata["continue"] = next_token
        body = {"kind": f"{route.kind.kind}List", "apiVersion": route.kind.api_version, "metadata": metadata, "items": items}
        return aiohttp.web.Response(body=json.dumps(body).encode(), content_type="application/json")

    async def _serve_basic_watch(self, route: _Route, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """A watch stream: ADDED for what exists, or the changes after ``resourceVersion``; then every change, filtered.

        A resourceVersion older than the retained history gets an ERROR event with a 410 Status, as a real API server does.
        """
        query = raw_request.query
        try:
            since = int(query.get("resourceVersion") or 0)
        except ValueError:
            return _error(400, f"invalid resourceVersion: {query.get('resourceVersion')!r}")
        labels = label_matcher(query["labelSelector"]) if query.get("labelSelector") else None
        fields = field_matcher(query["fieldSelector"]) if query.get("fieldSelector") else None
        timeout = float(query.get("timeoutSeconds") or 0) or None

        def wanted(obj: Mapping[str, Any]) -> bool:
            metadata = obj.get("metadata") or {}
            if route.namespace is not None and metadata.get("namespace") != route.namespace:
                return False
            if route.name is not None and metadata.get("name") != route.name:
                return False
            if labels is not None and not labels(metadata.get("labels") or {}):
                return False
            return fields is None or bool(fields(obj))

        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw_request)
        bus = self._buses[route.kind.resource]
        marker = await bus.mark()  # before the snapshot, so that no change in between is lost

        async def send(event: Mapping[str, Any]) -> None:
            await response.write(json.dumps(event).encode() + b"\n")

        async def pump() -> None:
            # Everything up to this revision is sent from the snapshot or the history; the bus only adds what is newer.
            covered = self.lab_revision
            if not since:
                for obj in list(self.iter_objects(route.kind, route.namespace)):
                    if wanted(obj):
                        await send({"type": "ADDED", "object": obj})
            else:
                history = list(self.lab_history)
                if len(history) == HISTORY_LIMIT and since < history[0][0] - 1:
                    gone = status_body(410, "Expired", f"too old resource version: {since} ({history[0][0]})")
                    await send({"type": "ERROR", "object": gone})
                    return
                for revision, kind_name, event in history:
                    if kind_name == route.kind.kind and since < revision <= covered and wanted(event["object"]):
                        await send(event)
            async for event in bus.stream(since=marker):
                obj = event.get("object") or {}
                revision = int((obj.get("metadata") or {}).get("resourceVersion") or 0)
                if revision > covered and wanted(obj):
                    await send(event)

        try:
            await asyncio.wait_for(pump(), timeout)
        except (TimeoutError, ConnectionResetError):
            pass  # the server-side timeout ended the watch, or the client went away
        finally:
            await bus.unmark(marker)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _serve_write(  # noqa: PLR0911 - one return per HTTP answer, as an API server has
        self, method: str, route: _Route, raw_request: aiohttp.web.BaseRequest,
    ) -> aiohttp.web.StreamResponse:
        kind = route.kind
        if method == "DELETE" and route.name is not None:
            return await self._delete(kind, route.namespace, route.name)
        try:
            data = json.loads(await raw_request.read() or b"{}")
        except ValueError as exc:
            return _error(400, f"the request body is not JSON: {exc}")
        if not isinstance(data, dict):
            return _error(400, "the request body must be a JSON object")
        if method == "POST" and route.name is None:
            name = (data.get("metadata") or {}).get("name")
            if not name:
                return _error(422, f"{kind.kind} has no metadata.name", "Invalid")
            if self.get_object(kind, route.namespace, name) is not None:
                return _error(409, f'{kind.plural} "{name}" already exists')
            return await self._store(kind, route.namespace, name, data, event="ADDED", code=201)
        if route.name is None:
            return _error(405, f"{method} needs an object name")
        current = self.get_object(kind, route.namespace, route.name)
        if current is None:
            return _error(404, f'{kind.plural} "{route.name}" not found')
        if method == "PUT":
            data.setdefault("metadata", {})
            data["metadata"].setdefault("name", route.name)
            data["metadata"]["uid"] = current["metadata"].get("uid")
            data["metadata"]["creationTimestamp"] = current["metadata"].get("creationTimestamp")
            return await self._store(kind, route.namespace, route.name, data, event="MODIFIED", code=200)
        if method == "PATCH":
            return await self._store(kind, route.namespace, route.name, _merge_patch(current, data), event="MODIFIED", code=200)
        return _error(405, f"method {method} is not supported")

    async def _store(
        self, kind: ResourceKind, namespace: str | None, name: str, data: dict[str, Any], *, event: str, code: int
    ) -> aiohttp.web.StreamResponse:
        with self.lab_write_lock:
            stamped = self._stamp(kind, data, namespace)
            stamped["metadata"]["name"] = name
            self.objects[kind.resource, stamped["metadata"].get("namespace"), name] = stamped
            self.lab_index.pop(kind.kind, None)
            self.lab_history.append((self.lab_revision, kind.kind, {"type": event, "object": stamped}))
        await self._buses[kind.resource].put({"type": event, "object": stamped})
        return aiohttp.web.json_response(stamped, status=code)

    async def _delete(self, kind: ResourceKind, namespace: str | None, name: str) -> aiohttp.web.StreamResponse:
        current = self.get_object(kind, namespace, name)
        if current is None:
            return _error(404, f'{kind.plural} "{name}" not found')
        with self.lab_write_lock:
            final = dict(current)
            final["metadata"] = dict(current["metadata"], resourceVersion=str(self._bump()))
            self.objects[kind.resource, namespace, name].delete()
            self.lab_index.pop(kind.kind, None)
            self.lab_history.append((self.lab_revision, kind.kind, {"type": "DELETED", "object": final}))
        await self._buses[kind.resource].put({"type": "DELETED", "object": final})
        return aiohttp.web.json_response(final)

    async def _serve_admin(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """``/_lab/faults``: GET shows, POST adds ``{"faults": [...], "rbac_namespaces": [...]}``, DELETE clears."""
        if raw_request.path != "/_lab/faults":
            return _error(404, "unknown lab endpoint; use /_lab/faults")
        plan = self.lab_faults
        if raw_request.method == "DELETE":
            plan.clear()
        elif raw_request.method == "POST":
            try:
                data = json.loads(await raw_request.read() or b"{}")
                for fault in data.get("faults", []):
                    with plan._lock:
                        plan.faults.append(Fault.from_dict(fault))
                if "rbac_namespaces" in data:
                    plan.restrict_to_namespaces(data["rbac_namespaces"])
            except (ValueError, TypeError, KubeApiError) as exc:
                return _error(400, f"bad fault plan: {exc}")
        shown = [
            {
                "path": f.path,
                "status": f.status,
                "delay": f.delay,
                "disconnect": f.disconnect,
                "continue_only": f.continue_only,
                "method": f.method,
                "times": f.times,
                "hits": f.hits,
                "body": None if f.body is None else f.body.decode(errors="replace"),
            }
            for f in plan.faults
        ]
        rbac = None if plan.rbac_namespaces is None else sorted(plan.rbac_namespaces)
        return aiohttp.web.json_response({"faults": shown, "rbac_namespaces": rbac})


def _merge_patch(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch (``null`` removes a key); enough for the lab's strategic patches."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def kind_of(manifest: Mapping[str, Any]) -> ResourceKind:
    """The served kind of a manifest, or a clear error naming the supported ones."""
    kind = KINDS.get(str(manifest.get("kind")))
    if kind is None:
        raise KubeApiError(f"unsupported kind {manifest.get('kind')!r} in the objects; supported: {', '.join(sorted(KINDS))}")
    return kind


# ---------------------------------------------------------------------------------------------
# TLS material and the running server
# ---------------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file 0600 from its creation (never readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def make_tls_material(state_dir: Path, sans: Iterable[str] = ()) -> tuple[Path, Path, Path]:
    """A fresh CA and a server certificate for 127.0.0.1/localhost and ``sans`` (addresses or DNS names); returns (ca, cert, key) paths."""
    # Imported on use: only TLS servers need them, and `apply` should start fast.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    now = datetime.datetime.now(tz=datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zerotrust lab kube-apiserver CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")), *_san_entries(sans)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = state_dir / "ca.crt", state_dir / "server.crt", state_dir / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        key_path, server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


def _san_entries(sans: Iterable[str]) -> list[Any]:
    """x509 SubjectAlternativeName entries: an IP entry for each address, a DNS entry for each name."""
    from cryptography import x509  # noqa: PLC0415

    entries: list[Any] = []
    for san in sans:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            entries.append(x509.DNSName(san))
    return entries


class KubeApiServer:
    """A running emulated API (a background thread with its own event loop).

    Attributes: ``url``, ``ca_file`` (``None`` without TLS), ``token``, ``faults`` (a
    ``FaultPlan``), ``emulator`` (the ``LabKubernetesEmulator``, e.g. ``put_object``).
    Use as a context manager or call ``stop()``.
    """

    def __init__(
        self,
        objects: Iterable[Mapping[str, Any]] = (),
        *,
        tls: bool = True,
        state_dir: Path | None = None,
        port: int = 0,
        token: str | None = None,
        host: str = "127.0.0.1",
        sans: Iterable[str] = (),
    ) -> None:
        self._own_dir = state_dir is None
        self.host = host
        self.state_dir = Path(tempfile.mkdtemp(prefix="zti-kubeapi-")) if state_dir is None else Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self._own_dir:
            # Removed by stop(), and at interpreter exit for a server a caller forgot to stop.
            self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.state_dir), True)
        self.token = token or secrets.token_urlsafe(32)
        self.faults = FaultPlan()
        self.emulator = LabKubernetesEmulator(token=self.token, faults=self.faults)
        for manifest in objects:
            self.emulator.put_object(manifest)
        self.ca_file: str | None = None
        self._ssl: ssl.SSLContext | None = None
        if tls:
            ca_path, cert_path, key_path = make_tls_material(self.state_dir, sans=[host, *sans])
            self.ca_file = str(ca_path)
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(cert_path, key_path)
        self._port = port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="zti-kubeapi", daemon=True)

    @property
    def url(self) -> str:
        """``https://HOST:PORT`` (``http://`` without TLS); HOST is 127.0.0.1 unless the server was given another."""
        return f"{'https' if self._ssl else 'http'}://{self.host}:{self.port}"

    def start(self) -> Self:
        """Start listening; returns when the port is open."""
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise KubeApiError("the emulated Kubernetes API did not start listening within 30 s")
        if self._failure is not None:
            raise KubeApiError(f"the emulated Kubernetes API failed to start: {self._failure}") from self._failure
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # report start-up failures to start(), never swallow silently
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with self.emulator:
            server = aiohttp.web.Server(self.emulator, handler_cancellation=True)
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, self.host, self._port, ssl_context=self._ssl)
            await site.start()
            self.port = int(runner.addresses[0][1])
            self._ready.set()
            try:
                await self._stopping.wait()
            finally:
                await runner.cleanup()

    def stop(self) -> None:
        """Stop the server and remove the state directory if it made one."""
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=10)
        if self._own_dir:
            self._cleanup()

    def endpoint(self) -> dict[str, Any]:
        """What ``endpoint.json`` holds: ``url``, ``ca_file``, ``token``."""
        return {"url": self.url, "ca_file": self.ca_file, "token": self.token}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def start_server(
    objects: Iterable[Mapping[str, Any]] = (), tls: bool = True, *, state_dir: Path | None = None, port: int = 0, token: str | None = None
) -> KubeApiServer:
    """Start the emulated API with these manifests loaded; see ``KubeApiServer``."""
    return KubeApiServer(objects, tls=tls, state_dir=state_dir, port=port, token=token).start()


def write_kubeconfig(
    source: KubeApiServer | str | Path, kubeconfig_path: str | Path, cluster_name: str, context: str | None = None
) -> Path:
    """Write a kubeconfig (0600: it holds the token) for a running server or its endpoint.json."""
    endpoint = source.endpoint() if isinstance(source, KubeApiServer) else json.loads(Path(source).read_text())
    context = context or cluster_name
    cluster: dict[str, Any] = {"server": endpoint["url"]}
    if endpoint.get("ca_file"):
        cluster["certificate-authority"] = str(endpoint["ca_file"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": f"{cluster_name}-user", "user": {"token": endpoint["token"]}}],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": f"{cluster_name}-user"}}],
        "current-context": context,
    }
    path = Path(kubeconfig_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, yaml.safe_dump(config, sort_keys=False).encode())
    return path


def _atomic_write_private(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    _write_private(temporary, text.encode())
    os.replace(temporary, path)


def load_objects(path: str | Path) -> list[dict[str, Any]]:
    """Read OBJECTS.json (a list of manifests, or a ``{"items": [...]}`` List)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise KubeApiError(f"cannot read the objects file {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise KubeApiError(f"{path} must hold a JSON list of Kubernetes manifests")
    for item in data:
        kind_of(item)
    return data


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    objects = load_objects(args.objects) if args.objects else []
    token_file = state_dir / "token"
    token = secrets.token_urlsafe(32)
    _write_private(token_file, token.encode())
    server = KubeApiServer(objects, tls=not args.no_tls, state_dir=state_dir, port=args.port, token=token, host=args.host, sans=args.san)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    server.start()
    _atomic_write_private(state_dir / "endpoint.json", json.dumps(server.endpoint(), indent=2) + "\n")
    print(f"serving {len(objects)} objects on {server.url} (endpoint: {state_dir / 'endpoint.json'})", flush=True)
    try:
        while not done.wait(timeout=1):
            if not server._thread.is_alive():
                print("the server thread stopped unexpectedly", file=sys.stderr)
                return 1
    finally:
        server.stop()
        with contextlib.suppress(FileNotFoundError):
            (state_dir / "endpoint.json").unlink()
    return 0


def apply_objects(kubeconfig: str | Path, objects: Iterable[Mapping[str, Any]], context: str | None = None) -> list[str]:
    """Create or replace each manifest through the real API with the ``kubernetes`` client; returns what it did."""
    from kubernetes import config as kube_config  # noqa: PLC0415 - heavy; only `apply` needs it

    client = kube_config.new_client_from_config(config_file=str(kubeconfig), context=context)  # type: ignore[no-untyped-call]

    def call(method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        request = client.param_serialize(
            method,
            path,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = client.call_api(*request)
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, None

    done: list[str] = []
    try:
        for manifest in objects:
            kind = kind_of(manifest)
            metadata = manifest.get("metadata") or {}
            name = metadata.get("name")
            namespace = (metadata.get("namespace") or "default") if kind.namespaced else None
            collection = kind.collection_path(namespace)
            label = f"{kind.kind} {namespace + '/' if namespace else ''}{name}"
            status, current = call("GET", f"{collection}/{name}")
            if status == 404:
                status, answer = call("POST", collection, manifest)
                verb = "created"
            elif status == 200:
                body = dict(manifest, metadata=dict(metadata, resourceVersion=current["metadata"].get("resourceVersion")))
                status, answer = call("PUT", f"{collection}/{name}", body)
                verb = "replaced"
            else:
                raise KubeApiError(f"GET {collection}/{name} answered {status}: {(current or {}).get('message')}")
            if status >= 300:
                raise KubeApiError(f"{verb[:-1]}ing {label} answered {status}: {(answer or {}).get('message')}")
            done.append(f"{verb} {label}")
    finally:
        client.close()
    return done


def main(argv: list[str] | None = None) -> int:
    """``serve`` or ``apply``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m lab.kubeapi", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the emulated API in the foreground")
    serve.add_argument("--state-dir", required=True, help="where the CA, certificate, token and endpoint.json go")
    serve.add_argument("--objects", help="JSON list of manifests to load at start")
    serve.add_argument("--port", type=int, default=0, help="TCP port (0: any free one)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1; the lab: its API node's)")
    serve.add_argument("--san", action="append", default=[], help="an extra address or DNS name for the certificate (repeatable)")
    serve.add_argument("--no-tls", action="store_true", help="plain HTTP (never the default)")
    apply = sub.add_parser("apply", help="create or replace objects through the API")
    apply.add_argument("--kubeconfig", required=True)
    apply.add_argument("--context")
    apply.add_argument("objects", help="JSON list of manifests")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        for line in apply_objects(args.kubeconfig, load_objects(args.objects), context=args.context):
            print(line)
        return 0
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

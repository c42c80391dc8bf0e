# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Paginated LISTs of plain JSON against one cluster.

One cluster-wide LIST per kind (``limit``/``continue``); a 410 Gone in the middle of a
pagination restarts that kind's list from the beginning (a bounded number of times); a 403 on
a cluster-wide list falls back to one list per configured namespace. Responses are decoded
with ``json.loads`` into dicts, never into typed client objects: for 10,000 pods that is the
difference between half a second and three. Every failure raises ``ApiCallError`` naming the
cluster, the call and the cause, with secrets scrubbed, and nothing partial is returned.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional
from urllib.parse import urlencode

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import ClusterConnection
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import ApiCallError, scrub


@dataclasses.dataclass(frozen=True)
class Kind:
    """A kind the inventory reads and where its list lives."""

    name: str
    path: str  # e.g. /api/v1 or /apis/discovery.k8s.io/v1
    plural: str
    namespaced: bool

    def list_path(self, namespace: Optional[str] = None) -> str:
        """Cluster-wide list path, or the namespaced one."""
        if namespace is not None:
            return f"{self.path}/namespaces/{namespace}/{self.plural}"
        return f"{self.path}/{self.plural}"


NAMESPACES = Kind("Namespace", "/api/v1", "namespaces", namespaced=False)
NODES = Kind("Node", "/api/v1", "nodes", namespaced=False)
PODS = Kind("Pod", "/api/v1", "pods", namespaced=True)
SERVICES = Kind("Service", "/api/v1", "services", namespaced=True)
ENDPOINT_SLICES = Kind("EndpointSlice", "/apis/discovery.k8s.io/v1", "endpointslices", namespaced=True)
ALL_KINDS: tuple[Kind, ...] = (NAMESPACES, NODES, PODS, SERVICES, ENDPOINT_SLICES)

MAX_RELISTS = 3
# Status reasons that explain a failure better than the bare HTTP status.
_HINTS = {
    401: "the API rejected the credentials (401 Unauthorized): check the token or client certificate of this connection",
    403: (
        "the API refused the request (403 Forbidden): grant get/list/watch on this resource (see docs/rbac.md)"
        " or set the connection's namespaces"
    ),
    404: "the API does not serve this resource (404 Not Found): the cluster may be too old (EndpointSlices need Kubernetes 1.21+)",
    410: "the list expired (410 Gone) more often than the plugin retries",
}


@dataclasses.dataclass
class ListOptions:
    """Selectors and paging for one kind."""

    label_selector: Optional[str] = None
    field_selector: Optional[str] = None
    page_size: int = 500


class ClusterClient:
    """A keep-alive HTTPS client for one cluster; ``close()`` when done."""

    def __init__(self, connection: ClusterConnection, timeout: float = 30.0) -> None:
        import urllib3  # noqa: PLC0415 - imported on use: importing the module stays cheap and dependency-free

        self.connection = connection
        self._urllib3 = urllib3
        self.requests_made = 0
        # A header dict that can hold one Impersonate-Group header per group.
        self._headers = urllib3.HTTPHeaderDict()
        for name, value in connection.headers("zerotrust.workloads-inventory"):
            self._headers.add(name, value)
        base = connection.server.rstrip("/")
        self._base = base
        pool_options: dict[str, Any] = {
            "timeout": urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
            "retries": False,
            "maxsize": 2,
        }
        if base.startswith("https://"):
            pool_options["ssl_context"] = connection.ssl_context()
            if not connection.validate_certs:
                pool_options["cert_reqs"] = "CERT_NONE"
                pool_options["assert_hostname"] = False
            elif connection.tls_server_name:
                pool_options["server_hostname"] = connection.tls_server_name
        self._pool = connection.pool_manager(urllib3, **pool_options)

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.clear()

    def _fail(self, call: str, cause: str, status: int = 0) -> ApiCallError:
        return ApiCallError(self.connection.name, call, scrub(cause, self.connection.secrets()), status)

    def get_json(self, path: str, query: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """GET a path and decode its JSON object body; raises ApiCallError for anything else."""
        url_path = f"{path}?{urlencode(query)}" if query else path
        call = f"GET {self._base}{url_path}"
        errors = self._urllib3.exceptions
        try:
            response = self._pool.request("GET", f"{self._base}{url_path}", headers=self._headers, preload_content=True)
        except errors.SSLError as exc:
            cause = f"TLS verification failed ({exc}): set ca_cert to the cluster's CA (validate_certs: false only for tests)"
            raise self._fail(call, cause) from None
        except errors.NewConnectionError as exc:  # a subclass of ConnectTimeoutError, but a refusal is not a timeout
            raise self._fail(call, f"connection failed ({type(exc).__name__}: {exc})") from None
        except (errors.ReadTimeoutError, errors.ConnectTimeoutError, errors.TimeoutError) as exc:
            cause = f"timed out ({type(exc).__name__}): the API did not answer in time; raise request_timeout if it is just slow"
            raise self._fail(call, cause) from None
        except (errors.ProtocolError, errors.HTTPError, OSError) as exc:
            raise self._fail(call, f"connection failed ({type(exc).__name__}: {exc})") from None
        finally:
            self.requests_made += 1
        body = response.data
        if response.status >= 400:
            raise self._fail(call, self._explain(response.status, body), response.status)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise self._fail(call, f"malformed response body (not JSON: {exc}; first bytes {body[:60]!r})") from None
        if not isinstance(data, dict):
            raise self._fail(call, f"malformed response body (JSON holding {type_phrase(data)}, expected an object)")
        return data

    @staticmethod
    def _explain(status: int, body: bytes) -> str:
        message = ""
        try:
            decoded = json.loads(body)
            if isinstance(decoded, dict):
                message = str(decoded.get("message") or "")
        except ValueError:
            message = body[:200].decode(errors="replace")
        hint = _HINTS.get(status, f"the API answered HTTP {status}")
        return f"{hint}; server said: {message}" if message else hint

    def list_all(self, kind: Kind, options: ListOptions, namespace: Optional[str] = None) -> list[dict[str, Any]]:
        """Every object of a kind (in one namespace if given), following continue tokens."""
        path = kind.list_path(namespace)
        for _attempt in range(MAX_RELISTS + 1):
            items: list[dict[str, Any]] = []
            continue_token: Optional[str] = None
            expired = False
            while True:
                query: dict[str, Any] = {"limit": options.page_size}
                if options.label_selector:
                    query["labelSelector"] = options.label_selector
                if options.field_selector:
                    query["fieldSelector"] = options.field_selector
                if continue_token:
                    query["continue"] = continue_token
                try:
                    page = self.get_json(path, query)
                except ApiCallError as exc:
                    if exc.status == 410 and continue_token:
                        expired = True  # the snapshot is gone: restart this kind's list from the start
                        break
                    raise
                page_items = page.get("items")
                if not isinstance(page_items, list):
                    raise self._fail(f"GET {self._base}{path}?{urlencode(query)}", "malformed response body (no 'items' list)")
                items.extend(item for item in page_items if isinstance(item, dict))
                continue_token = (page.get("metadata") or {}).get("continue") or None
                if not continue_token:
                    break
            if not expired:
                return items
        raise self._fail(f"GET {self._base}{path}", _HINTS[410], 410)


def fetch_cluster(
    client: ClusterClient,
    kinds: tuple[Kind, ...],
    options: dict[str, ListOptions],
) -> dict[str, list[dict[str, Any]]]:
    """The raw objects of a cluster, by kind name: the cacheable snapshot the builder reads.

    Namespaced kinds fall back to per-namespace lists when the cluster-wide list is forbidden
    and the connection names its namespaces; with namespaces set, only those are kept.
    """
    allowed = client.connection.namespaces
    snapshot: dict[str, list[dict[str, Any]]] = {}
    for kind in kinds:
        kind_options = options.get(kind.name) or ListOptions()
        if kind is NAMESPACES and allowed:
            snapshot[kind.name] = _namespaces_or_configured(client, kind_options, allowed)
            continue
        try:
            items = client.list_all(kind, kind_options)
        except ApiCallError as exc:
            if exc.status != 403 or not kind.namespaced or not allowed:
                raise
            items = []
            for namespace in allowed:
                items.extend(client.list_all(kind, kind_options, namespace))
        if kind.namespaced and allowed:
            wanted = set(allowed)
            items = [item for item in items if (item.get("metadata") or {}).get("namespace") in wanted]
        snapshot[kind.name] = items
    return snapshot


def _namespaces_or_configured(client: ClusterClient, options: ListOptions, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """The configured namespaces' objects; when listing namespaces is forbidden, stand-ins by name."""
    try:
        items = client.list_all(NAMESPACES, options)
    except ApiCallError as exc:
        if exc.status != 403:
            raise
        return [{"kind": "Namespace", "metadata": {"name": name}} for name in allowed]
    wanted = set(allowed)
    return [item for item in items if (item.get("metadata") or {}).get("name") in wanted]

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Cluster connections: where the API is, how to trust it and how to authenticate.

A connection comes from one of three sources, in this order of precedence for each field:
explicit ``host`` + ``api_key`` (+ CA), a kubeconfig file and context, or the pod's service
account (``in_cluster``). Every field not set in the inventory file falls back to the
``K8S_AUTH_*`` variables that kubernetes.core and AWX's "OpenShift or Kubernetes API Bearer
Token" credential inject. Static kubeconfig users (token, token file, client certificate) are
read here; ``exec`` and ``auth-provider`` users are handed to the ``kubernetes`` package's
loader, imported only then. kubernetes.core's names are accepted too: its aliases
(``ssl_ca_cert``, ``verify_ssl``, ``cert_file``, ``key_file``), an HTTP proxy (``proxy``,
``no_proxy``, ``proxy_headers``, the kubeconfig's ``proxy-url``) and impersonation
(``impersonate_user``, ``impersonate_groups``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import ConnectionConfigError

# Guarded so that importing this module never fails; reading a kubeconfig without PyYAML
# raises ConnectionConfigError naming the package.
try:
    import yaml
except ImportError:
    HAS_YAML = False
else:
    HAS_YAML = True

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# Option name -> the variable kubernetes.core reads when the option is not set.
ENV_FALLBACKS: dict[str, str] = {
    "host": "K8S_AUTH_HOST",
    "api_key": "K8S_AUTH_API_KEY",
    "kubeconfig": "K8S_AUTH_KUBECONFIG",
    "context": "K8S_AUTH_CONTEXT",
    "ca_cert": "K8S_AUTH_SSL_CA_CERT",
    "client_cert": "K8S_AUTH_CERT_FILE",
    "client_key": "K8S_AUTH_KEY_FILE",
    "validate_certs": "K8S_AUTH_VERIFY_SSL",
    "proxy": "K8S_AUTH_PROXY",
    "no_proxy": "K8S_AUTH_NO_PROXY",
    "impersonate_user": "K8S_AUTH_IMPERSONATE_USER",
    "impersonate_groups": "K8S_AUTH_IMPERSONATE_GROUPS",
}
# kubernetes.core's other names for the same settings (its inventory and module documentation list them).
ALIASES: dict[str, str] = {
    "ssl_ca_cert": "ca_cert",
    "verify_ssl": "validate_certs",
    "cert_file": "client_cert",
    "key_file": "client_key",
}
CONNECTION_KEYS = frozenset({
    "name", "kubeconfig", "context", "host", "api_key", "ca_cert", "client_cert", "client_key",
    "validate_certs", "in_cluster", "namespaces", "proxy", "no_proxy", "proxy_headers", "impersonate_user",
    "impersonate_groups", "username", "password", "persist_config", *ALIASES,
})
_PROXY_HEADER_KEYS = frozenset({"proxy_basic_auth", "user_agent", "basic_auth"})
_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n"})


@dataclasses.dataclass
class ClusterConnection:
    """Everything needed to call one cluster's API. ``token`` is a secret: never log or return it."""

    name: str
    server: str
    token: Optional[str] = None
    ca_file: Optional[str] = None
    ca_data: Optional[str] = None
    client_cert_file: Optional[str] = None
    client_key_file: Optional[str] = None
    client_cert_data: Optional[bytes] = None
    client_key_data: Optional[bytes] = None
    validate_certs: bool = True
    tls_server_name: Optional[str] = None
    namespaces: tuple[str, ...] = ()
    source: str = ""
    proxy: Optional[str] = None
    no_proxy: tuple[str, ...] = ()
    proxy_basic_auth: Optional[str] = None
    user_agent: Optional[str] = None
    impersonate_user: Optional[str] = None
    impersonate_groups: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # The default dataclass repr would print the token.
        return f"ClusterConnection(name={self.name!r}, server={self.server!r}, source={self.source!r})"

    def secrets(self) -> list[str]:
        """What must never appear in output: the token, inline key material and the proxy's credentials."""
        found = [self.token or ""]
        if self.client_key_data:
            found.append(self.client_key_data.decode(errors="replace"))
        if self.proxy_basic_auth:
            found.extend((self.proxy_basic_auth, self.proxy_basic_auth.partition(":")[2]))
        password = urlsplit(self.proxy).password if self.proxy else None
        if password:
            found.append(password)
        return [secret for secret in found if secret]

    def headers(self, user_agent: str) -> list[tuple[str, str]]:
        """Request headers: JSON, the bearer token and impersonation (one Impersonate-Group header per group)."""
        headers = [("Accept", "application/json"), ("User-Agent", self.user_agent or user_agent)]
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        if self.impersonate_user:
            headers.append(("Impersonate-User", self.impersonate_user))
        headers.extend(("Impersonate-Group", group) for group in self.impersonate_groups)
        return headers

    def proxy_for_server(self) -> Optional[str]:
        """The proxy URL to reach the API server through, or None (no proxy, or the server is in ``no_proxy``)."""
        if not self.proxy:
            return None
        host = (urlsplit(self.server).hostname or "").lower()
        for raw_entry in self.no_proxy:
            entry = raw_entry.strip().lower()
            if not entry:
                continue
            if entry == "*" or host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")) or _in_network(host, entry):
                return None
        return self.proxy

    def pool_manager(self, urllib3: Any, **options: Any) -> Any:
        """A urllib3 pool manager for this cluster: through the proxy when one applies (CONNECT for https)."""
        proxy = self.proxy_for_server()
        if proxy is None:
            return urllib3.PoolManager(**options)
        proxy_headers = urllib3.make_headers(proxy_basic_auth=self.proxy_basic_auth) if self.proxy_basic_auth else None
        return urllib3.ProxyManager(proxy, proxy_headers=proxy_headers, **options)

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: verification on unless ``validate_certs`` is false."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        except (OSError, ssl.SSLError) as exc:
            where = self.ca_file or "inline data"
            raise ConnectionConfigError(f"cluster {self.name!r}: cannot load the CA certificate ({where}): {exc}") from None
        if not self.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert_file or self.client_cert_data:
            self._load_client_certificate(context)
        return context

    def _load_client_certificate(self, context: ssl.SSLContext) -> None:
        if self.client_cert_file:
            try:
                context.load_cert_chain(self.client_cert_file, self.client_key_file)
            except (OSError, ssl.SSLError) as exc:
                message = f"cluster {self.name!r}: cannot load the client certificate {self.client_cert_file}: {exc}"
                raise ConnectionConfigError(message) from None
            return
        # ssl only loads key material from files: write it 0600 into a private directory, load, remove.
        with tempfile.TemporaryDirectory(prefix="zt-k8s-") as directory:
            cert_path = Path(directory) / "client.crt"
            key_path = Path(directory) / "client.key"
            for path, data in ((cert_path, self.client_cert_data), (key_path, self.client_key_data or b"")):
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(data or b"")
            try:
                context.load_cert_chain(str(cert_path), str(key_path) if self.client_key_data else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConnectionConfigError(f"cluster {self.name!r}: cannot load the inline client certificate: {exc}") from None


def _in_network(host: str, entry: str) -> bool:
    """Is ``host`` an address inside the CIDR or address ``entry`` (a no_proxy entry)?"""
    try:
        return ipaddress.ip_address(host.strip("[]")) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


def _as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConnectionConfigError(f"{what} must be a boolean, got {value!r}")


def _decode_data(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ConnectionConfigError(f"{what} is not valid base64: {exc}") from None


def _named(entries: Any, name: str, what: str, path: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            body = entry.get(what)
            return dict(body) if isinstance(body, Mapping) else {}
    raise ConnectionConfigError(f"kubeconfig {path}: no {what} named {name!r}")


def load_kubeconfig(paths: str) -> tuple[dict[str, Any], Path]:
    """Read a kubeconfig (``paths`` may be ``a:b`` as in KUBECONFIG; the first file wins per entry)."""
    if not HAS_YAML:
        raise ConnectionConfigError("reading a kubeconfig needs the Python package 'PyYAML'; install it with: pip install PyYAML")
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    base: Optional[Path] = None
    for raw_path in [part for part in paths.split(os.pathsep) if part]:
        path = Path(raw_path).expanduser()
        if not path.is_file():
            if len(paths.split(os.pathsep)) == 1:
                raise ConnectionConfigError(f"kubeconfig {path} does not exist or is not a file")
            continue
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConnectionConfigError(f"kubeconfig {path} cannot be read: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConnectionConfigError(f"kubeconfig {path} is not a mapping")
        base = base or path.parent
        for section in ("clusters", "users", "contexts"):
            known = {entry.get("name") for entry in merged[section]}
            merged[section].extend(
                entry for entry in data.get(section) or [] if isinstance(entry, Mapping) and entry.get("name") not in known
            )
        merged.setdefault("current-context", data.get("current-context"))
        if not merged.get("current-context"):
            merged["current-context"] = data.get("current-context")
    if base is None:
        raise ConnectionConfigError(f"no kubeconfig file found in {paths!r}")
    return merged, base


def _resolve_path(value: Optional[str], base: Path) -> Optional[str]:
    if not value:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _from_kubeconfig(settings: Mapping[str, Any], kubeconfig: str) -> ClusterConnection:
    config, base = load_kubeconfig(kubeconfig)
    context_name = settings.get("context") or config.get("current-context")
    if not context_name:
        raise ConnectionConfigError(f"kubeconfig {kubeconfig} has no current-context: set the connection's context")
    context = _named(config["contexts"], context_name, "context", kubeconfig)
    cluster = _named(config["clusters"], str(context.get("cluster")), "cluster", kubeconfig)
    user = _named(config["users"], str(context.get("user")), "user", kubeconfig) if context.get("user") else {}
    if not cluster.get("server"):
        raise ConnectionConfigError(f"kubeconfig {kubeconfig}: cluster {context.get('cluster')!r} has no server")
    connection = ClusterConnection(
        proxy=str(cluster["proxy-url"]) if cluster.get("proxy-url") else None,
        name=str(settings.get("name") or context_name),
        server=str(cluster["server"]),
        ca_file=_resolve_path(cluster.get("certificate-authority"), base),
        ca_data=_decode_data(cluster["certificate-authority-data"], "certificate-authority-data").decode()
        if cluster.get("certificate-authority-data") else None,
        validate_certs=not _as_bool(cluster.get("insecure-skip-tls-verify", False), "insecure-skip-tls-verify"),
        tls_server_name=cluster.get("tls-server-name"),
        source=f"kubeconfig {kubeconfig} context {context_name}",
    )
    if user.get("exec") or user.get("auth-provider"):
        _from_kubernetes_loader(connection, kubeconfig, context_name)
    elif user.get("username") and not user.get("token"):
        raise ConnectionConfigError(
            f"kubeconfig {kubeconfig}: user {context.get('user')!r} uses basic auth, which Kubernetes removed; use a token"
        )
    else:
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token_path = _resolve_path(user["tokenFile"], base) or ""
            try:
                token = Path(token_path).read_text().strip()
            except OSError as exc:
                raise ConnectionConfigError(f"kubeconfig {kubeconfig}: cannot read tokenFile {token_path}: {exc}") from None
        connection.token = token or None
        connection.client_cert_file = _resolve_path(user.get("client-certificate"), base)
        connection.client_key_file = _resolve_path(user.get("client-key"), base)
        if user.get("client-certificate-data"):
            connection.client_cert_data = _decode_data(user["client-certificate-data"], "client-certificate-data")
        if user.get("client-key-data"):
            connection.client_key_data = _decode_data(user["client-key-data"], "client-key-data")
    return connection


def _from_kubernetes_loader(connection: ClusterConnection, kubeconfig: str, context: str) -> None:
    """Let the ``kubernetes`` package run exec plugins and auth providers (imported only here)."""
    try:
        from kubernetes import client as kube_client  # noqa: PLC0415 - the heavy package only for exec/auth-provider users
        from kubernetes import config as kube_config  # noqa: PLC0415
    except ImportError:
        raise ConnectionConfigError(
            f"kubeconfig {kubeconfig} context {context} authenticates through an exec plugin or auth provider:"
            " install the 'kubernetes' Python package"
        ) from None
    configuration = kube_client.Configuration()
    try:
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration, persist_config=False,
        )
    except Exception as exc:  # the loader raises many types (ConfigException, exec failures, OSError)
        message = f"kubeconfig {kubeconfig} context {context}: the kubernetes loader failed: {type(exc).__name__}"
        raise ConnectionConfigError(message) from None
    header = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get("BearerToken") or ""
    connection.token = header[7:] if header.lower().startswith("bearer ") else (header or None)
    connection.client_cert_file = configuration.cert_file or None
    connection.client_key_file = configuration.key_file or None
    if configuration.ssl_ca_cert:
        connection.ca_file, connection.ca_data = configuration.ssl_ca_cert, None


def _in_cluster(settings: Mapping[str, Any], environ: Mapping[str, str]) -> ClusterConnection:
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ConnectionConfigError("in_cluster is set but KUBERNETES_SERVICE_HOST is not: run inside a pod or configure kubeconfig/host")
    token_path = SERVICE_ACCOUNT_DIR / "token"
    try:
        token = token_path.read_text().strip()
    except OSError as exc:
        raise ConnectionConfigError(f"in_cluster: cannot read the service account token {token_path}: {exc}") from None
    server_host = f"[{host}]" if ":" in host else host
    return ClusterConnection(
        name=str(settings.get("name") or "in-cluster"),
        server=f"https://{server_host}:{port}",
        token=token,
        ca_file=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
        source="in-cluster service account",
    )


def _default_name(server: str) -> str:
    host = urlsplit(server).hostname or server
    return host.replace(".", "-").replace(":", "-")


def _base_connection(merged: Mapping[str, Any], environ: Mapping[str, str]) -> ClusterConnection:
    """The connection's source: explicit host, a kubeconfig, the service account, or the defaults."""
    if merged.get("host"):
        host = str(merged["host"])
        name = str(merged.get("name") or _default_name(host))
        if merged.get("kubeconfig") and not merged.get("api_key"):
            # host overrides the kubeconfig's server; the kubeconfig still supplies the credentials.
            from_file = _from_kubeconfig(merged, str(merged["kubeconfig"]))
            from_file.server = host
            return from_file
        return ClusterConnection(name=name, server=host, source=f"host {host}")
    if merged.get("kubeconfig"):
        return _from_kubeconfig(merged, str(merged["kubeconfig"]))
    if _as_bool(merged.get("in_cluster", False), "in_cluster"):
        return _in_cluster(merged, environ)
    default_kubeconfig = Path("~/.kube/config").expanduser()
    if default_kubeconfig.is_file():
        return _from_kubeconfig(merged, str(default_kubeconfig))
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return _in_cluster(merged, environ)
    raise ConnectionConfigError(
        "no cluster to connect to: set kubeconfig (+ context), host + api_key, or in_cluster in the connection,"
        " or K8S_AUTH_HOST/K8S_AUTH_KUBECONFIG"
    )


def _canonical_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings under their canonical names (kubernetes.core's aliases accepted); refuses an alias that contradicts its name."""
    unknown = {str(key) for key in settings} - CONNECTION_KEYS
    if unknown:
        raise ConnectionConfigError(f"unknown connection settings {sorted(unknown)}; known: {sorted(CONNECTION_KEYS)}")
    merged: dict[str, Any] = {}
    for key, value in settings.items():
        if value is None:
            continue
        name = ALIASES.get(key, key)
        if name in merged and merged[name] != value:
            alias = next(alias for alias, target in ALIASES.items() if target == name)
            raise ConnectionConfigError(f"{name} and its alias {alias} are both set, to different values: keep one")
        merged[name] = value
    for key in ("username", "password"):
        if merged.get(key):
            raise ConnectionConfigError(
                f"{key} is set, but Kubernetes removed basic authentication (1.19): use api_key (a token) or a kubeconfig"
            )
    merged.pop("persist_config", None)  # kubernetes.core writes refreshed tokens back to the kubeconfig; nothing here writes
    return merged


def _proxy_settings(connection: ClusterConnection, merged: Mapping[str, Any]) -> None:
    """proxy, no_proxy and proxy_headers (kubernetes.core's names) onto the connection."""
    if merged.get("proxy"):
        connection.proxy = str(merged["proxy"])
    if connection.proxy and urlsplit(connection.proxy).scheme not in ("http", "https"):
        # The URL itself is not echoed: it may carry the proxy's password.
        scheme = urlsplit(connection.proxy).scheme or "one without a scheme"
        raise ConnectionConfigError(f"proxy must be an http:// or https:// URL, not {scheme}")
    no_proxy = merged.get("no_proxy") or ()
    connection.no_proxy = tuple(part for part in (no_proxy.split(",") if isinstance(no_proxy, str) else map(str, no_proxy)) if part.strip())
    headers = merged.get("proxy_headers") or {}
    if not isinstance(headers, Mapping) or set(headers) - _PROXY_HEADER_KEYS:
        raise ConnectionConfigError(f"proxy_headers must be a mapping with {', '.join(sorted(_PROXY_HEADER_KEYS))}")
    if headers.get("basic_auth"):
        raise ConnectionConfigError(
            "proxy_headers.basic_auth is set, but Kubernetes removed basic authentication (1.19): use api_key (a token) or a kubeconfig"
        )
    if headers.get("proxy_basic_auth"):
        if ":" not in str(headers["proxy_basic_auth"]):
            raise ConnectionConfigError("proxy_headers.proxy_basic_auth must be USER:PASSWORD")
        connection.proxy_basic_auth = str(headers["proxy_basic_auth"])
    if headers.get("user_agent"):
        connection.user_agent = str(headers["user_agent"])


def _impersonation(connection: ClusterConnection, merged: Mapping[str, Any]) -> None:
    """impersonate_user and impersonate_groups (a list, or comma-separated text as in K8S_AUTH_IMPERSONATE_GROUPS)."""
    if merged.get("impersonate_user"):
        connection.impersonate_user = str(merged["impersonate_user"])
    groups = merged.get("impersonate_groups") or []
    if isinstance(groups, str):
        groups = [group.strip() for group in groups.split(",")]
    if not isinstance(groups, (list, tuple)) or not all(isinstance(group, str) for group in groups):
        raise ConnectionConfigError("impersonate_groups must be a list of group names")
    connection.impersonate_groups = tuple(group for group in groups if group)
    if connection.impersonate_groups and not connection.impersonate_user:
        raise ConnectionConfigError("impersonate_groups needs impersonate_user: Kubernetes impersonates groups only for a user")


def resolve_connection(settings: Mapping[str, Any], environ: Mapping[str, str]) -> ClusterConnection:
    """One connection from its inventory settings, unset fields taken from ``K8S_AUTH_*``."""
    merged = _canonical_settings(settings)
    for option, variable in ENV_FALLBACKS.items():
        if option not in merged and environ.get(variable):
            merged[option] = environ[variable]
    namespaces = merged.get("namespaces") or []
    if isinstance(namespaces, str) or not all(isinstance(item, str) and item for item in namespaces):
        raise ConnectionConfigError(f"namespaces must be a list of namespace names, got {namespaces!r}")

    connection = _base_connection(merged, environ)
    if merged.get("api_key"):
        connection.token = str(merged["api_key"])
    if merged.get("ca_cert"):
        connection.ca_file, connection.ca_data = str(Path(str(merged["ca_cert"])).expanduser()), None
    if merged.get("client_cert"):
        connection.client_cert_file = str(merged["client_cert"])
    if merged.get("client_key"):
        connection.client_key_file = str(merged["client_key"])
    if "validate_certs" in merged:
        connection.validate_certs = _as_bool(merged["validate_certs"], "validate_certs")
    _proxy_settings(connection, merged)
    _impersonation(connection, merged)
    connection.namespaces = tuple(namespaces)
    scheme = urlsplit(connection.server).scheme
    if scheme not in ("https", "http"):
        raise ConnectionConfigError(f"cluster {connection.name!r}: server {connection.server!r} must be an https:// URL")
    return connection


def resolve_connections(connections: Optional[list[Mapping[str, Any]]], environ: Mapping[str, str]) -> list[ClusterConnection]:
    """All configured clusters (one from the environment when none is configured); names must be unique."""
    entries = connections or [{}]
    resolved: list[ClusterConnection] = []
    for index, settings in enumerate(entries):
        if not isinstance(settings, Mapping):
            raise ConnectionConfigError(f"connections[{index}] must be a mapping, got {type_phrase(settings)}")
        try:
            resolved.append(resolve_connection(settings, environ))
        except ConnectionConfigError as exc:
            raise ConnectionConfigError(f"connections[{index}]: {exc}") from None
    names = [connection.name for connection in resolved]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConnectionConfigError(f"cluster names must be unique, {duplicates} appear more than once: set each connection's name")
    return resolved

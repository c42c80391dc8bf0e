# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Safe host and group names from untrusted cluster metadata.

Group names become valid Ansible identifiers (``[A-Za-z_][A-Za-z0-9_]*``); host names keep
``[A-Za-z0-9._-]`` only. Anything else (quotes, spaces, ``$(...)``, newlines, non-ASCII)
becomes ``_``, and an over-long name is cut and suffixed with a hash of the original so that
two long names stay distinct.
"""

from __future__ import annotations

import functools
import hashlib
import re
import string
from collections.abc import Mapping

from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import ConnectionConfigError

MAX_GROUP_NAME = 128
MAX_HOST_NAME = 253
DEFAULT_HOST_FORMAT: dict[str, str] = {
    "pod": "{name}.{namespace}.pod.{cluster}",
    "service": "{name}.{namespace}.service.{cluster}",
    "node": "{name}",
}
# Used when two objects would get the same host name: unique by construction in Kubernetes.
QUALIFIED_HOST_FORMAT: dict[str, str] = {
    "pod": "{name}.{namespace}.pod.{cluster}",
    "service": "{name}.{namespace}.service.{cluster}",
    "node": "{name}.node.{cluster}",
}
FORMAT_FIELDS = frozenset({"name", "namespace", "cluster", "kind", "uid", "node"})

_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


@functools.lru_cache(maxsize=65536)
def safe_group_name(raw: str) -> str:
    """A valid Ansible group name for ``raw`` (cached: many hosts share label groups)."""
    name = _GROUP_UNSAFE.sub("_", raw)
    if not name or name[0].isdigit():
        name = f"_{name}"
    if len(name) > MAX_GROUP_NAME:
        name = f"{name[:MAX_GROUP_NAME - 9]}_{_digest(raw)}"
    return name


def safe_host_name(raw: str) -> str:
    """A host name made of ``[A-Za-z0-9._-]``, at most 253 characters."""
    name = _HOST_UNSAFE.sub("_", raw).strip(".") or "_"
    if len(name) > MAX_HOST_NAME:
        name = f"{name[:MAX_HOST_NAME - 9]}-{_digest(raw)}"
    return name


def validate_host_format(formats: Mapping[str, str]) -> dict[str, str]:
    """Merge user formats over the defaults, allowing only ``{field}`` placeholders from FORMAT_FIELDS."""
    unknown_kinds = set(formats) - set(DEFAULT_HOST_FORMAT)
    if unknown_kinds:
        raise ConnectionConfigError(f"host_format: unknown kinds {sorted(unknown_kinds)}; use pod, service, node")
    merged = dict(DEFAULT_HOST_FORMAT)
    for kind, template in formats.items():
        if not isinstance(template, str) or not template:
            raise ConnectionConfigError(f"host_format.{kind} must be a non-empty string")
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ConnectionConfigError(f"host_format.{kind} {template!r} is not a valid format: {exc}") from None
        for _literal, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in FORMAT_FIELDS or spec or conversion:
                raise ConnectionConfigError(
                    f"host_format.{kind} {template!r}: placeholder {{{field}}} is not allowed; use {', '.join(sorted(FORMAT_FIELDS))}"
                )
        if "{name}" not in template:
            raise ConnectionConfigError(f"host_format.{kind} {template!r} must contain {{name}}")
        merged[kind] = template
    return merged


def render_host_name(template: str, **fields: str) -> str:
    """Fill a validated template; every field is made host-safe first, then the whole name."""
    return safe_host_name(template.format_map({key: safe_host_name(value) if value else "_" for key, value in fields.items()}))

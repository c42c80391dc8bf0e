# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Errors of the Kubernetes inventory backend; the plugin turns them into AnsibleParserError."""

from __future__ import annotations

import re
from collections.abc import Iterable

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


class KubernetesInventoryError(Exception):
    """Base error: the message says what is wrong and how to fix it."""


class ConnectionConfigError(KubernetesInventoryError):
    """A connection's settings are invalid or incomplete (no API call was made)."""


class ApiCallError(KubernetesInventoryError):
    """An API call failed: names the cluster, the call and the cause."""

    def __init__(self, cluster: str, call: str, cause: str, status: int = 0) -> None:
        self.cluster = cluster
        self.call = call
        self.cause = cause
        self.status = status
        super().__init__(f"cluster {cluster!r}: {call} failed: {cause}")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove every secret (and anything after ``Bearer``) from a message before it is shown."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return _BEARER.sub(r"\1<redacted>", text)

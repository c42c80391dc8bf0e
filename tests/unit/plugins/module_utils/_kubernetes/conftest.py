# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The lab's emulated Kubernetes API served over real HTTPS on loopback, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.kubeapi import KubeApiServer, start_server
from tests.unit.plugins.module_utils._kubernetes import k8s_factories as k8s


@pytest.fixture
def kube_api() -> Iterator[KubeApiServer]:
    """The seed's cluster."""
    with start_server(k8s.seed()) as api:
        yield api

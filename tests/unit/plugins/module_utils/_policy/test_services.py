# SPDX-License-Identifier: GPL-3.0-or-later
"""Service resolution: NodePort lookup by number and name, clear errors."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ServiceError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.services import node_port

from tests.unit.plugins.module_utils._policy.policy_seed import WORDPRESS_SERVICE, seed_hostvars


@pytest.mark.parametrize(("port", "protocol"), [(80, None), ("80", None), ("http", None), (80, "tcp"), ("http", "TCP")])
def test_nodeport_of_the_seed_service(port: Any, protocol: Optional[str]) -> None:
    hostvars = seed_hostvars()[WORDPRESS_SERVICE]
    assert node_port(hostvars, port, protocol) == 30358
    assert node_port(hostvars["workload"], port, protocol) == 30358


def test_nodeport_errors() -> None:
    hostvars = seed_hostvars()
    service = hostvars[WORDPRESS_SERVICE]
    with pytest.raises(ServiceError, match=r"^service wordpress/wordpress has no port '81'; its ports: http 80/tcp$"):
        node_port(service, 81)
    with pytest.raises(ServiceError, match=r"^service wordpress/wordpress has no port 'http' \(udp\); its ports: http 80/tcp$"):
        node_port(service, "http", "udp")
    with pytest.raises(ServiceError, match=r"^nodeport needs a service's hostvars \(workload.kind service\), got kind 'node'$"):
        node_port(hostvars["k8s-node1"], 80)
    service["workload"]["type"] = "ClusterIP"
    service["workload"]["ports"][0]["node_port"] = None
    with pytest.raises(ServiceError, match=r"^service wordpress/wordpress port '80' has no NodePort \(service type 'ClusterIP'\)"):
        node_port(service, 80)

# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure parts of lab/build.py: the root-route overlap check and the pod move validation."""

from __future__ import annotations

from typing import Any

import pytest

from lab import build
from lab.errors import LabError
from lab.move import live_scenario, validate_move
from lab.scenario import load_scenario
from lab.system import REPO_ROOT

SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"


def fake_routes(v4: list[dict[str, Any]], v6: list[dict[str, Any]] | None = None) -> Any:
    def ip_json(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
        return v4 if args[0] == "-4" else (v6 or [])

    return ip_json


HOST_ROUTES = [{"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"}, {"dst": "192.0.2.0/24", "dev": "eth0"}]


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        (HOST_ROUTES, None),
        # Our own bridge's route (a lab left up) does not count.
        ([*HOST_ROUTES, {"dst": "172.18.221.0/24", "dev": "zt-lab0"}], None),
        (
            [*HOST_ROUTES, {"dst": "172.18.0.0/16", "dev": "docker0"}],
            "the root namespace already routes 172.18.0.0/16 (dev docker0), "
            "which overlaps the lab's 172.18.221.0/24 (topology.underlay.cidr)",
        ),
        ([*HOST_ROUTES, {"dst": "10.244.3.0/24", "dev": "cni0"}], "overlaps the lab's 10.244.0.0/16 (topology.cluster.cluster_cidr)"),
        ([*HOST_ROUTES, {"dst": "172.18.200.7", "dev": "tun0"}], "overlaps the lab's 172.18.192.0/20 (topology.cluster.service_cidr)"),
    ],
)
def test_root_route_overlap(monkeypatch: pytest.MonkeyPatch, routes: list[dict[str, Any]], message: str | None) -> None:
    monkeypatch.setattr(build, "ip_json", fake_routes(routes, [{"dst": "fd00::/64", "dev": "eth0"}]))
    if message is None:
        build.check_root_routes(load_scenario(SEED))
    else:
        with pytest.raises(LabError, match="pick other addresses") as error:
            build.check_root_routes(load_scenario(SEED))
        assert message in str(error.value)


def test_root_route_overlap_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "ip_json", fake_routes(HOST_ROUTES, [{"dst": "fd00:10:244::/48", "dev": "wg0"}]))
    with pytest.raises(LabError, match=r"overlaps the lab's fd00:10:244::/64 \(pod_cidr_ipv6 of node k8s-master\)"):
        build.check_root_routes(load_scenario(SEED))


@pytest.mark.parametrize(
    ("pod", "node", "ip", "message"),
    [
        ("wordpress/nope", "k8s-node2", "10.244.2.9", "unknown pod 'wordpress/nope'"),
        ("wordpress/wordpress-6dfdd9f64f-d75j2", "k8s-node9", "10.244.2.9", "unknown node 'k8s-node9'"),
        (
            "wordpress/wordpress-6dfdd9f64f-d75j2",
            "k8s-node2",
            "10.244.3.9",
            "--ip 10.244.3.9 is not a pod address in k8s-node2's pod CIDR 10.244.2.0/24",
        ),
        (
            "wordpress/wordpress-6dfdd9f64f-d75j2",
            "k8s-node3",
            "10.244.3.18",
            "--ip 10.244.3.18 is already used by pod wordpress/wordpress-mysql-5b58bbd695-gxtc4",
        ),
        ("wordpress/wordpress-6dfdd9f64f-d75j2", "k8s-node2", "banana", "--ip 'banana' is not an IPv4 address"),
    ],
)
def test_move_validation(pod: str, node: str, ip: str, message: str) -> None:
    with pytest.raises(LabError) as error:
        validate_move(load_scenario(SEED), pod, node, ip)
    assert message in str(error.value)


def test_move_derives_ipv6_and_live_scenario_applies_it() -> None:
    seed = load_scenario(SEED)
    ip, ipv6 = validate_move(seed, "wordpress/wordpress-6dfdd9f64f-d75j2", "k8s-node2", "10.244.2.94")
    assert (str(ip), str(ipv6)) == ("10.244.2.94", "fd00:10:244:2::94")
    state = {"moves": {"wordpress/wordpress-6dfdd9f64f-d75j2": {"node": "k8s-node2", "ip": str(ip), "ipv6": str(ipv6)}}}
    moved = live_scenario(seed, state).pod("wordpress/wordpress-6dfdd9f64f-d75j2")
    assert (moved.node, str(moved.ip), str(moved.ipv6)) == ("k8s-node2", "10.244.2.94", "fd00:10:244:2::94")

# SPDX-License-Identifier: GPL-3.0-or-later
"""Partly reachable Services in the lab: how many attempts, which endpoints, and the predicted `~` cells."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from lab import listener, probe_agent
from lab.expected import expected_from_policy, expected_open, scenario_hostvars
from lab.partial import attempt_oks, attempts_for, counted, reachable_endpoints, tries_detail
from lab.probes import BLOCKED, CONNECTED, PARTIAL, Probe, probe_matrix
from lab.scenario import load_scenario
from lab.system import REPO_ROOT

PARTIAL_SCENARIO = REPO_ROOT / "lab" / "scenarios" / "partial.yml"
SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"
WEB = ["10.244.31.10", "10.244.32.10", "10.244.32.11"]
SHOP = ["10.244.31.20", "10.244.31.21"]


@pytest.fixture(scope="module")
def probes() -> dict[str, Probe]:
    return {probe.id: probe for probe in probe_matrix(load_scenario(PARTIAL_SCENARIO))}


@pytest.mark.parametrize(
    ("probe_id", "node", "endpoints"),
    [
        ("vm:lb -> nodeport:web/web:tcp/80", "cp", WEB),  # Cluster: every endpoint through every node
        ("vm:lb -> nodeport:shop/shop:tcp/80", "w1", SHOP),  # Local from outside: the entry node's endpoints
        ("vm:lb -> nodeport:shop/shop:tcp/80", "cp", []),  # ... none on cp
        ("pod:apps/client -> nodeport:shop/shop:tcp/80", "cp", SHOP),  # from a pod: every endpoint, no SNAT
        ("pod:apps/client -> svc:web/web:tcp/80", None, WEB),
        ("pod:apps/client -> pod:shop/shop-a:tcp/9090", None, []),  # not a Service
    ],
)
def test_reachable_endpoints(probes: dict[str, Probe], probe_id: str, node: str | None, endpoints: list[str]) -> None:
    probe = probes[probe_id]
    destination = next(item for item in probe.destinations if item.node == node)
    assert reachable_endpoints(load_scenario(PARTIAL_SCENARIO), probe, destination) == endpoints


@pytest.mark.parametrize(("endpoints", "attempts"), [([], 1), (["a"], 1), (["a", "b"], 8), (WEB, 12)])
def test_attempts_until_every_endpoint_or_four_per_endpoint(endpoints: list[str], attempts: int) -> None:
    assert attempts_for(endpoints) == attempts


def test_counted_destinations(probes: dict[str, Probe]) -> None:
    # A VM: the nodes without a local endpoint drop it whatever the policy (shown, not counted); a pod: every node.
    assert [item.node for item in counted(probes["vm:lb -> nodeport:shop/shop:tcp/80"])] == ["w1"]
    assert [item.node for item in counted(probes["pod:apps/client -> nodeport:shop/shop:tcp/80"])] == ["cp", "w1", "w2"]
    assert [item.node for item in counted(probes["vm:lb -> nodeport:web/web:tcp/80"])] == ["cp", "w1", "w2"]


NAMES = {"10.244.31.10": "pod:web/web-a", "10.244.32.10": "pod:web/web-b", "10.244.32.11": "pod:web/web-q"}


@pytest.mark.parametrize(
    ("outcome", "oks", "detail"),
    [
        (
            {"ok": False, "tries": [
                {"ok": True, "served_by": "10.244.31.10"}, {"ok": False, "served_by": None}, {"ok": True, "served_by": "10.244.32.10"},
            ]},
            [True, False, True],
            {"attempts": 3, "connected_attempts": 2, "answered_by": {"pod:web/web-a": 1, "pod:web/web-b": 1},
             "never_answered": ["pod:web/web-q"]},
        ),
        (
            {"ok": True, "tries": [{"ok": True, "served_by": address} for address in WEB]},
            [True, True, True],
            {"attempts": 3, "connected_attempts": 3, "answered_by": {name: 1 for name in NAMES.values()}},
        ),
        (
            {"ok": False, "seen": None},  # a single attempt
            [False],
            {"attempts": 1, "connected_attempts": 0, "answered_by": {}, "never_answered": sorted(NAMES.values())},
        ),
    ],
)
def test_tries_detail(outcome: dict[str, Any], oks: list[bool], detail: dict[str, Any]) -> None:
    assert attempt_oks(outcome) == oks
    assert tries_detail(outcome, WEB, NAMES) == detail


def test_open_table_predicts_kube_proxy_local_nodeports() -> None:
    scenario = load_scenario(PARTIAL_SCENARIO)
    probes = probe_matrix(scenario)
    table = expected_open(scenario, probes)
    partial = sorted(probe_id for probe_id, cell in table.items() if cell != CONNECTED)
    # Every pod -> the Local NodePort: through a node that is neither the endpoints' (w1) nor the pod's own
    # the reply bypasses the node that translated it. Everything else connects.
    assert partial == sorted(f"pod:{pod.key} -> nodeport:shop/shop:tcp/80" for pod in scenario.pods)
    assert {table[probe_id] for probe_id in partial} == {PARTIAL}
    seed = load_scenario(SEED)
    assert set(expected_open(seed, probe_matrix(seed)).values()) == {CONNECTED}


def test_policy_table_predicts_the_quarantined_endpoint() -> None:
    scenario = load_scenario(PARTIAL_SCENARIO)
    table = expected_from_policy(scenario, probe_matrix(scenario))
    assert table["vm:lb -> nodeport:web/web:tcp/80"] == PARTIAL
    assert table["vm:lb -> nodeport:shop/shop:tcp/80"] == CONNECTED
    assert table["pod:apps/client -> svc:shop/shop:tcp/80"] == CONNECTED
    assert table["pod:apps/client -> nodeport:shop/shop:tcp/80"] == BLOCKED
    assert table["pod:apps/client -> svc:web/web:tcp/80"] == BLOCKED


def test_the_scenario_compiles_to_one_partial_service_warning() -> None:
    """The warning the enforce run of `make demo` shows: the Service, the refusing endpoint and the deciding policy."""
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy  # noqa: PLC0415

    scenario = load_scenario(PARTIAL_SCENARIO)
    assert scenario.policy is not None
    plan = compile_policy(dict(scenario.policy), scenario_hostvars(scenario))
    found = [finding for finding in plan["findings"] if finding["code"] == "partial_service"]
    deny = "absolute[0] deny everyone->quarantined any"
    assert [
        (item["service"], item["consumer"], [refusing["endpoint"] for refusing in item["refusing"]], item["decided_by"],
         item["failing_paths"], item["paths"])
        for item in found
    ] == [("web/web", "vm lb", ["web/web-q"], [deny], 3, 9)]  # one path in three, through each of the 3 nodes
    assert found[0]["text"].startswith(
        "partial_service: service web/web is only partly reachable for vm lb (tcp/80 via NodePort; allowed by default[0] lb->web tcp/80): "
        f"endpoint web/web-q refuses it ({deny}), so about 33% of its connections fail (3 of 9 paths). Fix: take web/web-q out of "
    )
    assert found[0]["text"] in plan["warnings"]


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET6, kind) as sock:
        sock.bind(("::", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(("kind", "protocol", "serve"), [(socket.SOCK_STREAM, "tcp", "serve_tcp"), (socket.SOCK_DGRAM, "udp", "serve_udp")])
def test_agent_repeats_until_every_endpoint_answered(kind: int, protocol: str, serve: str) -> None:
    """The listener echoes PEER LOCAL (loopback only); the agent stops once the expected endpoints answered."""
    port = _free_port(kind)
    threading.Thread(target=getattr(listener, serve), args=(port,), daemon=True).start()
    job = {"address": "127.0.0.1", "port": port, "protocol": protocol, "timeout": 1.0}
    for _ in range(50):  # until the listener is up
        if probe_agent.attempt(job)["ok"]:
            break
        time.sleep(0.05)
    single = probe_agent.attempt(job)
    assert (single["ok"], single["seen"], single["served_by"]) == (True, "127.0.0.1", "127.0.0.1")
    done = probe_agent.attempt_many({**job, "attempts": 6, "endpoints": ["127.0.0.1"]})
    assert (done["ok"], len(done["tries"])) == (True, 1)
    # An endpoint that never answers: every attempt is made.
    exhausted = probe_agent.attempt_many({**job, "attempts": 6, "endpoints": ["127.0.0.1", "127.0.0.2"]})
    assert (exhausted["ok"], len(exhausted["tries"])) == (True, 6)

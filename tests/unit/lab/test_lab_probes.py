# SPDX-License-Identifier: GPL-3.0-or-later
"""The probe matrix, the expected table and the rendering."""

from __future__ import annotations

import pytest
import yaml

from lab.probes import (
    BLOCKED,
    CONNECTED,
    PARTIAL,
    combine_nodeport,
    expected_from_allow,
    mismatches,
    probe_matrix,
    render_tables,
)
from lab.scenario import Scenario, build_scenario, load_scenario
from lab.system import REPO_ROOT

SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"
WP = "pod:wordpress/wordpress-6dfdd9f64f-d75j2"
DB = "pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4"

DNS = "pod:kube-system/coredns-7c65d6cfc9-zt5lb"


def seed_without_control_plane() -> Scenario:
    """The seed as it was before the lab had a control plane: the workload matrix alone."""
    document = yaml.safe_load(SEED.read_text())
    cluster = document["topology"]["cluster"]
    cluster.pop("upstream_dns")
    cluster["control_plane"] = False
    document["expect"]["allow"] = [line for line in document["expect"]["allow"] if "kube-" not in line and "coredns" not in line]
    return build_scenario(document)


SEED_MATRIX = [
    f"{WP} -> {DB}:tcp/3306",
    f"{WP} -> svc:wordpress/wordpress:tcp/80",
    f"{WP} -> svc:wordpress/wordpress-mysql:tcp/3306",
    f"{WP} -> nodeport:wordpress/wordpress:tcp/80",
    f"{WP} -> vm:haproxy:tcp/80",
    f"{WP} -> vm:outsider:tcp/80",
    f"{DB} -> {WP}:tcp/80",
    f"{DB} -> svc:wordpress/wordpress:tcp/80",
    f"{DB} -> svc:wordpress/wordpress-mysql:tcp/3306",
    f"{DB} -> nodeport:wordpress/wordpress:tcp/80",
    f"{DB} -> vm:haproxy:tcp/80",
    f"{DB} -> vm:outsider:tcp/80",
    f"vm:haproxy -> {WP}:tcp/80",
    f"vm:haproxy -> {DB}:tcp/3306",
    "vm:haproxy -> nodeport:wordpress/wordpress:tcp/80",
    "vm:haproxy -> vm:outsider:tcp/80",
    f"vm:outsider -> {WP}:tcp/80",
    f"vm:outsider -> {DB}:tcp/3306",
    "vm:outsider -> nodeport:wordpress/wordpress:tcp/80",
    "vm:outsider -> vm:haproxy:tcp/80",
]


def test_seed_matrix() -> None:
    probes = probe_matrix(seed_without_control_plane())
    assert [probe.id for probe in probes] == SEED_MATRIX
    nodeport = next(p for p in probes if p.id == "vm:haproxy -> nodeport:wordpress/wordpress:tcp/80")
    assert [(d.node, d.address, d.port) for d in nodeport.destinations] == [
        ("k8s-master", "172.18.221.10", 30358),
        ("k8s-node1", "172.18.221.11", 30358),
        ("k8s-node2", "172.18.221.12", 30358),
        ("k8s-node3", "172.18.221.13", 30358),
    ]


def test_control_plane_adds_cluster_dns_and_the_api_to_the_matrix() -> None:
    ids = [probe.id for probe in probe_matrix(load_scenario(SEED))]
    added = sorted(set(ids) - set(SEED_MATRIX))
    assert len(ids) == 44
    # The DNS pod as a source (every target but itself) and as a target; default/kubernetes and kube-dns from pods.
    assert [probe_id for probe_id in added if probe_id.startswith(f"{WP} -> ")] == [
        f"{WP} -> {DNS}:tcp/53",
        f"{WP} -> {DNS}:udp/53",
        f"{WP} -> svc:default/kubernetes:tcp/443",
        f"{WP} -> svc:kube-system/kube-dns:tcp/53",
        f"{WP} -> svc:kube-system/kube-dns:udp/53",
    ]
    assert len([probe_id for probe_id in added if probe_id.startswith(f"{DNS} -> ")]) == 10
    assert "vm:haproxy -> svc:default/kubernetes:tcp/443" not in ids  # ClusterIPs are probed from pods only
    assert "vm:haproxy -> vm:upstream-dns:udp/53" not in ids  # the upstream resolver is not a workload of the matrix


def test_ipv6_adds_pod_and_vm_twins() -> None:
    probes = probe_matrix(seed_without_control_plane(), ipv6=True)
    assert len(probes) == 32
    twin = next(p for p in probes if p.id == f"vm:haproxy -> {WP}:tcp/80@ipv6")
    assert [d.address for d in twin.destinations] == ["fd00:10:244:1::94"]


def test_expected_from_seed_allow() -> None:
    seed = load_scenario(SEED)
    assert seed.expect_allow is not None
    expected = expected_from_allow(probe_matrix(seed, ipv6=True), seed.expect_allow)
    connected = sorted(probe_id for probe_id, cell in expected.items() if cell == CONNECTED)
    assert [probe_id for probe_id in connected if "dns" not in probe_id and "coredns" not in probe_id] == sorted(
        [
            "vm:haproxy -> nodeport:wordpress/wordpress:tcp/80",
            f"{WP} -> {DB}:tcp/3306",
            f"{WP} -> {DB}:tcp/3306@ipv6",
        ]
    )
    # The implicit allowances: both pods -> DNS (ClusterIP and pod, udp and tcp), the DNS pod -> its Service and the API.
    assert len(connected) == 14
    assert f"{DNS} -> svc:default/kubernetes:tcp/443" in connected
    assert f"{WP} -> svc:default/kubernetes:tcp/443" not in connected


@pytest.mark.parametrize(
    ("outcomes", "cell"),
    [([True, True, True, True], CONNECTED), ([False, False, False, False], BLOCKED), ([True, False, True, True], PARTIAL)],
)
def test_nodeport_needs_every_node(outcomes: list[bool], cell: str) -> None:
    assert combine_nodeport(outcomes) == cell


def test_mismatches_and_rendering() -> None:
    seed = seed_without_control_plane()
    probes = probe_matrix(seed)
    observed = {probe.id: CONNECTED for probe in probes}
    assert seed.expect_allow is not None
    expected = expected_from_allow(probes, seed.expect_allow)
    wrong = mismatches(observed, expected)
    assert len(wrong) == 18
    assert "vm:haproxy -> nodeport:wordpress/wordpress:tcp/80" not in wrong
    text = render_tables(seed, probes, observed, expected, "from expect.allow")
    lines = text.splitlines()
    assert lines[0].rstrip().endswith("expected (from expect.allow)")
    haproxy_row = next(line for line in lines if line.startswith("vm:haproxy "))
    # columns: 1 db-pod, 2 svc wp, 3 svc db, 4 nodeport, 5 vm:haproxy, 6 vm:outsider, 7 wp-pod
    assert haproxy_row.split()[1:] == [".", "-", "-", ".", "-", ".", ".", "X", "-", "-", ".", "-", "X", "X"]
    assert "   7 pod:wordpress/wordpress-6dfdd9f64f-d75j2:tcp/80" in lines


def test_policy_oracle_agrees_with_the_seed_expectation() -> None:
    from lab.expected import expected_from_policy  # noqa: PLC0415

    seed = load_scenario(SEED)
    probes = probe_matrix(seed, ipv6=True)
    assert seed.expect_allow is not None
    assert expected_from_policy(seed, probes) == expected_from_allow(probes, seed.expect_allow)


def test_policy_oracle_follows_the_policy() -> None:
    from lab.expected import expected_from_policy  # noqa: PLC0415

    seed = load_scenario(SEED)
    assert seed.policy is not None
    policy = {**seed.policy, "policies": {**seed.policy["policies"], "catch_all": "allow"}}
    expected = expected_from_policy(seed, probe_matrix(seed), policy)
    assert set(expected.values()) == {CONNECTED}

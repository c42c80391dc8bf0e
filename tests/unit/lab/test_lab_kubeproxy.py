# SPDX-License-Identifier: GPL-3.0-or-later
"""kube-proxy's rules as the lab renders them: kube-proxy's chain names, DNAT, masquerade, NodePorts last."""

from __future__ import annotations

import yaml

from lab.kubeproxy import ext_chain, render_node_rules, sep_chain, svc_chain
from lab.scenario import build_scenario, load_scenario
from lab.system import REPO_ROOT

SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"


def test_chain_names_follow_kube_proxy() -> None:
    seed = load_scenario(SEED)
    wordpress = seed.services[0]
    port = wordpress.ports[0]
    # kube-proxy: prefix + base32(sha256("wordpress/wordpress:http" + "tcp"))[:16]
    assert svc_chain(wordpress, port) == "KUBE-SVC-X7DNECNQRCYM4M7D"
    assert ext_chain(wordpress, port) == "KUBE-EXT-X7DNECNQRCYM4M7D"
    assert all(len(name) <= 28 for name in (svc_chain(wordpress, port), ext_chain(wordpress, port)))


def test_seed_node_rules() -> None:
    seed = load_scenario(SEED)
    text, chains = render_node_rules(seed, "k8s-node2")
    lines = text.splitlines()
    svc = "KUBE-SVC-X7DNECNQRCYM4M7D"
    ext = "KUBE-EXT-X7DNECNQRCYM4M7D"
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    assert chains[:4] == ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    expected_rules = [
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
        '-A KUBE-SERVICES -d 172.18.202.253/32 -p tcp -m comment --comment "wordpress/wordpress:http cluster IP" '
        f"-m tcp --dport 80 -j {svc}",
        f'-A KUBE-NODEPORTS -p tcp -m comment --comment "wordpress/wordpress:http" -m tcp --dport 30358 -j {ext}',
        f'-A {ext} -m comment --comment "masquerade traffic for wordpress/wordpress:http external destinations" -j KUBE-MARK-MASQ',
        f"-A {ext} -j {svc}",
        f'-A {svc} ! -s 10.244.0.0/16 -d 172.18.202.253/32 -p tcp -m comment --comment "wordpress/wordpress:http cluster IP" '
        "-m tcp --dport 80 -j KUBE-MARK-MASQ",
    ]
    for rule in expected_rules:
        assert rule in lines
    sep = sep_chain(seed.services[0], seed.services[0].ports[0], _endpoint("wordpress/wordpress-6dfdd9f64f-d75j2", "10.244.1.94", 80))
    assert f'-A {sep} -p tcp -m comment --comment "wordpress/wordpress:http" -m tcp -j DNAT --to-destination 10.244.1.94:80' in lines
    # The named target port "mysql" resolves to 3306 on the endpoint.
    assert any(line.endswith("-j DNAT --to-destination 10.244.3.18:3306") for line in lines)
    services = [line for line in lines if line.startswith("-A KUBE-SERVICES")]
    assert services[-1].endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")


def _endpoint(pod: str, address: str, port: int):  # type: ignore[no-untyped-def]
    from lab.kubeproxy import Endpoint  # noqa: PLC0415

    return Endpoint(pod_key=pod, address=address, port=port)


def test_two_endpoints_are_balanced_like_kube_proxy() -> None:
    document = yaml.safe_load(SEED.read_text())
    document["topology"]["pods"][1]["labels"] = {"app": "wordpress", "tier": "frontend"}
    document["topology"]["pods"][1]["ports"] = [{"name": "http", "port": 80}]
    document["topology"]["services"][1]["selector"] = {"app": "none"}
    del document["expect"]  # the database pod no longer listens on 3306
    text, _ = render_node_rules(build_scenario(document), "k8s-node1")
    svc_rules = [line for line in text.splitlines() if line.startswith("-A KUBE-SVC-X7DNECNQRCYM4M7D") and "KUBE-SEP" in line]
    assert len(svc_rules) == 2
    assert "-m statistic --mode random --probability 0.50000000000" in svc_rules[0]
    assert "statistic" not in svc_rules[1]


def test_local_traffic_policy_has_no_masquerade_and_drops_without_local_endpoints() -> None:
    document = yaml.safe_load(SEED.read_text())
    document["topology"]["services"][0]["external_traffic_policy"] = "Local"
    scenario = build_scenario(document)
    ext = "KUBE-EXT-X7DNECNQRCYM4M7D"
    local_node, _ = render_node_rules(scenario, "k8s-node1")
    other_node, _ = render_node_rules(scenario, "k8s-node2")
    assert not any(line.startswith(f"-A {ext}") and "KUBE-MARK-MASQ" in line for line in local_node.splitlines())
    assert any(line.startswith(f"-A {ext} -j KUBE-SVL-") for line in local_node.splitlines())
    assert (
        '-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "wordpress/wordpress:http has no local endpoints" '
        "-m addrtype --dst-type LOCAL -m tcp --dport 30358 -j DROP"
    ) in _table(other_node, "filter")
    assert not any("KUBE-EXTERNAL-SERVICES -p" in line for line in _table(local_node, "filter"))


def test_service_without_endpoints_rejects() -> None:
    document = yaml.safe_load(SEED.read_text())
    document["topology"]["services"][1]["selector"] = {"app": "none"}
    text, _ = render_node_rules(build_scenario(document), "k8s-node1")
    assert (
        '-A KUBE-SERVICES -d 172.18.195.37/32 -p tcp -m comment --comment "wordpress/wordpress-mysql:mysql has no endpoints" '
        "-m tcp --dport 3306 -j REJECT --reject-with icmp-port-unreachable"
    ) in _table(text, "filter")
    assert not any("172.18.195.37" in line for line in _table(text, "nat"))


def _table(text: str, table: str) -> list[str]:
    """The lines of one table's section of an iptables-restore text."""
    lines = text.splitlines()
    start = lines.index(f"*{table}")
    return lines[start : lines.index("COMMIT", start)]


def test_nat_never_filters() -> None:
    document = yaml.safe_load(SEED.read_text())
    document["topology"]["services"][0]["external_traffic_policy"] = "Local"
    document["topology"]["services"][1]["selector"] = {"app": "none"}
    text, _ = render_node_rules(build_scenario(document), "k8s-node3")
    assert not any(word in line for line in _table(text, "nat") for word in ("-j DROP", "-j REJECT"))

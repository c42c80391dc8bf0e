# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter query language: grammar, operators, errors with positions, selection."""

from __future__ import annotations

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import QuerySyntaxError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import (
    And,
    Condition,
    Not,
    Or,
    Selector,
    evaluate,
    parse_query,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import workloads_from_hostvars

from tests.unit.plugins.module_utils._policy.policy_seed import seed_hostvars


def cond(attribute: str, operator: str, *values: str, position: int = 0) -> Condition:
    return Condition(attribute, operator, tuple(values), position)


PARSE_CASES = [
    ("kind = pod", cond("kind", "=", "pod")),
    ("name != x", cond("name", "!=", "x")),
    ("pod_name contains wordpress-mysql", cond("pod_name", "contains", "wordpress-mysql")),
    ("namespace in (a, b,c)", cond("namespace", "in", "a", "b", "c")),
    ("label.app exists", cond("label.app", "exists")),
    ("label.app.kubernetes.io/name = web", cond("label.app.kubernetes.io/name", "=", "web")),
    ("annotation.team = 'red team'", cond("annotation.team", "=", "red team")),
    ('label.x = "a \\" quote"', cond("label.x", "=", 'a " quote')),
    ("label.x = 'and'", cond("label.x", "=", "and")),
    ("address = 10.0.0.0/8", cond("address", "=", "10.0.0.0/8")),
    ("address = 2001:db8::/32", cond("address", "=", "2001:db8::/32")),
    ("var.ansible_facts.packages.nginx[0].version = 1.22", cond("var.ansible_facts.packages.nginx[0].version", "=", "1.22")),
    ("kind=pod", cond("kind", "=", "pod")),
    # precedence: not > and > or
    (
        "kind = pod or kind = vm and name = a",
        Or((cond("kind", "=", "pod"), And((cond("kind", "=", "vm", position=14), cond("name", "=", "a", position=28))))),
    ),
    ("not kind = pod and name = a", And((Not(cond("kind", "=", "pod", position=4)), cond("name", "=", "a", position=19)))),
    (
        "(kind = pod or kind = vm) and name = a",
        And((Or((cond("kind", "=", "pod", position=1), cond("kind", "=", "vm", position=15))), cond("name", "=", "a", position=30))),
    ),
    ("not not kind = vm", Not(Not(cond("kind", "=", "vm", position=8)))),
    (
        "group = x or group = y or group = z",
        Or((cond("group", "=", "x"), cond("group", "=", "y", position=13), cond("group", "=", "z", position=26))),
    ),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse(text: str, expected: object) -> None:
    assert parse_query(text) == expected


ERROR_CASES = [
    ("", 0, "the query is empty"),
    ("   ", 3, "the query is empty"),
    ("kind", 4, "expected an operator (=, !=, contains, in, exists) after 'kind', found the end of the query"),
    ("colour = red", 0, "unknown attribute 'colour'"),
    ("label. = x", 0, "attribute 'label.' needs a key after 'label.'"),
    ("kind = pod and", 14, "expected an attribute such as 'label.app' or 'namespace', found the end of the query"),
    ("kind = pod name = x", 11, "expected 'and', 'or' or the end of the query, found 'name'"),
    ("(kind = pod", 11, "expected ')' to close the '(' at position 0, found the end of the query"),
    ("kind = pod)", 10, "expected 'and', 'or' or the end of the query, found ')'"),
    ("label.a = 'open", 10, "unterminated '-quoted string"),
    ("label.a ! b", 8, "'!' must be followed by '='"),
    ("namespace in a", 13, "expected '(' after 'in', found 'a'"),
    ("namespace in (a b)", 16, "expected ',' or ')' in the 'in' list, found 'b'"),
    ("namespace in (a,)", 16, "expected a value after 'in', found ')'"),
    ("name = and", 7, "expected a value after '=', found 'and'"),
    ("address = 10.0.0.300", 0, "address value '10.0.0.300' is not an IP address or CIDR"),
    ("address in (10.0.0.0/8, bogus)", 0, "address value 'bogus' is not an IP address or CIDR"),
    ("kind = container", 0, "kind 'container' is not one of pod, service, node, vm"),
    ("and = x", 0, "expected an attribute such as 'label.app' or 'namespace', found 'and'"),
    ("var.a[ = 1", 0, "attribute 'var.a[': 'a[' is not a valid hostvar path"),
    ("kind = pod or = x", 14, "expected an attribute such as 'label.app' or 'namespace', found '='"),
]


@pytest.mark.parametrize(("text", "position", "message"), ERROR_CASES)
def test_syntax_errors_name_the_position(text: str, position: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(text)
    assert caught.value.position == position
    assert caught.value.message.startswith(message)
    assert caught.value.text == text


WORDPRESS = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"
MYSQL = "wordpress-mysql-5b58bbd695-gxtc4.wordpress.pod.lab"
SERVICE = "wordpress.wordpress.service.lab"
NODES = {"k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"}

SELECT_CASES = [
    ("kind = pod", {WORDPRESS, MYSQL}),
    ("kind != pod", {SERVICE, "haproxy", "outsider", *NODES}),
    ("kind in (vm, service)", {SERVICE, "haproxy", "outsider"}),
    ("pod_name = wordpress-6dfdd9f64f-d75j2", {WORDPRESS}),
    ("pod_name contains wordpress-mysql", {MYSQL}),
    ("pod_name != wordpress-6dfdd9f64f-d75j2", {MYSQL}),
    ("pod_name exists", {WORDPRESS, MYSQL}),
    ("service_name = wordpress and namespace = wordpress", {SERVICE}),
    ("name = wordpress", {SERVICE}),
    ("namespace exists", {WORDPRESS, MYSQL, SERVICE}),
    ("node = k8s-node1", {"k8s-node1", WORDPRESS}),
    ("cluster = lab and kind = node", NODES),
    ("address = 172.18.221.1", {"haproxy"}),
    ("address = 172.18.221.0/24", {"haproxy", "outsider", *NODES}),
    ("address in (10.244.1.0/24, 10.244.3.18)", {WORDPRESS, MYSQL}),
    ("address != 172.18.0.0/16", {WORDPRESS, MYSQL}),
    ("address contains .221.9", {"outsider"}),
    ("group = loadbalancers", {"haproxy"}),
    ("group contains balancer", {"haproxy"}),
    ("label.tier = frontend", {WORDPRESS}),
    ("label.tier != frontend and kind = pod", {MYSQL}),
    ("label.tier != frontend and namespace = wordpress", {MYSQL, SERVICE}),
    ("label.tier exists", {WORDPRESS, MYSQL}),
    ("label.tier in (frontend, mysql)", {WORDPRESS, MYSQL}),
    ("label.tier contains sql", {MYSQL}),
    ("label.app = wordpress and not label.tier = mysql", {WORDPRESS, SERVICE}),
    ("annotation.x exists", set()),
    ("var.zt_pod.node = k8s-node3", {MYSQL}),
    ("var.workload.host_network = false", {WORDPRESS, MYSQL}),
    ("var.workload.ports[0].port = 3306", {MYSQL}),
    ("var.zt_pod.container_ids exists and var.zt_pod.ips contains 10.244.1.94", {WORDPRESS}),
    ("var.missing.path exists", set()),
    ("var.workload.kind != pod and kind = service", {SERVICE}),
    ("kind = vm or kind = node and name = k8s-node2", {"haproxy", "outsider", "k8s-node2"}),
    ("(kind = vm or kind = node) and name = k8s-node2", {"k8s-node2"}),
]


@pytest.mark.parametrize(("text", "expected"), SELECT_CASES)
def test_select(text: str, expected: set[str]) -> None:
    workloads, _ = workloads_from_hostvars(seed_hostvars())
    node = parse_query(text)
    selected = {workload.host for workload in Selector(workloads).select(node)}
    assert selected == expected
    # The indexed path and the plain evaluation agree.
    assert {workload.host for workload in workloads if evaluate(node, workload)} == expected


def test_ipv6_address_containment() -> None:
    hostvars = {"v6": {"zt_addresses": ["2001:db8::10", "192.0.2.5"]}}
    workloads, _ = workloads_from_hostvars(hostvars)
    selector = Selector(workloads)
    assert [w.host for w in selector.select(parse_query("address = 2001:db8::/64"))] == ["v6"]
    assert [w.host for w in selector.select(parse_query("address = 2001:DB8::10"))] == ["v6"]
    assert selector.select(parse_query("address = 2001:db9::/64")) == []

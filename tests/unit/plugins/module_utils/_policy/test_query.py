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
    # numeric comparisons (issue 17): one- and two-character operators, with or without spaces
    ("label.replicas < 3", cond("label.replicas", "<", "3")),
    ("label.replicas<=3", cond("label.replicas", "<=", "3")),
    ("var.score > 9.8", cond("var.score", ">", "9.8")),
    ("annotation.weight >= -1.5", cond("annotation.weight", ">=", "-1.5")),
    ("label.x>'7'", cond("label.x", ">", "7")),
    ("label.x > .5", cond("label.x", ">", ".5")),
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
    ("kind", 4, "expected an operator (=, !=, <, <=, >, >=, contains, in, exists) after 'kind', found the end of the query"),
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
    # numeric comparisons: the position is the value's (or the operator's for an attribute that is never a number)
    ("label.replicas > three", 17, "'>' compares numbers, and 'three' is not a number such as 3 or 9.8"),
    ("label.a = x and label.b <= '1 0'", 27, "'<=' compares numbers, and '1 0' is not a number such as 3 or 9.8"),
    ("label.a >= inf", 11, "'>=' compares numbers, and 'inf' is not a number"),
    ("label.a < 1e3", 10, "'<' compares numbers, and '1e3' is not a number"),
    ("label.a < ''", 10, "'<' compares numbers, and '' is not a number"),
    ("label.a > and", 10, "expected a value after '>', found 'and'"),
    ("label.a >", 9, "expected a value after '>', found the end of the query"),
    ("address < 10.0.0.0/8", 8, "'<' compares numbers and 'address' is never a number; use =, !=, in or contains"),
    ("kind >= 1", 5, "'>=' compares numbers and 'kind' is never a number"),
    ("label.a in (1 < 2)", 14, "expected ',' or ')' in the 'in' list, found '<'"),
    ("label.a = x<y", 11, "expected 'and', 'or' or the end of the query, found '<'"),
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
    # numeric comparisons on hostvars that are integers
    ("var.workload.ports[0].port > 80", {MYSQL}),
    ("var.workload.ports[0].port >= 80 and kind = pod", {WORDPRESS, MYSQL}),
    ("var.workload.ports[0].port < 3306.5 and var.workload.ports[0].port > 79.9", {WORDPRESS, MYSQL, SERVICE}),
    ("var.workload.ports[0].port <= 80", {WORDPRESS, SERVICE}),
    ("label.tier > 0", set()),
    ("not label.tier > 0 and kind = pod", {WORDPRESS, MYSQL}),
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


# Numeric comparison semantics on VMs whose zt_labels and hostvars hold numbers, text and other types.
NUMERIC_HOSTVARS = {
    "a": {"zt_addresses": ["192.0.2.1"], "zt_labels": {"n": "3"}, "score": 9.8, "flag": True},
    "b": {"zt_addresses": ["192.0.2.2"], "zt_labels": {"n": "10"}, "score": 7, "flag": 1},
    "c": {"zt_addresses": ["192.0.2.3"], "zt_labels": {"n": "-2.50"}, "score": "9.80", "flag": "1"},
    "d": {"zt_addresses": ["192.0.2.4"], "zt_labels": {"n": "three"}, "score": [10], "flag": None},
    "e": {"zt_addresses": ["192.0.2.5"], "score": float("nan")},
}

NUMERIC_CASES = [
    # numbers compare as numbers, not as text ("10" < "3" as text)
    ("label.n > 3", {"b"}),
    ("label.n >= 3", {"a", "b"}),
    ("label.n < 3", {"c"}),
    ("label.n <= -2.5", {"c"}),
    ("label.n < +100", {"a", "b", "c"}),
    # text that is not a number and a missing label never match; `not` turns that round
    ("not label.n < 100", {"d", "e"}),
    # a float hostvar equals its decimal text exactly; a list or NaN is not a number
    ("var.score >= 9.8", {"a", "c"}),
    ("var.score > 9.8", set()),
    ("var.score < 9.8", {"b"}),
    ("var.score > 0", {"a", "b", "c"}),
    # booleans are not numbers (true is not 1)
    ("var.flag >= 1", {"b", "c"}),
]


@pytest.mark.parametrize(("text", "expected"), NUMERIC_CASES)
def test_numeric_comparisons(text: str, expected: set[str]) -> None:
    workloads, _ = workloads_from_hostvars(NUMERIC_HOSTVARS)
    node = parse_query(text)
    assert {workload.host for workload in Selector(workloads).select(node)} == expected
    assert {workload.host for workload in workloads if evaluate(node, workload)} == expected

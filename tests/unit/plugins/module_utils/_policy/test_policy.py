# SPDX-License-Identifier: GPL-3.0-or-later
"""Policy validation: every problem at once, each naming where, what and the offending text."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import PolicyError, Problem
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import parse_options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import PortSpec, parse_policy, parse_port

from tests.unit.plugins.module_utils._policy.policy_seed import seed_policy

PORT_CASES = [
    ("tcp/80", PortSpec("tcp", 80, 80)),
    ("udp/53", PortSpec("udp", 53, 53)),
    ("TCP/8000-8080", PortSpec("tcp", 8000, 8080)),
    ("tcp/http", PortSpec("tcp", name="http")),
    ("sctp/http-alt", PortSpec("sctp", name="http-alt")),
    ("icmp", PortSpec("icmp")),
    ("any", PortSpec("any")),
    ("tcp/65535", PortSpec("tcp", 65535, 65535)),
]


@pytest.mark.parametrize(("text", "expected"), PORT_CASES)
def test_parse_port(text: str, expected: PortSpec) -> None:
    assert parse_port(text) == expected


PORT_ERRORS = [
    ("tcp/0", "port '0' is outside 1-65535"),
    ("tcp/65536", "port '65536' is outside 1-65535"),
    ("tcp/90-80", "port range '90-80' is reversed; write 80-90"),
    ("tcp/80-", "port '80-' is not a number, a range like 8000-8080, or a port name"),
    ("ftp/21", "protocol 'ftp' is not one of tcp, udp, sctp (or write icmp or any)"),
    ("tcp", "'tcp' needs a port after the protocol, such as tcp/80, tcp/8000-8080 or tcp/http"),
    ("tcp/Web_Port", "port name 'web_port' is not a Kubernetes port name (1-15 of a-z, 0-9, '-', with a letter)"),
    (80, "a port must be text such as tcp/80, got an integer 80"),
]


@pytest.mark.parametrize(("text", "message"), PORT_ERRORS)
def test_parse_port_errors(text: Any, message: str) -> None:
    with pytest.raises(ValueError, match="^" + __import__("re").escape(message) + "$"):
        parse_port(text)


def test_seed_policy_parses_in_chain_order() -> None:
    policy = seed_policy()
    policy["policies"]["absolute"] = [{"consumer": "haproxy", "provider": "db", "ports": ["any"], "action": "deny"}]
    policy["policies"]["default"].append({"consumer": "db", "provider": "frontend", "ports": ["tcp/80"], "action": "deny"})
    parsed = parse_policy(policy)
    assert [rule.label for rule in parsed.ordered_rules()] == ["absolute[0]", "default[2]", "default[0]", "default[1]"]
    assert parsed.filters["haproxy"].networks == ("172.18.221.1/32",)
    assert parsed.filters["db"].networks is None
    assert parsed.catch_all == "deny"


def test_every_problem_is_listed_at_once() -> None:
    broken = {
        "filters": {
            "frontend": "pod_name = wordpress-6dfdd9f64f-d75j2",
            "bad": "label.app = (",
            "colour": "colour = red",
            "net": "address = 10.1.2.300/24",
        },
        "policies": {
            "absolute": [{"consumer": "frontend", "provider": "nowhere", "ports": ["tcp/80"], "action": "quarantine"}],
            "default": [
                {"consumer": "frontend", "provider": "frontend", "ports": ["tcp/0", "tcp/90-80", "ftp/21", "tcp/http"]},
                {"consumer": "bad", "provider": "frontend", "ports": []},
                {"consumer": "frontend", "provider": "frontend", "port": ["tcp/80"]},
                "frontend -> frontend",
            ],
            "catch_all": "maybe",
        },
        "extra": 1,
    }
    with pytest.raises(PolicyError) as caught:
        parse_policy(broken)
    assert list(caught.value.problems) == [
        Problem("policy", "unknown key 'extra'; a policy has 'filters', 'policies' and 'options'", "extra"),
        Problem("filters.bad", "expected a value after '=', found '('", "label.app = (", 12),
        Problem(
            "filters.colour",
            "unknown attribute 'colour'; known attributes: kind, name, pod_name, service_name, namespace, node, cluster, address, group, "
            "vuln.critical, vuln.high, vuln.medium, vuln.low, vuln.unknown, vuln.id, label.<key>, annotation.<key>, var.<key>",
            "colour = red",
            0,
        ),
        Problem(
            "filters.net", "address value '10.1.2.300/24' is not an IP address or CIDR such as 10.0.0.0/8", "address = 10.1.2.300/24", 0
        ),
        Problem("policies.absolute[0].provider", "unknown filter (known filters: bad, colour, frontend, net)", "nowhere"),
        Problem("policies.absolute[0].action", "must be allow or deny", "quarantine"),
        Problem("policies.default[0].ports[0]", "port '0' is outside 1-65535", "tcp/0"),
        Problem("policies.default[0].ports[1]", "port range '90-80' is reversed; write 80-90", "tcp/90-80"),
        Problem("policies.default[0].ports[2]", "protocol 'ftp' is not one of tcp, udp, sctp (or write icmp or any)", "ftp/21"),
        Problem("policies.default[1].consumer", "refers to a filter that has errors (see above)", "bad"),
        Problem("policies.default[1].ports", "must be a non-empty list such as [tcp/80, udp/53]", "[]"),
        Problem("policies.default[2]", "unknown key 'port'; expected action, consumer, description, name, ports, provider", "port"),
        Problem("policies.default[2].ports", "missing; write a list such as [tcp/80] (or [any])"),
        Problem("policies.default[3]", "must be a mapping with consumer, provider and ports, got text", "frontend -> frontend"),
        Problem("policies.catch_all", "must be deny or allow", "maybe"),
    ]
    text = str(caught.value)
    assert text.startswith("the policy has 15 problems:\n")
    assert "  - filters.bad: expected a value after '=', found '(' (in 'label.app = (' at position 12)" in text


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], Problem("policy", "the policy must be a mapping with 'filters' and 'policies', got a list")),
        ({"filters": {}}, Problem("policies", "missing; write policies: {absolute: [], default: [...], catch_all: deny}")),
        ({"filters": [], "policies": {}}, Problem("filters", "must be a mapping of name: query, got a list")),
        (
            {"filters": {"a": 5}, "policies": {}},
            Problem("filters.a", "must be a query string such as 'label.app = web', got an integer", "5"),
        ),
        (
            {"filters": {"-a": "kind = vm"}, "policies": {}},
            Problem("filters", "a filter name must start with a letter or digit and hold only letters, digits, '_', '.', '-'", "-a"),
        ),
        ({"policies": {"default": {}}}, Problem("policies.default", "must be a list of policies, got a mapping")),
        ({"policies": {"defaults": []}}, Problem("policies", "unknown key 'defaults'; expected absolute, default, catch_all", "defaults")),
    ],
)
def test_single_problems(data: Any, problem: Problem) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    assert list(caught.value.problems) == [problem]


def test_options_validation_lists_every_problem() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_options(
            {
                "implicit": {"dns": "yes", "telnet": True},
                "management_addresses": ["10.0.0.0/8", "nope"],
                "dns_service": "kube-dns",
                "scope": "kind = (",
                "colour": 1,
            }
        )
    assert [(problem.where, problem.text) for problem in caught.value.problems] == [
        ("options", "colour"),
        ("options.implicit.dns", "yes"),
        ("options.implicit", "telnet"),
        ("options.management_addresses[1]", "nope"),
        ("options.dns_service", "kube-dns"),
        ("options.scope", "kind = ("),
    ]
    assert caught.value.problems[-1].position == 7


def test_options_defaults_and_switches() -> None:
    options = parse_options({"implicit": {"dns": False}, "management_addresses": ["192.0.2.10/32", "10.0.0.0/8"], "scope": "kind = vm"})
    assert options.enabled("loopback")
    assert not options.enabled("dns")
    assert options.management_addresses == ("10.0.0.0/8", "192.0.2.10")

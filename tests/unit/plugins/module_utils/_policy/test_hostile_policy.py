# SPDX-License-Identifier: GPL-3.0-or-later
"""Hostile and malformed policies (issue 15, items 8-12): each refused with a bounded error naming the place.

- 8: an address with host bits set is refused, never widened to its subnet.
- 9: nesting is bounded well below Python's recursion limit, the error names the filter and the position.
- 10: a long query's error shows a window around the position, never the whole text.
- 11: no "none defined" when filters exist; no Python type names in messages.
- 12: ``options:`` inside a policy is accepted and merged with the given options (the given ones win).
"""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import brief, type_phrase, window
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import PolicyError, Problem, QuerySyntaxError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import parse_options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import merge_options, parse_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import MAX_DEPTH, parse_query
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Flow, Reachability

from tests.unit.plugins.module_utils._policy.policy_seed import seed_hostvars, seed_policy


def problems_of(data: Any) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    return list(caught.value.problems)


# ----- item 8: host bits ------------------------------------------------------------------------

HOST_BITS = [
    ("address = 10.1.2.3/8", 0, "address value '10.1.2.3/8' has host bits set (the subnet is 10.0.0.0/8): "
                                 "write 10.0.0.0/8 for the subnet or 10.1.2.3 for the address"),
    ("address != 172.18.221.1/24", 0, "address value '172.18.221.1/24' has host bits set (the subnet is 172.18.221.0/24): "
                                       "write 172.18.221.0/24 for the subnet or 172.18.221.1 for the address"),
    ("kind = vm and address in (10.0.0.0/8, 2001:db8::1/32)", 14,
     "address value '2001:db8::1/32' has host bits set (the subnet is 2001:db8::/32): "
     "write 2001:db8::/32 for the subnet or 2001:db8::1 for the address"),
]


@pytest.mark.parametrize(("query", "position", "message"), HOST_BITS)
def test_address_with_host_bits_is_refused_with_its_position(query: str, position: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    assert (caught.value.message, caught.value.position) == (message, position)
    assert problems_of({"filters": {"office": query}, "policies": {"default": []}}) == [Problem("filters.office", message, query, position)]


@pytest.mark.parametrize("query", ["address = 10.0.0.0/8", "address = 10.1.2.3/32", "address = 10.1.2.3", "address = 2001:db8::/32",
                                   "address = 2001:db8::1/128", "address in (0.0.0.0/0, ::/0)"])
def test_exact_networks_and_addresses_still_parse(query: str) -> None:
    parse_query(query)


# ----- item 9: nesting depth --------------------------------------------------------------------

@pytest.mark.parametrize(("query", "position"), [
    ("(" * 1000 + "kind = vm" + ")" * 1000, MAX_DEPTH),
    ("not " * 1000 + "kind = vm", 4 * MAX_DEPTH),
    ("(not " * 500 + "kind = vm" + ")" * 500, 5 * (MAX_DEPTH // 2)),
])
def test_deep_nesting_is_a_clear_error(query: str, position: int) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    assert caught.value.message == f"the query nests parentheses and 'not' more than {MAX_DEPTH} levels deep; write it flatter"
    assert caught.value.position == position
    [problem] = problems_of({"filters": {"deep": query}, "policies": {"default": []}})
    assert (problem.where, problem.position) == ("filters.deep", position)


def test_nesting_up_to_the_limit_parses() -> None:
    parse_query("(" * (MAX_DEPTH - 1) + "kind = vm" + ")" * (MAX_DEPTH - 1))
    parse_query("not " * MAX_DEPTH + "kind = vm")


def test_deeply_nested_yaml_structures_are_problems_not_crashes() -> None:
    deep: Any = "x"
    for _unused in range(5000):
        deep = [deep]
    found = problems_of({"filters": {"a": deep}, "policies": {"default": [deep], "absolute": deep}})
    assert [problem.where for problem in found] == ["filters.a", "policies.absolute[0]", "policies.default[0]"]
    assert all(len(str(problem)) < 400 for problem in found)


# ----- item 10: bounded echo --------------------------------------------------------------------

def test_a_long_query_error_shows_a_window_around_the_position() -> None:
    query = "kind = vm or " * 80_000 + "kind = ( or kind = vm" + " or kind = vm" * 1000
    position = query.index("( or")
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    text = str(caught.value)
    assert caught.value.position == position
    assert len(text) < 400
    assert "kind = ( or kind" in text
    assert f"at position {position} of {len(query)} characters" in text
    [problem] = problems_of({"filters": {"big": query}, "policies": {"default": []}})
    assert len(str(problem)) < 400
    assert "kind = ( or kind" in str(problem)


def test_a_huge_token_is_clipped_in_the_message() -> None:
    query = "x" * 1_000_000 + " = 1"
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    assert len(str(caught.value)) < 600


def test_huge_values_elsewhere_are_clipped() -> None:
    found = problems_of({"filters": {"a": "kind = vm"}, "policies": {"default": [{"consumer": "a" * 100_000, "provider": "a",
                                                                                   "ports": ["tcp/" + "9" * 100_000]}]},
                         "catch_all": ["deny"] * 100_000})
    assert all(len(str(problem)) < 400 for problem in found)


@pytest.mark.parametrize(("text", "position", "expected"), [
    ("short", 2, "'short'"),
    ("a" * 100 + "HERE" + "b" * 100, 100, "...'" + "a" * 40 + "HERE" + "b" * 36 + "'..."),
    ("HERE" + "b" * 300, 0, "'HERE" + "b" * 76 + "'..."),
    ("a" * 300 + "END", 303, "...'" + "a" * 77 + "END'"),
])
def test_window(text: str, position: int, expected: str) -> None:
    assert window(text, position, width=80) == expected


# ----- item 11: known filters and type names ----------------------------------------------------

def test_unknown_filter_names_the_declared_filters_even_when_they_have_errors() -> None:
    found = problems_of({"filters": {"web": "label.app = (", "db": "kind = "},
                         "policies": {"default": [{"consumer": "wbe", "provider": "db", "ports": ["tcp/80"]}]}})
    assert Problem("policies.default[0].consumer", "unknown filter (known filters: db, web)", "wbe") in found
    assert not any("none defined" in str(problem) for problem in found)


def test_unknown_filter_without_filters_says_so() -> None:
    assert problems_of({"policies": {"default": [{"consumer": "a", "provider": "a", "ports": ["tcp/80"]}]}})[0] == Problem(
        "policies.default[0].consumer", "unknown filter (the policy defines no filters: add them under 'filters')", "a")
    assert Problem("policies.default[0].consumer", "unknown filter (the filters have errors, see above)", "a") in problems_of(
        {"filters": ["a"], "policies": {"default": [{"consumer": "a", "provider": "a", "ports": ["tcp/80"]}]}})


class _TaggedInt(int):
    """Stands for ansible-core's _AnsibleTaggedInt."""


class _LazyList(list):  # type: ignore[type-arg]
    """Stands for ansible-core's _AnsibleLazyTemplateList."""


@pytest.mark.parametrize(("value", "phrase"), [
    (None, "null"), (True, "a boolean"), (_TaggedInt(3), "an integer"), (1.5, "a number"), ("x", "text"),
    (_LazyList(), "a list"), ((1,), "a list"), ({}, "a mapping"), ({1}, "a set"), (b"x", "bytes"), (object(), "an unsupported value"),
])
def test_type_phrase(value: Any, phrase: str) -> None:
    assert type_phrase(value) == phrase


def test_no_python_type_names_in_policy_messages() -> None:
    found = problems_of({"filters": {"a": _TaggedInt(5), "b": _LazyList(["kind = vm"])},
                         "policies": {"default": [_LazyList(), {"consumer": "a", "provider": "a", "ports": [_TaggedInt(80)]}],
                                      "absolute": {"x": 1}}})
    messages = "\n".join(str(problem) for problem in found)
    for name in ("_TaggedInt", "_LazyList", "int", "list", "dict", "str "):
        assert f"got {name}" not in messages
    assert "filters.a: must be a query string such as 'label.app = web', got an integer (in '5')" in messages
    assert "filters.b: must be a query string such as 'label.app = web', got a list" in messages
    assert "policies.absolute: must be a list of policies, got a mapping" in messages
    assert "policies.default[1].ports[0]: a port must be text such as tcp/80, got an integer 80" in messages


@pytest.mark.parametrize(("value", "expected"), [
    ("tcp/80", "tcp/80"), (5, "5"), (None, "None"), ([1, [2, [3, [4, [5]]]]], "[1, [2, [3, ...]]]"),
    ({"a": 1}, "{'a': 1}"), (list(range(20)), "[0, 1, 2, 3, 4, 5, 6, 7, ...]"), (10 ** 5000, "a very large integer"),
], ids=range(7))
def test_brief(value: Any, expected: str) -> None:
    assert brief(value) == expected


# ----- item 12: options inside the policy ---------------------------------------------------------

def with_options(options: Any) -> dict[str, Any]:
    policy = seed_policy()
    policy["options"] = options
    return policy


def test_options_inside_the_policy_are_accepted_and_used() -> None:
    inside = with_options({"management_addresses": ["192.0.2.10"], "implicit": {"dns": False}})
    plan = compile_policy(inside, seed_hostvars())
    assert plan == compile_policy(seed_policy(), seed_hostvars(), {"management_addresses": ["192.0.2.10"], "implicit": {"dns": False}})
    assert plan != compile_policy(seed_policy(), seed_hostvars())


@pytest.mark.parametrize(("inside", "given", "merged"), [
    (None, None, {}),
    ({"dns_service": "a/b"}, None, {"dns_service": "a/b"}),
    ({"dns_service": "a/b"}, {"dns_service": "c/d"}, {"dns_service": "c/d"}),
    ({"dns_service": "a/b"}, {"dns_service": None}, {"dns_service": "a/b"}),
    ({"implicit": {"dns": False, "loopback": False}}, {"implicit": {"dns": True}}, {"implicit": {"dns": True, "loopback": False}}),
    ({"management_addresses": ["192.0.2.1"], "scope": "kind = vm"}, {"management_addresses": ["192.0.2.2"]},
     {"management_addresses": ["192.0.2.2"], "scope": "kind = vm"}),
    ({}, {"scope": "kind = pod"}, {"scope": "kind = pod"}),
])
def test_merge_options_given_wins(inside: Any, given: Any, merged: dict[str, Any]) -> None:
    assert merge_options(inside, given) == merged


def test_given_options_win_over_the_policy_options() -> None:
    inside = with_options({"management_addresses": ["192.0.2.10"]})
    assert compile_policy(inside, seed_hostvars(), {"management_addresses": ["192.0.2.99"]}) == compile_policy(
        seed_policy(), seed_hostvars(), {"management_addresses": ["192.0.2.99"]})


def test_reachability_reads_the_policy_options_too() -> None:
    inside = with_options({"management_addresses": ["192.0.2.10"]})
    oracle = Reachability.from_hostvars(inside, seed_hostvars())
    assert oracle.check(Flow("192.0.2.10", "haproxy", "tcp", 22)).allowed
    assert not oracle.check(Flow("192.0.2.11", "haproxy", "tcp", 22)).allowed


def test_bad_options_inside_the_policy_are_listed_with_the_policy_problems() -> None:
    data = with_options({"dns_service": "kube-dns", "colour": 1})
    data["policies"]["catch_all"] = "maybe"
    found = problems_of(data)
    assert [problem.where for problem in found] == ["options", "options.dns_service", "policies.catch_all"]
    assert problems_of(with_options(["x"])) == [Problem("options", "must be a mapping, got a list")]


def test_options_management_addresses_not_a_list() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_options({"management_addresses": 5})
    assert list(caught.value.problems) == [Problem("options.management_addresses", "must be a list of IP addresses or CIDRs", "5")]

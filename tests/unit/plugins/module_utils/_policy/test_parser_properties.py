# SPDX-License-Identifier: GPL-3.0-or-later
"""Property-based tests (hypothesis) for the query parser and the policy parser (issue 15).

Arbitrary text and arbitrary structures, anywhere in a policy, raise only the project's own
errors (QuerySyntaxError, PolicyError), never RecursionError, TypeError, KeyError, ValueError ...;
every error names a place (a position inside the query, a ``where`` inside the policy) and its
message stays short whatever the size of the input.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import PolicyError, QuerySyntaxError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import Policy, parse_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import MAX_DEPTH, Node, parse_query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.plugins.module_utils._policy.policy_seed import seed_hostvars, seed_policy

MESSAGE_LIMIT = 600
"""No single error line may be longer, whatever the input (issue 15, item 10)."""
PLACES = ("policy", "filters", "policies", "options")

@dataclasses.dataclass(frozen=True)
class Deep:
    """Stands in the generated data for a list nested ``levels`` deep (built inside the test: hypothesis cannot print it)."""

    levels: int


@dataclasses.dataclass(frozen=True)
class Huge:
    """Stands for an integer of ``digits`` digits (Python refuses to print one of more than 4300)."""

    digits: int


def realise(value: Any) -> Any:
    """The generated structure with every Deep and Huge replaced by what it stands for."""
    if isinstance(value, Deep):
        built: Any = "x"
        for _unused in range(value.levels):
            built = [built]
        return built
    if isinstance(value, Huge):
        return 10**value.digits
    if isinstance(value, dict):
        return {realise(key): realise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [realise(item) for item in value]
    if isinstance(value, tuple):
        return tuple(realise(item) for item in value)
    return value


# Pieces a query is made of, so that generated text is often almost valid and reaches deep into the parser.
TOKENS = [
    "kind", "name", "pod_name", "service_name", "namespace", "node", "cluster", "address", "group", "label.app", "label.",
    "annotation.x", "var.a.b", "var.a[0]", "var.[", "var.a[[[", "colour", "=", "!=", "!", "contains", "in", "exists", "and",
    "or", "not", "(", ")", ",", "'", '"', "\\", "'quoted value'", '"x\\"y"', "vm", "pod", "10.0.0.0/8", "10.1.2.3/8",
    "2001:db8::/32", "2001:db8::1/32", "fe80::1%eth0", "1.2.3.4/255.0.0.0", "10/8", "::", "", " ", "\t", "\n", "é", "\u0663",
    "x" * 200,
]


def check_query_error(text: str, error: QuerySyntaxError) -> None:
    assert isinstance(error.position, int)
    assert 0 <= error.position <= len(text)
    assert error.message
    assert len(str(error)) < MESSAGE_LIMIT, str(error)[:200]


def parse_or_error(text: str) -> None:
    try:
        node = parse_query(text)
    except QuerySyntaxError as error:
        check_query_error(text, error)
    else:
        assert isinstance(node, Node.__args__)  # type: ignore[attr-defined]


@given(st.text(max_size=300))
@settings(max_examples=400, deadline=None)
def test_arbitrary_text_parses_or_fails_with_a_position(text: str) -> None:
    parse_or_error(text)


@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.sampled_from(["", " "]))
@settings(max_examples=600, deadline=None)
def test_token_soup_parses_or_fails_with_a_position(tokens: list[str], separator: str) -> None:
    parse_or_error(separator.join(tokens))


@given(st.lists(st.sampled_from(["(", "not ", "( not "]), min_size=1, max_size=3 * MAX_DEPTH), st.booleans())
@settings(max_examples=200, deadline=None)
def test_nesting_of_any_depth(openers: list[str], closed: bool) -> None:
    text = "".join(openers) + "kind = vm" + (")" * sum(opener.count("(") for opener in openers) if closed else "")
    parse_or_error(text)


@given(st.integers(min_value=MAX_DEPTH + 1, max_value=20_000), st.sampled_from(["(", "not ", "(not "]))
@settings(max_examples=30, deadline=None)
def test_nesting_beyond_the_limit_is_always_the_depth_error(depth: int, opener: str) -> None:
    text = opener * depth + "kind = vm" + ")" * (depth * opener.count("("))
    try:
        parse_query(text)
    except QuerySyntaxError as error:
        check_query_error(text, error)
        assert "levels deep" in error.message
    else:
        raise AssertionError("a query nested beyond MAX_DEPTH parsed")


@given(st.integers() | st.floats() | st.binary() | st.none() | st.booleans() | st.lists(st.text(max_size=5), max_size=3)
       | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2) | st.builds(Deep, st.integers(min_value=500, max_value=6000)))
@settings(max_examples=50, deadline=None)
def test_queries_that_are_not_text(value: Any) -> None:
    try:
        parse_query(realise(value))
    except QuerySyntaxError as error:
        assert "got" in error.message
        assert len(str(error)) < MESSAGE_LIMIT
    else:
        raise AssertionError("a non-string query parsed")


# ----- the policy parser ----------------------------------------------------------------------

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
    | st.sampled_from(["tcp/80", "udp/53", "tcp/http", "any", "icmp", "tcp/0", "tcp/80-70", "tcp/\u0663", "tcp/\u00b2", "tcp/99999999999",
                       "allow", "deny", "frontend", "db", "kind = vm", "address = 10.1.2.3/8", "x" * 5000])
    | st.binary(max_size=10)
    | st.builds(Deep, st.integers(min_value=500, max_value=6000)) | st.builds(Huge, st.integers(min_value=4400, max_value=5000))
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=4)
    | st.tuples(children, children),
    max_leaves=20,
)
HOSTILE = VALUES

# Where to put a hostile value inside an otherwise valid policy.
PATHS = [
    (), ("filters",), ("filters", "frontend"), ("filters", "new"), ("policies",), ("policies", "default"), ("policies", "absolute"),
    ("policies", "catch_all"), ("catch_all",), ("options",), ("options", "implicit"), ("options", "management_addresses"),
    ("options", "scope"), ("options", "dns_service"), ("policies", "default", 0), ("policies", "default", 0, "consumer"),
    ("policies", "default", 0, "provider"), ("policies", "default", 0, "ports"), ("policies", "default", 0, "ports", 0),
    ("policies", "default", 0, "action"), ("policies", "default", 0, "extra"),
]


def place(policy: dict[str, Any], path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    policy.setdefault("options", {})
    target: Any = policy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return policy


def check_policy_error(error: PolicyError) -> None:
    assert error.problems
    for problem in error.problems:
        assert problem.where.split(".")[0].split("[")[0] in PLACES, problem.where
        assert problem.message
        assert len(str(problem)) < MESSAGE_LIMIT, str(problem)[:200]
    assert len(str(error)) < MESSAGE_LIMIT * 60


@given(st.sampled_from(PATHS), HOSTILE)
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_value_anywhere_parses_or_names_its_place(path: tuple[Any, ...], value: Any) -> None:
    data = place(seed_policy(), path, realise(value))
    try:
        parsed = parse_policy(data)
    except PolicyError as error:
        check_policy_error(error)
    else:
        assert isinstance(parsed, Policy)


@given(st.sampled_from(PATHS), VALUES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_compile_raises_only_policy_errors(path: tuple[Any, ...], value: Any) -> None:
    data = place(seed_policy(), path, realise(value))
    try:
        compile_policy(data, seed_hostvars())
    except PolicyError as error:
        check_policy_error(error)


@given(st.dictionaries(st.sampled_from(["filters", "policies", "catch_all", "options", "x"]), HOSTILE, max_size=5))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_top_level_structure(data: dict[str, Any]) -> None:
    try:
        parse_policy(realise(data))
    except PolicyError as error:
        check_policy_error(error)

# SPDX-License-Identifier: GPL-3.0-or-later
"""Property-based tests (hypothesis) of the ruleset model (issue #15).

Whatever arrives as the ``allowlist`` module's ``ruleset`` argument (arbitrary structures,
or a good ruleset with any one value replaced by anything), ``Ruleset.from_dict`` either
returns a ruleset or raises ``ModelError`` -- never TypeError, KeyError, RecursionError,
ValueError of its own -- and the error names its place (the ruleset, a chain, a rule, an
address set) in a message of bounded length. A ruleset the model accepts renders on both
backends without any error: the model is where bad input stops.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import iptables, nftables
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Options
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import (
    HOOKS,
    PROTOCOLS,
    VERDICTS,
    ModelError,
    PortRange,
    Ruleset,
    canonical_entry,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PLACES = ("ruleset", "a ruleset", "chain", "address set")
"""Every ModelError from ``from_dict`` starts by saying where (``chain 'ingress' rule 2 ('x'): ...``)."""
MESSAGE_LIMIT = 700

GOOD: dict[str, Any] = {
    "version": 1,
    "address_sets": [{"name": "zt-peers", "members": ["10.0.0.1", "fd00::/64"], "comment": "peers"}],
    "chains": [
        {"name": "ingress", "hook": "input", "default_verdict": "deny", "default_origin": "catch_all", "rules": [
            {"verdict": "accept", "origin": "implicit:conntrack", "conntrack": ["established", "related"]},
            {"verdict": "accept", "origin": "default[0] a->b tcp/80", "protocol": "tcp", "ports": ["80", "8000-8080"],
             "peer_set": "zt-peers", "interface": "eth0", "family": 4},
            {"verdict": "accept", "origin": "icmp", "protocol": "icmp", "icmp_types": [8]},
            {"verdict": "accept", "origin": "ssh replies", "protocol": "tcp", "source_ports": ["22"], "local_destination": False},
        ]},
        {"name": "egress", "hook": "output", "default_verdict": "accept", "rules": []},
    ],
}

HUGE_MARK, DEEP_MARK = "\x00huge", "\x00deep"
"""Stand in the generated data for an integer of 5,000 digits (which Python refuses to print, so hypothesis
cannot show it) and a list nested deeper than the recursion limit; :func:`materialise` puts them in."""


def materialise(value: Any) -> Any:
    """``value`` with the marks replaced by the real hostile values."""
    if value == HUGE_MARK:
        return 10 ** 5000
    if value == DEEP_MARK:
        deep: list[Any] = []
        for _unused_level in range(sys.getrecursionlimit() + 100):
            deep = [deep]
        return deep
    if isinstance(value, dict):
        return {materialise(key): materialise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [materialise(item) for item in value]
    return value


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
    st.sampled_from(["", "80", "0", "80-70", "fe80::1%eth0", "10.1.2.3/8", "ingress", "INGRESS", "ingréss", "lo\n-A INPUT -j ACCEPT",
                     "8; flush ruleset", "zt-peers", "tcp", "input", "accept", "a" * 5000, "٨٠", "8_0", " 80"]),
    st.sampled_from([HUGE_MARK, DEEP_MARK]),
)
anything = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.one_of(st.text(max_size=12), st.integers()), children,
                                                                                 max_size=4)),
    max_leaves=20,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (keys and indexes)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(paths(item, (*prefix, index)))
    return found


GOOD_PATHS = paths(GOOD)[1:]


def replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """GOOD with the value at ``path`` replaced."""
    data = copy.deepcopy(GOOD)
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return data


def check_error(error: ModelError) -> None:
    message = str(error)
    assert message.startswith(PLACES), message
    assert len(message) <= MESSAGE_LIMIT, message[:200]


def renders_everywhere(ruleset: Ruleset) -> None:
    """Both backends render an accepted ruleset without any error."""
    for options in (Options(), Options(default_action="reject", log_denied=True)):
        iptables.Renderer(options).state(ruleset)
        nftables.full_script(nftables.render_table(ruleset, options))


def parse_or_model_error(data: Any) -> None:
    try:
        ruleset = Ruleset.from_dict(materialise(data))
    except ModelError as error:
        check_error(error)
        return
    renders_everywhere(ruleset)
    # What the model accepts survives its own dictionary form unchanged.
    assert Ruleset.from_dict(ruleset.to_dict()) == ruleset


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(anything)
def test_any_structure_is_a_ruleset_or_a_model_error(data: Any) -> None:
    parse_or_model_error(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(GOOD_PATHS), anything)
def test_any_value_anywhere_in_a_good_ruleset(path: tuple[Any, ...], value: Any) -> None:
    parse_or_model_error(replaced(path, value))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["chains", "address_sets"]), st.integers(0, 1), st.text(max_size=12), anything)
def test_any_extra_field_is_refused_by_name(where: str, index: int, key: str, value: Any) -> None:
    data = copy.deepcopy(GOOD)
    items = data[where]
    item = items[min(index, len(items) - 1)]
    if key in item or key in ("rules", "members", "name", "hook", "default_verdict", "default_origin", "comment"):
        return
    item[key] = value
    try:
        Ruleset.from_dict(materialise(data))
    except ModelError as error:
        check_error(error)
        assert "unknown fields" in str(error)
    else:
        raise AssertionError(f"extra field {key!r} was accepted")


valid_names = st.from_regex(r"\A[a-z][a-z0-9_]{0,15}\Z")
valid_rules = st.fixed_dictionaries(
    {"verdict": st.sampled_from(VERDICTS), "origin": st.text(max_size=300)},
    optional={"protocol": st.sampled_from(["tcp", "udp", "sctp"]), "conntrack": st.lists(st.sampled_from(["new", "established"]))},
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(valid_names, st.sampled_from(HOOKS), st.sampled_from(VERDICTS), st.lists(valid_rules, max_size=3)),
                max_size=4, unique_by=lambda item: item[0]))
def test_valid_rulesets_render_on_both_backends(chains: list[tuple[str, str, str, list[dict[str, Any]]]]) -> None:
    data = {"chains": [{"name": name, "hook": hook, "default_verdict": verdict, "rules": rules} for name, hook, verdict, rules in chains]}
    # Names that differ only in case are refused, the rest must render, whatever their origins say.
    parse_or_model_error(data)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=20), st.integers(), st.from_regex(r"\A[0-9]{1,8}(-[0-9]{1,8})?\Z"), st.just(HUGE_MARK)))
def test_port_text_parses_or_says_what_is_wrong(text: Any) -> None:
    text = materialise(text)
    try:
        port = PortRange.parse(text)
    except ModelError as error:
        assert str(error).startswith(("port ", "port range ")), str(error)
        assert len(str(error)) <= 200
    else:
        assert 1 <= port.first <= port.last <= 65535
        assert PortRange.parse(str(port)) == port


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=50), st.ip_addresses().map(str), st.just("fe80::1%eth0"), st.just("a" * 10000)))
def test_addresses_parse_or_model_error(text: str) -> None:
    try:
        canonical, _unused_key = canonical_entry(text)
    except ModelError as error:
        assert len(str(error)) <= 300
    else:
        assert "%" not in canonical and canonical_entry(canonical)[0] == canonical


def test_protocols_listed_render() -> None:
    """Every protocol the model lists renders on both backends (a new one must reach both renderers)."""
    for protocol in PROTOCOLS:
        rule = {"verdict": "accept", "origin": protocol, "protocol": protocol}
        chain = {"name": "ingress", "hook": "input", "default_verdict": "deny", "rules": [rule]}
        renders_everywhere(Ruleset.from_dict({"chains": [chain]}))

# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The policy model and its validation.

A policy (design.md, "Policy")::

    filters: {name: query, ...}
    policies:
      absolute: [{consumer: FILTER, provider: FILTER, ports: [tcp/80, ...], action: allow|deny}, ...]
      default:  [...]
      catch_all: deny | allow
    options: {...}          # optional: compiler options kept with the policy (see merge_options)

:func:`parse_policy` checks everything and raises one :class:`PolicyError` listing every
problem, each naming the filter or policy, the field and the offending text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import brief, type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import PolicyError, Problem, QuerySyntaxError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import parse_options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import Node, address_networks, parse_query

RANKS = ("absolute", "default")
ACTIONS = ("allow", "deny")
CATCH_ALLS = ("deny", "allow")
PORT_PROTOCOLS = ("tcp", "udp", "sctp")
_FILTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Kubernetes port names (IANA_SVC_NAME): lower-case alphanumerics and '-', with a letter.
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")
_POLICY_KEYS = {"consumer", "provider", "ports", "action", "name", "description"}


@dataclasses.dataclass(frozen=True)
class PortSpec:
    """One entry of a policy's ``ports``.

    ``protocol`` is tcp, udp, sctp, icmp or any. Ported protocols carry either a range
    ``first``..``last`` or a ``name`` resolved per provider (service port name for
    services, container port name for pods).
    """

    protocol: str
    first: Optional[int] = None
    last: Optional[int] = None
    name: Optional[str] = None

    def __str__(self) -> str:
        if self.protocol in ("icmp", "any"):
            return self.protocol
        if self.name is not None:
            return f"{self.protocol}/{self.name}"
        return f"{self.protocol}/{self.first}" if self.first == self.last else f"{self.protocol}/{self.first}-{self.last}"

    def covers(self, protocol: str, port: int) -> bool:
        """Does a numeric spec include ``protocol``/``port``? (Named specs never do here.)"""
        if self.protocol == "any":
            return True
        if self.protocol != protocol or self.first is None or self.last is None:
            return False
        return self.first <= port <= self.last


@dataclasses.dataclass(frozen=True)
class Filter:
    """A named, parsed filter; ``networks`` is set when the query is only address conditions."""

    name: str
    text: str
    query: Node
    networks: Optional[tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class PolicyRule:
    """One entry of ``policies.absolute`` or ``policies.default``."""

    rank: str
    index: int
    consumer: str
    provider: str
    ports: tuple[PortSpec, ...]
    action: str = "allow"

    @property
    def label(self) -> str:
        """``default[0]``: how errors, warnings and rule origins name this policy."""
        return f"{self.rank}[{self.index}]"

    def origin(self, port: Optional[PortSpec] = None) -> str:
        """Readable origin for a rule: ``default[0] haproxy->wordpress tcp/80``."""
        deny = " deny" if self.action == "deny" else ""
        suffix = f" {port}" if port is not None else ""
        return f"{self.label}{deny} {self.consumer}->{self.provider}{suffix}"

    @property
    def order(self) -> tuple[int, int, int]:
        """Chain order: absolute deny, absolute allow, default deny, default allow; then index."""
        return (RANKS.index(self.rank), ACTIONS.index(self.action) ^ 1, self.index)


@dataclasses.dataclass(frozen=True)
class Policy:
    """A validated policy."""

    filters: Mapping[str, Filter]
    rules: tuple[PolicyRule, ...]
    catch_all: str
    options: Optional[Mapping[str, Any]] = None
    """The policy's own ``options:`` as written (validated); :func:`merge_options` combines them with given ones."""

    def ordered_rules(self) -> tuple[PolicyRule, ...]:
        """Rules in chain order (first match wins)."""
        return tuple(sorted(self.rules, key=lambda rule: rule.order))


def parse_port(text: Any) -> PortSpec:
    """Read ``tcp/80``, ``udp/53``, ``tcp/8000-8080``, ``tcp/http``, ``icmp`` or ``any``.

    Raises ValueError with a message that says how to write it.
    """
    if not isinstance(text, str):
        raise ValueError(f"a port must be text such as tcp/80, got {type_phrase(text)} {brief(text)}")
    value = text.strip().lower()
    if value in ("icmp", "any"):
        return PortSpec(value)
    protocol, slash, rest = value.partition("/")
    if protocol not in PORT_PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of tcp, udp, sctp (or write icmp or any)")
    if not slash or not rest:
        raise ValueError(f"{text!r} needs a port after the protocol, such as {protocol}/80, {protocol}/8000-8080 or {protocol}/http")
    if rest[0].isdigit():
        first_text, dash, last_text = rest.partition("-")
        # isdigit() alone admits other scripts' digits ('٣', '²'); ports are ASCII, and short enough to convert.
        if not _is_number(first_text) or (dash and not _is_number(last_text)):
            raise ValueError(f"port {brief(rest)!r} is not a number, a range like 8000-8080, or a port name")
        if len(first_text) > 5 or len(last_text) > 5:
            raise ValueError(f"port {brief(rest)!r} is outside 1-65535")
        first = int(first_text)
        last = int(last_text) if dash else first
        if not 1 <= first <= 65535 or not 1 <= last <= 65535:
            raise ValueError(f"port {rest!r} is outside 1-65535")
        if first > last:
            raise ValueError(f"port range {rest!r} is reversed; write {last}-{first}")
        return PortSpec(protocol, first, last)
    if not _PORT_NAME.match(rest):
        raise ValueError(f"port name {brief(rest)!r} is not a Kubernetes port name (1-15 of a-z, 0-9, '-', with a letter)")
    return PortSpec(protocol, name=rest)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def merge_options(inside: Any, given: Any) -> Any:
    """The compiler options of a policy's own ``options:`` (``inside``) and the ones given beside it.

    A given option that is set (present and not null) wins over the policy's; ``implicit`` merges
    allowance by allowance, so ``{dns: false}`` given turns off DNS and keeps the policy's other
    switches. Anything not a mapping is returned as is for parse_options to report.
    """
    if given is not None and not isinstance(given, Mapping):
        return given
    merged: dict[Any, Any] = dict(inside) if isinstance(inside, Mapping) else {}
    for key, value in (given or {}).items():
        if value is None:
            continue
        if key == "implicit" and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _sort_key(value: Any) -> str:
    return brief(value)


def parse_policy(data: Any) -> Policy:
    """Validate a policy dictionary; raise PolicyError listing every problem at once."""
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        raise PolicyError([Problem("policy", f"the policy must be a mapping with 'filters' and 'policies', got {type_phrase(data)}")])
    for key in sorted(set(data) - {"filters", "policies", "catch_all", "options"}, key=_sort_key):
        problems.append(Problem("policy", f"unknown key {brief(key)!r}; a policy has 'filters', 'policies' and 'options'", brief(key)))
    options = _check_options(data.get("options"), problems)
    raw_filters = data.get("filters")
    declared = set(raw_filters) if isinstance(raw_filters, Mapping) else set()
    filters = _parse_filters(raw_filters, problems)
    policies = data.get("policies")
    rules: list[PolicyRule] = []
    catch_all: Any = data.get("catch_all", "deny")
    if policies is None:
        problems.append(Problem("policies", "missing; write policies: {absolute: [], default: [...], catch_all: deny}"))
    elif not isinstance(policies, Mapping):
        problems.append(Problem("policies", f"must be a mapping with absolute, default and catch_all, got {type_phrase(policies)}"))
    else:
        for key in sorted(set(policies) - {*RANKS, "catch_all"}, key=_sort_key):
            problems.append(Problem("policies", f"unknown key {brief(key)!r}; expected absolute, default, catch_all", brief(key)))
        known = _known_filters(raw_filters, declared)
        for rank in RANKS:
            rules.extend(_parse_rank(rank, policies.get(rank), filters, declared, problems, known=known))
        catch_all = policies.get("catch_all", catch_all)
    if catch_all not in CATCH_ALLS:
        problems.append(Problem("policies.catch_all", "must be deny or allow", brief(catch_all)))
    if problems:
        raise PolicyError(problems)
    return Policy(filters=filters, rules=tuple(rules), catch_all=str(catch_all), options=options)


def _check_options(options: Any, problems: list[Problem]) -> Optional[Mapping[str, Any]]:
    """The policy's own ``options:`` if valid; their problems join the policy's (as ``options.<field>``)."""
    if options is None:
        return None
    if not isinstance(options, Mapping):
        problems.append(Problem("options", f"must be a mapping, got {type_phrase(options)}"))
        return None
    try:
        parse_options(options)
    except PolicyError as error:
        problems.extend(error.problems)
    return options


def _known_filters(raw: Any, declared: set[Any]) -> str:
    """What an "unknown filter" problem lists: every declared name (valid or not), or why there are none."""
    if declared:
        return f"known filters: {', '.join(sorted(brief(name) for name in declared))}"
    if raw is not None and not isinstance(raw, Mapping):
        return "the filters have errors, see above"
    return "the policy defines no filters: add them under 'filters'"


def _parse_filters(raw: Any, problems: list[Problem]) -> dict[str, Filter]:
    filters: dict[str, Filter] = {}
    if raw is None:
        return filters
    if not isinstance(raw, Mapping):
        problems.append(Problem("filters", f"must be a mapping of name: query, got {type_phrase(raw)}"))
        return filters
    for name in sorted(raw, key=_sort_key):
        text = raw[name]
        if not isinstance(name, str) or not _FILTER_NAME.match(name):
            problems.append(
                Problem(
                    "filters", "a filter name must start with a letter or digit and hold only letters, digits, '_', '.', '-'", brief(name)
                )
            )
            continue
        where = f"filters.{brief(name)}"
        if not isinstance(text, str):
            problems.append(Problem(where, f"must be a query string such as 'label.app = web', got {type_phrase(text)}", brief(text)))
            continue
        try:
            node = parse_query(text)
        except QuerySyntaxError as error:
            problems.append(Problem(where, error.message, text, error.position))
            continue
        filters[name] = Filter(name=name, text=text, query=node, networks=address_networks(node))
    return filters


def _parse_rank(
    rank: str, raw: Any, filters: Mapping[str, Filter], declared: set[Any], problems: list[Problem], *, known: str
) -> list[PolicyRule]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(Problem(f"policies.{rank}", f"must be a list of policies, got {type_phrase(raw)}"))
        return []
    rules = []
    for index, entry in enumerate(raw):
        where = f"policies.{rank}[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(Problem(where, f"must be a mapping with consumer, provider and ports, got {type_phrase(entry)}", brief(entry)))
            continue
        before = len(problems)
        for key in sorted(set(entry) - _POLICY_KEYS, key=_sort_key):
            problems.append(Problem(where, f"unknown key {brief(key)!r}; expected {', '.join(sorted(_POLICY_KEYS))}", brief(key)))
        sides = []
        for side in ("consumer", "provider"):
            value = entry.get(side)
            if value is None:
                problems.append(Problem(f"{where}.{side}", "missing; name one of the filters"))
            elif isinstance(value, str) and value in declared and value not in filters:
                problems.append(Problem(f"{where}.{side}", "refers to a filter that has errors (see above)", brief(value)))
            elif not isinstance(value, str) or value not in filters:
                problems.append(Problem(f"{where}.{side}", f"unknown filter ({known})", brief(value)))
            sides.append(str(value) if isinstance(value, str) else "")
        action = entry.get("action", "allow")
        if action not in ACTIONS:
            problems.append(Problem(f"{where}.action", "must be allow or deny", brief(action)))
        ports = _parse_ports(where, entry.get("ports"), problems)
        if len(problems) == before:
            rules.append(PolicyRule(rank, index, sides[0], sides[1], ports, str(action)))
    return rules


def _parse_ports(where: str, raw: Any, problems: list[Problem]) -> tuple[PortSpec, ...]:
    if raw is None:
        problems.append(Problem(f"{where}.ports", "missing; write a list such as [tcp/80] (or [any])"))
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(Problem(f"{where}.ports", "must be a non-empty list such as [tcp/80, udp/53]", brief(raw)))
        return ()
    specs = []
    for index, text in enumerate(raw):
        try:
            specs.append(parse_port(text))
        except ValueError as error:
            problems.append(Problem(f"{where}.ports[{index}]", str(error), brief(text)))
    return tuple(specs)

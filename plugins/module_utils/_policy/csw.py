# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Cisco Secure Workload (Tetration) workspaces to and from our policy (issue 17; docs/csw.md).

A workspace document is the JSON of ``POST /openapi/v1/applications`` or of the UI's
*Export -> Clusters and Policies*: ``inventory_filters`` and ``clusters`` (each with an ``id``,
a ``name`` and a ``query`` tree), ``absolute_policies`` and ``default_policies`` (filter ids,
``action``, ``l4_params``) and ``catch_all_action``.

:func:`import_workspace` turns one into our policy dictionary and :func:`export_policy` does the
reverse. Both translate everything or nothing: every item that has no faithful translation is
collected and raised at once as a :class:`CswError`, so an operator fixes the document in one
pass and no half-translated policy is ever written. Pure Python, no Ansible.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import brief, type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import (
    MAX_SHOWN,
    PolicyError,
    Problem,
    QuerySyntaxError,
    ZeroTrustPolicyError,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import PortSpec, parse_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import KEYWORDS, And, Condition, Node, Not, Or, parse_query

try:
    import netaddr
except ImportError:
    HAS_NETADDR = False
else:
    HAS_NETADDR = True

ORCHESTRATOR = "user_orchestrator_"
SYSTEM = ORCHESTRATOR + "system/"
FIELDS = {
    SYSTEM + "pod_name": "pod_name",
    SYSTEM + "service_name": "service_name",
    SYSTEM + "namespace": "namespace",
    SYSTEM + "cluster_name": "cluster",
    "host_name": "name",
    "ip": "address",
}
"""CSW field -> our attribute, for the fields that are not labels (both directions)."""
ATTRIBUTES = {attribute: field for field, attribute in FIELDS.items()}
COMPARISONS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
OPERATORS = {"eq": "=", "ne": "!=", "contains": "contains", **COMPARISONS}
TYPES = {operator: kind for kind, operator in OPERATORS.items()}
PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}
PROTOCOL_NUMBERS = {name: number for number, name in PROTOCOLS.items()}
ICMP = (1, 58)
MAX_DEPTH = 32
"""Deepest and/or/not nesting read, as in our query language (a hostile document cannot exhaust the stack)."""
_BARE = re.compile(r"^[A-Za-z0-9_.:/+-]+$")
_ATTRIBUTE_KEY = re.compile(r"^[^\s()=!<>,\"']+$")
"""A label key our query language can write: one bare word."""
_NAME_CHARACTER = re.compile(r"[^A-Za-z0-9_.-]")


class CswError(ZeroTrustPolicyError):
    """A workspace (or a policy) cannot be translated; ``problems`` lists every item that cannot."""

    def __init__(self, what: str, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems[:MAX_SHOWN])
        more = f"\n  - ... and {count - MAX_SHOWN} more" if count > MAX_SHOWN else ""
        super().__init__(
            f"{what} has {count} item{'s' if count != 1 else ''} that cannot be translated, nothing was written:\n{lines}{more}"
        )


class _UntranslatableError(Exception):
    """Query items that cannot be translated (caught per filter; each message becomes a Problem)."""

    def __init__(self, *messages: str) -> None:
        super().__init__(*messages)
        self.messages = messages


# --------------------------------------------------------------------------------------------------
# Rendering our query nodes as text


def quote(value: str) -> str:
    """A query value as text that parses back to exactly ``value`` (bare when that is safe)."""
    if _BARE.match(value) and value not in KEYWORDS:
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render(node: Node) -> str:
    """Query text for ``node`` that parses back to the same tree (nested and/or/not keep their parentheses)."""
    if isinstance(node, Condition):
        if node.operator == "exists":
            return f"{node.attribute} exists"
        if node.operator == "in":
            return f"{node.attribute} in ({', '.join(quote(value) for value in node.values)})"
        return f"{node.attribute} {node.operator} {quote(node.values[0])}"
    if isinstance(node, Not):
        return f"not {_operand(node.item)}"
    joiner = " and " if isinstance(node, And) else " or "
    return joiner.join(_operand(item) for item in node.items)


def _operand(node: Node) -> str:
    return render(node) if isinstance(node, (Condition, Not)) else f"({render(node)})"


def canonical(node: Node) -> Node:
    """``node`` without positions, ``address != X`` as ``not address = X``, ``address in (A, B)`` as
    ``address = A or address = B`` and ``X/32`` as ``X``: the forms a round trip through CSW may change, equal in meaning."""
    if isinstance(node, Condition):
        if node.attribute == "address" and node.operator in ("=", "!=", "in"):
            items = tuple(Condition("address", "=", (_address(value),), 0) for value in node.values)
            either = items[0] if len(items) == 1 else Or(items)
            return Not(either) if node.operator == "!=" else either
        return dataclasses.replace(node, position=0)
    if isinstance(node, Not):
        return Not(canonical(node.item))
    return type(node)(tuple(canonical(item) for item in node.items))


# --------------------------------------------------------------------------------------------------
# Import: workspace -> our policy


@dataclasses.dataclass
class _Importer:
    widen_icmp: bool
    problems: list[Problem] = dataclasses.field(default_factory=list)
    names: dict[str, str] = dataclasses.field(default_factory=dict)
    """CSW filter or cluster id -> our filter name."""
    filters: dict[str, str] = dataclasses.field(default_factory=dict)
    """Our filter name -> query text."""
    taken: set[str] = dataclasses.field(default_factory=set)
    scope: Any = None
    """The workspace's ``app_scope_id``: a policy may name it, and we have no scopes."""

    def problem(self, where: str, message: str, text: Any = "") -> None:
        self.problems.append(Problem(where, message, brief(text) if text != "" else ""))

    def run(self, workspace: Any) -> dict[str, Any]:
        if not isinstance(workspace, Mapping):
            raise CswError("the workspace", [Problem("workspace", f"must be a mapping (a JSON object), got {type_phrase(workspace)}")])
        self.scope = _id(workspace.get("app_scope_id"))
        entries: list[tuple[str, int, Any]] = []
        for key in ("inventory_filters", "clusters"):
            entries.extend((key, index, entry) for index, entry in enumerate(self.items(workspace, key)))
        declared = [self.declare(*entry) for entry in entries]
        for where, name, entry in declared:
            if entry is not None:
                self.filter(where, name, entry)
        policies: dict[str, Any] = {}
        for rank, key in (("absolute", "absolute_policies"), ("default", "default_policies")):
            rules = []
            first_allow = ""
            for index, entry in self.ordered(workspace, key):
                rule = self.policy(key, index, entry)
                if rule is None:
                    continue
                label = f"{key}[{index}] ({rule['consumer']} -> {rule['provider']})"
                if rule.get("action") == "deny" and first_allow:
                    # We apply a rank's denies before its allows; CSW goes by priority. Where the two overlap,
                    # the import would deny what the workspace allows: the operator has to say which is meant.
                    self.problem(
                        label,
                        f"this DENY comes after the ALLOW {first_allow} in CSW's order, and we apply every DENY of a rank before its"
                        " ALLOWs; give the DENY a lower priority number than the ALLOW (if they overlap, CSW allows; then drop the DENY)",
                    )
                elif rule.get("action") != "deny" and not first_allow:
                    first_allow = label
                rules.append(rule)
            policies[rank] = rules
        policies["catch_all"] = self.action("workspace", "catch_all_action", workspace.get("catch_all_action", "DENY"))
        policy = {"filters": dict(sorted(self.filters.items())), "policies": policies}
        if not self.problems:
            try:
                parse_policy(policy)
            except PolicyError as error:  # a translation we produced and our own parser refuses: say so, never write it
                self.problems.extend(error.problems)
        if self.problems:
            raise CswError("the workspace", self.problems)
        return policy

    def items(self, workspace: Mapping[str, Any], key: str) -> list[Any]:
        value = workspace.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"must be a list, got {type_phrase(value)}", value)
            return []
        return value

    def ordered(self, workspace: Mapping[str, Any], key: str) -> list[tuple[int, Any]]:
        """A rank's policies in CSW's order: by ``priority`` when given (lower first), else as listed."""
        entries = list(enumerate(self.items(workspace, key)))

        def priority(pair: tuple[int, Any]) -> tuple[float, int]:
            value = pair[1].get("priority") if isinstance(pair[1], Mapping) else None
            number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else float("inf")
            return (number, pair[0])

        return sorted(entries, key=priority)

    def declare(self, key: str, index: int, entry: Any) -> tuple[str, str, Optional[Mapping[str, Any]]]:
        """Give a filter or cluster our name and remember its id; the entry is None when it is malformed."""
        where = f"{key}[{index}]"
        if not isinstance(entry, Mapping):
            self.problem(where, f"must be a mapping with id, name and query, got {type_phrase(entry)}", entry)
            return (where, "", None)
        raw_name = entry.get("name")
        raw_id = entry.get("id")
        ident = _id(raw_id)
        name = self.unique(_filter_name(raw_name, ident, key, index))
        where = f"{'filter' if key == 'inventory_filters' else 'cluster'} {brief(raw_name if isinstance(raw_name, str) else name)!r}"
        if ident is None:
            self.problem(where, f"has no id (text), so no policy can refer to it; got {type_phrase(raw_id)}")
        else:
            if ident == self.scope:
                self.problem(where, f"id {brief(ident)!r} is also the workspace's app_scope_id")
            if ident in self.names:
                self.problem(where, f"id {brief(ident)!r} is also the id of filter {self.names[ident]!r}")
            self.names[ident] = name
        return (where, name, entry)

    def unique(self, name: str) -> str:
        """``name``, or ``name-2``, ``name-3`` ... when another filter already has it."""
        candidate, counter = name, 1
        while candidate in self.taken:
            counter += 1
            candidate = f"{name}-{counter}"
        self.taken.add(candidate)
        return candidate

    def filter(self, where: str, name: str, entry: Mapping[str, Any]) -> None:
        try:
            # A cluster's query is what CSW enforces; its member list stands in only when there is none.
            node = _nodes(entry.get("nodes")) if "nodes" in entry and entry.get("query") is None else _node(entry.get("query"), 0)
        except _UntranslatableError as error:
            for message in error.messages:
                self.problem(where, message)
            return
        text = render(node)
        try:
            parse_query(text)
        except QuerySyntaxError as error:  # a value our language refuses: a bad CIDR, a comparison with text ...
            self.problem(where, error.message, text)
            return
        self.filters[name] = text

    def policy(self, key: str, index: int, entry: Any) -> Optional[dict[str, Any]]:
        where = f"{key}[{index}]"
        if not isinstance(entry, Mapping):
            self.problem(
                where, f"must be a mapping with consumer_filter_id, provider_filter_id, action and l4_params, got {type_phrase(entry)}"
            )
            return None
        sides = []
        for side in ("consumer", "provider"):
            reference = _id(entry.get(f"{side}_filter_id"))
            name = None if reference is None else self.names.get(reference)
            sides.append(name)
        where = f"{where} ({sides[0] or brief(entry.get('consumer_filter_id'))} -> {sides[1] or brief(entry.get('provider_filter_id'))})"
        before = len(self.problems)
        for side, name in zip(("consumer", "provider"), sides, strict=True):
            reference = _id(entry.get(f"{side}_filter_id"))
            if name is None and reference is not None and reference == self.scope:
                self.problem(
                    where,
                    f"{side}_filter_id {brief(reference)!r} is the workspace's scope (app_scope_id): our policies have no scopes;"
                    " add a filter with the scope's query to inventory_filters and refer to it",
                )
            elif name is None:
                self.problem(
                    where,
                    f"{side}_filter_id {brief(entry.get(f'{side}_filter_id'))!r} is not the id of a filter or cluster of this workspace"
                    " (a scope id, or a filter of another workspace: copy that filter into inventory_filters)",
                )
        action = self.action(where, "action", entry.get("action"))
        ports = self.ports(where, entry.get("l4_params"))
        if len(self.problems) != before:
            return None
        rule: dict[str, Any] = {"consumer": sides[0], "provider": sides[1], "ports": ports}
        if action == "deny":
            rule["action"] = "deny"
        return rule

    def action(self, where: str, field: str, value: Any) -> str:
        if isinstance(value, str) and value.upper() in ("ALLOW", "DENY"):
            return value.lower()
        self.problem(where, f"{field} must be ALLOW or DENY", value)
        return "deny"

    def ports(self, where: str, params: Any) -> list[str]:
        if not isinstance(params, list) or not params:
            self.problem(where, "l4_params must be a non-empty list such as [{proto: 6, port: [80, 80]}] ([{proto: null}] for any)", params)
            return []
        ports: list[str] = []
        icmp: set[int] = set()
        for index, param in enumerate(params):
            here = f"{where} l4_params[{index}]"
            if not isinstance(param, Mapping):
                self.problem(here, f"must be a mapping with proto and port, got {type_phrase(param)}", param)
                continue
            proto, port = param.get("proto"), param.get("port")
            if proto is None:
                if port not in (None, [], [0, 65535], [1, 65535]):
                    self.problem(here, "proto null (every protocol) cannot have a port range; give proto 6 or 17", port)
                    continue
                ports.append("any")
            elif not isinstance(proto, int) or isinstance(proto, bool) or proto not in (*ICMP, *PROTOCOLS):
                self.problem(here, "proto must be 6 (tcp), 17 (udp), 132 (sctp), 1 (icmp), 58 (icmpv6) or null (any)", proto)
            elif proto in ICMP:
                icmp.add(proto)
                ports.append("icmp")  # where it first appears; dropped below if only one family is allowed
            else:
                text = _port_text(PROTOCOLS[proto], port)
                if text is None:
                    self.problem(here, "port must be [low, high] with 0 <= low <= high <= 65535 (or null for every port)", port)
                    continue
                ports.append(text)
        if icmp and icmp != set(ICMP) and not self.widen_icmp:
            family = "ICMP (1)" if 1 in icmp else "ICMPv6 (58)"
            self.problem(
                where,
                f"allows {family} alone: our icmp is ICMP and ICMPv6 together; add the other protocol or import with widen_icmp=true",
            )
        return list(dict.fromkeys(ports))


def _show(value: Any) -> str:
    """A value for a message: text quoted, anything else as brief() writes it."""
    return repr(brief(value)) if isinstance(value, str) else brief(value)


def _id(value: Any) -> Optional[str]:
    """An id as text (CSW ids are hex strings; a number is taken too), None when ``value`` is not one."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64:
        return str(value)
    return None


def _filter_name(raw: Any, raw_id: Optional[str], key: str, index: int) -> str:
    """Our filter name for a CSW name: kept, with characters outside [A-Za-z0-9_.-] as '_'."""
    if isinstance(raw, str) and raw.strip():
        name = _NAME_CHARACTER.sub("_", raw.strip())[:200]
        return name if name[0].isalnum() else "f" + name
    if raw_id is not None:
        return "f" + _NAME_CHARACTER.sub("_", raw_id)[:200]
    return f"{key}-{index}"


def _port_text(protocol: str, port: Any) -> Optional[str]:
    if port is None or port == []:
        return f"{protocol}/1-65535"
    if not isinstance(port, list) or len(port) != 2 or not all(isinstance(bound, int) and not isinstance(bound, bool) for bound in port):
        return None
    low, high = port
    if not 0 <= low <= high <= 65535 or high == 0:
        return None
    low = max(low, 1)  # port 0 is never a connection's port: CSW writes [0, 65535] for "every port"
    return f"{protocol}/{low}" if low == high else f"{protocol}/{low}-{high}"


def _node(query: Any, depth: int) -> Node:  # noqa: PLR0911, PLR0912 - one answer per query type
    """Our query node for a CSW query tree; raises _UntranslatableError naming the first item that is not."""
    if depth > MAX_DEPTH:
        raise _UntranslatableError(f"the query nests and/or/not more than {MAX_DEPTH} levels deep")
    if not isinstance(query, Mapping):
        raise _UntranslatableError(f"a query must be a mapping with type, field and value, got {type_phrase(query)} {_show(query)}")
    kind = query.get("type")
    if not isinstance(kind, str):
        raise _UntranslatableError(f"a query needs a 'type' (text) such as eq, subnet, and, got {type_phrase(kind)} {_show(kind)}")
    if kind in ("and", "or"):
        items = query.get("filters")
        if not isinstance(items, list) or not items:
            raise _UntranslatableError(f"an {kind!r} query needs a non-empty 'filters' list, got {brief(items)}")
        translated: list[Node] = []
        untranslatable: list[str] = []
        for item in items:  # every item of the and/or, so that one run names all of a filter's problems
            try:
                translated.append(_node(item, depth + 1))
            except _UntranslatableError as error:
                untranslatable.extend(error.messages)
        if untranslatable:
            raise _UntranslatableError(*untranslatable)
        nodes = tuple(translated)
        if len(nodes) == 1:
            return nodes[0]
        return And(nodes) if kind == "and" else Or(nodes)
    if kind == "not":
        return Not(_node(query.get("filter"), depth + 1))
    field = query.get("field")
    attribute = _attribute(field)
    if kind in OPERATORS:
        value = _value(query.get("value"), field)
        if attribute == "address" and kind in ("eq", "ne"):
            return Condition(attribute, OPERATORS[kind], (_address(value),), 0)
        if attribute == "address":
            raise _UntranslatableError(f"{kind!r} on field 'ip' has no equivalent (ip takes eq, ne, subnet, in and range)")
        return Condition(attribute, OPERATORS[kind], (value,), 0)
    if kind == "subnet":
        if attribute != "address":
            raise _UntranslatableError(f"'subnet' needs field 'ip', got {brief(field)!r}")
        return Condition("address", "=", (_address(_value(query.get("value"), field)),), 0)
    if kind == "in":
        values = query.get("values", query.get("value"))
        if not isinstance(values, list) or not values:
            raise _UntranslatableError(f"an 'in' query on {brief(field)!r} needs a non-empty 'values' list, got {brief(values)}")
        texts = tuple(_value(value, field) for value in values)
        if attribute == "address":
            texts = tuple(_address(text) for text in texts)
        return Condition(attribute, "in", texts, 0)
    if kind == "range":
        low, high = _value(query.get("min"), field), _value(query.get("max"), field)
        if attribute == "address":
            return _address_range(low, high)
        return And((Condition(attribute, ">=", (low,), 0), Condition(attribute, "<=", (high,), 0)))
    if kind == "regex":
        raise _UntranslatableError(
            f"'regex' on {brief(field)!r} has no equivalent in our query language (write the values out with eq, in or contains)"
        )
    raise _UntranslatableError(
        f"query type {brief(kind)!r} is unknown (known: and, or, not, eq, ne, lt, lte, gt, gte, subnet, contains, in, range)"
    )


def _attribute(field: Any) -> str:
    """Our attribute for a CSW field; raises _UntranslatableError for a field we have no equivalent of."""
    if not isinstance(field, str):
        raise _UntranslatableError(f"a condition needs a 'field' (text), got {type_phrase(field)} {_show(field)}")
    if field in FIELDS:
        return FIELDS[field]
    key = ""
    if field.startswith(ORCHESTRATOR) and not field.startswith(SYSTEM):
        key = field[len(ORCHESTRATOR) :]
    elif field.startswith("user_") and not field.startswith(ORCHESTRATOR):
        key = field[len("user_") :]
    if key and _ATTRIBUTE_KEY.match(key):
        return "label." + key
    raise _UntranslatableError(
        f"field {brief(field)!r} has no equivalent (translated: ip, host_name, {SYSTEM}pod_name, service_name, namespace,"
        f" cluster_name, and labels {ORCHESTRATOR}<key> and user_<key>)"
    )


def _value(value: Any, field: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _UntranslatableError(f"the value for {brief(field)!r} must be text or a number, got {type_phrase(value)} {_show(value)}")
    return value if isinstance(value, str) else repr(value)


def _address(value: str) -> str:
    """An address or CIDR as we write it: a host prefix (/32, /128) is the plain address."""
    if HAS_NETADDR and "/" in value:
        try:
            network = netaddr.IPNetwork(value)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            return value  # parse_query names the bad value
        if network.prefixlen == (32 if network.version == 4 else 128):
            return str(network.ip)
    return value


def _address_range(low: str, high: str) -> Node:
    if not HAS_NETADDR:
        raise _UntranslatableError("an ip 'range' needs the Python package netaddr on the controller")
    try:
        cidrs = [str(cidr) for cidr in netaddr.IPRange(low, high).cidrs()]
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise _UntranslatableError(f"ip range {brief(low)!r} - {brief(high)!r} is not a range of addresses") from None
    values = tuple(_address(cidr) for cidr in cidrs)
    return Condition("address", "=", values, 0) if len(values) == 1 else Condition("address", "in", values, 0)


def _nodes(nodes: Any) -> Node:
    """A cluster without a query: its members' addresses (``ip``/``prefix_len``)."""
    if not isinstance(nodes, list) or not nodes:
        raise _UntranslatableError("a cluster needs a query or a non-empty 'nodes' list of {ip, prefix_len}")
    values = []
    for member in nodes:
        address = member.get("ip") if isinstance(member, Mapping) else None
        if not isinstance(address, str):
            raise _UntranslatableError(f"a cluster node needs an 'ip' (text), got {brief(member)}")
        prefix = member.get("prefix_len") if isinstance(member, Mapping) else None
        if prefix is None:
            values.append(address)
        elif isinstance(prefix, int) and not isinstance(prefix, bool):
            values.append(_address(f"{address}/{prefix}"))
        else:
            raise _UntranslatableError(f"cluster node {brief(address)!r}: prefix_len must be a number, got {_show(prefix)}")
    unique = tuple(dict.fromkeys(values))
    return Condition("address", "=", unique, 0) if len(unique) == 1 else Condition("address", "in", unique, 0)


def import_workspace(workspace: Any, *, widen_icmp: bool = False) -> dict[str, Any]:
    """Our policy (``filters``, ``policies``) for a CSW workspace document; raises CswError listing every untranslatable item.

    ``widen_icmp`` imports a policy that allows ICMP (proto 1) or ICMPv6 (58) alone as our ``icmp``,
    which is both; without it such a policy is reported. ``workspace`` may also be the document's JSON text.
    """
    if isinstance(workspace, (str, bytes)):
        try:
            workspace = json.loads(workspace)
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise CswError("the workspace", [Problem("workspace", f"is not JSON: {brief(str(error))}")]) from None
    return _Importer(widen_icmp=widen_icmp).run(workspace)


# --------------------------------------------------------------------------------------------------
# Export: our policy -> workspace


def _tree(node: Node, where: str, problems: list[Problem], text: str) -> Optional[dict[str, Any]]:  # noqa: PLR0911 - one answer per node type
    """The CSW query tree for ``node``; None (and a problem) when some part has no CSW equivalent."""
    if isinstance(node, Not):
        inner = _tree(node.item, where, problems, text)
        return None if inner is None else {"type": "not", "filter": inner}
    if isinstance(node, (And, Or)):
        items = [_tree(item, where, problems, text) for item in node.items]
        if any(item is None for item in items):
            return None
        return {"type": "and" if isinstance(node, And) else "or", "filters": items}
    field = _field(node.attribute)
    if field is None or node.operator == "exists" or (node.attribute == "address" and node.operator not in ("=", "!=", "in")):
        what = f"attribute {node.attribute!r}" if field is None else f"{node.operator!r} on {node.attribute!r}"
        problems.append(Problem(where, f"{what} has no Secure Workload equivalent", text, node.position))
        return None
    if node.attribute == "address":
        terms = [_address_term(value) for value in node.values]
        tree = terms[0] if len(terms) == 1 else {"type": "or", "filters": terms}
        return {"type": "not", "filter": tree} if node.operator == "!=" else tree
    if node.operator == "in":
        return {"type": "in", "field": field, "values": list(node.values)}
    return {"type": TYPES[node.operator], "field": field, "value": node.values[0]}


def _field(attribute: str) -> Optional[str]:
    if attribute in ATTRIBUTES:
        return ATTRIBUTES[attribute]
    if attribute.startswith("label.") and not attribute.startswith("label.system/"):
        return ORCHESTRATOR + attribute[len("label.") :]
    return None


def _address_term(value: str) -> dict[str, Any]:
    return {"type": "subnet" if "/" in value else "eq", "field": "ip", "value": value}


def _l4(spec: PortSpec, where: str, problems: list[Problem]) -> list[dict[str, Any]]:
    if spec.protocol == "any":
        return [{"proto": None}]
    if spec.protocol == "icmp":
        return [{"proto": number} for number in ICMP]
    if spec.name is not None:
        problems.append(Problem(where, f"the named port {spec} has no Secure Workload equivalent; write its number", str(spec)))
        return []
    return [{"proto": PROTOCOL_NUMBERS[spec.protocol], "port": [spec.first, spec.last]}]


def export_policy(policy: Any, *, name: str = "zerotrust.workloads") -> dict[str, Any]:
    """The CSW workspace document for our policy; raises CswError listing every item without a CSW equivalent.

    Filter names become both the ``id`` and the ``name`` of an inventory filter, so policies refer
    to them readably. Each rank's policies are written in our chain order (denies first) with ascending
    ``priority``, so that CSW's first-match order is ours. ``options`` (compiler settings) and policy ``name``/``description`` are not
    part of a workspace and are left out.
    """
    parsed = parse_policy(policy)  # raises PolicyError for an invalid policy, listing its problems
    problems: list[Problem] = []
    filters = []
    for filter_name, item in sorted(parsed.filters.items()):
        tree = _tree(item.query, f"filters.{filter_name}", problems, item.text)
        filters.append({"id": filter_name, "name": filter_name, "query": tree})
    workspace: dict[str, Any] = {"name": name, "inventory_filters": filters, "absolute_policies": [], "default_policies": []}
    for rule in parsed.ordered_rules():  # our chain order (a rank's denies first), which CSW's priorities then keep
        l4_params = [param for spec in rule.ports for param in _l4(spec, f"policies.{rule.label}", problems)]
        workspace[f"{rule.rank}_policies"].append(
            {
                "consumer_filter_id": rule.consumer,
                "provider_filter_id": rule.provider,
                "action": rule.action.upper(),
                "l4_params": list({repr(param): param for param in l4_params}.values()),
                "priority": len(workspace[f"{rule.rank}_policies"]) + 1,
            }
        )
    workspace["catch_all_action"] = parsed.catch_all.upper()
    if problems:
        raise CswError("the policy", problems)
    return workspace

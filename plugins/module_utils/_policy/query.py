# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The filter query language: parse, evaluate, and select workloads fast.

Grammar (``not`` binds tighter than ``and``, which binds tighter than ``or``)::

    query     := or
    or        := and ("or" and)*
    and       := not ("and" not)*
    not       := "not" not | "(" query ")" | condition
    condition := ATTRIBUTE ("=" VALUE | "!=" VALUE | "contains" VALUE
                            | ("<" | "<=" | ">" | ">=") NUMBER
                            | "in" "(" VALUE ("," VALUE)* ")" | "exists")

Values are bare words or single/double quoted strings (a backslash escapes the quote).
``address = CIDR`` means an address inside the subnet. ``<``, ``<=``, ``>``, ``>=`` compare
numbers: the value must be one (``-3``, ``9.8``), a workload value that is not a number never matches. A query made only of address
conditions stands also for those networks themselves as external peers.
"""

from __future__ import annotations

import dataclasses
import decimal
import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import brief, type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy import vulns
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import QuerySyntaxError, ZeroTrustPolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import KINDS, Workload

# Third-party packages are imported guarded so that importing this module never fails;
# using a feature that needs a missing package raises ZeroTrustPolicyError naming it.
try:
    import jmespath
except ImportError:
    HAS_JMESPATH = False
else:
    HAS_JMESPATH = True
try:
    import netaddr
except ImportError:
    HAS_NETADDR = False
else:
    HAS_NETADDR = True


def _require(package: str, present: bool) -> None:
    """Raise a clear error when the Python package ``package`` is not installed."""
    if not present:
        raise ZeroTrustPolicyError(f"the Python package {package!r} is required on the controller; install it with: pip install {package}")


PLAIN_ATTRIBUTES = ("kind", "name", "pod_name", "service_name", "namespace", "node", "cluster", "address", "group", *vulns.ATTRIBUTES)
PREFIX_ATTRIBUTES = ("label.", "annotation.", "var.")
COMPARISONS = ("<", "<=", ">", ">=")
OPERATORS = ("=", "!=", *COMPARISONS, "contains", "in", "exists")
KEYWORDS = ("and", "or", "not", "contains", "in", "exists")
_SPECIAL = "()=!<>,\"'"
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
"""A number as a query value and as a workload value to compare: decimal notation only, so
``inf``, ``nan``, ``1e3`` and ``0x10`` are text (CSW and trivy counts and scores are all decimal)."""
NOT_NUMERIC = ("kind", "address", vulns.ID_ATTRIBUTE)
"""Attributes that are never numbers: ``<``, ``<=``, ``>``, ``>=`` on them is an error."""
MAX_DEPTH = 32
"""Deepest nesting of parentheses and ``not`` a query may have: far more than a person writes, far below
Python's recursion limit (the parser takes three frames per level), so hostile input gets a clear error."""
_CLIP = 40


@dataclasses.dataclass(frozen=True)
class Token:
    """A lexical token: ``kind`` is word, string, op, lparen, rparen, comma or end."""

    kind: str
    text: str
    position: int


@dataclasses.dataclass(frozen=True)
class Condition:
    """``attribute operator values`` (``values`` is empty for ``exists``)."""

    attribute: str
    operator: str
    values: tuple[str, ...]
    position: int


@dataclasses.dataclass(frozen=True)
class And:
    """All of ``items``."""

    items: tuple[Node, ...]


@dataclasses.dataclass(frozen=True)
class Or:
    """Any of ``items``."""

    items: tuple[Node, ...]


@dataclasses.dataclass(frozen=True)
class Not:
    """Not ``item``."""

    item: Node


Node = Union[Condition, And, Or, Not]


def tokenize(text: str) -> list[Token]:  # noqa: PLR0912 - a lexer is one branch per character class
    """Split a query into tokens, raising QuerySyntaxError with the position."""
    tokens: list[Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char in "(),":
            tokens.append(Token({"(": "lparen", ")": "rparen", ",": "comma"}[char], char, index))
            index += 1
        elif char == "=":
            tokens.append(Token("op", "=", index))
            index += 1
        elif char in "<>":
            # "<=" and ">=" are one token; a lone "<" or ">" is one too.
            width = 2 if text[index + 1 : index + 2] == "=" else 1
            tokens.append(Token("op", text[index : index + width], index))
            index += width
        elif char == "!":
            if text[index + 1 : index + 2] != "=":
                raise QuerySyntaxError("'!' must be followed by '=' (the operator is '!=')", text, index)
            tokens.append(Token("op", "!=", index))
            index += 2
        elif char in "\"'":
            start = index
            index += 1
            value: list[str] = []
            while True:
                if index >= len(text):
                    raise QuerySyntaxError(f"unterminated {char}-quoted string", text, start)
                if text[index] == "\\" and index + 1 < len(text):
                    value.append(text[index + 1])
                    index += 2
                elif text[index] == char:
                    index += 1
                    break
                else:
                    value.append(text[index])
                    index += 1
            tokens.append(Token("string", "".join(value), start))
        else:
            start = index
            while index < len(text) and not text[index].isspace() and text[index] not in _SPECIAL:
                index += 1
            tokens.append(Token("word", text[start:index], start))
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, message: str, token: Token) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.text, token.position)

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "word" and token.text == word:
            self.index += 1
            return True
        return False

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail("the query is empty; write a condition such as 'label.app = web'", self.peek())
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise self.fail(f"expected 'and', 'or' or the end of the query, found {_describe(token)}", token)
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.keyword("or"):
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.keyword("and"):
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def nest(self, token: Token) -> None:
        """Enter one more level of ``not`` or ``(``; refuse to go deeper than MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"the query nests parentheses and 'not' more than {MAX_DEPTH} levels deep; write it flatter", token)

    def parse_not(self) -> Node:
        token = self.peek()
        if self.keyword("not"):
            self.nest(token)
            node: Node = Not(self.parse_not())
            self.depth -= 1
            return node
        if token.kind == "lparen":
            self.nest(token)
            self.take()
            node = self.parse_or()
            closing = self.peek()
            if closing.kind != "rparen":
                raise self.fail(f"expected ')' to close the '(' at position {token.position}, found {_describe(closing)}", closing)
            self.take()
            self.depth -= 1
            return node
        return self.parse_condition()

    def parse_condition(self) -> Condition:
        token = self.take()
        if token.kind != "word" or token.text in KEYWORDS:
            raise self.fail(f"expected an attribute such as 'label.app' or 'namespace', found {_describe(token)}", token)
        attribute = token.text
        _check_attribute(attribute, self.text, token.position)
        op_token = self.take()
        if op_token.kind == "op" or (op_token.kind == "word" and op_token.text in ("contains", "in", "exists")):
            operator = op_token.text
        else:
            raise self.fail(
                f"expected an operator (=, !=, <, <=, >, >=, contains, in, exists) after {_clip(attribute)}, found {_describe(op_token)}",
                op_token,
            )
        if operator in COMPARISONS and attribute in NOT_NUMERIC:
            raise self.fail(f"{operator!r} compares numbers and {attribute!r} is never a number; use =, !=, in or contains", op_token)
        values: tuple[str, ...]
        if operator == "exists":
            values = ()
        elif operator == "in":
            opening = self.take()
            if opening.kind != "lparen":
                raise self.fail(f"expected '(' after 'in', found {_describe(opening)}", opening)
            collected = [self.value(operator)]
            while self.peek().kind == "comma":
                self.take()
                collected.append(self.value(operator))
            closing = self.take()
            if closing.kind != "rparen":
                raise self.fail(f"expected ',' or ')' in the 'in' list, found {_describe(closing)}", closing)
            values = tuple(collected)
        else:
            values = (self.value(operator),)
        condition = Condition(attribute, operator, values, token.position)
        _check_values(condition, self.text)
        return condition

    def value(self, operator: str) -> str:
        token = self.take()
        if token.kind == "string" or (token.kind == "word" and token.text not in ("and", "or", "not")):
            if operator in COMPARISONS and _number(token.text) is None:
                # The position is the value's own, so the message points at the text to fix.
                raise self.fail(f"{operator!r} compares numbers, and {_describe(token)} is not a number such as 3 or 9.8", token)
            return token.text
        raise self.fail(f"expected a value after {operator!r}, found {_describe(token)}", token)


def _number(value: Any) -> Optional[decimal.Decimal]:
    """``value`` as an exact decimal when it is a number (an int, a finite float, decimal text), else None.

    Floats go through their shortest text so that a hostvar 9.8 equals the query's 9.8 exactly."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return decimal.Decimal(value)
    if isinstance(value, float):
        text = repr(value)
        return decimal.Decimal(text) if _NUMBER.fullmatch(text) else None
    if isinstance(value, str) and len(value) <= 64 and _NUMBER.fullmatch(value.strip()):
        return decimal.Decimal(value.strip())
    return None


_COMPARE: dict[str, Callable[[decimal.Decimal, decimal.Decimal], bool]] = {
    "<": lambda left, right: left < right,
    "<=": lambda left, right: left <= right,
    ">": lambda left, right: left > right,
    ">=": lambda left, right: left >= right,
}


def _compares(compiled: _Compiled, values: Sequence[Any]) -> bool:
    """Is any of ``values`` a number that stands in the condition's relation to its number?"""
    compare = _COMPARE[compiled.condition.operator]
    bound = compiled.number
    if bound is None:
        return False  # unreachable: the parser admits only numbers after a comparison
    for value in values:
        number = _number(value)
        if number is not None and compare(number, bound):
            return True
    return False


def _describe(token: Token) -> str:
    return "the end of the query" if token.kind == "end" else _clip(token.text)


def _clip(text: str) -> str:
    """A quoted piece of the query for a message, cut short: a token may be a megabyte long."""
    return repr(text) if len(text) <= _CLIP else repr(text[: _CLIP - 3]) + "..."


def _check_attribute(attribute: str, text: str, position: int) -> None:
    if attribute in PLAIN_ATTRIBUTES:
        return
    for prefix in PREFIX_ATTRIBUTES:
        if attribute.startswith(prefix):
            rest = attribute[len(prefix) :]
            if not rest:
                raise QuerySyntaxError(f"attribute {attribute!r} needs a key after {prefix!r}", text, position)
            if prefix == "var.":
                _require("jmespath", HAS_JMESPATH)
                try:
                    jmespath.compile(rest)
                except jmespath.exceptions.JMESPathError as error:
                    raise QuerySyntaxError(
                        f"attribute {_clip(attribute)}: {_clip(rest)} is not a valid hostvar path ({brief(str(error))})", text, position
                    ) from None
                except Exception:  # a third-party parser on untrusted text: RecursionError and the like become ours
                    message = f"attribute {_clip(attribute)}: {_clip(rest)} is not a valid hostvar path"
                    raise QuerySyntaxError(message, text, position) from None
            return
    known = ", ".join((*PLAIN_ATTRIBUTES, *(prefix + "<key>" for prefix in PREFIX_ATTRIBUTES)))
    raise QuerySyntaxError(f"unknown attribute {_clip(attribute)}; known attributes: {known}", text, position)


def _check_values(condition: Condition, text: str) -> None:
    if condition.attribute == "address" and condition.operator in ("=", "!=", "in"):
        _require("netaddr", HAS_NETADDR)
        for value in condition.values:
            try:
                network = _network(value)
            except (netaddr.AddrFormatError, ValueError, TypeError):
                raise QuerySyntaxError(
                    f"address value {_clip(value)} is not an IP address or CIDR such as 10.0.0.0/8", text, condition.position
                ) from None
            if network.ip != network.network:
                # Widening 10.1.2.3/8 to 10.0.0.0/8 in silence would allow a whole /8 where one address was meant.
                raise QuerySyntaxError(
                    f"address value {value!r} has host bits set (the subnet is {network.cidr}): write {network.cidr} for the subnet"
                    f" or {network.ip} for the address",
                    text,
                    condition.position,
                )
    if condition.attribute == "kind" and condition.operator in ("=", "!=", "in"):
        for value in condition.values:
            if value not in KINDS:
                raise QuerySyntaxError(f"kind {_clip(value)} is not one of {', '.join(KINDS)}", text, condition.position)


def _network(value: str) -> netaddr.IPNetwork:
    _require("netaddr", HAS_NETADDR)
    # netaddr accepts legacy shorthand such as "10/8"; insist on full notation.
    if "." not in value and ":" not in value:
        raise ValueError(value)
    return netaddr.IPNetwork(value)


def parse_query(text: str) -> Node:
    """Parse a query; raises QuerySyntaxError (message, text, position)."""
    if not isinstance(text, str):
        raise QuerySyntaxError(f"a filter must be a query string, got {type_phrase(text)}", brief(text), 0)
    return _Parser(text).parse()


def address_networks(node: Node) -> Optional[tuple[str, ...]]:
    """The networks a query of only ``address =``/``in`` conditions (joined by ``or``) stands for."""
    if isinstance(node, Condition):
        if node.attribute == "address" and node.operator in ("=", "in"):
            return tuple(str(_network(value).cidr) for value in node.values)
        return None
    if isinstance(node, Or):
        result: list[str] = []
        for item in node.items:
            networks = address_networks(item)
            if networks is None:
                return None
            result.extend(networks)
        return tuple(sorted(set(result)))
    return None


def _range(value: str) -> tuple[int, int, int]:
    network = _network(value)
    return (network.version, network.first, network.last)


def _scalar_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Compiled:
    """A condition turned into a predicate over workloads (built once per query)."""

    def __init__(self, condition: Condition) -> None:
        self.condition = condition
        self.values = frozenset(condition.values)
        self.ranges: tuple[tuple[int, int, int], ...] = ()
        if condition.attribute == "address" and condition.operator in ("=", "!=", "in"):
            self.ranges = tuple(_range(value) for value in condition.values)
        self.number = _number(condition.values[0]) if condition.operator in COMPARISONS else None
        self.path = None
        if condition.attribute.startswith("var."):
            _require("jmespath", HAS_JMESPATH)
            self.path = jmespath.compile(condition.attribute[4:])


def _field_values(condition: Condition, workload: Workload) -> Optional[tuple[str, ...]]:  # noqa: PLR0911 - one answer per attribute
    """The workload's values for an attribute; None when the attribute does not apply."""
    attribute = condition.attribute
    if attribute == "kind":
        return (workload.kind,)
    if attribute == "name":
        return (workload.name,)
    if attribute == "pod_name":
        return (workload.name,) if workload.kind == "pod" else None
    if attribute == "service_name":
        return (workload.name,) if workload.kind == "service" else None
    if attribute == "namespace":
        return None if workload.namespace is None else (workload.namespace,)
    if attribute == "node":
        if workload.kind == "node":
            return (workload.name,)
        return None if workload.node is None else (workload.node,)
    if attribute == "cluster":
        return None if workload.cluster is None else (workload.cluster,)
    if attribute == "group":
        return workload.groups or None
    if attribute.startswith("label."):
        value = workload.labels.get(attribute[6:])
        return None if value is None else (value,)
    if attribute.startswith("annotation."):
        value = workload.annotations.get(attribute[11:])
        return None if value is None else (value,)
    if attribute in vulns.ATTRIBUTES:
        return vulns.attribute_values(attribute, workload.vulnerabilities)
    raise AssertionError(attribute)


_ADDRESS_CACHE: dict[str, tuple[int, int]] = {}


def _address_key(text: str) -> tuple[int, int]:
    key = _ADDRESS_CACHE.get(text)
    if key is None:
        _require("netaddr", HAS_NETADDR)
        address = netaddr.IPAddress(text)
        key = (address.version, int(address))
        if len(_ADDRESS_CACHE) < 1_000_000:
            _ADDRESS_CACHE[text] = key
    return key


def _matches(compiled: _Compiled, workload: Workload) -> bool:  # noqa: PLR0911, PLR0912 - one answer per operator and attribute family
    condition = compiled.condition
    operator = condition.operator
    if condition.attribute == "address":
        if operator == "exists":
            return bool(workload.addresses)
        if operator == "contains":
            return any(condition.values[0] in address for address in workload.addresses)
        inside = any(
            version == key[0] and first <= key[1] <= last
            for key in map(_address_key, workload.addresses)
            for version, first, last in compiled.ranges
        )
        return not inside if operator == "!=" else inside
    if compiled.path is not None:
        # jmespath reads mappings through .get(), so Ansible's lazy hostvars are templated
        # only along the path asked for.
        found = compiled.path.search(workload.hostvars)
        if operator == "exists":
            return found is not None
        if operator in COMPARISONS:
            return _compares(compiled, (found,))
        if operator == "contains":
            if isinstance(found, (list, tuple)):
                return condition.values[0] in {_scalar_text(item) for item in found}
            text = _scalar_text(found)
            return text is not None and condition.values[0] in text
        text = _scalar_text(found) if not isinstance(found, (list, dict)) else None
        if operator == "!=":
            return text not in compiled.values
        return text in compiled.values
    values = _field_values(condition, workload)
    if operator == "exists":
        return values is not None
    if operator == "!=":
        # Kubernetes label-selector semantics: a missing label is "not equal". For
        # pod_name/service_name the kind still has to match.
        if values is None:
            return condition.attribute not in ("pod_name", "service_name")
        return not any(value in compiled.values for value in values)
    if values is None:
        return False
    if operator == "contains":
        return any(condition.values[0] in value for value in values)
    if operator in COMPARISONS:
        return _compares(compiled, values)
    return any(value in compiled.values for value in values)


def evaluate(node: Node, workload: Workload) -> bool:
    """Does ``workload`` match the query? (Slow path; :class:`Selector` is the fast one.)"""
    return _predicate(node)(workload)


def _predicate(node: Node) -> Callable[[Workload], bool]:
    if isinstance(node, Condition):
        compiled = _Compiled(node)
        return lambda workload: _matches(compiled, workload)
    if isinstance(node, Not):
        inner = _predicate(node.item)
        return lambda workload: not inner(workload)
    parts = [_predicate(item) for item in node.items]
    if isinstance(node, And):
        return lambda workload: all(part(workload) for part in parts)
    return lambda workload: any(part(workload) for part in parts)


_INDEXED = ("kind", "name", "pod_name", "service_name", "namespace", "node", "cluster", "group")


class Selector:
    """Evaluates queries over many workloads, using equality indexes to skip most of them."""

    def __init__(self, workloads: Sequence[Workload]) -> None:
        self.workloads = tuple(workloads)
        self._index: dict[tuple[str, str], set[int]] = {}
        self._label_keys: dict[str, set[int]] = {}
        self._addresses: dict[str, set[int]] = {}
        for position, workload in enumerate(self.workloads):
            for attribute in _INDEXED:
                for value in _field_values(Condition(attribute, "=", (), 0), workload) or ():
                    self._index.setdefault((attribute, value), set()).add(position)
            for key, value in workload.labels.items():
                self._index.setdefault(("label." + key, value), set()).add(position)
                self._label_keys.setdefault(key, set()).add(position)
            for address in workload.addresses:
                self._addresses.setdefault(address, set()).add(position)

    def _candidates(self, node: Node) -> Optional[set[int]]:  # noqa: PLR0911 - one answer per node type and operator
        if isinstance(node, Condition):
            if node.operator in ("=", "in"):
                if node.attribute in _INDEXED or node.attribute.startswith("label."):
                    result: set[int] = set()
                    for value in node.values:
                        result |= self._index.get((node.attribute, value), set())
                    return result
                if node.attribute == "address" and all("/" not in value for value in node.values):
                    result = set()
                    for value in node.values:
                        result |= self._addresses.get(str(ipaddress.ip_address(value)), set())
                    return result
            if node.operator == "exists" and node.attribute.startswith("label."):
                return set(self._label_keys.get(node.attribute[6:], set()))
            return None
        if isinstance(node, And):
            known = [candidates for candidates in map(self._candidates, node.items) if candidates is not None]
            if not known:
                return None
            known.sort(key=len)
            return set.intersection(*known)
        if isinstance(node, Or):
            union: set[int] = set()
            for item in node.items:
                candidates = self._candidates(item)
                if candidates is None:
                    return None
                union |= candidates
            return union
        return None

    def select(self, node: Node) -> list[Workload]:
        """The matching workloads, in the selector's order."""
        candidates = self._candidates(node)
        predicate = _predicate(node)
        positions: Sequence[int] = sorted(candidates) if candidates is not None else range(len(self.workloads))
        return [self.workloads[position] for position in positions if predicate(self.workloads[position])]

    def select_hosts(self, node: Node) -> frozenset[str]:
        """The inventory hostnames of the matching workloads."""
        return frozenset(workload.host for workload in self.select(node))

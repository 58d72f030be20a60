"""Whether a dynamic membership rule can admit guests: Microsoft's rule grammar, read and judged for a guest.

The grammar is the one Microsoft documents (https://learn.microsoft.com/entra/identity/users/groups-dynamic-membership):
expressions ``property operator value`` combined with ``-and``, ``-or``, ``-not`` and parentheses; "Operators can be
used with or without the hyphen (-) prefix"; precedence from highest to lowest: the comparisons, ``-not``, ``-and``,
``-or``, ``-any``/``-all``; "Regex and string operations aren't case sensitive"; ``-in``/``-notIn`` take a list in
brackets; values are strings (double or single quotes, with the documented escapes), ``null``, ``true``/``false``,
numbers, dates and ``system.now -plus p1d``. Operators, ``user.userType`` and its values are read without case
(the page's own examples write ``user.employeehiredate`` and ``user.mailNickname``).

The rule is then evaluated for a guest (``userType`` Guest) in three-valued logic: a comparison on ``userType`` is
known, any other property is unknown, ``-any``/``-all`` are unknown. The rule keeps guests out only when it is
*false* for every guest. Anything this reading cannot follow (a malformed rule, ``Direct Reports for``, ``-match``
on userType) counts as *admits guests*, so the worst outcome is a warning an admin reads once, never a guest
licensed unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["RuleSyntaxError", "parse_rule", "rule_admits_guests"]

# Kleene's three values: True, False, None (unknown).
Truth = bool | None

_HYPHENS: Final = "-\u2013\u2014"  # Microsoft's own examples also write the prefix as an en dash ("–eq")
_COMPARISONS: Final = frozenset(
    {
        "eq",
        "ne",
        "startswith",
        "notstartswith",
        "endswith",
        "notendswith",
        "contains",
        "notcontains",
        "match",
        "notmatch",
        "in",
        "notin",
        "le",
        "ge",
    }
)
_LOGICAL: Final = frozenset({"and", "or", "not"})
_COLLECTION: Final = frozenset({"any", "all"})
_ARITHMETIC: Final = frozenset({"plus", "minus"})  # system.now -plus p1d
_OPERATORS: Final = _COMPARISONS | _LOGICAL | _COLLECTION | _ARITHMETIC
_TOKEN: Final = re.compile(
    rf"""\s*(?:
        (?P<op>[{_HYPHENS}](?P<name>[A-Za-z]+))(?![\w.])
      | (?P<dq>"(?:`.|[^"`])*")
      | (?P<sq>'(?:''|[^'])*')
      | (?P<punct>[()\[\],])
      | (?P<word>[^\s()\[\],"']+)
    )""",
    re.VERBOSE | re.DOTALL,
)


class RuleSyntaxError(ValueError):
    """A membership rule outside the documented grammar."""


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "op" (hyphen-prefixed operator), "str", "punct", "word"
    text: str  # the operator name casefolded, the string's value, the punctuation, the word as written


@dataclass(frozen=True, slots=True)
class Comparison:
    prop: str  # casefolded, e.g. "user.usertype"
    op: str  # casefolded operator name without the hyphen
    value: str | tuple[str, ...] | None  # a string, a list, or None for the null value


@dataclass(frozen=True, slots=True)
class Collection:
    prop: str
    op: str  # "any" | "all"
    condition: Node


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class Logical:
    op: str  # "and" | "or"
    operands: tuple[Node, ...]


Node = Comparison | Collection | Not | Logical


def _tokens(rule: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos, end = 0, len(rule.rstrip())
    while pos < end:
        m = _TOKEN.match(rule, pos)
        if m is None or m.end() == pos:
            raise RuleSyntaxError(f"cannot read the rule at {rule[pos : pos + 20]!r}")
        pos = m.end()
        if m["op"] and m["name"].casefold() in _OPERATORS:
            out.append(_Tok("op", m["name"].casefold()))
        elif m["op"]:
            raise RuleSyntaxError(f"unknown operator {m['op']!r}")
        elif m["dq"]:
            out.append(_Tok("str", re.sub(r"`(.)", r"\1", m["dq"][1:-1])))
        elif m["sq"]:
            out.append(_Tok("str", m["sq"][1:-1].replace("''", "'")))
        elif m["punct"]:
            out.append(_Tok("punct", m["punct"]))
        else:
            out.append(_Tok("word", m["word"]))
    return out


class _Parser:
    """Recursive descent over the documented precedence: or < and < not < comparison."""

    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise RuleSyntaxError("the rule ends too early")
        self.i += 1
        return tok

    def operator(self, names: frozenset[str]) -> str | None:
        """The next token as one of ``names``, written with or without the hyphen."""
        tok = self.peek()
        if tok is not None and tok.kind in ("op", "word") and tok.text.casefold() in names:
            self.i += 1
            return tok.text.casefold()
        return None

    def expect(self, punct: str) -> None:
        tok = self.take()
        if tok != _Tok("punct", punct):
            raise RuleSyntaxError(f"expected {punct!r}, found {tok.text!r}")

    def rule(self) -> Node:
        node = self.disjunction()
        if self.peek() is not None:
            raise RuleSyntaxError(f"unexpected {self.take().text!r}")
        return node

    def disjunction(self) -> Node:
        parts = [self.conjunction()]
        while self.operator(frozenset({"or"})):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Logical("or", tuple(parts))

    def conjunction(self) -> Node:
        parts = [self.negation()]
        while self.operator(frozenset({"and"})):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else Logical("and", tuple(parts))

    def negation(self) -> Node:
        if self.operator(frozenset({"not"})):
            return Not(self.negation())
        tok = self.peek()
        if tok == _Tok("punct", "("):
            self.i += 1
            node = self.disjunction()
            self.expect(")")
            return node
        return self.comparison()

    def comparison(self) -> Node:
        prop = self.take()
        if prop.kind != "word" or prop.text.casefold() in _OPERATORS:
            raise RuleSyntaxError(f"expected a property, found {prop.text!r}")
        name = prop.text.casefold()
        if collection := self.operator(_COLLECTION):
            if self.peek() == _Tok("punct", "("):
                self.i += 1
                condition = self.disjunction()
                self.expect(")")
            else:  # device.devicePhysicalIds -any _ -startsWith "[ZTDId]"
                condition = self.comparison()
            return Collection(name, collection, condition)
        op = self.operator(_COMPARISONS)
        if op is None:
            tok = self.peek()
            raise RuleSyntaxError(f"expected an operator after {prop.text!r}, found {tok.text if tok else 'nothing'!r}")
        return Comparison(name, op, self.value())

    def value(self) -> str | tuple[str, ...] | None:
        tok = self.take()
        if tok == _Tok("punct", "["):
            items: list[str] = []
            while self.peek() != _Tok("punct", "]"):
                item = self.take()
                if item.kind not in ("str", "word"):
                    raise RuleSyntaxError(f"unexpected {item.text!r} in a list")
                items.append(item.text)
                if self.peek() == _Tok("punct", ","):
                    self.i += 1
            self.expect("]")
            return tuple(items)
        if tok.kind not in ("str", "word") or (tok.kind == "word" and tok.text.casefold() in _OPERATORS):
            raise RuleSyntaxError(f"expected a value, found {tok.text!r}")
        if self.operator(_ARITHMETIC):  # system.now -plus p1d
            self.take()
        # null unquoted is the null value; "Use quotes around the word null only if you want ... a literal string".
        return None if tok.kind == "word" and tok.text.casefold() == "null" else tok.text


def parse_rule(rule: str) -> Node:
    """The rule's expression tree (RuleSyntaxError outside the documented grammar)."""
    return _Parser(_tokens(rule)).rule()


_GUEST: Final = "guest"


def _user_type(c: Comparison) -> Truth:
    """A userType comparison for a guest: known for equality and lists, unknown for the others (regexes)."""
    v = c.value
    if c.op in ("eq", "ne"):
        if isinstance(v, tuple):
            return None
        equal = v is not None and v.casefold() == _GUEST
        return equal if c.op == "eq" else not equal
    if c.op in ("in", "notin") and isinstance(v, tuple):
        inside = any(x.casefold() == _GUEST for x in v)
        return inside if c.op == "in" else not inside
    return None


def _for_a_guest(node: Node) -> Truth:
    if isinstance(node, Comparison):
        return _user_type(node) if node.prop == "user.usertype" else None
    if isinstance(node, Not):
        inner = _for_a_guest(node.operand)
        return None if inner is None else not inner
    if isinstance(node, Logical):
        values = [_for_a_guest(n) for n in node.operands]
        if node.op == "and":
            return False if False in values else True if all(values) else None
        return True if True in values else False if all(v is False for v in values) else None
    return None  # -any / -all over a collection: not known for a guest


def rule_admits_guests(rule: str | None) -> bool:
    """Whether a dynamic group with this membershipRule could take in guests (True when it cannot tell)."""
    if not rule or not rule.strip():
        return True
    try:
        tree = parse_rule(rule)
    except RuleSyntaxError:
        return True
    return _for_a_guest(tree) is not False

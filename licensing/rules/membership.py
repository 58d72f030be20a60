"""Whether a dynamic membership rule can admit guests: a small, conservative reading of Microsoft's rule syntax.

Rules are expressions such as ``(user.userType -eq "Member") -and (user.department -eq "Sales")``, combined
with ``-and``, ``-or`` and ``-not`` and parentheses (https://learn.microsoft.com/entra/identity/users/groups-dynamic-membership).
Microsoft's guidance for groups that must hold employees only is a ``user.userType -eq "Member"`` clause. A rule
restricts guests when *every* ``-or`` alternative carries such a clause in its ``-and`` chain; anything this
reading cannot follow (``-match`` on userType, custom extension attributes, a malformed rule) counts as *admits
guests*, so the worst outcome is a warning an admin reads once, never a guest licensed unnoticed.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["rule_admits_guests"]

_STRING: Final = r'"[^"]*"|\'[^\']*\''
# One restricting clause, e.g. user.userType -eq "Member" / -ne "Guest" / -in ["Member"] / -notIn ["Guest"].
_RESTRICTS: Final = re.compile(
    r"""^user\.usertype\s+(?:
        -eq\s+["']member["']
      | -ne\s+["']guest["']
      | -in\s+\[\s*["']member["']\s*\]
      | -notin\s+\[\s*["']guest["']\s*\]
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
_NOT_GUEST: Final = re.compile(r"""^-not\s*\(\s*user\.usertype\s+-eq\s+["']guest["']\s*\)$""", re.IGNORECASE)


def _split(expr: str, op: str) -> list[str]:
    """``expr`` split at the top-level ``op`` (``-and`` / ``-or``), outside parentheses, brackets and quotes."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    token = re.compile(rf"({_STRING})|([(\[])|([)\]])|(\s{re.escape(op)}\s)", re.IGNORECASE)
    while True:
        m = token.search(expr, i)
        if m is None:
            break
        if m.group(2):
            depth += 1
        elif m.group(3):
            depth -= 1
        elif m.group(4) and depth == 0:
            parts.append(expr[start : m.start()])
            start = m.end()
        i = m.end()
    parts.append(expr[start:])
    return [p.strip() for p in parts]


def _unwrap(expr: str) -> str:
    """``expr`` without parentheses that enclose all of it."""
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for i, ch in enumerate(expr):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(expr) - 1:
                return expr  # the first "(" closes before the end: "(a) -and (b)"
        expr = expr[1:-1].strip()
    return expr


def _restricts(expr: str) -> bool:
    """True when every member this expression admits has userType Member."""
    expr = _unwrap(expr)
    alternatives = _split(expr, "-or")
    if len(alternatives) > 1:
        return all(_restricts(a) for a in alternatives)
    for conjunct in _split(expr, "-and"):
        inner = _unwrap(conjunct)
        if _RESTRICTS.match(inner) or _NOT_GUEST.match(inner):
            return True
        if inner != conjunct.strip() and len(_split(inner, "-or")) > 1 and _restricts(inner):
            return True
    return False


def rule_admits_guests(rule: str | None) -> bool:
    """Whether a dynamic group with this membershipRule could take in guests (True when it cannot tell)."""
    if not rule or not rule.strip():
        return True
    return not _restricts(rule)

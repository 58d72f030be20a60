"""The terminal lines of license errors: one line per user and group, with the user's sign-in name and every product
in error, so that an admin can act on it (issue 30, item 6); the counts are the JSON report's."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from licensing.model import Finding
from licensing.text import clean_text

__all__ = ["license_error_lines", "sign_in_name"]

Line = tuple[int, str, str]  # (indent, text, rich style)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def sign_in_name(f: Finding) -> str | None:
    """The user's sign-in name (UPN). The rules name a user "Display Name (upn)" at the start of the message
    (licensing.rules.base.Facts.user_label); the finding's ``user_name`` is the display name alone."""
    name = f.user_name or ""
    if name and f.message.startswith(f"{name} ("):
        upn, closed, _ = f.message[len(name) + 2 :].partition(")")
        if closed and upn and " " not in upn:
            return upn
    return None


def _who(f: Finding) -> str:
    upn = sign_in_name(f)
    if upn:
        return f"{clean_text(upn, 80)} ({clean_text(f.user_name, 40)})"
    return clean_text(f.user_name or f.user_id or "?", 80)


def license_error_lines(items: Sequence[Finding], *, groups_shown: int, users_shown: int) -> tuple[list[Line], bool]:
    """``  SG-Lic-E3 (18 errors of 9 users)`` then ``    amara@contoso.com (Amara Sherman): Office 365 E3, EMS E3 —
    CountViolation`` per user, largest groups first; True when something was left out."""
    groups: dict[str, dict[str, list[Finding]]] = defaultdict(lambda: defaultdict(list))
    names: dict[str, str] = {}
    for f in items:
        key = f.group_id or ""
        names[key] = clean_text(f.group_name or f.group_id or "?", 48)
        groups[key][f.user_id or f.id].append(f)
    lines: list[Line] = []
    trimmed = False
    ordered = sorted(groups, key=lambda g: (-sum(len(v) for v in groups[g].values()), names[g].lower()))
    for gid in ordered[:groups_shown]:
        users = groups[gid]
        errors = sum(len(v) for v in users.values())
        lines.append((2, f"{names[gid]} ({_plural(errors, 'error')} of {_plural(len(users), 'user')})", "bold"))
        rows = []
        for findings in users.values():
            who = _who(findings[0])
            products = ", ".join(
                dict.fromkeys(clean_text(f.product_name or f.sku_part_number or f.sku_id, 40) for f in findings)
            )
            errors_text = ", ".join(dict.fromkeys(clean_text(f.error, 40) for f in findings if f.error))
            rows.append((who.lower(), f"{who}: {products}" + (f" — {errors_text}" if errors_text else "")))
        rows.sort()
        lines.extend((4, text, "") for _, text in rows[:users_shown])
        if len(rows) > users_shown:
            lines.append((4, f"… and {len(rows) - users_shown:,} more users", "dim"))
            trimmed = True
    if len(ordered) > groups_shown:
        rest = sum(len(v) for g in ordered[groups_shown:] for v in groups[g].values())
        lines.append((2, f"… and {len(ordered) - groups_shown:,} more groups ({_plural(rest, 'error')})", "dim"))
        trimmed = True
    return lines, trimmed

"""The desired state file (``licensing-desired/1``, YAML): parsed with the line of every value, checked, written.

The contract is docs/configure.md and ``licensing/data/desired.schema.json``. A group that is not listed is
unmanaged and never touched; ``licenses: []`` is the only way to remove every licence of a group: omitting a
field never means "remove" (``licenses`` is required on every group). Every problem is reported at once, one line
each, ``FILE:LINE: what``; the caller exits 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from licensing.errors import BadRequestError

__all__ = [
    "SCHEMA",
    "DesiredGroup",
    "DesiredLicense",
    "DesiredState",
    "DesiredStateError",
    "DirectAssignment",
    "dump_desired",
    "parse_desired",
]

SCHEMA: Final = "licensing-desired/1"
_GUID: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TOP_KEYS: Final = {"schema", "tenant", "groups", "direct_assignments"}
_GROUP_KEYS: Final = {"id", "name", "licenses"}
_LICENSE_KEYS: Final = {"sku", "disabled_plans"}
_DIRECT_KEYS: Final = {"user", "sku", "reason"}


class DesiredStateError(BadRequestError):
    """The file has problems; ``problems`` holds each one, ``FILE:LINE: what``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the desired state:\n" + "\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class DesiredLicense:
    sku: str  # skuPartNumber or skuId, as written
    disabled_plans: tuple[str, ...]  # servicePlanName or servicePlanId, as written
    line: int


@dataclass(frozen=True, slots=True)
class DesiredGroup:
    id: str  # lowercase GUID
    name: str
    licenses: tuple[DesiredLicense, ...]
    line: int


@dataclass(frozen=True, slots=True)
class DirectAssignment:
    user: str
    sku: str
    reason: str
    line: int


@dataclass(frozen=True, slots=True)
class DesiredState:
    tenant: str
    tenant_line: int
    groups: tuple[DesiredGroup, ...]
    direct_assignments: tuple[DirectAssignment, ...] = ()
    source: str = "FILE"

    def group(self, group_id: str) -> DesiredGroup | None:
        return next((g for g in self.groups if g.id == group_id.lower()), None)


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def bad(self, node: Any, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(f"{self.source}:{line}: {message}")

    def mapping(self, node: Any, keys: set[str], what: str) -> dict[str, Any] | None:
        import yaml

        if not isinstance(node, yaml.MappingNode):
            self.bad(node, f"{what} must be a mapping (key: value)")
            return None
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key not in keys:
                self.bad(key_node, f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(keys))})")
            elif key in out:
                self.bad(key_node, f"{key!r} is given twice in {what}")
            else:
                out[key] = value_node
        return out

    def text(self, node: Any, what: str, *, guid: bool = False) -> str | None:
        import yaml

        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith((":null", ":bool")) or node.value == "":
            self.bad(node, f"{what} must be {'a GUID' if guid else 'text'}")
            return None
        value = str(node.value).strip()
        if guid and not _GUID.match(value):
            self.bad(node, f"{what} {value!r} is not a GUID (00000000-0000-0000-0000-000000000000)")
            return None
        return value

    def sequence(self, node: Any, what: str) -> list[Any] | None:
        import yaml

        if not isinstance(node, yaml.SequenceNode):
            self.bad(node, f"{what} must be a list")
            return None
        return list(node.value)


def parse_desired(text: str, source: str = "FILE") -> DesiredState:
    """The desired state in ``text``; raises :class:`DesiredStateError` naming every problem and its line."""
    import yaml

    check = _Checker(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise DesiredStateError([f"{source}:{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})"]) from None
    if root is None:
        raise DesiredStateError([f"{source}:1: the file is empty (expected schema: {SCHEMA})"])
    top = check.mapping(root, _TOP_KEYS, "the file")
    if top is None:
        raise DesiredStateError(check.problems)
    for key in ("schema", "tenant", "groups"):
        if key not in top:
            check.bad(root, f"{key!r} is required")
    if "schema" in top and check.text(top["schema"], "schema") not in (SCHEMA, None):
        check.bad(top["schema"], f"schema must be {SCHEMA}")
    tenant = check.text(top["tenant"], "tenant", guid=True) if "tenant" in top else None
    groups: list[DesiredGroup] = []
    seen: dict[str, int] = {}
    for gnode in check.sequence(top["groups"], "groups") or [] if "groups" in top else []:
        g = check.mapping(gnode, _GROUP_KEYS, "a group")
        if g is None:
            continue
        gid = check.text(g["id"], "group id", guid=True) if "id" in g else None
        if "id" not in g:
            check.bad(gnode, "a group needs its id (the object id; the name is informative)")
        name = (check.text(g["name"], "group name") or "") if "name" in g else ""
        if "licenses" not in g:
            check.bad(
                gnode,
                "licenses is required: list the group's products, or write licenses: [] to remove "
                "every licence (omitting it never means remove)",
            )
        licenses: list[DesiredLicense] = []
        skus: set[str] = set()
        for lnode in check.sequence(g["licenses"], "licenses") or [] if "licenses" in g else []:
            lic = check.mapping(lnode, _LICENSE_KEYS, "a license")
            if lic is None:
                continue
            if "sku" not in lic:
                check.bad(lnode, "a license needs its sku (skuPartNumber or skuId)")
                continue
            sku = check.text(lic["sku"], "sku")
            plans: list[str] = []
            if "disabled_plans" in lic:
                for pnode in check.sequence(lic["disabled_plans"], "disabled_plans") or []:
                    plan = check.text(pnode, "a disabled plan")
                    if plan is not None:
                        plans.append(plan)
            if sku is None:
                continue
            if sku.lower() in skus:
                check.bad(lic["sku"], f"sku {sku} is listed twice in this group")
            skus.add(sku.lower())
            licenses.append(DesiredLicense(sku, tuple(plans), lnode.start_mark.line + 1))
        if gid is None:
            continue
        if gid.lower() in seen:
            check.bad(g["id"], f"group {gid} is listed twice (first on line {seen[gid.lower()]})")
            continue
        seen[gid.lower()] = gnode.start_mark.line + 1
        groups.append(DesiredGroup(gid.lower(), name, tuple(licenses), gnode.start_mark.line + 1))
    direct: list[DirectAssignment] = []
    for dnode in (
        (check.sequence(top["direct_assignments"], "direct_assignments") or []) if "direct_assignments" in top else []
    ):
        d = check.mapping(dnode, _DIRECT_KEYS, "a direct assignment")
        if d is None:
            continue
        missing = [k for k in ("user", "sku") if k not in d]
        if missing:
            check.bad(dnode, f"a direct assignment needs {' and '.join(missing)}")
            continue
        user = check.text(d["user"], "user", guid=True)
        sku = check.text(d["sku"], "sku")
        reason = (check.text(d["reason"], "reason") or "") if "reason" in d else ""
        if user and sku:
            direct.append(DirectAssignment(user.lower(), sku, reason, dnode.start_mark.line + 1))
    if check.problems or tenant is None:
        raise DesiredStateError(check.problems or [f"{source}:1: tenant is required"])
    return DesiredState(
        tenant=tenant.lower(),
        tenant_line=top["tenant"].start_mark.line + 1,
        groups=tuple(groups),
        direct_assignments=tuple(direct),
        source=source,
    )


def _quote(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar: names with spaces, '#', quotes or colons stay intact.
    return value if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", value) else json.dumps(value, ensure_ascii=False)


def dump_desired(
    tenant: str,
    groups: Sequence[tuple[str, str, Sequence[tuple[str, Sequence[str]]]]],
    *,
    header: Sequence[str] = (),
) -> str:
    """The YAML text of a desired state: ``groups`` as (id, name, [(sku part number, [plan names])]).

    Written by hand (not yaml.dump) so the file reads like the documented example, comments included.
    """
    lines = [f"# {h}" for h in header]
    lines += [f"schema: {SCHEMA}", f"tenant: {tenant}", "groups:" if groups else "groups: []"]
    for gid, name, licenses in groups:
        lines.append(f"  - id: {gid}")
        if name:
            lines.append(f"    name: {_quote(name)}            # informative; the id is what counts")
        if not licenses:
            lines.append("    licenses: []")
            continue
        lines.append("    licenses:")
        for sku, plans in licenses:
            lines.append(f"      - sku: {_quote(sku)}")
            if plans:
                lines.append(f"        disabled_plans: [{', '.join(_quote(p) for p in plans)}]")
    return "\n".join(lines) + "\n"

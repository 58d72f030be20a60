"""Fault switches of the sandbox server: what to break, where, how often; and their command-line syntax.

A rule fires on "the first N requests matching route R" (after skipping ``after`` of them) or "with
rate p drawn from a seeded RNG", so every test that uses faults is deterministic.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from typing import Final

from licensing.errors import ConfigurationError

__all__ = ["BODY_FAULTS", "FAULT_KINDS", "ROUTES", "STATUS_FAULTS", "FaultRule", "Faults", "parse_faults"]

# Route families, used by fault rules and for resource-unit costs (docs/design.md: users 2, groups 1,
# members 3, transitiveMembers 5, membersWithLicenseErrors 1, subscribedSkus 3, licenseDetails 2).
ROUTES: Final = {
    "organization": 1,
    "subscribedSkus": 3,
    "subscriptions": 1,
    "groups": 1,
    "group": 1,
    "members": 3,
    "transitiveMembers": 5,
    "membersWithLicenseErrors": 1,
    "users": 2,
    "user": 1,
    "licenseDetails": 2,
    "sendMail": 1,
    "assignLicense": 1,  # a write; its RU cost is not published per route: an assumption
    "reprocessLicenseAssignment": 1,  # likewise
    "userAssignLicense": 1,  # likewise
    "batch": 0,
}
STATUS_FAULTS: Final = ("429", "500", "502", "503", "504", "401", "403", "404")
# accepted_timeout (writes only): the write is carried out, then the answer never comes (outcome unknown).
ACTION_FAULTS: Final = ("timeout", "reset", "redirect", "accepted_timeout")
# Only on paged collection responses. empty_answer: a 200 with no items and no next link, the whole
# collection "empty" (what a broken proxy or a hostile redirect target answers).
BODY_FAULTS: Final = ("empty_page", "unknown_type", "short_page", "empty_answer")
FAULT_KINDS: Final = (*STATUS_FAULTS, *ACTION_FAULTS, *BODY_FAULTS)


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One fault. Without ``first`` and ``rate`` it fires on every matching request."""

    kind: str
    route: str = "*"  # a family of ROUTES, or a glob over them ("*", "member*")
    first: int | None = None
    rate: float | None = None
    after: int = 0  # let this many matching requests through before the rule starts counting
    retry_after: str | None = "1"  # 429/503 header value; None sends no Retry-After at all
    hold_s: float = 30.0  # timeout: how long the response is held before the socket is closed
    location: str = "https://graph.example.invalid"  # redirect: 302 to this origin + the request's path

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigurationError(f"unknown sandbox fault {self.kind!r}; one of {', '.join(FAULT_KINDS)}")
        if not any(fnmatch.fnmatchcase(r, self.route) for r in ROUTES):
            raise ConfigurationError(f"sandbox fault route {self.route!r} matches none of {', '.join(ROUTES)}")
        if self.kind == "accepted_timeout" and self.route != "assignLicense":
            raise ConfigurationError("sandbox fault 'accepted_timeout' applies to route assignLicense only")
        if self.first is not None and self.first < 0:
            raise ConfigurationError("sandbox fault 'first' must be >= 0")
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ConfigurationError("sandbox fault 'rate' must be between 0 and 1")
        if self.after < 0 or not 0.0 <= self.hold_s <= 600.0:
            raise ConfigurationError("sandbox fault 'after' must be >= 0 and 'hold' between 0 and 600 s")

    def matches(self, route: str) -> bool:
        return fnmatch.fnmatchcase(route, self.route)


@dataclass(frozen=True, slots=True)
class Faults:
    """Everything the server breaks on purpose; swap at runtime with ``SandboxServer.set_faults``."""

    rules: tuple[FaultRule, ...] = ()
    latency_ms: float = 0.0  # added to every response (sleeping, not spinning)
    per_object_us: float = 0.0  # added per object returned in a page
    ru_budget: int | None = None  # RU per window; None: no RU throttling; 0: Graph's budget for the tenant size
    ru_window_s: float = 10.0
    seed: int = 0  # of the RNG behind ``rate`` rules
    # The caller's application permissions (None: every permission). Routes they do not cover answer 403;
    # users are read with limited information without User.Read.All (wire.ROUTE_PERMISSIONS).
    permissions: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.per_object_us < 0:
            raise ConfigurationError("sandbox latency must be >= 0")
        if self.ru_budget is not None and self.ru_budget < 0:
            raise ConfigurationError("sandbox ru_budget must be >= 0")
        if self.ru_window_s <= 0:
            raise ConfigurationError("sandbox ru_window_s must be > 0")

    def with_rules(self, *rules: FaultRule) -> Faults:
        return replace(self, rules=(*self.rules, *rules))


_GLOBAL_KEYS: Final = {"latency_ms", "per_object_us", "ru_budget", "ru_window_s", "seed", "permissions"}


def parse_faults(specs: list[str] | tuple[str, ...] | str) -> Faults:
    """Parse the ``--faults`` syntax: entries separated by ``;``.

    ``KIND[@ROUTE][:first=N][:rate=P][:after=N][:retry_after=V|none][:hold=S]`` adds a rule;
    ``latency_ms=X``, ``per_object_us=X``, ``ru_budget=N|auto``, ``ru_window_s=S``, ``seed=N`` set globals;
    ``permissions=A+B`` grants only those application permissions (e.g. ``GroupMember.Read.All+Organization.Read.All``).
    Example: ``429@members:first=2:retry_after=0.05;reset@users:rate=0.01;ru_budget=auto``.
    """
    if isinstance(specs, str):
        specs = [specs]
    rules: list[FaultRule] = []
    glob: dict[str, float | int | None] = {}
    permissions: frozenset[str] | None = None
    for spec in specs:
        for raw in spec.split(";"):
            entry = raw.strip()
            if not entry:
                continue
            key, eq, value = entry.partition("=")
            if eq and ":" not in key and "@" not in key:
                if key not in _GLOBAL_KEYS:
                    raise ConfigurationError(f"unknown sandbox fault setting {key!r}; one of {', '.join(_GLOBAL_KEYS)}")
                if key == "permissions":
                    permissions = frozenset(p.strip() for p in value.split("+") if p.strip())
                    continue
                glob[key] = _number(key, value)
                continue
            rules.append(_rule(entry))
    try:
        budget = glob.get("ru_budget")
        return Faults(
            rules=tuple(rules),
            latency_ms=float(glob.get("latency_ms") or 0.0),
            per_object_us=float(glob.get("per_object_us") or 0.0),
            ru_budget=None if budget is None else int(budget),
            ru_window_s=float(glob.get("ru_window_s") or 10.0),
            seed=int(glob.get("seed") or 0),
            permissions=permissions,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"bad sandbox fault setting: {exc}") from None


def _number(key: str, value: str) -> float | int:
    if key == "ru_budget" and value.strip().lower() == "auto":
        return 0
    try:
        return int(value) if key in ("ru_budget", "seed") else float(value)
    except ValueError:
        raise ConfigurationError(f"sandbox fault setting {key} needs a number, got {value!r}") from None


def _rule(entry: str) -> FaultRule:
    head, *opts = entry.split(":")
    kind, _, route = head.partition("@")
    kw: dict[str, object] = {"kind": kind.strip(), "route": route.strip() or "*"}
    for opt in opts:
        k, eq, v = opt.partition("=")
        k, v = k.strip(), v.strip()
        try:
            if not eq:
                raise ValueError("expected name=value")
            if k == "first":
                kw["first"] = int(v)
            elif k == "rate":
                kw["rate"] = float(v)
            elif k == "after":
                kw["after"] = int(v)
            elif k == "retry_after":
                kw["retry_after"] = None if v.lower() in ("none", "missing", "") else v
            elif k == "hold":
                kw["hold_s"] = float(v)
            else:
                raise ValueError(f"unknown option {k!r}")
        except ValueError as exc:
            raise ConfigurationError(f"bad sandbox fault {entry!r}: {exc}") from None
    return FaultRule(**kw)  # type: ignore[arg-type]

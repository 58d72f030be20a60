"""Suppressions: which findings an admin chose not to hear about, and the checks a new one passes (docs/alerts.md).

Pure functions over records; the store keeps them (``AlertSuppressions``), the CLI (``licensing-audit suppress``)
and the queue (scope ``suppress``) make them, the conclusion of a run marks the findings they cover, and the
alert policy never alerts a marked finding. An exclusion of a user, group or SKU covers every kind unless a
kind narrows it; a finding id covers exactly that finding.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Protocol

from licensing.errors import BadRequestError
from licensing.kinds import CATALOGUE
from licensing.model import AlertState, Finding, RunInfo, SkuSummary, Suppressed
from licensing.settings import is_guid
from licensing.text import one_line

__all__ = [
    "MAX_REASON",
    "Applied",
    "Suppression",
    "SuppressionRequest",
    "SuppressionStore",
    "apply_request",
    "apply_suppressions",
    "covers",
    "describe_all",
    "new_suppression",
    "parse_until",
    "suppression_id",
    "suppression_request",
]

MAX_REASON: Final = 500
_SKU_PART: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_FINDING_ID: Final = re.compile(r"^[0-9a-f]{32}$")
_SUPPRESSION_ID: Final = re.compile(r"^s[0-9a-f]{12}$")
_SUBJECTS: Final = ("finding_id", "user_id", "group_id", "sku")


@dataclass(frozen=True, slots=True)
class Suppression:
    """One row of ``AlertSuppressions``: an admin's decision not to hear about something, with who, when and why.

    Exactly one subject: a finding id, or a user, group or SKU (every finding about it, or only ``kind``'s).
    Removing one keeps the row (``removed_at``/``removed_by``): suppressions are audited.
    """

    id: str
    tenant_id: str
    reason: str
    created_by: str
    created_at: datetime
    finding_id: str | None = None
    user_id: str | None = None
    group_id: str | None = None
    sku: str | None = None  # skuId (lowercase) or skuPartNumber, as the admin named it
    kind: str | None = None
    until: datetime | None = None  # None: until removed
    removed_at: datetime | None = None
    removed_by: str | None = None

    def active(self, now: datetime) -> bool:
        return self.removed_at is None and (self.until is None or now < self.until)

    @property
    def subject(self) -> str:
        """What it covers, for lists and logs: "group 1b2c…", "finding 9f…", with the kind when it narrows."""
        for label, value in (("finding", self.finding_id), ("user", self.user_id), ("group", self.group_id)):
            if value:
                return f"{label} {value}" + (f" ({self.kind})" if self.kind else "")
        return f"sku {self.sku}" + (f" ({self.kind})" if self.kind else "")


@dataclass(frozen=True, slots=True)
class SuppressionRequest:
    """What an admin asked for (CLI options or a queue message), before the store is consulted."""

    reason: str | None = None
    by: str = "unknown"
    finding_id: str | None = None
    user_id: str | None = None
    group_id: str | None = None
    sku: str | None = None
    kind: str | None = None
    until: str | None = None
    remove: str | None = None  # a suppression id to remove instead
    request_id: str | None = None  # a queue request id: the same request makes the same suppression


def covers(s: Suppression, finding: Finding, now: datetime) -> bool:
    """Whether the active suppression ``s`` applies to ``finding``."""
    if not s.active(now) or (s.kind and s.kind != finding.kind):
        return False
    if s.finding_id:
        return s.finding_id == finding.id
    if s.user_id:
        return (finding.user_id or "").lower() == s.user_id
    if s.group_id:
        return s.group_id in ((finding.group_id or "").lower(), (finding.member_group_id or "").lower())
    if s.sku:
        wanted = s.sku.casefold()
        return wanted in ((finding.sku_id or "").casefold(), (finding.sku_part_number or "").casefold())
    return False


def apply_suppressions(
    findings: Iterable[Finding], suppressions: Sequence[Suppression], now: datetime
) -> tuple[Finding, ...]:
    """The findings, each covered one marked ``suppressed`` (the oldest suppression that covers it names it)."""
    active = sorted((s for s in suppressions if s.active(now)), key=lambda s: (s.created_at, s.id))
    out: list[Finding] = []
    for f in findings:
        match = next((s for s in active if covers(s, f, now)), None)
        out.append(
            f
            if match is None
            else replace(f, suppressed=Suppressed(match.id, match.reason, match.created_by, match.until))
        )
    return tuple(out)


def parse_until(raw: str, now: datetime) -> datetime:
    """``--until``: a date (the suppression lasts through that day, UTC) or an ISO date and time; never the past."""
    text = raw.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            until = datetime.combine(date.fromisoformat(text) + timedelta(days=1), time(), tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            until = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        raise BadRequestError(
            f"until {one_line(raw, 40)!r} is not a date (YYYY-MM-DD) or an ISO date and time"
        ) from None
    if until <= now:
        raise BadRequestError(f"until {one_line(raw, 40)!r} is in the past: a suppression must end later than now")
    return until


def _one_subject(request: SuppressionRequest) -> tuple[str, str]:
    given = [(name, getattr(request, name)) for name in _SUBJECTS if getattr(request, name)]
    if len(given) != 1:
        raise BadRequestError("name exactly one of a finding id, a user id, a group id or a SKU to suppress")
    name, value = given[0]
    return name, value.strip()


def new_suppression(
    request: SuppressionRequest,
    tenant_id: str,
    now: datetime,
    *,
    known_findings: Mapping[str, str],
    skus: Sequence[SkuSummary],
) -> Suppression:
    """A new suppression from ``request``, or BadRequestError naming what is wrong (nothing is written then).

    ``known_findings`` (finding id -> kind): the tenant's alert state, so that an id nobody has seen is refused;
    ``skus``: the tenant's SKUs from its last run, so that a SKU it lacks is refused.
    """
    reason = one_line(request.reason or "", MAX_REASON + 1)
    if not reason:
        raise BadRequestError("a suppression needs a reason (--reason): who decided what, and why")
    if len(reason) > MAX_REASON:
        raise BadRequestError(f"the reason is longer than {MAX_REASON} characters")
    name, value = _one_subject(request)
    fields: dict[str, Any] = {}
    if name == "finding_id":
        value = value.lower()
        if not _FINDING_ID.match(value) or value not in known_findings:
            raise BadRequestError(f"no finding {one_line(value, 40)!r} is known for this tenant (see the report's ids)")
    elif name in ("user_id", "group_id"):
        if not is_guid(value):
            raise BadRequestError(f"{name.replace('_', ' ')} {one_line(value, 40)!r} is not a GUID")
        value = value.lower()
    else:
        if not (is_guid(value) or _SKU_PART.match(value)):
            raise BadRequestError(f"sku {one_line(value, 40)!r} is neither a skuId GUID nor a skuPartNumber")
        if not any(value.casefold() in (s.sku_id.casefold(), s.sku_part_number.casefold()) for s in skus):
            raise BadRequestError(f"the tenant has no subscribed SKU {one_line(value, 40)!r} (as of its last run)")
        value = value.lower() if is_guid(value) else value
    fields[name] = value
    kind = (request.kind or "").strip() or None
    if kind is not None and kind not in CATALOGUE:
        raise BadRequestError(f"kind {one_line(kind, 40)!r} is not a finding kind; one of {', '.join(CATALOGUE)}")
    until = parse_until(request.until, now) if request.until else None
    seed = request.request_id or f"{now.isoformat()}|{name}|{value}|{kind}|{reason}"
    ident = "s" + hashlib.sha256(f"{tenant_id}|{seed}".encode()).hexdigest()[:12]
    return Suppression(
        id=ident,
        tenant_id=tenant_id,
        reason=reason,
        created_by=one_line(request.by, 256) or "unknown",
        created_at=now,
        kind=kind,
        until=until,
        **fields,
    )


def suppression_id(value: str) -> str:
    """A suppression id as ``--remove`` and ``remove`` take it, or BadRequestError."""
    ident = value.strip().lower()
    if not _SUPPRESSION_ID.match(ident):
        raise BadRequestError(f"{one_line(value, 40)!r} is not a suppression id (s followed by 12 hex digits)")
    return ident


_QUEUE_FIELDS: Final = frozenset(
    {
        "scope",
        "finding_id",
        "user_id",
        "group_id",
        "sku",
        "kind",
        "reason",
        "until",
        "remove",
        "requested_by",
        "request_id",
    }
)


def suppression_request(data: Mapping[str, Any], *, message_id: str | None = None) -> SuppressionRequest:
    """The queue form (docs/alerts.md, "From the queue"): the same fields as the CLI, ``remove`` for --remove."""
    unknown = sorted(str(k) for k in data if k not in _QUEUE_FIELDS)
    if unknown:
        raise BadRequestError(
            f"unknown field(s) {', '.join(unknown)[:200]}; allowed: {', '.join(sorted(_QUEUE_FIELDS))}"
        )
    values: dict[str, str | None] = {}
    for name in _QUEUE_FIELDS - {"scope"}:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise BadRequestError(f"{name} must be a string, not {type(value).__name__}")
        values[name] = value.strip() if isinstance(value, str) and value.strip() else None
    if values["remove"] is not None:
        suppression_id(values["remove"])
    return SuppressionRequest(
        reason=values["reason"],
        by=f"queue:{values['requested_by'] or 'unknown'}",
        finding_id=values["finding_id"],
        user_id=values["user_id"],
        group_id=values["group_id"],
        sku=values["sku"],
        kind=values["kind"],
        until=values["until"],
        remove=values["remove"],
        request_id=values["request_id"] or message_id,
    )


class SuppressionStore(Protocol):
    """What making and removing a suppression needs from the store (licensing.store.AuditStore has it)."""

    def alert_states(self, tenant_id: str) -> Mapping[str, AlertState]: ...

    def runs(self, tenant_id: str, limit: int = 50) -> list[RunInfo]: ...

    def run_skus(self, run_id: str) -> list[SkuSummary]: ...

    def put_suppression(self, suppression: Suppression) -> bool: ...

    def remove_suppression(
        self, tenant_id: str, suppression_id: str, *, by: str, at: datetime
    ) -> Suppression | None: ...


@dataclass(frozen=True, slots=True)
class Applied:
    """What a suppression request did: ``added`` (False: the same request had added it before), or ``removed``."""

    suppression: Suppression
    added: bool = False
    removed: bool = False

    @property
    def summary(self) -> str:
        s = self.suppression
        if self.removed:
            return f"removed {s.id} ({s.subject}); what it covered alerts again, as new"
        until = f" until {s.until:%Y-%m-%d %H:%M} UTC" if s.until else ""
        again = "" if self.added else " (already there: the same request made it before)"
        return f"suppressed {s.subject}{until} as {s.id}: {s.reason}{again}"


def describe_all(suppressions: Sequence[Suppression], now: datetime) -> list[str]:
    """One line per suppression, removed and expired ones too (the audit trail), for ``suppress --list``."""
    lines = []
    for s in suppressions:
        state = "removed" if s.removed_at else "active" if s.active(now) else "expired"
        until = f"until {s.until:%Y-%m-%d %H:%M} UTC" if s.until else "no end"
        removed = f"; removed by {s.removed_by} on {s.removed_at:%Y-%m-%d}" if s.removed_at else ""
        made = f"by {s.created_by} on {s.created_at:%Y-%m-%d}{removed}"
        lines.append(f"{s.id}  {state:7}  {s.subject}  {until}  {made}: {s.reason}")
    return lines or ["no suppressions"]


def _last_skus(store: SuppressionStore, tenant_id: str) -> list[SkuSummary]:
    for run in store.runs(tenant_id, limit=50):
        if run.scope.value == "tenant" and run.status.value in ("succeeded", "partial"):
            return store.run_skus(run.id)
    return []


def apply_request(store: SuppressionStore, tenant_id: str, request: SuppressionRequest, now: datetime) -> Applied:
    """Add or remove one suppression, checked against what the store knows of the tenant; BadRequestError (and
    nothing changed) for an unknown finding id, a SKU the tenant lacks, an unknown suppression id, a past date."""
    if request.remove:
        ident = suppression_id(request.remove)
        removed = store.remove_suppression(tenant_id, ident, by=one_line(request.by, 256) or "unknown", at=now)
        if removed is None:
            raise BadRequestError(f"the tenant has no suppression {ident}")
        return Applied(removed, removed=True)
    known = {fid: state.kind for fid, state in store.alert_states(tenant_id).items()}
    skus = _last_skus(store, tenant_id) if request.sku else []
    if request.sku and not skus:
        raise BadRequestError("no finished tenant audit in the store yet: run one before suppressing a SKU")
    suppression = new_suppression(request, tenant_id, now, known_findings=known, skus=skus)
    return Applied(suppression, added=store.put_suppression(suppression))

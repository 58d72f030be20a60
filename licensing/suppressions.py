"""Suppressions: which findings an admin chose not to hear about, and the checks a new one passes (docs/alerts.md).

Pure functions over records; the store keeps them (``AlertSuppressions``), the CLI (``licensing-audit suppress``,
signed in: the token's identity is recorded) makes them (never the audit queue: issue 27), the conclusion of a run
marks the findings they cover, and the alert policy never alerts a marked finding. An exclusion of a user, group or
SKU covers every kind unless a kind narrows it; a finding id covers exactly that finding. Every suppression ends
(``until``, at most ``SUPPRESS_MAX_DAYS``, ``SUPPRESS_MAX_DAYS_CRITICAL`` when it may hide critical findings), hides
nothing more severe than what it covered when it was made, and is announced in the next digest, added and removed.
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
from licensing.model import AlertState, Finding, GroupSummary, RunInfo, Severity, SkuSummary, Suppressed
from licensing.settings import is_guid
from licensing.text import one_line

__all__ = [
    "MAX_REASON",
    "Applied",
    "DigestNotes",
    "Limits",
    "Suppression",
    "SuppressionRequest",
    "SuppressionStore",
    "apply_request",
    "apply_suppressions",
    "covers",
    "describe_all",
    "digest_notes",
    "end_words",
    "new_suppression",
    "parse_until",
    "suppression_id",
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
    until: datetime | None = None  # required since round three; None only on older rows: until removed
    removed_at: datetime | None = None
    removed_by: str | None = None
    # The most severe finding it covered when it was made: it never hides a finding that became more severe
    # (older rows without it hide nothing above warning).
    severity: Severity | None = None
    announced: bool = False  # its addition was told in a digest
    removal_announced: bool = False  # its removal was told in a digest

    def active(self, now: datetime) -> bool:
        return self.removed_at is None and (self.until is None or now < self.until)

    @property
    def ceiling(self) -> Severity:
        return self.severity or Severity.WARNING

    @property
    def subject(self) -> str:
        """What it covers, for lists and logs: "group 1b2c…", "finding 9f…", with the kind when it narrows."""
        for label, value in (("finding", self.finding_id), ("user", self.user_id), ("group", self.group_id)):
            if value:
                return f"{label} {value}" + (f" ({self.kind})" if self.kind else "")
        return f"sku {self.sku}" + (f" ({self.kind})" if self.kind else "")


@dataclass(frozen=True, slots=True)
class SuppressionRequest:
    """What an admin asked for (the CLI's options), before the store is consulted."""

    reason: str | None = None
    by: str = "unknown"  # the signed-in identity (licensing.graph.auth.signed_in_identity), never a typed name
    finding_id: str | None = None
    user_id: str | None = None
    group_id: str | None = None
    sku: str | None = None
    kind: str | None = None
    until: str | None = None
    remove: str | None = None  # a suppression id to remove instead
    request_id: str | None = None  # the same request id makes the same suppression


def covers(s: Suppression, finding: Finding, now: datetime) -> bool:
    """Whether the active suppression ``s`` applies to ``finding``."""
    if not s.active(now) or (s.kind and s.kind != finding.kind):
        return False
    if Severity(finding.severity).rank > s.ceiling.rank:
        return False  # it became more severe than anything the suppression was made for: alert it
    return _subject_matches(s, finding)


def _subject_matches(s: Suppression, finding: Finding) -> bool:
    if s.kind and s.kind != finding.kind:
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


@dataclass(frozen=True, slots=True)
class Limits:
    """How long a suppression may last (``SUPPRESS_MAX_DAYS``, ``SUPPRESS_MAX_DAYS_CRITICAL``: the smaller wins)."""

    max_days: int = 90
    max_days_critical: int = 14

    def days(self, ceiling: Severity) -> int:
        return min(self.max_days, self.max_days_critical) if ceiling is Severity.CRITICAL else self.max_days


REASON_NEEDED: Final = "a suppression needs a reason (--reason): who decided what, and why"
UNTIL_NEEDED: Final = "a suppression needs an end (--until YYYY-MM-DD): none lasts until removed"


def check_flags(reason: str | None, until: str | None, now: datetime, max_days: int) -> None:
    """What the flags alone can tell, before any storage or sign-in: a reason, and an end at most ``max_days``
    ahead (the shorter maximum of a critical finding needs the store and is checked with the request)."""
    if not one_line(reason or ""):
        raise BadRequestError(REASON_NEEDED)
    if not until:
        raise BadRequestError(UNTIL_NEEDED)
    parse_until(until, now, max_days=max_days)


def parse_until(raw: str, now: datetime, *, max_days: int | None = None) -> datetime:
    """``--until``: a date (the suppression lasts through that day, UTC) or an ISO date and time; never the past,
    never more than ``max_days`` ahead."""
    text = raw.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            # Through that day; the last day there is has no next one (9999-12-31 overflowed and poisoned the queue).
            until = (
                datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
                if day < date.max
                else datetime.max.replace(tzinfo=UTC)
            )
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            # Kept in UTC: every place that shows it says "UTC" (an offset kept as typed was shown 2 h off).
            until = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise BadRequestError(
            f"until {one_line(raw, 40)!r} is not a date (YYYY-MM-DD) or an ISO date and time"
        ) from None
    if until <= now:
        raise BadRequestError(f"until {one_line(raw, 40)!r} is in the past: a suppression must end later than now")
    if max_days is not None and until - now > timedelta(days=max_days):
        raise BadRequestError(
            f"until {one_line(raw, 40)!r} is more than {max_days} days ahead: a suppression of these findings lasts "
            f"at most {max_days} days (--until; SUPPRESS_MAX_DAYS, SUPPRESS_MAX_DAYS_CRITICAL)"
        )
    return until


def end_words(until: datetime) -> str:
    """When a suppression ends, in words every output uses: "through 31 Mar 2027" for an end at midnight UTC (``--until
    2027-03-31`` lasts through that day, so it is stored as 1 Apr 00:00), "until 2027-04-01 12:00 UTC" otherwise."""
    end = until.astimezone(UTC) if until.tzinfo else until.replace(tzinfo=UTC)
    if end.time() == time(0):
        last = end - timedelta(days=1)
        return f"through {last.day} {last:%b %Y}"
    return f"until {end:%Y-%m-%d %H:%M} UTC"


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
    last_findings: Sequence[Finding] = (),
    groups: Sequence[GroupSummary] = (),
    severities: Mapping[str, Severity] | None = None,
    limits: Limits | None = None,
) -> Suppression:
    """A new suppression from ``request``, or BadRequestError naming what is wrong (nothing is written then).

    ``known_findings`` (finding id -> kind) and ``severities`` (finding id -> severity): the tenant's alert state,
    so that an id nobody has seen is refused; ``skus``, ``groups`` and ``last_findings``: its last tenant run, so
    that a SKU, group or user the tenant does not have is refused, and so that the suppression knows the most
    severe finding it covers now (its ceiling: it never hides anything more severe, and a critical ceiling gets the
    shorter maximum).
    """
    reason = one_line(request.reason or "", MAX_REASON + 1)
    if not reason:
        raise BadRequestError(REASON_NEEDED)
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
        _check_known(name, value, last_findings, groups)
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
    probe = Suppression(id="", tenant_id=tenant_id, reason="", created_by="", created_at=now, kind=kind, **fields)
    covered = [Severity(f.severity) for f in last_findings if _subject_matches(probe, f)]
    if name == "finding_id" and severities and value in severities:
        covered.append(Severity(severities[value]))
    ceiling = max(covered, key=lambda v: v.rank) if covered else Severity.WARNING
    if not request.until:
        raise BadRequestError(UNTIL_NEEDED)
    until = parse_until(request.until, now, max_days=(limits or Limits()).days(ceiling))
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
        severity=ceiling,
        **fields,
    )


def _check_known(name: str, value: str, findings: Sequence[Finding], groups: Sequence[GroupSummary]) -> None:
    """A user or group subject must be one the tenant has, as its last tenant run saw it: a licensed group, a
    member group, or a user a finding names (a user without findings has nothing to suppress)."""
    if name == "group_id":
        known = {g.id.lower() for g in groups}
        known.update((f.group_id or "").lower() for f in findings)
        known.update((f.member_group_id or "").lower() for f in findings)
    else:
        known = {(f.user_id or "").lower() for f in findings}
    if value not in known:
        what = "group" if name == "group_id" else "user"
        raise BadRequestError(
            f"the tenant has no {what} {value} that its last tenant audit saw (--{what}): check the id in the report"
        )


def suppression_id(value: str) -> str:
    """A suppression id as ``--remove`` and ``remove`` take it, or BadRequestError."""
    ident = value.strip().lower()
    if not _SUPPRESSION_ID.match(ident):
        raise BadRequestError(f"{one_line(value, 40)!r} is not a suppression id (s followed by 12 hex digits)")
    return ident


class SuppressionStore(Protocol):
    """What making and removing a suppression needs from the store (licensing.store.AuditStore has it)."""

    def alert_states(self, tenant_id: str) -> Mapping[str, AlertState]: ...

    def last_tenant_run(self, tenant_id: str, *, before: datetime, exclude: str | None = None) -> RunInfo | None: ...

    def run_skus(self, run_id: str) -> list[SkuSummary]: ...

    def run_groups(self, run_id: str) -> list[GroupSummary]: ...

    def run_findings(self, run_id: str) -> list[Finding]: ...

    def put_suppression(self, suppression: Suppression) -> bool: ...

    def remove_suppression(
        self, tenant_id: str, suppression_id: str, *, by: str, at: datetime
    ) -> Suppression | None: ...


@dataclass(frozen=True, slots=True)
class Applied:
    """What a suppression request did: ``added`` (False: the same request had added it before), or ``removed``
    (``already_removed``: someone had removed it before; nothing changed)."""

    suppression: Suppression
    added: bool = False
    removed: bool = False
    already_removed: bool = False

    @property
    def summary(self) -> str:
        s = self.suppression
        if self.already_removed and s.removed_at is not None:
            return (
                f"{s.id} ({s.subject}) was already removed by {s.removed_by or 'unknown'} on "
                f"{s.removed_at:%Y-%m-%d %H:%M} UTC: nothing changed"
            )
        if self.removed:
            return f"removed {s.id} ({s.subject}); what it covered alerts again, as new"
        until = f" {end_words(s.until)}" if s.until else ""
        again = "" if self.added else " (already there: the same request made it before)"
        return f"suppressed {s.subject}{until} as {s.id}: {s.reason}{again}"


def describe_all(suppressions: Sequence[Suppression], now: datetime) -> list[str]:
    """One line per suppression, removed and expired ones too (the audit trail), for ``suppress --list``."""
    lines = []
    for s in suppressions:
        state = "removed" if s.removed_at else "active" if s.active(now) else "expired"
        until = end_words(s.until) if s.until else "no end"
        removed = f"; removed by {s.removed_by} on {s.removed_at:%Y-%m-%d}" if s.removed_at else ""
        made = f"by {s.created_by} on {s.created_at:%Y-%m-%d}{removed}"
        lines.append(f"{s.id}  {state:7}  {s.subject}  {until}  {made}: {s.reason}")
    return lines or ["no suppressions"]


def apply_request(
    store: SuppressionStore, tenant_id: str, request: SuppressionRequest, now: datetime, limits: Limits | None = None
) -> Applied:
    """Add or remove one suppression, checked against what the store knows of the tenant; BadRequestError (and
    nothing changed) for an unknown finding id, user, group or SKU, an unknown suppression id, a missing, past or
    too distant end."""
    if request.remove:
        ident = suppression_id(request.remove)
        by = one_line(request.by, 256) or "unknown"
        removed = store.remove_suppression(tenant_id, ident, by=by, at=now)
        if removed is None:
            raise BadRequestError(f"the tenant has no suppression {ident}")
        # The store hands back an already removed row unchanged: its removal is someone else's, or an earlier one.
        before = removed.removed_at is not None and (removed.removed_at != now or removed.removed_by != by)
        return Applied(removed, removed=True, already_removed=before)
    states = store.alert_states(tenant_id)
    last = store.last_tenant_run(tenant_id, before=now + timedelta(seconds=1))
    if last is None and not request.finding_id:
        raise BadRequestError("no finished tenant audit in the store yet: run one before suppressing")
    suppression = new_suppression(
        request,
        tenant_id,
        now,
        known_findings={fid: state.kind for fid, state in states.items()},
        severities={fid: Severity(state.severity) for fid, state in states.items()},
        skus=store.run_skus(last.id) if last is not None and request.sku else [],
        groups=store.run_groups(last.id) if last is not None and request.group_id else [],
        last_findings=store.run_findings(last.id) if last is not None else [],
        limits=limits,
    )
    return Applied(suppression, added=store.put_suppression(suppression))


@dataclass(frozen=True, slots=True)
class DigestNotes:
    """What the next digest says about suppressions: ``news`` (added and removed ones not told yet: a digest goes
    out for them alone) and ``standing`` (active ones hiding critical findings: said in every digest)."""

    news: tuple[str, ...] = ()
    standing: tuple[str, ...] = ()
    added: tuple[str, ...] = ()  # ids whose addition ``news`` tells
    removed: tuple[str, ...] = ()  # ids whose removal ``news`` tells


def _until(s: Suppression) -> str:
    return end_words(s.until) if s.until else "with no end"


def digest_notes(suppressions: Sequence[Suppression], findings: Sequence[Finding], now: datetime) -> DigestNotes:
    """The suppression lines of the next digest (issue 27: nobody silences alerts unseen)."""
    news: list[str] = []
    added: list[str] = []
    removed: list[str] = []
    for s in suppressions:
        if not s.announced:
            news.append(f"Suppression {s.id} added by {s.created_by}: {s.subject}, {_until(s)}. Reason: {s.reason}")
            added.append(s.id)
        if s.removed_at is not None and not s.removal_announced:
            news.append(f"Suppression {s.id} ({s.subject}) removed by {s.removed_by or 'unknown'}: it alerts again.")
            removed.append(s.id)
    hidden: dict[str, int] = {}
    for f in findings:
        if f.suppressed is not None and Severity(f.severity) is Severity.CRITICAL:
            hidden[f.suppressed.id] = hidden.get(f.suppressed.id, 0) + 1
    by_id = {s.id: s for s in suppressions}
    standing = [
        f"Suppression {ident} ({by_id[ident].subject}, by {by_id[ident].created_by}, {_until(by_id[ident])}) hides "
        f"{count} critical finding{'s' if count != 1 else ''}. Reason: {by_id[ident].reason}"
        for ident, count in sorted(hidden.items())
        if ident in by_id
    ]
    return DigestNotes(tuple(news), tuple(standing), tuple(added), tuple(removed))

"""Small immutable records that flow between the layers: request, snapshot, findings, report.

The Graph reader produces a :class:`TenantSnapshot`; the rules turn it into
:class:`Finding` records; the audit wraps everything in an :class:`AuditReport` that the
store, the alerts and the report writers consume. None of these records does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final

__all__ = [
    "B2B_UPN_MARKER",
    "UNKNOWN_TENANT",
    "AlertState",
    "AlertStatus",
    "AuditReport",
    "AuditRequest",
    "Channel",
    "Finding",
    "FindingKind",
    "GraphStats",
    "GroupRef",
    "GroupSummary",
    "LicenseAssignment",
    "LicensedGroup",
    "MessageOutcome",
    "OutboxItem",
    "OutcomeStatus",
    "Part",
    "RuleOutcome",
    "RunInfo",
    "RunStatus",
    "Scope",
    "Severity",
    "Sku",
    "SkuDay",
    "SkuSummary",
    "Subscription",
    "Suppressed",
    "TenantSnapshot",
    "Trigger",
    "Unreadable",
    "User",
    "finding_id",
    "request_key",
]


class Severity(StrEnum):
    """Finding severity, ordered: ``info < warning < critical``."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_SEVERITY_RANK: Final = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Scope(StrEnum):
    TENANT = "tenant"
    GROUP = "group"
    SKU = "sku"
    PLAN = "plan"  # not an audit: may this group be licensed with these SKUs? (docs/plan.md)


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    QUEUE = "queue"
    CLI = "cli"
    DEMO = "demo"


class MessageOutcome(StrEnum):
    """What became of one queue message (docs/operations.md, "Outcomes of a request message").

    Requests: completed, skipped, rejected, deferred, fanned_out, superseded. Chunks: rejected, stale,
    skipped, done, finished (this chunk concluded the run), claimed (another invocation concludes it),
    deferred (the chunk message was put back because of that claim).
    """

    COMPLETED = "completed"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    FANNED_OUT = "fanned_out"
    SUPERSEDED = "superseded"
    STALE = "stale"
    DONE = "done"
    FINISHED = "finished"
    CLAIMED = "claimed"


class OutcomeStatus(StrEnum):
    """What one rule did in a run."""

    PASSED = "passed"
    FAILED = "failed"  # it found something
    NOT_EVALUATED = "not_evaluated"  # data it needs could not be read: never a pass


class AlertStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    SUPPRESSED = "suppressed"  # seen, but an admin suppressed it: never alerted; re-opens as new when that ends


class Channel(StrEnum):
    """Where alerts go: the Teams Workflows webhook, or Graph sendMail."""

    TEAMS = "teams"
    MAIL = "mail"


class Part(StrEnum):
    """A part of the tenant the reader could not read (``Unreadable.what``)."""

    SKUS = "skus"
    SUBSCRIPTIONS = "subscriptions"
    GROUPS = "groups"
    GROUP = "group"
    MEMBERS = "members"
    USERS = "users"
    USER = "user"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    REJECTED = "rejected"


class FindingKind(StrEnum):
    """The finding kinds of docs/design.md; the values are a contract (JSON, tables, alerts)."""

    SEAT_SHORTAGE = "seat_shortage"
    SEAT_LOW = "seat_low"
    SEAT_FORECAST = "seat_forecast"
    UNITS_EXPIRING = "units_expiring"
    B2B_MEMBER = "b2b_member"
    NESTED_GROUP = "nested_group"
    LICENSE_ERROR = "license_error"
    PROCESSING_INCOMPLETE = "processing_incomplete"
    DISABLED_USER_LICENSED = "disabled_user_licensed"
    REDUNDANT_DIRECT_ASSIGNMENT = "redundant_direct_assignment"
    EMPTY_LICENSED_GROUP = "empty_licensed_group"
    EXPECTED_SKU_NOT_GROUP_ASSIGNED = "expected_sku_not_group_assigned"
    DYNAMIC_GROUP_PAUSED = "dynamic_group_paused"
    DYNAMIC_RULE_ADMITS_GUESTS = "dynamic_rule_admits_guests"
    LICENSED_GROUP_SHRANK = "licensed_group_shrank"
    P1_COVERAGE_SHORT = "p1_coverage_short"
    SUBSCRIPTION_RENEWAL = "subscription_renewal"
    INACTIVE_USER_LICENSED = "inactive_user_licensed"
    LICENSE_DRIFT = "license_drift"


B2B_UPN_MARKER: Final = "#EXT#"
# The tenant id of a run whose tenant is not known (no AZURE_TENANT_ID, nothing read from Graph yet).
UNKNOWN_TENANT: Final = "unknown-tenant"


@dataclass(frozen=True, slots=True)
class AuditRequest:
    """One audit to run: what the queue message (or the CLI) asked for, validated."""

    scope: Scope = Scope.TENANT
    group_id: str | None = None
    sku: str | None = None  # skuId GUID or skuPartNumber
    request_id: str | None = None
    notify: bool = True
    requested_by: str | None = None
    trigger: Trigger = Trigger.QUEUE
    skus: tuple[str, ...] = ()  # the SKUs a plan request asks about (scope plan only)

    @property
    def key(self) -> str | None:
        """The idempotency key (None without a request id): see :func:`request_key`."""
        if not self.request_id:
            return None
        return request_key(self.trigger, self.scope, self.group_id or self.sku, self.request_id)


def request_key(trigger: Trigger, scope: Scope, subject: str | None, request_id: str) -> str:
    """What makes two requests "the same request": trigger, scope, subject and request id together.

    Request ids alone were one namespace for every sender and scope: a SKU request naming the timer's
    predictable ``schedule-<occurrence>`` id made that night's tenant audit a no-op (issue 16, item 2).
    """
    return f"{trigger.value}/{scope.value}/{(subject or '-').lower()}/{request_id}"


# ---------------------------------------------------------------- what Graph tells us


@dataclass(frozen=True, slots=True)
class Sku:
    """One subscribedSku: its counters. https://learn.microsoft.com/graph/api/resources/subscribedsku"""

    sku_id: str
    sku_part_number: str
    applies_to: str = "User"  # "User" | "Company"
    # Enabled | Warning | Suspended | Deleted | LockedOut. "Enabled indicates that the prepaidUnits property
    # has at least one unit that is enabled" (https://learn.microsoft.com/graph/api/resources/subscribedsku).
    capability_status: str = "Enabled"
    enabled: int = 0
    suspended: int = 0
    warning: int = 0
    locked_out: int = 0
    consumed: int = 0
    next_lifecycle: datetime | None = None  # earliest nextLifecycleDateTime of its subscriptions, when readable
    # servicePlans[].servicePlanId (https://learn.microsoft.com/graph/api/resources/serviceplaninfo); None when the
    # answer did not carry them: the shipped product table then says which plans a SKU has (licensing.skus).
    service_plans: tuple[str, ...] | None = None

    @property
    def available(self) -> int:
        """Free seats; negative when more are consumed than enabled."""
        return self.enabled - self.consumed

    @property
    def in_lifecycle_only(self) -> bool:
        """No active units: every unit is in grace, suspended or locked out (or the status says so).

        The prepaidUnits buckets are disjoint (https://learn.microsoft.com/graph/api/resources/licenseunitsdetail):
        Microsoft's own List subscribedSkus example has a SKU "Suspended" with enabled 0, suspended 25 and
        consumed 14. Such a SKU has a lifecycle problem (renew, reactivate), never a seat shortage.
        """
        return self.capability_status.strip().casefold() != "enabled" or (
            self.enabled <= 0 and (self.warning + self.suspended + self.locked_out) > 0
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    """One companySubscription (https://learn.microsoft.com/graph/api/resources/companysubscription): a purchase or
    trial behind a SKU's seats, with the date it moves to its next state "if not renewed by the tenant"."""

    id: str
    sku_id: str
    sku_part_number: str = ""
    status: str = "Enabled"  # Enabled | Deleted | Suspended | Warning | LockedOut
    is_trial: bool = False
    next_lifecycle: datetime | None = None
    total_licenses: int = 0


@dataclass(frozen=True, slots=True)
class LicenseAssignment:
    """One entry of a user's ``licenseAssignmentStates``."""

    sku_id: str
    assigned_by_group: str | None  # None: assigned directly
    state: str  # Active | ActiveWithError | Disabled | Error
    error: str = "None"  # None | CountViolation | MutuallyExclusiveViolation | DependencyViolation | ...
    last_updated: datetime | None = None  # lastUpdatedDateTime: since when the state is what it is
    disabled_plans: tuple[str, ...] = ()  # disabledPlans: service plans this assignment leaves off

    @property
    def in_error(self) -> bool:
        return self.error not in ("", "None") or self.state in ("Error", "ActiveWithError")


@dataclass(frozen=True, slots=True)
class User:
    """A user who is a direct member of a licensed group, with what the rules need."""

    id: str
    display_name: str = ""
    user_principal_name: str = ""
    user_type: str | None = None  # Member | Guest
    external_user_state: str | None = None  # PendingAcceptance | Accepted | None
    creation_type: str | None = None  # Invitation for B2B
    account_enabled: bool | None = None
    usage_location: str | None = None
    assigned_sku_ids: tuple[str, ...] = ()
    assignments: tuple[LicenseAssignment, ...] = ()
    created: datetime | None = None  # createdDateTime
    # signInActivity (https://learn.microsoft.com/graph/api/resources/signinactivity): the last successful sign-in
    # (attempt dates only when that property is not served, graph.parse.last_sign_in); None: none, or not read.
    last_sign_in: datetime | None = None
    # Since when "no last sign-in" is known to mean none (2023-12-01: lastSuccessfulSignInDateTime is not
    # backfilled); None: since the account was created.
    sign_ins_since: datetime | None = None

    @property
    def is_b2b(self) -> bool:
        """B2B as docs/design.md defines it, including B2B accounts whose userType is Member."""
        return (
            (self.user_type or "").lower() == "guest"
            or bool(self.external_user_state)
            or (self.creation_type or "").lower() == "invitation"
            or B2B_UPN_MARKER.lower() in self.user_principal_name.lower()
        )


@dataclass(frozen=True, slots=True)
class GroupRef:
    id: str
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class LicensedGroup:
    """A group that assigns at least one SKU, with its direct members."""

    id: str
    display_name: str = ""
    sku_ids: tuple[str, ...] = ()
    processing_state: str | None = None  # licenseProcessingState.state
    user_ids: tuple[str, ...] = ()  # direct user members (the only ones group licensing serves)
    member_groups: tuple[GroupRef, ...] = ()  # direct group members (their members get nothing)
    other_members: int = 0  # devices, service principals, contacts
    members_read: bool = True  # False when the members could not be read (see snapshot.unreadable)
    # Members whose type the page did not say (no @odata.type, as in Microsoft's own examples of
    # /groups/{id}/members): told apart once the users scan is in (graph.members.resolve_members).
    unknown_members: tuple[str, ...] = ()
    # The group resource (https://learn.microsoft.com/graph/api/resources/group): securityEnabled, groupTypes
    # ("DynamicMembership": dynamic membership), membershipRule and membershipRuleProcessingState ("On" or
    # "Paused"; Microsoft's own Create group examples write "on"). None: the answer did not say.
    security_enabled: bool | None = None
    group_types: tuple[str, ...] = ()
    membership_rule: str | None = None
    rule_processing: str | None = None  # canonical "On" | "Paused" (or the unknown value as Graph sent it)

    @property
    def member_count(self) -> int:
        return len(self.user_ids) + len(self.member_groups) + self.other_members

    @property
    def dynamic(self) -> bool:
        return any(t.casefold() == "dynamicmembership" for t in self.group_types)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Something the reader could not read; the run becomes ``partial`` and the report says what."""

    what: Part
    subject_id: str | None
    reason: str
    permission: str | None = None  # the Graph permission that was missing, for 403s


@dataclass(frozen=True, slots=True)
class GraphStats:
    requests: int = 0
    throttled: int = 0
    retried: int = 0
    resource_units: float = 0.0


_EMPTY: Final[Mapping[str, User]] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class TenantSnapshot:
    """Everything the rules need, read from Graph in one go (or one scope)."""

    tenant_id: str
    tenant_name: str = ""
    scope: Scope = Scope.TENANT
    scope_id: str | None = None  # group id or sku id for scoped reads
    read_at: datetime | None = None
    skus: tuple[Sku, ...] = ()
    groups: tuple[LicensedGroup, ...] = ()
    users: Mapping[str, User] = field(default_factory=lambda: _EMPTY)  # id -> user, each user once
    unreadable: tuple[Unreadable, ...] = ()
    stats: GraphStats = GraphStats()
    subscriptions: tuple[Subscription, ...] = ()
    subscriptions_read: bool = False  # /directory/subscriptions answered (it needs Organization.Read.All)
    # The users scan carried signInActivity (AuditLog.Read.All and Entra ID P1); else why not.
    sign_ins_read: bool = False
    sign_ins_note: str | None = None


@dataclass(frozen=True, slots=True)
class SkuDay:
    """One day of one SKU's counters (table ``SkuHistory``), the basis of ``seat_forecast``."""

    sku_id: str
    day: date
    enabled: int
    consumed: int
    warning: int = 0
    suspended: int = 0
    locked_out: int = 0
    waiting: int = 0

    @classmethod
    def of(cls, sku: Sku | SkuSummary, day: date, *, waiting: int = 0) -> SkuDay:
        """The day's row of a SKU's counters, from what Graph said (Sku) or what the audit concluded."""
        return cls(
            sku_id=sku.sku_id,
            day=day,
            enabled=sku.enabled,
            consumed=sku.consumed,
            warning=sku.warning,
            suspended=sku.suspended,
            locked_out=sku.locked_out,
            waiting=waiting,
        )


# ---------------------------------------------------------------- what the audit concludes


def finding_id(kind: str, *subject: str | None) -> str:
    """Stable fingerprint of kind + subject: the same problem on two nights has the same id."""
    # Unit separator between parts, so ("a", "bc") and ("ab", "c") never collide.
    text = "\x1f".join([kind, *((s or "").lower() for s in subject)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found. The first fields are the JSON report's; the ``*_name`` ones are for display."""

    id: str
    kind: str
    severity: Severity
    message: str
    sku_id: str | None = None
    sku_part_number: str | None = None
    group_id: str | None = None
    user_id: str | None = None
    member_group_id: str | None = None
    error: str | None = None
    group_name: str | None = None
    user_name: str | None = None  # display name or UPN
    member_group_name: str | None = None
    product_name: str | None = None
    # license_error: the state's lastUpdatedDateTime, i.e. since when the user has been waiting (None: not said).
    since: datetime | None = None
    suppressed: Suppressed | None = None  # an admin's suppression covers it: reported, never alerted


@dataclass(frozen=True, slots=True)
class Suppressed:
    """How a finding is marked when a suppression covers it (the JSON report's optional ``suppressed``)."""

    id: str
    reason: str
    by: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What one rule did in a run: ``passed``, ``failed`` (it found something) or ``not_evaluated``."""

    rule_id: str
    status: OutcomeStatus
    findings: int = 0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SkuSummary:
    sku_id: str
    sku_part_number: str
    product_name: str
    enabled: int
    consumed: int
    available: int
    warning: int
    suspended: int
    locked_out: int
    group_assigned_users: int
    waiting_users: int
    assigned_by_groups: tuple[str, ...]
    reclaimable: int = 0  # holders whose seat could be freed: disabled, and inactive when sign-ins were read

    @property
    def needed(self) -> int:
        """Seats to buy so that nobody waits and nothing is over-consumed (units in grace still hold their users)."""
        over = max(self.consumed - self.enabled - self.warning, 0)
        return over + max(self.waiting_users - max(self.available, 0), 0)


@dataclass(frozen=True, slots=True)
class GroupSummary:
    id: str
    display_name: str
    sku_ids: tuple[str, ...]
    processing_state: str | None
    members: int
    users: int
    b2b_users: int
    nested_groups: int
    license_errors: int


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The ``run`` object of the JSON report and of the ``AuditRuns`` table."""

    id: str
    tenant_id: str
    trigger: Trigger
    scope: Scope
    started_at: datetime
    finished_at: datetime | None = None
    status: RunStatus = RunStatus.RUNNING
    graph_requests: int = 0
    graph_throttled: int = 0
    errors: tuple[str, ...] = ()
    request_id: str | None = None
    requested_by: str | None = None
    scope_id: str | None = None
    resource_units: float = 0.0
    tenant_name: str = ""

    @property
    def request_key(self) -> str | None:
        """The idempotency key of the request this run answers (None without a request id)."""
        if not self.request_id:
            return None
        return request_key(self.trigger, self.scope, self.scope_id, self.request_id)


@dataclass(frozen=True, slots=True)
class AuditReport:
    run: RunInfo
    skus: tuple[SkuSummary, ...] = ()
    groups: tuple[GroupSummary, ...] = ()
    findings: tuple[Finding, ...] = ()
    outcomes: tuple[RuleOutcome, ...] = ()


# ---------------------------------------------------------------- alert bookkeeping


@dataclass(frozen=True, slots=True)
class AlertState:
    """One row of ``AlertState``: the notification history of one finding id."""

    finding_id: str
    kind: str
    severity: Severity
    first_seen: datetime
    last_seen: datetime
    last_notified: datetime | None = None
    notified_severity: Severity | None = None  # the severity last sent (escalation = higher now)
    status: AlertStatus = AlertStatus.OPEN
    resolved_at: datetime | None = None
    last_run_id: str | None = None
    etag: str | None = None  # optimistic concurrency, set by the store


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A notification not yet delivered (table ``AlertOutbox``): replayed by the next run."""

    channel: Channel
    id: str  # stable: run id + channel (+ part), so replays never duplicate
    run_id: str
    payload: bytes  # the exact body to send (JSON for Teams, the sendMail JSON for mail)
    created_at: datetime
    attempts: int = 0
    last_error: str | None = None
    # A send of it timed out, broke or got a 5xx after it went out: the channel may show it already.
    # It is replayed at most once more (docs/alerts.md, "At least once").
    maybe_delivered: bool = False
    # The finding ids whose news it carries: when it dies they are due again (issue 27, item 3).
    findings: tuple[str, ...] = ()
    # Dead items of its channel it tells may not have arrived; once it is delivered they are marked told.
    tells: tuple[str, ...] = ()
    lost_told: bool = False  # a dead item that a later delivery on its channel has told about

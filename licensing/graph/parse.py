"""Graph JSON to records: tolerant parsers of users, assignment states, SKUs and groups, with the documented value sets.

Every value set below is the one Microsoft documents for the property (the page is cited at each); values are
stripped, matched case-insensitively and given their documented casing, so every later comparison is exact.
Unknown values are kept as sent. Missing or mistyped fields become None, "" or 0: never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from licensing.model import LicenseAssignment, LicensedGroup, Sku, Subscription, User
from licensing.settings import is_guid

__all__ = [
    "is_limited",
    "last_sign_in",
    "lifecycles",
    "parse_assignment",
    "parse_group",
    "parse_sku",
    "parse_subscription",
    "parse_user",
    "sign_ins_recorded_since",
    "tenant_of_sku",
    "text",
]


def text(value: Any) -> str | None:
    """A non-empty string, stripped (Microsoft's licenseAssignmentState JSON shows ``"error": " String "``)."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


# Graph's documented value sets; values are matched case-insensitively and given their documented casing,
# so every later comparison is exact. Unknown values are kept as sent (stripped).
# https://learn.microsoft.com/graph/api/resources/licenseassignmentstate
_STATES: Final = {v.casefold(): v for v in ("Active", "ActiveWithError", "Disabled", "Error")}
_ERRORS: Final = {
    v.casefold(): v
    for v in (
        "None",
        "CountViolation",
        "MutuallyExclusiveViolation",
        "DependencyViolation",
        "ProhibitedInUsageLocationViolation",
        "UniquenessViolation",
        "Other",
    )
}
# https://learn.microsoft.com/graph/api/resources/licenseprocessingstate
_PROCESSING: Final = {v.casefold(): v for v in ("QueuedForProcessing", "ProcessingInProgress", "ProcessingComplete")}
# companySubscription.status: "Enabled, Deleted, Suspended, Warning, LockedOut".
_SUBSCRIPTION_STATUS: Final = {v.casefold(): v for v in ("Enabled", "Deleted", "Suspended", "Warning", "LockedOut")}
# membershipRuleProcessingState: "On or Paused" (group resource); Microsoft's Create group examples send "on".
_RULE_PROCESSING: Final = {v.casefold(): v for v in ("On", "Paused")}
# https://learn.microsoft.com/graph/api/resources/subscribedsku (capabilityStatus, appliesTo)
_CAPABILITY: Final = {v.casefold(): v for v in ("Enabled", "Warning", "Suspended", "Deleted", "LockedOut")}
_APPLIES_TO: Final = {v.casefold(): v for v in ("User", "Company")}
_USER_TYPES: Final = {v.casefold(): v for v in ("Member", "Guest")}


def _canon(value: Any, known: Mapping[str, str]) -> str | None:
    value = text(value)
    return None if value is None else known.get(value.casefold(), value)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _sku_ids(licenses: Any) -> tuple[str, ...]:
    if not isinstance(licenses, list):
        return ()
    return tuple(s.lower() for a in licenses if isinstance(a, dict) and (s := text(a.get("skuId"))))


def parse_assignment(state: Mapping[str, Any]) -> LicenseAssignment | None:
    """One licenseAssignmentState, or None without a skuId. A missing error is "None" (Graph: null on success)."""
    sku = text(state.get("skuId"))
    if sku is None:
        return None
    return LicenseAssignment(
        sku_id=sku.lower(),
        assigned_by_group=(text(state.get("assignedByGroup")) or "").lower() or None,
        state=_canon(state.get("state"), _STATES) or "",
        error=_canon(state.get("error"), _ERRORS) or "None",
        last_updated=_parse_time(state.get("lastUpdatedDateTime")),
        disabled_plans=_plan_list(state.get("disabledPlans")),
    )


def _plan_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(sorted({p.strip().lower() for p in value if isinstance(p, str) and p.strip()}))


# lastSuccessfulSignInDateTime "is available" "effective December 1, 2023 ... The data isn't backfilled"
# (https://learn.microsoft.com/graph/api/resources/signinactivity): an empty value means no successful sign-in
# since then, not since ever.
SUCCESS_RECORDED_SINCE: Final = datetime(2023, 12, 1, tzinfo=UTC)
_SUCCESS: Final = "lastSuccessfulSignInDateTime"
_ATTEMPTS: Final = ("lastSignInDateTime", "lastNonInteractiveSignInDateTime")


def _sign_in_time(value: Any) -> datetime | None:
    """A sign-in date, or None for null, "" and the placeholder ``0001-01-01T00:00:00Z`` that Microsoft's List users
    example serves (https://learn.microsoft.com/graph/api/user-list, "Get users including their last sign-in
    time"): a year before any sign-in record Microsoft keeps (April 2020) is not a date."""
    when = _parse_time(value)
    return when if when is not None and when.year >= 2000 else None


def last_sign_in(activity: Any) -> datetime | None:
    """The last *successful* sign-in, or None when there is none to trust.

    Microsoft: lastSignInDateTime "records the last time a user attempted an interactive sign-in ... whether the
    attempt was successful or not ... For tracking actual account access, please use the
    lastSuccessfulSignInDateTime property" (signInActivity). So when that property is served, it alone decides:
    empty, null or the placeholder mean no successful sign-in (see :func:`sign_ins_recorded_since`), and failed
    attempts (a password spray, a stale device) never count as activity. Only when it is absent (an answer that
    predates it) do the attempt dates stand in, the later of the interactive and non-interactive one.
    """
    if not isinstance(activity, dict):
        return None
    if _SUCCESS in activity:
        return _sign_in_time(activity.get(_SUCCESS))
    attempts = [t for t in (_sign_in_time(activity.get(k)) for k in _ATTEMPTS) if t]
    return max(attempts) if attempts else None


def sign_ins_recorded_since(activity: Any) -> datetime | None:
    """Since when an empty last sign-in means "none": 2023-12-01 when lastSuccessfulSignInDateTime was served
    (not backfilled), else None (not known)."""
    return SUCCESS_RECORDED_SINCE if isinstance(activity, dict) and _SUCCESS in activity else None


def parse_user(item: Mapping[str, Any]) -> User:
    states = item.get("licenseAssignmentStates")
    assignments = tuple(
        a for s in (states if isinstance(states, list) else ()) if isinstance(s, dict) and (a := parse_assignment(s))
    )
    enabled = item.get("accountEnabled")
    return User(
        id=str(item["id"]),
        display_name=text(item.get("displayName")) or "",
        user_principal_name=text(item.get("userPrincipalName")) or "",
        user_type=_canon(item.get("userType"), _USER_TYPES),
        external_user_state=text(item.get("externalUserState")),
        creation_type=text(item.get("creationType")),
        account_enabled=enabled if isinstance(enabled, bool) else None,
        usage_location=text(item.get("usageLocation")),
        assigned_sku_ids=_sku_ids(item.get("assignedLicenses")),
        assignments=assignments,
        created=_parse_time(item.get("createdDateTime")),
        last_sign_in=last_sign_in(item.get("signInActivity")),
        sign_ins_since=sign_ins_recorded_since(item.get("signInActivity")),
    )


def is_limited(item: Mapping[str, Any]) -> bool:
    """A user object with *limited information*: the properties every user has come back null or absent.

    ``accountEnabled`` is a Boolean every user has and ``licenseAssignmentStates`` a collection (empty when
    unlicensed), so both null means Graph withheld them: the app lacks User.Read.All
    (https://learn.microsoft.com/graph/permissions-overview#limited-information-returned-for-inaccessible-member-objects).
    """
    return not isinstance(item.get("accountEnabled"), bool) and not isinstance(
        item.get("licenseAssignmentStates"), list
    )


def parse_sku(item: Mapping[str, Any]) -> Sku:
    units = item.get("prepaidUnits")
    units = units if isinstance(units, dict) else {}
    return Sku(
        sku_id=(text(item.get("skuId")) or "").lower(),
        sku_part_number=text(item.get("skuPartNumber")) or "",
        applies_to=_canon(item.get("appliesTo"), _APPLIES_TO) or "User",
        capability_status=_canon(item.get("capabilityStatus"), _CAPABILITY) or "Enabled",
        enabled=_int(units.get("enabled")),
        suspended=_int(units.get("suspended")),
        warning=_int(units.get("warning")),
        locked_out=_int(units.get("lockedOut")),
        consumed=_int(item.get("consumedUnits")),
        service_plans=_plan_ids(item.get("servicePlans")),
    )


def _plan_ids(value: Any) -> tuple[str, ...] | None:
    """servicePlans[].servicePlanId, lowercase; None when the property is absent (not selected, not served)."""
    if not isinstance(value, list):
        return None
    ids = (text(p.get("servicePlanId")) for p in value if isinstance(p, dict))
    return tuple(sorted({i.lower() for i in ids if i}))


def parse_group(item: Mapping[str, Any]) -> LicensedGroup:
    # licenseProcessingState is documented as an object {"state": …}; some answers carry the bare string.
    # Either is accepted; an unknown value (e.g. "ProcessingFailed") is kept and counts as not complete.
    state = item.get("licenseProcessingState")
    raw = state.get("state") if isinstance(state, dict) else state
    types = item.get("groupTypes")
    security = item.get("securityEnabled")
    return LicensedGroup(
        id=str(item["id"]).lower(),
        display_name=text(item.get("displayName")) or "",
        sku_ids=_sku_ids(item.get("assignedLicenses")),
        processing_state=_canon(raw, _PROCESSING),
        security_enabled=security if isinstance(security, bool) else None,
        group_types=tuple(t for t in types if isinstance(t, str)) if isinstance(types, list) else (),
        membership_rule=text(item.get("membershipRule")),
        rule_processing=_canon(item.get("membershipRuleProcessingState"), _RULE_PROCESSING),
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_subscription(item: Mapping[str, Any]) -> Subscription | None:
    """A companySubscription, or None without an id and skuId. Values as the resource page documents them."""
    ident, sku = text(item.get("id")), text(item.get("skuId"))
    if not ident or not sku:
        return None
    trial = item.get("isTrial")
    return Subscription(
        id=ident,
        sku_id=sku.lower(),
        sku_part_number=text(item.get("skuPartNumber")) or "",
        status=_canon(item.get("status"), _SUBSCRIPTION_STATUS) or "Enabled",
        is_trial=trial is True,
        next_lifecycle=_parse_time(item.get("nextLifecycleDateTime")),
        total_licenses=_int(item.get("totalLicenses")),
    )


def lifecycles(subscriptions: Iterable[Mapping[str, Any]]) -> dict[str, datetime]:
    """Earliest nextLifecycleDateTime per skuId (companySubscription)."""
    out: dict[str, datetime] = {}
    for sub in subscriptions:
        sku = (text(sub.get("skuId")) or "").lower()
        when = _parse_time(sub.get("nextLifecycleDateTime"))
        if sku and when and (sku not in out or when < out[sku]):
            out[sku] = when
    return out


def tenant_of_sku(item: Mapping[str, Any]) -> str | None:
    """The tenant part of a subscribedSku id ``{tenantId}_{skuId}`` (Microsoft's List subscribedSkus example:
    both SKUs' ids start with the same tenant, while their ``accountId``s differ: accountId is the billing
    account, "the unique ID of the account this SKU belongs to", never the tenant)."""
    ident = text(item.get("id"))
    head, sep, _ = (ident or "").partition("_")
    return head.lower() if sep and is_guid(head) else None

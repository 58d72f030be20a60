"""The catalogue of finding kinds: each kind declared once, and everything else computed from it.

A kind's id, subject (the Finding fields of its stable id), titles, default and possible severities,
digest section, remediation and docs anchor live here and nowhere else: the rules, the alert digest,
the HTML and terminal reports, and the alert policy all read them from :data:`CATALOGUE`.
``tests/unit/test_kinds.py`` holds docs/findings.md and the README's table to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from licensing.model import FindingKind, Severity

__all__ = [
    "CATALOGUE",
    "GROUP_SUBJECT_KINDS",
    "KIND_ORDER",
    "SEAT_KINDS",
    "SKU_SUBJECT_KINDS",
    "KindSpec",
    "spec",
]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One finding kind. ``severities[0]`` is its default; the others are what its rule may escalate to."""

    kind: FindingKind
    subject: tuple[str, ...]  # Finding field names, in the order of finding_id(kind, *subject)
    title: str  # one finding's title (HTML and terminal reports)
    digest_title: str  # its section in the Teams card and the mail
    noun: str  # one subject, in counts ("3 B2B members")
    severities: tuple[Severity, ...]
    section: int  # position of its section in a digest: seats first, then what group owners fix, then information
    per_group: bool  # digests list it under each licensing group (each entry a user or a member group)
    remediation: str

    @property
    def severity(self) -> Severity:
        """The default severity of its findings."""
        return self.severities[0]

    @property
    def anchor(self) -> str:
        """Where docs/findings.md explains it exactly."""
        return f"docs/findings.md#{self.kind.value}"


# In report order (FindingKind's order): the order of sorted findings and of the report's sections.
_SPECS: Final = (
    KindSpec(
        FindingKind.SEAT_SHORTAGE,
        subject=("sku_id",),
        title="Users are waiting for seats",
        digest_title="Users waiting for seats",
        noun="product",
        severities=(Severity.CRITICAL,),
        section=0,
        per_group=False,
        remediation=(
            "Buy more seats (Microsoft 365 admin center > Billing > Your products > the product > Buy licenses), "
            "or free seats by removing users who no longer need the product; then reprocess the users in error "
            "(Microsoft 365 admin center > Billing > Licenses > the product > Groups, or Graph "
            "POST /users/{id}/reprocessLicenseAssignment)."
        ),
    ),
    KindSpec(
        FindingKind.SEAT_LOW,
        subject=("sku_id",),
        title="Few free seats left",
        digest_title="Few free seats left",
        noun="product",
        severities=(Severity.WARNING,),
        section=2,
        per_group=False,
        remediation=(
            "Buy seats before new members of licensed groups stop getting licenses "
            "(Microsoft 365 admin center > Billing > Your products), or reclaim unused ones."
        ),
    ),
    KindSpec(
        FindingKind.SEAT_FORECAST,
        subject=("sku_id",),
        title="Seats will run out at the current trend",
        digest_title="Seats will run out at the current trend",
        noun="product",
        severities=(Severity.WARNING,),
        section=3,
        per_group=False,
        remediation=(
            "Plan a purchase: at the current growth the seats run out within the forecast period "
            "(Microsoft 365 admin center > Billing > Your products)."
        ),
    ),
    KindSpec(
        FindingKind.UNITS_EXPIRING,
        subject=("sku_id",),
        title="Seats in grace period, suspended or locked out",
        digest_title="Seats in grace period, suspended or locked out",
        noun="product",
        severities=(
            Severity.WARNING,
            Severity.CRITICAL,
        ),
        section=1,
        per_group=False,
        remediation=(
            "Renew or reactivate the subscription (Microsoft 365 admin center > Billing > Your products); "
            "users lose access to suspended seats. Buying more seats of it does not help."
        ),
    ),
    KindSpec(
        FindingKind.B2B_MEMBER,
        subject=("group_id", "user_id"),
        title="B2B account in a licensing group",
        digest_title="B2B accounts in licensing groups",
        noun="B2B member",
        severities=(Severity.WARNING,),
        section=4,
        per_group=True,
        remediation=(
            "Remove the guest from the group (Entra admin center > Groups > the group > Members) and license "
            "it directly only if it really needs the product; keep guests out of licensing groups."
        ),
    ),
    KindSpec(
        FindingKind.NESTED_GROUP,
        subject=("group_id", "member_group_id"),
        title="Nested group in a licensing group",
        digest_title="Nested groups in licensing groups (their members get no license)",
        noun="nested group",
        severities=(Severity.WARNING,),
        section=5,
        per_group=True,
        remediation=(
            "Group-based licensing ignores nested groups: add the users directly, or assign the licenses to the "
            "nested group itself (Microsoft 365 admin center > Billing > Licenses > the product > Groups > "
            "Assign licenses)."
        ),
    ),
    KindSpec(
        FindingKind.LICENSE_ERROR,
        subject=("group_id", "user_id", "sku_id", "error"),
        title="Group license assignment in error",
        digest_title="Group license assignments in error",
        noun="license error",
        severities=(
            Severity.WARNING,
            Severity.CRITICAL,
        ),
        section=6,
        per_group=True,
        remediation=(
            "Fix the cause (seats, conflicting or dependent licenses, usage location, duplicate proxy address), "
            "then reprocess (Microsoft 365 admin center > Billing > Licenses > the product > Groups, or Graph "
            "POST /users/{id}/reprocessLicenseAssignment). A user who left the group keeps the seat until the "
            "dependent license is removed or the proxy address conflict is resolved."
        ),
    ),
    KindSpec(
        FindingKind.PROCESSING_INCOMPLETE,
        subject=("group_id",),
        title="Group license processing not complete",
        digest_title="Group license processing not complete",
        noun="group",
        severities=(
            Severity.INFO,
            Severity.WARNING,
        ),
        section=8,
        per_group=False,
        remediation=(
            "Wait for processing to finish; if it stays incomplete, reprocess the group's users "
            "(Microsoft 365 admin center > Billing > Licenses > the product > Groups, or Graph "
            "POST /users/{id}/reprocessLicenseAssignment)."
        ),
    ),
    KindSpec(
        FindingKind.DISABLED_USER_LICENSED,
        subject=("group_id", "user_id"),
        title="Disabled account holds licenses",
        digest_title="Disabled accounts holding licenses",
        noun="disabled account",
        severities=(Severity.INFO,),
        section=9,
        per_group=True,
        remediation=(
            "Remove the disabled account from the group (Entra admin center > Groups > the group > Members) "
            "to free its seats, if it is not coming back."
        ),
    ),
    KindSpec(
        FindingKind.REDUNDANT_DIRECT_ASSIGNMENT,
        subject=("user_id", "sku_id"),
        title="Direct assignment duplicates a group assignment",
        digest_title="Direct assignments that duplicate a group's",
        noun="direct assignment",
        severities=(Severity.INFO,),
        section=10,
        per_group=False,
        remediation=(
            "Remove the direct assignment (Microsoft 365 admin center > Users > the user > Licenses and apps, "
            "or Graph POST /users/{id}/assignLicense with removeLicenses); the group keeps the user licensed."
        ),
    ),
    KindSpec(
        FindingKind.EMPTY_LICENSED_GROUP,
        subject=("group_id",),
        title="Licensing group has no members",
        digest_title="Licensing groups without members",
        noun="empty group",
        severities=(Severity.INFO,),
        section=11,
        per_group=False,
        remediation=(
            "Add the intended members, or remove the license assignment from the group "
            "(Microsoft 365 admin center > Billing > Licenses > the product > Groups)."
        ),
    ),
    KindSpec(
        FindingKind.EXPECTED_SKU_NOT_GROUP_ASSIGNED,
        subject=("sku_id",),
        title="Product expected to be group-assigned is not",
        digest_title="Products expected to be group-assigned but not",
        noun="product",
        severities=(Severity.WARNING,),
        section=7,
        per_group=False,
        remediation=(
            "Assign the product to a security group (Microsoft 365 admin center > Billing > Licenses > "
            "the product > Groups > Assign licenses), move its users into the group, then remove their direct "
            "assignments."
        ),
    ),
    KindSpec(
        FindingKind.DYNAMIC_GROUP_PAUSED,
        subject=("group_id",),
        title="Dynamic licensing group is paused",
        digest_title="Dynamic licensing groups with processing paused",
        noun="paused group",
        severities=(Severity.WARNING,),
        section=12,
        per_group=False,
        remediation=(
            "Resume processing if the pause was not meant to last (Entra admin center > Groups > the group > "
            'Properties, or Graph PATCH /groups/{id} with membershipRuleProcessingState "On"); check the '
            "rule first, since resuming adds and removes members (and their licenses) at once."
        ),
    ),
    KindSpec(
        FindingKind.DYNAMIC_RULE_ADMITS_GUESTS,
        subject=("group_id",),
        title="Dynamic licensing group's rule admits guests",
        digest_title="Dynamic licensing groups whose rule admits guests",
        noun="dynamic group",
        severities=(Severity.WARNING,),
        section=13,
        per_group=False,
        remediation=(
            'Add (user.userType -eq "Member") to the rule with -and (Entra admin center > Groups > the group > '
            "Dynamic membership rules), validating it on a test group first: a rule change removes the members "
            "who no longer match, with their licenses."
        ),
    ),
    KindSpec(
        FindingKind.LICENSED_GROUP_SHRANK,
        subject=("group_id",),
        title="Licensing group lost many members",
        digest_title="Licensing groups that lost many members since the last run",
        noun="group",
        severities=(Severity.WARNING,),
        section=14,
        per_group=False,
        remediation=(
            "Check that the membership (or the dynamic rule) changed on purpose (Entra admin center > Groups > "
            "the group > Audit logs): the members who left lost its licenses, which can mean loss of service "
            "or data. Restore the rule or the members if it was a mistake."
        ),
    ),
    KindSpec(
        FindingKind.P1_COVERAGE_SHORT,
        subject=(),
        title="Not enough Entra ID P1 (or Office 365 E3) for group-based licensing",
        digest_title="Not enough Entra ID P1 (or Office 365 E3) for group-based licensing",
        noun="tenant",
        severities=(Severity.WARNING,),
        section=15,
        per_group=False,
        remediation=(
            "Buy Microsoft Entra ID P1 (or a suite that covers group-based licensing: Microsoft 365 E3/E5, EMS E3/E5, "
            "Microsoft 365 Business Premium, Office 365 E3/E5) for every user who gets licenses from a group "
            "(Microsoft 365 admin center > Billing > Purchase services)."
        ),
    ),
    KindSpec(
        FindingKind.SUBSCRIPTION_RENEWAL,
        subject=("sku_id",),
        title="Subscription ends soon",
        digest_title="Subscriptions that end soon",
        noun="product",
        severities=(Severity.WARNING,),
        section=16,
        per_group=False,
        remediation=(
            "Renew the subscription, or buy the product a trial is for (Microsoft 365 admin center > Billing > "
            "Your products > the subscription); if it is meant to end, move its users to another product first."
        ),
    ),
    KindSpec(
        FindingKind.INACTIVE_USER_LICENSED,
        subject=("group_id", "user_id"),
        title="Inactive account holds licenses",
        digest_title="Inactive accounts holding licenses",
        noun="inactive account",
        severities=(Severity.INFO,),
        section=17,
        per_group=True,
        remediation=(
            "Check with the user's manager; if the account is not needed, remove it from the group (Entra admin "
            "center > Groups > the group > Members) or disable it, to free its seats."
        ),
    ),
    KindSpec(
        FindingKind.LICENSE_DRIFT,
        subject=("group_id",),
        title="Group licences changed outside apply",
        digest_title="Managed groups whose licences changed outside licensing-audit apply",
        noun="group",
        severities=(Severity.WARNING,),
        section=18,
        per_group=False,
        remediation=(
            "Someone changed the group's products or disabled plans outside licensing-audit apply. Run "
            "licensing-audit apply FILE on the reviewed desired state: the dry run shows the difference, and "
            "apply FILE --confirm restores it; if the change was meant, export the group and commit it to the "
            "desired state instead (docs/configure.md)."
        ),
    ),
)

CATALOGUE: Final[Mapping[str, KindSpec]] = MappingProxyType({s.kind.value: s for s in _SPECS})
KIND_ORDER: Final[Mapping[str, int]] = MappingProxyType({kind: i for i, kind in enumerate(CATALOGUE)})
# Kinds whose subject is one SKU, or one group: their finding ids can be computed from a report's lists.
SKU_SUBJECT_KINDS: Final = frozenset(k for k, s in CATALOGUE.items() if s.subject == ("sku_id",))
GROUP_SUBJECT_KINDS: Final = frozenset(k for k, s in CATALOGUE.items() if s.subject == ("group_id",))
SEAT_KINDS: Final = frozenset(
    {FindingKind.SEAT_SHORTAGE, FindingKind.SEAT_LOW, FindingKind.SEAT_FORECAST, FindingKind.UNITS_EXPIRING}
)


def spec(kind: str) -> KindSpec | None:
    """The catalogue entry of ``kind`` (None for a kind this version does not know, e.g. from a newer report)."""
    return CATALOGUE.get(kind)

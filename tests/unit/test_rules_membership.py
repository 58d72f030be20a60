"""licensing.rules.membership: which dynamic membership rules keep guests out (Microsoft's rule syntax)."""

from __future__ import annotations

import pytest

from licensing.rules.membership import rule_admits_guests


@pytest.mark.parametrize(
    "rule",
    [
        # The restriction Microsoft recommends, alone or with -and, in any case and quoting.
        '(user.userType -eq "Member")',
        '(user.userType -eq "Member") -and (user.department -eq "Sales")',
        "user.usertype -eq 'member' -and user.country -eq 'US'",
        '(user.userType -ne "Guest")',
        '(user.userType -in ["Member"])',
        '(user.userType -notIn ["Guest"])',
        '-not (user.userType -eq "Guest")',
        # Every -or alternative carries it.
        '(user.userType -eq "Member" -and user.a -eq "1") -or (user.userType -eq "Member" -and user.b -eq "2")',
        # A quoted "-or" is text, not an operator.
        '(user.department -eq "R -or D") -and (user.userType -eq "Member")',
        # The restriction in a parenthesised alternative list that restricts every branch.
        '(user.dept -eq "x") -and ((user.userType -eq "Member") -or (user.userType -ne "Guest"))',
    ],
)
def test_rules_that_keep_guests_out(rule: str) -> None:
    assert rule_admits_guests(rule) is False


@pytest.mark.parametrize(
    "rule",
    [
        '(user.department -eq "New Hires")',
        "(user.accountEnabled -eq true)",
        # One alternative is open: anyone in it joins, guests included.
        '(user.userType -eq "Member") -or (user.department -eq "Partners")',
        # The wrong value, or a test this reading does not follow: counted as admitting guests.
        '(user.userType -eq "Guest")',
        '(user.userType -match "Mem.*")',
        "",
        None,
        "(((",
    ],
)
def test_rules_that_admit_guests_or_cannot_be_read(rule: str | None) -> None:
    assert rule_admits_guests(rule) is True


# Every rule example of Microsoft's page "Manage rules for dynamic membership groups in Microsoft Entra ID"
# (https://learn.microsoft.com/entra/identity/users/groups-dynamic-membership), as written there (en dashes
# included), with whether it keeps guests out. The page says "This rule adds B2B guest users and member users"
# of ``user.objectId -ne null`` and that the rule after it will "exclude guest users".
MICROSOFT_RULES: list[tuple[str, bool]] = [
    ('user.department -eq "Sales"', False),
    ("user.accountEnabled -eq true", False),
    ("user.dirSyncEnabled -eq true", False),
    ('user.employeeHireDate -eq "value"', False),
    ('user.city -eq "value"', False),
    ('user.employeeId -eq "value"', False),
    ("user.employeeId -ne null", False),
    ('user.mail -notEndsWith "@Contoso.com"', False),
    ('user.mailNickname -endsWith "-vendor"', False),
    ("user.memberOf -any (group.objectId -in ['value'])", False),
    ('user.objectId -eq "aaaaaaaa-0000-1111-2222-bbbbbbbbbbbb"', False),
    ('user.onPremisesSecurityIdentifier -eq "S-1-1-11-1111111111-1111111111-1111111111-1111111"', False),
    ('user.passwordPolicies -eq "DisableStrongPassword"', False),
    ('user.preferredLanguage -eq "en-US"', False),
    ('user.usageLocation -eq "US"', False),
    ('user.userPrincipalName -eq "alias@domain"', False),
    ('user.userType -eq "Member"', True),
    ('user.otherMails -startsWith "alias@domain"', False),
    ('user.otherMails -endsWith"@contoso.com"', False),
    ('user.proxyAddresses -startsWith "SMTP: alias@domain"', False),
    ('user.proxyAddresses -notEndsWith "@outlook.com"', False),
    (
        'user.department -in ["50001","50002","50003","50005","50006","50007","50008","50016","50020","50024",'
        '"50038","50039","51100"]',
        False,
    ),
    ("user.employeehiredate -ge system.now -plus p1d", False),
    ("user.employeehiredate -le 2020-06-10T18:13:20Z", False),
    ('user.displayName -match "^Da.*"', False),
    ('user.displayName -match ".*vid"', False),
    ("user.department -eq null", False),
    ("user.mail \u2013ne null", False),
    ('(user.department -eq "Sales") -or (user.department -eq "Marketing")', False),
    ('(user.department -eq "Sales") -and -not (user.jobTitle -startsWith "SDE")', False),
    ('user.department \u2013eq "Marketing" \u2013and user.country \u2013eq "US"', False),
    (
        'user.country \u2013eq "US" \u2013and (user.department \u2013eq "Marketing" \u2013or user.department '
        '\u2013eq "Sales")',
        False,
    ),
    (
        'user.assignedPlans -any (assignedPlan.servicePlanId -eq "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e" -and '
        'assignedPlan.capabilityStatus -eq "Enabled")',
        False,
    ),
    ('(user.proxyAddresses -any (_ -startsWith "contoso"))', False),
    (
        'user.assignedPlans -any (assignedPlan.servicePlanId -eq "efb87545-963c-4e0d-99df-69c6916d9eb0" -and '
        'assignedPlan.capabilityStatus -eq "Enabled")',
        False,
    ),
    (
        'user.assignedPlans -any (assignedPlan.service -eq "SCO" -and assignedPlan.capabilityStatus -eq "Enabled")',
        False,
    ),
    ("user.assignedPlans -all (assignedPlan.servicePlanId -eq null)", False),
    ("user.objectId -ne null", False),
    ('(user.objectId -ne null) -and (user.userType -eq "Member")', True),
    ("device.objectId -ne null", False),
    ('(user.extensionAttribute15 -eq "Marketing")', False),
    ('user.extension_c272a57b722d4eb29bfe327874ae79cb_OfficeNumber -eq "123"', False),
    ("device.accountEnabled -eq true", False),
    ('device.deviceCategory -eq "BYOD"', False),
    ('device.deviceId -eq "d4fe7726-5966-431c-b3b8-cddc8fdb717d"', False),
    ('(device.deviceOSType -eq "iPad") -or (device.deviceOSType -eq "iOS")', False),
    ('device.deviceOSType -startsWith "AndroidEnterprise"', False),
    ('(device.deviceOSVersion -startsWith "10.0.1")', False),
    ('device.devicePhysicalIDs -any _ -startsWith "[ZTDId]"', False),
    ("device.memberOf -any (group.objectId -in ['value'])", False),
    ("device.isRooted -eq true", False),
]
# Examples of the page outside the expression grammar: read as "cannot tell", so admitting guests.
MICROSOFT_NOT_EXPRESSIONS = [
    'Direct Reports for "aaaaaaaa-0000-1111-2222-bbbbbbbbbbbb"',
    '(device.devicePhysicalIds -any _ -eq "[OrderID]:179887111881"',  # unbalanced on the page
    'device.systemLabels -startsWith "M365Managed" SystemLabels',
]


@pytest.mark.parametrize(("rule", "keeps_guests_out"), MICROSOFT_RULES)
def test_every_rule_example_of_microsofts_page_is_read(rule: str, keeps_guests_out: bool) -> None:
    from licensing.rules.membership import parse_rule

    parse_rule(rule)  # inside the documented grammar
    assert rule_admits_guests(rule) is not keeps_guests_out


@pytest.mark.parametrize("rule", MICROSOFT_NOT_EXPRESSIONS)
def test_microsofts_examples_outside_the_expression_grammar_admit_guests(rule: str) -> None:
    from licensing.rules.membership import RuleSyntaxError, parse_rule

    with pytest.raises(RuleSyntaxError):
        parse_rule(rule)
    assert rule_admits_guests(rule) is True


@pytest.mark.parametrize(
    "rule",
    [
        # "Operators can be used with or without the hyphen (-) prefix", and in any case.
        'user.userType eq "Member"',
        'user.USERTYPE -EQ "MEMBER"',
        '(user.objectId ne null) and (user.userType eq "Member")',
        '(user.department eq "Sales") AND (user.userType Eq "Member")',
        'not (user.userType eq "Guest")',
        'NOT(user.userType -eq "Guest")',
        "user.userType notIn ['Guest']",
        'user.userType in ["Member"]',
        'user.userType -ne "guest" -and not (user.department -eq null)',
        # Precedence: -and binds before -or; both alternatives exclude guests.
        'user.userType eq "Member" and user.a eq "1" or user.userType eq "Member" and user.b eq "2"',
        # A guest is excluded by -not of a rule that is true for every guest.
        '-not (user.userType -eq "Guest" -or user.department -eq "Partners")',
    ],
)
def test_rules_without_hyphens_or_in_any_case_keep_guests_out(rule: str) -> None:
    assert rule_admits_guests(rule) is False


@pytest.mark.parametrize(
    "rule",
    [
        'user.userType eq "Member" or user.department eq "Partners"',
        'user.userType ne "Member"',
        'user.userType in ["Member", "Guest"]',
        'not (user.userType eq "Member")',
        'user.userType -startsWith "Mem"',  # read, but not judged: admits
        "user.userType eq",
        'user.userType -like "Member"',
    ],
)
def test_rules_without_hyphens_that_admit_guests(rule: str) -> None:
    assert rule_admits_guests(rule) is True

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

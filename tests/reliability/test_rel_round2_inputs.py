"""Round two, hostile and careless input (issue 16 items 7, 10, 15): redaction that never raises, schedules and
URLs refused at start-up with the setting named. Each test reproduces a break that held before its fix."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.errors import ConfigurationError, redact_text, redact_url
from licensing.ncrontab import Schedule
from licensing.settings import load_settings
from licensing.telemetry import SecretRedactingFilter, TraceContextFilter, route_template, scrub

# URL-ish text: the characters that make urlsplit raise (brackets, colons, at signs) come up often.
_URLISH = st.text(alphabet=st.sampled_from(list("htps:/[]@?#%.:0123456789abcdefAF-_~ \u0130\u202e\x00")), max_size=60)
_ANY = st.one_of(st.text(max_size=200), _URLISH.map(lambda s: "https://" + s), _URLISH)


# ------------------------------------------------------------------ item 7: redaction is a total function


@pytest.mark.parametrize("url", ["https://a:b/?q", "https://[::1]/x?q=1", "http://[::1/", "https://[v1.x]:99999/?"])
def test_redact_url_of_the_reported_breaks_gives_a_safe_string(url: str) -> None:
    """``https://a:b/?q`` raised ValueError (port 'b') inside the log filter and the error mapping."""
    shown = redact_url(url)
    assert isinstance(shown, str) and "q=1" not in shown
    assert "b/" not in shown or shown == "<url>" or shown.startswith("https://a/")


def test_an_ipv6_host_keeps_its_brackets() -> None:
    """A bracketless ``https://::1:8080/x`` is ambiguous and raised when redacted again."""
    shown = redact_url("https://[::1]:8080/x?token=secret")
    assert shown == "https://[::1]:8080/x?…"
    assert redact_url(shown) == shown


@settings(max_examples=400, deadline=None)
@given(_ANY)
def test_redaction_never_raises_on_any_string(value: str) -> None:
    for fn in (redact_url, redact_text, scrub, route_template):
        assert isinstance(fn(value), str)
    assert isinstance(redact_text(f"see {value} and {value}?q=1"), str)


@settings(max_examples=200, deadline=None)
@given(_ANY, st.lists(_ANY, max_size=3))
def test_log_filters_never_raise_and_never_drop_a_record(message: str, args: list[str]) -> None:
    record = logging.LogRecord("licensing.test", logging.ERROR, __file__, 1, message, tuple(args), None)
    assert SecretRedactingFilter().filter(record) is True
    assert TraceContextFilter().filter(record) is True
    assert isinstance(record.getMessage(), str)


def test_a_hostile_group_id_is_rejected_once_not_retried_into_the_poison_queue() -> None:
    """The rejection's own error path redacted the value and raised, so the host retried the message."""
    from licensing.errors import BadRequestError
    from licensing.pipeline.requests import parse_request

    with pytest.raises(BadRequestError, match="not a GUID"):
        parse_request('{"scope": "group", "group_id": "https://a:b/?q"}')
    record = logging.LogRecord("licensing", logging.ERROR, __file__, 1, "rejected %s", ("https://a:b/?q",), None)
    assert SecretRedactingFilter().filter(record) and "https://a" in record.getMessage()


# ------------------------------------------------------------------ item 10: AUDIT_SCHEDULE


@pytest.mark.parametrize(
    "expression",
    ["99 99 99 * * *", "0 0 0 30 2 *", "0 0 0 31 4 *", "0 61 2 * * *", "0 30 2 * 13 *", "0 30 2 * * 8"],
    ids=["out-of-range", "30-february", "31-april", "minute-61", "month-13", "weekday-8"],
)
def test_a_schedule_that_cannot_fire_is_refused_at_start_up(expression: str) -> None:
    """``99 99 99 * * *`` passed start-up and failed at the first firing; ``0 0 0 30 2 *`` never fired."""
    with pytest.raises(ConfigurationError, match="AUDIT_SCHEDULE") as caught:
        load_settings({"AUDIT_SCHEDULE": expression})
    assert "fires within a year" in str(caught.value)


@pytest.mark.parametrize("expression", ["0 30 2 * * *", "0 0 */6 * * *", "0 0 3 * * mon-fri", "0 0 0 1 1 *"])
def test_valid_schedules_pass_and_fire_within_a_year(expression: str) -> None:
    settings_ = load_settings({"AUDIT_SCHEDULE": expression})
    now = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
    nxt = Schedule.parse(settings_.audit_schedule).next_after(now)
    assert now < nxt <= now.replace(year=2027, month=12)


# ------------------------------------------------------------------ item 15: settings that were accepted


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GRAPH_BASE_URL", "https://user:hunter2@graph.microsoft.com/v1.0"),
        ("GRAPH_BASE_URL", "https://graph.microsoft.com/v1.0?$top=1"),
        ("GRAPH_BASE_URL", "https://graph.microsoft.com/v1.0#frag"),
        ("GRAPH_BASE_URL", "http://127.0.0.1:99999/v1.0"),
        ("GRAPH_BASE_URL", "https://graph.microsoft.com:0/v1.0"),
        ("ALERT_TEAMS_WEBHOOK_URL", "http://127.0.0.1:99999/workflows/x"),
        ("ALERT_TEAMS_WEBHOOK_URL", "https://bad..host.example/workflows/x"),
        ("ALERT_TEAMS_WEBHOOK_URL", "https://" + "a" * 64 + ".example/workflows/x"),
        ("ALERT_TEAMS_WEBHOOK_URL", "https://me:pw@prod.westus.logic.azure.com/workflows/x"),
    ],
)
def test_urls_with_user_info_query_fragment_bad_port_or_host_are_refused(name: str, value: str) -> None:
    """With user info httpx sent ``Authorization: Basic …`` to the Graph host instead of a token."""
    with pytest.raises(ConfigurationError, match=name) as caught:
        load_settings({name: value})
    assert "hunter2" not in str(caught.value) and "pw@" not in str(caught.value)


def test_alert_mail_from_with_two_addresses_is_refused() -> None:
    """It was silently cut to its first address."""
    with pytest.raises(ConfigurationError, match="ALERT_MAIL_FROM"):
        load_settings(
            {"ALERT_MAIL_FROM": "audit@contoso.example, boss@contoso.example", "ALERT_MAIL_TO": "a@b.example"}
        )


def test_every_bad_setting_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"AUDIT_SCHEDULE": "0 0 0 30 2 *", "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0?x"})
    assert "AUDIT_SCHEDULE" in str(caught.value) and "GRAPH_BASE_URL" in str(caught.value)

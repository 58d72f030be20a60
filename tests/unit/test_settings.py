"""Settings: defaults, validation of every setting, all problems reported at once, secrets masked."""

from __future__ import annotations

import pytest

from licensing.errors import ConfigurationError
from licensing.model import Severity
from licensing.settings import DEFAULT_EXPECTED_GROUP_SKUS, Secret, is_loopback_url, load_settings

WEBHOOK = "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=TOPSECRETSIG"


def test_defaults_match_the_design() -> None:
    s = load_settings({})
    assert s.audit_schedule == "0 30 2 * * *"
    assert s.audit_queue == "license-audit-requests"
    assert s.audit_chunk_queue == "license-audit-chunks"
    assert s.graph_cloud == "global"
    assert s.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert (s.seat_min_free, s.seat_min_free_pct, s.forecast_days) == (5, 5.0, 30)
    assert (s.processing_stuck_hours, s.fanout_groups, s.retention_days) == (24, 500, 400)
    # Issue 19: open criticals repeat daily, the rest weekly, unless ALERT_RENOTIFY_HOURS (round one) says otherwise.
    assert (s.renotify_hours(Severity.CRITICAL), s.renotify_hours(Severity.WARNING)) == (24, 168)
    assert s.alert_min_severity is Severity.WARNING
    assert s.expected_group_skus == DEFAULT_EXPECTED_GROUP_SKUS
    assert s.storage is None
    assert not s.teams_enabled and not s.mail_enabled


def test_every_problem_is_reported_in_one_error() -> None:
    env = {
        "SEAT_MIN_FREE": "-1",
        "SEAT_MIN_FREE_PCT": "150",
        "FORECAST_DAYS": "abc",
        "GRAPH_CLOUD": "mars",
        "ALERT_MIN_SEVERITY": "loud",
        "AUDIT_SCHEDULE": "every night",
        "AUDIT_QUEUE": "Bad_Queue",
        "AZURE_CLIENT_ID": "not-a-guid",
        "ALERT_MAIL_TO": "admins-at-contoso",
        "GRAPH_MAX_CONCURRENCY": "0",
    }
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert "\n" not in message
    for name in env:
        assert name in message, name
    assert len(caught.value.problems) == len(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SEAT_MIN_FREE", "0"),
        ("SEAT_MIN_FREE_PCT", "0"),
        ("SEAT_MIN_FREE_PCT", "100"),
        ("FORECAST_DAYS", "7"),
        ("FORECAST_DAYS", "365"),
        ("GRAPH_MAX_CONCURRENCY", "64"),
    ],
)
def test_range_boundaries_are_accepted(name: str, value: str) -> None:
    """The boundary is accepted *and* is the value the app then uses (not the default)."""
    parsed = getattr(load_settings({name: value}), name.lower())
    assert parsed == float(value)


@pytest.mark.parametrize(
    ("name", "value"), [("FORECAST_DAYS", "6"), ("SEAT_MIN_FREE_PCT", "nan"), ("GRAPH_MAX_CONCURRENCY", "65")]
)
def test_out_of_range_is_rejected(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings({name: value})


def test_secrets_are_masked_and_never_echoed() -> None:
    s = load_settings({"ALERT_TEAMS_WEBHOOK_URL": WEBHOOK, "LICENSING_STORAGE": "AccountName=a;AccountKey=KEYKEY=="})
    assert "TOPSECRETSIG" not in repr(s) and "KEYKEY" not in repr(s)
    assert isinstance(s.alert_teams_webhook_url, Secret)
    assert s.alert_teams_webhook_url.reveal() == WEBHOOK
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"ALERT_TEAMS_WEBHOOK_URL": "http://example.com/hook?sig=TOPSECRETSIG"})
    assert "TOPSECRETSIG" not in str(caught.value)


def test_webhook_must_be_https_except_loopback() -> None:
    assert load_settings({"ALERT_TEAMS_WEBHOOK_URL": "http://127.0.0.1:8080/hook"}).teams_enabled
    with pytest.raises(ConfigurationError, match="ALERT_TEAMS_WEBHOOK_URL"):
        load_settings({"ALERT_TEAMS_WEBHOOK_URL": "http://hooks.example.com/x"})


def test_mail_needs_a_sender() -> None:
    with pytest.raises(ConfigurationError, match="ALERT_MAIL_FROM is missing"):
        load_settings({"ALERT_MAIL_TO": "admins@contoso.com"})
    s = load_settings({"ALERT_MAIL_FROM": "audit@contoso.com", "ALERT_MAIL_TO": "a@contoso.com; b@contoso.com"})
    assert s.mail_enabled and s.alert_mail_to == ("a@contoso.com", "b@contoso.com")


@pytest.mark.parametrize(
    ("cloud", "graph"),
    [
        ("global", "https://graph.microsoft.com/v1.0"),
        ("usgov", "https://graph.microsoft.us/v1.0"),
        ("usgovdod", "https://dod-graph.microsoft.us/v1.0"),
        ("china", "https://microsoftgraph.chinacloudapi.cn/v1.0"),
    ],
)
def test_national_clouds(cloud: str, graph: str) -> None:
    s = load_settings({"GRAPH_CLOUD": cloud})
    assert s.graph_base_url == graph
    assert s.graph_host == graph.removesuffix("/v1.0")


def test_explicit_graph_url_wins_and_http_only_on_loopback() -> None:
    assert load_settings({"GRAPH_BASE_URL": "http://127.0.0.1:5000/v1.0"}).graph_base_url.endswith(":5000/v1.0")
    with pytest.raises(ConfigurationError, match="GRAPH_BASE_URL"):
        load_settings({"GRAPH_BASE_URL": "http://graph.example.com/v1.0"})


def test_storage_connection_forms() -> None:
    dev = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).storage
    assert dev is not None and dev.source == "AzureWebJobsStorage" and dev.is_development
    own = load_settings({"LICENSING_STORAGE": "UseDevelopmentStorage=true", "AzureWebJobsStorage": "x=y"}).storage
    assert own is not None and own.source == "LICENSING_STORAGE"
    identity = load_settings(
        {
            "AzureWebJobsStorage__accountName": "stlicaudit01",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
        }
    ).storage
    assert identity is not None
    assert identity.table_uri == "https://stlicaudit01.table.core.windows.net"
    assert identity.queue_uri == "https://stlicaudit01.queue.core.windows.net"
    assert identity.credential == "managedidentity" and identity.connection_string is None
    with pytest.raises(ConfigurationError, match="__accountName"):
        load_settings({"AzureWebJobsStorage__accountName": "Not_Valid"})


def test_lists_and_severity() -> None:
    s = load_settings({"ALERT_EXCLUDE_SKUS": "FLOW_FREE, POWER_BI_STANDARD", "ALERT_MIN_SEVERITY": "CRITICAL"})
    assert s.alert_exclude_skus == ("FLOW_FREE", "POWER_BI_STANDARD")
    assert s.alert_min_severity is Severity.CRITICAL
    assert Severity.CRITICAL.at_least(Severity.WARNING) and not Severity.INFO.at_least(Severity.WARNING)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:1/x", True),
        ("http://127.8.9.10/x", True),
        ("http://[::1]:80/", True),
        ("http://localhost/x", True),
        ("http://localhost.evil.com/x", False),
        ("https://graph.microsoft.com", False),
        ("http://10.0.0.1/", False),
    ],
)
def test_loopback_detection(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_the_readme_table_lists_every_declared_setting_with_its_default() -> None:
    """Issue 17, item 8: each setting is declared once (licensing/settings/__init__.py) and the README agrees."""
    import re
    from pathlib import Path

    from licensing.settings import declared

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows: dict[str, str] = {}
    for line in readme.split("| setting | default | meaning |", 1)[1].split("\n\n", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z_]+)`", cells[0])
        defaults = [d.strip().strip("`") for d in cells[1].split(" / ")] if cells[1] else []
        for i, name in enumerate(names):
            rows[name] = defaults[i] if i < len(defaults) else ""
    names = {spec.env for _, spec, _ in declared()}
    assert names - set(rows) == set(), "declared settings the README does not list"
    assert set(rows) - names - {"AzureWebJobsStorage"} == set(), "README settings nobody declares"
    for _, spec, default in declared():
        shown = rows[spec.env]
        if isinstance(default, int | float | str) and shown and not shown.startswith(("that", "O365")):
            assert shown == (f"{default:g}" if isinstance(default, float) else str(default)), spec.env


@pytest.mark.parametrize(
    ("env", "critical", "warning"),
    [
        ({}, 24, 168),
        ({"ALERT_RENOTIFY_HOURS": "48"}, 48, 48),  # round one's setting: both, as before (the migration)
        ({"ALERT_RENOTIFY_HOURS": "48", "ALERT_RENOTIFY_HOURS_WARNING": "336"}, 48, 336),
        ({"ALERT_RENOTIFY_HOURS_CRITICAL": "12"}, 12, 168),
    ],
)
def test_renotification_per_severity_and_the_migration(env: dict[str, str], critical: int, warning: int) -> None:
    s = load_settings(env)
    assert (s.renotify_hours(Severity.CRITICAL), s.renotify_hours(Severity.WARNING)) == (critical, warning)
    assert s.renotify_hours(Severity.INFO) == warning


def test_bad_renotification_periods_are_reported_together() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"ALERT_RENOTIFY_HOURS_CRITICAL": "0", "ALERT_RENOTIFY_HOURS_WARNING": "a week"})
    text = str(caught.value)
    assert "ALERT_RENOTIFY_HOURS_CRITICAL" in text and "ALERT_RENOTIFY_HOURS_WARNING" in text

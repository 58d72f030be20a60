"""Issue 30, item 4: a variable that looks like one of our settings but is not is named, with the nearest real name."""

from __future__ import annotations

import pytest

from licensing.cli import EXIT_USAGE, main
from licensing.settings import misspelled


def test_the_issues_typos_are_named_with_the_nearest_setting() -> None:
    env = {
        "ALERT_MIN_SEVERTY": "critical",
        "FORCAST_DAYS": "10",
        "LICENSING_STORGE": "UseDevelopmentStorage=true",
        "ALERT_TEAMS_WEBHOOK": "https://example.invalid/x",
        "alert_min_severity": "critical",
        "LICENSING_STORAGE__accountname": "stexample",
    }
    lines = misspelled(env)
    assert lines == [
        "ALERT_MIN_SEVERTY is not a setting (ignored): did you mean ALERT_MIN_SEVERITY?",
        "ALERT_TEAMS_WEBHOOK is not a setting (ignored): did you mean ALERT_TEAMS_WEBHOOK_URL?",
        "FORCAST_DAYS is not a setting (ignored): did you mean FORECAST_DAYS?",
        "LICENSING_STORAGE__accountname is not a setting (ignored): did you mean LICENSING_STORAGE__accountName?",
        "LICENSING_STORGE is not a setting (ignored): did you mean LICENSING_STORAGE?",
        "alert_min_severity is not a setting (ignored): did you mean ALERT_MIN_SEVERITY?",
    ]
    # Values are never shown (a webhook URL or a connection string is a secret).
    assert not any("example" in line or "UseDevelopment" in line for line in lines)


def test_real_settings_and_other_tools_variables_are_not_flagged() -> None:
    env = {
        "ALERT_MIN_SEVERITY": "critical",
        "FORECAST_DAYS": "10",
        "LICENSING_STORAGE__blobServiceUri": "https://x.blob.core.windows.net",
        "AzureWebJobsStorage__accountName": "x",
        "AzureWebJobsStorage__serviceUri": "x",  # the Functions host's own form
        "AzureWebJobsScriptRoot": "/home/site/wwwroot",
        "AZURE_CLIENT_SECRET": "x",  # azure-identity
        "AZURE_AUTHORITY_HOST": "x",
        "OTEL_SERVICE_NAME": "x",
        "OTEL_EXPORTER_OTLP_HEADERS": "x",
        "PATH": "/usr/bin",
        "HOME": "/root",
        "WEBSITE_SITE_NAME": "func",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "x",
    }
    assert misspelled(env) == []


def test_a_name_with_our_prefix_but_far_from_every_setting_is_still_named() -> None:
    (line,) = misspelled({"ALERT_PAGER_NUMBER": "1"})
    assert line.startswith("ALERT_PAGER_NUMBER is not a setting (ignored)")


def test_the_cli_warns_on_stderr_before_it_works(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALERT_MIN_SEVERTY", "critical")
    monkeypatch.delenv("LICENSING_STORAGE", raising=False)
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    assert main(["history"]) == EXIT_USAGE  # no storage: fails, but the typo is named first
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "licensing-audit: warning: ALERT_MIN_SEVERTY is not a setting (ignored): did you mean ALERT_MIN_SEVERITY?"
    )
    assert "history needs storage" in err[1]

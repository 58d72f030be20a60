"""``licensing-audit demo`` end to end: two simulated nights through the timer, the queue handler and alerts.

The demo drives the real pipeline, so it is the first thing a pipeline change can break (the timer's
tickets made hand-enqueued scheduled requests a rejection): this test runs it on the smallest tenant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from licensing.cli import EXIT_OK, main
from licensing.sandbox.tenant import MIN_GROUPS, MIN_USERS

pytestmark = pytest.mark.azurite  # the demo starts an Azurite of its own


def test_the_demo_runs_two_nights_and_writes_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--users", str(MIN_USERS), "--groups", str(MIN_GROUPS)]) == EXIT_OK
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["run"]["status"] == "succeeded" and report["run"]["trigger"] == "schedule"
    assert report["findings"], "the demo tenant has findings"
    alerts = sorted(p.name for p in (out / "alerts").iterdir())
    assert any("night1" in a and "teams" in a for a in alerts) and any("night2" in a for a in alerts), alerts
    assert {p.name for p in out.iterdir()} >= {"report.html", "report.json", "skus.csv", "groups.csv", "findings.csv"}
    printed = capsys.readouterr().out
    assert "rejected" not in printed
    # One apply and its verification (issue 28): the fit group licensed from a desired-state file.
    applied = json.loads((out / "apply.json").read_text(encoding="utf-8"))
    assert applied["confirmed"] and [g["outcome"] for g in applied["groups"] if g["status"] != "unchanged"] == [
        "verified"
    ]
    assert (out / "licensing.yaml").exists() and "verified" in printed
    # A migration (issue 29): two members' direct E3 removed in waves, each wave verified, nobody left without it.
    migrated = json.loads((out / "migrate.json").read_text(encoding="utf-8"))
    assert migrated["confirmed"] and migrated["stopped"] is None
    assert [u["outcome"] for u in migrated["users"] if u["remove"]] == ["verified", "verified"]
    assert migrated["waves"] == [1, 1]


@pytest.mark.slow
def test_the_demo_handles_a_fanned_out_tenant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 30, item 8: --groups 800 (more licensed groups than FANOUT_GROUPS) used to end "the request was
    fanned_out"; the demo now runs the chunks as the chunk trigger would and concludes both nights."""
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--users", "1200", "--groups", "800"]) == EXIT_OK
    printed = capsys.readouterr().out
    assert printed.count("the tenant fanned out; running its chunks") == 2
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["run"]["status"] == "succeeded" and len(report["groups"]) > 500

"""The catalogue of finding kinds (licensing/kinds.py) is the one truth: the enum, the rules, docs/findings.md
and the README's table are held to it (issue 17, item 2)."""

from __future__ import annotations

import re
from pathlib import Path

from licensing.kinds import CATALOGUE, GROUP_SUBJECT_KINDS, KIND_ORDER, SKU_SUBJECT_KINDS
from licensing.model import Finding, FindingKind, Severity
from licensing.rules import RULES

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(r"^\|\s*(?:<a id=\"(?P<anchor>\w+)\"></a>)?`(?P<kind>\w+)`\s*\|(?P<rest>.*)$", re.M)


def _rows(path: Path) -> dict[str, tuple[str | None, list[str]]]:
    rows = {}
    for m in _ROW.finditer(path.read_text(encoding="utf-8")):
        if m.group("kind") in CATALOGUE or (m.group("kind").islower() and "_" in m.group("kind")):
            cells = [c.strip() for c in m.group("rest").split("|")]
            rows[m.group("kind")] = (m.group("anchor"), [c for c in cells if c])
    return rows


def _severities(cell: str) -> set[Severity]:
    return {Severity(w) for w in re.findall(r"\b(critical|warning|info)\b", cell)}


def test_every_kind_is_in_the_catalogue_once_in_enum_order() -> None:
    assert list(CATALOGUE) == [k.value for k in FindingKind]
    assert sorted(s.section for s in CATALOGUE.values()) == list(range(len(CATALOGUE)))
    assert {k.value: i for i, k in enumerate(FindingKind)} == KIND_ORDER


def test_subjects_name_finding_fields_and_the_derived_sets_follow() -> None:
    fields = set(Finding.__dataclass_fields__)
    for entry in CATALOGUE.values():
        # An empty subject is a tenant-wide kind: one finding per tenant at most (p1_coverage_short).
        assert set(entry.subject) <= fields, entry.kind
    assert {k for k, s in CATALOGUE.items() if not s.subject} == {"p1_coverage_short"}
    assert {k for k, s in CATALOGUE.items() if s.subject == ("sku_id",)} == SKU_SUBJECT_KINDS
    assert {k for k, s in CATALOGUE.items() if s.subject == ("group_id",)} == GROUP_SUBJECT_KINDS


def test_rules_take_title_severity_and_remediation_from_the_catalogue() -> None:
    assert set(RULES) == set(CATALOGUE)
    for kind, rule in RULES.items():
        entry = CATALOGUE[kind]
        assert (rule.id, rule.title, rule.severity, rule.remediation) == (
            kind,
            entry.title,
            entry.severities[0],
            entry.remediation,
        )
        assert entry.remediation.strip() and entry.title.strip() and entry.digest_title.strip()


def test_docs_findings_md_has_one_row_per_kind_with_its_anchor_subject_and_severities() -> None:
    rows = _rows(ROOT / "docs" / "findings.md")
    assert set(rows) == set(CATALOGUE), "docs/findings.md and the catalogue disagree on the kinds"
    for kind, (anchor, cells) in rows.items():
        entry = CATALOGUE[kind]
        assert anchor == kind and entry.anchor == f"docs/findings.md#{kind}"
        subject = tuple(re.findall(r"\w+", cells[0].strip("`()")))
        assert subject == entry.subject, kind
        assert _severities(cells[-1]) == set(entry.severities), kind


def test_the_readme_table_has_one_row_per_kind_with_its_severities() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## What it finds", 1)[1].split("\n## ", 1)[0]
    rows = {
        m.group("kind"): [c.strip() for c in m.group("rest").split("|") if c.strip()] for m in _ROW.finditer(section)
    }
    assert set(rows) == set(CATALOGUE)
    for kind, cells in rows.items():
        assert _severities(cells[0]) == set(CATALOGUE[kind].severities), kind

"""licensing.configure.desired: the licensing-desired/1 file, its errors naming the line, the writer's YAML."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from licensing.configure.desired import DesiredStateError, dump_desired, parse_desired

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "licensing" / "data" / "desired.schema.json").read_text())
TENANT = "264aff9d-97aa-4d5f-8b63-ac1fa58f7dae"
GROUP = "44fd64f6-293c-41cc-b701-c4667119dc6a"

EXAMPLE = f"""schema: licensing-desired/1
tenant: {TENANT}
groups:
  - id: {GROUP}
    name: SG-Lic-M365-E3            # informative; the id is what counts
    licenses:
      - sku: SPE_E3                 # skuPartNumber or skuId
        disabled_plans: [YAMMER_ENTERPRISE]   # servicePlanName or servicePlanId
      - sku: EMS
direct_assignments:                 # direct licences kept on purpose (used by migrate, next issue)
  - user: 11111111-1111-4111-8111-111111111111
    sku: VISIOCLIENT
    reason: project managers buy Visio themselves
"""


def test_the_documented_example_parses_and_fits_the_schema() -> None:
    desired = parse_desired(EXAMPLE, "d.yaml")
    jsonschema.validate(yaml.safe_load(EXAMPLE), SCHEMA)
    assert desired.tenant == TENANT and desired.tenant_line == 2
    [group] = desired.groups
    assert group.id == GROUP and group.line == 4
    assert [(lic.sku, lic.disabled_plans, lic.line) for lic in group.licenses] == [
        ("SPE_E3", ("YAMMER_ENTERPRISE",), 7),
        ("EMS", (), 9),
    ]
    [direct] = desired.direct_assignments
    assert direct.sku == "VISIOCLIENT" and direct.line == 11


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    text = f"""schema: licensing-desired/2
tenant: not-a-guid
colour: blue
groups:
  - id: {GROUP}
    name: no licenses key
  - id: {GROUP}
    licenses:
      - sku: SPE_E3
      - sku: spe_e3
      - disabled_plans: [X]
"""
    with pytest.raises(DesiredStateError) as caught:
        parse_desired(text, "d.yaml")
    problems = caught.value.problems
    assert "d.yaml:1: schema must be licensing-desired/1" in problems
    assert any(p.startswith("d.yaml:2: tenant 'not-a-guid' is not a GUID") for p in problems)
    assert any(p.startswith("d.yaml:3: unknown key 'colour'") for p in problems)
    assert any(p.startswith("d.yaml:5: licenses is required") and "never means remove" in p for p in problems)
    assert "d.yaml:10: sku spe_e3 is listed twice in this group" in problems
    assert "d.yaml:11: a license needs its sku (skuPartNumber or skuId)" in problems
    assert any(p.startswith("d.yaml:7: group") and "listed twice" in p for p in problems)


def test_empty_licenses_is_the_explicit_removal() -> None:
    desired = parse_desired(
        f"schema: licensing-desired/1\ntenant: {TENANT}\ngroups:\n  - id: {GROUP}\n    licenses: []\n"
    )
    assert desired.groups[0].licenses == ()


def test_not_yaml_names_the_line() -> None:
    with pytest.raises(DesiredStateError) as caught:
        parse_desired("schema: licensing-desired/1\ngroups: [\n  - x\n", "d.yaml")
    assert caught.value.problems[0].startswith("d.yaml:")


def test_the_written_file_reads_back_the_same_names_with_spaces_and_markup_kept() -> None:
    odd = 'SG "Sales" #1: <b>EU</b>'
    text = dump_desired(TENANT, [(GROUP, odd, [("SPE_E3", ["YAMMER_ENTERPRISE"]), ("EMS", [])])], header=("hello",))
    assert text.startswith("# hello\n")
    desired = parse_desired(text)
    jsonschema.validate(yaml.safe_load(text), SCHEMA)
    assert desired.groups[0].name == odd
    assert [(lic.sku, lic.disabled_plans) for lic in desired.groups[0].licenses] == [
        ("SPE_E3", ("YAMMER_ENTERPRISE",)),
        ("EMS", ()),
    ]

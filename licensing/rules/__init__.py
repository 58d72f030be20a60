"""The audit rules: pure functions from a TenantSnapshot to findings (semantics: docs/findings.md).

from licensing.rules import RULES, Rule, RuleContext, Evaluation, evaluate
ev = evaluate(snapshot, RuleContext.from_settings(settings, now=..., history=..., processing_since=...))
"""

from __future__ import annotations

from licensing.rules.base import Rule, RuleContext, RuleResult, subject_of
from licensing.rules.registry import RULES, Evaluation, evaluate, sort_findings

__all__ = [
    "RULES",
    "Evaluation",
    "Rule",
    "RuleContext",
    "RuleResult",
    "evaluate",
    "sort_findings",
    "subject_of",
]

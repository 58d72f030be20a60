"""The writing wing: licensing as code (export, dry run, apply, verify, journal, rollback; reprocess, migrate) from an
admin's terminal.

Nothing here is reachable from the Function App: ``function_app.py``, ``licensing/pipeline`` and the triggers never
import this package (tests/unit/test_architecture.py holds it), and the app's identity has no write permission
(infra/). The admin's guide is docs/configure.md; the contracts (licensing-desired/1, licensing-apply/1, exit codes,
the journal) are in docs/design.md.
"""

from __future__ import annotations

from licensing.configure.desired import SCHEMA, DesiredState, DesiredStateError, parse_desired
from licensing.configure.identity import WriteCheck, probe_write, signed_in

__all__ = ["SCHEMA", "DesiredState", "DesiredStateError", "WriteCheck", "parse_desired", "probe_write", "signed_in"]

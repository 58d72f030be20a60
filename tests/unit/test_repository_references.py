"""Every repository file a comment, docstring, doc or template names exists (issue 17, item 10).

Twenty-odd citations pointed at ``DESIGN.md``, which was never in the repository: a reader following
them found nothing. This test reads every tracked text file, collects what looks like a repository path
(``licensing/…``, ``docs/…``, ``tests/…``, ``infra/…``, ``scripts/…``, ``bench/…``, ``.ci/…``, the
top-level files, ``*.md`` names in capitals, and relative Markdown links) and fails on any that is missing.
"""

from __future__ import annotations

import glob
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PATH = re.compile(
    r"(?<![\w/.-])("
    r"(?:licensing|docs|tests|infra|scripts|bench|\.ci)/[\w./*-]+"
    r"|function_app\.py|host\.json|requirements(?:-dev)?\.txt|azure\.yaml|pyproject\.toml|Makefile"
    r"|[A-Z][A-Z_-]+\.md"
    r")"
)
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_TEXT = (".py", ".md", ".bicep", ".bicepparam", ".ps1", ".sh", ".json", ".yaml", ".yml", ".toml", ".txt", ".j2")
# Paths that name something outside this repository or made at run time, on purpose.
_ELSEWHERE = {"DESIGN.md"}  # the project brief's file, named once in docs/design.md as where it came from


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / f for f in out.split() if f.endswith(_TEXT) or f in ("Makefile", ".ci/run")]


def _exists(ref: str, base: Path) -> bool:
    ref = ref.rstrip(".,:;")
    for root in (ROOT, base):
        if "*" in ref:
            if glob.glob(str(root / ref), recursive=True):
                return True
        elif (root / ref).exists():
            return True
    return False


def test_every_named_repository_file_exists() -> None:
    missing: dict[str, set[str]] = {}
    for path in _tracked():
        if "fixtures" in path.parts or "node_modules" in path.parts:
            continue  # Microsoft's published bodies are verbatim
        text = path.read_text(encoding="utf-8", errors="replace")
        refs = {m.group(1) for m in _PATH.finditer(text)}
        if path.suffix == ".md":
            refs |= {m.group(1) for m in _LINK.finditer(text) if "://" not in m.group(1)}
        for ref in refs:
            if ref.rstrip(".,:;") in _ELSEWHERE and path.name in ("design.md", Path(__file__).name):
                continue
            if not _exists(ref, path.parent):
                missing.setdefault(ref, set()).add(str(path.relative_to(ROOT)))
    assert not missing, "named but not in the repository: " + "; ".join(
        f"{ref} (in {', '.join(sorted(where))})" for ref, where in sorted(missing.items())
    )

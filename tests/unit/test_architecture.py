"""The shape of licensing/: no import cycle (typed imports count), and docs/design.md's drawing is the truth.

Issue 17: ``audit.py`` and ``fanout.py`` imported each other (one of them under TYPE_CHECKING). A typed
dependency is a dependency, so every ``import`` statement in the source is read, wherever it is.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "licensing"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the licensing modules it imports (``from pkg import module`` resolves to the module)."""

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                # ``from pkg import module`` depends on the module; ``from pkg import name`` on pkg itself.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                if target.startswith("licensing"):
                    resolved = known(target)
                    if resolved and resolved != name:
                        out.add(resolved)
        edges[name] = out
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _packages(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """``licensing.pipeline.run`` -> ``pipeline``: the arrows between the parts docs/design.md draws."""

    def top(module: str) -> str:
        return module.split(".")[1] if "." in module else module

    out: dict[str, set[str]] = {}
    for source, targets in edges.items():
        if source == "licensing":
            continue
        for target in targets:
            if target != "licensing" and top(source) != top(target):
                out.setdefault(top(source), set()).add(top(target))
    return out


def _drawing() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("## The packages and their arrows", 1)[1].split("```", 2)[1]
    drawn: dict[str, set[str]] = {}
    for line in section.splitlines():
        if "►" not in line:
            continue
        left, right = line.split("►", 1)
        sources = [s.strip() for s in re.sub("─", "", left).split(",") if s.strip()]
        targets = {t.strip() for t in right.split(",") if t.strip()}
        for source in sources:
            drawn.setdefault(source, set()).update(targets)
    return drawn


def test_no_module_imports_itself_back() -> None:
    assert _cycles(_imports(_modules())) == []


def test_no_cycle_among_the_packages() -> None:
    assert _cycles(_packages(_imports(_modules()))) == []


def test_the_drawing_in_docs_design_matches_the_imports() -> None:
    actual = _packages(_imports(_modules()))
    drawn = _drawing()
    undrawn = sorted(f"{s} -> {t}" for s, ts in actual.items() for t in ts - drawn.get(s, set()))
    unused = sorted(f"{s} -> {t}" for s, ts in drawn.items() for t in ts - actual.get(s, set()))
    assert not undrawn, f"imports docs/design.md does not draw: {undrawn}"
    assert not unused, f"arrows in docs/design.md that no import makes: {unused}"


def test_the_cycle_detector_sees_a_typed_cycle() -> None:
    """The checker itself: a TYPE_CHECKING import back is a cycle."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_module_is_over_600_lines_and_each_names_its_concern() -> None:
    """Issue 17, item 6: one concern per module, told in its first docstring line."""
    too_long, undocumented = [], []
    for name, path in sorted(_modules().items()):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 600:
            too_long.append(f"{name} ({text.count(chr(10))} lines)")
        doc = ast.get_docstring(ast.parse(text))
        if not doc or not doc.splitlines()[0].strip():
            undocumented.append(name)
    assert not too_long, f"modules over 600 lines: {too_long}"
    assert not undocumented, f"modules without a first docstring line: {undocumented}"


def test_the_simulated_tenant_reads_the_wall_clock_only_where_a_server_would() -> None:
    # The tenant's now is its as_of (generate_tenant): what the audit judges never follows the day the tests run.
    # The server's own clock is read only for what a server stamps with it: the error's innerError.date
    # (metering.py) and an HTTP-date Retry-After (wire.py), which the client compares with its own clock.
    readers = sorted(
        path.name
        for path in (ROOT / "licensing" / "sandbox").rglob("*.py")
        if re.search(r"datetime\.(now|utcnow)\(|date\.today\(|time\.time\(", path.read_text(encoding="utf-8"))
    )
    assert readers == ["metering.py", "wire.py"]


def test_one_clock_outside_the_simulated_tenant() -> None:
    # licensing/clock.py is the one UTC now the app reads (tests inject another); the sandbox plays
    # Microsoft's servers and takes its now from the tenant it serves (the test above).
    direct = sorted(
        str(path.relative_to(ROOT))
        for path in [*(ROOT / "licensing").rglob("*.py"), ROOT / "function_app.py"]
        if "sandbox" not in path.parts
        and path.name != "clock.py"
        and re.search(r"datetime\.(now|utcnow)\(", path.read_text(encoding="utf-8"))
    )
    assert direct == []


def _reach(edges: dict[str, set[str]], start: set[str]) -> set[str]:
    seen, stack = set(start), list(start)
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _function_app_imports(mods: dict[str, Path]) -> set[str]:
    """What function_app.py (outside the package; the triggers) imports of licensing, lazily or not."""
    out: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module for a in node.names
            ]
        for imported in names:
            known = imported
            while known and known not in mods:
                known = known.rpartition(".")[0]
            if known:
                out.add(known)
    return out


def test_the_triggers_and_the_pipeline_never_reach_the_writing_code() -> None:
    """Issue 28: nothing that writes is reachable from the queue or the timer. function_app.py (every trigger) and
    every module of licensing/pipeline, followed through every import (typed and lazy ones too), never arrive at
    licensing/configure, where assignLicense is called."""
    mods = _modules()
    edges = _imports(mods)
    starts = _function_app_imports(mods) | {m for m in mods if m.startswith("licensing.pipeline")}
    assert "licensing.pipeline" in starts and any(m.startswith("licensing.settings") for m in starts)
    reached = _reach(edges, starts)
    assert not sorted(m for m in reached if m.startswith("licensing.configure"))
    # The checker itself: the CLI does reach it.
    assert "licensing.configure.writer" in _reach(edges, {"licensing.cli"})


def test_assign_license_is_called_from_the_writing_wing_alone() -> None:
    """One writing wing: no other module of the package builds a request to the write endpoint (the sandbox serves
    it; remediation texts may name it for an admin)."""
    callers = sorted(
        name
        for name, path in _modules().items()
        if re.search(r"""f["'][^"']*/assignLicense""", path.read_text(encoding="utf-8"))
        and not name.startswith(("licensing.configure", "licensing.sandbox"))
        and name != "licensing.graph.responses"  # its 403 names the permission the writer needs
    )
    assert callers == []

"""Round two of the hostile-input suite (issue 16): each test reproduces a break that held before its fix."""

from __future__ import annotations

import ast
import asyncio
import base64
import random
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import httpx
import pytest

from licensing.errors import GraphResponseError
from licensing.graph import GraphClient, RetryPolicy
from licensing.pipeline.requests import decode_message
from licensing.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class NoSleep:
    async def __call__(self, seconds: float) -> None:
        return None


def test_a_page_that_links_to_itself_is_refused_not_read_until_the_timeout() -> None:
    """Item 6: items plus its own URL as @odata.nextLink read 892 requests in 45 s before the fix."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json={"value": [{"id": "u1"}], "@odata.nextLink": str(request.url)})

    async def main() -> None:
        client = GraphClient(
            Settings(graph_base_url="http://127.0.0.1:9/v1.0"),
            credential="none",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            retry=RetryPolicy(sleep=NoSleep(), rng=random.Random(1)),
        )
        try:
            await client.get_collection("/users?$top=1", route="/users")
        finally:
            await client.aclose()

    with pytest.raises(GraphResponseError, match="already read"):
        asyncio.run(main())
    assert calls == 2


@pytest.mark.parametrize("encode", [False, True], ids=["plain", "base64"])
def test_a_utf8_bom_before_the_json_is_accepted(encode: bool) -> None:
    """Item 16: PowerShell and .NET writers put a byte order mark first; it was 'neither JSON nor base64'."""
    raw = b'\xef\xbb\xbf{"scope": "tenant", "requested_by": "runbook"}'
    body = base64.b64encode(raw) if encode else raw
    assert decode_message(body) == {"scope": "tenant", "requested_by": "runbook"}


def test_azurite_is_started_without_telemetry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Item 12: Azurite collects telemetry unless told not to, which is an outbound connection."""
    import subprocess

    from licensing import emulator

    seen: list[list[str]] = []

    class Stop(Exception):
        pass

    def fake_popen(args: list[str], *a: Any, **kw: Any) -> Any:
        seen.append(list(args))
        raise Stop

    monkeypatch.setattr(emulator, "find_azurite", lambda *a, **k: tmp_path / "azurite")
    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    with pytest.raises(Stop):
        emulator.Azurite().start()
    assert seen and "--disableTelemetry" in seen[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _closure(names: set[str]) -> set[str]:
    """The declared distributions and everything they require (what a runtime-only install brings)."""
    from importlib.metadata import PackageNotFoundError, requires

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        for req in reqs:
            if "extra ==" in req:
                continue
            todo.append(re.split(r"[<>=!~\[; (]", req.strip(), maxsplit=1)[0].lower().replace("_", "-"))
    return seen


def test_every_third_party_import_of_the_runtime_is_declared_in_requirements() -> None:
    """Item 13: licensing/cli.py imported click, which only the dev tools brought in (recent typer does not)."""
    declared = {
        re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
        for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    installed = _closure(declared)
    sources = [ROOT / "function_app.py", *(ROOT / "licensing").rglob("*.py")]
    modules = set().union(*(_imports(p) for p in sources)) - set(sys.stdlib_module_names) - {"licensing", "bench"}
    owners = packages_distributions()
    missing = {}
    for module in sorted(modules):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        if not dists & installed:
            missing[module] = sorted(dists)
    assert not missing, f"imported but not installed by requirements.txt: {missing}"
    # click is imported directly, so it must be declared directly, not merely arrive with another package.
    assert "click" in declared


# ------------------------------------------------------------------ item 1: no false all-clear


def _tenant_run(settings: Settings, store: Any, request_id: str) -> Any:
    from licensing.model import AuditRequest, Scope, Trigger
    from licensing.pipeline.run import run_audit
    from licensing.pipeline.runtime import Runtime

    request = AuditRequest(scope=Scope.TENANT, trigger=Trigger.QUEUE, request_id=request_id)
    return asyncio.run(run_audit(request, Runtime(settings, store=store, credential="none"), alerts=True))


class _EmptyGraph:
    """A loopback server answering every request with an empty collection: where a hostile 302 points."""

    def __init__(self) -> None:
        import http.server
        import threading

        hits: list[str] = []
        self.hits = hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                body = b'{"value": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.azurite
@pytest.mark.parametrize("break_it", ["empty_answer", "redirect"])
def test_an_empty_or_redirected_sku_answer_is_partial_and_resolves_nothing(
    break_it: str, sandbox: Any, store: Any, storage_connection: str, webhook: Any, graph_sleeps: Any,
    alert_sleeps: Any,
) -> None:  # fmt: skip
    """Item 1: a 302 to another host (kiota followed it) or one empty subscribedSkus answer made the run
    'succeeded', resolved every open SKU alert and sent 'nothing open (7 resolved)' to Teams."""
    from licensing.model import RunStatus
    from licensing.sandbox import FaultRule, Faults
    from tests.reliability.conftest import SEAT_KINDS, make_settings

    settings = make_settings(sandbox, storage=storage_connection, webhook_url=webhook.url)
    first = _tenant_run(settings, store, f"clear-{break_it}-1")
    tenant = first.report.run.tenant_id
    open_before = {s.finding_id for s in store.alert_states(tenant, open_only=True).values() if s.kind in SEAT_KINDS}
    assert open_before, "the sandbox tenant has open SKU findings"
    cards_before = len(webhook.accepted)

    target = _EmptyGraph()
    try:
        rule = (
            FaultRule("empty_answer", "subscribedSkus")
            if break_it == "empty_answer"
            else FaultRule("redirect", "subscribedSkus", location=target.origin)
        )
        sandbox.set_faults(Faults(rules=(rule,)))
        second = _tenant_run(settings, store, f"clear-{break_it}-2")
    finally:
        target.close()
    run = second.report.run
    assert run.status is RunStatus.PARTIAL
    assert any("skus" in e for e in run.errors), run.errors
    if break_it == "redirect":
        assert target.hits == [], "the redirect was followed"
        assert any("redirect" in e and "not followed" in e for e in run.errors), run.errors
    else:
        assert any("not trusted" in e for e in run.errors), run.errors
    still_open = {s.finding_id for s in store.alert_states(tenant, open_only=True).values() if s.kind in SEAT_KINDS}
    assert open_before <= still_open, "an unreadable SKU list resolved SKU alerts"
    assert second.delivery is not None and second.delivery.plan is not None
    assert not [s for s in second.delivery.plan.resolved if s.kind in SEAT_KINDS]
    assert all(b"nothing open" not in body.lower() for body in webhook.accepted[cards_before:])


# ------------------------------------------------------------------ item 13: the runtime set alone


@pytest.mark.slow
def test_the_runtime_set_alone_runs_the_cli_and_imports_the_function_app(tmp_path: Path) -> None:
    """Item 13: ``pip install .`` gave a ``licensing-audit`` that died with ModuleNotFoundError (click)."""
    import shutil
    import subprocess

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md", "function_app.py", "host.json"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "licensing", source / "licensing", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")

    def run(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(Path.home()), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)

    for step in (
        (python, "-m", "pip", "install", "-q", "--upgrade", "pip"),
        (python, "-m", "pip", "install", "-q", str(source)),  # the runtime set: requirements.txt, nothing else
    ):
        done = run(*step)
        assert done.returncode == 0, done.stderr[-2000:]
    dev_tools = run(
        python, "-c", "import importlib.util as u; print([m for m in ('pytest','ruff','mypy') if u.find_spec(m)])"
    )
    assert dev_tools.stdout.strip() == "[]", "the runtime set must not bring the dev tools"
    cli = run(str(venv / "bin" / "licensing-audit"), "--help")
    assert cli.returncode == 0 and "Usage" in cli.stdout, cli.stderr[-2000:]
    # Four triggers: the timer, the two queues and the report's HTTP GET.
    app = run(python, "-c", "import function_app; print(len(function_app.app.get_functions()))", cwd=source)
    assert app.returncode == 0 and app.stdout.strip() == "4", app.stderr[-2000:]
    # The installed package carries its templates (the mail's and the report's) and data files.
    files = run(
        python, "-c",
        "import licensing, pathlib; p = pathlib.Path(licensing.__file__).parent; "
        "print(all((p / f).is_file() for f in ('alerts/templates/mail.html.j2', 'report/templates/report.html.j2',"
        " 'data/sku_names.csv', 'data/report.schema.json')))",
    )  # fmt: skip
    assert files.stdout.strip() == "True", files.stderr[-2000:]

"""The Azure Functions triggers: each parses its input and hands over to licensing/ (nothing else lives here).

Importing this module stays cheap (cold start): Graph, storage, report and telemetry-exporter
code is imported inside the handlers. Bad settings stop start-up with one line naming them.
"""

from __future__ import annotations

import logging

import azure.functions as func

from licensing import telemetry
from licensing.errors import ConfigurationError
from licensing.settings import get_settings, misspelled

try:
    settings = get_settings()
except ConfigurationError as exc:
    # One line that names every bad setting, logged where the host shows it; the exception raised here has
    # no inner frames or chained cause, so the host's "failed to index" entry is that same line.
    logging.getLogger("function_app").critical("licensing-audit cannot start: %s", exc)
    raise ConfigurationError(f"licensing-audit cannot start: {exc}") from None
# Inside Azure the worker exports telemetry; this adds trace ids and secret redaction to log records.
telemetry.configure(settings)
# A misspelled setting is otherwise silent (a webhook that never alerts): name each, with the nearest real name.
for _typo in misspelled():
    logging.getLogger("function_app").warning("licensing-audit: %s", _typo)
# The bindings read their connection from this app setting prefix (identity-based forms included).
STORAGE_CONNECTION = settings.storage.source if settings.storage else "AzureWebJobsStorage"

app = func.FunctionApp()


@app.timer_trigger(schedule=settings.audit_schedule, arg_name="timer", run_on_startup=False, use_monitor=True)
def audit_schedule(timer: func.TimerRequest) -> None:
    """Nightly: enqueue one tenant audit for this scheduled occurrence (the queue runs it)."""
    from licensing.pipeline.handlers import handle_timer

    handle_timer(settings, past_due=timer.past_due)


@app.queue_trigger(arg_name="message", queue_name=settings.audit_queue, connection=STORAGE_CONNECTION)
async def audit_request(message: func.QueueMessage) -> None:
    """On demand and nightly: validate the request and run its audit (or reject it with a reason)."""
    from licensing.pipeline.handlers import handle_audit_message
    from licensing.pipeline.runtime import open_runtime

    await handle_audit_message(
        message.get_body(), open_runtime(settings), message_id=message.id, dequeue_count=message.dequeue_count or 1
    )


@app.queue_trigger(arg_name="message", queue_name=settings.audit_chunk_queue, connection=STORAGE_CONNECTION)
async def audit_chunk(message: func.QueueMessage) -> None:
    """Large tenants: read one chunk of licensed groups of a fanned-out audit; the last chunk in concludes it."""
    from licensing.pipeline.handlers import handle_chunk_message
    from licensing.pipeline.runtime import open_runtime

    await handle_chunk_message(
        message.get_body(), open_runtime(settings), message_id=message.id, dequeue_count=message.dequeue_count or 1
    )


@app.route(route="reports/{tenant}/{run}/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def report(req: func.HttpRequest) -> func.HttpResponse:
    """The alerts' "Full report" link: a published report, to a reader signed in through App Service authentication
    (the route's own check, not a function key: a key in a Teams card would be a secret in a message)."""
    from licensing.pipeline.viewer import serve_report

    params = req.route_params
    answer = serve_report(
        settings, req.headers, params.get("tenant", ""), params.get("run", ""), params.get("name", "")
    )
    return func.HttpResponse(
        answer.body, status_code=answer.status, headers=dict(answer.headers), mimetype=answer.content_type.split(";")[0]
    )

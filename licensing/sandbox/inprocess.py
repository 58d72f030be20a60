"""The sandbox's request pipeline as an in-process httpx transport: the real Graph client, no socket, no thread."""

from __future__ import annotations

import httpx

from licensing.sandbox.graph_api import GraphApp, Request
from licensing.sandbox.tenant import SandboxTenant

__all__ = ["in_process_transport"]


def in_process_transport(tenant: SandboxTenant, base_url: str) -> httpx.MockTransport:
    """Requests to ``base_url`` answered by a GraphApp of ``tenant`` (next links point back at ``base_url``)."""
    app = GraphApp(tenant)
    app.base_url = base_url.rstrip("/")

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        answer = app.handle(Request(request.method, request.url.raw_path.decode(), headers, request.content))
        return httpx.Response(
            answer.status, content=answer.body, headers=[*answer.headers, ("content-type", answer.content_type)]
        )

    return httpx.MockTransport(handler)

"""The sandbox's request pipeline as an in-process httpx transport: the real Graph client, no socket, no thread."""

from __future__ import annotations

import httpx

from licensing.model import AuditRequest, Scope, TenantSnapshot, Trigger
from licensing.sandbox.graph_api import GraphApp, Request
from licensing.sandbox.tenant import SandboxTenant
from licensing.settings import Settings

__all__ = ["in_process_transport", "read_in_process"]


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


def read_in_process(tenant: SandboxTenant) -> TenantSnapshot:
    """The tenant as the real reader reads it (tenant scope), over :func:`in_process_transport`."""
    import asyncio

    from licensing.graph import GraphClient, read_snapshot

    settings = Settings(graph_base_url="http://127.0.0.1:9/v1.0")  # loopback: never connected to

    async def read() -> TenantSnapshot:
        transport = httpx.AsyncClient(transport=in_process_transport(tenant, settings.graph_base_url))
        client = GraphClient(settings, credential="none", http_client=transport)
        try:
            return await read_snapshot(client, AuditRequest(scope=Scope.TENANT, trigger=Trigger.CLI))
        finally:
            await client.aclose()

    return asyncio.run(read())

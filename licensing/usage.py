"""From the command line to settings and requests: the flags laid over the environment, @FILE connection strings,
typos among the environment's setting names, and errors that name the flags (``--group``), not internal fields."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from licensing.errors import BadRequestError, ConfigurationError
from licensing.settings import Settings, load_settings, misspelled

__all__ = ["command_settings", "one_sku_each", "store_option", "validated_request"]


def command_settings(
    *,
    graph_url: str | None = None,
    cloud: str | None = None,
    tenant_id: str | None = None,
    store: str | None = None,
) -> Settings:
    """The settings from the environment with the command line's overrides, validated together; a variable that
    looks like a setting but is none (a typo) is named on stderr with the nearest real name."""
    env = dict(os.environ)
    for line in misspelled(env):
        print(f"licensing-audit: warning: {line}", file=sys.stderr)  # noqa: T201
    store = store_option(store)
    if cloud:
        env["GRAPH_CLOUD"] = cloud
        env.pop("GRAPH_BASE_URL", None)
    if graph_url:
        env["GRAPH_BASE_URL"] = graph_url
    if tenant_id:
        env["AZURE_TENANT_ID"] = tenant_id
    if store and store.lower() != "none":
        env["LICENSING_STORAGE"] = store
    try:
        settings = load_settings(env)
    except ConfigurationError as exc:
        # A value given on the command line is named by its flag (the setting it overrides stays in brackets).
        text = str(exc)
        for given, flag, name in ((graph_url, "--graph-url", "GRAPH_BASE_URL"), (cloud, "--cloud", "GRAPH_CLOUD")):
            if given:
                text = text.replace(f"{name}=", f"{flag} ({name})=")
        if tenant_id:
            text = text.replace("AZURE_TENANT_ID=", "--tenant-id (AZURE_TENANT_ID)=")
        raise ConfigurationError(text) from None
    if store and store.lower() == "none":
        settings = replace(settings, storage=None)
    return settings


def store_option(store: str | None) -> str | None:
    """``--store``: a connection string, ``none``, or ``@FILE`` holding it (keeps it out of shell history)."""
    if store is None or not store.startswith("@"):
        return store
    path = Path(store[1:]).expanduser()
    try:
        value = path.read_text(encoding="utf-8-sig").strip()
    except OSError as exc:
        raise ConfigurationError(
            f"--store @{path}: cannot read the file ({exc.strerror or type(exc).__name__})"
        ) from None
    if not value:
        raise ConfigurationError(f"--store @{path}: the file is empty")
    return value


def one_sku_each(skus: list[str] | None) -> None:
    """``--sku SPE_E3,EMS``: one SKU per flag (a part number never has a comma); say how to name several."""
    for value in skus or ():
        if "," in value or ";" in value:
            parts = [p.strip() for p in re.split(r"[,;]", value) if p.strip()]
            raise ConfigurationError(
                f"--sku {value!r}: one SKU per --sku; repeat it: " + " ".join(f"--sku {p}" for p in parts)
            )


# The queue message's field names, as the command line spells them (an error names the flag, not the field).
_FLAGS: dict[str, str] = {
    "group_id": "--group",
    "skus": "--sku",
    "sku": "--sku",
    "scope": "--scope",
    "request_id": "--request-id",
    "requested_by": "--requested-by",
}
# A field name after "is" is a value ("when scope is sku"), not a field: it keeps its spelling.
_FIELD_NAMES = re.compile(r"(?<![\w-])(?<!\bis )(" + "|".join(_FLAGS) + r")(?![\w-])")


def validated_request(fields: dict[str, Any]) -> Any:
    """The validated request of ``run``/``enqueue``; its errors name the flags (``--group``), not the fields."""
    from licensing.pipeline.requests import validate_request

    try:
        return validate_request(fields)
    except BadRequestError as exc:
        raise BadRequestError(_FIELD_NAMES.sub(lambda m: _FLAGS[m.group(1)], str(exc))) from None

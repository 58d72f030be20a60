"""Environment variables that look like one of our settings but are not (``ALERT_MIN_SEVERTY``, ``FORCAST_DAYS``), each
named with the nearest real setting: a misspelled webhook setting would otherwise mean no alerts, ever, silently.

Typos are warnings, not errors: the app still starts (the name may belong to something else that shares a prefix).
The CLI prints them on stderr before any work; ``function_app`` logs them at WARNING at start-up.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["STORAGE_SUFFIXES", "misspelled_settings"]

# The identity-based storage forms read after LICENSING_STORAGE / AzureWebJobsStorage (licensing/settings).
STORAGE_SUFFIXES: Final = (
    "accountName",
    "tableServiceUri",
    "queueServiceUri",
    "blobServiceUri",
    "credential",
    "clientId",
)
# Read from the platform, not declared as settings.
_PLATFORM: Final = frozenset({"WEBSITE_SITE_NAME", "WEBSITE_INSTANCE_ID", "FUNCTIONS_WORKER_RUNTIME"})
# Prefixes shared with the rest of the world (azure-identity's AZURE_*, OpenTelemetry's OTEL_*, the Functions host's
# APPLICATIONINSIGHTS_*): a name there is ours only when it is very close to one of ours.
_SHARED_PREFIXES: Final = frozenset({"AZURE", "OTEL", "APPLICATIONINSIGHTS", "PYTHON", "WEBSITE", "FUNCTIONS"})
# Variables of other tools that are near one of ours by spelling (azure-identity reads these).
_FOREIGN: Final = frozenset(
    {
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
        "AZURE_AUTHORITY_HOST",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_USERNAME",
        "AZURE_PASSWORD",
        "AZURE_REGIONAL_AUTHORITY_NAME",
        "AZURE_TOKEN_CREDENTIALS",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_ENV_NAME",
        "AZURE_LOCATION",
        "AZURE_PRINCIPAL_ID",
        "AZURE_PRINCIPAL_TYPE",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
        "PYTHON_ENABLE_OPENTELEMETRY",
    }
)
_CUTOFF: Final = 0.8


def _known(declared: Iterable[str]) -> frozenset[str]:
    names = set(declared) | _PLATFORM | {"AzureWebJobsStorage"}
    for prefix in ("LICENSING_STORAGE", "AzureWebJobsStorage"):
        names.update(f"{prefix}__{suffix}" for suffix in STORAGE_SUFFIXES)
    return frozenset(names)


def _prefix(name: str) -> str:
    return name.split("_", 1)[0].upper()


def misspelled_settings(env: Mapping[str, str], declared: Iterable[str]) -> list[str]:
    """One line per variable of ``env`` that looks like one of ``declared`` (or a storage form) but is none of them,
    with the nearest real name: ``ALERT_MIN_SEVERTY is not a setting (ignored): did you mean ALERT_MIN_SEVERITY?``."""
    known = _known(declared)
    by_upper = {name.upper(): name for name in known}
    ours = {_prefix(name) for name in known} - _SHARED_PREFIXES - {"AZUREWEBJOBSSTORAGE"}
    lines = []
    for name in sorted(env):
        if name in known or name in _FOREIGN:
            continue
        upper = name.upper()
        nearest = difflib.get_close_matches(upper, list(by_upper), n=1, cutoff=_CUTOFF)
        looks_ours = (
            bool(nearest) or _prefix(name) in ours or upper.startswith(("LICENSING_STORAGE", "AZUREWEBJOBSSTORAGE__"))
        )
        if not looks_ours:
            continue
        if upper.startswith("AZUREWEBJOBSSTORAGE__") and upper not in by_upper:
            continue  # the Functions host reads more connection forms than we do (e.g. __serviceUri)
        suggestion = by_upper[upper] if upper in by_upper else (by_upper[nearest[0]] if nearest else None)
        hint = (
            f": did you mean {suggestion}?" if suggestion else ": no setting has that name (see the README's settings)"
        )
        lines.append(f"{name} is not a setting (ignored){hint}")
    return lines

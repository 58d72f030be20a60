"""Every setting of the app, declared once (env name, default, parser, what it expects, what it means), read
once from the environment and validated, every problem reported at once.

Code receives a :class:`Settings` (or the part of it it needs); the only other reader of ``os.environ``
is the CLI (licensing.usage), which copies it to lay its command-line overrides over it before calling
:func:`load_settings`. Secrets are held in :class:`Secret`, whose ``repr``/``str`` never shows the value.
The README's settings table is held to the declarations by ``tests/unit/test_settings.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from licensing.errors import ConfigurationError, redact_url
from licensing.model import Severity
from licensing.settings.values import (
    connection_string_problem,
    is_guid,
    is_loopback_url,
    parse_any_url,
    parse_container,
    parse_currency,
    parse_emails,
    parse_graph_url,
    parse_guid,
    parse_guids,
    parse_host_name,
    parse_http_url,
    parse_one_email,
    parse_platform_flag,
    parse_prices,
    parse_queue,
    parse_schedule,
    parse_skus,
)

__all__ = [
    "CLOUDS",
    "DEFAULT_EXPECTED_GROUP_SKUS",
    "CloudEndpoints",
    "Secret",
    "Settings",
    "StorageConnection",
    "declared",
    "get_settings",
    "is_guid",
    "is_loopback_url",
    "load_settings",
    "misspelled",
]

T = TypeVar("T")


class Secret:
    """A secret string (webhook URL, connection string): never shown by ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class CloudEndpoints:
    """Where Graph, sign-in, the Entra admin center and the Microsoft 365 admin center live for one national cloud."""

    name: str
    graph: str  # scheme + host, no path
    authority: str
    portal: str  # Entra admin center: users and group membership
    # Microsoft 365 admin center: license assignment and reprocessing (the Entra admin center no longer assigns
    # licenses since September 2024: https://learn.microsoft.com/entra/identity/users/licensing-admin-center).
    m365_admin: str = "https://admin.microsoft.com"


# Graph national cloud deployments: https://learn.microsoft.com/graph/deployments
CLOUDS: Final[Mapping[str, CloudEndpoints]] = {
    "global": CloudEndpoints(
        "global", "https://graph.microsoft.com", "https://login.microsoftonline.com", "https://entra.microsoft.com"
    ),
    "usgov": CloudEndpoints(
        "usgov",
        "https://graph.microsoft.us",
        "https://login.microsoftonline.us",
        "https://entra.microsoft.us",
        "https://portal.office365.us",
    ),
    "usgovdod": CloudEndpoints(
        "usgovdod",
        "https://dod-graph.microsoft.us",
        "https://login.microsoftonline.us",
        "https://entra.microsoft.us",
        "https://portal.apps.mil",
    ),
    "china": CloudEndpoints(
        "china",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://login.chinacloudapi.cn",
        "https://portal.azure.cn",
        "https://portal.partner.microsoftonline.cn",
    ),
}

# Office 365 E3/E5, EMS E3/E5, Microsoft 365 E3/E5 (string ids from Microsoft's product-names table).
DEFAULT_EXPECTED_GROUP_SKUS: Final = ("ENTERPRISEPACK", "ENTERPRISEPREMIUM", "EMS", "EMSPREMIUM", "SPE_E3", "SPE_E5")


@dataclass(frozen=True, slots=True)
class StorageConnection:
    """How to reach Table/Queue Storage: a connection string, or service URIs plus a token credential."""

    connection_string: Secret | None = None
    table_uri: str | None = None
    queue_uri: str | None = None
    blob_uri: str | None = None  # where the published reports go (REPORT_CONTAINER)
    credential: str | None = None  # "managedidentity" or None (DefaultAzureCredential)
    client_id: str | None = None  # user-assigned identity for the storage credential
    source: str = ""  # name of the setting it came from, for messages

    @property
    def is_development(self) -> bool:
        cs = self.connection_string.reveal() if self.connection_string else ""
        return "UseDevelopmentStorage=true" in cs or "127.0.0.1" in cs or "localhost" in cs


@dataclass(frozen=True, slots=True)
class Declared:
    """One setting: its app-setting name, how its value is parsed (None: read by code of its own below), what a
    valid value looks like (for the error line), and what it means (the README's table)."""

    env: str
    parse: Callable[[str], Any] | None
    expected: str
    doc: str


def _setting(env: str, default: Any, parse: Callable[[str], Any] | None, expected: str, doc: str) -> Any:
    return field(default=default, metadata={"setting": Declared(env, parse, expected, doc)})


def _whole(env: str, default: int | None, low: int, high: int, doc: str) -> Any:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError
        return value

    return _setting(env, default, parse, f"a whole number from {low} to {high}", doc)


def _number(env: str, default: float, low: float, high: float, doc: str) -> Any:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:  # also rejects nan
            raise ValueError
        return value

    return _setting(env, default, parse, f"a number from {low:g} to {high:g}", doc)


DEFAULT_RENOTIFY_HOURS_CRITICAL: Final = 24  # seats running out: every night until fixed
DEFAULT_RENOTIFY_HOURS_WARNING: Final = 168  # the rest: once a week, so a daily digest is news, not a repeat
_QUEUE: Final = "a queue name (3-63 lowercase letters, digits, single hyphens)"
_SKUS: Final = "SKU part numbers or skuId GUIDs separated by commas"
_MAILS: Final = "e-mail addresses separated by , or ;"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every app setting, typed and declared once. Build with :func:`load_settings`; ``repr`` masks secrets."""

    audit_schedule: str = _setting(
        "AUDIT_SCHEDULE",
        "0 30 2 * * *",
        parse_schedule,
        "an NCRONTAB expression of 6 valid fields that fires within a year, e.g. '0 30 2 * * *'",
        "NCRONTAB (six fields, UTC: Linux plans ignore time zones)",
    )
    audit_queue: str = _setting("AUDIT_QUEUE", "license-audit-requests", parse_queue, _QUEUE, "the request queue")
    audit_chunk_queue: str = _setting(
        "AUDIT_CHUNK_QUEUE", "license-audit-chunks", parse_queue, _QUEUE, "the fan-out chunk queue"
    )
    graph_cloud: str = _setting(
        "GRAPH_CLOUD", "global", None, "one of global, usgov, usgovdod, china", "the national cloud of Graph"
    )
    graph_base_url: str = _setting(
        "GRAPH_BASE_URL",
        "https://graph.microsoft.com/v1.0",
        None,
        "an https URL ending in /v1.0, with a valid host and port, no user info, query or fragment "
        "(http only for loopback)",
        "an explicit Graph URL (default: the cloud's .../v1.0)",
    )
    graph_max_concurrency: int = _whole("GRAPH_MAX_CONCURRENCY", 8, 1, 64, "concurrent Graph requests")
    azure_client_id: str | None = _setting(
        "AZURE_CLIENT_ID",
        None,
        parse_guid,
        "a GUID (the user-assigned identity's client id)",
        "the user-assigned managed identity",
    )
    azure_tenant_id: str | None = _setting("AZURE_TENANT_ID", None, parse_guid, "a GUID", "the audited tenant")
    storage: StorageConnection | None = _setting(
        "LICENSING_STORAGE",
        None,
        None,
        "a storage connection string or the identity-based form",
        "storage (else AzureWebJobsStorage)",
    )
    seat_min_free: int = _whole("SEAT_MIN_FREE", 5, 0, 1_000_000, "the seat_low threshold (seats)")
    seat_min_free_pct: float = _number("SEAT_MIN_FREE_PCT", 5.0, 0, 100, "the seat_low threshold (% of enabled)")
    forecast_days: int = _whole("FORECAST_DAYS", 30, 7, 365, "horizon of seat_forecast")
    sku_prices: tuple[tuple[str, float], ...] = _setting(
        "SKU_PRICES",
        (),
        parse_prices,
        "SKU=price pairs (numbers from 0 to 1000000) separated by commas, or the path of a sku,price CSV file "
        "(a regular file, at most 1 MiB)",
        "monthly price per seat, for the cost of unused, reclaimable and missing seats",
    )
    sku_price_currency: str = _setting(
        "SKU_PRICE_CURRENCY", "USD", parse_currency, "a three-letter currency code", "the currency of SKU_PRICES"
    )
    inactive_days: int = _whole(
        "INACTIVE_DAYS", 90, 1, 3650, "inactive_user_licensed: days without a sign-in (needs AuditLog.Read.All)"
    )
    renewal_warn_days: int = _whole(
        "RENEWAL_WARN_DAYS", 30, 1, 365, "subscription_renewal: days before a subscription's next lifecycle date"
    )
    renewal_watch_skus: tuple[str, ...] = _setting(
        "RENEWAL_WATCH_SKUS", (), parse_skus, _SKUS, "SKUs whose paid subscriptions are watched for renewal too"
    )
    group_drop_pct: float = _number(
        "GROUP_DROP_PCT", 20.0, 1, 100, "licensed_group_shrank: members lost since the last run (% of its members)"
    )
    processing_stuck_hours: int = _whole(
        "PROCESSING_STUCK_HOURS", 24, 1, 24 * 30, "when processing_incomplete becomes a warning"
    )
    expected_group_skus: tuple[str, ...] = _setting(
        "EXPECTED_GROUP_SKUS", DEFAULT_EXPECTED_GROUP_SKUS, parse_skus, _SKUS, "SKUs that should be group-assigned"
    )
    alert_teams_webhook_url: Secret | None = _setting(
        "ALERT_TEAMS_WEBHOOK_URL",
        None,
        None,
        "an https URL with a valid host and port and no user info (http only for loopback)",
        "Teams Workflows webhook (secret)",
    )
    alert_mail_from: str | None = _setting(
        "ALERT_MAIL_FROM", None, parse_one_email, "one mailbox address (user@domain)", "the sending mailbox"
    )
    alert_mail_to: tuple[str, ...] = _setting("ALERT_MAIL_TO", (), parse_emails, _MAILS, "digest recipients")
    alert_mail_to_critical: tuple[str, ...] = _setting(
        "ALERT_MAIL_TO_CRITICAL", (), parse_emails, _MAILS, "recipients of critical findings"
    )
    alert_min_severity: Severity = _setting(
        "ALERT_MIN_SEVERITY",
        Severity.WARNING,
        lambda v: Severity(v.lower()),
        "one of info, warning, critical",
        "what alerts",
    )
    # Re-notification per severity (issue 19). ALERT_RENOTIFY_HOURS, the round-one setting, is the period of both when
    # the two per-severity ones are unset: a deployment that set it keeps what it chose (docs/alerts.md, "Migration").
    alert_renotify_hours: int | None = _whole(
        "ALERT_RENOTIFY_HOURS", None, 1, 24 * 90, "how often open findings repeat, when the two below are unset"
    )
    alert_renotify_hours_critical: int | None = _whole(
        "ALERT_RENOTIFY_HOURS_CRITICAL", None, 1, 24 * 90, "how often open critical findings repeat"
    )
    alert_renotify_hours_warning: int | None = _whole(
        "ALERT_RENOTIFY_HOURS_WARNING", None, 1, 24 * 90, "how often open warning (and info) findings repeat"
    )
    alert_exclude_skus: tuple[str, ...] = _setting("ALERT_EXCLUDE_SKUS", (), parse_skus, _SKUS, "SKUs that never alert")
    # Suppressions end (issue 27): none lasts longer than this, and one that may hide critical findings not longer
    # than the shorter critical maximum (the smaller of the two wins).
    suppress_max_days: int = _whole("SUPPRESS_MAX_DAYS", 90, 1, 365, "the longest a suppression lasts (days)")
    suppress_max_days_critical: int = _whole(
        "SUPPRESS_MAX_DAYS_CRITICAL", 14, 1, 365, "the longest a suppression that may hide critical findings lasts"
    )
    alert_report_url: str | None = _setting(
        "ALERT_REPORT_URL", None, parse_http_url, "an https URL", "link to the published full report"
    )
    # Each queued plan reads the group and scans every user (about 600 Graph requests at 300k users): bounded.
    plan_max_per_hour: int = _whole("PLAN_MAX_PER_HOUR", 20, 1, 1000, "queued plan requests answered per hour")
    fanout_groups: int = _whole("FANOUT_GROUPS", 500, 1, 1_000_000, "above this many licensed groups, fan out")
    retention_days: int = _whole("RETENTION_DAYS", 400, 1, 3650, "how long runs and history are kept")
    report_container: str | None = _setting(
        "REPORT_CONTAINER",
        "audit-reports",
        parse_container,
        "a blob container name (3-63 lowercase letters, digits, single hyphens) or 'none'",
        "the private blob container each tenant run's HTML/JSON/CSV report is published to ('none': not published)",
    )
    # Opening the published report from the alert in one click (docs/deploy.md, "The report"): the app serves it at
    # /api/reports/... behind App Service authentication (Entra sign-in) to these people only.
    report_readers: tuple[str, ...] = _setting(
        "REPORT_READERS",
        (),
        parse_guids,
        "Entra object ids (GUIDs), comma-separated",
        "who may open the published reports through the app's Entra sign-in (the alerts' Full report link)",
    )
    # Injected by App Service, read-only (https://learn.microsoft.com/azure/app-service/reference-app-settings):
    # "WEBSITE_AUTH_ENABLED: Read-only. Injected into a Windows or Linux app to indicate whether App Service
    # authentication is enabled"; "WEBSITE_HOSTNAME: Read-only. Primary hostname for the app."
    website_auth_enabled: bool = _setting(
        "WEBSITE_AUTH_ENABLED", False, parse_platform_flag, "True or False", "(App Service) authentication is on"
    )
    website_hostname: str | None = _setting(
        "WEBSITE_HOSTNAME", None, parse_host_name, "a host name", "(App Service) the app's primary host name"
    )
    applicationinsights_connection_string: Secret | None = _setting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        None,
        None,
        "an Application Insights connection string",
        "telemetry to Application Insights (secret)",
    )
    otel_exporter_otlp_endpoint: str | None = _setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT", None, parse_any_url, "an http(s) URL", "telemetry over OTLP"
    )
    in_azure: bool = False  # running inside the Functions host (it exports telemetry): not a setting
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def cloud(self) -> CloudEndpoints:
        return CLOUDS[self.graph_cloud]

    def renotify_hours(self, severity: Severity) -> int:
        """How long an open finding of ``severity`` waits before it is sent again: its own setting, else
        ALERT_RENOTIFY_HOURS for both, else a day for critical and a week for the rest."""
        if severity is Severity.CRITICAL:
            own, default = self.alert_renotify_hours_critical, DEFAULT_RENOTIFY_HOURS_CRITICAL
        else:
            own, default = self.alert_renotify_hours_warning, DEFAULT_RENOTIFY_HOURS_WARNING
        if own is not None:
            return own
        return self.alert_renotify_hours if self.alert_renotify_hours is not None else default

    @property
    def graph_host(self) -> str:
        """Scheme and host of the Graph endpoint in use (tokens go only there)."""
        parts = urlsplit(self.graph_base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def mail_enabled(self) -> bool:
        return bool(self.alert_mail_from and (self.alert_mail_to or self.alert_mail_to_critical))

    @property
    def teams_enabled(self) -> bool:
        return bool(self.alert_teams_webhook_url)

    def __repr__(self) -> str:  # dataclass repr would be fine (Secret masks), but keep it one line and short
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "extra")
        return f"Settings({shown})"


def declared() -> tuple[tuple[str, Declared, Any], ...]:
    """(field name, declaration, default) of every setting, in declaration order."""
    return tuple((f.name, f.metadata["setting"], f.default) for f in fields(Settings) if "setting" in f.metadata)


class _Reader:
    """Collects problems while reading settings so that all of them are reported together."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def get(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except (ValueError, KeyError):
            # User info in a URL is a credential: never echoed (redact_url drops it and the query).
            shown = redact_url(raw) if "://" in raw and "@" in raw else raw
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            self.problems.append(f"{name}={shown!r} is invalid: expected {expected}")
            return default

    def secret_problem(self, name: str, why: str) -> None:
        # Never echo a secret's value in a message.
        self.problems.append(f"{name} is invalid: {why}")


def _storage_connection(r: _Reader) -> StorageConnection | None:
    """``LICENSING_STORAGE`` else ``AzureWebJobsStorage``; plain connection string or the identity forms."""
    for prefix in ("LICENSING_STORAGE", "AzureWebJobsStorage"):
        cs = r.raw(prefix)
        if cs is not None:
            problem = connection_string_problem(cs)
            if problem is not None:
                r.secret_problem(prefix, problem)
                return None
            return StorageConnection(connection_string=Secret(cs), source=prefix)
        account = r.raw(f"{prefix}__accountName")
        table_uri = r.raw(f"{prefix}__tableServiceUri")
        queue_uri = r.raw(f"{prefix}__queueServiceUri")
        blob_uri = r.raw(f"{prefix}__blobServiceUri")
        if account or table_uri or queue_uri:
            if account and not re.match(r"^[a-z0-9]{3,24}$", account):
                r.problems.append(
                    f"{prefix}__accountName={account!r} is invalid: expected 3-24 lowercase letters/digits"
                )
                return None
            table_uri = table_uri or (f"https://{account}.table.core.windows.net" if account else None)
            queue_uri = queue_uri or (f"https://{account}.queue.core.windows.net" if account else None)
            blob_uri = blob_uri or (f"https://{account}.blob.core.windows.net" if account else None)
            if not table_uri:
                r.problems.append(f"{prefix}__tableServiceUri is missing (or set {prefix}__accountName)")
                return None
            client_id = r.raw(f"{prefix}__clientId")
            if client_id and not is_guid(client_id):
                r.problems.append(f"{prefix}__clientId={client_id!r} is invalid: expected a GUID")
                client_id = None
            return StorageConnection(
                table_uri=table_uri,
                queue_uri=queue_uri,
                blob_uri=blob_uri,
                credential=r.raw(f"{prefix}__credential"),
                client_id=client_id,
                source=prefix,
            )
    return None


# https://learn.microsoft.com/azure/storage/common/storage-configure-connection-string


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise one ConfigurationError naming every problem."""
    env = os.environ if env is None else env
    r = _Reader(env)
    values: dict[str, Any] = {}
    for name, spec, default in declared():
        if spec.parse is not None:
            values[name] = r.get(spec.env, default, spec.parse, spec.expected)

    # The settings read by code of their own: they depend on each other, or are secrets never echoed.
    expected = {name: spec.expected for name, spec, _ in declared()}
    cloud = r.get("GRAPH_CLOUD", "global", lambda v: CLOUDS[v.lower()].name, "one of " + ", ".join(CLOUDS))
    values["graph_cloud"] = cloud
    values["graph_base_url"] = r.get(
        "GRAPH_BASE_URL", f"{CLOUDS[cloud].graph}/v1.0", parse_graph_url, expected["graph_base_url"]
    )
    raw_webhook = r.raw("ALERT_TEAMS_WEBHOOK_URL")
    if raw_webhook is not None:
        try:
            parse_http_url(raw_webhook)
            values["alert_teams_webhook_url"] = Secret(raw_webhook)
        except ValueError:
            r.secret_problem("ALERT_TEAMS_WEBHOOK_URL", "expected " + expected["alert_teams_webhook_url"])
    if (values["alert_mail_to"] or values["alert_mail_to_critical"]) and r.raw("ALERT_MAIL_FROM") is None:
        r.problems.append(
            "ALERT_MAIL_FROM is missing: it is required when ALERT_MAIL_TO or ALERT_MAIL_TO_CRITICAL is set"
        )
    ai = r.raw("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if ai is not None:
        if "InstrumentationKey=" in ai or "IngestionEndpoint=" in ai:
            values["applicationinsights_connection_string"] = Secret(ai)
        else:
            r.secret_problem("APPLICATIONINSIGHTS_CONNECTION_STRING", "not an Application Insights connection string")
    values["storage"] = _storage_connection(r)
    values["in_azure"] = bool(
        r.raw("WEBSITE_SITE_NAME") or (r.raw("FUNCTIONS_WORKER_RUNTIME") and r.raw("WEBSITE_INSTANCE_ID"))
    )
    if r.problems:
        raise ConfigurationError(r.problems)
    return Settings(**values)


def misspelled(env: Mapping[str, str] | None = None) -> list[str]:
    """Variables of ``env`` that look like a setting but are none, each with the nearest real name (warnings)."""
    from licensing.settings.typos import misspelled_settings

    return misspelled_settings(os.environ if env is None else env, (spec.env for _, spec, _ in declared()))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return load_settings()

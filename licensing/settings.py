"""Every setting of the app, read once from the environment, validated, with defaults.

Code receives a :class:`Settings` (or the part of it it needs); the only other reader of
``os.environ`` is the CLI, which copies it to lay its command-line overrides over it before
calling :func:`load_settings`. :func:`load_settings` checks every value and raises one
:class:`~licensing.errors.ConfigurationError` that names *every* bad setting at once.
Secrets are held in :class:`Secret`, whose ``repr``/``str`` never shows the value.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Final, TypeVar
from urllib.parse import urlsplit

from licensing.clock import utcnow
from licensing.errors import ConfigurationError, redact_url
from licensing.model import Severity

__all__ = [
    "CLOUDS",
    "DEFAULT_EXPECTED_GROUP_SKUS",
    "CloudEndpoints",
    "Secret",
    "Settings",
    "StorageConnection",
    "get_settings",
    "is_loopback_url",
    "load_settings",
]


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
    credential: str | None = None  # "managedidentity" or None (DefaultAzureCredential)
    client_id: str | None = None  # user-assigned identity for the storage credential
    source: str = ""  # name of the setting it came from, for messages

    @property
    def is_development(self) -> bool:
        cs = self.connection_string.reveal() if self.connection_string else ""
        return "UseDevelopmentStorage=true" in cs or "127.0.0.1" in cs or "localhost" in cs


@dataclass(frozen=True, slots=True)
class Settings:
    """Every app setting, typed. Build with :func:`load_settings`; ``repr`` masks secrets."""

    audit_schedule: str = "0 30 2 * * *"
    audit_queue: str = "license-audit-requests"
    audit_chunk_queue: str = "license-audit-chunks"
    graph_cloud: str = "global"
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    graph_max_concurrency: int = 8
    azure_client_id: str | None = None
    azure_tenant_id: str | None = None
    storage: StorageConnection | None = None
    seat_min_free: int = 5
    seat_min_free_pct: float = 5.0
    forecast_days: int = 30
    processing_stuck_hours: int = 24
    expected_group_skus: tuple[str, ...] = DEFAULT_EXPECTED_GROUP_SKUS
    alert_teams_webhook_url: Secret | None = None
    alert_mail_from: str | None = None
    alert_mail_to: tuple[str, ...] = ()
    alert_mail_to_critical: tuple[str, ...] = ()
    alert_min_severity: Severity = Severity.WARNING
    alert_renotify_hours: int = 24
    alert_exclude_skus: tuple[str, ...] = ()
    alert_report_url: str | None = None
    fanout_groups: int = 500
    retention_days: int = 400
    applicationinsights_connection_string: Secret | None = None
    otel_exporter_otlp_endpoint: str | None = None
    in_azure: bool = False  # running inside the Functions host (it exports telemetry)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def cloud(self) -> CloudEndpoints:
        return CLOUDS[self.graph_cloud]

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


_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_QUEUE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
_SKU_TOKEN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_NCRONTAB_FIELD = re.compile(r"^[0-9A-Za-z*/,\-]+$")

T = TypeVar("T")
_NONE: tuple[str, ...] = ()


def is_guid(value: str) -> bool:
    return bool(_GUID.match(value))


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on 127.0.0.0/8, ::1 or localhost (the sandbox, test receivers)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in re.split(r"[,;\s]+", raw) if item.strip())


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

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if not low <= value <= high:
                raise ValueError
            return value

        return self.get(name, default, parse, f"a whole number from {low} to {high}")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not low <= value <= high:  # also rejects nan
                raise ValueError
            return value

        return self.get(name, default, parse, f"a number from {low:g} to {high:g}")

    def secret_problem(self, name: str, why: str) -> None:
        # Never echo a secret's value in a message.
        self.problems.append(f"{name} is invalid: {why}")


def _parse_schedule(raw: str) -> str:
    """The same NCRONTAB parser the timer's request ids use, and an occurrence within a year.

    ``99 99 99 * * *`` would pass a shape check and fail at the first firing; ``0 0 0 30 2 *``
    (30 February) never fires at all: both are refused at start-up.
    """
    from licensing.ncrontab import Schedule

    parts = raw.split()
    # A timer may also be bound to another app setting (%NAME%) by the host; we only accept NCRONTAB.
    if len(parts) != 6 or not all(_NCRONTAB_FIELD.match(p) for p in parts):
        raise ValueError
    expression = " ".join(parts)
    try:
        Schedule.parse(expression).next_after(utcnow())
    except ConfigurationError:
        raise ValueError from None
    return expression


def _parse_queue(raw: str) -> str:
    if not _QUEUE_NAME.match(raw):
        raise ValueError
    return raw


def _parse_guid(raw: str) -> str:
    if not is_guid(raw):
        raise ValueError
    return raw.lower()


def _parse_emails(raw: str) -> tuple[str, ...]:
    items = _split_list(raw)
    if not items or not all(_EMAIL.match(i) for i in items):
        raise ValueError
    return items


def _parse_one_email(raw: str) -> str:
    """ALERT_MAIL_FROM is the one mailbox sendMail sends as: a list was silently cut to its first item."""
    items = _parse_emails(raw)
    if len(items) != 1:
        raise ValueError
    return items[0]


def _parse_skus(raw: str) -> tuple[str, ...]:
    items = _split_list(raw)
    if not all(_SKU_TOKEN.match(i) for i in items):
        raise ValueError
    return items


def _parse_http_url(raw: str) -> str:
    """An http(s) URL we may send requests to: a host, a valid port, no user info; http only on loopback.

    User info would make httpx send ``Authorization: Basic`` instead of a token; a port that is not
    a number from 1 to 65535 or a host that is not valid IDNA only fails at the first request.
    """
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError
    port = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    if port == 0:
        raise ValueError
    _check_host(parts.hostname)
    if parts.scheme == "http" and not is_loopback_url(raw):
        raise ValueError
    return raw.rstrip("/")


def _parse_graph_url(raw: str) -> str:
    """GRAPH_BASE_URL: a service root; a query or fragment would be glued to every request path."""
    parts = urlsplit(raw)
    if parts.query or parts.fragment or raw.rstrip().endswith(("?", "#")):
        raise ValueError
    return _parse_http_url(raw)


def _check_host(host: str) -> None:
    """A host httpx can connect to: an IP literal or a name that encodes as IDNA (each label 1-63)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(host) from None
    if len(encoded) > 253 or not all(0 < len(label) <= 63 for label in encoded.rstrip(".").split(".")):
        raise ValueError(host)
    if not re.fullmatch(r"[A-Za-z0-9.\-_]+", encoded):
        raise ValueError(host)


def _storage_connection(r: _Reader) -> StorageConnection | None:
    """``LICENSING_STORAGE`` else ``AzureWebJobsStorage``; plain connection string or the identity forms."""
    for prefix in ("LICENSING_STORAGE", "AzureWebJobsStorage"):
        cs = r.raw(prefix)
        if cs is not None:
            problem = _connection_string_problem(cs)
            if problem is not None:
                r.secret_problem(prefix, problem)
                return None
            return StorageConnection(connection_string=Secret(cs), source=prefix)
        account = r.raw(f"{prefix}__accountName")
        table_uri = r.raw(f"{prefix}__tableServiceUri")
        queue_uri = r.raw(f"{prefix}__queueServiceUri")
        if account or table_uri or queue_uri:
            if account and not re.match(r"^[a-z0-9]{3,24}$", account):
                r.problems.append(
                    f"{prefix}__accountName={account!r} is invalid: expected 3-24 lowercase letters/digits"
                )
                return None
            table_uri = table_uri or (f"https://{account}.table.core.windows.net" if account else None)
            queue_uri = queue_uri or (f"https://{account}.queue.core.windows.net" if account else None)
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
                credential=r.raw(f"{prefix}__credential"),
                client_id=client_id,
                source=prefix,
            )
    return None


# https://learn.microsoft.com/azure/storage/common/storage-configure-connection-string
_CONNECTION_KEYS: Final = frozenset(
    k.lower()
    for k in (
        "DefaultEndpointsProtocol", "AccountName", "AccountKey", "EndpointSuffix", "SharedAccessSignature",
        "BlobEndpoint", "QueueEndpoint", "TableEndpoint", "FileEndpoint", "UseDevelopmentStorage",
        "DevelopmentStorageProxyUri", "BlobSecondaryEndpoint", "QueueSecondaryEndpoint", "TableSecondaryEndpoint",
    )
)  # fmt: skip


def _connection_string_problem(cs: str) -> str | None:
    """Why ``cs`` is not a storage connection string the SDK can use, or None. Never quotes a value (secrets)."""
    pairs: dict[str, str] = {}
    for part in cs.strip().strip(";").split(";"):
        key, eq, value = part.strip().partition("=")
        if not eq or not key.strip():
            return "not a storage connection string (expected key=value;… pairs)"
        if key.strip().lower() not in _CONNECTION_KEYS:
            return f"not a storage connection string (unknown key {key.strip()[:40]!r})"
        pairs[key.strip().lower()] = value.strip()
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return None
    endpoints = [pairs[k] for k in ("tableendpoint", "queueendpoint", "blobendpoint") if pairs.get(k)]
    for endpoint in endpoints:
        try:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.port == 0:
                raise ValueError
            _check_host(parts.hostname)
        except ValueError:  # also a port that is not a number from 1 to 65535
            return "an endpoint in the connection string is not a usable http(s) URL"
    if not pairs.get("accountname") and not endpoints:
        return "the connection string names no AccountName and no endpoint"
    if not pairs.get("accountkey") and not pairs.get("sharedaccesssignature"):
        return "the connection string has neither AccountKey nor SharedAccessSignature"
    if pairs.get("accountkey"):
        try:
            base64.b64decode(pairs["accountkey"], validate=True)
        except (binascii.Error, ValueError):
            return "AccountKey in the connection string is not base64"
    return None


_DEFAULTS: Final = Settings()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise one ConfigurationError naming every problem."""
    env = os.environ if env is None else env
    r = _Reader(env)

    cloud = r.get("GRAPH_CLOUD", "global", lambda v: CLOUDS[v.lower()].name, "one of " + ", ".join(CLOUDS))
    base_url = r.get(
        "GRAPH_BASE_URL",
        f"{CLOUDS[cloud].graph}/v1.0",
        _parse_graph_url,
        "an https URL with a valid host and port, no user info, query or fragment (http only for loopback)",
    )

    webhook: Secret | None = None
    raw_webhook = r.raw("ALERT_TEAMS_WEBHOOK_URL")
    if raw_webhook is not None:
        try:
            _parse_http_url(raw_webhook)
            webhook = Secret(raw_webhook)
        except ValueError:
            r.secret_problem(
                "ALERT_TEAMS_WEBHOOK_URL",
                "expected an https URL with a valid host and port and no user info (http only for loopback)",
            )

    mail_from = r.get("ALERT_MAIL_FROM", None, _parse_one_email, "one mailbox address (user@domain)")
    mail_to = r.get("ALERT_MAIL_TO", _NONE, _parse_emails, "e-mail addresses separated by , or ;")
    mail_to_critical = r.get("ALERT_MAIL_TO_CRITICAL", _NONE, _parse_emails, "e-mail addresses separated by , or ;")
    if (mail_to or mail_to_critical) and not mail_from and r.raw("ALERT_MAIL_FROM") is None:
        r.problems.append(
            "ALERT_MAIL_FROM is missing: it is required when ALERT_MAIL_TO or ALERT_MAIL_TO_CRITICAL is set"
        )

    ai = r.raw("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if ai is not None and "InstrumentationKey=" not in ai and "IngestionEndpoint=" not in ai:
        r.secret_problem("APPLICATIONINSIGHTS_CONNECTION_STRING", "not an Application Insights connection string")
        ai = None

    settings = Settings(
        audit_schedule=r.get(
            "AUDIT_SCHEDULE",
            _DEFAULTS.audit_schedule,
            _parse_schedule,
            "an NCRONTAB expression of 6 valid fields that fires within a year, e.g. '0 30 2 * * *'",
        ),
        audit_queue=r.get(
            "AUDIT_QUEUE",
            _DEFAULTS.audit_queue,
            _parse_queue,
            "a queue name (3-63 lowercase letters, digits, single hyphens)",
        ),
        audit_chunk_queue=r.get(
            "AUDIT_CHUNK_QUEUE",
            _DEFAULTS.audit_chunk_queue,
            _parse_queue,
            "a queue name (3-63 lowercase letters, digits, single hyphens)",
        ),
        graph_cloud=cloud,
        graph_base_url=base_url,
        graph_max_concurrency=r.integer("GRAPH_MAX_CONCURRENCY", _DEFAULTS.graph_max_concurrency, 1, 64),
        azure_client_id=r.get("AZURE_CLIENT_ID", None, _parse_guid, "a GUID (the user-assigned identity's client id)"),
        azure_tenant_id=r.get("AZURE_TENANT_ID", None, _parse_guid, "a GUID"),
        storage=_storage_connection(r),
        seat_min_free=r.integer("SEAT_MIN_FREE", _DEFAULTS.seat_min_free, 0, 1_000_000),
        seat_min_free_pct=r.number("SEAT_MIN_FREE_PCT", _DEFAULTS.seat_min_free_pct, 0, 100),
        forecast_days=r.integer("FORECAST_DAYS", _DEFAULTS.forecast_days, 7, 365),
        processing_stuck_hours=r.integer("PROCESSING_STUCK_HOURS", _DEFAULTS.processing_stuck_hours, 1, 24 * 30),
        expected_group_skus=r.get(
            "EXPECTED_GROUP_SKUS",
            DEFAULT_EXPECTED_GROUP_SKUS,
            _parse_skus,
            "SKU part numbers or skuId GUIDs separated by commas",
        ),
        alert_teams_webhook_url=webhook,
        alert_mail_from=mail_from,
        alert_mail_to=mail_to,
        alert_mail_to_critical=mail_to_critical,
        alert_min_severity=r.get(
            "ALERT_MIN_SEVERITY", Severity.WARNING, lambda v: Severity(v.lower()), "one of info, warning, critical"
        ),
        alert_renotify_hours=r.integer("ALERT_RENOTIFY_HOURS", _DEFAULTS.alert_renotify_hours, 1, 24 * 90),
        alert_exclude_skus=r.get(
            "ALERT_EXCLUDE_SKUS", (), _parse_skus, "SKU part numbers or skuId GUIDs separated by commas"
        ),
        alert_report_url=r.get("ALERT_REPORT_URL", None, _parse_http_url, "an https URL"),
        fanout_groups=r.integer("FANOUT_GROUPS", _DEFAULTS.fanout_groups, 1, 1_000_000),
        retention_days=r.integer("RETENTION_DAYS", _DEFAULTS.retention_days, 1, 3650),
        applicationinsights_connection_string=Secret(ai) if ai else None,
        otel_exporter_otlp_endpoint=r.get("OTEL_EXPORTER_OTLP_ENDPOINT", None, _parse_any_url, "an http(s) URL"),
        in_azure=bool(
            r.raw("WEBSITE_SITE_NAME") or (r.raw("FUNCTIONS_WORKER_RUNTIME") and r.raw("WEBSITE_INSTANCE_ID"))
        ),
    )
    if r.problems:
        raise ConfigurationError(r.problems)
    return settings


def _parse_any_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError
    return raw


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return load_settings()

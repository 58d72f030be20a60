"""Parsers of setting values: schedules, queue names, GUIDs, mailboxes, SKU lists, URLs, hosts, connection strings.

Each raises ValueError for a value it refuses (the settings reader turns that into one line naming the
setting); none of them ever echoes a secret.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from licensing.clock import utcnow
from licensing.errors import ConfigurationError

__all__ = ["is_guid", "is_loopback_url"]

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_QUEUE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
_SKU_TOKEN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_NCRONTAB_FIELD = re.compile(r"^[0-9A-Za-z*/,\-]+$")


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


def split_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in re.split(r"[,;\s]+", raw) if item.strip())


def parse_schedule(raw: str) -> str:
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


def parse_queue(raw: str) -> str:
    if not _QUEUE_NAME.match(raw):
        raise ValueError
    return raw


def parse_container(raw: str) -> str | None:
    """A blob container name (the same rules as a queue name), or ``none``: nothing is published."""
    if raw.lower() == "none":
        return None
    return parse_queue(raw)


def parse_guid(raw: str) -> str:
    if not is_guid(raw):
        raise ValueError
    return raw.lower()


def parse_guids(raw: str) -> tuple[str, ...]:
    """Object ids (GUIDs) separated by commas, semicolons or spaces, lowercased and deduplicated in order."""
    return tuple(dict.fromkeys(parse_guid(item) for item in split_list(raw)))


def parse_platform_flag(raw: str) -> bool:
    """App Service's ``True``/``False`` flags (any case); anything else is not the platform's."""
    if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError
    return raw.lower() in ("true", "1")


def parse_host_name(raw: str) -> str:
    """A DNS host name (App Service's ``WEBSITE_HOSTNAME``), without scheme, path or port."""
    if not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", raw):
        raise ValueError
    return raw.lower()


def parse_emails(raw: str) -> tuple[str, ...]:
    items = split_list(raw)
    if not items or not all(_EMAIL.match(i) for i in items):
        raise ValueError
    return items


def parse_one_email(raw: str) -> str:
    """ALERT_MAIL_FROM is the one mailbox sendMail sends as: a list was silently cut to its first item."""
    items = parse_emails(raw)
    if len(items) != 1:
        raise ValueError
    return items[0]


def parse_skus(raw: str) -> tuple[str, ...]:
    items = split_list(raw)
    if not all(_SKU_TOKEN.match(i) for i in items):
        raise ValueError
    return items


def parse_http_url(raw: str) -> str:
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
    check_host(parts.hostname)
    if parts.scheme == "http" and not is_loopback_url(raw):
        raise ValueError
    return raw.rstrip("/")


def parse_graph_url(raw: str) -> str:
    """GRAPH_BASE_URL: a service root; a query or fragment would be glued to every request path. The path is the
    API version, ``/v1.0`` (what the reader is written and tested against): without it every request would 404 and
    the audit would fail late, where a wrong URL is a usage error (issue 30, item 10)."""
    parts = urlsplit(raw)
    if parts.query or parts.fragment or raw.rstrip().endswith(("?", "#")):
        raise ValueError
    if parts.path.rstrip("/") != "/v1.0":
        raise ValueError
    return parse_http_url(raw)


def check_host(host: str) -> None:
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


def parse_any_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError
    return raw


_CONNECTION_KEYS: Final = frozenset(
    k.lower()
    for k in (
        "DefaultEndpointsProtocol", "AccountName", "AccountKey", "EndpointSuffix", "SharedAccessSignature",
        "BlobEndpoint", "QueueEndpoint", "TableEndpoint", "FileEndpoint", "UseDevelopmentStorage",
        "DevelopmentStorageProxyUri", "BlobSecondaryEndpoint", "QueueSecondaryEndpoint", "TableSecondaryEndpoint",
    )
)  # fmt: skip


def connection_string_problem(cs: str) -> str | None:
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
            check_host(parts.hostname)
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


MAX_PRICES_FILE_BYTES: Final = 1024 * 1024  # a price list is a few KB
MAX_PRICE: Final = 1_000_000.0  # per seat and month: far above any list price, far below overflow


def parse_prices(raw: str) -> tuple[tuple[str, float], ...]:
    """``SKU_PRICES``: ``SKU=price`` pairs (``SPE_E3=36.00, EMS=10.60``), or the path of a CSV file of ``sku,price``
    rows (a header row is allowed). SKUs are part numbers or skuIds; prices numbers of at least 0, per seat and
    month. Graph has no prices: the admin supplies them, and no price means no cost column, never a guess."""
    text = raw.strip()
    if "=" not in text:
        path = Path(text).expanduser()
        try:
            # A regular file of bounded size only: a FIFO would hang start-up and /dev/zero exhaust memory.
            if not path.is_file() or path.stat().st_size > MAX_PRICES_FILE_BYTES:
                raise ValueError
            with path.open("rb") as handle:
                data = handle.read(MAX_PRICES_FILE_BYTES + 1)
            if len(data) > MAX_PRICES_FILE_BYTES:
                raise ValueError
            content = data.decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            raise ValueError from None
        rows = [line.split(",", 1) for line in content.splitlines() if line.strip()]
        if rows and not _is_price(rows[0][-1]):
            rows = rows[1:]  # the header
        pairs = [(r[0].strip(), r[1].strip()) for r in rows if len(r) == 2]
        if len(pairs) != len(rows):
            raise ValueError
    else:
        pairs = []
        for item in (i.strip() for i in re.split(r"[,;\n]", text) if i.strip()):
            sku, sep, price = item.partition("=")
            if not sep:
                raise ValueError
            pairs.append((sku.strip(), price.strip()))
    out: dict[str, float] = {}
    for sku, price in pairs:
        if not _SKU_TOKEN.match(sku) or not _is_price(price):
            raise ValueError
        out[sku.lower() if len(sku) == 36 else sku] = float(price)
    if not out:
        raise ValueError
    return tuple(out.items())


def _is_price(value: str) -> bool:
    try:
        number = float(value.strip())
    except ValueError:
        return False
    # Bounded so that sums stay finite: 1e308 passed and the cost line read "inf USD".
    return math.isfinite(number) and 0 <= number <= MAX_PRICE


def parse_currency(raw: str) -> str:
    """``SKU_PRICE_CURRENCY``: an ISO 4217 style code (three letters), shown as given in capitals."""
    code = raw.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError
    return code

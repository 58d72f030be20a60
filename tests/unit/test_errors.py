"""The exception hierarchy and redaction of secrets from free text."""

from __future__ import annotations

from licensing import errors
from licensing.errors import (
    ConfigurationError,
    DeliveryError,
    GraphError,
    GraphPermissionError,
    LicensingError,
    redact_text,
    redact_url,
)


def test_every_error_is_a_licensing_error_with_one_line() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, LicensingError), name
    assert str(GraphError("first\nsecond   line", status=500)) == "first second line"


def test_structured_fields() -> None:
    err = GraphPermissionError("missing User.Read.All", permission="User.Read.All")
    assert err.status == 403 and err.permission == "User.Read.All" and isinstance(err, GraphError)
    d = DeliveryError("teams said 500", channel="teams", retryable=True, status=500)
    assert (d.channel, d.retryable, d.status) == ("teams", True, 500)
    c = ConfigurationError(["A is bad", "B is missing"])
    assert c.problems == ["A is bad", "B is missing"] and str(c) == "A is bad; B is missing"


def test_redaction() -> None:
    url = "https://prod.logic.azure.com/workflows/1/invoke?api-version=1&sig=SECRETSIG"
    assert "SECRETSIG" not in redact_url(url) and redact_url(url).startswith("https://prod.logic.azure.com/workflows")
    text = (
        f"POST {url} failed; conn DefaultEndpointsProtocol=https;AccountName=a;AccountKey=KEY123==;"
        " header Authorization: Bearer eyJ0eXAiOiJKV1Qi.abc.def"
    )
    cleaned = redact_text(text)
    for secret in ("SECRETSIG", "KEY123", "eyJ0eXAiOiJKV1Qi"):
        assert secret not in cleaned
    assert "AccountName=a" in cleaned

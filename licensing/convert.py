"""The one converter between the frozen records of licensing.model and plain data (JSON types).

The JSON report, the table entities and the fan-out blobs all go through msgspec
(docs/benchmarks.md, "Record converter", has the measurement that chose it over cattrs and
the hand-written mappings it replaced), so a new field on a record is a change in
licensing/model.py alone. Two house rules on top of msgspec's own:

* datetimes are written by ``datetime.isoformat()`` (``+00:00``, not msgspec's ``Z``): the stored
  rows and the published report have always looked like that, and readers compare strings;
* a value that does not fit is one :class:`ConversionError` line, "``$.path`` must be …", in
  words an admin reads (msgspec says "Expected `int | null`, got `str`").
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from functools import cache
from typing import Any, TypeVar

import msgspec

__all__ = ["ConversionError", "field_kinds", "from_plain", "to_plain"]

T = TypeVar("T")


class ConversionError(ValueError):
    """Plain data that does not fit a record; ``str()`` is ``"<path> must be <expectation>"``."""

    def __init__(self, path: str, expectation: str) -> None:
        super().__init__(f"{path} must be {expectation}")
        self.path = path
        self.expectation = expectation


def _iso_everywhere(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _iso_everywhere(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_iso_everywhere(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def to_plain(record: Any, *, keep_bytes: bool = False) -> Any:
    """The record as JSON types: dicts in field order, enums as their values, tuples as lists,
    datetimes as ISO-8601 text. ``keep_bytes`` leaves bytes as they are (tables store them as
    binary); otherwise msgspec writes them base64."""
    sample = record[0] if isinstance(record, list | tuple) and record else record
    kind: Any = type(sample)
    if not _holds_dates(kind):  # the walk is most of the cost: skip it where no date can be
        return msgspec.to_builtins(record, builtin_types=(bytes,) if keep_bytes else None)
    builtins = (datetime, date, bytes) if keep_bytes else (datetime, date)
    return _iso_everywhere(msgspec.to_builtins(record, builtin_types=builtins))


@cache
def _holds_dates(kind: Any) -> bool:
    """Whether a value of ``kind`` can contain a date or datetime (records, containers, unions)."""
    if kind in (datetime, date):
        return True
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return any(_holds_dates(hint) for hint in _hints(kind).values())
    args = typing.get_args(kind)
    if args:
        return any(_holds_dates(arg) for arg in args if arg is not Ellipsis)
    return kind is Any or kind is object


def from_plain(kind: type[T], data: Any, *, root: str = "$") -> T:
    """``data`` as a ``kind`` record; unknown keys are ignored, missing ones take their defaults.

    Strict: "10" is not an integer and null is not a string. Raises :class:`ConversionError`.
    """
    try:
        return msgspec.convert(data, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise _explain(kind, str(exc), root) from None


# ---------------------------------------------------------------- messages in words

_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_EXPECTED = re.compile(r"^Expected `(?P<types>[^`]+)`, got `[^`]+`")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")
_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "null": "null",
    "array": "a list",
    "object": "an object",
    "datetime": "an ISO-8601 date and time",
    "date": "an ISO-8601 date",
    "bytes": "bytes",
}


def _explain(kind: type, message: str, root: str) -> ConversionError:
    match = _AT.match(message)
    what = match["what"] if match else message
    path = (match["path"] if match else None) or ""
    missing = _MISSING.match(what)
    if missing:
        return ConversionError(f"{root}{path}.{missing['field']}", "present")
    expected = _EXPECTED.match(what)
    if expected:
        words = [_WORDS.get(name.strip(), f"a {name.strip()}") for name in expected["types"].split("|")]
        return ConversionError(root + path, " or ".join(words))
    if what.startswith("Invalid enum value"):
        target = _type_at(kind, path)
        if isinstance(target, type) and issubclass(target, Enum):
            return ConversionError(root + path, "one of " + ", ".join(str(m.value) for m in target))
        return ConversionError(root + path, "one of the known values")
    if "datetime" in what:
        return ConversionError(root + path, _WORDS["datetime"])
    if "date" in what:
        return ConversionError(root + path, _WORDS["date"])
    return ConversionError(root + path, f"valid ({what[:80]})")


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        others = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(others) == 1:
            return others[0]
    return hint


@cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _type_at(kind: Any, path: str) -> Any:
    """The declared type at a msgspec path such as ``.findings[1].severity``."""
    current = kind
    for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", path):
        current = _unwrap_optional(current)
        if name:
            if not dataclasses.is_dataclass(current):
                return None
            current = _hints(current).get(name)  # type: ignore[arg-type]
        elif index:
            args = typing.get_args(current)
            current = args[0] if args else None
    return _unwrap_optional(current)


def field_kinds(kind: type) -> dict[str, str]:
    """Each field of a record by how a flat store keeps it: ``text`` (str, enums, datetimes),
    ``json`` (tuples, lists, mappings, nested records), ``bytes``, or ``scalar`` (int, float, bool)."""
    result: dict[str, str] = {}
    for field in dataclasses.fields(kind):
        hint = _unwrap_optional(_hints(kind)[field.name])
        origin = typing.get_origin(hint) or hint
        if hint is bytes:
            result[field.name] = "bytes"
        elif hint in (int, float, bool):
            result[field.name] = "scalar"
        elif isinstance(origin, type) and (
            issubclass(origin, tuple | list | Mapping) or dataclasses.is_dataclass(origin)
        ):
            result[field.name] = "json"
        else:
            result[field.name] = "text"
    return result

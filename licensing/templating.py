"""The Jinja2 environment of every HTML the app writes (the report, the alert mail): autoescaped, strict."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

__all__ = ["environment"]


def environment(folder: Path, filters: Mapping[str, Callable[..., Any]], *, trim: bool = False) -> jinja2.Environment:
    """Templates from ``folder``; every ``{{ }}`` is escaped whatever the file name, and an unknown name is an
    error instead of an empty string. ``trim``: drop the newline after a block tag and the indentation before it."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=trim,
        lstrip_blocks=trim,
    )
    env.filters.update(filters)
    return env

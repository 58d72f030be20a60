"""Progress of long work on stderr: on a terminal a live display with objects read and their rate; elsewhere (a
pipe, a log, CI) one plain line every few seconds, so that a long run is never silent until its end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from licensing.text import clean_text

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["LINE_INTERVAL_S", "ProgressFn", "progress_reporter"]

ProgressFn = Callable[[str, int, int], None]
LINE_INTERVAL_S: Final = 10.0  # off a terminal: at most one line this often (nothing for a run shorter than it)


def _state(phase: str, done: int, total: int, started: float, now: float) -> str:
    """``users 45,000 read (2,100/s)`` when the total is unknown, ``members 120/300`` when it is known."""
    if total > 0:
        return f"{phase} {done:,}/{total:,}"
    rate = done / (now - started) if now > started else 0.0
    return f"{phase} {done:,} read ({rate:,.0f}/s)"


@contextmanager
def _lines(console: Console, clock: Callable[[], float], interval: float) -> Iterator[ProgressFn]:
    phases: dict[str, tuple[int, int, float]] = {}
    first = last = clock()

    def progress(phase: str, done: int, total: int) -> None:
        nonlocal last
        now = clock()
        started = phases[phase][2] if phase in phases else now
        phases[phase] = (max(0, done), total, started)
        if now - last < interval:
            return
        last = now
        states = ", ".join(_state(clean_text(p, 40), d, t, s, now) for p, (d, t, s) in phases.items())
        console.print(f"licensing-audit: {now - first:,.0f} s: {states}", markup=False, soft_wrap=True, highlight=False)

    yield progress


@contextmanager
def progress_reporter(
    console: Console, *, clock: Callable[[], float] = time.monotonic, interval: float = LINE_INTERVAL_S
) -> Iterator[ProgressFn]:
    """Yield ``progress(phase, done, total)`` (``total`` 0: unknown): a live display on a terminal, with the count
    and rate of objects read where the total is unknown; a line every ``interval`` seconds anywhere else."""
    if not console.is_terminal:
        with _lines(console, clock, interval) as progress:
            yield progress
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as display:
        tasks: dict[str, object] = {}
        starts: dict[str, float] = {}

        def progress(phase: str, done: int, total: int) -> None:
            # Called from the audit's event loop; rich's Progress is thread-safe and cheap to update.
            name = clean_text(phase, 40)
            known = total if total > 0 else None
            task = tasks.get(phase)
            if task is None:
                task = tasks[phase] = display.add_task(name, total=known)
                starts[phase] = clock()
            # Where the total is unknown (the users scan), the description carries the count and the rate.
            description = name if known else _state(name, max(0, done), 0, starts[phase], clock())
            display.update(task, completed=max(0, done), total=known, description=description)  # type: ignore[arg-type]

        yield progress

"""Issue 30, item 7: a long demo step is not a static line: it prints the time so far every few seconds."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from licensing.demo import _step


def test_a_long_step_says_it_is_still_working() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=120)
    ticked = threading.Event()

    with _step(console, "Generating a simulated tenant", every=0.01):
        # The step's work: wait (bounded) until the ticker has spoken at least once.
        for _ in range(500):
            if "still working" in buf.getvalue():
                ticked.set()
                break
            threading.Event().wait(0.01)
    lines = buf.getvalue().splitlines()
    assert ticked.is_set()
    assert lines[0] == "• Generating a simulated tenant …"
    assert lines[1].startswith("  … still working (") and lines[1].endswith(" s)")
    count = len(lines)
    threading.Event().wait(0.05)
    assert len(buf.getvalue().splitlines()) == count  # the ticker stopped with the step

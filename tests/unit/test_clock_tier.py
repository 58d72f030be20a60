"""The clock tier itself: under faketime the wall clock is shifted, and waiting still works."""

from __future__ import annotations

import subprocess
import sys
import threading
import time


def test_time_sleep_waits_for_the_time_asked_under_every_clock() -> None:
    # In the clock tier, Debian's libfaketime makes a bare time.sleep raise EINVAL; tests/conftest.py sleeps
    # through select() there. This test fails in `make clock` without that.
    started = time.monotonic()
    time.sleep(0.02)
    assert time.monotonic() - started >= 0.02


def test_a_subprocess_waited_for_with_a_timeout_is_reaped() -> None:
    # subprocess's timed wait polls with time.sleep: the call that failed in CI under faketime.
    child = subprocess.run(
        [sys.executable, "-c", "import select; select.select([], [], [], 0.1)"], check=False, timeout=30
    )
    assert child.returncode == 0


def test_timed_lock_waits_return_under_every_clock() -> None:
    lock = threading.Lock()
    lock.acquire()
    started = time.monotonic()
    assert lock.acquire(timeout=0.02) is False
    assert time.monotonic() - started < 5

"""Waiting on a condition: the one way a test waits for something to happen.

A test never sleeps to let something happen; it polls the condition that says it
happened, with a timeout generous enough for a loaded machine, and fails naming what
did not happen::

    wait_for(lambda: sink.count >= 10, 30, "ten points stored")

A sleep in a test is part of its scenario (publish at 1 Hz, let a deadman's silence
pass) and says so in a comment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, what: str = "the condition") -> T:
    """Poll ``condition`` until it returns a truthy value and return that value.

    Fails the test with ``what`` after ``timeout`` seconds. Polls often at first (most
    conditions hold within milliseconds), then every 0.1 s.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)

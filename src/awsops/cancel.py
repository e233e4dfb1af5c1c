"""Cancellation: one token passed from the command line down to every worker.

A long job that changes things must stop cleanly when asked: no new change starts
once the token is cancelled, calls already in flight finish and are recorded, and the
workers are joined before the job's state is closed. :func:`cancel_on_signals` turns
SIGINT and SIGTERM into a cancellation once the job is *armed* (it has begun to change
things); before that, a signal interrupts as usual, since nothing was changed yet.
Further signals never cut the clean stop short; only SIGKILL does.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from awsops.errors import AwsopsError


class Cancelled(AwsopsError):
    """The job stopped because it was asked to; exit 130 like a shell does for SIGINT."""

    exit_code = 130


class CancelToken:
    """A thread-safe, one-way flag with the reason it was set."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason: str | None = None
        self.armed = False

    def cancel(self, reason: str) -> bool:
        """Set the token; True if this call set it (the first reason is kept)."""
        with self._lock:
            if self._event.is_set():
                return False
            self.reason = reason
            self._event.set()
            return True

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def event(self) -> threading.Event:
        """The underlying event, for APIs that take one (waiters' ``stop``)."""
        return self._event

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return early (True) if cancelled meanwhile."""
        return self._event.wait(seconds)

    def arm(self) -> None:
        """From now on a signal cancels instead of interrupting."""
        self.armed = True


SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def cancel_on_signals(
    token: CancelToken, notify: Callable[[str], None] | None = None
) -> Iterator[CancelToken]:
    """Within the block, SIGINT and SIGTERM cancel ``token`` once it is armed (before
    that they raise KeyboardInterrupt). ``notify`` is told what happens, one line per
    signal. Only the main thread can install handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not token.armed:
            raise KeyboardInterrupt
        if token.cancel(f"interrupted by {name}"):
            message = (
                f"{name}: stopping; calls in flight finish and are recorded, nothing new starts"
            )
        else:
            message = f"{name}: already stopping; waiting for the calls in flight"
        if notify is not None:
            with contextlib.suppress(Exception):
                notify(message)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield token
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

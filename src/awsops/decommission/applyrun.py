"""The state one apply run shares between its phases and worker threads: the plan, the
options, the journal and what it replayed, the cancellation token and the clock.

:meth:`ApplyRun.record` is the only way a step is journaled. In a real run it raises
when the journal cannot take the record (closed, or the disk is full), and cancels the
run first, so no worker starts another change that would go unrecorded.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from awsops.cancel import CancelToken
from awsops.decommission.journal import Journal, JournalError, JournalState
from awsops.decommission.model import Plan
from awsops.decommission.outcomes import ApplyOptions

OnEvent = Callable[[Mapping[str, Any]], None]


class ApplyRun:
    """Shared, thread-safe state of one apply (see the module docstring)."""

    def __init__(
        self,
        plan: Plan,
        options: ApplyOptions,
        max_attempts: int,
        cancel: CancelToken | None = None,
        on_event: OnEvent | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.plan = plan
        self.options = options
        self.max_attempts = max_attempts
        self.cancel = cancel or CancelToken()
        self.on_event = on_event
        self.now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self.journal: Journal | None = None
        self.state = JournalState()
        self.journal_error: str | None = None
        self.sleep: Callable[[float], Any] = self.cancel.wait
        self.jitter: Callable[[], float] = random.random
        self._lock = threading.Lock()

    @property
    def dry_run(self) -> bool:
        return self.options.dry_run

    @property
    def stopping(self) -> bool:
        """True once the run must not start another change."""
        return self.cancel.cancelled

    def record(self, event: str, **data: Any) -> None:
        """Journal one step (nothing in a dry run)."""
        if self.dry_run:
            return
        try:
            if self.journal is None:
                raise JournalError(f"no journal is open: {event} was not recorded")
            entry = self.journal.record(event, **data)
        except JournalError as exc:
            with self._lock:
                self.journal_error = self.journal_error or str(exc)
            self.cancel.cancel("the journal could not be written")
            raise
        if self.on_event:
            self.on_event(entry)

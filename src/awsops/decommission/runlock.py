"""One run at a time on this host: an exclusive lock on a file in the awsops home.

A scheduler that starts the daily job again while yesterday's still runs (a slow
region, a hung SMTP server) must not mark twice or send the same notices twice: the
second run is refused, changing nothing. Runs on other hosts (other homes) are not
seen: schedule the job in one place.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from awsops.errors import UsageError
from awsops.home import home, open_private, private_dir


@contextlib.contextmanager
def run_lock(name: str, what: str) -> Iterator[None]:
    """Hold ``$AWSOPS_HOME/locks/<name>.lock`` for the block, or refuse at once."""
    path = private_dir(home() / "locks") / f"{name}.lock"
    try:
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise UsageError(f"cannot open lock {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another {what} is running ({path} is locked): nothing was done; "
                "let it finish, then run again"
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock

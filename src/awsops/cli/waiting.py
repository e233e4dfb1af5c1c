"""What every waiting command shares: a client for a service, the progress line, and
the ``--delay``/``--polls`` options."""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from awsops.cli.context import app_context
from awsops.clients import make_client
from awsops.errors import UsageError
from awsops.output import progress_for
from awsops.waiters import OnAttempt, WaitAttempt

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def client_for(service: str) -> Any:
    """A client for ``service`` in the command's region, from the one factory; an
    unknown service is a one-line error that suggests the close names."""
    app = app_context()
    factory = app.factory()
    region = app.default_region()  # validated when the factory was built
    session = factory.session()
    known = session.get_available_services()
    if service not in known:
        raise UsageError(f"unknown service {service!r}" + suggest(service, known))
    return make_client(session, service, region, factory.settings)


def suggest(word: str, choices: Sequence[str]) -> str:
    """``; did you mean: a, b?`` for close matches, else an empty string."""
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f"; did you mean: {', '.join(close)}?" if close else ""


def describe_attempt(attempt: WaitAttempt) -> str:
    """The progress line's text for one attempt: ``attempt 3/40, 45s, last: ...``."""
    observed = attempt.observed
    if isinstance(observed, dict):
        shown = ", ".join(f"{k}={v}" for k, v in observed.items()) or "-"
    elif isinstance(observed, list):
        counts: dict[str, int] = {}
        for value in observed:
            counts[str(value)] = counts.get(str(value), 0) + 1
        shown = ", ".join(f"{k}={v}" for k, v in counts.items()) or "none"
    else:
        shown = str(observed)
    pending = f", {attempt.pending} pending" if attempt.pending else ""
    return (
        f"attempt {attempt.attempt}/{attempt.max_attempts}, {attempt.elapsed:.0f}s, "
        f"last: {shown}{pending}"
    )


@contextmanager
def waiting(title: str) -> Iterator[OnAttempt]:
    """A per-attempt callback that drives a live progress line on a terminal."""
    with progress_for(sys.stderr) as progress:
        if progress is None:

            def quiet(attempt: WaitAttempt) -> None:
                log.debug("%s: %s", title, describe_attempt(attempt))

            yield quiet
            return
        task = progress.add_task(title, total=None, detail="")

        def update(attempt: WaitAttempt) -> None:
            progress.update(
                task,
                total=attempt.max_attempts,
                completed=attempt.attempt,
                detail=describe_attempt(attempt),
            )

        yield update


def wait_options(delay_default: float | None, polls_default: int | None) -> Callable[[F], F]:
    """``--delay`` and ``--polls`` (the waiter's own defaults when ``None``). Named
    ``--polls``, not ``--max-attempts``: the global ``--max-attempts`` is the API retry
    budget of every call."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "--polls",
            "polls",
            type=click.IntRange(min=1),
            default=polls_default,
            show_default=polls_default is not None,
            help="Polls before giving up (exit 4). Default: the waiter's.",
        )(fn)
        fn = click.option(
            "--delay",
            type=click.FloatRange(min=0),
            default=delay_default,
            show_default=delay_default is not None,
            help="Seconds between polls. Default: the waiter's.",
        )(fn)
        return fn

    return decorate

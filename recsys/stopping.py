"""Cooperative stop: a stop request reaches the long steps of a run within one batch.

A run (``recsys.train.run``) installs a :class:`StopSignal` for its duration with :func:`watching`; its
SIGTERM handler only sets the flag. Every step that can take long on a big catalogue (feature extraction,
the EASE solves of an L2 search, evaluation over the users, baseline and gate training) calls
:func:`check` between batches, which raises :class:`StopRequested` once a stop was asked for. Why not stop
only between epochs: on a million interactions a single evaluation or EASE search takes minutes, and a
user who pressed Stop must see the run end in seconds.

The signal is held in a context variable, so two runs in two threads of one process (tests) do not stop
each other, and code outside a run (the app, a notebook) never stops.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["StopRequested", "StopSignal", "watching", "current", "requested", "check", "interruptible"]


class StopRequested(Exception):
    """A long step noticed a stop request and gave up its partial work (nothing half-done is kept)."""


class StopSignal:
    """The flag a signal handler sets; read by :func:`check` in the steps of the run it watches."""

    def __init__(self) -> None:
        self.requested = False

    def request(self) -> None:
        self.requested = True


_current: contextvars.ContextVar[StopSignal | None] = contextvars.ContextVar("recsys_stop_signal", default=None)


@contextmanager
def watching(signal: StopSignal) -> Iterator[StopSignal]:
    """Make ``signal`` the one :func:`check` reads in this context (thread) until the block ends."""
    token = _current.set(signal)
    try:
        yield signal
    finally:
        _current.reset(token)


def current() -> StopSignal | None:
    """The signal of the run this code works for (None outside a run)."""
    return _current.get()


def requested() -> bool:
    """Whether the run this code works for was asked to stop (False outside a run)."""
    signal = _current.get()
    return signal is not None and signal.requested


def check(where: str = "") -> None:
    """Raise :class:`StopRequested` if a stop was asked for; ``where`` names the step for the run's log."""
    if requested():
        raise StopRequested(where or "a long step")


def interruptible(where: str, function: Callable[..., T], *args: Any, poll_s: float = 0.2, **kwargs: Any) -> T:
    """``function(*args, **kwargs)``, which is one long call into compiled code (a factorisation, a big sparse
    product), run so that a stop does not wait for it to return.

    Why a thread: a Python signal handler only runs when the main thread is back in the interpreter, so a
    30-second LAPACK call would hold a SIGTERM for 30 seconds. Here the call runs in a daemon thread while
    the caller waits in short joins; on a stop the caller raises :class:`StopRequested` at once and the
    abandoned result is dropped (a daemon thread does not keep the process alive). Outside a run it is a
    plain call.
    """
    signal = _current.get()
    if signal is None:
        return function(*args, **kwargs)
    check(where)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    context = contextvars.copy_context()  # the call sees the same signal (its own checks, if any, still work)
    worker = threading.Thread(target=context.run, args=(work,), name=f"recsys: {where}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(poll_s)
        if signal.requested:
            raise StopRequested(where)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]

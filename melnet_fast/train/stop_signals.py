"""Stopping a run on SIGTERM or SIGINT without losing the work since the last checkpoint.

A job scheduler stops a job with SIGTERM (and SIGKILL after a grace period); a user presses Ctrl-C (SIGINT).
Inside `SignalStop`, while `deferring()`, the first such signal is a request: `requested` holds its number, and
a training loop that polls it finishes its step, writes a checkpoint and returns. The command then exits with
status 128 + the signal number (130 for SIGINT, 143 for SIGTERM), what a shell reports for a process the
signal ended. Outside `deferring()` (nothing to save yet: the data is being read, the model built) the first
signal raises `Stopped` at once. A second signal always stops at once: its default action is restored and the
signal sent again, so the process ends as the signal ends it; atomic writes leave no half-written file, and
the temporary file of a write cut short is removed at the next start (melnet_fast.atomic_files).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator, Sequence


class Stopped(BaseException):
    """A stop signal arrived while there was nothing to save. A BaseException, like KeyboardInterrupt, so that
    `except Exception` clauses on the way up do not swallow it."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class SignalStop:
    """with SignalStop() as stop: ... with stop.deferring(): loop until stop.requested ...

    signals: the signals handled (default SIGTERM and SIGINT). say: where the handler reports (default stderr).
    Handlers are only installed from the main thread (Python's rule); elsewhere `requested` stays None.
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
                 say: Callable[[str], None] = _stderr):
        self.signals, self.say = tuple(signals), say
        self.requested: int | None = None
        self._deferring = False
        self._previous: dict = {}

    @property
    def exit_status(self) -> int | None:
        """128 + the number of the signal that asked to stop, or None."""
        return None if self.requested is None else 128 + self.requested

    @contextlib.contextmanager
    def deferring(self) -> Iterator[SignalStop]:
        """While inside, a first signal only sets `requested` (the caller polls it at safe points)."""
        if self.requested is not None:  # it came while nothing could be saved: stop now
            raise Stopped(self.requested)
        self._deferring = True
        try:
            yield self
        finally:
            self._deferring = False

    def _handle(self, signum: int, frame) -> None:
        name = signal_name(signum)
        if self.requested is not None:
            self.say(f"second {name}: stopping at once, without a checkpoint")
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = signum
        if not self._deferring:
            raise Stopped(signum)
        self.say(f"{name} received: finishing the current step and writing a checkpoint ({name} again stops at "
                 f"once)")

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

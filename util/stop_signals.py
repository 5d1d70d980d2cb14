"""SIGTERM and SIGINT as a request to stop at the next step boundary, as clusters preempt jobs.

The handler only records the signal, so the step and any checkpoint being written finish; the training loop
asks `requested` at each step boundary (all ranks agree through `util.distributed.max_over_ranks`), saves a
resumable 'latest' and exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM): the status a
shell reports for a process that signal ended, so a scheduler counts the job as interrupted, not finished.
A second SIGINT aborts at once (KeyboardInterrupt) without saving; a second SIGTERM is ignored.
"""
from __future__ import annotations

import os
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager: while active, SIGTERM/SIGINT set `signum` instead of ending the process."""

    def __init__(self, announce: bool = True) -> None:
        self.announce = announce  # rank 0 says it once; other ranks stay quiet
        self.signum = 0  # the first stop signal received (0: none)
        self.count = 0  # stop signals received so far
        self._owner = os.getpid()
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum != 0

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signal.signal works there only
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._owner:  # a forked DataLoader worker: the main process decides
            return
        self.count += 1
        name = signal.Signals(signum).name
        if self.requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        if self.announce:  # os.write: print() is not reentrant, and the main thread may be printing
            os.write(2, f"\n{name} received: stopping after this step with a resumable checkpoint "
                        f"(a second Ctrl-C aborts without saving)\n".encode())


def exit_status(signum: int) -> int:
    """128 + the signal number, the shell's status for a process ended by that signal."""
    return 128 + signum

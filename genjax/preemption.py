"""Stopping cleanly on SIGTERM or SIGINT (a preempted job, a Ctrl-C).

While a `StopSignal` is active, the first SIGTERM or SIGINT only records the request:
the loop sees it at the next step boundary, saves a checkpoint there, waits until the
save is committed and exits. Further signals during that save are acknowledged and
otherwise ignored, so an impatient second Ctrl-C or a scheduler's repeated SIGTERM
cannot leave a half-written checkpoint. SIGKILL (`kill -9`) cannot be caught; it loses
the steps since the newest checkpoint, and the unfinished save is removed on restart.
"""

from __future__ import annotations

import os
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """Context manager that turns SIGTERM/SIGINT into a stop request (`requested`)."""

    def __init__(self, signals=SIGNALS):
        self.signals = tuple(signals)
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def __enter__(self) -> StopSignal:
        # Python lets only the main thread install handlers; elsewhere (a notebook's
        # worker thread) signals keep their usual effect.
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            message = (f"Received {name}: stopping at the end of the current step, after "
                       "saving a checkpoint.")
        else:
            message = (f"Received {name} again: still stopping; waiting for the checkpoint "
                       "to be committed (kill -9 would lose the steps since the last one).")
        # os.write, not print: the handler may interrupt a print to the same stream, and
        # buffered streams refuse reentrant writes.
        try:
            os.write(2, (message + "\n").encode())
        except OSError:
            pass

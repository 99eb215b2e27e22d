"""Preemption: SIGTERM / SIGINT finish the current step, write a checkpoint and stop cleanly.

A cluster scheduler sends SIGTERM some seconds before it takes the machine; Ctrl-C sends SIGINT.
While `Trainer.fit` runs, the first such signal only sets `received`; the loop checks it after
each optimizer step, saves, and returns (the CLI then prints how to resume and exits 0). A second
signal restores the default action and re-sends itself: the process ends at once (a run stopped
that way resumes from its previous checkpoint, as after SIGKILL). Signals within DUPLICATE_S of
the first count as the same request: a scheduler that signals a whole process group reaches a
rank both directly and through torchrun, which forwards what it gets.

Under torchrun the ranks agree on stopping through one all_reduce per step (trainer.py), so a
signal that reaches only some ranks stops all of them after the same step.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

SIGNALS = (signal.SIGTERM, signal.SIGINT)
DUPLICATE_S = 1.0  # seconds after the first signal during which another is the same request


class GracefulStop:
    """Context manager: installs the handlers (main thread only), restores the old ones."""

    def __init__(self, announce: bool = True):
        self.received: str | None = None  # "SIGTERM" / "SIGINT" once a first signal came
        self.announce = announce
        self._old: dict = {}
        self._first = 0.0

    def install(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.restore()
        return False

    def _handle(self, signum, frame):
        if self.received is not None:
            if time.monotonic() - self._first < DUPLICATE_S:
                return  # the same request, delivered twice
            signal.signal(signum, signal.SIG_DFL)  # a second request: end now, by that signal
            os.kill(os.getpid(), signum)
            return
        self.received, self._first = signal.Signals(signum).name, time.monotonic()
        if self.announce:
            sys.stderr.write(f"zeroformer: {self.received}: finishing this step and saving a "
                             "checkpoint (send it again to stop at once)\n")

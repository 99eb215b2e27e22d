"""The training progress bar: step / max_steps, loss, tokens/s, lr and ETA (tqdm, on stderr)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, start: int, total: int, enabled: bool = True):
        self.bar = tqdm(total=total, initial=start, disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True, unit="step", mininterval=0.5, leave=True)
        self.t_last, self.tokens = time.perf_counter(), 0
        self.tok_per_s = 0.0

    def update(self, step_tokens: int, loss: float, lr: float) -> None:
        self.tokens += step_tokens
        now = time.perf_counter()
        if now - self.t_last >= 0.5:  # a smoothed rate over the last half second or more
            self.tok_per_s = self.tokens / (now - self.t_last)
            self.t_last, self.tokens = now, 0
        self.bar.set_postfix_str(f"loss {loss:.4f} | {self.tok_per_s:,.0f} tok/s | lr {lr:.2e}",
                                 refresh=False)
        self.bar.update(1)

    def set_total(self, total: int) -> None:
        """A new planned end (a time budget's re-plan)."""
        self.bar.total = total
        self.bar.refresh()

    def write(self, line: str) -> None:
        """A log line that does not break the bar (stderr)."""
        if self.bar.disable:
            sys.stderr.write(line + "\n")
        else:
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()

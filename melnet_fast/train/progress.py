"""The training progress bar: steps done of the run's steps, or, when a time budget bounds the run, the time left.

Without a budget it is tqdm's step counter (with its own rate and time estimate). With one, the bar fills with
the larger of two fractions, steps done / steps and time spent / budget (whichever bound will end the run), and
shows the step and the time left: the sooner of the budget's end and the step bound at the mean step rate so far.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

from melnet_fast._optional import require


class TrainProgress:
    """update(step, **postfix) after each step; close() at the end.

    step0: the step the run starts at (a resumed run); steps: the step bound; max_seconds: the time budget
    from `start` (a value of `clock`), or None. file: where the bar goes (default stderr).
    """

    def __init__(self, step0: int, steps: int, max_seconds: float | None, *, enabled: bool = True,
                 start: float | None = None, clock: Callable[[], float] = time.perf_counter, file=None):
        tqdm = require("tqdm.auto", "the progress bar").tqdm
        self.step0, self.steps, self.max_seconds, self.clock = step0, steps, max_seconds, clock
        self.start = clock() if start is None else start
        file = file or sys.stderr
        if max_seconds is None:
            self.bar = tqdm(total=steps, initial=min(step0, steps), desc="train", unit="step", dynamic_ncols=True,
                            disable=not enabled, file=file)
        else:
            self.bar = tqdm(total=1.0, desc="train", dynamic_ncols=True, disable=not enabled, file=file,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def update(self, step: int, **postfix) -> None:
        if self.max_seconds is None:
            self.bar.set_postfix(**postfix, refresh=False)
            self.bar.update(step - self.bar.n)
            return
        tqdm = require("tqdm.auto", "the progress bar").tqdm
        elapsed = self.clock() - self.start
        done = step - self.step0
        left = max(0.0, self.max_seconds - elapsed)
        fraction = elapsed / self.max_seconds if self.max_seconds > 0 else 1.0
        if self.steps > self.step0:
            fraction = max(fraction, done / (self.steps - self.step0))
            if done:
                left = min(left, elapsed / done * (self.steps - step))
        self.bar.set_postfix_str(", ".join([f"step {step}", f"{tqdm.format_interval(left)} left"]
                                           + [f"{k}={v}" for k, v in postfix.items()]), refresh=False)
        self.bar.update(min(1.0, fraction) - self.bar.n)

    def close(self) -> None:
        self.bar.close()

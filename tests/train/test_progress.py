"""The training progress bar: steps of the step bound, or the time left of a time budget."""

import io

from melnet_fast.train.progress import TrainProgress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _last_line(text: str) -> str:
    return text.replace("\r", "\n").strip().splitlines()[-1]


def test_a_time_budget_shows_time_left_not_the_step_bound():
    clock, out = Clock(), io.StringIO()
    bar = TrainProgress(0, 100_000, 600.0, start=0.0, clock=clock, file=out)
    for step in range(1, 101):
        clock.now = 1.5 * step  # 150 s for 100 steps: a quarter of the budget
        bar.update(step, loss="0.5")
    bar.bar.refresh()
    line = _last_line(out.getvalue())
    assert line.startswith("train:  25%"), line
    assert "step 100" in line and "07:30 left" in line and "loss=0.5" in line
    assert "100000" not in line
    bar.close()


def test_the_nearer_bound_decides():
    clock, out = Clock(), io.StringIO()
    bar = TrainProgress(10, 30, 600.0, start=0.0, clock=clock, file=out)  # resumed at step 10 of 30
    clock.now = 20.0
    bar.update(20)  # half the steps in 20 s: 20 s left by steps, 580 s by time
    bar.bar.refresh()
    line = _last_line(out.getvalue())
    assert line.startswith("train:  50%") and "00:20 left" in line, line
    bar.close()


def test_without_a_budget_it_counts_steps():
    out = io.StringIO()
    bar = TrainProgress(4, 10, None, file=out)
    bar.update(5, loss="1.0")
    bar.bar.refresh()
    line = _last_line(out.getvalue())
    assert " 5/10 " in line and "loss=1.0" in line, line
    bar.close()

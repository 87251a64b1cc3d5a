"""Training logs: metrics.csv (one row per logged step or validation), TensorBoard scalars, train.log messages.

metrics.csv has a fixed header, so it loads straight into pandas / a spreadsheet:
    step, split ("train" or "val"), time (unix), elapsed_s, nll_nats, nll_bits, nll_tier<g>_nats for each tier,
    baseline_nll_nats (val rows), lr, grad_norm, elements_per_s, audio_seconds_per_s and audio_khz (the audio
    rate: seconds of audio and kHz of audio samples per second of training steps), padded_share (of the current
    epoch's batches), skipped (steps skipped so far, train rows); text models: guided_attention and
    guided_attention_weight (train rows, see csv_columns).
A resumed run first drops the rows logged after its checkpoint, so every step appears once.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List

from melnet_fast._optional import missing_message, require
from melnet_fast.atomic_files import atomic_write_text


def csv_columns(n_tiers: int, text: bool = False) -> List[str]:
    """The columns of a MelNet run; text models add guided_attention (the guided-attention loss, train rows,
    apart from the NLL) and guided_attention_weight (its weight in the objective at that step)."""
    return (["step", "split", "time", "elapsed_s", "nll_nats", "nll_bits"]
            + [f"nll_tier{g}_nats" for g in range(1, n_tiers + 1)]
            + ["baseline_nll_nats", "lr", "grad_norm", "elements_per_s", "audio_seconds_per_s", "audio_khz",
               "padded_share", "skipped"]
            + (["guided_attention", "guided_attention_weight"] if text else []))


class MetricsLogger:
    """Appends metrics to RUN_DIR/metrics.csv and to TensorBoard (as "<split>/<name>"), messages to train.log
    and stderr. root None: messages only (printed), nothing written. The columns are MelNet's for n_tiers
    (csv_columns), or the given ones (other models' trainers)."""

    def __init__(self, root: str | os.PathLike | None, n_tiers: int | None = None, resume_step: int | None = None,
                 tensorboard: bool = True, echo: bool = True, columns: List[str] | None = None):
        if (n_tiers is None) == (columns is None):
            raise ValueError("MetricsLogger needs either n_tiers (MelNet's columns) or columns")
        self.columns = csv_columns(n_tiers) if columns is None else list(columns)
        self.root = None if root is None else Path(root)
        self.echo = echo
        self.start = time.time()
        self._writer = None
        if self.root is None:
            return
        self.csv_path = self.root / "metrics.csv"
        self.log_path = self.root / "train.log"
        self._prepare_csv(resume_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.root / "tensorboard"), purge_step=resume_step)
            except ImportError as e:  # the `train` extra is optional for library users
                warnings.warn(f"TensorBoard logging is off ({e}): "
                              f"{missing_message('tensorboard', 'TensorBoard logging')}", stacklevel=2)

    def _prepare_csv(self, resume_step: int | None) -> None:
        if not self.csv_path.exists():
            atomic_write_text(self.csv_path, ",".join(self.columns) + "\n")
            return
        with open(self.csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if resume_step is not None and int(r["step"]) <= resume_step]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(keep)
        atomic_write_text(self.csv_path, buffer.getvalue())

    def log(self, step: int, split: str, values: Dict[str, float]) -> None:
        """One row: values maps column names (see csv_columns) to numbers; the others stay empty."""
        if self.root is None:
            return
        now = time.time()
        row = {"step": step, "split": split, "time": f"{now:.3f}", "elapsed_s": f"{now - self.start:.3f}"}
        row.update({k: _fmt(v) for k, v in values.items() if k in self.columns})
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore", lineterminator="\n").writerow(row)
        if self._writer is not None:
            for k, v in values.items():
                if v is not None:
                    self._writer.add_scalar(f"{split}/{k}", float(v), step)

    def message(self, text: str, echo: bool | None = None) -> None:
        """A line for the user: stderr (above the progress bar; echo None: as the logger was made) and
        train.log."""
        if self.echo if echo is None else echo:
            show(text)
        if self.root is not None:
            with open(self.log_path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def show(text: str) -> None:
    """A line for the user on stderr, above the progress bar if there is one."""
    tqdm = require("tqdm.auto", "the progress bar").tqdm
    tqdm.write(text, file=sys.stderr)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def read_metrics(path: str | os.PathLike) -> List[Dict[str, str]]:
    """The rows of a metrics.csv as dicts of strings (empty string = not logged)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))



"""A check run at one instruction-set level of the C++ CPU kernels (4 AVX-512, 3 AVX2 + FMA, 1 baseline), forced
in a fresh process by MELNET_FAST_CPU_LEVEL (read once per process); levels the host cannot run are skipped."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from melnet_fast import _extension

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEVELS = [4, 3, 1]


def levels_here() -> list[int]:
    """The levels the extension was compiled for that this CPU can run."""
    ext = _extension.extension()
    if ext is None:
        return []
    compiled, host = ext.cpu_levels()
    return [level for level in compiled if level <= host]


def run_at_level(level: int, code: str) -> None:
    """Runs the Python source `code` (from the repository root) at `level`; it must print "ok" last."""
    if level not in levels_here():
        pytest.skip(f"level {level} is not compiled or this CPU cannot run it (runs: {levels_here()})")
    env = {**os.environ, "MELNET_FAST_CPU_LEVEL": str(level), "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout[-3000:] + proc.stderr[-3000:]

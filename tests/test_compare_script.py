"""benchmarks/compare_models.py in smoke mode (tiny presets, a few steps): the README's comparison stays one
command that runs."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compare_models_smoke(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "compare_models.py"), "--smoke",
                           "--out", str(tmp_path / "runs"), "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    doc = json.loads((tmp_path / "compare_synthetic_smoke.json").read_text())
    kinds = [m["kind"] for m in doc["comparison"]["models"]]
    assert kinds == ["melnet", "cmelgan", "reference"]
    assert all(doc["cpu_s"][k] > 0 for k in ("melnet", "cmelgan")) and doc["load_1min"]["start"] >= 0
    assert doc["comparison"]["models"][0]["label_accuracy"] is not None  # MelNet is trained conditionally
    assert "| melnet (melnet) |" in doc["table"] and "| cmelgan (cmelgan) |" in doc["table"]
    assert (tmp_path / "compare_synthetic_smoke.png").stat().st_size > 10_000

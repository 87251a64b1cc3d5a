"""scripts/tts_demo.sh at a tiny size, on a small text-speech corpus made here (tones standing in for speech):
every stage runs and writes its outputs (NLL table, alignment statistics and plots, synthesised audio)."""

import csv
import os
import subprocess
from pathlib import Path

from melnet_fast.corpus_makers.common import write_flac
from tests.corpus_fakes import fake_tone
from tests.model.helpers import TEXTS

ROOT = Path(__file__).resolve().parents[2]


def test_tts_demo_runs_every_stage(tmp_path):
    corpus = tmp_path / "corpus"
    rows = []
    for k in range(8):
        write_flac(corpus / "audio" / f"{k}.flac", fake_tone(0.6 + 0.05 * k, 16000, k), 16000)
        rows.append({"path": f"audio/{k}.flac", "text": TEXTS[k % len(TEXTS)], "split": "test" if k < 3 else "train"})
    with open(corpus / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "text", "split"])
        w.writeheader()
        w.writerows(rows)
    env = dict(os.environ, TTS_DEMO_NO_SETUP="1", TTS_DEMO_STEPS="2", TTS_DEMO_SPEAK="1", OMP_NUM_THREADS="1",
               TTS_DEMO_SET="hidden_size=4 layers=1,1,1 n_mels=16 n_mixtures=2 attention_mixtures=1 max_seconds=1.0 "
                            "batch_size=2")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "tts_demo.sh"), str(tmp_path)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    assert "held-out utterances (test split, whole, with their own texts): 3" in report
    assert "| held-out |" in report and "attention monotone:" in report
    assert "tier-1 NLL lower with the own text than with another clip's text: " in report
    for name in ("alignment-1.png", "alignment-2.png", "speech.wav", "speech-alignment.png"):
        assert (tmp_path / name).stat().st_size > 0, name

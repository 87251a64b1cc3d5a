"""`melnet-fast demo` end to end, shrunk to seconds (the real demo trains for minutes)."""

import re

from tests.cli.conftest import cli, ok


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = ok(cli("demo", "--out", out, "--train-minutes", "0.02", "--max-steps", "3", "--clips", "4",
                    "--val-clips", "1", "--samples", "1", "--seconds", "0.5", "--inversion", "griffin_lim",
                    "--iters", "3", "--no-progress"))
    text = result.stdout
    model, baseline = map(float, re.search(r"all\s+: model\s+(\S+) .* baseline\s+(\S+)", text).groups())
    assert "demo wall time" in text
    gap = float(re.search(r"per-channel mean: gap (\S+)", text).group(1))  # printed next to the NLL
    assert gap >= 0 and "values at the log floor" in text
    for name in ("generated-1.wav", "generated-1.png", "generated-1.npy", "real-1.wav", "real_vs_generated.png"):
        assert (out / "samples" / name).is_file(), name
    assert (out / "checkpoints" / "latest.pt").is_file()


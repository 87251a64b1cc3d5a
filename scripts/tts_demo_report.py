"""The TTS demo's report on held-out sentences: does the attention of a text run read its texts?

For each held-out utterance (whole, with its own text) the teacher-forced alignment of the initial tier is taken
on the real spectrogram; its focus (the most attended symbol at each frame) is *monotone* when it never moves back
by more than one symbol, and *reaches the end* when at the clip's last frame it is on one of the last two
characters or on end-of-text. Each utterance is also scored (tier-1 NLL) with its own text and with another one's
of similar length (train.conditioning.mismatched_texts, as `melnet-fast eval --other-texts` pairs them): the share
of utterances that the own text scores better says whether the model reads its text, utterance by utterance.
Writes alignment plots of the first --plots utterances and, with the JSON lines of `melnet-fast eval --json` with
the own and the other texts, an NLL table, all into report.md.

    python scripts/tts_demo_report.py --run RUN --data MANIFEST --out DIR [--own own.json --other other.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from melnet_fast.cli.common import load_run_model
from melnet_fast.plots import plot_alignment
from melnet_fast.train import DataSpec, build_eval_dataset
from melnet_fast.train.conditioning import mismatched_texts
from melnet_fast.train.run_dir import RunDir


def centroid_monotone(alignment: torch.Tensor, n_symbols: int) -> bool:
    """Whether the attention's mean position (sum_u u phi(u) / sum_u phi(u)) of alignment [T, U] never moves back
    by more than one symbol: the argmax of a window a few symbols wide flickers between neighbours, its mean not."""
    phi = alignment[:, :n_symbols]
    mean = (phi * torch.arange(n_symbols, dtype=phi.dtype)).sum(-1) / phi.sum(-1).clamp(min=1e-12)
    return bool((mean[1:] >= mean[:-1] - 1).all())


def alignment_stats(alignment: torch.Tensor, n_symbols: int) -> tuple[bool, bool]:
    """alignment [T, U] of one utterance whose text has n_symbols symbols (end-of-text included) ->
    (monotone: the focus, its argmax, never moves back by more than one symbol; reaches the end)."""
    focus = alignment[:, :n_symbols].argmax(-1)
    monotone = bool((focus[1:] >= focus[:-1] - 1).all())
    return monotone, int(focus[-1]) >= n_symbols - 3


def tier1_nll(path: Path) -> float:
    d = json.loads(Path(path).read_text().strip().splitlines()[-1])
    return float(d["tiers"]["1"]["nll_nats"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True, help="the corpus manifest (its test split is scored)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True)
    parser.add_argument("--own", help="`melnet-fast eval --json` output with the own texts")
    parser.add_argument("--other", help="the same with --other-texts")
    parser.add_argument("--plots", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc, model, _ = load_run_model(args.run, "best", torch.device("cpu"))
    c = model.config
    frames = (doc.get("train") or {}).get("crop_frames") or c.max_frames
    data = build_eval_dataset(args.data, DataSpec.from_dict(doc["data"]), c, frames, cache_dir=RunDir(args.run).cache,
                              split=args.split)
    model.eval()
    rows = []
    others = mismatched_texts(data.texts)
    better = 0
    with torch.no_grad():
        for k in range(len(data)):
            x = data.spectrogram(k)
            x = x[:x.shape[0] - x.shape[0] % c.time_factor][None].to(next(model.parameters()).dtype)
            text = data.texts[k]
            ids, n = model.text_frontend.encode([text])
            al = model.alignment(x, {"text": [text]})[0]
            rows.append((text, *alignment_stats(al, int(n[0])), centroid_monotone(al, int(n[0]))))
            better += float(model.loss(x, {"text": [text]}, tiers=[1])) < float(model.loss(x, {"text": [others[k]]},
                                                                                           tiers=[1]))
            if k < args.plots:
                symbols = model.text_frontend.decode(ids[0, :int(n[0])])
                plot_alignment(out / f"alignment-{k + 1}.png", al[:, :len(symbols)], symbols, c,
                               frame_seconds=c.hop_length * c.time_factor / c.sample_rate,
                               title=f"held-out: {text}")
    n = len(rows)
    monotone = sum(r[1] for r in rows)
    reached = sum(r[1] and r[2] for r in rows)
    centroid = sum(r[3] for r in rows)
    centroid_reached = sum(r[3] and r[2] for r in rows)
    lines = [f"held-out utterances ({args.split} split, whole, with their own texts): {n}",
             f"attention monotone: {monotone}/{n} ({monotone / n:.0%}); monotone and reaching the last characters "
             f"by the clip's end: {reached}/{n} ({reached / n:.0%}); mean position monotone: {centroid}/{n}, and "
             f"the focus reaching the last characters: {centroid_reached}/{n}",
             f"tier-1 NLL lower with the own text than with another clip's text: {better}/{n} ({better / n:.0%})"]
    if args.own and args.other:
        own, other = tier1_nll(args.own), tier1_nll(args.other)
        lines += ["", "| tier-1 NLL (nats/element) | own text | another clip's text | gap |", "|---|---|---|---|",
                  f"| held-out | {own:.4f} | {other:.4f} | {other - own:+.4f} |"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

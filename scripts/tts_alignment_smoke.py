"""Does a text model learn an alignment at all? Trains the initial tier of a small text model on synthetic
text-speech pairs (melnet_fast.synthetic_speech) on the CPU and reports, on held-out pairs, the NLL with each
clip's own text against another clip's text, and the attention: how often its focus (argmax) is on the symbol
that sounds at that frame (within one symbol; the data knows the true alignment), moves forward, and reaches the
last symbol, and how peaked it is. Writes alignment plots of two held-out clips.

    python scripts/tts_alignment_smoke.py [--minutes 10] [--out tts_smoke]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from melnet_fast import MelNet, MelNetConfig
from melnet_fast.plots import plot_alignment
from melnet_fast.synthetic_speech import ALPHABET, synthetic_text_speech


def alignment_report(model, x, texts, positions) -> dict:
    """Held-out NLL with the clips' own texts and with the texts shifted by one clip; attention statistics
    against the true alignment `positions` [B, T] (symbol index sounding at each frame)."""
    model.eval()
    with torch.no_grad():
        own = float(model.loss(x, {"text": texts}, tiers=[1]))
        other = float(model.loss(x, {"text": texts[1:] + texts[:1]}, tiers=[1]))
        al = model.alignment(x, {"text": texts})
        _, lengths = model.text_frontend.encode(texts)
        focus = al.argmax(-1)
        on_target = float(((focus - positions).abs() <= 1).float().mean())
        forward = float((focus[:, 1:] >= focus[:, :-1]).float().mean())
        # the last letter of each text (before end-of-text) gets the focus at some frame
        reached = float((focus.max(-1).values >= lengths - 2).float().mean())
        peak = float(al.max(-1).values.mean())
    model.train()
    return dict(own=own, other=other, gap=other - own, on_target=on_target, forward=forward, reached=reached,
                peak=peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hidden", type=int, default=24)
    parser.add_argument("--out", default="tts_smoke")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a tiny model runs fastest on one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    F, T = 16, 48
    config = MelNetConfig.preset("tts_tiny", n_tiers=2, n_mels=F, hidden_size=args.hidden, layers=(3, 1),
                                 n_mixtures=3, attention_mixtures=3, text_symbols=" " + ALPHABET)
    train_x, train_t, _ = synthetic_text_speech(512, T, F, seed=args.seed)
    val_x, val_t, val_pos = synthetic_text_speech(32, T, F, seed=args.seed + 1)
    model = MelNet(config)
    optimizer = torch.optim.Adam(model.tiers[0].parameters(), lr=3e-3)
    print(f"{sum(model.parameter_counts()[:1]):,} parameters in the initial tier; 512 training and 32 held-out "
          f"clips of {T} frames x {F} channels; Adam 3e-3, batch 16, {args.minutes:g} min", flush=True)
    start, step = time.time(), 0
    while time.time() - start < args.minutes * 60:
        idx = torch.randint(0, len(train_t), (16,))
        loss = model.loss(train_x[idx], {"text": [train_t[i] for i in idx]}, tiers=[1])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 100 == 0:
            r = alignment_report(model, val_x, val_t, val_pos)
            print(f"{time.time() - start:6.0f} s step {step:5d} held-out NLL own text {r['own']:.3f}, other text "
                  f"{r['other']:.3f} (gap {r['gap']:.3f}); focus on the sounding symbol {r['on_target']:.2f}, "
                  f"forward {r['forward']:.2f}, reaches the end {r['reached']:.2f}, peak weight {r['peak']:.2f}",
                  flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    with torch.no_grad():
        al = model.alignment(val_x[:2], {"text": val_t[:2]})
    ids, lengths = model.text_frontend.encode(val_t[:2])
    for b in range(2):
        symbols = model.text_frontend.decode(ids[b, :int(lengths[b])])
        plot_alignment(out / f"alignment-{b + 1}.png", al[b, :, :len(symbols)], symbols, config,
                       title=f"held-out clip {b + 1}: {val_t[b]!r}")
    model.save(out / "model.safetensors")
    print(f"wrote {out}/alignment-1.png, alignment-2.png, model.safetensors", flush=True)


if __name__ == "__main__":
    main()

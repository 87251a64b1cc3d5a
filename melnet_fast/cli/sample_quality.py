"""What `melnet-fast demo` and `melnet-fast eval` report about generated spectrograms, next to the NLL: their
fidelity to held-out real clips (melnet_fast.evaluation), in one place so that both commands print the same."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch

from melnet_fast.evaluation import sample_fidelity


def draw_samples(model, count: int, frames: int, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    """count spectrograms [count, frames, F] from model.sample; a conditional model cycles through its speaker /
    label ids."""
    param = next(model.parameters())
    c = model.config
    cond = torch.arange(count, device=param.device) % c.n_speakers if c.n_speakers else None
    generator = torch.Generator(device=param.device).manual_seed(seed)
    return model.sample(count, frames, cond, float(temperature), generator=generator)


def sample_report(generated: torch.Tensor, real: Sequence[torch.Tensor], temperature: float
                  ) -> Tuple[Dict[str, Any], List[str]]:
    """(measures as a JSON-able dict, lines to print) of generated spectrograms [N, T, F] against real ones
    (a sequence of [T_i, F]), all in normalised log-mel units."""
    fidelity = sample_fidelity(generated, real)
    g, r = fidelity.generated, fidelity.real
    measures: Dict[str, Any] = {"temperature": float(temperature), "fidelity": fidelity.to_dict()}
    lines = [f"sample fidelity at temperature {temperature:g}: {g.clips} generated clips of "
             f"{generated.shape[1]} frames against {r.clips} held-out real clips ({r.frames} frames), normalised "
             f"log-mel units:"]
    lines += [f"  {line}" for line in fidelity.lines()]
    # The classifier-based measures (label accuracy of the samples, Frechet distance of classifier embeddings to
    # held-out real clips; melnet_fast.evaluation's classifier) belong here, as measures[...] and lines, so that
    # the demo and `melnet-fast eval` both report them.
    return measures, lines


"""What `melnet-fast demo` and `melnet-fast eval` report about generated spectrograms, next to the NLL: their
fidelity to held-out real clips, and where a label classifier applies (labelled data), the classifiers' label
accuracy of the samples and the Fréchet distance of their features to held-out real segments
(melnet_fast.evaluation), in one place so that both commands print the same."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch

from melnet_fast.evaluation import judge_samples, sample_fidelity

# The label classifiers that judge the samples of demo and eval: fewer and shorter-trained than compare's (3 x 400
# steps) to keep these commands quick; the spread over them is printed with every figure.
JUDGE_CLASSIFIERS, JUDGE_STEPS = 2, 200


def sample_labels(model, count: int) -> torch.Tensor | None:
    """The labels [count] draw_samples conditions on: a conditional model's speaker / label ids in turn (None for
    an unconditional model)."""
    c = model.config
    return torch.arange(count) % c.n_speakers if c.n_speakers else None


def draw_samples(model, count: int, frames: int, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    """count spectrograms [count, frames, F] from model.sample; a conditional model cycles through its speaker /
    label ids (sample_labels)."""
    param = next(model.parameters())
    cond = sample_labels(model, count)
    cond = cond.to(param.device) if cond is not None else None
    generator = torch.Generator(device=param.device).manual_seed(seed)
    return model.sample(count, frames, cond, float(temperature), generator=generator)


def sample_report(generated: torch.Tensor, real: Sequence[torch.Tensor], temperature: float, *,
                  labels: torch.Tensor | None = None, train=None, held_out=None, frames: int | None = None,
                  seed: int = 0) -> Tuple[Dict[str, Any], List[str]]:
    """(measures as a JSON-able dict, lines to print) of generated spectrograms [N, T, F] against real ones
    (a sequence of [T_i, F]), all in normalised log-mel units. With train / held_out (the training and held-out
    datasets) the classifier-based measures too (classifier_report; labels [N]: what the samples were
    conditioned on, None when unconditional; frames: the window judged)."""
    fidelity = sample_fidelity(generated, real)
    g, r = fidelity.generated, fidelity.real
    measures: Dict[str, Any] = {"temperature": float(temperature), "fidelity": fidelity.to_dict()}
    lines = [f"sample fidelity at temperature {temperature:g}: {g.clips} generated clips of "
             f"{generated.shape[1]} frames against {r.clips} held-out real clips ({r.frames} frames), normalised "
             f"log-mel units:"]
    lines += [f"  {line}" for line in fidelity.lines()]
    if train is not None and held_out is not None:
        judged, judge_lines = classifier_report(generated, labels, train, held_out, frames, seed)
        measures["classifier"] = judged
        lines += judge_lines
    return measures, lines


def classifier_report(generated: torch.Tensor, labels: torch.Tensor | None, train, held_out,
                      frames: int | None = None, seed: int = 0) -> Tuple[Dict[str, Any] | None, List[str]]:
    """(measures or None, lines) of the label classifiers judging generated [N, T, F] (judge_samples: label
    accuracy when labels [N] are given, Fréchet distance to held_out's segments of `frames` frames, the samples
    cut into windows of that length). None, with a line saying why, where no classifier applies: data with fewer
    than two labels, held-out labels other than the training data's, or too little held-out data."""
    def skipped(why: str):
        return None, [f"label accuracy and Fréchet distance of the samples: not measured ({why})"]

    if len(train.label_names) < 2:
        return skipped("the data has fewer than two labels for a classifier to learn")
    if list(held_out.label_names) != list(train.label_names):
        return skipped(f"the held-out data's labels {list(held_out.label_names)} are not the training data's "
                       f"{list(train.label_names)}")
    try:
        judged = judge_samples(generated, labels, train, held_out, frames=frames, classifiers=JUDGE_CLASSIFIERS,
                               classifier_steps=JUDGE_STEPS, seed=seed)
    except ValueError as e:
        return skipped(str(e))
    head = (f"judged by {judged.classifiers} label classifiers (trained on the training data, {JUDGE_STEPS} steps) "
            f"on {judged.samples} windows of {judged.frames} frames of the samples:")
    return judged.to_dict(), [head] + [f"  {line}" for line in judged.lines()]

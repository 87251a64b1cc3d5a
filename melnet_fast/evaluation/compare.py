"""Sample quality of trained runs side by side (MelNet and cMelGAN alike), on one labelled dataset.

1. The held-out real data is cut into non-overlapping segments of `frames` frames: the reference set (N).
2. Several LabelClassifiers (seeds seed, seed + 1, ...) are trained on crops of the training data and scored on
   the reference set.
3. Every run generates N spectrograms, each conditioned on the label of one reference segment (unconditional
   models just generate N). Scores: the classifiers' accuracy at recovering the conditioned label, and the
   Fréchet distance between the classifier features of the generated and the reference sets, each the mean over
   the classifiers with its standard deviation: one small classifier's feature space is a noisy judge (the
   ranking of two close models can change with its seed), and the spread says how far to trust a difference.
   The floor of the distance is that of N training crops against the reference set (real against real).
4. Beside them: parameters, training throughput in kHz of audio per second (the median of metrics.csv's train
   rows), and, where the model has a density, its held-out NLL. A per-label, per-channel Gaussian fitted on the
   training data is scored as a reference row: a model whose samples are no closer than independent noise with
   each label's spectral envelope has not learnt the music's structure.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch

from melnet_fast import audio
from melnet_fast.evaluation.judge import Judges, reference_segments
from melnet_fast.train import SYNTHETIC, ChannelGaussian, DataSpec, RunDir, build_datasets, evaluate
from melnet_fast.train.metrics import read_metrics

REFERENCE = "per-label channel Gaussian"


@dataclasses.dataclass
class ModelScores:
    """One row of a comparison. parameters: all trained ones (for a GAN, both networks); sampling_parameters:
    those that make a sample (a GAN's generator). train_audio_khz: training throughput in thousands of audio
    samples per second. nll_nats: held-out NLL per element (None without a density). label_accuracy (None for
    an unconditional model) and frechet: means over the classifiers, *_std their standard deviations.
    nonfinite: generated values that were NaN or infinite (clamped before scoring)."""

    name: str
    kind: str
    run: str | None
    parameters: int | None
    sampling_parameters: int | None
    train_steps: int | None
    train_audio_khz: float | None
    nll_nats: float | None
    label_accuracy: float | None
    label_accuracy_std: float | None
    frechet: float
    frechet_std: float
    samples: int
    nonfinite: int = 0


@dataclasses.dataclass
class Comparison:
    """The scores of several models on one dataset. classifiers: how many label classifiers judged (means and
    standard deviations over them). classifier_accuracy: on the held-out real segments (the ceiling of a model's
    label accuracy); frechet_floor: training crops against the held-out segments; feature_dim: of the classifier
    features (the distances are noisy with fewer than about twice as many segments)."""

    data: str
    frames: int
    n_mels: int
    reference_segments: int
    label_names: List[str]
    classifiers: int
    classifier_accuracy: float
    classifier_accuracy_std: float
    frechet_floor: float
    frechet_floor_std: float
    feature_dim: int
    temperature: float
    seed: int
    models: List[ModelScores]
    # One spectrogram [frames, F] per label (label_names order) of the held-out data and of every model (by name);
    # for figures (plots.plot_grid), left out of to_dict.
    examples: Dict[str, List[torch.Tensor]] = dataclasses.field(default_factory=dict, repr=False)

    def to_dict(self) -> Dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "examples"}
        return {**d, "label_names": list(self.label_names), "models": [dataclasses.asdict(m) for m in self.models]}

    def table(self) -> str:
        """A markdown table: one row per model, then the real data's row."""
        def num(v, fmt, std=None):
            if v is None:
                return "n/a"
            return format(v, fmt) + (f" ± {format(std, fmt)}" if std is not None and self.classifiers > 1 else "")

        lines = ["| model | parameters (trained / sampling) | training steps | training kHz of audio / s | "
                 "held-out NLL (nats/element) | label accuracy of samples | Fréchet distance |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for m in self.models:
            params = "n/a" if m.parameters is None else (
                f"{m.parameters:,}" if m.sampling_parameters in (None, m.parameters)
                else f"{m.parameters:,} / {m.sampling_parameters:,}")
            lines.append(f"| {m.name} ({m.kind}) | {params} | {num(m.train_steps, ',')} | "
                         f"{num(m.train_audio_khz, '.1f')} | {num(m.nll_nats, '.3f')} | "
                         f"{num(m.label_accuracy, '.3f', m.label_accuracy_std)} | "
                         f"{num(m.frechet, '.1f', m.frechet_std)} |")
        lines.append(f"| held-out real (floor: training crops) | | | | | "
                     f"{num(self.classifier_accuracy, '.3f', self.classifier_accuracy_std)} | "
                     f"{num(self.frechet_floor, '.1f', self.frechet_floor_std)} |")
        return "\n".join(lines)


def _is_conditional(model) -> bool:
    """Whether the model's samples take a label: a MelNet with speakers, a cMelGAN with two labels or more."""
    c = model.config
    return c.n_speakers > 0 if hasattr(c, "n_speakers") else c.n_labels > 1


@torch.no_grad()
def generate(model, labels: torch.Tensor | None, count: int, frames: int, *, temperature: float = 1.0,
             seed: int = 0, batch_size: int = 32) -> torch.Tensor:
    """count spectrograms [count, frames, F] (float32, on the CPU) from a MelNet or a CMelGAN (model.sample),
    conditioned on labels [count] (None: unconditional), drawn from one generator seeded with `seed`."""
    p = next(model.parameters())
    generator = torch.Generator(device=p.device).manual_seed(seed)
    out = []
    for b in range(0, count, batch_size):
        n = min(batch_size, count - b)
        cond = None if labels is None else labels[b:b + n].to(p.device)
        out.append(model.sample(n, frames, cond, temperature, generator=generator).float().cpu())
    return torch.cat(out)


def _khz(rows) -> float | None:
    """Median over a run's train rows of metrics.csv of its training throughput in kHz of audio samples per
    second (the trainers' audio_khz column)."""
    rates = [float(r["audio_khz"]) for r in rows if r["split"] == "train" and r.get("audio_khz")]
    return statistics.median(rates) if rates else None


def _data(doc: Dict, data: str | None, config, frames: int, cache_dir):
    """(description, training dataset, held-out dataset) of `data` ("synthetic", a folder / CSV, or None = the
    run's own data), split as the run split it."""
    spec = DataSpec.from_dict(doc.get("data") or {"source": SYNTHETIC})
    if data is not None and data != spec.source:
        spec = dataclasses.replace(spec, source=data, val_source=None).resolved()
    if spec.source != SYNTHETIC and not Path(spec.source).exists():
        raise FileNotFoundError(f"no such folder or CSV file: {spec.source}")
    train, held_out = build_datasets(spec, config, frames, cache_dir=cache_dir, min_frames=frames)
    if held_out is None:
        raise ValueError(f"{spec.source} gives no held-out data (a folder needs two or more files)")
    return spec.source, train, held_out


def compare_runs(runs: Sequence, data: str | None = None, *, frames: int | None = None, samples: int | None = None,
                 max_segments: int | None = None, temperature: float = 1.0, seed: int = 0,
                 device: str | torch.device = "cpu", classifiers: int = 3, classifier_steps: int = 400,
                 checkpoint: str = "best", reference: bool = True,
                 log: Callable[[str], None] | None = None) -> Comparison:
    """Score the models of run directories `runs` (MelNet or cMelGAN) on `data` (default: the first run's data,
    split into training and held-out parts as in training). All runs must share the audio settings.

    frames: length of every segment and sample (default: the first run's training crop; each model must be
    able to make it). samples: generated per model (default: as many as reference segments, max_segments caps
    those). classifiers, classifier_steps: how many label classifiers judge (seeds seed, seed + 1, ...) and
    their training steps. reference: add the per-label channel Gaussian row. log: called with progress lines.
    Raises RunDirError / ValueError / FileNotFoundError for unusable runs or data.
    """
    say = log or (lambda text: None)
    if not runs:
        raise ValueError("compare needs at least one run directory")
    loaded = []
    for run in runs:
        doc, model, _ = RunDir(run).load_model(checkpoint, device)
        loaded.append((Path(run), RunDir(run), doc, model))
    settings = [audio.audio_settings(m.config) for _, _, _, m in loaded]
    if any(s != settings[0] for s in settings):
        raise ValueError("the runs model spectrograms of different audio settings: "
                         + "; ".join(f"{p}: {s}" for (p, _, _, _), s in zip(loaded, settings)))
    first_doc, first_model = loaded[0][2], loaded[0][3]
    if frames is None:
        frames = (first_model.config.frames if first_doc["model_kind"] == "cmelgan"
                  else (first_doc.get("train") or {}).get("crop_frames") or first_model.config.max_frames)
    for path, _, doc, model in loaded:
        unit = model.config.frames if doc["model_kind"] == "cmelgan" else model.config.time_factor
        if frames % unit:
            raise ValueError(f"{path} makes spectrograms in multiples of {unit} frames, not {frames}")
    source, train, held_out = _data(first_doc, data, first_model.config, frames, loaded[0][1].cache)
    say(f"data {source}: {len(train)} training items, {len(held_out)} held out; segments of {frames} frames")
    x_ref, y_ref = reference_segments(held_out, frames, max_segments)
    n = samples or len(x_ref)
    y_gen = y_ref.repeat(-(-n // len(y_ref)))[:n]
    names = list(train.label_names)
    examples = {"held-out real": _one_per_label(x_ref, y_ref, len(names))}

    say(f"training {classifiers} label classifier(s) ({classifier_steps} steps each) on the training data")
    judges = Judges(train, x_ref, y_ref, classifiers, classifier_steps, seed, device)
    floor = judges.floor()

    def scores(name, kind, run, x, conditional, **fields) -> ModelScores:
        examples[name] = _one_per_label(x, y_gen if conditional else None, len(names))
        accuracy, accuracy_std = judges.accuracy(x, y_gen) if conditional else (None, None)
        frechet, frechet_std = judges.frechet(x)
        return ModelScores(name=name, kind=kind, run=run, label_accuracy=accuracy, label_accuracy_std=accuracy_std,
                           frechet=frechet, frechet_std=frechet_std, samples=len(x), **fields)

    rows = []
    for path, run, doc, model in loaded:
        conditional = _is_conditional(model)
        stored = (doc.get("data") or {}).get("label_names") or []
        if conditional and stored and stored != names:
            raise ValueError(f"{path} was trained on labels {stored}, the data has {names}")
        say(f"{path}: generating {n} spectrograms")
        x = generate(model, y_gen if conditional else None, n, frames, temperature=temperature, seed=seed)
        nonfinite = int((~torch.isfinite(x)).sum())
        nll = None
        if doc["model_kind"] == "melnet":
            base = ChannelGaussian.load(run.baseline) if run.baseline.is_file() else None
            nll = evaluate(model, held_out, frames, baseline=base, max_segments=len(x_ref)).nll_nats
        counts = model.parameter_counts()
        total = sum(counts)
        metrics = read_metrics(run.metrics_csv) if run.metrics_csv.is_file() else []
        khz = _khz(metrics)
        steps = max((int(r["step"]) for r in metrics), default=None)
        rows.append(scores(path.name, doc["model_kind"], str(path), x, conditional, parameters=total,
                           sampling_parameters=counts[0] if doc["model_kind"] == "cmelgan" else total,
                           train_steps=steps, train_audio_khz=khz, nll_nats=nll, nonfinite=nonfinite))
    if reference:
        x, nll = _label_gaussian(train, y_ref, y_gen, x_ref, frames, seed)
        rows.append(scores(REFERENCE, "reference", None, x, True, parameters=None, sampling_parameters=None,
                           train_steps=None, train_audio_khz=None, nll_nats=nll))
    real_accuracy = judges.accuracy(x_ref, y_ref)
    return Comparison(data=source, frames=frames, n_mels=settings[0].n_mels, reference_segments=len(x_ref),
                      label_names=names, classifiers=classifiers, classifier_accuracy=real_accuracy[0],
                      classifier_accuracy_std=real_accuracy[1], frechet_floor=floor[0], frechet_floor_std=floor[1],
                      feature_dim=judges.feature_dim, temperature=temperature, seed=seed, models=rows,
                      examples=examples)


def _one_per_label(x: torch.Tensor, labels: torch.Tensor | None, n_labels: int) -> List[torch.Tensor]:
    """The first spectrogram of each label (the first ones when unconditional)."""
    if labels is None:
        return [x[k % len(x)] for k in range(n_labels)]
    first = {}
    for k, y in enumerate(labels.tolist()):
        first.setdefault(y, k)
    return [x[first[y]] if y in first else torch.full_like(x[0], float("nan")) for y in range(n_labels)]


def _label_gaussian(train, y_ref, y_gen, x_ref, frames: int, seed: int):
    """(samples [len(y_gen), frames, F], held-out NLL nats / element) of a ChannelGaussian per label fitted on
    the training data: independent values with each label's per-channel mean and spread."""
    fitted = {}
    for label in sorted(set(train.labels)):
        fitted[label] = ChannelGaussian.fit(train.spectrogram(i) for i in range(len(train))
                                            if train.labels[i] == label)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(y_gen), frames, x_ref.shape[2], generator=generator, dtype=torch.float64)
    x = torch.stack([fitted[int(y)].mean + fitted[int(y)].std * z for y, z in zip(y_gen, noise)]).float()
    nll = torch.stack([fitted[int(y)].nll(s[None]) for y, s in zip(y_ref, x_ref)]).mean()
    return x, float(nll)


__all__ = ["Comparison", "ModelScores", "compare_runs", "generate", "REFERENCE"]

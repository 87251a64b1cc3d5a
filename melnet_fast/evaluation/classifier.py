"""A small label (genre / speaker) classifier of spectrograms: the judge of generated samples.

Trained on real training crops, it tells whether a generated spectrogram carries the label it was conditioned
on (label accuracy), and its penultimate layer is the feature space of the Fréchet distance (as Inception's is
for FID). Inputs are clamped to the audible range first (melnet_fast.plots.audible_range: NaN, inf and runaway
values of an undertrained model become silence or the loudest plausible level), as they are for the audio.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from melnet_fast.data import make_loader
from melnet_fast.plots import audible_range

POOLS = 2  # 2x2 max-pools: F must be at least 2 ** POOLS
GAIN = 0.5  # training crops get a random level offset in [-GAIN, GAIN] (normalised units; 0.5 = 7.6 dB)


class LabelClassifier(nn.Module):
    """forward(x [B, T, F]) -> logits [B, n_labels]; embed(x) -> features [B, embed_dim].

    Three 3x3 convolutions (ReLU; a 2x2 max-pool after the first two), the mean over time (any T >= 4), then
    a linear layer to embed_dim (ReLU: the features) and one to the labels."""

    def __init__(self, n_mels: int, n_labels: int, channels: Sequence[int] = (16, 32, 64), embed_dim: int = 64):
        super().__init__()
        if n_mels < 2 ** POOLS or n_labels < 2:
            raise ValueError(f"a label classifier needs n_mels >= {2 ** POOLS} and n_labels >= 2, got n_mels="
                             f"{n_mels}, n_labels={n_labels}")
        self.n_mels, self.n_labels = n_mels, n_labels
        layers, c_in = [], 1
        for k, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
            if k < POOLS:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.convolutions = nn.Sequential(*layers)
        self.features = nn.Sequential(nn.Linear(c_in * (n_mels // 2 ** POOLS), embed_dim), nn.ReLU())
        self.head = nn.Linear(embed_dim, n_labels)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, F] (T >= 4, F = n_mels) -> features [B, embed_dim]."""
        if x.dim() != 3 or x.shape[2] != self.n_mels or x.shape[1] < 2 ** POOLS:
            raise ValueError(f"x must be spectrograms [B, T >= {2 ** POOLS}, F={self.n_mels}], got {tuple(x.shape)}")
        p = next(self.parameters())
        x = audible_range(x)[0].to(p.device, p.dtype)
        h = self.convolutions(x[:, None]).mean(2)  # [B, C, F']
        return self.features(h.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """x [N, T, F] -> predicted labels [N] (in eval mode, in batches)."""
        return torch.cat([self(x[b:b + batch_size]).argmax(1).cpu() for b in range(0, len(x), batch_size)])

    @torch.no_grad()
    def embeddings(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """x [N, T, F] -> features [N, embed_dim] in float64."""
        return torch.cat([self.embed(x[b:b + batch_size]).double().cpu() for b in range(0, len(x), batch_size)])

    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """Share of x [N, T, F] whose predicted label is labels [N]."""
        return float((self.predict(x) == labels.cpu()).double().mean())


def train_classifier(dataset, *, steps: int = 400, batch_size: int = 32, learning_rate: float = 2e-3,
                     seed: int = 0, device: str | torch.device = "cpu", gain: float = GAIN) -> LabelClassifier:
    """A LabelClassifier trained with Adam on random crops of `dataset` (a labelled SpectrogramCropDataset whose
    items all have crop_frames frames, e.g. a run's training data built with min_frames=crop_frames) for `steps`
    batches; deterministic in `seed`, and the global RNG is left untouched. Returned in eval mode."""
    labels = list(dataset.labels)
    n_labels = max(len(dataset.label_names), max(labels) + 1)
    if len(set(labels)) < 2:
        raise ValueError("the classifier needs data with at least two distinct labels")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LabelClassifier(dataset.settings.n_mels, n_labels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    step, epoch = 0, 0
    while True:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        for batch in make_loader(dataset, batch_size, seed=seed * 100_003 + epoch,
                                 drop_last=len(dataset) >= batch_size):
            x, y = batch.spec, batch.labels
            if bool((batch.lengths != x.shape[1]).any()):
                raise ValueError(f"the classifier trains on crops of one length; the data has items shorter than "
                                 f"{x.shape[1]} frames (build it with min_frames=crop_frames)")
            x = x + gain * (2 * torch.rand(len(x), 1, 1, generator=generator) - 1)
            loss = loss_fn(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                return model.eval()
        epoch += 1

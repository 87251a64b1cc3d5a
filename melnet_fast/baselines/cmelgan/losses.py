"""cMelGAN's conditional objective, in least-squares form (LSGAN) on the discriminator's linear score.

The discriminator learns to score 1 for a real spectrogram with its own label, and 0 both for a generated one
(with the label it was generated for) and for a real one paired with a wrong label (report, section 3.2: a
conditional GAN that must check the pairing, not only realism). The two kinds of negative share the weight of
the positive (as in matching-aware discriminators); with one label there are no wrong pairs and the generated
ones carry it alone. The generator learns to make its spectrograms score 1.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

REAL, FAKE = 1.0, 0.0


def wrong_labels(labels: torch.Tensor, n_labels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """labels [B] -> [B]: for each, another label drawn uniformly from the n_labels - 1 others (n_labels >= 2)."""
    if n_labels < 2:
        raise ValueError(f"wrong labels need n_labels >= 2, got {n_labels}")
    shift = torch.randint(1, n_labels, labels.shape, generator=generator, device=labels.device)
    return (labels + shift) % n_labels


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, wrong: torch.Tensor | None
                       ) -> Tuple[torch.Tensor, Dict[str, float]]:
    """(loss, mean scores) from the scores [B] of real/right-label, generated and real/wrong-label pairs
    (wrong None: one label only)."""
    loss = (real - REAL).pow(2).mean()
    negatives = (fake - FAKE).pow(2).mean()
    if wrong is not None:
        negatives = 0.5 * (negatives + (wrong - FAKE).pow(2).mean())
    scores = {"d_real": float(real.detach().mean()), "d_fake": float(fake.detach().mean())}
    if wrong is not None:
        scores["d_wrong"] = float(wrong.detach().mean())
    return loss + negatives, scores


def generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss from the discriminator's scores [B] of its spectrograms."""
    return (fake - REAL).pow(2).mean()

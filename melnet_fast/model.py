"""MelNet: the full multiscale model (paper, sections 3-5): tiers, split / interleave, log_prob, loss, sample."""

from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from melnet_fast import checkpoint, ops
from melnet_fast.config import MelNetConfig
from melnet_fast.modules import MixtureParams, Tier
from melnet_fast.multiscale import interleave, merge_tiers, split_tiers, tier_axis, tier_shapes
from melnet_fast.ops.gmm.naive import draw_noise

Cond = None | torch.Tensor | Dict[str, torch.Tensor]

TIME_DIM, FREQ_DIM = 1, 2  # of spectrograms [B, T, F] and of parameters / features [B, T, F, C]


def _as_dtype(params: MixtureParams, dtype: torch.dtype) -> MixtureParams:
    """The head's output in the data's dtype: under bf16 autocast the head runs in bf16, the loss in float32."""
    return MixtureParams(*(p.to(dtype) for p in params))


class MelNet(nn.Module):
    """p(x) = prod_g p(x^g | x^<g) over the tiers of a spectrogram x [B, T, F] (F = config.n_mels).

    Fields: config (MelNetConfig), tiers (ModuleList of Tier, tier 1 first).
    Conditioning `cond`, when the config asks for it: a LongTensor [B] of speaker ids (n_speakers > 0), a float
    tensor [B, T, F, cond_dim] of features at full resolution (cond_dim > 0), or a dict with keys "speaker" and
    "features" holding those.
    """

    def __init__(self, config: MelNetConfig):
        super().__init__()
        if not isinstance(config, MelNetConfig):
            raise ValueError(f"config must be a MelNetConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.tiers = nn.ModuleList(
            Tier(c.hidden_size, c.layers[g - 1], c.n_mixtures, upsampling=g > 1, feature_layers=c.feature_layers,
                 n_speakers=c.n_speakers, speaker_dim=c.speaker_dim, features_dim=c.cond_dim)
            for g in range(1, c.n_tiers + 1))

    # ------------------------------------------------------------------ checks
    def _param(self) -> torch.Tensor:
        return self.tiers[0].network.x_time_proj.weight

    def _check_x(self, x, name: str = "x") -> None:
        c, p = self.config, self._param()
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a spectrogram tensor [B, T, F={c.n_mels}], got {got}")
        B, T, F = x.shape
        if F != c.n_mels:
            raise ValueError(f"{name} has F={F} channels but the model has n_mels={c.n_mels}: expected shape "
                             f"[B, T, {c.n_mels}]")
        if B < 1 or T < 1:
            raise ValueError(f"{name} must have B >= 1 and T >= 1, got shape {tuple(x.shape)}")
        if T % c.time_factor:
            raise ValueError(f"{name} has T={T} frames; T must be a multiple of {c.time_factor} for "
                             f"n_tiers={c.n_tiers} (pad or crop to {T - T % c.time_factor} or "
                             f"{T - T % c.time_factor + c.time_factor})")
        if x.dtype != p.dtype or x.device != p.device:
            raise ValueError(f"{name} is {x.dtype} on {x.device} but the model is {p.dtype} on {p.device}; "
                             f"convert one of them (x.to(...) or model.to(...))")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} holds NaN or inf; a spectrogram must be finite (log-amplitude, normalised)")

    def _parse_cond(self, cond: Cond, B: int, T: int, F: int
                    ) -> Tuple[torch.Tensor | None, torch.Tensor | None]:
        """cond -> (speaker LongTensor [B] or None, features [B, T, F, cond_dim] or None), checked."""
        c = self.config
        speaker = features = None
        if isinstance(cond, dict):
            unknown = sorted(set(cond) - {"speaker", "features"})
            if unknown:
                raise ValueError(f"cond: unknown key(s) {unknown}; valid keys: 'speaker', 'features'")
            speaker, features = cond.get("speaker"), cond.get("features")
        elif isinstance(cond, torch.Tensor):
            if cond.is_floating_point():
                features = cond
            else:
                speaker = cond
        elif cond is not None:
            raise ValueError(f"cond must be None, a LongTensor [B] of speaker ids, a float tensor [B, T, F, "
                             f"cond_dim] or a dict of those, got {type(cond).__name__}")
        if c.n_speakers > 0 and speaker is None:
            raise ValueError(f"this model is conditioned on speakers (n_speakers={c.n_speakers}): pass "
                             f"cond=LongTensor [B] of ids in [0, {c.n_speakers}) or cond={{'speaker': ...}}")
        if c.n_speakers == 0 and speaker is not None:
            raise ValueError("cond holds speaker ids but this model has n_speakers=0 (no speaker conditioning)")
        if c.cond_dim > 0 and features is None:
            raise ValueError(f"this model is conditioned on features (cond_dim={c.cond_dim}): pass a float "
                             f"tensor [B, T, F, {c.cond_dim}] as cond or cond={{'features': ...}}")
        if c.cond_dim == 0 and features is not None:
            raise ValueError("cond holds features but this model has cond_dim=0 (no feature conditioning)")
        p = self._param()
        if speaker is not None:
            if (not isinstance(speaker, torch.Tensor) or speaker.is_floating_point() or speaker.is_complex()
                    or speaker.dtype == torch.bool or tuple(speaker.shape) != (B,)):
                got = (f"{speaker.dtype} {tuple(speaker.shape)}" if isinstance(speaker, torch.Tensor)
                       else type(speaker).__name__)
                raise ValueError(f"speaker ids must be an integer tensor of shape [{B}] (one per example), "
                                 f"got {got}")
            if B and not (0 <= int(speaker.min()) and int(speaker.max()) < c.n_speakers):
                raise ValueError(f"speaker ids must lie in [0, {c.n_speakers}), got min {int(speaker.min())}, "
                                 f"max {int(speaker.max())}")
            speaker = speaker.to(device=p.device, dtype=torch.long)
        if features is not None:
            want = (B, T, F, c.cond_dim)
            if not isinstance(features, torch.Tensor) or tuple(features.shape) != want:
                got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
                raise ValueError(f"features must have shape [B, T, F, cond_dim] = {list(want)}, got {got}")
            if features.dtype != p.dtype or features.device != p.device:
                raise ValueError(f"features are {features.dtype} on {features.device} but the model is "
                                 f"{p.dtype} on {p.device}")
            if not bool(torch.isfinite(features).all()):
                raise ValueError("features hold NaN or inf; they must be finite")
        return speaker, features

    def _check_tiers(self, tiers: Sequence[int] | None) -> List[int]:
        G = self.config.n_tiers
        if tiers is None:
            return list(range(1, G + 1))
        if isinstance(tiers, int):
            tiers = [tiers]
        tiers = list(tiers)
        if not tiers or any(not isinstance(g, int) or isinstance(g, bool) or not 1 <= g <= G for g in tiers):
            raise ValueError(f"tiers must be a non-empty list of tier numbers in 1..{G}, got {tiers!r}")
        return sorted(set(tiers))

    # ------------------------------------------------------------------ density
    def _tier_params(self, g: int, x_tiers, contexts, speaker, feature_tiers) -> MixtureParams:
        return self.tiers[g - 1](x_tiers[g - 1], contexts[g - 1], speaker, feature_tiers[g - 1])

    def _prepare(self, x: torch.Tensor, cond: Cond):
        self._check_x(x)
        B, T, F = x.shape
        speaker, features = self._parse_cond(cond, B, T, F)
        G = self.config.n_tiers
        x_tiers, contexts = split_tiers(x, G, TIME_DIM, FREQ_DIM)
        feature_tiers = split_tiers(features, G, TIME_DIM, FREQ_DIM)[0] if features is not None else [None] * G
        return x_tiers, contexts, speaker, feature_tiers

    def forward(self, x: torch.Tensor, cond: Cond = None) -> MixtureParams:
        """x [B, T, F] -> MixtureParams(mu, log_sigma, logit_pi), each [B, T, F, K] at full resolution:
        the parameters of p(x[b, i, j] | everything before it in the multiscale order, cond)."""
        x_tiers, contexts, speaker, feature_tiers = self._prepare(x, cond)
        per_tier = [self._tier_params(g, x_tiers, contexts, speaker, feature_tiers)
                    for g in range(1, self.config.n_tiers + 1)]
        return MixtureParams(*(merge_tiers([p[k] for p in per_tier], TIME_DIM, FREQ_DIM) for k in range(3)))

    def log_prob(self, x: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        """x [B, T, F] -> [B, T, F]: log p(x[b, i, j] | its context) in nats; the sum is log p(x)."""
        return -ops.gmm_nll(x, *_as_dtype(self(x, cond), x.dtype))

    def loss(self, x: torch.Tensor, cond: Cond = None, tiers: Sequence[int] | None = None) -> torch.Tensor:
        """Mean negative log-likelihood in nats per element (a scalar).

        tiers: tier numbers (1 = initial) to include, default all; only those tiers' networks run, so each
        tier can be trained on its own. The mean is over the elements of the chosen tiers.
        """
        chosen = self._check_tiers(tiers)
        x_tiers, contexts, speaker, feature_tiers = self._prepare(x, cond)
        total, count = 0.0, 0
        for g in chosen:
            params = self._tier_params(g, x_tiers, contexts, speaker, feature_tiers)
            target = x_tiers[g - 1]
            total = total + ops.gmm_nll(target, *_as_dtype(params, target.dtype)).sum()
            count += x_tiers[g - 1].numel()
        return total / count

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, batch: int, frames: int, cond: Cond = None, temperature: float = 1.0,
               prime: torch.Tensor | None = None, generator: torch.Generator | None = None,
               return_log_prob: bool = False, weight_dtype: torch.dtype | None = None):
        """Ancestral sampling with cached state (ops.sample_tier), tier after tier.

        Args:
            batch, frames: the output is [batch, frames, n_mels]; frames a multiple of config.time_factor.
            cond: as for forward, with B = batch and T = frames.
            temperature: tau >= 0; mixture logits / tau and sigma * tau; 0 = mean of the most probable component.
            prime: [batch, P, n_mels] real frames to continue (P a multiple of config.time_factor, P <= frames);
                they are the first P frames of the output, unchanged.
            generator: the source of every draw (two noise tensors per tier, drawn in tier order, even at tau=0).
            return_log_prob: also return the log density [batch] of the drawn (non-prime) elements under the
                untempered model.
            weight_dtype: torch.bfloat16 or torch.float16 to run the cuda sampler with weights in that dtype
                (data and accumulation stay in the model's dtype); None = the model's dtype.
        Returns:
            x [batch, frames, n_mels], or (x, log_prob [batch]) with return_log_prob.
        """
        c, p = self.config, self._param()
        F = c.n_mels
        for name, v in (("batch", batch), ("frames", frames)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if frames % c.time_factor:
            raise ValueError(f"frames={frames} must be a multiple of {c.time_factor} for n_tiers={c.n_tiers}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not 0 <= temperature < float("inf"):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if weight_dtype not in (None, p.dtype, torch.bfloat16, torch.float16):
            raise ValueError(f"weight_dtype must be None, torch.bfloat16 or torch.float16, got {weight_dtype!r}")
        speaker, features = self._parse_cond(cond, batch, frames, F)
        G = c.n_tiers
        feature_tiers = split_tiers(features, G, TIME_DIM, FREQ_DIM)[0] if features is not None else [None] * G
        prime_tiers = self._split_prime(prime, batch, frames)

        shapes = tier_shapes(frames, F, G)
        log_density = p.new_zeros(batch)
        x = None  # x^<g, growing tier by tier
        for g in range(1, G + 1):
            Tg, Fg = shapes[g - 1]
            tier = self.tiers[g - 1]
            grid = (batch, Tg, Fg)
            z = tier.conditioning(grid, x, speaker, feature_tiers[g - 1])
            cz_t, cz_f = tier.network.conditioning_terms(z, grid)
            u, eps = draw_noise(grid, p.device, p.dtype, generator)
            x_init = p.new_zeros(grid)
            n_prime = 0
            if prime_tiers is not None:
                n_prime = prime_tiers[g - 1].shape[1]
                x_init[:, :n_prime] = prime_tiers[g - 1]
            weights = tier.network.sampler_weights()
            if weight_dtype is not None:
                weights = [w.to(weight_dtype) for w in weights]
            x_g, ld = ops.sample_tier(x_init, cz_t, cz_f, u, eps, weights,
                                      c.layers[g - 1], c.n_mixtures, float(temperature), n_prime)
            log_density += ld
            x = x_g if g == 1 else interleave(x_g, x, FREQ_DIM if tier_axis(g) == "frequency" else TIME_DIM)
        return (x, log_density) if return_log_prob else x

    def _split_prime(self, prime, batch: int, frames: int) -> List[torch.Tensor] | None:
        if prime is None:
            return None
        c = self.config
        if not isinstance(prime, torch.Tensor) or prime.dim() != 3 or prime.shape[0] != batch \
                or prime.shape[2] != c.n_mels:
            got = tuple(prime.shape) if isinstance(prime, torch.Tensor) else type(prime).__name__
            raise ValueError(f"prime must have shape [batch={batch}, P, n_mels={c.n_mels}], got {got}")
        P = prime.shape[1]
        if P > frames:
            raise ValueError(f"prime has P={P} frames, more than frames={frames}")
        if P % c.time_factor:
            raise ValueError(f"prime has P={P} frames; P must be a multiple of {c.time_factor} (the time-split "
                             f"factor of n_tiers={c.n_tiers}) so that every tier gets whole frames")
        if P == 0:
            return None
        self._check_x(prime, "prime")
        return split_tiers(prime, c.n_tiers, TIME_DIM, FREQ_DIM)[0]

    # ------------------------------------------------------------------ bookkeeping
    def parameter_counts(self) -> List[int]:
        """Number of parameters of each tier, tier 1 first."""
        return [sum(p.numel() for p in tier.parameters()) for tier in self.tiers]

    def save(self, path: str | os.PathLike) -> None:
        """Write config and weights to one safetensors file, atomically (see melnet_fast.checkpoint)."""
        checkpoint.write_checkpoint(path, self.state_dict(), self.config.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike, config: MelNetConfig | None = None,
             map_location: str | torch.device = "cpu") -> MelNet:
        """Build the model a checkpoint describes and load its weights (no code is executed).

        config: when given, the checkpoint must have been written with this exact config, else ValueError.
        """
        return checkpoint.load_model(cls, MelNetConfig, path, config, map_location)

    def extra_repr(self) -> str:
        c = self.config
        return (f"n_tiers={c.n_tiers}, n_mels={c.n_mels}, hidden_size={c.hidden_size}, layers={c.layers}, "
                f"n_mixtures={c.n_mixtures}")

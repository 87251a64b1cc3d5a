"""MelNet: the full multiscale model (paper, sections 3-5): tiers, split / interleave, log_prob, loss, sample."""

from __future__ import annotations

import os
import warnings
from typing import Dict, List, NamedTuple, Sequence, Tuple

import torch
import torch.nn.functional as Fn
from torch import nn

from melnet_fast import checkpoint, ops
from melnet_fast.config import MelNetConfig
from melnet_fast.lengths import check_lengths, length_mask, masked_fill_padding
from melnet_fast.log_mel_scale import SAMPLE_RANGE
from melnet_fast.modules import MixtureParams, Tier
from melnet_fast.modules.centralized import DEFAULT_INITIAL_STEP
from melnet_fast.multiscale import (
    crop_lengths,
    interleave,
    merge_tiers,
    split_tiers,
    tier_axis,
    tier_lengths,
    tier_shapes,
)
from melnet_fast.ops._checks import check_finite
from melnet_fast.ops.gmm.reference import draw_noise
from melnet_fast.ops.tier_sampling import check_value_range
from melnet_fast.text import TextFrontEnd

Cond = None | torch.Tensor | Dict[str, torch.Tensor | Sequence[str]]
COND_KEYS = ("speaker", "features", "text", "text_lengths")
# Default stop rule of text sampling: a row ends when the attention mass past the end of its text exceeds this.
STOP_THRESHOLD = 0.5


class TextSample(NamedTuple):
    """What MelNet.sample returns for a text model. x [B, T, F] (frames at and after lengths[b] are zeros),
    lengths LongTensor [B] (frames of each row, a multiple of config.time_factor), alignment [B, T_1, U]: the
    attention weights over the symbols (end-of-text last) of every initial-tier frame (T_1 = T / time split
    factor of tier 1), zeros after the row's end; log_prob [B] of the drawn elements, or None unless asked for."""

    x: torch.Tensor
    lengths: torch.Tensor
    alignment: torch.Tensor
    log_prob: torch.Tensor | None


TIME_DIM, FREQ_DIM = 1, 2  # of spectrograms [B, T, F] and of parameters / features [B, T, F, C]


class DivergentSampleWarning(UserWarning):
    """MelNet.sample drew values that ran away above the top of its value range (or were NaN); they are kept at the
    top, so the sample is finite. Many of them mean that the model's samples diverge."""


def _as_dtype(params: MixtureParams, dtype: torch.dtype) -> MixtureParams:
    """The head's output in the data's dtype: under bf16 autocast the head runs in bf16, the loss in float32."""
    return MixtureParams(*(p.to(dtype) for p in params))


def _warn_runaways(runaways: Dict[int, int], drawn: int, x_max: float) -> None:
    """DivergentSampleWarning when some of the `drawn` values (per tier: `runaways`) were kept at x_max."""
    total = sum(runaways.values())
    if total:
        per_tier = ", ".join(f"tier {g}: {n}" for g, n in runaways.items() if n)
        warnings.warn(f"MelNet.sample: {total} of {drawn} drawn values ({per_tier}) ran away above x_max={x_max:.3g} "
                      f"(or were NaN) and were kept at x_max. A few are stray draws of a wide mixture component; "
                      f"many mean that the model's samples diverge (an untrained or undertrained model, or "
                      f"diverging weights). The sample is finite.", DivergentSampleWarning,
                      stacklevel=4)  # the caller of MelNet.sample


class _Rows(NamedTuple):
    """What sampling hands each tier, for a whole batch or one row of it (select): speaker ids, the features
    and prime of every tier, every tier's noise (u, eps), drawn up front in tier order, the value range of the
    draws, and the tally (shared by the selected rows) of drawn values per tier and of those kept at x_max."""

    speaker: torch.Tensor | None
    feature_tiers: list
    prime_tiers: list | None
    noise: list
    value_range: Tuple[float, float]
    tally: Dict[str, Dict[int, int]]  # "drawn" / "runaways" -> tier -> count

    def select(self, b: int) -> _Rows:
        def pick(t):
            return None if t is None else t[b:b + 1]

        return _Rows(pick(self.speaker), [pick(f) for f in self.feature_tiers],
                     None if self.prime_tiers is None else [pick(t) for t in self.prime_tiers],
                     [tuple(pick(n) for n in pair) for pair in self.noise], self.value_range, self.tally)

    @staticmethod
    def crop(t: torch.Tensor | None, frames: int) -> torch.Tensor | None:
        """The first `frames` frames of a per-tier tensor [B, T, ...] (a row that stopped early has fewer)."""
        return None if t is None else t[:, :frames]


class _Prepared(NamedTuple):
    """MelNet's checked inputs: x [B, T', F] (T' = T, or the longest real length, padding zeroed),
    full_lengths [B] or None, and per tier g (index g - 1): x^g, x^<g, features, real lengths (or None), and
    the encoded texts (initial tier only)."""

    x: torch.Tensor
    full_lengths: torch.Tensor | None
    x_tiers: List[torch.Tensor]
    contexts: List[torch.Tensor | None]
    speaker: torch.Tensor | None
    feature_tiers: List[torch.Tensor | None]
    lengths: List[torch.Tensor | None]
    text: Tuple[torch.Tensor, torch.Tensor] | None  # (ids [B, U], text lengths [B]) of a text model

class MelNet(nn.Module):
    """p(x) = prod_g p(x^g | x^<g) over the tiers of a spectrogram x [B, T, F] (F = config.n_mels).

    Fields: config (MelNetConfig), tiers (ModuleList of Tier, tier 1 first).
    Conditioning `cond`, when the config asks for it: a LongTensor [B] of speaker ids (n_speakers > 0), a float
    tensor [B, T, F, cond_dim] of features at full resolution (cond_dim > 0), or a dict with keys "speaker" and
    "features" holding those, and for a text model (config.has_text) "text": a list of B strings (encoded by
    `text_frontend`), or symbol ids LongTensor [B, U] with "text_lengths" LongTensor [B] (as its encode gives).
    Only the initial tier reads the text; the upsampling tiers see it through the coarser tiers they condition on.

    Variable-length batches: forward, log_prob and loss take `lengths`, a LongTensor [B] of real frames per
    example (time_factor <= lengths[b] <= T; the rest of x is padding at the end and may hold anything). A
    length that is not a multiple of config.time_factor is cropped to one (the frames past it count as padding
    in every tier, so every tier sees whole frames of its context). Padded positions contribute nothing: the
    loss is the mean over the real elements, the same whatever the padding holds and however long it is.
    """

    def __init__(self, config: MelNetConfig):
        super().__init__()
        if not isinstance(config, MelNetConfig):
            raise ValueError(f"config must be a MelNetConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.tiers = nn.ModuleList(
            Tier(c.hidden_size, c.layers[g - 1], c.n_mixtures, upsampling=g > 1, feature_layers=c.feature_layers,
                 n_speakers=c.n_speakers, speaker_dim=c.speaker_dim, features_dim=c.cond_dim,
                 **(self._text_args(c) if g == 1 else {}))
            for g in range(1, c.n_tiers + 1))
        self.text_frontend = TextFrontEnd.from_config(c) if c.has_text else None

    @staticmethod
    def _text_args(c: MelNetConfig) -> dict:
        """The initial tier's centralized stack and text attention, as the config asks."""
        if not c.centralized_stack:
            return {}
        args = dict(centralized_channels=c.n_mels // c.freq_factor, n_text_symbols=c.n_text_symbols,
                    attention_mixtures=c.attention_mixtures, attention_layer=c.attention_at)
        if c.has_text:
            step = DEFAULT_INITIAL_STEP if c.attention_initial_step is None else c.attention_initial_step
            args.update(input_dropout=c.text_input_dropout, attention_init=(step, c.attention_initial_width))
        return args

    # ------------------------------------------------------------------ checks
    def _param(self) -> torch.Tensor:
        return self.tiers[0].network.x_time_proj.weight

    def _check_x(self, x, name: str = "x", lengths=None) -> torch.Tensor | None:
        """Check x (shape, dtype, device; finite at its real positions) and lengths. Returns the cropped lengths
        [B] on the model's device (see the class docstring), or None when every example fills all T frames."""
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
        if lengths is not None:
            lengths = check_lengths(lengths, B, T, minimum=c.time_factor,
                                    why=f" and at least time_factor={c.time_factor} (one frame in every tier)")
            lengths = crop_lengths(lengths, c.n_tiers)
            # Read where the caller keeps the lengths (the CPU, from a data loader: no device sync).
            lengths = None if bool((lengths == T).all()) else lengths.to(p.device)
        check_finite(name, x if lengths is None else masked_fill_padding(x, length_mask(lengths, T)),
                     f"{name} holds NaN or inf; a spectrogram must be finite (log-amplitude, normalised)"
                     + (" at its real positions (padding may hold anything)" if lengths is not None else ""))
        return lengths

    def _parse_cond(self, cond: Cond, B: int, T: int, F: int, lengths: torch.Tensor | None = None
                    ) -> Tuple[torch.Tensor | None, torch.Tensor | None]:
        """cond -> (speaker LongTensor [B] or None, features [B, T, F, cond_dim] or None), checked (features
        at the real positions of `lengths` only, when given)."""
        c = self.config
        speaker = features = None
        if isinstance(cond, dict):
            unknown = sorted(set(cond) - set(COND_KEYS))
            if unknown:
                raise ValueError(f"cond: unknown key(s) {unknown}; valid keys: {', '.join(map(repr, COND_KEYS))}")
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
            if torch.compiler.is_compiling():  # no data-dependent Python under tracing: a graph assertion (CPU)
                if speaker.device.type == "cpu":
                    torch._assert_async(((speaker >= 0) & (speaker < c.n_speakers)).all(),
                                        f"speaker ids must lie in [0, {c.n_speakers})")
            elif B and not (0 <= int(speaker.min()) and int(speaker.max()) < c.n_speakers):
                # (a synchronisation for ids on a GPU: there an out-of-range id would stop the embedding's kernel)
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
            check_finite("features",
                         features if lengths is None else masked_fill_padding(features, length_mask(lengths, T)),
                         "features hold NaN or inf; they must be finite"
                         + (" at the real positions" if lengths is not None else ""))
        return speaker, features

    def _parse_text(self, cond: Cond, B: int) -> Tuple[torch.Tensor, torch.Tensor] | None:
        """cond's text -> (ids LongTensor [B, U], lengths LongTensor [B]) on the model's device, or None; checked
        against the model's vocabulary (ValueError naming the text and what was expected)."""
        c = self.config
        text = cond.get("text") if isinstance(cond, dict) else None
        if not c.has_text:
            if text is not None:
                raise ValueError("cond holds text but this model is not conditioned on text (config.text_symbols "
                                 "is empty); use a text-to-speech preset such as 'tts_small'")
            return None
        if text is None:
            raise ValueError("this model is conditioned on text: pass cond={'text': [one string per example]}")
        device = self._param().device
        if isinstance(text, torch.Tensor):
            lengths = cond.get("text_lengths")
            if text.dtype != torch.long or text.dim() != 2 or text.shape[0] != B:
                raise ValueError(f"text ids must be a LongTensor [B={B}, U], got {text.dtype} {tuple(text.shape)}")
            if (not isinstance(lengths, torch.Tensor) or lengths.dtype != torch.long
                    or tuple(lengths.shape) != (B,)):
                raise ValueError(f"text ids need cond['text_lengths'], a LongTensor [{B}] of symbols per text")
            U = text.shape[1]
            if not bool(((lengths >= 1) & (lengths <= U)).all()) or U > c.text_max_length:
                raise ValueError(f"text_lengths must lie in [1, U={U}] and U <= text_max_length="
                                 f"{c.text_max_length}, got {lengths.tolist()}")
            if text.numel() and not (0 <= int(text.min()) and int(text.max()) < c.n_text_symbols):
                raise ValueError(f"text ids must lie in [0, {c.n_text_symbols}) (the vocabulary with padding and "
                                 f"end-of-text), got min {int(text.min())}, max {int(text.max())}")
            return text.to(device), lengths.to(device)
        if "text_lengths" in cond:
            raise ValueError("cond['text_lengths'] goes with symbol ids; with strings the lengths come from them")
        if isinstance(text, str):
            raise ValueError("cond['text'] must be a list of strings, one per example (got one string)")
        if len(text) != B:
            raise ValueError(f"cond['text'] must hold one string per example: {B}, got {len(text)}")
        ids, lengths = self.text_frontend.encode(text)
        return ids.to(device), lengths.to(device)

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
    def _prepare(self, x: torch.Tensor, cond: Cond, lengths):
        """Checked inputs, split into tiers. With padding, x (and features) are cut after the longest example
        and zeroed at padded positions, so that nothing of the padding reaches the networks."""
        lengths = self._check_x(x, lengths=lengths)
        B, T, F = x.shape
        speaker, features = self._parse_cond(cond, B, T, F, lengths)
        text = self._parse_text(cond, B)
        G = self.config.n_tiers
        if lengths is not None:
            T = int(lengths.max())
            mask = length_mask(lengths, T)
            x = masked_fill_padding(x[:, :T], mask)
            if features is not None:
                features = masked_fill_padding(features[:, :T], mask)
        x_tiers, contexts = split_tiers(x, G, TIME_DIM, FREQ_DIM)
        feature_tiers = split_tiers(features, G, TIME_DIM, FREQ_DIM)[0] if features is not None else [None] * G
        lens = tier_lengths(lengths, G) if lengths is not None else [None] * G
        return _Prepared(x, lengths, x_tiers, contexts, speaker, feature_tiers, lens, text)

    def _tier_params(self, g: int, prep: _Prepared) -> MixtureParams:
        i = g - 1
        return self.tiers[i](prep.x_tiers[i], prep.contexts[i], prep.speaker, prep.feature_tiers[i], prep.lengths[i],
                             prep.text if g == 1 else None)

    def _params(self, prep: _Prepared) -> MixtureParams:
        per_tier = [self._tier_params(g, prep) for g in range(1, self.config.n_tiers + 1)]
        return MixtureParams(*(merge_tiers([p[k] for p in per_tier], TIME_DIM, FREQ_DIM) for k in range(3)))

    def forward(self, x: torch.Tensor, cond: Cond = None, lengths: torch.Tensor | None = None) -> MixtureParams:
        """x [B, T, F] -> MixtureParams(mu, log_sigma, logit_pi), each [B, T, F, K] at full resolution:
        the parameters of p(x[b, i, j] | everything before it in the multiscale order, cond).
        lengths: LongTensor [B] of real frames (see the class docstring); parameters at padded positions are
        meaningless (zeros after the longest example)."""
        prep = self._prepare(x, cond, lengths)
        params = self._params(prep)
        pad = x.shape[TIME_DIM] - prep.x.shape[TIME_DIM]
        return MixtureParams(*(Fn.pad(p, (0, 0, 0, 0, 0, pad)) for p in params)) if pad else params

    def log_prob(self, x: torch.Tensor, cond: Cond = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, F] -> [B, T, F]: log p(x[b, i, j] | its context) in nats; the sum is log p(x).
        lengths: LongTensor [B] of real frames (see the class docstring); padded positions hold 0."""
        prep = self._prepare(x, cond, lengths)
        logp = -ops.gmm_nll(prep.x, *_as_dtype(self._params(prep), x.dtype))
        if prep.full_lengths is None:
            return logp
        logp = masked_fill_padding(logp, length_mask(prep.full_lengths, prep.x.shape[TIME_DIM]))
        return Fn.pad(logp, (0, 0, 0, x.shape[TIME_DIM] - prep.x.shape[TIME_DIM]))

    def loss(self, x: torch.Tensor, cond: Cond = None, tiers: Sequence[int] | None = None,
             lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood in nats per element (a scalar).

        tiers: tier numbers (1 = initial) to include, default all; only those tiers' networks run, so each
        tier can be trained on its own. The mean is over the elements of the chosen tiers.
        lengths: LongTensor [B] of real frames (see the class docstring): the mean is then over the real
        elements only, each weighted equally (a long example counts for more elements than a short one).
        """
        return self.loss_and_guide(x, cond, tiers, lengths)[0]

    def loss_and_guide(self, x: torch.Tensor, cond: Cond = None, tiers: Sequence[int] | None = None,
                       lengths: torch.Tensor | None = None, guide_sigma: float | None = None
                       ) -> Tuple[torch.Tensor, torch.Tensor | None]:
        """(loss(x, cond, tiers, lengths), guide) from one forward: guide is the guided-attention loss
        (ops.gmm_attention.guided_attention_loss, band width guide_sigma) of the initial tier's teacher-forced
        attention, a scalar, for a text model whose tiers include 1 and a guide_sigma; else None. The trainer adds
        it, weighted, to the objective; the NLL stays the model's NLL."""
        chosen = self._check_tiers(tiers)
        prep = self._prepare(x, cond, lengths)
        total, count, guide = 0.0, 0, None
        for g in chosen:
            if g == 1 and guide_sigma is not None and prep.text is not None:
                params, alignment = self.tiers[0].forward_with_alignment(
                    prep.x_tiers[0], prep.contexts[0], prep.speaker, prep.feature_tiers[0], prep.lengths[0], prep.text)
                guide = ops.guided_attention_loss(alignment.float(), prep.text[1], prep.lengths[0], guide_sigma)
            else:
                params = self._tier_params(g, prep)
            target = prep.x_tiers[g - 1]
            nll = ops.gmm_nll(target, *_as_dtype(params, target.dtype))
            tier_lengths_ = prep.lengths[g - 1]
            if tier_lengths_ is None:
                total = total + nll.sum()
                count += nll.numel()
            else:
                total = total + masked_fill_padding(nll, length_mask(tier_lengths_, nll.shape[TIME_DIM])).sum()
                count = count + tier_lengths_.sum() * nll.shape[FREQ_DIM]
        return total / count, guide

    def alignment(self, x: torch.Tensor, cond: Cond, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The attention of a text model under teacher forcing: x [B, T, F] and its texts -> [B, T'_1, U], the
        weights over the symbols (end-of-text last; zeros on padding) of every initial-tier frame (T'_1 frames:
        up to the longest of `lengths` when given; a row's frames past its own length are meaningless)."""
        if not self.config.has_text:
            raise ValueError("alignment: this model is not conditioned on text")
        prep = self._prepare(x, cond, lengths)
        return self.tiers[0].forward_with_alignment(prep.x_tiers[0], None, prep.speaker, prep.feature_tiers[0],
                                                    prep.lengths[0], prep.text)[1]

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, batch: int, frames: int, cond: Cond = None, temperature: float = 1.0,
               prime: torch.Tensor | None = None, generator: torch.Generator | None = None,
               return_log_prob: bool = False, weight_dtype: torch.dtype | None = None,
               stop_threshold: float | None = STOP_THRESHOLD,
               value_range: Tuple[float, float] = SAMPLE_RANGE):
        """Ancestral sampling with cached state (ops.sample_tier), tier after tier.

        Args:
            batch, frames: the output is [batch, frames, n_mels]; frames a multiple of config.time_factor (for a
                text model, the most frames of a row: each row stops on its own, see stop_threshold).
            cond: as for forward, with B = batch and T = frames.
            temperature: tau >= 0; mixture logits / tau and sigma * tau; 0 = mean of the most probable component.
            prime: [batch, P, n_mels] real frames to continue (P a multiple of config.time_factor, P <= frames);
                they are the first P frames of the output, unchanged (for a text model: the start of the texts).
            generator: the source of every draw (two noise tensors per tier, drawn in tier order, even at tau=0).
            return_log_prob: also return the log density [batch] of the drawn (non-prime) elements under the
                untempered model.
            weight_dtype: torch.bfloat16 or torch.float16 to run the cuda sampler with weights in that dtype
                (data and accumulation stay in the model's dtype); None = the model's dtype.
            stop_threshold: text models: row b ends at the first initial-tier frame (after the prime) whose
                attention mass past the end of its text exceeds this; None = every row runs to `frames`.
            value_range: (x_min, x_max) every drawn value is kept in (ops.sample_tier): by default the log floor,
                below which no spectrogram of the package goes, and +30 dB over a full-scale sine, which no audio
                reaches (melnet_fast.log_mel_scale). So every sample is finite, whatever the model; drawn values
                that ran away to x_max (or were NaN) raise a DivergentSampleWarning that counts them.
        Returns:
            x [batch, frames, n_mels], or (x, log_prob [batch]) with return_log_prob; for a text model a
            TextSample (x, lengths, alignment, log_prob). A model with a centralized stack is sampled by
            ops.sample_tier_centralized: the C++ sampler on the CPU, the reference sampler on CUDA (with a
            ReferenceSamplerWarning).
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
        if stop_threshold is not None and (isinstance(stop_threshold, bool)
                                           or not isinstance(stop_threshold, (int, float))
                                           or not 0 < stop_threshold < 1):
            raise ValueError(f"stop_threshold must be None or a number in (0, 1), got {stop_threshold!r}")
        speaker, features = self._parse_cond(cond, batch, frames, F)
        text = self._parse_text(cond, batch)
        G = c.n_tiers
        feature_tiers = split_tiers(features, G, TIME_DIM, FREQ_DIM)[0] if features is not None else [None] * G
        prime_tiers = self._split_prime(prime, batch, frames)
        x_min, x_max = check_value_range(value_range)
        shapes = tier_shapes(frames, F, G)
        noise = [draw_noise((batch, *shape), p.device, p.dtype, generator) for shape in shapes]
        rows = _Rows(speaker, feature_tiers, prime_tiers, noise, (x_min, x_max), {"drawn": {}, "runaways": {}})

        x, log_density, alignment, lengths = self._sample_tier(
            1, (batch, *shapes[0]), None, rows, temperature, weight_dtype, text, stop_threshold)
        time_ratio = frames // shapes[0][0]  # full-resolution frames per initial-tier frame
        if lengths is None or bool((lengths == shapes[0][0]).all()):
            x, ld = self._sample_upsampling(x, frames, rows, temperature, weight_dtype)
            log_density += ld
        else:  # rows of different lengths: each row's upsampling tiers see only its own frames
            out = x.new_zeros(batch, int(lengths.max()) * time_ratio, F)
            for b, n in enumerate(lengths.tolist()):
                x_b, ld = self._sample_upsampling(x[b:b + 1, :n], n * time_ratio, rows.select(b), temperature,
                                                  weight_dtype)
                out[b, :n * time_ratio] = x_b[0]
                log_density[b] += ld[0]
            x = out
        _warn_runaways(rows.tally["runaways"], sum(rows.tally["drawn"].values()), x_max)
        if not c.has_text:
            return (x, log_density) if return_log_prob else x
        n_used = x.shape[1] // time_ratio
        return TextSample(x, lengths * time_ratio, alignment[:, :n_used], log_density if return_log_prob else None)

    def _sample_tier(self, g: int, grid, context, rows: _Rows, temperature, weight_dtype, text=None,
                     stop_threshold=None):
        """Sample tier g on `grid` = (B, T, F) given x^<g (context) -> (x^g, log density [B], alignment or
        None, lengths [B] or None (tiers without a centralized stack))."""
        c, p = self.config, self._param()
        tier = self.tiers[g - 1]
        B, T, _ = grid
        z = tier.conditioning(grid, context, rows.speaker, rows.crop(rows.feature_tiers[g - 1], T))
        cz_t, cz_f = tier.network.conditioning_terms(z, grid)
        u, eps = (rows.crop(n, T) for n in rows.noise[g - 1])
        x_init = p.new_zeros(grid)
        n_prime = 0
        if rows.prime_tiers is not None:
            n_prime = rows.prime_tiers[g - 1].shape[1]
            x_init[:, :n_prime] = rows.prime_tiers[g - 1]
        weights = tier.network.sampler_weights()
        if weight_dtype is not None:
            weights = [w.to(weight_dtype) for w in weights]
        args = (x_init, cz_t, cz_f, u, eps, weights, c.layers[g - 1], c.n_mixtures, float(temperature), n_prime)
        if tier.network.centralized is None:
            out = (*ops.sample_tier(*args, value_range=rows.value_range), None, None)
        else:
            memory = tier.encode_text(text)
            out = ops.sample_tier_centralized(
                *args, tier.network.centralized_sampler_weights(), tier.network.centralized.attention_layer,
                None if memory is None else memory.memory, None if memory is None else memory.lengths,
                stop_threshold if memory is not None else None, value_range=rows.value_range)
        self._count_draws(g, out[0], n_prime, out[3], rows)
        return out

    @staticmethod
    def _count_draws(g: int, x_g: torch.Tensor, n_prime: int, lengths: torch.Tensor | None, rows: _Rows) -> None:
        """Adds tier g's drawn values (frames n_prime..lengths[b]) and those kept at x_max to rows.tally."""
        drawn = torch.arange(x_g.shape[1], device=x_g.device) >= n_prime
        drawn = drawn[None, :] if lengths is None else drawn[None, :] & length_mask(lengths, x_g.shape[1])
        drawn = drawn[..., None].expand_as(x_g)
        for key, n in (("drawn", drawn.sum()), ("runaways", (drawn & (x_g >= rows.value_range[1])).sum())):
            rows.tally[key][g] = rows.tally[key].get(g, 0) + int(n)

    def _sample_upsampling(self, x: torch.Tensor, frames: int, rows: _Rows, temperature, weight_dtype):
        """Tiers 2..G after the initial tier's x^1 [B, T_1, F_1] of a `frames`-frame spectrogram ->
        (x [B, frames, n_mels], log density [B] of their draws)."""
        c = self.config
        shapes = tier_shapes(frames, c.n_mels, c.n_tiers)
        log_density = x.new_zeros(x.shape[0])
        for g in range(2, c.n_tiers + 1):
            x_g, ld, _, _ = self._sample_tier(g, (x.shape[0], *shapes[g - 1]), x, rows, temperature, weight_dtype)
            log_density += ld
            x = interleave(x_g, x, FREQ_DIM if tier_axis(g) == "frequency" else TIME_DIM)
        return x, log_density

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

"""Gaussian-mixture attention over a text memory (Graves 2013), once per frame: plain PyTorch only (its cost is
one small step per frame next to the per-element work of a frame)."""

from melnet_fast.ops.gmm_attention.guided import guided_attention_loss
from melnet_fast.ops.gmm_attention.reference import (
    AttentionState,
    AttentionWeights,
    attention_step,
    gmm_attention_window,
    initial_state,
)

__all__ = ["AttentionState", "AttentionWeights", "attention_step", "gmm_attention_window", "guided_attention_loss",
           "initial_state"]

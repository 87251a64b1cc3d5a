"""Backend variants in the dispatch registry (ops/dispatch.py): sample_tier's cuda backend has a second design,
"flags", that "auto" leaves alone and a user forces with use_variant or MELNET_FAST_SAMPLE_TIER_VARIANT."""

import pytest
import torch

import melnet_fast
from melnet_fast.modules import TierNetwork
from melnet_fast.ops import dispatch
from melnet_fast.ops.tier_sampling import OP


def test_flags_is_a_variant_of_the_cuda_sampler_and_not_the_default():
    assert OP.variant_names("cuda") == ["default", "flags"]
    assert OP.variant_names("cpu") == ["default"]
    assert dispatch.variant_in_force("sample_tier") == "default"
    assert OP.function("cuda").__name__ == "sample_tier_cpp"


def test_use_variant_switches_the_function_and_restores_it():
    with melnet_fast.use_variant("sample_tier", "flags"):
        assert dispatch.variant_in_force("sample_tier") == "flags"
        assert OP.function("cuda").__name__ == "sample_tier_cuda_flags"
        assert dispatch.variant_in_force("gmm_nll") == "default"
    assert OP.function("cuda").__name__ == "sample_tier_cpp"


def test_environment_forces_a_variant(monkeypatch):
    monkeypatch.setenv("MELNET_FAST_SAMPLE_TIER_VARIANT", "flags")
    assert OP.function("cuda").__name__ == "sample_tier_cuda_flags"
    monkeypatch.setenv("MELNET_FAST_SAMPLE_TIER_VARIANT", "fast")
    with pytest.raises(ValueError, match="MELNET_FAST_SAMPLE_TIER_VARIANT='fast': sample_tier has no such variant"):
        OP.function("cuda")


def test_a_forced_variant_on_a_backend_without_it_is_an_error():
    with pytest.raises(ValueError, match="sample_tier has no variant 'fast'"):
        with melnet_fast.use_variant("sample_tier", "fast"):
            pass
    x = torch.zeros(1, 1, 1)
    with melnet_fast.use_variant("sample_tier", "flags"):
        with pytest.raises(RuntimeError, match="a variant of the cuda backend, but the (cpu|reference) backend"):
            melnet_fast.ops.sample_tier(x, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2), x, x,
                                        TierNetwork(2, 1, 1).sampler_weights(), 1, 1)

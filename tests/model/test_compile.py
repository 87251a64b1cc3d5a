"""torch.compile(model.loss, fullgraph=True) traces the whole loss, ops included (registered ops with fake
kernels and autograd; backend selection made at trace time), on the CPU backend, and the compiled loss and its
gradients equal eager's. The same ops carry fake kernels on CUDA (the cuda and triton backends' ops), so the GPU
loss compiles the same way.

Cost on the 2-core machine under load: about 20 s for the tracing backend (aot_eager: Dynamo, AOTAutograd and
the fake kernels, no code generation) and about a minute for the default backend (inductor), which generates and
compiles C++ around the ops."""

import pytest
import torch

from melnet_fast import MelNetConfig
from tests.model.helpers import random_model, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def compiled_and_eager(model, x, cond, backend):
    loss_fn = torch.compile(model.loss, fullgraph=True, backend=backend)
    results = []
    for fn in (loss_fn, model.loss):
        model.zero_grad(set_to_none=True)
        loss = fn(x, cond)
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    return loss_fn, results


def test_loss_traces_whole_and_matches_eager_with_speaker_conditioning():
    config = MelNetConfig.preset("tiny", n_speakers=3, speaker_dim=4)
    model = random_model(config, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, config.n_mels, generator=g)
    speakers = torch.tensor([2, 0])
    loss_fn, (compiled, eager) = compiled_and_eager(model, x, speakers, "aot_eager")
    names = ["loss"] + [n for n, _ in model.named_parameters()]
    for name, a, b in zip(names, compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    # The input checks survive compilation, as graph assertions (no host sync, no graph break).
    with pytest.raises(RuntimeError, match="x holds NaN or inf"):
        loss_fn(x.clone().index_fill_(1, torch.tensor([3]), float("nan")), speakers)
    with pytest.raises(RuntimeError, match=r"speaker ids must lie in \[0, 3\)"):
        loss_fn(x, torch.tensor([2, 3]))


def test_loss_compiles_with_inductor_and_matches_eager():
    model = random_model(tiny_config(), dtype=torch.float32, seed=1)
    x = torch.randn(2, 8, model.config.n_mels, generator=torch.Generator().manual_seed(1))
    _, (compiled, eager) = compiled_and_eager(model, x, None, "inductor")
    names = ["loss"] + [n for n, _ in model.named_parameters()]
    for name, a, b in zip(names, compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)

"""What helps a text model learn its alignment: the text path reaches the loss and its gradient at
initialisation, the guided-attention loss, the attention window's initial step and width, and the input dropout
(training only; causality and padding-invariance hold with it on)."""

import pytest
import torch

from melnet_fast import MelNet
from melnet_fast.ops.gmm_attention import attention_step, guided_attention_loss, initial_state
from melnet_fast.train.loop import TierLosses
from tests.model.helpers import random_model, random_spectrogram, text_cond, tts_config
from tests.model.test_text_model import test_causality_with_text as _causality_with_text
from tests.model.test_text_model import (
    test_spectrogram_and_text_padding_together as _spectrogram_and_text_padding_together,
)
from tests.model.test_text_model import (
    test_text_padding_does_not_change_the_loss_or_gradients as _text_padding_does_not_change_the_loss_or_gradients,
)


def default_model(seed: int = 0, **overrides) -> MelNet:
    """A tts model as a user builds it (default initialisation, float32), not random_model's scaled weights."""
    torch.manual_seed(seed)
    return MelNet(tts_config(**overrides))


def test_text_reaches_the_loss_and_its_gradient_at_initialisation():
    """A text path cut off from the output (or from the gradient) would make the text useless to training."""
    model = default_model()
    x = random_spectrogram(2, 8, 8, dtype=torch.float32, seed=1)
    own = model.loss(x, text_cond(2), tiers=[1])
    other = model.loss(x, text_cond(2, offset=1), tiers=[1])
    assert own.item() != other.item()
    own.backward()
    encoder, attention = model.tiers[0].text_encoder, model.tiers[0].network.centralized.attention
    for name, p in [("embedding", encoder.embedding.weight), ("window", attention.window.weight),
                    ("context_proj", attention.context_proj.weight)]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def _diagonal(N: int) -> torch.Tensor:
    return torch.eye(N, dtype=torch.float64)[None]


def test_guided_attention_loss_is_zero_on_the_diagonal_and_grows_off_it():
    N = 9
    lengths = torch.tensor([N])
    assert guided_attention_loss(_diagonal(N), lengths, None, 0.2).item() == 0
    first = torch.zeros(1, N, N, dtype=torch.float64)
    first[..., 0] = 1  # stuck on the first symbol
    anti = _diagonal(N).flip(-1)
    stuck, backwards = (guided_attention_loss(a, lengths, None, 0.2).item() for a in (first, anti))
    assert 0.2 < stuck < backwards < 1
    # a narrower band punishes the same off-diagonal mass more
    assert guided_attention_loss(first, lengths, None, 0.1).item() > stuck


def test_guided_attention_loss_reads_only_real_frames_and_symbols():
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(1, 6, 5, generator=g, dtype=torch.float64), -1)
    a[..., 4:] = 0  # text of 4 symbols
    alone = guided_attention_loss(a, torch.tensor([4]), None, 0.3)
    padded = torch.cat([torch.cat([a, torch.rand(1, 3, 5, dtype=torch.float64)], 1),
                        torch.rand(1, 9, 5, dtype=torch.float64)])
    # row 0: 6 real frames of 9; row 1 all real: the mean is over the 6 + 9 real frames
    row1 = guided_attention_loss(padded[1:], torch.tensor([5]), None, 0.3)
    both = guided_attention_loss(padded, torch.tensor([4, 5]), torch.tensor([6, 9]), 0.3)
    torch.testing.assert_close(both, (6 * alone + 9 * row1) / 15)
    with pytest.raises(ValueError, match=r"text_lengths must be \[B=2\]"):
        guided_attention_loss(padded, torch.tensor([4]), None, 0.3)


def test_guided_attention_loss_gradient():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a: guided_attention_loss(a, torch.tensor([4, 3]), torch.tensor([5, 3]), 0.25),
                             (a,))


@pytest.mark.parametrize("step,width", [pytest.param(0.3, 1.0, id="step0.3"), pytest.param(1.2, 2.5, id="step1.2")])
def test_the_attention_starts_at_its_initial_step_and_width(step, width):
    model = default_model(attention_initial_step=step, attention_initial_width=width, attention_mixtures=3)
    attention = model.tiers[0].network.centralized.attention
    K = attention.n_mixtures
    torch.testing.assert_close(attention.window.bias[K:2 * K], torch.full((K,), width).log())
    weights = attention.weights()
    g = torch.Generator().manual_seed(3)
    D, T = model.config.hidden_size, 40
    memory = torch.randn(2, 30, D, generator=g)
    state = initial_state(weights, 2, D)
    with torch.no_grad():
        for _ in range(T):
            state, _, _ = attention_step(torch.randn(2, D, generator=g), state, memory, torch.tensor([30, 30]),
                                         weights)
    # the window map starts small, so each step is step * exp(small): the mean advance is within 25%
    assert torch.allclose(state.kappa / T, torch.full_like(state.kappa, step), rtol=0.25)
    with pytest.raises(ValueError, match="initial step must be a finite number > 0"):
        attention.set_initial_step(0.0)


def test_input_dropout_is_training_only():
    model = default_model(text_input_dropout=0.5)
    x = random_spectrogram(2, 8, 8, dtype=torch.float32, seed=4)
    cond = text_cond(2)
    model.train()
    torch.manual_seed(0)
    a = model.loss(x, cond, tiers=[1])
    b = model.loss(x, cond, tiers=[1])
    assert a.item() != b.item(), "dropout draws new masks in training"
    model.eval()
    c, d = model.loss(x, cond, tiers=[1]), model.loss(x, cond, tiers=[1])
    assert c.item() == d.item()
    plain = default_model()  # the same weights without dropout
    plain.load_state_dict(model.state_dict())
    assert plain.loss(x, cond, tiers=[1]).item() == c.item()


def test_sampling_never_drops_inputs():
    model = random_model(tts_config(text_input_dropout=0.5))
    cond = text_cond(2)
    samples = []
    for train in (True, False):
        model.train(train)
        samples.append(model.sample(2, 8, cond, generator=torch.Generator().manual_seed(5)))
    torch.testing.assert_close(samples[0].x, samples[1].x)
    torch.testing.assert_close(samples[0].alignment, samples[1].alignment)


def test_causality_with_text_and_input_dropout_in_training(monkeypatch):
    """The full-Jacobian causality check of the text model, in training mode with dropout on: every call draws
    the same masks (seeded), so the Jacobian is that of one masked network."""
    real = tts_config
    monkeypatch.setattr("tests.model.test_text_model.tts_config",
                        lambda **o: real(**o, text_input_dropout=0.4, guided_attention=1.0))
    monkeypatch.setattr("tests.model.test_text_model.random_model", _seeded_training_model)
    _causality_with_text("reference", 2, 4, 8)


def _seeded_training_model(config):
    model = random_model(config).train()
    forward = model.forward
    log_prob = model.log_prob

    def seeded(fn):
        def call(*args, **kwargs):
            torch.manual_seed(11)
            return fn(*args, **kwargs)
        return call

    model.forward, model.log_prob = seeded(forward), seeded(log_prob)
    return model


def test_tier_losses_report_the_guide_apart_from_the_nll():
    """The trainer's objective adds the guide; the NLL it reports stays model.loss."""
    model = random_model(tts_config())
    x = random_spectrogram(2, 8, 8)
    lengths = torch.tensor([8, 6])
    cond = text_cond(2)
    losses, guide = TierLosses(model, (1, 2), guide_sigma=0.2)(x, cond, lengths)
    torch.testing.assert_close(losses[0], model.loss(x, cond, tiers=[1], lengths=lengths).float())
    torch.testing.assert_close(losses[1], model.loss(x, cond, tiers=[2], lengths=lengths).float())
    al = model.alignment(x, cond, lengths=lengths)
    ids, n_symbols = model.text_frontend.encode(cond["text"])
    want = guided_attention_loss(al, n_symbols, lengths // model.config.time_factor, 0.2)
    torch.testing.assert_close(guide, want.float())
    assert guide.item() > 0
    _, no_guide = TierLosses(model, (2,), guide_sigma=0.2)(x, cond, lengths)
    assert no_guide.item() == 0
    nll, none = model.loss_and_guide(x, cond, [1], lengths)
    assert none is None and nll.float().item() == losses[0].item()


def test_padding_invariance_with_the_options_on(monkeypatch):
    """The padding tests of the text model with every option on (evaluation mode: dropout is for training)."""
    real = tts_config
    monkeypatch.setattr("tests.model.test_text_model.tts_config",
                        lambda **o: real(**o, text_input_dropout=0.4, attention_initial_step=0.7,
                                         attention_initial_width=2.0, guided_attention=1.0))
    monkeypatch.setattr("tests.model.test_text_model.random_model", lambda config: random_model(config).eval())
    _spectrogram_and_text_padding_together()
    _text_padding_does_not_change_the_loss_or_gradients()

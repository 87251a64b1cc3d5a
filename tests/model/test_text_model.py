"""The text path of MelNet: causality with text, padding-invariance, the attention's monotonicity, sampling
(cached = teacher-forced log density = recomputation, per-row stop), checkpoints and bad input."""

import warnings

import pytest
import torch

import melnet_fast
from melnet_fast import DivergentSampleWarning, MelNet, ops
from melnet_fast.log_mel_scale import CEILING, FLOOR
from melnet_fast.model import TextSample
from melnet_fast.multiscale import generation_order, split_tiers
from melnet_fast.ops.gmm_attention import AttentionWeights, attention_step, gmm_attention_window, initial_state
from melnet_fast.text import CHARACTERS, EOS
from tests.model.helpers import BACKENDS, random_model, random_spectrogram, text_cond, tiny_config, tts_config
from tests.model.test_causality import jacobians
from tests.model.test_model_sampling import recomputed_sample


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("G,T,F", [pytest.param(2, 4, 8, id="2tiers-T4-F8")])
def test_causality_with_text(backend, G, T, F):
    config = tts_config(n_tiers=G, layers=(2,) * G, n_mels=F)
    model = random_model(config)
    B = 2
    x = random_spectrogram(B, T, F)
    cond = text_cond(B)

    class WithText(torch.nn.Module):  # the jacobian helper calls model(x) and model.log_prob(x)
        config = model.config

        def forward(self, x):
            return model(x, cond)

        def log_prob(self, x):
            return model.log_prob(x, cond)

    with melnet_fast.use_backend(backend):
        d_logp, d_theta = jacobians(WithText(), x)
    rank = generation_order(T, F, G).flatten().repeat(B)
    batch = torch.arange(B).repeat_interleave(T * F)
    other = batch[:, None] != batch[None, :]
    assert torch.all(d_logp[(rank[None, :] > rank[:, None]) | other] == 0)
    assert torch.all(d_theta[(rank[None, :] >= rank[:, None]) | other] == 0)
    assert torch.all(d_logp.diagonal() != 0)


def test_text_changes_the_prediction():
    model = random_model(tts_config())
    x = random_spectrogram(2, 8, 8)
    a = model.log_prob(x, text_cond(2))
    b = model.log_prob(x, text_cond(2, offset=1))
    assert not torch.allclose(a, b)


def _attention_weights(D=6, K=3, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    return AttentionWeights(r(4 * D, 2 * D, scale=0.4), r(4 * D, D, scale=0.4), r(4 * D, scale=0.3), r(D), r(D),
                            r(3 * K, D, scale=0.5), r(3 * K, scale=0.5))


def test_attention_positions_never_move_backwards():
    D, K, B, U, T = 6, 3, 3, 7, 40
    weights = _attention_weights(D, K)
    g = torch.Generator().manual_seed(1)
    memory = torch.randn(B, U, D, generator=g, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5])
    state = initial_state(weights, B, D)
    queries = torch.randn(T, B, D, generator=g, dtype=torch.float64) * 3
    for i in range(T):
        previous = state.kappa
        state, phi, beyond = attention_step(queries[i], state, memory, lengths, weights)
        assert torch.all(state.kappa > previous)
        assert torch.all(phi[1, 3:] == 0) and torch.all(phi[2, 5:] == 0)  # padding gets no weight
        assert torch.all(phi >= 0) and torch.all((beyond >= 0) & (beyond <= 1))


def test_attention_window_is_a_distribution_over_the_line():
    g = torch.Generator().manual_seed(0)
    kappa = torch.rand(4, 3, generator=g, dtype=torch.float64) * 6
    log_width = torch.randn(4, 3, generator=g, dtype=torch.float64) * 0.5
    logits = torch.randn(4, 3, generator=g, dtype=torch.float64)
    lengths = torch.tensor([5, 5, 2, 1])
    phi, beyond = gmm_attention_window(kappa, log_width, logits, lengths, 5)
    before = (torch.softmax(logits, -1) * torch.sigmoid(-kappa * torch.exp(-log_width))).sum(-1)
    torch.testing.assert_close(phi.sum(-1) + beyond + before, torch.ones(4, dtype=torch.float64))
    assert torch.all(phi[2, 2:] == 0) and torch.all(phi[3, 1:] == 0)
    torch.autograd.gradcheck(lambda k, w, a: gmm_attention_window(k, w, a, lengths, 5),
                             (kappa.requires_grad_(), log_width.requires_grad_(), logits.requires_grad_()))


def test_text_padding_does_not_change_the_loss_or_gradients():
    model = random_model(tts_config())
    x = random_spectrogram(1, 8, 8)
    short = {"text": ["Hi"]}
    alone = model.log_prob(x, short)
    # The same text next to a longer one: padded to the longer one's length, padding filled with real symbols.
    ids, lengths = model.text_frontend.encode(["Hi", "a much longer text than the first"])
    ids[0, int(lengths[0]):] = ids[1, int(lengths[0]):]
    batch = model.log_prob(torch.cat([x, random_spectrogram(1, 8, 8, seed=3)]), {"text": ids, "text_lengths": lengths})
    torch.testing.assert_close(batch[:1], alone)
    grad_alone = torch.autograd.grad(alone.sum(), list(model.parameters()), allow_unused=True)
    grad_batch = torch.autograd.grad(batch[0].sum(), list(model.parameters()), allow_unused=True)
    for a, b in zip(grad_alone, grad_batch):
        if a is None:
            assert b is None or torch.all(b == 0)
        else:
            torch.testing.assert_close(a, b)


def test_spectrogram_and_text_padding_together():
    """A batch of utterances of different lengths (frames and symbols): each row scores as it does alone."""
    model = random_model(tts_config())
    xs = [random_spectrogram(1, 8, 8, seed=1), random_spectrogram(1, 4, 8, seed=2)]
    texts = ["a longer text", "Hi"]
    x = torch.cat([xs[0], torch.cat([xs[1], torch.full((1, 4, 8), float("nan"), dtype=torch.float64)], 1)])
    lengths = torch.tensor([8, 4])
    batch = model.log_prob(x, {"text": texts}, lengths=lengths)
    alone = [model.log_prob(xs[b], {"text": texts[b:b + 1]})[0] for b in range(2)]
    for b in range(2):
        torch.testing.assert_close(batch[b, :int(lengths[b])], alone[b])
    want = -(alone[0].sum() + alone[1].sum()) / (12 * 8)
    torch.testing.assert_close(model.loss(x, {"text": texts}, lengths=lengths), want)
    al = model.alignment(x, {"text": texts}, lengths=lengths)
    torch.testing.assert_close(al[1, :2, :3], model.alignment(xs[1], {"text": texts[1:]})[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sampled_alignment_equals_teacher_forced_alignment(backend):
    model = random_model(tts_config())
    cond = text_cond(2)
    with melnet_fast.use_backend(backend):
        s = model.sample(2, 8, cond, generator=torch.Generator().manual_seed(0), stop_threshold=None)
    torch.testing.assert_close(s.alignment, model.alignment(s.x, cond))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.7])
def test_text_sample_equals_recomputation(temperature, backend):
    model = random_model(tts_config())
    cond = text_cond(2)
    with torch.no_grad():
        want, want_ld = recomputed_sample(model, 2, 4, cond, temperature, generator=torch.Generator().manual_seed(3))
    with melnet_fast.use_backend(backend):
        got = model.sample(2, 4, cond, temperature, generator=torch.Generator().manual_seed(3),
                           return_log_prob=True, stop_threshold=None)
    assert isinstance(got, TextSample) and got.lengths.tolist() == [4, 4]
    torch.testing.assert_close(got.x, want)
    torch.testing.assert_close(got.log_prob, want_ld)


def _stopping_model(**overrides):
    """A random text model whose attention moves fast, so that rows stop at different frames."""
    model = random_model(tts_config(**overrides))
    with torch.no_grad():
        window = model.tiers[0].network.centralized.attention.window
        window.bias[:window.bias.shape[0] // 3] += 0.7
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("primed,speakers", [(False, 0), (True, 0), (False, 3)],
                         ids=["unprimed", "primed", "speakers"])
def test_accumulated_density_equals_log_prob_row_by_row(primed, speakers, backend):
    model = _stopping_model(n_speakers=speakers, speaker_dim=2)
    cond = {"text": ["a cat", "the longest text of this batch"]}
    if speakers:
        cond["speaker"] = torch.tensor([2, 0])
    P = 2 if primed else 0
    prime = random_spectrogram(2, P, 8, seed=4) if primed else None
    with melnet_fast.use_backend(backend):
        s = model.sample(2, 32, cond, prime=prime, generator=torch.Generator().manual_seed(1), return_log_prob=True)
    n = s.lengths.tolist()
    assert n[0] < n[1], f"rows should stop at different frames, got lengths {n}"
    for b in range(2):
        x_b = s.x[b:b + 1, :n[b]]
        one = {k: v[b:b + 1] for k, v in cond.items()}
        drawn = torch.ones(n[b], 8, dtype=torch.bool)
        drawn[:P] = False
        torch.testing.assert_close(model.log_prob(x_b, one)[0, drawn].sum(), s.log_prob[b])
        assert torch.all(s.x[b, n[b]:] == 0) and torch.all(s.alignment[b, n[b] // 2:] == 0)
        if primed:
            assert torch.equal(s.x[b, :P], prime[b])


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_does_not_change_samples(backend):
    """Row 0 gets the same noise in both batches; its neighbour (and so its padding) differs."""
    model = _stopping_model()
    with melnet_fast.use_backend(backend):
        a = model.sample(2, 32, {"text": ["a cat", "a longer neighbour text"]},
                         generator=torch.Generator().manual_seed(2))
        b = model.sample(2, 32, {"text": ["a cat", "b"]}, generator=torch.Generator().manual_seed(2))
    n = int(a.lengths[0])
    assert int(b.lengths[0]) == n and n >= 4
    torch.testing.assert_close(a.x[0, :n], b.x[0, :n])
    U = 6  # "a cat" + end-of-text
    torch.testing.assert_close(a.alignment[0, :n // 2, :U], b.alignment[0, :n // 2, :U])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [0.0, 1.0, 5.0])
def test_diverging_text_model_gives_finite_samples_and_a_warning(temperature, backend):
    """The text sampler (ops.sample_tier_centralized) keeps drawn values in the samplers' range like the others."""
    model = random_model(tts_config())
    with torch.no_grad():
        for tier in model.tiers:  # each draw feeds the next element's input: scaled-up heads run away
            tier.network.head.weight.mul_(50.0)
            tier.network.head.bias.mul_(50.0)
    with melnet_fast.use_backend(backend), pytest.warns(DivergentSampleWarning, match=r"ran away above x_max"):
        s = model.sample(2, 8, text_cond(2), temperature, generator=torch.Generator().manual_seed(0),
                         return_log_prob=True, stop_threshold=None)
    assert torch.isfinite(s.x).all() and s.x.min() >= FLOOR and s.x.max() <= CEILING
    assert (s.x == CEILING).any() and not torch.isnan(s.log_prob).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_sampler_keeps_the_value_range_and_conditions_on_kept_values(backend):
    """A narrow range: both ends are reached (in the initial tier, sampled by the text sampler, too), and the
    accumulated density is that of the kept values, which the next elements read."""
    model = _stopping_model()
    lo, hi = -0.2, 0.3
    cond = {"text": ["a cat", "the longest text of this batch"]}
    with melnet_fast.use_backend(backend), pytest.warns(DivergentSampleWarning):
        s = model.sample(2, 32, cond, generator=torch.Generator().manual_seed(1), return_log_prob=True,
                         value_range=(lo, hi))
    x1 = split_tiers(s.x, model.config.n_tiers)[0][0]
    for b, n in enumerate(s.lengths.tolist()):
        first = x1[b, :n * x1.shape[1] // s.x.shape[1]]  # the row's initial-tier frames
        assert first.min() == lo and first.max() == hi
        one = {k: v[b:b + 1] for k, v in cond.items()}
        torch.testing.assert_close(model.log_prob(s.x[b:b + 1, :n], one).sum(), s.log_prob[b])
    with pytest.raises(ValueError, match="value_range"):
        model.sample(1, 4, text_cond(1), value_range=(0.3, -0.2))


def test_auto_samples_text_models_with_the_cpu_sampler():
    """On the CPU "auto" picks the C++ sampler for a text model (no warning), with the reference's draws."""
    model = _stopping_model()
    cond = {"text": ["a cat", "the longest text of this batch"]}
    out = {}
    for backend in ("auto", "reference"):
        with melnet_fast.use_backend(backend), warnings.catch_warnings():
            warnings.simplefilter("error")
            out[backend] = model.sample(2, 32, cond, 0.8, generator=torch.Generator().manual_seed(0),
                                        return_log_prob=True)
    assert out["auto"].lengths.tolist() == out["reference"].lengths.tolist()
    for got, want in zip(out["auto"], out["reference"]):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_low_precision_weights_are_refused_for_text_models():
    model = random_model(tts_config(), dtype=torch.float32)
    x = torch.zeros(1, 2, 4)
    cz = torch.zeros(1, 2, 4, 8)
    weights = [w.to(torch.bfloat16) for w in model.tiers[0].network.sampler_weights()]
    with pytest.raises(ValueError, match="weights: the .* sampler"):
        ops.sample_tier_centralized(x, cz, cz, x, x, weights, 2, 3, 1.0, 0,
                                    model.tiers[0].network.centralized_sampler_weights(), 1,
                                    torch.zeros(1, 3, 8), torch.tensor([3]))


def test_checkpoint_keeps_the_vocabulary(tmp_path):
    config = tts_config(text_symbols="zyx ,.abc", text_max_length=40)
    model = random_model(config)
    path = tmp_path / "tts.safetensors"
    model.save(path)
    loaded = MelNet.load(path)
    assert loaded.config.text_symbols == "zyx ,.abc" and loaded.config.text_max_length == 40
    texts = ["abc, xyz.", "Cab."]
    for got, want in zip(loaded.text_frontend.encode(texts), model.text_frontend.encode(texts)):
        assert torch.equal(got, want)
    x = random_spectrogram(2, 8, 8)
    assert torch.equal(loaded.log_prob(x, {"text": texts}), model.log_prob(x, {"text": texts}))


@pytest.mark.parametrize("cond,match", [
    ({"text": ["fine", ""]}, r"text\[1\] is empty"),
    ({"text": ["fine", "ünïcödé ok", "日本"]}, r"one string per example: 2, got 3"),
    ({"text": ["fine", "#1 {x}|"]}, r"text\[1\] has symbols outside the model's vocabulary: \['\|'\]"),
    ({"text": ["fine", "word " * 200]}, r"text\[1\] is too long: .* at most text_max_length=512"),
    ({"text": "one string"}, r"list of strings, one per example"),
    (None, r"conditioned on text: pass cond=\{'text'"),
    ({"text": torch.zeros(2, 3)}, r"text ids must be a LongTensor"),
    ({"text": torch.zeros(2, 3, dtype=torch.long)}, r"text_lengths"),
    ({"text": torch.full((2, 3), 99), "text_lengths": torch.tensor([3, 2])}, r"text ids must lie in \[0, 40\)"),
])
def test_bad_text_input_is_a_clear_error(cond, match):
    model = random_model(tts_config())
    x = random_spectrogram(2, 4, 8)
    with pytest.raises(ValueError, match=match):
        model.loss(x, cond)
    with pytest.raises(ValueError, match=match):
        model.sample(2, 4, cond)


@pytest.mark.parametrize("config", [tts_config(text_symbols=""), tiny_config(n_mels=8)],
                         ids=["centralized-stack-without-text", "plain"])
def test_text_given_to_a_model_without_text_is_a_clear_error(config):
    model = random_model(config)
    with pytest.raises(ValueError, match="not conditioned on text"):
        model.loss(random_spectrogram(1, 4, 8), {"text": ["hello"]})
    with pytest.raises(ValueError, match="not conditioned on text"):
        model.sample(1, 4, {"text": ["hello"]})


@pytest.mark.parametrize("overrides,match", [
    ({"centralized_stack": False}, "needs centralized_stack=True"),
    ({"text_symbols": "abca"}, r"must not repeat a symbol, got \['a'\]"),
    ({"attention_layer": 2}, r"attention_layer must be None or an int in \[0, layers\[0\]=2\)"),
    ({"text_frontend": "words"}, "text_frontend must be one of"),
    ({"attention_mixtures": 0}, "attention_mixtures must be an int >= 1"),
])
def test_bad_text_config_is_a_clear_error(overrides, match):
    with pytest.raises(ValueError, match=match):
        tts_config(**overrides)


@pytest.mark.parametrize("name", ["tts_tiny", "tts_small", "tts_blizzard"])
def test_tts_presets_count_their_parameters(name):
    config = tts_config() if name == "tts_tiny" else melnet_fast.MelNetConfig.preset(name)
    with torch.device("meta"):
        model = MelNet(config)
    assert model.parameter_counts() == config.parameter_counts()
    assert config.has_text and config.text_symbols == CHARACTERS and EOS == 1

"""save / load: one safetensors file, atomic, bit-exact, with clear errors."""

import os

import pytest
import torch
from safetensors.torch import save_file

from melnet_fast import MelNet
from tests.model.helpers import random_cond, random_model, random_spectrogram, tiny_config


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    config = tiny_config(n_speakers=2, speaker_dim=3, cond_dim=1)
    model = random_model(config, dtype=dtype)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = MelNet.load(path)
    assert loaded.config == config
    a, b = model.state_dict(), loaded.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
    x = random_spectrogram(2, 4, config.n_mels, dtype=dtype)
    cond = random_cond(config, 2, 4, dtype=dtype)
    for p, q in zip(model(x, cond), loaded(x, cond)):
        assert torch.equal(p, q)
    one = {k: v[:1] for k, v in cond.items()}
    assert torch.equal(model.sample(1, 4, one, generator=torch.Generator().manual_seed(0)),
                       loaded.sample(1, 4, one, generator=torch.Generator().manual_seed(0)))


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "m.safetensors"
    first, second = random_model(tiny_config(), seed=1), random_model(tiny_config(), seed=2)
    first.save(path)
    second.save(str(path))
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary file left behind
    loaded = MelNet.load(path)
    assert all(torch.equal(p, q) for p, q in zip(loaded.parameters(), second.parameters()))


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    model = random_model(tiny_config())
    model.save(path)
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        random_model(tiny_config(), seed=3).save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.safetensors"]


def test_expected_config_mismatch(tmp_path):
    path = tmp_path / "m.safetensors"
    random_model(tiny_config()).save(path)
    with pytest.raises(ValueError, match=r"different config.*'hidden_size': \(4, 16\)"):
        MelNet.load(path, config=tiny_config(hidden_size=16))
    assert MelNet.load(path, config=tiny_config()).config == tiny_config()


def test_corrupt_and_foreign_files(tmp_path):
    path = tmp_path / "m.safetensors"
    random_model(tiny_config()).save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        MelNet.load(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        MelNet.load(garbage)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a melnet_fast checkpoint"):
        MelNet.load(foreign)
    with pytest.raises(FileNotFoundError):
        MelNet.load(tmp_path / "missing.safetensors")


def test_tensors_not_matching_the_stored_config(tmp_path):
    from melnet_fast import checkpoint

    model = random_model(tiny_config())
    state = model.state_dict()
    state["tiers.0.network.head.bias"] = torch.zeros(5, dtype=torch.float64)
    del state["tiers.1.network.head.weight"]
    path = tmp_path / "bad.safetensors"
    checkpoint.write_checkpoint(path, state, model.config.to_dict())
    with pytest.raises(ValueError, match=r"missing \['tiers.1.network.head.weight'\].*wrong shapes"):
        MelNet.load(path)
    bad_config = {**model.config.to_dict(), "hidden_size": 0}
    checkpoint.write_checkpoint(path, model.state_dict(), bad_config)
    with pytest.raises(ValueError, match="config stored in the checkpoint is invalid: hidden_size"):
        MelNet.load(path)

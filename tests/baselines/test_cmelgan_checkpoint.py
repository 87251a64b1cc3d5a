"""CMelGAN.save / load: one safetensors file, bit-exact, refused by the other model's loader."""

import pytest
import torch

from melnet_fast import MelNet, MelNetConfig
from melnet_fast.baselines.cmelgan import CMelGAN
from tests.baselines.conftest import odd_config, random_gan


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    config = odd_config()
    model = random_gan(config, dtype=dtype)
    path = tmp_path / "g.safetensors"
    model.save(path)
    loaded = CMelGAN.load(path)
    assert loaded.config == config
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    labels = torch.tensor([0, 2])
    assert torch.equal(model.sample(2, None, labels, 1.0, torch.Generator().manual_seed(3)),
                       loaded.sample(2, None, labels, 1.0, torch.Generator().manual_seed(3)))


def test_each_loader_refuses_the_other_models_file(tmp_path):
    gan, melnet = tmp_path / "g.safetensors", tmp_path / "m.safetensors"
    random_gan(odd_config()).save(gan)
    MelNet(MelNetConfig.preset("tiny")).save(melnet)
    with pytest.raises(ValueError, match="not a melnet_fast checkpoint of this kind"):
        MelNet.load(gan)
    with pytest.raises(ValueError, match="not a melnet_fast checkpoint of this kind"):
        CMelGAN.load(melnet)
    with pytest.raises(ValueError, match="different config"):
        CMelGAN.load(gan, config=odd_config(noise_dim=6))

"""The CLI's small parsers and guards, in process (no subprocess needed)."""

import argparse
import math

import pytest
import torch

from melnet_fast.cli import build_parser
from melnet_fast.cli.common import UserError, audible_range, frames_for, parse_overrides, preset_config, speaker_id
from melnet_fast.config import MelNetConfig
from melnet_fast.plots import IMAGE_VMAX, IMAGE_VMIN


def test_parse_overrides():
    got = parse_overrides(["hidden_size=32", "layers=3,2,2", "f_max=3800.5", "n_fft=null"])
    assert got == {"hidden_size": 32, "layers": [3, 2, 2], "f_max": 3800.5, "n_fft": None}
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_overrides(["hidden_size"])


def test_preset_config_errors():
    assert preset_config("tiny", {"hidden_size": 12}).hidden_size == 12
    assert preset_config("demo").n_mels == 32
    with pytest.raises(UserError, match="unknown preset 'big'"):
        preset_config("big")
    with pytest.raises(UserError, match="invalid config override"):
        preset_config("tiny", {"hidden": 3})
    with pytest.raises(UserError, match="invalid config: n_mels"):
        preset_config("tiny", {"n_mels": 15})


def test_frames_for_rounds_up_to_the_time_factor():
    config = MelNetConfig.preset("tiny", n_tiers=5, layers=(1, 1, 1, 1, 1))  # time factor 4
    assert frames_for(1.0, config) == 64  # 62.5 frames -> 62 -> 64
    with pytest.raises(UserError):
        frames_for(0, config)


def test_speaker_ids():
    plain = MelNetConfig.preset("tiny")
    assert speaker_id(None, plain, []) is None
    with pytest.raises(UserError, match="not conditioned"):
        speaker_id("1", plain, [])
    conditional = plain.replace(n_speakers=4)
    names = ["classical", "electronic", "lofi", "chiptune"]
    assert speaker_id("lofi", conditional, names).tolist() == [2]
    assert speaker_id("3", conditional, names).tolist() == [3]
    for bad, message in ((None, "pass --speaker ID"), ("4", "out of range"), ("jazz", "neither an id")):
        with pytest.raises(UserError, match=message):
            speaker_id(bad, conditional, names)


def test_audible_range():
    spec = torch.tensor([[0.0, math.nan, math.inf, -math.inf, IMAGE_VMIN - 3, IMAGE_VMAX + 10]])
    clamped, bad = audible_range(spec)
    assert bad == 4  # nan, +-inf and the far too loud value; quieter than the floor is just silence
    assert torch.isfinite(clamped).all() and clamped.min() >= IMAGE_VMIN and clamped.max() <= IMAGE_VMAX + 2


def test_every_command_has_help():
    parser = build_parser()
    for command in (["train"], ["sample"], ["tts"], ["eval"], ["invert"], ["demo"], ["info"], ["data", "music"],
                    ["data", "speech"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([*command, "--help"])
        assert exit_info.value.code == 0


def test_demo_preset_trains_with_the_demo_recipe():
    from melnet_fast.cli.demo import DEMO_CROP_FRAMES, DEMO_LR_COOLDOWN
    from melnet_fast.cli.gan_cmd import GANKind
    from melnet_fast.cli.train_cmd import MELNET

    demo = MELNET.default_options("demo")
    assert (demo.crop_frames, demo.lr_cooldown) == (DEMO_CROP_FRAMES, DEMO_LR_COOLDOWN)
    small = MELNET.default_options("small")
    assert (small.crop_frames, small.lr_cooldown) == (None, 0.0)
    gan_demo = GANKind().default_options("demo")  # cMelGAN's demo preset is another model: its own clip length
    assert (gan_demo.crop_frames, gan_demo.lr_cooldown) == (None, 0.0)


def _commands(parser, prefix=()):
    """(command words, parser) of every command and sub-command (melnet-fast data music, ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


def test_help_gives_each_default_once():
    """--help shows a default once ("(default 1000)" written in the text, or "(default: X)" added), and never
    "(default: None)"."""
    commands = dict(_commands(build_parser()))
    assert {("tts",), ("data",), ("data", "music"), ("data", "speech"), ("info",)} <= set(commands)
    for name, parser in commands.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            text = formatter._expand_help(action) if action.help else ""
            assert text.count("default") <= 1, (name, action.dest, text)
            assert "(default: None)" not in text and "(default: False)" not in text, (name, action.dest, text)
        assert "(default: None)" not in parser.format_help()
    train = commands[("train",)].format_help()
    assert "(default 1000)" in train and "(default 1000) (default" not in train

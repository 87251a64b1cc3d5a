"""The text front end: normalisation, numbers, vocabulary, phonemes, and clear errors for bad text."""

import builtins
import shutil

import pytest
import torch

from melnet_fast import MelNetConfig
from melnet_fast.text import CHARACTERS, EOS, PAD, PHONEMES, PhonemizerUnavailable, TextFrontEnd, normalize_text
from melnet_fast.text import phonemes as phonemes_module
from melnet_fast.text.numbers import cardinal, ordinal, spell_numbers, year


@pytest.mark.parametrize("raw,want", [
    ("Hello,   World!", "hello, world!"),
    ("  Café\tnaïve\n", "cafe naive"),
    ("“Quoted” — ‘single’…", '"quoted" - \'single\'...'),
    ("Dr. Smith & Mr. Jones", "doctor smith and mister jones"),
    ("It cost $3.50, or 12%.", "it cost three dollars and fifty cents, or twelve percent."),
    ("On May 1st, 1999 at 10:30", "on may first, nineteen ninety-nine at ten:thirty"),
    ("12,345 people; pi is 3.14", "twelve thousand three hundred forty-five people; pi is three point one four"),
    ("Agent 007 in 2005", "agent zero zero seven in two thousand five"),
])
def test_normalize_text(raw, want):
    assert normalize_text(raw) == want


@pytest.mark.parametrize("n,want", [(0, "zero"), (13, "thirteen"), (40, "forty"), (101, "one hundred one"),
                                    (999_999, "nine hundred ninety-nine thousand nine hundred ninety-nine"),
                                    (2_000_000_017, "two billion seventeen"), (-5, "minus five")])
def test_cardinal(n, want):
    assert cardinal(n) == want


def test_ordinals_years_and_huge_numbers():
    assert [ordinal(n) for n in (1, 2, 3, 5, 12, 20, 21, 100)] == [
        "first", "second", "third", "fifth", "twelfth", "twentieth", "twenty-first", "one hundredth"]
    assert [year(n) for n in (1066, 1900, 1905, 2000, 2019)] == [
        "ten sixty-six", "nineteen hundred", "nineteen oh five", "two thousand", "twenty nineteen"]
    assert spell_numbers("10000000000000000000") == " ".join(["one"] + ["zero"] * 19)  # digit by digit


def test_encode_pads_and_ends_every_text():
    front = TextFrontEnd(CHARACTERS)
    ids, lengths = front.encode(["ab", "Hello, world"])
    assert lengths.tolist() == [3, 13] and ids.shape == (2, 13) and ids.dtype == torch.long
    assert ids[0, 2] == EOS and torch.all(ids[0, 3:] == PAD) and ids[1, 12] == EOS
    assert front.decode(ids[1]) == "hello, world~"
    assert front.n_symbols == len(CHARACTERS) + 2
    assert len(set(CHARACTERS)) == len(CHARACTERS) and len(set(PHONEMES)) == len(PHONEMES)


@pytest.mark.parametrize("texts,match", [
    (["fine", ""], r"text\[1\] is empty after normalisation"),
    (["   \t "], r"text\[0\] is empty"),
    (["abc", "日本"], r"text\[1\] has symbols outside the model's vocabulary: \['日', '本'\]"),
    (["x" * 20], r"text\[0\] is too long: 20 symbols plus end-of-text, .*text_max_length=16"),
    (["ok", 3], r"text\[1\] must be a string, got int"),
    ("one string", r"text must be a list of strings"),
    ([], r"at least one string"),
])
def test_bad_text_is_a_clear_error(texts, match):
    with pytest.raises(ValueError, match=match):
        TextFrontEnd(CHARACTERS, max_length=16).encode(texts)


def test_front_end_from_config_needs_text():
    with pytest.raises(ValueError, match="not conditioned on text"):
        TextFrontEnd.from_config(MelNetConfig.preset("tiny"))
    front = TextFrontEnd.from_config(MelNetConfig.preset("tts_tiny", text_symbols="ab ", text_max_length=9))
    assert front.symbols == "ab " and front.max_length == 9


def test_missing_phonemizer_names_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_phonemizer(name, *args, **kwargs):
        if name.startswith("phonemizer"):
            raise ImportError("No module named 'phonemizer'")
        return real_import(name, *args, **kwargs)

    phonemes_module._backend.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_phonemizer)
    try:
        with pytest.raises(PhonemizerUnavailable, match=r"pip install 'melnet_fast\[tts\]'.*espeak-ng"):
            TextFrontEnd(PHONEMES, frontend="phonemes").encode(["hello"])
    finally:
        phonemes_module._backend.cache_clear()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (Debian package) is not installed")
def test_phonemes_through_espeak():
    pytest.importorskip("phonemizer", reason="the tts extra (phonemizer) is not installed")
    front = TextFrontEnd(PHONEMES, frontend="phonemes")
    symbols = front.to_symbols(["The quick brown fox, 2 dogs."])[0]
    assert "ð" in symbols and "," in symbols and "ˈ" in symbols  # IPA, punctuation and stress kept
    ids, lengths = front.encode(["The quick brown fox, 2 dogs.", "Hello"])
    assert ids.shape[0] == 2 and int(lengths[0]) == len(symbols) + 1

"""Text models and their data: whole utterances with texts, batch conditioning, mismatched texts."""

import pytest
import torch

from melnet_fast import MelNetConfig
from melnet_fast.train.conditioning import SkippedUtteranceWarning, batch_cond, mismatched_texts, whole_utterances


class Utterances:
    """The dataset interface whole_utterances reads (and data_source.Subset wraps)."""

    settings, label_names, frame_multiple, crop_frames = None, [], 1, 10

    def __init__(self, frames, texts):
        self.frames, self.texts, self.labels = frames, texts, [0] * len(texts)

    def __len__(self):
        return len(self.frames)

    def num_frames(self, i):
        return self.frames[i]


def test_whole_utterances_leaves_out_untexted_and_too_long_items():
    data = Utterances([4, 12, 10, 3], ["a", "b", "c", ""])
    with pytest.warns(SkippedUtteranceWarning, match=r"1 without text, 1 longer than 10 frames \(the longest has "
                                                     r"12.*2 of 4 items kept"):
        kept = whole_utterances(data, "the data")
    assert len(kept) == 2 and kept.texts == ["a", "c"] and kept.num_frames(1) == 10
    all_good = Utterances([4, 5], ["a", "b"])
    assert whole_utterances(all_good) is all_good
    with pytest.raises(ValueError, match="no item is usable by a text model: 2 without text"):
        whole_utterances(Utterances([4, 5], ["", ""]))


def test_batch_cond():
    tts = MelNetConfig.preset("tts_tiny", n_speakers=2)
    cond = batch_cond(tts, torch.tensor([1, 0]), ("hi", "yo"), torch.device("cpu"))
    assert cond["text"] == ["hi", "yo"] and cond["speaker"].tolist() == [1, 0]
    assert batch_cond(MelNetConfig.preset("tiny"), torch.tensor([1]), ("hi",), torch.device("cpu")) is None
    with pytest.raises(ValueError, match="needs the text of every example"):
        batch_cond(tts, None, ("hi", ""), torch.device("cpu"))


def test_mismatched_texts_pair_similar_lengths_and_never_keep_a_text():
    texts = ["aaaa", "b", "cc", "ddd", "eeeee"]
    other = mismatched_texts(texts)
    assert sorted(other) == sorted(texts) and all(o != t for o, t in zip(other, texts))
    assert other[texts.index("b")] == "cc" and other[texts.index("eeeee")] == "b"

"""Synthetic text-speech pairs: deterministic, the frames follow the text, and the true alignment is right."""

import torch

from melnet_fast.synthetic_speech import ALPHABET, SILENCE, letter_spectrum, synthetic_text_speech


def test_pairs_are_deterministic_and_follow_their_text():
    x, texts, positions = synthetic_text_speech(6, 40, 16, seed=3)
    x2, texts2, _ = synthetic_text_speech(6, 40, 16, seed=3)
    assert torch.equal(x, x2) and texts == texts2 and x.shape == (6, 40, 16) and positions.shape == (6, 40)
    assert texts != synthetic_text_speech(6, 40, 16, seed=4)[1]
    for n, text in enumerate(texts):
        assert set(text) <= set(ALPHABET + " ") and text.strip() == text
        pos = positions[n]
        assert torch.all(pos[1:] >= pos[:-1]) and int(pos[-1]) == len(text)  # forward, ends after the text
        for i in range(40):
            p = int(pos[i])
            want = letter_spectrum(text[p], 16) if p < len(text) and text[p] != " " and i > 0 else None
            if want is not None:  # a letter sounds: its spectrum, up to the noise
                assert torch.allclose(x[n, i], torch.from_numpy(want).float(), atol=0.6)
            else:  # silence: before the first letter, in pauses, after the text
                assert float(x[n, i].mean()) < SILENCE + 0.2
        letters = {k for k, ch in enumerate(text) if ch != " "}
        assert letters <= set(pos.tolist())  # every letter of the text sounds at some frame

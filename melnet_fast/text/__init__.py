"""The text front end of text-to-speech: normalisation, optional phonemes, and the symbol vocabulary.

    front = TextFrontEnd.from_config(model.config)
    ids, lengths = front.encode(["Hello, world.", "It cost $5."])   # [B, U] (PAD = 0, EOS = 1), [B]
"""

from melnet_fast.text.frontend import TextFrontEnd
from melnet_fast.text.normalize import normalize_text
from melnet_fast.text.phonemes import PhonemizerUnavailable, phonemize
from melnet_fast.text.symbols import CHARACTERS, DEFAULT_SYMBOLS, EOS, FRONT_ENDS, PAD, PHONEMES

__all__ = ["TextFrontEnd", "normalize_text", "phonemize", "PhonemizerUnavailable", "CHARACTERS", "PHONEMES",
           "DEFAULT_SYMBOLS", "FRONT_ENDS", "PAD", "EOS"]

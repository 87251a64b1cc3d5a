"""TextFrontEnd: strings -> padded symbol ids [B, U] with lengths [B], the way a model's config says."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch

from melnet_fast.text.normalize import normalize_text
from melnet_fast.text.phonemes import phonemize
from melnet_fast.text.symbols import EOS, FRONT_ENDS, PAD, RESERVED


class TextFrontEnd:
    """Normalisation, optional phonemes, and a vocabulary of `symbols` (one symbol per character of the
    string) with the reserved ids PAD = 0 and EOS = 1; symbol k of the string has id RESERVED + k.

    encode(texts) -> (ids LongTensor [B, U], lengths LongTensor [B]): row b holds the symbols of text b then
    EOS (lengths[b] counts both), then PAD up to U = max(lengths). Bad input is a ValueError naming the text:
    not a string, empty after normalisation, symbols outside the vocabulary, longer than max_length.
    """

    def __init__(self, symbols: str, frontend: str = "characters", language: str = "en-us",
                 max_length: int = 512):
        if frontend not in FRONT_ENDS:
            raise ValueError(f"text_frontend must be one of {FRONT_ENDS}, got {frontend!r}")
        self.symbols, self.frontend, self.language, self.max_length = symbols, frontend, language, max_length
        self._ids = {s: RESERVED + k for k, s in enumerate(symbols)}

    @classmethod
    def from_config(cls, config) -> TextFrontEnd:
        """The front end of a MelNetConfig with text conditioning (config.text_symbols non-empty)."""
        if not config.text_symbols:
            raise ValueError("this model is not conditioned on text (config.text_symbols is empty)")
        return cls(config.text_symbols, config.text_frontend, config.text_language, config.text_max_length)

    @property
    def n_symbols(self) -> int:
        """Size of the embedding table: the symbols plus PAD and EOS."""
        return RESERVED + len(self.symbols)

    def to_symbols(self, texts: Sequence[str]) -> List[str]:
        """What gets encoded: normalised text, or its phonemes."""
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise ValueError(f"text must be a list of strings (one per example), got {type(texts).__name__}")
        for b, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"text[{b}] must be a string, got {type(t).__name__}")
        normal = [normalize_text(t) for t in texts]
        for b, (raw, t) in enumerate(zip(texts, normal)):
            if not t:
                raise ValueError(f"text[{b}] is empty after normalisation (got {raw!r}): there is nothing to say")
        return phonemize(normal, self.language) if self.frontend == "phonemes" else normal

    def encode_one(self, symbols: str, index: int = 0) -> List[int]:
        unknown = sorted({ch for ch in symbols if ch not in self._ids})
        if unknown:
            raise ValueError(f"text[{index}] has symbols outside the model's vocabulary: {unknown} in "
                             f"{symbols!r}; the vocabulary is {self.symbols!r}")
        if len(symbols) + 1 > self.max_length:
            raise ValueError(f"text[{index}] is too long: {len(symbols)} symbols plus end-of-text, the model takes "
                             f"at most text_max_length={self.max_length}; split it into sentences")
        return [self._ids[ch] for ch in symbols] + [EOS]

    def encode(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        rows = [self.encode_one(s, b) for b, s in enumerate(self.to_symbols(texts))]
        if not rows:
            raise ValueError("text must hold at least one string")
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        ids = torch.full((len(rows), int(lengths.max())), PAD, dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, :len(r)] = torch.tensor(r, dtype=torch.long)
        return ids, lengths

    def decode(self, ids: Sequence[int]) -> str:
        """Symbol ids -> the string of their symbols (PAD dropped, EOS as '~'), for plots and messages."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                out.append("~")
            elif i >= RESERVED:
                out.append(self.symbols[i - RESERVED])
        return "".join(out)

"""Optional phonemes: normalised text -> IPA through `phonemizer` and the espeak-ng speech synthesiser."""

from __future__ import annotations

import functools
from typing import List, Sequence

INSTALL_HINT = ("phonemes need the optional dependencies: `pip install 'melnet_fast[tts]'` (the phonemizer "
                "package) and the espeak-ng program (Debian / Ubuntu: `apt-get install espeak-ng`)")


class PhonemizerUnavailable(RuntimeError):
    """text_frontend="phonemes" was asked for but phonemizer or espeak-ng is not installed."""


@functools.lru_cache(maxsize=4)
def _backend(language: str):
    try:
        from phonemizer.backend import EspeakBackend
    except ImportError:
        raise PhonemizerUnavailable(f"the phonemizer package is not installed; {INSTALL_HINT}") from None
    if not EspeakBackend.is_available():
        raise PhonemizerUnavailable(f"espeak-ng was not found; {INSTALL_HINT}")
    try:
        return EspeakBackend(language, preserve_punctuation=True, with_stress=True)
    except RuntimeError as e:  # an unknown language
        raise ValueError(f"text_language={language!r}: espeak-ng cannot read it ({e})") from None


def phonemize(texts: Sequence[str], language: str = "en-us") -> List[str]:
    """Normalised texts -> IPA strings (stress marks kept, punctuation kept, words separated by spaces).
    PhonemizerUnavailable (naming what to install) when phonemizer or espeak-ng is missing."""
    return list(_backend(language).phonemize(list(texts), strip=True, njobs=1))

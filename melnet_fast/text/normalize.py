"""Text normalisation for the text-to-speech front end: what a reader says, as lowercase words and punctuation."""

from __future__ import annotations

import re
import unicodedata

from melnet_fast.text.numbers import spell_numbers

# Typographic variants -> the plain punctuation kept as symbols.
_PUNCTUATION_MAP = {"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "‚": "'", "`": "'",
                    "–": "-", "—": "-", "‐": "-", "‑": "-", "−": "-", "…": "...", "[": "(", "]": ")",
                    "{": "(", "}": ")"}
_SYMBOL_WORDS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number ", "/": " slash "}
_ABBREVIATIONS = {"mrs": "misess", "mr": "mister", "dr": "doctor", "st": "saint", "co": "company",
                  "jr": "junior", "maj": "major", "gen": "general", "drs": "doctors", "rev": "reverend",
                  "lt": "lieutenant", "hon": "honorable", "sgt": "sergeant", "capt": "captain", "esq": "esquire",
                  "ltd": "limited", "col": "colonel", "ft": "fort", "vs": "versus", "etc": "et cetera"}
_ABBREVIATION = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def fold_accents(text: str) -> str:
    """'café naïve' -> 'cafe naive': Unicode compatibility decomposition without the combining marks."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalize_text(text: str) -> str:
    """What the front end reads: accents folded, typographic punctuation made plain, numbers, money and common
    abbreviations spelled out, lowercase, whitespace collapsed to single spaces, no leading or trailing space.
    Punctuation stays (as symbols of its own).

    'Dr. Smith paid $3.50 on May 1st, 1999 — “twice”!' -> 'doctor smith paid three dollars and fifty cents on
    may first, nineteen ninety-nine - "twice"!'
    """
    text = fold_accents(text)
    text = "".join(_PUNCTUATION_MAP.get(ch, ch) for ch in text)
    text = spell_numbers(text)
    text = _ABBREVIATION.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], text)
    text = "".join(_SYMBOL_WORDS.get(ch, ch) for ch in text)
    return _SPACE.sub(" ", text.lower()).strip()

"""Numbers spelled out in English words: cardinals, ordinals, years, decimals, money and percentages."""

from __future__ import annotations

import re

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**15, "quadrillion"), (10**12, "trillion"), (10**9, "billion"), (10**6, "million"),
           (10**3, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
MAX_SPELLED = 10**18 - 1  # larger integers are read digit by digit


def _below_thousand(n: int) -> str:
    words = []
    if n >= 100:
        words.append(f"{_ONES[n // 100]} hundred")
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(_ONES[n])
    return " ".join(words)


def cardinal(n: int) -> str:
    """12345 -> 'twelve thousand three hundred forty-five'; beyond MAX_SPELLED, digit by digit."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n > MAX_SPELLED:
        return " ".join(_ONES[int(d)] for d in str(n))
    if n < 1000:
        return _below_thousand(n)
    words = []
    for scale, name in _SCALES:
        if n >= scale:
            words.append(f"{cardinal(n // scale)} {name}")
            n %= scale
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def ordinal(n: int) -> str:
    """21 -> 'twenty-first'."""
    words = cardinal(n)
    head, sep, last = words.rpartition("-") if "-" in words.split(" ")[-1] else words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def year(n: int) -> str:
    """1999 -> 'nineteen ninety-nine', 2005 -> 'two thousand five', 1900 -> 'nineteen hundred'."""
    if 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    return f"{cardinal(high)} {'oh ' + _ONES[low] if low < 10 else cardinal(low)}"


def _decimal(whole: str, fraction: str) -> str:
    return f"{cardinal(int(whole))} point " + " ".join(_ONES[int(d)] for d in fraction)


def _money(match: re.Match) -> str:
    units = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}[match.group(1)]
    whole = int(match.group(2).replace(",", ""))
    cents = int((match.group(3) or "0").ljust(2, "0")[:2])
    parts = []
    if whole or not cents:
        parts.append(f"{cardinal(whole)} {units[0] if whole == 1 else units[1]}")
    if cents:
        parts.append(f"{cardinal(cents)} {units[2] if cents == 1 else units[3]}")
    return " and ".join(parts)


_MONEY = re.compile(r"([$£€])(\d[\d,]*)(?:\.(\d+))?")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_GROUPED = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_INTEGER = re.compile(r"\d+")


def _integer(match: re.Match) -> str:
    digits = match.group(0)
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 2099:  # read as a year, as readers do
        return year(n)
    if len(digits) > 1 and digits.startswith("0"):  # "007", codes: digit by digit
        return " ".join(_ONES[int(d)] for d in digits)
    return cardinal(n)


def spell_numbers(text: str) -> str:
    """Every number of `text` in words: money ($, £, €), percentages, ordinals (1st, 22nd), decimals,
    comma-grouped thousands, four-digit years (1100-2099), other integers; leading zeros digit by digit."""
    text = _MONEY.sub(_money, text)
    text = _PERCENT.sub(lambda m: f"{m.group(1)} percent", text)
    text = _ORDINAL.sub(lambda m: ordinal(int(m.group(1))), text)
    text = _DECIMAL.sub(lambda m: _decimal(m.group(1), m.group(2)), text)
    text = _GROUPED.sub(lambda m: cardinal(int(m.group(0).replace(",", ""))), text)
    return _INTEGER.sub(_integer, text)

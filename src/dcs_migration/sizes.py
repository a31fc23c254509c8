"""Sizes as people and consoles write them: the one reader of "754.0MB" and friends."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

_SIZE_RE: Final = re.compile(
    r"([0-9]{1,20})(?:\.([0-9]{1,20}))? ?([kmgtp]?)(i?b?)", re.IGNORECASE | re.ASCII
)
_SIZE_UNITS: Final = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str | None) -> int | None:
    """A size in bytes from ``"1234"``, ``"754.0MB"``, ``"1.5 GB"``, ``"2KiB"``; None if
    unreadable (or None).

    Units B, KB, MB, GB, TB (and PB; also K, M, G, T, P and KiB, MiB, ...; any case) are
    binary multiples (1 KB = 1024 B), as the managed service's console prints the sizes of
    bucket objects (the SDK example's ``754.0MB`` is such a display string). A decimal
    value is rounded to the nearest byte. Surrounding spaces and one space before the unit
    are allowed; signs, exponents, ``Ki`` without ``B`` and empty text are not.
    """
    if text is None:
        return None
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        return None
    whole, frac, prefix, suffix = match.groups()
    if suffix.lower() == "i" or (suffix and suffix[0] in "iI" and not prefix):
        return None  # "5Ki", "5i" or "5iB"
    try:
        value = Decimal(f"{whole}.{frac}" if frac else whole)
    except InvalidOperation:  # pragma: no cover - the pattern admits only digits
        return None
    scaled = value * (1024 ** _SIZE_UNITS[prefix.lower()])
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))

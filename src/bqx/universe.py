"""The trading universe: 8 currencies, the 28 pairs in SPEC order, pip sizes and triangles.

Numbers that matter live here once: every other module imports ``PAIRS`` rather than
spelling the list again.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

from bqx.errors import UnknownPairError

#: Currencies in priority order: a pair's base is the earlier one in this list.
CURRENCIES: tuple[str, ...] = ("EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY")

#: The 28 pairs, base before quote, in SPEC order (EURGBP ... CHFJPY).
PAIRS: tuple[str, ...] = tuple(a + b for a, b in combinations(CURRENCIES, 2))

_PAIR_SET = frozenset(PAIRS)


def pip_size(pair: str) -> float:
    """Size of one pip in price units: 0.01 for JPY-quoted pairs, 0.0001 otherwise."""
    pair = normalize_pair(pair)
    return 0.01 if pair.endswith("JPY") else 0.0001


def base_quote(pair: str) -> tuple[str, str]:
    """Split ``EURUSD`` into ``("EUR", "USD")``."""
    pair = normalize_pair(pair)
    return pair[:3], pair[3:]


def normalize_pair(pair: str) -> str:
    """Return the canonical 6-letter upper-case name or raise :class:`UnknownPairError`.

    Accepts common spellings: ``eurusd``, ``EUR/USD``, ``EUR_USD``, ``EUR-USD``.
    """
    if not isinstance(pair, str):
        raise UnknownPairError(f"pair must be a string, got {type(pair).__name__}")
    p = pair.strip().upper().replace("/", "").replace("_", "").replace("-", "")
    if p in _PAIR_SET:
        return p
    if len(p) == 6 and p[3:] + p[:3] in _PAIR_SET:
        raise UnknownPairError(
            f"unknown pair {pair!r}: the universe quotes it as {p[3:] + p[:3]}",
            hint="invert your prices and use " + p[3:] + p[:3],
        )
    raise UnknownPairError(
        f"unknown pair {pair!r}; valid pairs are: {', '.join(PAIRS)}",
    )


def normalize_pairs(pairs: Iterable[str] | str | None) -> list[str]:
    """Normalise a list (or comma-separated string) of pairs; ``None``/empty/'all' means all 28."""
    if pairs is None:
        return list(PAIRS)
    if isinstance(pairs, str):
        pairs = [p for p in pairs.replace(" ", ",").split(",") if p]
    items = list(pairs)
    if not items or (len(items) == 1 and items[0].lower() == "all"):
        return list(PAIRS)
    out: list[str] = []
    for p in items:
        for q in p.split(","):
            if q.strip():
                n = normalize_pair(q)
                if n not in out:
                    out.append(n)
    return out


def pairs_with(currency: str) -> list[tuple[str, int]]:
    """Pairs containing ``currency`` with the sign of its exposure (+1 base, -1 quote)."""
    currency = currency.upper()
    if currency not in CURRENCIES:
        raise UnknownPairError(f"unknown currency {currency!r}; valid: {', '.join(CURRENCIES)}")
    out = []
    for p in PAIRS:
        b, q = p[:3], p[3:]
        if b == currency:
            out.append((p, 1))
        elif q == currency:
            out.append((p, -1))
    return out


def triangles() -> list[tuple[str, str, str]]:
    """All triangles ``(AB, BC, AC)`` with ``AB * BC == AC`` (56 of them)."""
    out = []
    for a, b, c in combinations(CURRENCIES, 3):
        out.append((a + b, b + c, a + c))
    return out

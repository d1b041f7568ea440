from __future__ import annotations

import pytest

from bqx.errors import UnknownPairError
from bqx.universe import (
    CURRENCIES,
    PAIRS,
    base_quote,
    normalize_pair,
    normalize_pairs,
    pairs_with,
    pip_size,
    triangles,
)


def test_28_pairs_in_spec_order():
    assert len(PAIRS) == 28 and len(set(PAIRS)) == 28
    assert PAIRS[:4] == ("EURGBP", "EURAUD", "EURNZD", "EURUSD")
    assert PAIRS[-3:] == ("CADCHF", "CADJPY", "CHFJPY")
    assert CURRENCIES == ("EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY")
    assert all(CURRENCIES.index(p[:3]) < CURRENCIES.index(p[3:]) for p in PAIRS)


def test_pip_sizes_and_legs():
    assert pip_size("USDJPY") == 0.01 and pip_size("eurusd") == 0.0001
    assert base_quote("GBP/CHF") == ("GBP", "CHF")
    assert len(pairs_with("USD")) == 7
    assert ("EURUSD", -1) not in pairs_with("EUR") and ("EURUSD", 1) in pairs_with("EUR")


def test_triangles_hold_by_construction():
    tri = triangles()
    assert len(tri) == 56
    for ab, bc, ac in tri:
        assert ab[:3] == ac[:3] and ab[3:] == bc[:3] and bc[3:] == ac[3:]
        assert {ab, bc, ac} <= set(PAIRS)


def test_unknown_pairs_are_clear():
    assert normalize_pair("eur_usd") == "EURUSD" == normalize_pair("EUR-USD")
    with pytest.raises(UnknownPairError, match="valid pairs are: EURGBP, EURAUD"):
        normalize_pair("EURXYZ")
    with pytest.raises(UnknownPairError, match="quotes it as EURUSD"):
        normalize_pair("USDEUR")
    assert normalize_pairs("all") == list(PAIRS)
    assert normalize_pairs("eurusd, usdjpy,EURUSD") == ["EURUSD", "USDJPY"]

"""The outputs: trades.csv, metrics.json, equity.parquet and a self-contained report.html.

The page is also rendered in headless Chromium to a PNG and checked for being a real,
non-blank page; without a browser that test skips on a laptop and fails under CI=true.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bqx.backtest import BacktestConfig, run, write_report
from bqx.backtest.report import SECTIONS
from bqx.config import SignalSettings
from bqx.data.simulator import generate, oracle_prediction, realized_target
from tests.conftest import require_tool


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k == "id" and v:
                self.ids.add(v)
            if k in ("src", "href", "action", "poster", "data") and v is not None:
                self.urls.append(v)
                if tag == "img":
                    self.images.append(v)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory):
    bars = generate(days=12, pairs=["EURUSD", "GBPUSD"], seed=4, signal_strength=0.15).bars
    parts = []
    for p, g in bars.groupby("pair"):
        c = g["close"].to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "pair": p,
                    "ts": g["ts"],
                    "prediction": oracle_prediction(c, 0.15),
                    "y_true": realized_target(c),
                    "window": np.where(g["ts"] < g["ts"].iloc[len(g) // 2], 1, 2),
                }
            )
        )
    preds = pd.concat(parts)
    res = run(
        bars,
        preds,
        BacktestConfig(commission=2e-5),
        signal_settings=SignalSettings(threshold=0.0002),
    )
    out = tmp_path_factory.mktemp("report")
    paths = write_report(res, out, predictions=preds)
    return res, paths


def test_files_exist_and_round_trip(outputs):
    res, paths = outputs
    trades = pd.read_csv(paths.trades_csv)
    for col in (
        "pair", "side", "entry_ts", "entry_price", "exit_ts", "exit_price", "size",
        "spread_cost", "slippage_cost", "commission", "gross_pnl", "net_pnl", "exit_reason",
    ):  # fmt: skip
        assert col in trades.columns
    assert len(trades) == len(res.trades) > 0
    np.testing.assert_allclose(trades["net_pnl"], res.trades["net_pnl"], rtol=1e-12)
    m = json.loads(paths.metrics_json.read_text())
    assert m["conventions"]["periods_per_year"] == 260
    assert m["portfolio"]["trades"] == len(trades)
    assert {"EURUSD", "GBPUSD"} <= set(m["pairs"])
    assert [w["window"] for w in m["windows"]] == [1, 2]
    assert "alarm" in m["leakage"] and m["leakage"]["checks"]
    eq = pd.read_parquet(paths.equity_parquet)
    assert {"ts", "equity", "drawdown", "buy_hold", "pnl_EURUSD"} <= set(eq.columns)
    assert len(eq) == len(res.equity)


def test_html_is_self_contained_and_has_every_section(outputs):
    _, paths = outputs
    html = paths.report_html.read_text()
    page = _Page()
    page.feed(html)
    assert set(SECTIONS) <= page.ids
    # no network: every reference is an in-page anchor or an inline data URI
    assert all(u.startswith(("#", "data:")) for u in page.urls), page.urls
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert "http://" not in html and "https://" not in html and "@import" not in html
    assert len(page.images) >= 3
    for src in page.images:
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    text = " ".join(page.text)
    for words in ("Leakage alarm", "Equity curve", "Drawdown", "Monthly returns", "Per pair",
                  "Walk-forward windows", "Significance", "N = 260"):  # fmt: skip
        assert words in text


def test_leakage_section_reports_flags(outputs):
    _, paths = outputs
    m = json.loads(paths.metrics_json.read_text())
    html = paths.report_html.read_text()
    # the oracle on simulated data is far better than real FX allows: flagged, not celebrated
    assert m["leakage"]["alarm"] is True
    assert "FLAGGED" in html and "Leakage alarm:" in html


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def chromium() -> str:
    """The browser, checked before the report is built: skips on a laptop without one, fails
    under CI=true (scripts/ensure_chromium.sh installs it there)."""
    path = _chromium()
    require_tool("Chromium", None if path else "no Chromium on PATH")
    assert path is not None
    return path


def test_renders_in_headless_chromium(chromium, outputs, tmp_path: Path):
    _, paths = outputs
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu",
            f"--screenshot={shot}", "--window-size=1280,2400",
            paths.report_html.resolve().as_uri(),
        ],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1200
    assert float(np.std(img[..., :3])) > 0.05  # not a blank page

"""Shared fixtures: small synthetic markets with a known truth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from regimelab.synth import make_market, make_panel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def market() -> pd.DataFrame:
    """3,000 hourly bars, 3 regimes, 4 outages: clean bars plus the true ``regime``."""
    return make_market(3000, n_regimes=3, n_gaps=4, max_gap_bars=5, random_state=7)


@pytest.fixture(scope="session")
def panel() -> pd.DataFrame:
    """Three symbols of 1,500 hourly bars each, with gaps."""
    return make_panel(3, 1500, n_gaps=2, max_gap_bars=4, random_state=11)

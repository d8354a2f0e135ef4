"""params.yaml: strict sections, clear messages for every bad value."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from regimelab.exceptions import ParamsError
from regimelab.params import (
    SECTIONS,
    DSSMParams,
    EvaluateParams,
    FeaturesParams,
    IngestParams,
    SplitParams,
    format_timeframe,
    from_mapping,
    load_section,
    parse_timeframe,
)


def test_project_params_load(project_root: Path) -> None:
    for section in SECTIONS:
        load_section(section, project_root / "params.yaml")


# The pipeline's defaults that differ from the library's (whose defaults keep the seed's v1
# path): regimes from each bar's range, clipped at 4 standard deviations.
PIPELINE_DEFAULTS = {"features": {"set": "range"}, "scale": {"clip": 4.0}}


@pytest.mark.parametrize("section", ["ingest", "features", "split", "scale", "dssm", "evaluate",
                                     "select", "hmm", "jump", "forecast_vol"])
def test_committed_params_document_every_key_at_its_default(project_root: Path,
                                                           section: str) -> None:
    raw = yaml.safe_load((project_root / "params.yaml").read_text())
    cls = SECTIONS[section]
    assert set(raw[section]) == set(cls.__dataclass_fields__)
    expected = from_mapping(cls, section, PIPELINE_DEFAULTS.get(section, {}))
    assert load_section(section, project_root / "params.yaml") == expected


def test_evaluate_block_is_auto_or_bars() -> None:
    assert from_mapping(EvaluateParams, "evaluate", {}).block == "auto"
    assert from_mapping(EvaluateParams, "evaluate", {"block": 120}).block == 120


def test_unknown_key_names_itself() -> None:
    with pytest.raises(ParamsError, match=r"features\.windw: unknown key; allowed keys are"):
        from_mapping(FeaturesParams, "features", {"windw": 20})


def test_unknown_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("featurs:\n  window: 20\n")
    with pytest.raises(ParamsError, match="unknown section 'featurs'"):
        load_section("features", path)


@pytest.mark.parametrize("section, cls, values, message", [
    ("features", FeaturesParams, {"set": "v3"}, r"features\.set: got 'v3'"),
    ("features", FeaturesParams, {"window": 1}, r"features\.window"),
    ("features", FeaturesParams, {"timeframes": ["1x"]}, r"features\.timeframes: '1x'"),
    ("features", FeaturesParams, {"set": "columns"}, r"features\.columns"),
    ("features", FeaturesParams, {"macd": [26, 12, 9]}, r"features\.macd"),
    ("features", FeaturesParams, {"max_gap": "sometimes"},
     r"features\.max_gap: got 'sometimes'; expected 'auto' or an integer >= 0"),
    ("features", FeaturesParams, {"max_gap": -1}, r"features\.max_gap: got -1"),
    ("features", FeaturesParams, {"halflives": [24, 0]},
     r"features\.halflives: got \[24, 0\]; expected 'auto' or a list of distinct integers >= 1"),
    ("features", FeaturesParams, {"halflives": [24, 24]}, r"features\.halflives: got \[24, 24\]"),
    ("features", FeaturesParams, {"halflives": []}, r"features\.halflives: got \[\]"),
    ("features", FeaturesParams, {"halflives": "fast"}, r"features\.halflives: got 'fast'"),
    ("features", FeaturesParams, {"halflives": [2.5]}, r"features\.halflives: got \[2\.5\]"),
    ("features", FeaturesParams, {"volume": "yes"},
     r"features\.volume: got 'yes'; expected true or false"),
    ("ingest", IngestParams, {"freq": "hourly"}, r"ingest\.freq: 'hourly'"),
    ("ingest", IngestParams, {"max_invalid_fraction": 2}, r"ingest\.max_invalid_fraction"),
    ("split", SplitParams, {"train": 0.9, "val": 0.2}, r"split\.train/val"),
    ("split", SplitParams, {"method": "dates", "val_start": "2024-01-01"}, r"split\.test_start"),
    ("split", SplitParams, {"method": "dates", "val_start": "soon", "test_start": "2025-01-01"},
     r"split\.val_start: 'soon' is not a date"),
    ("split", SplitParams, {"embargo": -1}, r"split\.embargo"),
    ("dssm", DSSMParams, {"stride": 250}, r"dssm\.stride: got 250; expected an integer in "
                                          r"\[1, window - burn_in = 224\]"),
    ("dssm", DSSMParams, {"burn_in": 256}, r"dssm\.burn_in"),
    ("dssm", DSSMParams, {"emission": "garch"}, r"dssm\.emission: got 'garch'"),
    ("dssm", DSSMParams, {"lr": 0}, r"dssm\.lr"),
    ("dssm", DSSMParams, {"accelerator": "tpu"}, r"dssm\.accelerator"),
    ("dssm", DSSMParams, {"min_covar": -1e-3}, r"dssm\.min_covar: got -0\.001; expected a "
                                               r"number >= 0"),
    ("dssm", DSSMParams, {"min_covar": "auto"}, r"dssm\.min_covar: got 'auto'"),
    ("evaluate", EvaluateParams, {"block": "politis"}, r"evaluate\.block: got 'politis'; "
                                                      r"expected 'auto'"),
    ("evaluate", EvaluateParams, {"block": 0}, r"evaluate\.block: got 0"),
])
def test_bad_values_name_the_key(section: str, cls: type, values: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        from_mapping(cls, section, values)


@pytest.mark.parametrize("text, hours", [("1h", 1), ("4h", 4), ("1d", 24), ("90m", 1.5),
                                         ("15min", 0.25)])
def test_timeframes(text: str, hours: float) -> None:
    delta = parse_timeframe(text)
    assert delta == pd.Timedelta(hours=hours)
    assert parse_timeframe(format_timeframe(delta)) == delta


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        load_section("ingest", tmp_path / "params.yaml")


def test_a_single_value_for_a_list_is_a_one_element_list() -> None:
    """``dvc exp run -S features.timeframes=4h`` means [4h]."""
    assert from_mapping(FeaturesParams, "features", {"timeframes": "4h"}).timeframes == ("4h",)
    params = from_mapping(FeaturesParams, "features",
                          {"set": "columns", "columns": "parkinson_20_1h"})
    assert params.columns == ("parkinson_20_1h",)
    assert from_mapping(FeaturesParams, "features", {"halflives": 24}).halflives == (24,)


def test_regime_set_params() -> None:
    params = from_mapping(FeaturesParams, "features",
                          {"set": "regime", "halflives": [24, 72], "volume": True,
                           "max_gap": "auto"})
    assert params.halflives == (24, 72) and params.volume and params.max_gap == "auto"
    assert FeaturesParams().halflives == "auto" and FeaturesParams().max_gap == "auto"

"""``regimelab forecast --vol-model``: the forecast-vol stage's models on new bars, on a small
synthetic pipeline whose forecast and forecast-vol stages have run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from regimelab.cli import main
from regimelab.forecast.vol_apply import VOL_FILE, load_vol_models, vol_forecasts
from regimelab.forecast.volatility import filtered_posteriors
from regimelab.io import read_json
from regimelab.models import load_model
from regimelab.split import read_splits
from tests import core_install
from tests.stages.conftest import load_stage
from tests.test_forecast_cli import pipeline  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def vol_pipeline(pipeline: Path) -> Path:  # noqa: F811
    """The forecast-vol stage on the jump model's regimes, horizons 1 and 6."""
    d = pipeline
    params = yaml.safe_load((d / "params.yaml").read_text())
    (d / "params_vol.yaml").write_text(yaml.safe_dump(
        {**params, "forecast_vol": {"family": "jump", "horizons": [1, 6]}}))
    load_stage("forecast_vol").main([
        "--params", str(d / "params_vol.yaml"), "--bars", str(d / "bars.parquet"),
        "--scaled", str(d / "scaled"), "--spec", str(d / "spec.json"),
        "--models", str(d / "models"), "--metrics", str(d / "forecast_vol.json"),
        "--plots", str(d / "plots_vol"), "--models-out", str(d / "models/forecast_vol")])
    return d


def forecast(d: Path, bars: Path, out: Path, *extra: str) -> int:
    return main(["forecast", "--model", str(d / "models/jump"), "--forecast-model",
                 str(d / "models/forecast"), "--input", str(bars), "--output", str(out),
                 *extra])


def test_the_vol_columns_are_the_saved_models_on_the_regimes_filtered_posteriors(
        vol_pipeline: Path, tmp_path: Path) -> None:
    """On the bars up to the end of the train split (where the stage's filter started too),
    ``rv_<model>_h{h}`` is each saved model applied to the stage's filtered posteriors, and
    the next-regime columns are those of a run without ``--vol-model``."""
    d = vol_pipeline
    bars = pd.read_parquet(d / "bars.parquet")
    train = read_splits(d / "scaled")["train"]
    bars = bars.loc[bars["timestamp"] <= train["timestamp"].iloc[-1]]
    bars.to_parquet(tmp_path / "b.parquet")
    assert forecast(d, tmp_path / "b.parquet", tmp_path / "f.parquet", "--vol-model",
                    str(d / "models/forecast_vol")) == 0
    out = pd.read_parquet(tmp_path / "f.parquet")
    vol = load_vol_models(d / "models/forecast_vol")
    assert vol.columns == [f"rv_{m}_h{h}" for h in (1, 6)
                           for m in ("garch", "har", "har_regimes", "garch_mz", "garch_regimes")]
    assert list(out.columns[-len(vol.columns):]) == vol.columns
    stage = filtered_posteriors(load_model(d / "models/jump"), {"train": train},
                                columns=read_json(d / "spec.json")["columns"])
    pd.testing.assert_series_equal(out["timestamp"], stage["timestamp"])
    expected = vol_forecasts(vol, bars, stage)
    np.testing.assert_allclose(out[vol.columns].to_numpy(), expected.to_numpy(), rtol=1e-8,
                               atol=0)
    assert out["rv_har_regimes_h6"].iloc[-100:].notna().all()
    assert forecast(d, tmp_path / "b.parquet", tmp_path / "plain.parquet") == 0
    pd.testing.assert_frame_equal(out.drop(columns=vol.columns),
                                  pd.read_parquet(tmp_path / "plain.parquet"))
    # Without --forecast-model (the two stages' families may differ): the filtered regimes
    # and the same volatility columns.
    assert main(["forecast", "--model", str(d / "models/jump"), "--vol-model",
                 str(d / "models/forecast_vol"), "--input", str(tmp_path / "b.parquet"),
                 "--output", str(tmp_path / "v.parquet")]) == 0
    alone = pd.read_parquet(tmp_path / "v.parquet")
    assert list(alone.columns) == [*out.columns[:list(out.columns).index("p_filter_1") + 1],
                                   *vol.columns]
    pd.testing.assert_frame_equal(alone, out[alone.columns])


@pytest.mark.parametrize("case", ["no_folder", "not_a_vol_folder", "other_regimes"])
def test_a_bad_vol_model_is_one_line_and_exit_2(vol_pipeline: Path, tmp_path: Path, case: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    d = vol_pipeline
    folder = {"no_folder": tmp_path / "missing", "not_a_vol_folder": d / "models/forecast",
              "other_regimes": tmp_path / "other"}[case]
    if case == "other_regimes":  # fitted on another version of the jump model
        shutil.copytree(d / "models/forecast_vol", folder)
        spec = json.loads((folder / VOL_FILE).read_text())
        (folder / VOL_FILE).write_text(json.dumps({**spec, "model_version": "000000000000"}))
    assert forecast(d, d / "bars.parquet", tmp_path / "f.parquet", "--vol-model",
                    str(folder)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith(f"error: --vol-model {folder}")
    assert {"no_folder": "no such folder", "not_a_vol_folder": f"no {VOL_FILE}",
            "other_regimes": "model version 000000000000"}[case] in err[0]
    assert not (tmp_path / "f.parquet").exists()


CORE_VOL = """
import json, sys
from pathlib import Path

from regimelab.cli import main

d, out = map(Path, sys.argv[1:3])
assert main(["forecast", "--model", str(d / "models/jump"), "--forecast-model",
             str(d / "models/forecast"), "--input", str(d / "bars.parquet"), "--output",
             str(out / "core.parquet"), "--vol-model", str(d / "models/forecast_vol")]) == 0
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in
                        ("lightning", "optuna", "dvc", "dvclive", "matplotlib", "arch"))))
"""


def test_a_core_install_forecasts_volatility_as_a_full_one(vol_pipeline: Path,
                                                           tmp_path: Path) -> None:
    """No arch on a core install: the GARCH recursion is numpy's, with the same numbers."""
    (tmp_path / "core.py").write_text(CORE_VOL)
    proc = subprocess.run([sys.executable, str(core_install.SCRIPT), str(tmp_path / "core.py"),
                           str(vol_pipeline), str(tmp_path)], capture_output=True, text=True,
                          check=False, env=core_install.environment())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert forecast(vol_pipeline, vol_pipeline / "bars.parquet", tmp_path / "full.parquet",
                    "--vol-model", str(vol_pipeline / "models/forecast_vol")) == 0
    core = pd.read_parquet(tmp_path / "core.parquet")
    assert core.filter(like="rv_garch").notna().any().all()
    pd.testing.assert_frame_equal(core, pd.read_parquet(tmp_path / "full.parquet"))


def test_forecast_without_either_models_folder_is_one_line(vol_pipeline: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.delenv("REGIMELAB_FORECAST_MODEL", raising=False)
    assert main(["forecast", "--model", str(vol_pipeline / "models/jump"), "--input",
                 str(vol_pipeline / "bars.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "--forecast-model" in err[0] and "--vol-model" in err[0]

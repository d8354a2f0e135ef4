"""``regimelab forecast --vol-model``, ``now --vol-model`` and the service's ``volatility``: the
forecast-vol stage's models on new bars, on a small synthetic pipeline whose forecast and
forecast-vol stages have run."""

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
from regimelab.forecast.vol_apply import VOL_ENV, VOL_FILE, load_vol_models, vol_forecasts
from regimelab.forecast.volatility import filtered_posteriors
from regimelab.io import read_json
from regimelab.models import load_model
from regimelab.serve import MODEL_ENV, NO_STORE_ENV, create_app
from regimelab.serve_schema import HorizonVolatility, RegimeAnswer
from regimelab.split import read_splits
from tests import core_install
from tests.stages.conftest import load_stage
from tests.test_forecast_cli import pipeline  # noqa: F401  (fixture)
from tests.test_serve import bars_json, call, running


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


def now(d: Path, bars: Path, *extra: str) -> list[str]:
    """``now`` on ``bars`` with a lookback that covers them: the arguments."""
    return ["now", "--model", str(d / "models/jump"), "--input", str(bars), "--lookback",
            "5000", "--no-store", *extra]


def test_now_gives_the_last_rows_volatility_forecasts(vol_pipeline: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``now --vol-model`` (or ``$REGIMELAB_VOL_MODEL``) answers each model's volatility at the
    last bar, per horizon: the last row of ``forecast --vol-model`` on the same bars. With
    fewer bars than HAR's half month the HAR models are null, GARCH's are not."""
    d = vol_pipeline
    folder = str(d / "models/forecast_vol")
    vol = load_vol_models(folder)
    bars = pd.read_parquet(d / "bars.parquet")
    for name, part in (("long", bars), ("short", bars.iloc[-200:])):
        part.to_parquet(tmp_path / f"{name}.parquet")
        assert main(["forecast", "--model", str(d / "models/jump"), "--vol-model", folder,
                     "--input", str(tmp_path / f"{name}.parquet"), "--output",
                     str(tmp_path / f"{name}_f.parquet")]) == 0
        last = pd.read_parquet(tmp_path / f"{name}_f.parquet").iloc[-1]
        assert main(now(d, tmp_path / f"{name}.parquet", "--json", "--vol-model", folder)) == 0
        [answer] = json.loads(capsys.readouterr().out)
        assert answer["timestamp"] == last["timestamp"].isoformat()
        assert [v["horizon"] for v in answer["volatility"]] == [1, 6]
        for entry in answer["volatility"]:
            h = entry["horizon"]
            assert list(entry) == ["horizon", *vol.names(h)]
            for model in vol.names(h):
                expected = last[f"rv_{model}_h{h}"]
                if np.isnan(expected):
                    assert entry[model] is None, (name, model, h)
                else:
                    assert entry[model] == pytest.approx(expected, rel=1e-12, abs=0)
        har = [v[m] for v in answer["volatility"] for m in ("har", "har_regimes")]
        garch = [v[m] for v in answer["volatility"] for m in ("garch", "garch_mz")]
        assert all(x is not None for x in garch)
        assert all(x is None for x in har) if name == "short" else all(har)
    # The environment's folder is the default; text output prints each model in percent.
    monkeypatch.setenv(VOL_ENV, folder)
    assert main(now(d, tmp_path / "short.parquet")) == 0
    line = capsys.readouterr().out.strip()
    assert "| volatility over 1 bar(s): garch " in line and "har n/a" in line
    monkeypatch.delenv(VOL_ENV)
    assert main(now(d, tmp_path / "short.parquet", "--json")) == 0
    assert json.loads(capsys.readouterr().out)[0]["volatility"] is None


def test_the_service_answers_the_volatility_forecasts(vol_pipeline: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """POST /regime with a vol models folder: ``now``'s volatility block, which the response
    schema on the OpenAPI page describes and validates; null without the folder."""
    d = vol_pipeline
    bars = pd.read_parquet(d / "bars.parquet").iloc[-800:]
    bars.to_parquet(tmp_path / "b.parquet")
    assert main(now(d, tmp_path / "b.parquet", "--json", "--vol-model",
                    str(d / "models/forecast_vol"))) == 0
    [answer] = json.loads(capsys.readouterr().out)
    body = {"bars": [{**bar, "symbol": symbol} for bar, symbol in
                     zip(bars_json(bars), bars["symbol"], strict=True)]}
    with running(create_app(d / "models/jump", vol_model=d / "models/forecast_vol")) as url:
        status, served = call(f"{url}/regime", body)
        _, schema = call(f"{url}/openapi.json")
    assert status == 200, served
    assert served["volatility"] == answer["volatility"]
    assert all(v["har_regimes"] is not None for v in served["volatility"])
    RegimeAnswer.model_validate(served)
    one = schema["paths"]["/regime"]["post"]["responses"]["200"]["content"][
        "application/json"]["schema"]["anyOf"][0]
    entry = one["properties"]["volatility"]["anyOf"][0]["items"]
    assert set(entry["properties"]) == set(HorizonVolatility.model_fields)
    assert "log-return units" in entry["properties"]["har_regimes"]["description"]
    with running(create_app(d / "models/jump")) as url:
        status, plain = call(f"{url}/regime", body)
    assert status == 200 and plain["volatility"] is None
    assert plain["forecasts"] == served["forecasts"]


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


@pytest.mark.parametrize("command", [["now", "--input", "bars.parquet", "--no-store"],
                                     ["serve", "--no-store"],
                                     ["serve", "--workers", "2", "--no-store"]])
def test_now_and_serve_refuse_vol_models_of_another_regime_model_at_start_up(
        vol_pipeline: Path, tmp_path: Path, command: list[str],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A vol models folder fitted on another version of ``--model``: one line, exit 2, before
    any bar is read or any server starts (the app factory's: exit 3, uvicorn's start-up
    failure)."""
    d = vol_pipeline
    folder = tmp_path / "other"
    shutil.copytree(d / "models/forecast_vol", folder)
    spec = json.loads((folder / VOL_FILE).read_text())
    (folder / VOL_FILE).write_text(json.dumps({**spec, "model_version": "000000000000"}))
    args = [str(d / a) if a.endswith(".parquet") else a for a in command]
    assert main([*args, "--model", str(d / "models/jump"), "--vol-model", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith(f"error: --vol-model {folder}")
    assert "model version 000000000000" in err[0]
    if command[0] == "serve":  # the workers' app factory reads the folder from $REGIMELAB_VOL_MODEL
        for name, value in ((MODEL_ENV, str(d / "models/jump")), (VOL_ENV, str(folder)),
                            (NO_STORE_ENV, "1")):
            monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit) as stopped:
            create_app()
        assert stopped.value.code == 3
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [err[0]] and err[0].startswith(f"error: --vol-model {folder}")


CORE_VOL = """
import contextlib, io, json, sys
from pathlib import Path

from regimelab.cli import main

d, out = map(Path, sys.argv[1:3])
assert main(["forecast", "--model", str(d / "models/jump"), "--forecast-model",
             str(d / "models/forecast"), "--input", str(d / "bars.parquet"), "--output",
             str(out / "core.parquet"), "--vol-model", str(d / "models/forecast_vol")]) == 0
with contextlib.redirect_stdout(io.StringIO()) as text:
    assert main(["now", "--model", str(d / "models/jump"), "--input", str(d / "bars.parquet"),
                 "--vol-model", str(d / "models/forecast_vol"), "--json", "--no-store"]) == 0
(out / "now.json").write_text(text.getvalue())
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in
                        ("lightning", "optuna", "dvc", "dvclive", "matplotlib", "arch"))))
"""


def test_a_core_install_forecasts_volatility_as_a_full_one(vol_pipeline: Path,
                                                           tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    """No arch on a core install: the GARCH recursion is numpy's, with the same numbers, in
    ``forecast`` and in ``now``."""
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
    [core_now] = json.loads((tmp_path / "now.json").read_text())
    assert main(["now", "--model", str(vol_pipeline / "models/jump"), "--input",
                 str(vol_pipeline / "bars.parquet"), "--vol-model",
                 str(vol_pipeline / "models/forecast_vol"), "--json", "--no-store"]) == 0
    [full_now] = json.loads(capsys.readouterr().out)
    assert core_now["volatility"] and core_now["volatility"][0]["garch"] is not None
    assert core_now == full_now


def test_forecast_without_either_models_folder_is_one_line(vol_pipeline: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.delenv("REGIMELAB_FORECAST_MODEL", raising=False)
    assert main(["forecast", "--model", str(vol_pipeline / "models/jump"), "--input",
                 str(vol_pipeline / "bars.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "--forecast-model" in err[0] and "--vol-model" in err[0]

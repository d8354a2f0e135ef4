"""The forecast-vol models applied to new bars: arch's GARCH recursion in numpy, the stage's
own forecasts reproduced from the saved JSON, causality, and the errors a user can make."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from arch import arch_model
from numpy.testing import assert_allclose

from regimelab.exceptions import InputDataError, ModelError
from regimelab.forecast.vol_apply import (
    VOL_FILE,
    VolModels,
    load_vol_models,
    vol_answer,
    vol_forecasts,
    vol_variances,
    write_vol_models,
)
from regimelab.forecast.vol_inputs import (
    garch_backcast,
    garch_sums,
    garch_variance,
    log_returns,
)
from regimelab.forecast.volatility import (
    GarchFit,
    VolForecast,
    forecast_volatility,
    garch_forecasts,
)
from regimelab.params import ForecastVolParams
from tests.test_forecast_vol import STEP, posteriors, regime_market  # noqa: F401  (fixtures)

MODELS = ["garch", "har", "har_regimes", "garch_mz", "garch_regimes"]


@pytest.fixture(scope="module")
def fitted(regime_market: pd.DataFrame, posteriors: pd.DataFrame  # noqa: F811
           ) -> VolForecast:
    return forecast_volatility(regime_market, posteriors,
                               params=ForecastVolParams(horizons=(1, 24)), step=STEP)


@pytest.fixture(scope="module")
def saved(fitted: VolForecast, tmp_path_factory: pytest.TempPathFactory) -> VolModels:
    folder = tmp_path_factory.mktemp("vol") / "forecast_vol"
    write_vol_models(fitted.models, folder, family="hmm", model_version="0123456789ab")
    return load_vol_models(folder, model_version="0123456789ab")


def test_the_numpy_garch_recursion_is_archs() -> None:
    """Same parameters, same returns: arch's fixed-parameter forecasts at every origin, 1 to
    24 steps ahead, and the backcast its recursion starts from."""
    params = {"mu": 0.02, "omega": 0.05, "alpha[1]": 0.08, "beta[1]": 0.9}
    rng = np.random.default_rng(4)
    # A GARCH path with these parameters (by hand: arch's simulate draws from numpy's
    # global state).
    y, s2 = np.empty(3000), params["omega"] / (1 - params["alpha[1]"] - params["beta[1]"])
    e_prev = 0.0
    for t in range(y.size):
        s2 = params["omega"] + params["alpha[1]"] * e_prev**2 + params["beta[1]"] * s2
        e_prev = np.sqrt(s2) * rng.standard_normal()
        y[t] = params["mu"] + e_prev
    model = arch_model(y, mean="Constant", vol="GARCH", p=1, q=1, dist="normal", rescale=False)
    expected = model.fix(pd.Series(params)).forecast(horizon=24, start=0,
                                                     reindex=False).variance.to_numpy()
    resids = y - params["mu"]
    backcast = garch_backcast(resids)
    assert backcast == pytest.approx(model.volatility.backcast(resids), rel=1e-15)
    got = garch_variance(resids, omega=params["omega"], alpha=params["alpha[1]"],
                         beta=params["beta[1]"], backcast=backcast, horizon=24)
    assert got.shape == expected.shape == (3000, 24)
    assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_the_saved_garch_reproduces_archs_forecasts_from_the_first_bar(
        saved: VolModels, regime_market: pd.DataFrame) -> None:  # noqa: F811
    """The saved backcast is where the stage's arch recursion started: from the series'
    first return on, where the start still weighs, the numpy forecasts are arch's."""
    (symbol, params), = saved.spec["garch"].items()
    r = log_returns(regime_market[regime_market["symbol"] == symbol])
    fit = GarchFit(params={k: params[k] for k in ("mu", "omega", "alpha[1]", "beta[1]")},
                   n_train=params["n_train"], converged=True, backcast=params["backcast"])
    expected = garch_forecasts(r, fit, (1, 24))
    got = garch_sums(r, fit.params, backcast=params["backcast"], horizons=(1, 24))
    for h in (1, 24):
        assert_allclose(got[h], expected[h], rtol=1e-12, atol=0)


def test_applied_forecasts_are_the_stages_test_forecasts(
        fitted: VolForecast, saved: VolModels, regime_market: pd.DataFrame,  # noqa: F811
        posteriors: pd.DataFrame) -> None:  # noqa: F811
    """Loaded from the JSON alone and applied to the bars, every model's forecast at every
    test origin is the one the stage scored, and the columns are their square roots."""
    test = posteriors[posteriors["split"] == "test"].reset_index(drop=True)
    variances = vol_variances(saved, regime_market, test)
    columns = vol_forecasts(saved, regime_market, test)
    assert list(columns.columns) == saved.columns == [f"rv_{m}_h{h}" for h in (1, 24)
                                                      for m in MODELS]
    keys = test[["symbol", "timestamp"]]
    for h in (1, 24):
        stage = fitted.forecasts[fitted.forecasts["horizon"] == h]
        rows = keys.reset_index().merge(stage, on=["symbol", "timestamp"])["index"].to_numpy()
        assert len(rows) == len(stage) > 1000
        for name in MODELS:
            assert_allclose(variances[name, h][rows], stage[name].to_numpy(), rtol=1e-10,
                            atol=0)
            assert_allclose(columns[f"rv_{name}_h{h}"].to_numpy()[rows],
                            np.sqrt(stage[name].to_numpy()), rtol=1e-10, atol=0)


def test_applied_forecasts_are_causal(saved: VolModels, regime_market: pd.DataFrame,  # noqa: F811
                                      posteriors: pd.DataFrame) -> None:  # noqa: F811
    """Bars appended after a cut change no forecast at or before it (and do change later
    ones: every model reads the bars)."""
    cut = regime_market["timestamp"].iloc[5000]
    before = vol_forecasts(saved, regime_market[regime_market["timestamp"] <= cut],
                           posteriors[posteriors["timestamp"] <= cut])
    after = vol_forecasts(saved, regime_market, posteriors)
    upto = (posteriors["timestamp"] <= cut).to_numpy()
    assert_allclose(after.to_numpy()[upto], before.to_numpy(), rtol=1e-14, atol=0)
    changed = regime_market.copy()
    later = changed["timestamp"] > regime_market["timestamp"].iloc[5200]
    changed.loc[later, "high"] *= 1.05
    changed.loc[later, "close"] = changed.loc[later, ["low", "high"]].mean(axis=1)
    moved = vol_forecasts(saved, changed, posteriors)
    assert_allclose(moved.to_numpy()[upto], before.to_numpy(), rtol=1e-14, atol=0)
    tail = (posteriors["timestamp"] > regime_market["timestamp"].iloc[5300]).to_numpy()
    for column in saved.columns:
        assert not np.allclose(moved.loc[tail, column], after.loc[tail, column])


def test_a_month_of_recent_bars_gives_the_full_historys_forecasts(
        saved: VolModels, regime_market: pd.DataFrame,  # noqa: F811
        posteriors: pd.DataFrame) -> None:  # noqa: F811
    """The GARCH recursion starts from the saved backcast and forgets it: from the last
    1,000 bars alone (over a HAR month of 720), the last 200 forecasts are the same."""
    rows = posteriors.iloc[-200:]
    full = vol_forecasts(saved, regime_market, rows)
    recent = vol_forecasts(saved, regime_market.iloc[-1000:], rows)
    assert_allclose(recent.to_numpy(), full.to_numpy(), rtol=1e-10, atol=0)


def test_one_bars_answer_is_its_row_as_json(saved: VolModels, regime_market: pd.DataFrame,  # noqa: F811
                                            posteriors: pd.DataFrame) -> None:  # noqa: F811
    bars = regime_market.iloc[:4000]
    row = posteriors[posteriors["timestamp"] == bars["timestamp"].iloc[-1]]
    expected = vol_forecasts(saved, bars, row).iloc[0]
    answer = vol_answer(saved, bars, row[["p_filter_0", "p_filter_1"]].to_numpy()[0])
    assert json.loads(json.dumps(answer, allow_nan=False)) == answer
    assert list(answer) == ["h1", "h24"] and list(answer["h24"]) == MODELS
    for h in (1, 24):
        for name in MODELS:
            assert answer[f"h{h}"][name] == pytest.approx(expected[f"rv_{name}_h{h}"],
                                                          rel=1e-12)
    # Too little history for the HAR month: no HAR forecast, GARCH's still there.
    short = vol_answer(saved, bars.iloc[-100:], [0.5, 0.5])
    assert short["h1"]["har"] is None and short["h1"]["garch"] is not None
    with pytest.raises(InputDataError, match="one symbol"):
        vol_answer(saved, pd.concat([bars, bars.assign(symbol="OTHER")]), [0.5, 0.5])


def test_a_symbol_without_its_own_garch_gets_har_only(
        saved: VolModels, regime_market: pd.DataFrame,  # noqa: F811
        posteriors: pd.DataFrame, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    other = vol_forecasts(saved, regime_market.assign(symbol="NEW"),
                          posteriors.assign(symbol="NEW")).iloc[-100:]
    assert other.filter(like="garch").isna().all().all()
    assert other[["rv_har_h1", "rv_har_regimes_h24"]].notna().all().all()
    assert "no GARCH(1,1) fitted for NEW" in caplog.text


def test_the_saved_models_are_json_and_name_their_inputs(saved: VolModels) -> None:
    spec = json.loads((Path(saved.folder) / VOL_FILE).read_text())
    assert spec["family"] == "hmm" and spec["model_version"] == "0123456789ab"
    assert spec["inputs"]["proxy"] == "parkinson" and spec["inputs"]["bar"] == "1h"
    assert spec["inputs"]["har_windows"] == [24, 168, 720]
    assert {"regimelab", "numpy", "pandas", "scipy", "arch"} == set(spec["versions"])
    garch = spec["garch"][next(iter(spec["garch"]))]
    assert {"mu", "omega", "alpha[1]", "beta[1]", "backcast"} <= set(garch)
    har = spec["models"]["h24"]["har_regimes"]
    assert har["inputs"] == ["p_filter_1"] and len(har["coef"]) == 5
    assert "volatility" in spec["unit"] and "not annualised" in spec["unit"]


@pytest.mark.parametrize("case, message", [
    ("missing", "no such folder"),
    ("empty", f"no {VOL_FILE}"),
    ("format", "format"),
    ("other_regimes", "model version 0123456789ab, not fedcba987654"),
])
def test_a_wrong_models_folder_is_one_error_naming_it(saved: VolModels, tmp_path: Path,
                                                      case: str, message: str) -> None:
    folder = tmp_path / case
    if case == "empty":
        folder.mkdir()
    elif case == "format":
        folder.mkdir()
        (folder / VOL_FILE).write_text('{"format": "something else"}')
    elif case == "other_regimes":
        folder = Path(saved.folder)
    with pytest.raises(ModelError, match=message) as raised:
        load_vol_models(folder, model_version="fedcba987654")
    assert str(raised.value).startswith(f"--vol-model {folder}")


def test_posteriors_of_another_state_count_are_refused(
        saved: VolModels, regime_market: pd.DataFrame,  # noqa: F811
        posteriors: pd.DataFrame) -> None:  # noqa: F811
    three = posteriors.assign(p_filter_2=0.0)
    with pytest.raises(ModelError, match="2-state hmm model; got .*p_filter_2"):
        vol_forecasts(saved, regime_market, three)
    with pytest.raises(ModelError, match="2-state hmm model; got 3"):
        vol_answer(saved, regime_market, [0.2, 0.3, 0.5])

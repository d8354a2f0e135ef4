"""RegimeHMM on synthetic markets with a known truth: recovery, EM, posteriors, identity, files."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hmmlearn.hmm import GaussianHMM
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score

from regimelab.exceptions import ModelError, ScalingError
from regimelab.families.hmm.model import RegimeHMM
from regimelab.features import build_features
from regimelab.params import FeaturesParams
from regimelab.scaling import fit_scaler
from regimelab.sequences import to_sequences
from regimelab.synth import DEFAULT_REGIMES, make_market

# Per-bar observations straight from the generator. The log range is the log of
# parkinson_1_1h (a monotone transform), so the volatility rule orders states by it.
RETURN, RANGE, VOLUME = "log_return_1h", "parkinson_1_1h", "log_volume"


def bar_observations(bars: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Standardised per-bar log return, log log(high/low) and log volume, shape (n, n_columns)."""
    raw = {
        RETURN: np.log(bars["close"] / bars["open"]).to_numpy(),
        RANGE: np.log(np.log(bars["high"] / bars["low"])).to_numpy(),
        VOLUME: np.log(bars["volume"]).to_numpy(),
    }
    X = np.column_stack([raw[c] for c in columns])
    return (X - X.mean(axis=0)) / X.std(axis=0)


def three_sequences(n: int) -> np.ndarray:
    """Lengths cutting ``n`` rows into three gap-free sequences."""
    return np.array([n // 3, n // 2 - n // 3, n - n // 2])


@pytest.fixture(scope="module")
def market3() -> pd.DataFrame:
    return make_market(900, n_regimes=3, stickiness=0.98, random_state=4)


@pytest.fixture(scope="module")
def fitted3(market3: pd.DataFrame) -> tuple[RegimeHMM, np.ndarray, np.ndarray]:
    """A 3-state diag HMM on return, range and volume, with the bars cut into three sequences."""
    columns = [RETURN, RANGE, VOLUME]
    X = bar_observations(market3, columns)
    lengths = three_sequences(len(X))
    model = RegimeHMM(3, n_init=2, random_state=0).fit(X, lengths, feature_names=columns)
    return model, X, lengths


# -- known answers -----------------------------------------------------------------------


@pytest.mark.parametrize("n_regimes, seed", [(3, 2), (4, 5)])
def test_recovers_regimes_means_and_stickiness(n_regimes: int, seed: int) -> None:
    stickiness = 0.98
    bars = make_market(2000, n_regimes=n_regimes, stickiness=stickiness, random_state=seed)
    truth = bars["regime"].to_numpy()
    columns = [RANGE, VOLUME]
    X = bar_observations(bars, columns)
    lengths = np.array([len(X)])
    model = RegimeHMM(n_states=n_regimes, n_init=3).fit(X, lengths, feature_names=columns)
    states = model.predict(X, lengths)

    assert adjusted_rand_score(truth, states) >= 0.9
    # The generator's regimes rise in volatility, so the canonical order is the truth's
    # own numbering: no relabelling is needed.
    assert np.mean(states == truth) >= 0.95
    np.testing.assert_allclose(np.diag(model.transmat_), stickiness, rtol=0, atol=0.03)
    # E[log volume | regime] is the regime's `volume` exactly (the coupling term has mean 0).
    log_volume = np.log(bars["volume"].to_numpy())
    means = model.means_[:, 1] * log_volume.std() + log_volume.mean()
    picked = DEFAULT_REGIMES if n_regimes == 4 else [DEFAULT_REGIMES[i] for i in (0, 2, 3)]
    np.testing.assert_allclose(means, [r.volume for r in picked], rtol=0, atol=0.06)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_regimes_from_pipeline_features(seed: int) -> None:
    """The v1 features as featurize makes them, three regimes: ARI 0.86-0.90 here.

    Per-bar features (return, volume change, candle body) carry little of the regime, so
    the ceiling is below the bar-observation tests above; the smoothed k-means start is
    what gets there (plain k-means on single bars: ARI 0.4-0.6).
    """
    bars = make_market(3000, n_regimes=3, random_state=seed)
    result = build_features(bars, params=FeaturesParams(window=10))
    columns = result.spec["columns"]
    table = fit_scaler(result.table, columns=columns).transform(result.table)
    X, lengths = to_sequences(table, columns)
    model = RegimeHMM(3, n_init=5).fit(X, lengths, feature_names=columns)
    assert adjusted_rand_score(table["regime"], model.predict(X, lengths)) >= 0.85


# -- EM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
@pytest.mark.parametrize("implementation", ["scaling", "log"])
def test_log_likelihood_never_decreases(market3: pd.DataFrame, covariance_type: str,
                                        implementation: str) -> None:
    X = bar_observations(market3, [RETURN, RANGE, VOLUME])
    lengths = three_sequences(len(X))
    # Plain k-means on single bars (init_smoothing=1) starts EM far from the optimum, so
    # there are many iterations to check.
    model = RegimeHMM(3, covariance_type=covariance_type, implementation=implementation,
                      n_init=1, n_iter=60, tol=1e-9, init_smoothing=1).fit(X, lengths)
    history = np.asarray(model.history_)
    assert len(history) >= 15  # enough iterations for the property to mean something
    assert model.log_likelihood_ == history[-1]
    # The M-step is regularised (hmmlearn's covariance prior, and min_covar added to the
    # diagonal), so the likelihood alone may dip by ~1e-5 nats per bar near the optimum;
    # 1e-4 per bar is far below any real EM step.
    assert np.diff(history).min() >= -1e-4 * len(X)
    assert history[-1] - history[0] > 0.1 * len(X)


# -- posteriors ----------------------------------------------------------------------------


def test_posteriors_are_distributions(fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray]
                                      ) -> None:
    model, X, lengths = fitted3
    smooth, filtered = model.predict_proba(X, lengths), model.filter_proba(X, lengths)
    for p in (smooth, filtered):
        assert p.shape == (len(X), 3)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-10)
        assert p.min() >= 0.0 and p.max() <= 1.0
    last = np.cumsum(lengths) - 1
    np.testing.assert_allclose(filtered[last], smooth[last], rtol=0, atol=1e-10)
    # Elsewhere they differ: the smoothed posterior has seen the future.
    assert np.abs(filtered - smooth).max() > 0.1


def test_filtered_posteriors_ignore_future_bars(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray]) -> None:
    model, X, lengths = fitted3
    n_past = len(X) - 120
    past_lengths = lengths.copy()
    past_lengths[-1] -= 120
    past = model.filter_proba(X[:n_past], past_lengths)
    full = model.filter_proba(X, lengths)
    np.testing.assert_allclose(full[:n_past], past, rtol=1e-12, atol=0)
    # The smoothed posteriors of the same rows do change at that tolerance: the check
    # above has teeth.
    smooth_past = model.predict_proba(X[:n_past], past_lengths)
    assert not np.allclose(model.predict_proba(X, lengths)[:n_past], smooth_past, rtol=1e-12,
                           atol=0)


def log_alphas(model: RegimeHMM, X: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """The textbook forward recursion in log space: log alpha_t of each sequence, each of
    shape (n, K), restarting at each sequence."""
    log_b = np.column_stack([
        multivariate_normal(mean=model.means_[k], cov=model.covars_[k]).logpdf(X)
        for k in range(model.n_states)])
    log_a = np.log(model.transmat_)
    out = []
    for start, n in zip(np.cumsum(lengths) - lengths, lengths):
        rows = [np.log(model.startprob_) + log_b[start]]
        for t in range(start + 1, start + n):
            rows.append(np.logaddexp.reduce(rows[-1][:, None] + log_a, axis=0) + log_b[t])
        out.append(np.array(rows))
    return out


def forward_reference(model: RegimeHMM, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """P(state_t | x_1..x_t): each log alpha_t normalised."""
    return np.concatenate([np.exp(rows - np.logaddexp.reduce(rows, axis=1, keepdims=True))
                           for rows in log_alphas(model, X, lengths)])


@pytest.mark.parametrize("outlier", [False, True])
def test_filter_matches_a_plain_forward_recursion(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray], outlier: bool) -> None:
    model, X, lengths = fitted3
    X = X.copy()
    if outlier:
        X[400] = 60.0
    np.testing.assert_allclose(model.filter_proba(X, lengths),
                               forward_reference(model, X, lengths), rtol=1e-7, atol=1e-10)


def loglik_reference(model: RegimeHMM, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """log p(x_t | x_1..x_t-1): the growth of log sum alpha_t from one bar to the next."""
    return np.concatenate([np.diff(np.logaddexp.reduce(rows, axis=1), prepend=0.0)
                           for rows in log_alphas(model, X, lengths)])


@pytest.mark.parametrize("outlier", [False, True])
def test_loglik_per_bar_is_the_predictive_density_and_sums_to_the_score(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray], outlier: bool) -> None:
    model, X, lengths = fitted3
    X = X.copy()
    if outlier:
        X[400] = 60.0  # every state's density underflows: the shift must be added back
    per_bar = model.loglik_per_bar(X, lengths)
    assert per_bar.shape == (len(X),)
    np.testing.assert_allclose(per_bar.sum(), model.score(X, lengths), rtol=1e-10, atol=0)
    np.testing.assert_allclose(per_bar, loglik_reference(model, X, lengths), rtol=1e-8,
                               atol=1e-8)
    # Causal, and each sequence starts afresh.
    first = lengths[0]
    np.testing.assert_allclose(per_bar[:first], model.loglik_per_bar(X[:first], lengths[:1]),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(per_bar[first:], model.loglik_per_bar(X[first:], lengths[1:]),
                               rtol=1e-12, atol=0)
    assert not np.isclose(model.loglik_per_bar(X, np.array([len(X)]))[first], per_bar[first],
                          rtol=1e-6, atol=0)


# -- numerics ------------------------------------------------------------------------------


def test_scaling_estep_survives_an_outlier(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray]) -> None:
    model, X, lengths = fitted3
    X = X.copy()
    X[400] = 60.0  # a bar 60 sigma from everything: every state's density underflows
    as_log = copy.deepcopy(model)
    as_log.model_.implementation = "log"
    np.testing.assert_allclose(model.score(X, lengths), as_log.score(X, lengths), rtol=1e-9,
                               atol=0)
    np.testing.assert_allclose(model.predict_proba(X, lengths),
                               as_log.predict_proba(X, lengths), rtol=0, atol=1e-9)
    # EM itself (the fitting E-step) runs through the outlier and keeps improving.
    continued = copy.deepcopy(model)
    continued.model_.n_iter = 3
    continued.model_.fit(X, lengths)
    steps = continued.model_.monitor_.log_probs[-3:]
    assert np.isfinite(steps).all() and steps[-1] > steps[0]
    # hmmlearn's own scaling E-step fails on the same parameters and data.
    plain = GaussianHMM(3, covariance_type="diag", implementation="scaling", init_params="")
    plain.startprob_, plain.transmat_ = model.startprob_, model.transmat_
    plain.means_ = model.means_
    plain.covars_ = np.diagonal(model.covars_, axis1=1, axis2=2)
    with pytest.raises(ValueError, match="underflow"):
        plain.score(X, lengths)


# -- state identity ------------------------------------------------------------------------


def test_state_numbering_is_the_same_for_every_seed(market3: pd.DataFrame) -> None:
    columns = [RETURN, RANGE, VOLUME]
    X = bar_observations(market3, columns)
    lengths = three_sequences(len(X))
    fits = [RegimeHMM(3, n_init=1, n_continue=1, random_state=seed, tol=1e-7).fit(
        X, lengths, feature_names=columns) for seed in (0, 1, 2, 3)]
    # They all reach the same optimum...
    np.testing.assert_allclose([m.log_likelihood_ for m in fits], fits[0].log_likelihood_,
                               rtol=1e-7, atol=0)
    # ...and number its states the same way: state 0 has the lowest return variance.
    for m in fits:
        np.testing.assert_array_equal(m.predict(X, lengths), fits[0].predict(X, lengths))
        np.testing.assert_allclose(m.means_, fits[0].means_, rtol=0, atol=1e-3)
    variance = fits[0].covars_[:, 0, 0]
    assert np.all(np.diff(variance) > 0)
    order = fits[0].state_order_
    assert order["rule"] == "ascending volatility"
    assert (order["statistic"], order["feature"]) == ("variance", RETURN)
    np.testing.assert_allclose(order["values"], variance, rtol=1e-12, atol=0)
    truth = market3["regime"].to_numpy()
    assert np.mean(fits[0].predict(X, lengths) == truth) >= 0.9


def test_seeds_number_states_differently_before_ordering(market3: pd.DataFrame,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Without the canonical order the seeds disagree, so the test above can fail."""
    monkeypatch.setattr(RegimeHMM, "_order_states", lambda self: None)
    X = bar_observations(market3, [RETURN, RANGE, VOLUME])
    lengths = three_sequences(len(X))
    paths = {tuple(RegimeHMM(3, n_init=1, n_continue=1, random_state=seed).fit(
        X, lengths).predict(X, lengths)) for seed in (0, 1, 2, 3)}
    assert len(paths) > 1


def test_permuted_columns_give_the_same_states(market3: pd.DataFrame) -> None:
    columns = [RETURN, RANGE, VOLUME]
    X = bar_observations(market3, columns)
    lengths = three_sequences(len(X))
    a = RegimeHMM(3, n_init=2).fit(X, lengths, feature_names=columns)
    b = RegimeHMM(3, n_init=2).fit(X[:, [2, 0, 1]], lengths,
                                   feature_names=[columns[i] for i in (2, 0, 1)])
    np.testing.assert_allclose(b.log_likelihood_, a.log_likelihood_, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(b.predict(X[:, [2, 0, 1]], lengths), a.predict(X, lengths))


# -- restarts and failures -----------------------------------------------------------------


def test_keeps_the_best_continued_restart(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray]) -> None:
    _, X, lengths = fitted3
    model = RegimeHMM(3, n_init=5, n_continue=2, random_state=1).fit(X, lengths)
    restarts = model.restarts_
    assert [r.index for r in restarts] == [0, 1, 2, 3, 4]
    assert len({r.seed for r in restarts}) == 5
    assert all(r.short_log_likelihood is not None and r.failed is None for r in restarts)
    continued = [r for r in restarts if r.continued]
    assert len(continued) == 2
    # The two continued are the two best after the short runs...
    shorts = sorted((r.short_log_likelihood for r in restarts), reverse=True)
    assert sorted(r.short_log_likelihood for r in continued) == sorted(shorts[:2])
    # ...and the kept model is the better of them.
    kept = restarts[model.best_restart_]
    assert kept.continued
    assert model.log_likelihood_ == kept.log_likelihood == max(r.log_likelihood for r in continued)
    assert model.history_ == kept.history and model.n_iter_ == kept.n_iter
    np.testing.assert_allclose(model.score(X, lengths), model.log_likelihood_, rtol=1e-9, atol=0)
    assert all(r.log_likelihood is None for r in restarts if not r.continued)


def test_a_failing_restart_is_skipped(fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray],
                                      monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    _, X, lengths = fitted3
    bad_seed = int(np.random.SeedSequence(0).generate_state(3)[1])
    original = RegimeHMM._initialise

    def initialise(self: RegimeHMM, model: object, X: np.ndarray, lengths: np.ndarray,
                   seed: int, window: int) -> None:
        if seed == bad_seed:
            raise ValueError("covariance not positive definite")
        original(self, model, X, lengths, seed, window)

    monkeypatch.setattr(RegimeHMM, "_initialise", initialise)
    with caplog.at_level(logging.WARNING, logger="regimelab.families.hmm.model"):
        model = RegimeHMM(3, n_init=3, n_continue=3, random_state=0).fit(X, lengths)
    failed = model.restarts_[1]
    assert failed.seed == bad_seed
    assert failed.failed == "ValueError: covariance not positive definite"
    assert not failed.continued and failed.log_likelihood is None
    assert model.best_restart_ != 1 and np.isfinite(model.log_likelihood_)
    assert "restart 1 failed" in caplog.text


def test_a_continued_restart_that_fails_hands_over_to_the_next(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, X, lengths = fitted3
    original = RegimeHMM._finish
    calls: list[int] = []

    def finish(self: RegimeHMM, restart: object, *args: object) -> None:
        calls.append(restart.index)
        if len(calls) == 1:  # the best short run turns out degenerate
            restart.continued = True
            self._fail(restart, "degenerate: a state explains 3.0 bars")
            return
        original(self, restart, *args)

    monkeypatch.setattr(RegimeHMM, "_finish", finish)
    model = RegimeHMM(3, n_init=3, n_continue=1).fit(X, lengths)
    assert len(calls) == 2
    assert model.restarts_[calls[0]].failed == "degenerate: a state explains 3.0 bars"
    assert model.best_restart_ == calls[1]
    assert np.isfinite(model.log_likelihood_)


def test_every_restart_failing_names_the_setting(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, X, lengths = fitted3

    def initialise(self: RegimeHMM, model: object, X: np.ndarray, lengths: np.ndarray,
                   seed: int, window: int) -> None:
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(RegimeHMM, "_initialise", initialise)
    with pytest.raises(ModelError, match=r"model\.n_states = 3 \(diag\): every restart failed "
                                         r"\(LinAlgError: singular matrix\); try fewer states"):
        RegimeHMM(3, n_init=2).fit(X, lengths)


def test_too_many_states_for_the_data_is_a_clear_error() -> None:
    bars = make_market(300, n_regimes=2, random_state=1)
    X = bar_observations(bars, [RETURN, RANGE, VOLUME])
    with pytest.raises(ModelError, match=r"model\.n_states = 8 \(diag\): every restart failed "
                                         r"\(.+\); try fewer states"):
        RegimeHMM(8, n_init=3).fit(X, np.array([len(X)]))


def test_a_state_below_min_state_bars_is_rejected(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray]) -> None:
    _, X, lengths = fitted3
    with pytest.raises(ModelError, match=r"degenerate: a state explains [\d.]+ bars "
                                         r"\(hmm\.min_state_bars = 400\)"):
        RegimeHMM(3, n_init=2, min_state_bars=400).fit(X, lengths)


def test_lengths_that_do_not_cover_x_are_refused(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray]) -> None:
    model, X, lengths = fitted3
    with pytest.raises(ModelError, match=f"lengths sum to {len(X) - 1} but X has {len(X)} rows"):
        model.predict(X, np.r_[lengths[:-1], lengths[-1] - 1])


def test_a_constant_feature_stops_at_the_scaler() -> None:
    frame = pd.DataFrame({"a": np.random.default_rng(0).normal(size=50), "b": 3.0})
    with pytest.raises(ScalingError, match="feature 'b' is constant on the training split"):
        fit_scaler(frame, columns=["a", "b"])


# -- files ---------------------------------------------------------------------------------


def test_save_and_load_round_trip(fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray],
                                  tmp_path: Path) -> None:
    model, X, lengths = fitted3
    model.save(tmp_path / "hmm", manifest={"training_data_sha256": "abc"})
    loaded = RegimeHMM.load(tmp_path / "hmm")
    np.testing.assert_array_equal(loaded.predict(X, lengths), model.predict(X, lengths))
    np.testing.assert_array_equal(loaded.predict_proba(X, lengths),
                                  model.predict_proba(X, lengths))
    np.testing.assert_array_equal(loaded.filter_proba(X, lengths),
                                  model.filter_proba(X, lengths))
    assert loaded.score(X, lengths) == model.score(X, lengths)
    assert loaded.n_parameters == model.n_parameters

    with np.load(tmp_path / "hmm" / "params.npz", allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["covars", "means", "startprob", "transmat"]
        assert arrays["covars"].shape == (3, 3, 3)
        assert all(arrays[name].dtype == np.float64 for name in arrays.files)
    manifest = json.loads((tmp_path / "hmm" / "manifest.json").read_text())
    assert manifest["training_data_sha256"] == "abc"
    assert manifest["features"] == [RETURN, RANGE, VOLUME]
    assert manifest["state_order"] == json.loads(json.dumps(model.state_order_))
    assert manifest["fit"]["n_iter"] == model.n_iter_
    assert manifest["settings"]["n_iter"] == model.n_iter  # the cap, not the iterations run
    assert manifest["fit"]["converged"] is model.converged_
    assert manifest["fit"]["log_likelihood"] == model.log_likelihood_
    assert manifest["fit"]["n_samples"] == len(X)


def test_stickiness_lengthens_the_regimes(market3: pd.DataFrame) -> None:
    # Per-bar observations of a market whose regimes last about 50 bars: without a prior
    # the Viterbi path switches at single noisy bars; the sticky prior makes staying put
    # cheaper, so the chain's expected dwell and the path's runs grow.
    columns = [RETURN, RANGE, VOLUME]
    X = bar_observations(market3, columns)
    lengths = np.array([len(X)])
    plain, sticky = (RegimeHMM(3, n_init=2, stickiness=s, random_state=0).fit(X, lengths)
                     for s in (0.0, 3.0))
    assert (np.diag(sticky.transmat_) > np.diag(plain.transmat_)).all()
    switches = [int((np.diff(m.predict(X, lengths)) != 0).sum()) for m in (plain, sticky)]
    assert switches[1] < switches[0]


def test_a_folder_written_before_stickiness_loads(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    model, X, lengths = fitted3
    model.save(tmp_path / "hmm", manifest={})
    path = tmp_path / "hmm" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["settings"]["stickiness"]
    path.write_text(json.dumps(manifest))
    loaded = RegimeHMM.load(tmp_path / "hmm")
    assert loaded.stickiness == 0.0
    np.testing.assert_array_equal(loaded.filter_proba(X, lengths),
                                  model.filter_proba(X, lengths))


@pytest.mark.parametrize("covariance_type", ["diag", "full", "spherical", "tied"])
def test_every_covariance_type_orders_and_round_trips(
        fitted3: tuple[RegimeHMM, np.ndarray, np.ndarray], covariance_type: str,
        tmp_path: Path) -> None:
    _, X, lengths = fitted3
    columns = [RETURN, RANGE, VOLUME]
    model = RegimeHMM(3, covariance_type=covariance_type, n_init=1).fit(
        X, lengths, feature_names=columns)
    assert model.covars_.shape == (3, 3, 3)
    rule = model.state_order_
    # A covariance shared by every state cannot rank them: tied falls back to the range.
    statistic, feature, column = (("mean", RANGE, 1) if covariance_type == "tied"
                                  else ("variance", RETURN, 0))
    assert (rule["statistic"], rule["feature"]) == (statistic, feature)
    values = (model.means_[:, column] if statistic == "mean"
              else model.covars_[:, column, column])
    np.testing.assert_allclose(rule["values"], values, rtol=1e-12, atol=0)
    assert np.all(np.diff(values) > 0)
    model.save(tmp_path, manifest={})
    loaded = RegimeHMM.load(tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(X, lengths),
                                  model.predict_proba(X, lengths))
    np.testing.assert_array_equal(loaded.filter_proba(X, lengths),
                                  model.filter_proba(X, lengths))
    assert loaded.n_parameters == model.n_parameters


def test_load_refuses_what_is_not_an_hmm(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot load the HMM"):
        RegimeHMM.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "dssm"}))
    np.savez(tmp_path / "params.npz", means=np.zeros((2, 1)))
    with pytest.raises(ModelError, match="describes 'dssm', not a gaussian_hmm"):
        RegimeHMM.load(tmp_path)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_collinear_features_keep_covariances_regular(covariance_type: str) -> None:
    """Two features equal to 1e-6 (as log return and close-open % nearly are on crypto bars):
    min_covar is added after every M-step, so no state's covariance becomes singular."""
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 1, 300), rng.normal(0, 3, 300)]
    X = np.column_stack([x, x + rng.normal(0, 1e-6, 600), rng.normal(size=600)])
    model = RegimeHMM(2, covariance_type=covariance_type, n_init=2, min_covar=1e-3
                      ).fit(X, np.array([600]))
    eigenvalues = np.linalg.eigvalsh(model.covars_)
    assert eigenvalues.min() >= 1e-3 * (1 - 1e-9)
    assert np.isfinite(model.score(X, np.array([600])))

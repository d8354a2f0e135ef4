"""RegimeJump: agreement with jumpmodels, the online property, gaps, state identity,
recovery of a known truth, errors and files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.metrics import adjusted_rand_score

from regimelab.exceptions import ModelError, ParamsError
from regimelab.families.jump import infer
from regimelab.families.jump.model import RegimeJump
from regimelab.synth import make_market

HALFLIVES = (12, 48, 144)
BURN_IN = 200  # bars dropped while the slowest EWM warms up


def jump_features(bars: pd.DataFrame, halflives: tuple[int, ...] = HALFLIVES
                  ) -> tuple[np.ndarray, np.ndarray]:
    """jumpmodels' example features (EWM return, log EWM downside deviation, EWM
    Sortino per half-life) of the bars' log returns, standardised; and the truth."""
    r = pd.Series(np.log(bars["close"] / bars["open"]).to_numpy())
    columns = []
    for hl in halflives:
        ret = r.ewm(halflife=hl).mean()
        dd = np.sqrt(np.minimum(r, 0.0).pow(2).ewm(halflife=hl).mean())
        columns += [ret, dd, ret / dd]
    X = np.column_stack([c.to_numpy() for c in columns])[BURN_IN:]
    X[:, 1::3] = np.log(X[:, 1::3])
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return np.ascontiguousarray(X), bars["regime"].to_numpy()[BURN_IN:]


def partition(proba: np.ndarray) -> np.ndarray:
    """Each bar's probability vector as an integer id: two paths split the bars the
    same way (up to renaming the states) exactly when these ids do."""
    return np.unique(proba, axis=0, return_inverse=True)[1].ravel()


def cut(lengths: np.ndarray, n: int) -> np.ndarray:
    """The lengths of the first ``n`` rows."""
    ends = np.cumsum(lengths)
    keep = lengths[ends <= n].tolist()
    rest = n - sum(keep)
    return np.array(keep + ([rest] if rest else []), dtype=np.int64)


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    """2,200 bars of features from a 3-regime market, and the true regimes."""
    bars = make_market(2400, n_regimes=3, stickiness=0.99, vol_clustering=0.5, random_state=3)
    return jump_features(bars)


@pytest.fixture(scope="module")
def jumpmodels():
    """The reference package. Importing it calls ``np.seterr(divide='ignore',
    invalid='ignore')``, which would silence numpy warnings in every later test."""
    state = np.geterr()
    try:
        return pytest.importorskip("jumpmodels.jump")
    finally:
        np.seterr(**state)


# -- 1. the same fit as jumpmodels -------------------------------------------------------

@pytest.mark.parametrize("n_states, cont, grid_size", [
    (2, False, 0.05), (3, False, 0.05), (2, True, 0.05), (3, True, 0.1)])
def test_same_fit_as_jumpmodels(small, jumpmodels, n_states, cont, grid_size):
    X, _ = small
    settings = {"jump_penalty": 30.0, "cont": cont, "grid_size": grid_size, "n_init": 4,
                "random_state": 0}
    ours = RegimeJump(n_states, **settings).fit(X, [len(X)])
    ref = jumpmodels.JumpModel(n_states, **settings).fit(X)
    ref_online = ref.predict_proba_online(X)
    assert_allclose(ours.objective_, ref.val_, rtol=1e-6, atol=0)
    assert adjusted_rand_score(partition(ref.proba_),
                               partition(ours.predict_proba(X, [len(X)]))) == 1.0
    assert adjusted_rand_score(partition(ref_online),
                               partition(ours.filter_proba(X, [len(X)]))) == 1.0
    # jumpmodels' centres are ours in another order.
    order = [int(np.argmin(((ref.centers_ - c) ** 2).sum(axis=1))) for c in ours.means_]
    assert sorted(order) == list(range(n_states))
    assert_allclose(ours.means_, ref.centers_[order], rtol=0, atol=1e-10)


def test_grid_in_jumpmodels_order(jumpmodels):
    for n_states, grid_size in ((2, 0.05), (3, 0.05), (4, 0.2)):
        assert_array_equal(infer.simplex_grid(n_states, round(1 / grid_size)),
                           jumpmodels.discretize_prob_simplex(n_states, grid_size))


def test_discrete_programme_is_the_general_one_with_a_constant_penalty(small):
    """The O(K) step gives the path and objective of the O(K^2) one on lambda * (1 - I)."""
    X, _ = small
    rng = np.random.default_rng(0)
    centres = X[rng.choice(len(X), 4, replace=False)]
    losses = infer.state_losses(X, centres, np.inf)
    bounds = np.array([0, 500, 1300, len(X)])
    for lam in (0.0, 3.0, 40.0):
        penalty = lam * (1.0 - np.eye(4))
        labels, value = infer.discrete_path(losses, bounds, lam)
        ref_labels, ref_value = infer.general_path(losses, bounds, np.eye(4), penalty)
        assert_array_equal(labels, ref_labels)
        assert value == ref_value
        assert_array_equal(infer.discrete_online(losses, bounds, lam),
                           infer.general_online(losses, bounds, np.eye(4), penalty))


# -- 2. online: a row never changes when bars are appended; gaps cut everything -------------

@pytest.mark.parametrize("cont", [False, True])
def test_filter_proba_is_online_and_gaps_restart(small, cont):
    X, _ = small
    lengths = np.array([700, 900, len(X) - 1600])
    model = RegimeJump(3, jump_penalty=30.0, cont=cont, grid_size=0.1, n_init=3).fit(X, lengths)
    full = model.filter_proba(X, lengths)
    for n in (1, 350, 700, 701, 1599, 1600, 1999, len(X) - 1):
        assert_array_equal(model.filter_proba(X[:n], cut(lengths, n)), full[:n])
    # Nothing crosses a gap: the middle sequence alone gives the same rows, offline too.
    middle = slice(700, 1600)
    assert_array_equal(model.filter_proba(X[middle], [900]), full[middle])
    hindsight = model.predict_proba(X, lengths)
    assert_array_equal(model.predict_proba(X[middle], [900]), hindsight[middle])
    assert_allclose(model.objective(X, lengths),
                    sum(model.objective(X[a:b], [b - a]) for a, b in
                        ((0, 700), (700, 1600), (1600, len(X)))), rtol=1e-12, atol=0)
    # At a sequence's last bar, online and hindsight see the same bars.
    ends = np.cumsum(lengths) - 1
    assert_array_equal(full[ends], hindsight[ends])
    assert_allclose(full.sum(axis=1), 1.0, rtol=1e-12, atol=0)


# -- 3. state identity ------------------------------------------------------------------------

def test_state_order_is_the_same_for_every_seed(small):
    X, _ = small
    fits = [RegimeJump(3, jump_penalty=30.0, random_state=seed).fit(X, [len(X)])
            for seed in (0, 1, 2)]
    for fit in fits[1:]:
        assert_allclose(fit.means_, fits[0].means_, rtol=0, atol=1e-10)
        assert_allclose(fit.objective_, fits[0].objective_, rtol=1e-12, atol=0)
    # No catalogue feature names: ascending trace of the states' covariances.
    model = fits[0]
    assert model.state_order_["statistic"] == "trace"
    traces = np.trace(model.covars_, axis1=1, axis2=2)
    assert (np.diff(traces) > 0).all()
    assert_allclose(traces, model.state_order_["values"], rtol=1e-9, atol=0)


def test_transitions_and_start_describe_the_training_path(small):
    X, _ = small
    lengths = np.array([700, 900, len(X) - 1600])
    model = RegimeJump(3, jump_penalty=30.0, n_init=3).fit(X, lengths)
    path = model.predict(X, lengths)
    counts = np.zeros((3, 3))
    for a, b in ((0, 700), (700, 1600), (1600, len(X))):
        np.add.at(counts, (path[a:b - 1], path[a + 1:b]), 1)
    assert_allclose(model.transmat_, counts / counts.sum(axis=1, keepdims=True),
                    rtol=1e-12, atol=0)
    # Three sequences cannot start in all three states here: occupancy is used.
    starts = path[[0, 700, 1600]]
    expected = ("sequence_starts" if len(set(starts.tolist())) == 3 else "occupancy")
    assert model.startprob_source_ == expected
    if expected == "occupancy":
        assert_allclose(model.startprob_, np.bincount(path, minlength=3) / len(X),
                        rtol=1e-12, atol=0)


# -- 4. errors --------------------------------------------------------------------------------

def _nan(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    X[17, 2] = np.nan
    return X


@pytest.mark.parametrize("make_X, lengths, settings, match", [
    (lambda X: np.ones_like(X), None, {}, "constant"),
    (lambda X: X[:30], None, {}, "need 40"),
    (lambda X: X[:1], None, {"min_state_bars": 1}, "1 bars"),
    (_nan, None, {}, "non-finite values .* row 17"),
    (lambda X: X, None, {"jump_penalty": 1e9}, "jump_penalty .*n_states"),
    (lambda X: X, [100, 100], {}, "lengths sum to 200"),
])
def test_degenerate_input_is_a_model_error(small, make_X, lengths, settings, match):
    X = make_X(small[0])
    with pytest.raises(ModelError, match=match):
        RegimeJump(2, n_init=2, **settings).fit(X, [len(X)] if lengths is None else lengths)


@pytest.mark.parametrize("n_states, settings, match", [
    (1, {}, "model.n_states = 1"),
    (2, {"jump_penalty": -1.0}, "jump_penalty = -1.0"),
    (2, {"cont": True, "grid_size": 0.3}, "grid_size = 0.3: 1 / grid_size"),
    (4, {"cont": True, "grid_size": 0.05}, "1771 grid points.*e.g. 0.1 "),
    (2, {"n_init": 0}, "n_init = 0"),
])
def test_bad_settings_are_params_errors(small, n_states, settings, match):
    X, _ = small
    with pytest.raises(ParamsError, match=match):
        RegimeJump(n_states, **settings).fit(X, [len(X)])


# -- 5. known answer --------------------------------------------------------------------------

def test_recovers_persistent_regimes():
    """Long-dwell regimes with volatility clustering inside them.

    The penalty is what recovers the persistence: the fitted path switches about
    as often as the truth, k-means on single bars (lambda = 0) ten times more, and
    the fit agrees better with the truth. The restarts reach the criterion's
    optimum: no lower objective is found by descending from the true regimes.
    Not asserted: that the jump model beats a full-covariance RegimeHMM on the
    same features. On this seed the two are close (ARI 0.64 against 0.63), but on
    seeds 1-8 the HMM scores higher on six, by 0.1 on average: the jump model's
    loss sees only the centres, the HMM also each state's spread and correlations.
    """
    bars = make_market(20000, n_regimes=3, stickiness=0.998, vol_clustering=0.9,
                       random_state=1)
    X, truth = jump_features(bars)
    lengths = np.array([len(X)])
    model = RegimeJump(3, jump_penalty=100.0).fit(X, lengths)
    kmeans = RegimeJump(3, jump_penalty=0.0).fit(X, lengths)
    path, flat = model.predict(X, lengths), kmeans.predict(X, lengths)

    def switches(p: np.ndarray) -> int:
        return int((p[1:] != p[:-1]).sum())

    assert switches(truth) / 2 <= switches(path) <= 2 * switches(truth)
    assert switches(flat) > 10 * switches(truth)
    ari = adjusted_rand_score(truth, path)
    assert ari >= 0.6
    assert ari > adjusted_rand_score(truth, flat) + 0.03
    true_centres = infer.weighted_centres(X, truth.astype(np.int64), np.eye(3))
    from_truth = model._descend(X, np.array([0, len(X)]), true_centres)[2]
    assert model.objective_ <= from_truth * (1 + 1e-12)


# -- 6. files and the no-likelihood convention ------------------------------------------------

@pytest.mark.parametrize("cont", [False, True])
def test_save_load_round_trip(small, tmp_path: Path, cont):
    X, _ = small
    lengths = np.array([1000, len(X) - 1000])
    names = [f"f{i}" for i in range(X.shape[1])]
    model = RegimeJump(3, jump_penalty=30.0, cont=cont, grid_size=0.1, n_init=3).fit(
        X, lengths, feature_names=names)
    assert_allclose(model.objective(X, lengths), model.objective_, rtol=1e-12, atol=0)
    assert model.has_likelihood is False
    with pytest.raises(ModelError, match="no likelihood"):
        model.score(X, lengths)

    model.save(tmp_path, manifest={"data_hash": "abc"})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["model"] == "jump" and manifest["data_hash"] == "abc"
    assert manifest["features"] == names and manifest["settings"] == model.get_params()
    loaded = RegimeJump.load(tmp_path)
    for method in ("predict", "predict_proba", "filter_proba"):
        assert_array_equal(getattr(loaded, method)(X, lengths), getattr(model, method)(X, lengths))
    assert loaded.objective(X, lengths) == model.objective(X, lengths)
    for name in ("transmat_", "startprob_", "covars_", "means_"):
        assert_array_equal(getattr(loaded, name), getattr(model, name))

    (tmp_path / "params.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="params.npz"):
        RegimeJump.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ModelError, match="manifest.json"):
        RegimeJump.load(tmp_path)


def test_predict_checks_its_input(small):
    X, _ = small
    with pytest.raises(ModelError, match="not fitted"):
        RegimeJump(2).predict(X, [len(X)])
    model = RegimeJump(2, n_init=2).fit(X, [len(X)])
    with pytest.raises(ModelError, match="X has 8 features; the model was fitted on 9"):
        model.predict(X[:, :8], [len(X)])
    with pytest.raises(ModelError, match="lengths sum to 5"):
        model.filter_proba(X, [5])
    assert model.predict(X[:0], np.zeros(0, dtype=np.int64)).shape == (0,)
    with pytest.raises(ModelError, match="feature_names has 2 names but X has 9 columns"):
        RegimeJump(2).fit(X, [len(X)], feature_names=["a", "b"])


def test_on_each_bars_range_it_recovers_lasting_regimes_better_than_the_hmm() -> None:
    # A realistic market (semi-Markov regimes of days, GARCH inside them, t shocks) and the
    # pipeline's default observation, each bar's log range: the penalty pools a regime's
    # bars where the HMM switches at bursts of its volatility clustering.
    from regimelab.families.hmm.model import RegimeHMM
    from regimelab.synth import make_realistic_market

    bars = make_realistic_market(12_000, n_regimes=3, random_state=5)
    x = np.log(np.log(bars["high"] / bars["low"]).to_numpy())
    X = ((x - x.mean()) / x.std())[:, None]
    lengths = np.array([len(X)])
    truth = bars["regime"].to_numpy()
    jump = RegimeJump(3, jump_penalty=5.0, n_init=4, random_state=0).fit(X, lengths)
    hmm = RegimeHMM(3, covariance_type="full", n_init=3, random_state=0).fit(X, lengths)
    jump_ari = adjusted_rand_score(truth, jump.predict(X, lengths))
    hmm_ari = adjusted_rand_score(truth, hmm.predict(X, lengths))
    assert jump_ari >= hmm_ari and jump_ari > 0.8

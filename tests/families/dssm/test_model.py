"""RegimeDSSM: training, the shared interface, causality, files, collapse, and truth recovery."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file
from sklearn.metrics import adjusted_rand_score

from regimelab.exceptions import ModelError
from regimelab.families.dssm.fit import train as train_dssm
from regimelab.families.dssm.model import RegimeDSSM
from regimelab.families.hmm.model import RegimeHMM
from regimelab.models import load_model
from regimelab.params import DSSMParams
from regimelab.synth import make_market
from tests.families.hmm.test_model import RANGE, RETURN, VOLUME, bar_observations

COLUMNS = [RETURN, RANGE, VOLUME]
# Small and quick: CI trains for a few short epochs.
QUICK = {"hidden": 8, "window": 64, "stride": 48, "burn_in": 8, "batch_size": 8,
         "max_epochs": 3, "lr": 1e-2}


@pytest.fixture(scope="module")
def data() -> SimpleNamespace:
    """1,500 bars of a 3-regime market with volatility clustering, cut into train and val,
    the train part in two sequences (a gap)."""
    bars = make_market(1500, n_regimes=3, vol_clustering=0.9, random_state=8)
    X = bar_observations(bars, COLUMNS)
    train, val = X[:1100], X[1100:]
    return SimpleNamespace(X=train, lengths=np.array([600, 500]), X_val=val,
                           lengths_val=np.array([len(val)]), truth=bars["regime"].to_numpy())


@pytest.fixture(scope="module")
def hmm(data: SimpleNamespace) -> RegimeHMM:
    return RegimeHMM(3, covariance_type="full", n_init=2, random_state=0).fit(
        data.X, data.lengths, feature_names=COLUMNS)


def fit(data: SimpleNamespace, init, **changes) -> RegimeDSSM:
    return RegimeDSSM(3, **{**QUICK, **changes}).fit(
        data.X, data.lengths, X_val=data.X_val, lengths_val=data.lengths_val, init=init,
        feature_names=COLUMNS)


@pytest.fixture(scope="module")
def model(data: SimpleNamespace, hmm: RegimeHMM) -> RegimeDSSM:
    return fit(data, hmm, transition="context")


def test_training_improves_on_its_starting_hmm(model: RegimeDSSM, hmm: RegimeHMM,
                                               data: SimpleNamespace) -> None:
    np.testing.assert_allclose(model.init_log_likelihood_, hmm.score(data.X, data.lengths),
                               rtol=1e-10, atol=0)
    assert model.log_likelihood_ > model.init_log_likelihood_
    assert model.epochs_ == len(model.history_) == QUICK["max_epochs"]
    assert model.best_val_loss_ == min(row["val_loss"] for row in model.history_)
    # The best checkpoint is the one kept: its validation loss is the model's. (Training
    # scores windows, whose context restarts after a burn-in, hence not to the last bit.)
    val_ll = model.score(data.X_val, data.lengths_val) / len(data.X_val)
    np.testing.assert_allclose(-val_ll, model.best_val_loss_, rtol=1e-6, atol=0)


def test_stickiness_makes_the_chain_stay_put(data: SimpleNamespace, hmm: RegimeHMM) -> None:
    plain = fit(data, hmm, max_epochs=2)
    sticky = fit(data, hmm, max_epochs=2, stickiness=5.0)
    # The prior pulls every diagonal up from the same start; the likelihood alone does not.
    assert (np.diag(sticky.transmat_) > np.diag(plain.transmat_)).all()
    switches = [int((np.diff(m.predict(data.X_val, data.lengths_val)) != 0).sum())
                for m in (plain, sticky)]
    assert switches[1] <= switches[0]


def test_posteriors_are_distributions(model: RegimeDSSM, data: SimpleNamespace) -> None:
    for proba in (model.predict_proba(data.X, data.lengths),
                  model.filter_proba(data.X, data.lengths)):
        assert proba.shape == (len(data.X), 3)
        assert (proba >= 0).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-10)
    states = model.predict(data.X, data.lengths)
    assert states.shape == (len(data.X),) and set(states) <= {0, 1, 2}
    np.testing.assert_allclose(model.transmat_.sum(axis=1), 1.0, rtol=0, atol=1e-10)


def test_filtered_posteriors_ignore_future_bars(model: RegimeDSSM, data: SimpleNamespace
                                                ) -> None:
    whole = model.filter_proba(data.X_val, data.lengths_val)
    cut = model.filter_proba(data.X_val[:250], np.array([250]))
    np.testing.assert_array_equal(whole[:250], cut)


def test_sequences_are_scored_independently(model: RegimeDSSM, data: SimpleNamespace) -> None:
    """A gap restarts the chain and the context: no information crosses it."""
    first, second = data.X[:600], data.X[600:]
    both = model.score(data.X, data.lengths)
    apart = model.score(first, np.array([600])) + model.score(second, np.array([500]))
    np.testing.assert_allclose(both, apart, rtol=1e-12, atol=0)
    assert not np.isclose(model.score(data.X, np.array([1100])), both, rtol=1e-9, atol=0)


def test_loglik_per_bar_sums_to_the_score_and_restarts_at_a_gap(
        model: RegimeDSSM, data: SimpleNamespace) -> None:
    per_bar = model.loglik_per_bar(data.X, data.lengths)
    assert per_bar.shape == (len(data.X),) and np.isfinite(per_bar).all()
    np.testing.assert_allclose(per_bar.sum(), model.score(data.X, data.lengths), rtol=1e-10,
                               atol=0)
    np.testing.assert_allclose(per_bar[600:], model.loglik_per_bar(data.X[600:], np.array([500])),
                               rtol=1e-12, atol=1e-12)
    # Causal: bars appended later leave the earlier values as they were.
    np.testing.assert_allclose(per_bar[:300], model.loglik_per_bar(data.X[:300], np.array([300])),
                               rtol=1e-12, atol=1e-12)
    # Bar t's value is the growth of the forward pass's total from t - 1 to t.
    grown = [model.score(data.X[:t], np.array([t])) for t in (299, 300)]
    np.testing.assert_allclose(per_bar[299], grown[1] - grown[0], rtol=1e-9, atol=1e-9)


def test_states_are_in_ascending_volatility(model: RegimeDSSM) -> None:
    order = model.state_order_
    assert order["statistic"] == "variance" and order["feature"] == RETURN
    assert order["values"] == sorted(order["values"])
    np.testing.assert_allclose(order["values"], model.covars_[:, 0, 0], rtol=1e-12, atol=0)


def test_permuting_states_changes_names_not_the_model(model: RegimeDSSM,
                                                      data: SimpleNamespace) -> None:
    other = RegimeDSSM(3, **QUICK, transition="context")
    other._attach(type(model.net_)(3, 3, hidden=8, transition="context",
                                   min_covar=model.min_covar).double())
    other.net_.load_state_dict(model.net_.state_dict())
    other._attach(other.net_)
    order = np.array([2, 0, 1])
    other.permute(order)
    np.testing.assert_allclose(other.score(data.X, data.lengths),
                               model.score(data.X, data.lengths), rtol=1e-12, atol=0)
    np.testing.assert_allclose(other.predict_proba(data.X, data.lengths),
                               model.predict_proba(data.X, data.lengths)[:, order],
                               rtol=0, atol=1e-10)


def test_the_same_seed_gives_the_same_weights(model: RegimeDSSM, data: SimpleNamespace,
                                              hmm: RegimeHMM) -> None:
    again = fit(data, hmm, transition="context")
    for name, value in model.net_.state_dict().items():
        assert again.net_.state_dict()[name].equal(value), name


def test_save_and_load_round_trip(model: RegimeDSSM, data: SimpleNamespace,
                                  tmp_path: Path) -> None:
    model.save(tmp_path, manifest={"note": "test"})
    weights = load_file(str(tmp_path / "weights.safetensors"))  # plain tensors, no pickle
    assert set(weights) == set(model.net_.state_dict())
    loaded = load_model(tmp_path)
    assert isinstance(loaded, RegimeDSSM)
    assert loaded.get_params() == model.get_params()
    for method in ("predict", "predict_proba", "filter_proba"):
        np.testing.assert_array_equal(getattr(loaded, method)(data.X_val, data.lengths_val),
                                      getattr(model, method)(data.X_val, data.lengths_val))
    assert loaded.score(data.X, data.lengths) == model.score(data.X, data.lengths)
    np.testing.assert_array_equal(loaded.transmat_, model.transmat_)
    assert json.loads((tmp_path / "manifest.json").read_text())["note"] == "test"


def test_the_floor_is_saved_and_a_model_from_before_it_loads_without_one(
        model: RegimeDSSM, data: SimpleNamespace, tmp_path: Path) -> None:
    assert model.min_covar == 1e-3  # the default, hmm.min_covar's
    assert np.linalg.eigvalsh(model.covars_).min() >= model.min_covar
    model.save(tmp_path, manifest={})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["settings"]["min_covar"] == 1e-3
    loaded = RegimeDSSM.load(tmp_path)
    assert loaded.net_.min_covar == 1e-3
    assert loaded.score(data.X, data.lengths) == model.score(data.X, data.lengths)
    # Saved before dssm.min_covar: the same weights mean the model without a floor.
    del manifest["settings"]["min_covar"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    old = RegimeDSSM.load(tmp_path)
    assert old.min_covar == 0.0 and old.net_.min_covar == 0.0
    np.testing.assert_allclose(old.covars_, model.covars_ - 1e-3 * np.eye(3), rtol=0,
                               atol=1e-14)
    assert old.score(data.X, data.lengths) != model.score(data.X, data.lengths)


def test_load_refuses_what_does_not_match(model: RegimeDSSM, tmp_path: Path) -> None:
    model.save(tmp_path, manifest={})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["settings"]["hidden"] = 16
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="does not match manifest.json"):
        RegimeDSSM.load(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot load the DSSM"):
        RegimeDSSM.load(tmp_path)


def test_an_initial_hmm_of_another_shape_is_refused(data: SimpleNamespace) -> None:
    other = RegimeHMM(2, covariance_type="full", n_init=1).fit(data.X, data.lengths)
    with pytest.raises(ModelError, match="the same states and features"):
        fit(data, other)


# -- collapse ------------------------------------------------------------------------------


def frames_of(data: SimpleNamespace) -> dict[str, pd.DataFrame]:
    """The arrays as the scaled tables train_dssm reads."""
    def frame(X: np.ndarray, lengths: np.ndarray, start: str) -> pd.DataFrame:
        table = pd.DataFrame(X, columns=COLUMNS)
        table.insert(0, "segment", np.repeat(np.arange(len(lengths)), lengths))
        table.insert(0, "symbol", "SYN")
        table.insert(0, "timestamp", pd.date_range(start, periods=len(X), freq="h", tz="UTC"))
        return table
    return {"train": frame(data.X, data.lengths, "2020-01-01"),
            "val": frame(data.X_val[:200], np.array([200]), "2021-01-01"),
            "test": frame(data.X_val[200:], np.array([len(data.X_val) - 200]), "2022-01-01")}


def test_a_collapsed_state_is_reported(data: SimpleNamespace, hmm: RegimeHMM,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """A fourth state far from every bar gets no occupancy: metrics and log say so."""
    means = np.vstack([hmm.means_, np.full(3, 25.0)])
    covars = np.concatenate([hmm.covars_, 0.01 * np.eye(3)[None]])
    transmat = np.full((4, 4), 0.01) + np.eye(4) * 0.96
    init = SimpleNamespace(n_states=4, feature_names_=COLUMNS, startprob_=np.full(4, 0.25),
                           transmat_=transmat, means_=means, covars_=covars)
    params = replace(DSSMParams(), **{**QUICK, "max_epochs": 1, "min_occupancy": 0.01})
    with caplog.at_level(logging.WARNING):
        trained = train_dssm(frames_of(data), columns=COLUMNS, n_states=4, dssm=params, seed=0,
                             init=init)
    metrics = trained.metrics
    far = int(np.argmax(trained.model.means_[:, 0]))  # its number after volatility ordering
    np.testing.assert_allclose(trained.model.means_[far], 25.0, rtol=0, atol=1.0)
    assert metrics["collapsed_states"] == str(far)
    assert metrics["min_occupancy_train"] < 0.01
    assert metrics["collapsed_epochs"] == 1
    assert metrics["occupancy"]["train"][str(far)] < 0.01
    assert any("collapsed" in r.message and f"[{far}]" in r.message for r in caplog.records)


def test_healthy_training_reports_no_collapse(data: SimpleNamespace, hmm: RegimeHMM) -> None:
    params = replace(DSSMParams(), **{**QUICK, "max_epochs": 1})
    trained = train_dssm(frames_of(data), columns=COLUMNS, n_states=3, dssm=params, seed=0,
                         init=hmm)
    assert trained.metrics["collapsed_states"] == ""
    assert trained.metrics["collapsed_epochs"] == 0


# -- truth recovery ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [
    pytest.param(0, marks=pytest.mark.xfail(strict=True, reason=(
        "a known shortfall (benchmarks/README.md): here the HMM explains the volatility "
        "bursts by switching state (ARI 0.52), and training from that optimum keeps most "
        "of its states (ARI 0.47) while its held-out likelihood improves"))),
    1, 2])
def test_recovers_regimes_with_clustering_at_least_as_well_as_the_hmm(seed: int) -> None:
    """Volatility clusters inside each regime (GARCH persistence 0.95), which an HMM can
    only explain by switching; the DSSM's context carries it. The DSSM starts from the
    HMM and must match or beat it on the truth and on held-out likelihood."""
    bars = make_market(3000, n_regimes=3, vol_clustering=0.95, random_state=seed)
    X, truth = bar_observations(bars, COLUMNS), bars["regime"].to_numpy()
    n_train, n_val = 2100, 2550
    one = np.array([n_train]), np.array([n_val - n_train]), np.array([len(X) - n_val])
    hmm = RegimeHMM(3, covariance_type="full", n_init=3, random_state=0).fit(
        X[:n_train], one[0], feature_names=COLUMNS)
    dssm = RegimeDSSM(3, hidden=16, window=128, stride=96, burn_in=16, batch_size=8,
                      max_epochs=15, patience=5, lr=1e-2).fit(
        X[:n_train], one[0], X_val=X[n_train:n_val], lengths_val=one[1], init=hmm,
        feature_names=COLUMNS)
    whole = np.array([len(X)])
    hmm_ari = adjusted_rand_score(truth, hmm.predict(X, whole))
    dssm_ari = adjusted_rand_score(truth, dssm.predict(X, whole))
    assert dssm_ari >= hmm_ari, (dssm_ari, hmm_ari)
    test = X[n_val:]
    assert dssm.score(test, one[2]) > hmm.score(test, one[2])


def test_training_logs_its_curves_through_dvclive_on_lightning(data: SimpleNamespace,
                                                               hmm: RegimeHMM,
                                                               tmp_path: Path) -> None:
    """DVCLive's logger subclasses ``lightning.pytorch``'s Logger when ``lightning`` is
    installed: the trainer must be that package's too, or the logger is refused."""
    model = RegimeDSSM(3, **{**QUICK, "max_epochs": 2}).fit(
        data.X, data.lengths, X_val=data.X_val, lengths_val=data.lengths_val, init=hmm,
        feature_names=COLUMNS, log_dir=tmp_path / "dvclive")
    curves = tmp_path / "dvclive" / "plots" / "metrics"
    logged = {p.relative_to(curves).as_posix() for p in curves.rglob("*.tsv")}
    assert {"train/loss.tsv", "val/loss.tsv"} <= logged
    rows = (curves / "val" / "loss.tsv").read_text().strip().splitlines()
    assert len(rows) == 1 + model.epochs_


def test_only_lightning_pytorch_is_loaded() -> None:
    """The package is ``lightning``; the standalone ``pytorch_lightning`` is never imported
    (a second copy of the trainer's classes that DVCLive's logger does not subclass)."""
    code = ("import sys; import regimelab.families.dssm.module, regimelab.families.dssm.data;"
            "import dvclive.lightning, lightning.pytorch as pl;"
            "assert issubclass(dvclive.lightning.DVCLiveLogger, pl.loggers.Logger);"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pytorch_lightning'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

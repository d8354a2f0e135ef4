"""Tests for regimelab.synth: the synthetic regime market generator."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regimelab.exceptions import ParamsError
from regimelab.io import sha256_file
from regimelab.synth import (
    DEFAULT_REGIMES,
    EXTRA_REGIMES,
    Regime,
    default_regimes,
    make_market,
    make_panel,
    make_realistic_market,
    realistic_market_params,
    sticky_transmat,
    write_market,
)

COLUMNS = ["timestamp", "symbol", "open", "high", "low", "close", "volume", "regime"]
THREE = (DEFAULT_REGIMES[0], DEFAULT_REGIMES[2], DEFAULT_REGIMES[3])


def _log_returns(df: pd.DataFrame) -> np.ndarray:
    return np.log(df["close"].to_numpy() / df["open"].to_numpy())


def _runs(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regime and length of each run of equal labels, without the first and last.

    The first and last runs are cut by the ends of the path, so they are
    dropped from run-length statistics.
    """
    change = np.flatnonzero(np.diff(label)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [label.size]])
    return label[starts][1:-1], (ends - starts)[1:-1]


def _standardised(df: pd.DataFrame, regimes: tuple[Regime, ...]) -> np.ndarray:
    """``(r_t - drift_s) / vol_s``: the bar's move in units of its regime's vol."""
    label = df["regime"].to_numpy()
    drift = np.array([r.drift for r in regimes])[label]
    vol = np.array([r.vol for r in regimes])[label]
    return (_log_returns(df) - drift) / vol


def _autocorr_same_regime(x: np.ndarray, regime: np.ndarray, *, lag: int = 1) -> float:
    """Autocorrelation of ``x`` at ``lag`` over pairs of bars in the same regime."""
    same = regime[lag:] == regime[:-lag]
    centred = x - x.mean()
    return float(
        np.sum(centred[lag:][same] * centred[:-lag][same]) / np.sum(centred[lag:][same] ** 2)
    )


@pytest.fixture(scope="module")
def long_market() -> pd.DataFrame:
    return make_market(
        50_000, regimes=(DEFAULT_REGIMES[3], DEFAULT_REGIMES[0], DEFAULT_REGIMES[2]), random_state=7
    )


@pytest.fixture(scope="module")
def clustered_market() -> pd.DataFrame:
    return make_market(50_000, vol_clustering=0.9, random_state=11)


# sticky_transmat


def test_sticky_transmat_known_values() -> None:
    transmat = sticky_transmat(3, stickiness=0.9)
    expected = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]])
    np.testing.assert_allclose(transmat, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(transmat.sum(axis=1), np.ones(3), rtol=0, atol=1e-15)


def test_sticky_transmat_single_regime_stays() -> None:
    np.testing.assert_array_equal(sticky_transmat(1, stickiness=0.5), np.ones((1, 1)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_regimes": 0}, "n_regimes=0"),
        ({"n_regimes": 2.0}, "n_regimes=2.0"),
        ({"n_regimes": 2, "stickiness": 0.0}, "stickiness=0.0"),
        ({"n_regimes": 2, "stickiness": 1.0}, "stickiness=1.0"),
        ({"n_regimes": 2, "stickiness": float("nan")}, "stickiness=nan"),
    ],
)
def test_sticky_transmat_rejects(kwargs: dict[str, Any], match: str) -> None:
    n_regimes = kwargs.pop("n_regimes")
    with pytest.raises(ParamsError, match=match):
        sticky_transmat(n_regimes, **kwargs)


# regimes


def test_default_regimes_ordered_by_vol_and_volume() -> None:
    assert len(DEFAULT_REGIMES) == 4
    vols = [r.vol for r in DEFAULT_REGIMES]
    volumes = [r.volume for r in DEFAULT_REGIMES]
    assert vols == sorted(vols) and len(set(vols)) == 4
    assert volumes == sorted(volumes) and len(set(volumes)) == 4
    assert DEFAULT_REGIMES[2].drift > 0 > DEFAULT_REGIMES[3].drift


def test_default_three_regimes_are_the_widest_spread() -> None:
    df = make_market(20_000, random_state=3)
    assert sorted(df["regime"].unique().tolist()) == [0, 1, 2]
    log_ret = _log_returns(df)
    stds = [log_ret[df["regime"].to_numpy() == k].std() for k in range(3)]
    np.testing.assert_allclose(stds, [r.vol for r in THREE], rtol=0.1, atol=0)


def test_default_regimes_for_one_to_four_are_unchanged() -> None:
    calm, chop, euphoria, crash = DEFAULT_REGIMES
    assert default_regimes(1) == (chop,)
    assert default_regimes(2) == (calm, crash)
    assert default_regimes(3) == (calm, euphoria, crash)
    assert default_regimes(4) == DEFAULT_REGIMES
    assert default_regimes(5) == (EXTRA_REGIMES[0], *DEFAULT_REGIMES)
    assert default_regimes(6) == (EXTRA_REGIMES[0], *DEFAULT_REGIMES, EXTRA_REGIMES[1])


@pytest.mark.parametrize("n_regimes", range(1, 7))
def test_default_regimes_are_vol_separated_and_drift_neutral(n_regimes: int) -> None:
    laws = default_regimes(n_regimes)
    vols = np.array([r.vol for r in laws])
    volumes = np.array([r.volume for r in laws])
    assert len(laws) == n_regimes
    # Label 0 is the calmest and every neighbour is at least 2x as volatile.
    assert (vols[1:] / vols[:-1] >= 2.0 - 1e-12).all()
    assert (np.diff(volumes) > 0).all()
    if n_regimes != 2:  # calm_uptrend + crash alone has always drifted down
        np.testing.assert_allclose(sum(r.drift for r in laws), 0.0, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("n_regimes", "random_state"), [(5, 0), (6, 1)])
def test_five_and_six_regimes_have_their_laws(n_regimes: int, random_state: int) -> None:
    df = make_market(30_000, n_regimes=n_regimes, random_state=random_state)
    laws = default_regimes(n_regimes)
    label = df["regime"].to_numpy()
    assert sorted(np.unique(label).tolist()) == list(range(n_regimes))
    log_ret = _log_returns(df)
    stds = [log_ret[label == k].std() for k in range(n_regimes)]
    np.testing.assert_allclose(stds, [r.vol for r in laws], rtol=0.1, atol=0)
    # Equal occupancy and drifts that cancel: the price ends near where it started.
    assert abs(np.log(df["close"].iloc[-1] / df["open"].iloc[0])) < 5.0


@pytest.mark.parametrize(
    ("field", "value"), [("vol", 0.0), ("vol", -0.01), ("drift", float("inf"))]
)
def test_regime_rejects_bad_fields(field: str, value: float) -> None:
    fields = {"name": "bad", "drift": 0.0, "vol": 0.01, "volume": 5.0, field: value}
    with pytest.raises(ParamsError, match=f"{field}="):
        Regime(**fields)


# make_market: shape and determinism


def test_columns_dtypes_and_grid() -> None:
    df = make_market(500, symbol="ABC", start="2021-03-04 05:00", freq="15min", random_state=1)
    assert list(df.columns) == COLUMNS
    assert len(df) == 500
    assert isinstance(df["timestamp"].dtype, pd.DatetimeTZDtype)
    assert str(df["timestamp"].dt.tz) == "UTC"
    assert df["timestamp"].iloc[0] == pd.Timestamp("2021-03-04 05:00", tz="UTC")
    assert (df["timestamp"].diff().iloc[1:] == pd.Timedelta(minutes=15)).all()
    assert (df["symbol"] == "ABC").all()
    for col in ("open", "high", "low", "close", "volume"):
        assert df[col].dtype == np.float64
    assert df["regime"].dtype == np.int64
    assert df["open"].iloc[0] == 100.0


def test_start_with_offset_is_converted_to_utc() -> None:
    df = make_market(10, start="2020-01-01T01:00:00+01:00")
    assert df["timestamp"].iloc[0] == pd.Timestamp("2020-01-01T00:00:00", tz="UTC")


def test_same_seed_same_frame_and_different_seed_differs() -> None:
    a = make_market(2_000, vol_clustering=0.5, n_gaps=3, random_state=42)
    b = make_market(2_000, vol_clustering=0.5, n_gaps=3, random_state=42)
    c = make_market(2_000, vol_clustering=0.5, n_gaps=3, random_state=43)
    pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(a["close"].to_numpy()[:100], c["close"].to_numpy()[:100])


def test_uses_no_global_rng() -> None:
    np.random.seed(0)
    a = make_market(300, random_state=5)
    np.random.seed(1)
    b = make_market(300, random_state=5)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("vol_clustering", [0.0, 0.95])
def test_ohlc_consistency(vol_clustering: float) -> None:
    df = make_market(
        20_000, n_regimes=4, vol_clustering=vol_clustering, n_gaps=10, substeps=3, random_state=2
    )
    o, h, lo, c, v = (df[col].to_numpy() for col in ("open", "high", "low", "close", "volume"))
    assert (lo > 0).all()
    assert (h >= np.maximum(o, c)).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (h > lo).all()
    assert (v > 0).all() and np.isfinite(v).all()


def test_open_equals_previous_close_without_gaps() -> None:
    df = make_market(5_000, vol_clustering=0.8, random_state=4)
    np.testing.assert_array_equal(df["open"].to_numpy()[1:], df["close"].to_numpy()[:-1])


def test_vol_clustering_leaves_regime_path_and_shocks_alone() -> None:
    iid = make_market(3_000, random_state=8)
    clustered = make_market(3_000, vol_clustering=0.9, random_state=8)
    np.testing.assert_array_equal(iid["regime"].to_numpy(), clustered["regime"].to_numpy())
    # Same shocks, different scale: the moves away from the drift have the same signs.
    drift = np.array([r.drift for r in THREE])[iid["regime"].to_numpy()]
    assert (np.sign(_log_returns(iid) - drift) == np.sign(_log_returns(clustered) - drift)).all()
    assert not np.array_equal(iid["close"].to_numpy(), clustered["close"].to_numpy())


# make_market: today's outputs stay bit for bit

# Fingerprints of make_market/make_panel outputs computed with the code as it
# was before semi-Markov dwell, t noise and K = 5, 6 were added (commit
# ec20c05): row count, sha256 prefixes of the regime labels and of the bar
# times, then the sums of open, high, low, close, volume and the last close.
# The new options are off by default and must not move the random draws.
_TRANSMAT_CYCLE = np.array([[0.95, 0.05, 0.0], [0.0, 0.9, 0.1], [0.2, 0.0, 0.8]])
_REFERENCE_CASES: dict[str, tuple[Any, tuple[int, str, str, list[float]]]] = {
    "default": (
        lambda: make_market(2000, random_state=0),
        (
            2000,
            "47293b2127831f10",
            "e8a62d423b2ea580",
            [
                124100.96180260234,
                125914.92110346425,
                122331.91984510479,
                124064.30336876534,
                8049274.484002518,
                63.34156616299619,
            ],
        ),
    ),
    "k4_garch_gaps": (
        lambda: make_market(
            1500, n_regimes=4, vol_clustering=0.9, n_gaps=3, substeps=3, random_state=5
        ),
        (
            1479,
            "e4d34bdf5e2e0b19",
            "1ff2326cc092d4b3",
            [
                143696.1904760961,
                144735.50455414128,
                142707.88291757228,
                143732.30898827733,
                3224317.6823802246,
                141.2821775506822,
            ],
        ),
    ),
    "k1": (
        lambda: make_market(600, n_regimes=1, random_state=2),
        (
            600,
            "24ddaa4710480313",
            "5a39468dfc741475",
            [
                53123.67447471384,
                53367.27300899879,
                52870.87939479538,
                53118.38184617583,
                1054172.6910904942,
                94.70737146198746,
            ],
        ),
    ),
    "k2_sticky": (
        lambda: make_market(1200, n_regimes=2, stickiness=0.95, random_state=7),
        (
            1200,
            "d612f99ddf50f944",
            "6b434bd86b3ec620",
            [
                47444.15730120574,
                47978.0051873209,
                46842.74574775767,
                47377.14482209435,
                3968572.4438297013,
                32.987520888607705,
            ],
        ),
    ),
    "transmat": (
        lambda: make_market(800, transmat=_TRANSMAT_CYCLE, random_state=9),
        (
            800,
            "855e1b35a22107b6",
            "bbe93a91c00e7910",
            [
                72705.77369824387,
                73240.5585154795,
                72168.16160855265,
                72691.34037653836,
                1825394.4592177793,
                85.56667829449165,
            ],
        ),
    ),
    "panel": (
        lambda: make_panel(2, 500, random_state=3, n_regimes=4, vol_clustering=0.5, n_gaps=2),
        (
            977,
            "969bbdb7ee93fca2",
            "9069bd5480dc3034",
            [
                102605.20434184588,
                103751.59070209856,
                101438.6432860264,
                102572.76427255967,
                3238350.837484303,
                79.57165876850907,
            ],
        ),
    ),
}


def _fingerprint(df: pd.DataFrame) -> tuple[int, str, str, list[float]]:
    labels = hashlib.sha256(df["regime"].to_numpy().tobytes()).hexdigest()[:16]
    seconds = (df["timestamp"] - df["timestamp"].iloc[0]) // pd.Timedelta(seconds=1)
    times = hashlib.sha256(seconds.to_numpy(dtype=np.int64).tobytes()).hexdigest()[:16]
    sums = [float(df[col].sum()) for col in ("open", "high", "low", "close", "volume")]
    return len(df), labels, times, [*sums, float(df["close"].iloc[-1])]


@pytest.mark.parametrize("case", sorted(_REFERENCE_CASES))
def test_default_options_reproduce_earlier_outputs(case: str) -> None:
    make, (rows, labels, times, floats) = _REFERENCE_CASES[case]
    got_rows, got_labels, got_times, got_floats = _fingerprint(make())
    assert (got_rows, got_labels, got_times) == (rows, labels, times)
    # Any change in the random draws moves these by far more than 1e-12; the
    # tolerance only forgives last-bit differences between libm builds.
    np.testing.assert_allclose(got_floats, floats, rtol=1e-12, atol=0)


# make_market: known answers


def test_per_regime_moments_match_regimes(long_market: pd.DataFrame) -> None:
    regimes = (
        DEFAULT_REGIMES[3],
        DEFAULT_REGIMES[0],
        DEFAULT_REGIMES[2],
    )  # labels follow this order
    log_ret = _log_returns(long_market)
    label = long_market["regime"].to_numpy()
    log_vol = np.log(long_market["volume"].to_numpy())
    for k, regime in enumerate(regimes):
        r = log_ret[label == k]
        assert r.size > 5_000
        np.testing.assert_allclose(r.std(), regime.vol, rtol=0.1, atol=0)
        np.testing.assert_allclose(
            r.mean(), regime.drift, rtol=0, atol=5 * regime.vol / np.sqrt(r.size)
        )
        np.testing.assert_allclose(log_vol[label == k].mean(), regime.volume, rtol=0, atol=0.02)


def test_parkinson_vol_matches_regime_vol(long_market: pd.DataFrame) -> None:
    regimes = (DEFAULT_REGIMES[3], DEFAULT_REGIMES[0], DEFAULT_REGIMES[2])
    hl = np.log(long_market["high"].to_numpy() / long_market["low"].to_numpy())
    label = long_market["regime"].to_numpy()
    for k, regime in enumerate(regimes):
        parkinson = np.sqrt(np.mean(hl[label == k] ** 2) / (4 * np.log(2)))
        np.testing.assert_allclose(parkinson, regime.vol, rtol=0.05, atol=0)


def test_volume_rises_with_absolute_move(long_market: pd.DataFrame) -> None:
    label = long_market["regime"].to_numpy()
    in_calm = label == 1
    abs_ret = np.abs(_log_returns(long_market))[in_calm]
    log_vol = np.log(long_market["volume"].to_numpy())[in_calm]
    assert np.corrcoef(abs_ret, log_vol)[0, 1] > 0.3


def test_empirical_transmat_matches_sticky(long_market: pd.DataFrame) -> None:
    label = long_market["regime"].to_numpy()
    counts = np.zeros((3, 3))
    np.add.at(counts, (label[:-1], label[1:]), 1)
    empirical = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(empirical, sticky_transmat(3, stickiness=0.99), rtol=0, atol=0.003)


def test_empirical_transmat_follows_rows_of_asymmetric_matrix() -> None:
    # A cycle 0 -> 1 -> 2 -> 0: reading the matrix by columns would reverse it.
    transmat = np.array([[0.95, 0.05, 0.0], [0.0, 0.9, 0.1], [0.2, 0.0, 0.8]])
    label = make_market(30_000, transmat=transmat, random_state=9)["regime"].to_numpy()
    counts = np.zeros((3, 3))
    np.add.at(counts, (label[:-1], label[1:]), 1)
    empirical = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(empirical, transmat, rtol=0, atol=0.01)
    assert counts[0, 2] == 0 and counts[1, 0] == 0 and counts[2, 1] == 0


def test_start_state_and_occupancy_follow_stationary_distribution() -> None:
    transmat = np.array([[0.99, 0.01], [0.09, 0.91]])  # stationary (0.9, 0.1)
    first = [
        make_market(2, transmat=transmat, random_state=s)["regime"].iloc[0] for s in range(400)
    ]
    np.testing.assert_allclose(np.mean(np.asarray(first) == 0), 0.9, rtol=0, atol=0.05)
    label = make_market(40_000, transmat=transmat, random_state=1)["regime"].to_numpy()
    np.testing.assert_allclose(np.mean(label == 0), 0.9, rtol=0, atol=0.03)


def test_absorbing_regime_is_never_left() -> None:
    transmat = np.array([[0.9, 0.1], [0.0, 1.0]])
    label = make_market(2_000, transmat=transmat, random_state=0)["regime"].to_numpy()
    first_one = np.argmax(label == 1)
    assert label[-1] == 1 and (label[first_one:] == 1).all()


def test_vol_clustering_gives_autocorrelated_squared_returns(
    long_market: pd.DataFrame, clustered_market: pd.DataFrame
) -> None:
    def standardised_sq(
        df: pd.DataFrame, regimes: tuple[Regime, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        label = df["regime"].to_numpy()
        drift = np.array([r.drift for r in regimes])[label]
        vol = np.array([r.vol for r in regimes])[label]
        return ((_log_returns(df) - drift) / vol) ** 2, label

    sq_iid, label_iid = standardised_sq(
        long_market, (DEFAULT_REGIMES[3], DEFAULT_REGIMES[0], DEFAULT_REGIMES[2])
    )
    sq_clu, label_clu = standardised_sq(clustered_market, THREE)
    # GARCH(1,1) with alpha=0.09, beta=0.81: ACF of squares ~0.12 at lag 1,
    # decaying like 0.9**(lag - 1) (~0.08 at lag 5; an ARCH(1) would give ~0).
    assert _autocorr_same_regime(sq_clu, label_clu, lag=1) > 0.07
    assert _autocorr_same_regime(sq_clu, label_clu, lag=5) > 0.04
    for lag in (1, 5):
        assert abs(_autocorr_same_regime(sq_iid, label_iid, lag=lag)) < 0.02
    # The unconditional variance is still vol**2 in every regime.
    for k in range(3):
        np.testing.assert_allclose(np.sqrt(sq_clu[label_clu == k].mean()), 1.0, rtol=0.1, atol=0)


# semi-Markov dwell


@pytest.mark.parametrize(
    ("dwell", "dwell_shape", "random_state"),
    [("gamma", 4.0, 0), ("negbin", 4.0, 1), ("negbin", 1.0, 2)],
)
def test_semi_markov_runs_have_the_requested_mean_and_spread(
    dwell: str, dwell_shape: float, random_state: int
) -> None:
    mean_dwell = (20.0, 40.0, 60.0)
    df = make_market(
        60_000,
        n_regimes=3,
        dwell=dwell,
        mean_dwell=mean_dwell,
        dwell_shape=dwell_shape,
        random_state=random_state,
    )
    regime, length = _runs(df["regime"].to_numpy())
    for k, mean in enumerate(mean_dwell):
        runs = length[regime == k]
        assert runs.size > 300
        np.testing.assert_allclose(runs.mean(), mean, rtol=0.1, atol=0)
        if dwell == "gamma":  # ceil(G), sd(G) = (mean - 1/2) / sqrt(shape)
            expected_cv = (mean - 0.5) / np.sqrt(dwell_shape) / mean
        else:  # 1 + NegBin: var = (mean - 1) * (1 + (mean - 1) / shape)
            expected_cv = np.sqrt((mean - 1) * (1 + (mean - 1) / dwell_shape)) / mean
        np.testing.assert_allclose(runs.std() / runs.mean(), expected_cv, rtol=0.1, atol=0)
        # A Markov chain with the same mean run length: CV = sqrt(1 - 1 / mean).
        geometric = make_market(60_000, n_regimes=3, stickiness=1 - 1 / mean, random_state=9)
        _, geometric_length = _runs(geometric["regime"].to_numpy())
        geometric_cv = geometric_length.std() / geometric_length.mean()
        np.testing.assert_allclose(geometric_cv, np.sqrt(1 - 1 / mean), rtol=0.1, atol=0)
        if dwell_shape > 1:
            assert runs.std() / runs.mean() < 0.6 * geometric_cv


@pytest.mark.parametrize("dwell", ["gamma", "negbin"])
def test_semi_markov_mean_holds_for_short_runs(dwell: str) -> None:
    # Where discretising the law matters most: half a bar off would be 17 %.
    df = make_market(
        40_000, n_regimes=2, dwell=dwell, mean_dwell=(3.0, 6.0), dwell_shape=2.0, random_state=5
    )
    regime, length = _runs(df["regime"].to_numpy())
    realised = [length[regime == k].mean() for k in range(2)]
    np.testing.assert_allclose(realised, [3.0, 6.0], rtol=0.03, atol=0)


def test_semi_markov_default_mean_is_the_markov_one() -> None:
    # stickiness 0.98 -> mean run 1 / (1 - 0.98) = 50 bars, but regular.
    df = make_market(40_000, n_regimes=2, stickiness=0.98, dwell="gamma", random_state=3)
    _, length = _runs(df["regime"].to_numpy())
    np.testing.assert_allclose(length.mean(), 50.0, rtol=0.1, atol=0)
    assert length.std() / length.mean() < 0.8  # dwell_shape 2: about 0.7


def test_semi_markov_follows_the_jump_chain_and_occupancy() -> None:
    # A cycle 0 -> 1 -> 2 -> 0, whose diagonal the semi-Markov chain ignores:
    # every run is followed by the next regime of the cycle, and the share of
    # time in a regime is proportional to its mean run (jump chain uniform).
    mean_dwell = (30.0, 60.0, 90.0)
    label = make_market(
        60_000,
        transmat=_TRANSMAT_CYCLE,
        dwell="gamma",
        mean_dwell=mean_dwell,
        dwell_shape=3.0,
        random_state=4,
    )["regime"].to_numpy()
    counts = np.zeros((3, 3))
    np.add.at(counts, (label[:-1], label[1:]), 1)
    assert counts[0, 2] == 0 and counts[1, 0] == 0 and counts[2, 1] == 0
    assert counts[0, 1] > 100 and counts[1, 2] > 100 and counts[2, 0] > 100
    occupancy = np.bincount(label, minlength=3) / label.size
    np.testing.assert_allclose(occupancy, np.array(mean_dwell) / 180.0, rtol=0, atol=0.03)


def test_semi_markov_start_follows_occupancy() -> None:
    # Runs of 10 and 90 bars with a uniform jump chain: occupancy (0.1, 0.9).
    first = [
        make_market(2, n_regimes=2, dwell="negbin", mean_dwell=(10.0, 90.0), random_state=s)[
            "regime"
        ].iloc[0]
        for s in range(400)
    ]
    np.testing.assert_allclose(np.mean(np.asarray(first) == 1), 0.9, rtol=0, atol=0.05)


def test_semi_markov_absorbing_regime_is_never_left() -> None:
    transmat = np.array([[0.9, 0.1], [0.0, 1.0]])
    label = make_market(3_000, transmat=transmat, dwell="gamma", random_state=0)[
        "regime"
    ].to_numpy()
    first_one = np.argmax(label == 1)
    assert label[-1] == 1 and (label[first_one:] == 1).all()


def test_semi_markov_is_seeded_and_leaves_the_return_law_alone() -> None:
    kwargs: dict[str, Any] = {"dwell": "negbin", "mean_dwell": 100.0, "dwell_shape": 3.0}
    a = make_market(20_000, n_regimes=3, random_state=6, **kwargs)
    pd.testing.assert_frame_equal(a, make_market(20_000, n_regimes=3, random_state=6, **kwargs))
    label = a["regime"].to_numpy()
    stds = [_log_returns(a)[label == k].std() for k in range(3)]
    np.testing.assert_allclose(stds, [r.vol for r in THREE], rtol=0.1, atol=0)


# Student-t shocks


@pytest.fixture(scope="module")
def t_market() -> pd.DataFrame:
    return make_market(100_000, n_regimes=1, noise_df=10.0, substeps=4, random_state=12)


def test_t_shocks_have_unit_variance_and_the_t_kurtosis(t_market: pd.DataFrame) -> None:
    e = _standardised(t_market, default_regimes(1))
    np.testing.assert_allclose(e.var(), 1.0, rtol=0.02, atol=0)
    # Excess kurtosis of a t with nu dof is 6 / (nu - 4) = 1 for nu = 10;
    # Gaussian shocks from the same seed have none.
    np.testing.assert_allclose(stats.kurtosis(e), 1.0, rtol=0, atol=0.25)
    gaussian = make_market(100_000, n_regimes=1, substeps=4, random_state=12)
    np.testing.assert_allclose(
        stats.kurtosis(_standardised(gaussian, default_regimes(1))), 0.0, rtol=0, atol=0.1
    )


def test_t_shocks_keep_path_and_volume_consistent(t_market: pd.DataFrame) -> None:
    chop = default_regimes(1)[0]
    # Each bar's path is Brownian at the bar's own scale, whose square has
    # mean 1, so the Parkinson estimator still finds the regime's vol.
    hl = np.log(t_market["high"].to_numpy() / t_market["low"].to_numpy())
    np.testing.assert_allclose(
        np.sqrt(np.mean(hl**2) / (4 * np.log(2))), chop.vol, rtol=0.02, atol=0
    )
    # The volume coupling is centred with E|z| of the t, not of the normal.
    np.testing.assert_allclose(
        np.log(t_market["volume"].to_numpy()).mean(), chop.volume, rtol=0, atol=0.005
    )


@pytest.mark.parametrize("noise_df", [2.5, 5.0])
def test_t_shocks_keep_ohlc_valid(noise_df: float) -> None:
    df = make_market(
        20_000,
        n_regimes=4,
        noise_df=noise_df,
        vol_clustering=0.95,
        dwell="gamma",
        mean_dwell=50.0,
        substeps=3,
        random_state=2,
    )
    o, h, lo, c, v = (df[col].to_numpy() for col in ("open", "high", "low", "close", "volume"))
    assert np.isfinite(np.column_stack([o, h, lo, c, v])).all()
    assert (lo > 0).all() and (v > 0).all()
    assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all() and (h > lo).all()
    np.testing.assert_array_equal(o[1:], c[:-1])


def test_t_shocks_scale_the_gaussian_ones_and_draw_after_them() -> None:
    gaussian = make_market(5_000, n_regimes=3, random_state=14)
    heavy = make_market(5_000, n_regimes=3, noise_df=4.0, random_state=14)
    np.testing.assert_array_equal(gaussian["regime"].to_numpy(), heavy["regime"].to_numpy())
    e_gaussian, e_heavy = _standardised(gaussian, THREE), _standardised(heavy, THREE)
    # Same normal shocks times a positive per-bar scale: same signs, and the
    # scale sqrt((nu - 2) / chi2(nu)) varies from bar to bar.
    assert (np.sign(e_gaussian) == np.sign(e_heavy)).all()
    scale = e_heavy / e_gaussian
    assert scale.min() > 0 and scale.std() > 0.2


@pytest.mark.parametrize(("dwell", "noise_df"), [("gamma", 5.0), ("geometric", 3.0)])
def test_garch_reads_the_t_shock(dwell: str, noise_df: float) -> None:
    # With the same seed the chain, the shocks and the t scales are drawn
    # alike, so the clustered market's moves must be sqrt(q_t) times the
    # unclustered ones, with q_t the GARCH recursion on those t shocks.
    p = 0.9
    alpha, beta = 0.1 * p, 0.9 * p
    kwargs: dict[str, Any] = {"n_regimes": 3, "dwell": dwell, "noise_df": noise_df}
    if dwell != "geometric":
        kwargs["mean_dwell"] = 80.0
    iid = make_market(4_000, random_state=15, **kwargs)
    clustered = make_market(4_000, vol_clustering=p, random_state=15, **kwargs)
    np.testing.assert_array_equal(iid["regime"].to_numpy(), clustered["regime"].to_numpy())
    z = _standardised(iid, THREE)
    q = np.ones_like(z)
    for t in range(1, z.size):
        q[t] = (1 - p) + (alpha * z[t - 1] ** 2 + beta) * q[t - 1]
    np.testing.assert_allclose(_standardised(clustered, THREE), np.sqrt(q) * z, rtol=0, atol=1e-8)


# the realistic preset


@pytest.mark.parametrize(
    ("n_regimes", "mean_dwell"),
    [
        (3, (240.0, 131.0, 72.0)),
        (4, (240.0, 161.0, 108.0, 72.0)),
        (5, (240.0, 178.0, 131.0, 97.0, 72.0)),
    ],
)
def test_realistic_params_are_the_documented_ones(
    n_regimes: int, mean_dwell: tuple[float, ...]
) -> None:
    params = realistic_market_params(n_regimes)
    regimes = params.pop("regimes")
    assert params == {
        "dwell": "gamma",
        "mean_dwell": mean_dwell,
        "dwell_shape": 3.0,
        "vol_clustering": 0.93,
        "noise_df": 5.0,
        "n_gaps": 10,
        "max_gap_bars": 12,
    }
    laws = default_regimes(n_regimes)
    assert [r.name for r in regimes] == [r.name for r in laws]
    assert [(r.vol, r.volume) for r in regimes] == [(r.vol, r.volume) for r in laws]
    # Drifts move by one constant, chosen so the occupancy-weighted drift is 0.
    shift = np.array([r.drift for r in regimes]) - np.array([r.drift for r in laws])
    np.testing.assert_allclose(shift, shift[0], rtol=0, atol=1e-15)
    occupancy = np.array(mean_dwell) / sum(mean_dwell)
    np.testing.assert_allclose(occupancy @ [r.drift for r in regimes], 0.0, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("n_regimes", "random_state"), [(3, 0), (4, 1), (5, 2)])
def test_realistic_market_has_the_documented_properties(n_regimes: int, random_state: int) -> None:
    df = make_realistic_market(n_regimes=n_regimes, random_state=random_state)
    params = realistic_market_params(n_regimes)
    regimes, mean_dwell = params["regimes"], np.array(params["mean_dwell"])
    assert list(df.columns) == COLUMNS
    label = df["regime"].to_numpy()
    assert sorted(np.unique(label).tolist()) == list(range(n_regimes))

    # Ten outages of 1 to 12 hours.
    jumps = df["timestamp"].diff().iloc[1:]
    gap_jumps = jumps[jumps != pd.Timedelta(hours=1)]
    assert len(gap_jumps) == 10
    assert (gap_jumps <= pd.Timedelta(hours=13)).all()
    assert 50_000 - 120 <= len(df) <= 50_000 - 10

    # Regimes last days, the calm ones longest, and more regularly than a Markov chain's.
    regime, length = _runs(label)
    assert 72 <= length.mean() <= 240
    realised = np.array([length[regime == k].mean() for k in range(n_regimes)])
    np.testing.assert_allclose(realised, mean_dwell, rtol=0.25, atol=0)
    for k in range(n_regimes):
        runs = length[regime == k]
        assert runs.std() / runs.mean() < 0.8  # shape 3: about 0.58; geometric: about 1

    # Heavy tails and volatility clustering inside regimes, around the regime's vol.
    e = _standardised(df, regimes)
    for k in range(n_regimes):
        assert stats.kurtosis(e[label == k]) > 1.5
    np.testing.assert_allclose(e.std(), 1.0, rtol=0.15, atol=0)
    # |e| is about 0.14 autocorrelated at lag 1 and 0.11 at lag 5 (i.i.d.: 0 +- 0.005).
    assert _autocorr_same_regime(np.abs(e), label, lag=1) > 0.08
    assert _autocorr_same_regime(np.abs(e), label, lag=5) > 0.05

    # Neighbouring regimes' realised vols stay clearly apart.
    vols = np.array([_log_returns(df)[label == k].std() for k in range(n_regimes)])
    assert (vols[1:] / vols[:-1] > 1.6).all()
    # The drift is centred: the price wanders but does not run off.
    assert abs(np.log(df["close"].iloc[-1] / df["open"].iloc[0])) < 8.0


def test_realistic_market_overrides_replace_preset_values() -> None:
    df = make_realistic_market(
        3_000, n_regimes=3, random_state=5, noise_df=None, n_gaps=0, symbol="BTC"
    )
    params = {**realistic_market_params(3), "noise_df": None, "n_gaps": 0}
    pd.testing.assert_frame_equal(df, make_market(3_000, symbol="BTC", random_state=5, **params))
    assert len(df) == 3_000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_regimes": 7}, "n_regimes=7"),
        ({"n_regimes": 0}, "n_regimes=0"),
        ({"dwel": "gamma"}, "dwel='gamma'"),
        ({"n_bars": 400}, "n_gaps=10"),
        ({"noise_df": 2.0}, "noise_df=2.0"),
    ],
)
def test_realistic_market_rejects(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ParamsError, match=match):
        make_realistic_market(**kwargs)


# gaps


def test_gaps_remove_bars_and_keep_alignment() -> None:
    n_bars, n_gaps, max_gap = 5_000, 7, 12
    full = make_market(n_bars, vol_clustering=0.5, random_state=21)
    gapped = make_market(
        n_bars, vol_clustering=0.5, n_gaps=n_gaps, max_gap_bars=max_gap, random_state=21
    )
    step = pd.Timedelta(hours=1)
    ts = gapped["timestamp"]
    assert ts.iloc[0] == full["timestamp"].iloc[0]
    assert ts.iloc[-1] == full["timestamp"].iloc[-1]
    jumps = ts.diff().iloc[1:]
    gap_jumps = jumps[jumps != step]
    assert len(gap_jumps) == n_gaps
    assert (gap_jumps > step).all() and (gap_jumps <= (max_gap + 1) * step).all()
    missing = int(((gap_jumps / step) - 1).sum())
    assert len(gapped) == n_bars - missing
    # The gapped frame is the full one minus rows: regime and prices still line up.
    kept = full[full["timestamp"].isin(ts)].reset_index(drop=True)
    pd.testing.assert_frame_equal(gapped, kept)
    # Across a gap the price has moved on.
    after_gap = np.flatnonzero(jumps.to_numpy() != step) + 1
    assert (gapped["open"].to_numpy()[after_gap] != gapped["close"].to_numpy()[after_gap - 1]).all()


@pytest.mark.parametrize("random_state", range(5))
def test_dense_gaps_stay_separate_and_interior(random_state: int) -> None:
    n_bars, n_gaps = 400, 100
    full = make_market(n_bars, random_state=random_state)
    df = make_market(n_bars, n_gaps=n_gaps, max_gap_bars=1, random_state=random_state)
    jumps = df["timestamp"].diff().iloc[1:]
    assert len(df) == n_bars - n_gaps
    assert (jumps[jumps != pd.Timedelta(hours=1)] == pd.Timedelta(hours=2)).sum() == n_gaps
    assert df["timestamp"].iloc[0] == full["timestamp"].iloc[0]
    assert df["timestamp"].iloc[-1] == full["timestamp"].iloc[-1]


def test_single_bar_gaps() -> None:
    df = make_market(1_000, n_gaps=20, max_gap_bars=1, random_state=3)
    jumps = df["timestamp"].diff().iloc[1:]
    assert len(df) == 980
    assert (jumps[jumps != pd.Timedelta(hours=1)] == pd.Timedelta(hours=2)).sum() == 20


# make_panel


def test_make_panel_symbols_sorted_and_deterministic() -> None:
    panel = make_panel(5, 400, random_state=3, n_regimes=2, vol_clustering=0.3)
    assert panel["symbol"].unique().tolist() == ["SYN00", "SYN01", "SYN02", "SYN03", "SYN04"]
    assert isinstance(panel.index, pd.RangeIndex) and len(panel) == 5 * 400
    pd.testing.assert_frame_equal(
        panel, panel.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    )
    assert panel["regime"].max() <= 1
    pd.testing.assert_frame_equal(
        panel, make_panel(5, 400, random_state=3, n_regimes=2, vol_clustering=0.3)
    )
    children = np.random.SeedSequence(3).spawn(5)
    for i, child in enumerate(children):
        block = panel[panel["symbol"] == f"SYN{i:02d}"].reset_index(drop=True)
        expected = make_market(
            400, n_regimes=2, vol_clustering=0.3, symbol=f"SYN{i:02d}", random_state=child
        )
        pd.testing.assert_frame_equal(block, expected)
    closes = [panel.loc[panel["symbol"] == s, "close"].to_numpy() for s in ("SYN00", "SYN01")]
    assert not np.array_equal(closes[0], closes[1])


def test_make_panel_pads_names_to_sort() -> None:
    panel = make_panel(101, 2, random_state=0)
    symbols = panel["symbol"].unique().tolist()
    assert symbols[0] == "SYN000" and symbols[-1] == "SYN100" and symbols == sorted(symbols)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_symbols": 0}, "n_symbols=0"), ({"n_symbols": 2, "symbol": "X"}, "symbol='X'")],
)
def test_make_panel_rejects(kwargs: dict[str, Any], match: str) -> None:
    n_symbols = kwargs.pop("n_symbols")
    with pytest.raises(ParamsError, match=match):
        make_panel(n_symbols, 10, **kwargs)


# write_market


@pytest.mark.parametrize("name", ["bars.csv", "bars.csv.gz"])
def test_write_market_round_trip_and_reproducible(tmp_path: Path, name: str) -> None:
    df = make_panel(2, 300, random_state=5, n_gaps=2, vol_clustering=0.5)
    first, second = tmp_path / "a" / name, tmp_path / "b" / name
    write_market(df, first)
    write_market(df, second)
    digest = sha256_file(first)
    assert sha256_file(second) == digest
    write_market(df, first)  # overwriting gives the same bytes again
    assert sha256_file(first) == digest

    opener = gzip.open if name.endswith(".gz") else open
    with opener(first, "rt", encoding="utf-8") as fh:
        header, line = fh.readline().strip(), fh.readline()
    assert header == ",".join(COLUMNS)
    assert line.startswith("2020-01-01T00:00:00Z,SYN00,100.0,")

    back = pd.read_csv(first)
    back["timestamp"] = pd.to_datetime(back["timestamp"], utc=True, format="ISO8601")
    pd.testing.assert_series_equal(back["timestamp"], df["timestamp"], check_dtype=False)
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(back[col].to_numpy(), df[col].to_numpy())
    np.testing.assert_array_equal(back["regime"].to_numpy(), df["regime"].to_numpy())
    np.testing.assert_array_equal(back["symbol"].to_numpy(), df["symbol"].to_numpy())


def test_write_market_keeps_sub_second_times(tmp_path: Path) -> None:
    df = make_market(4, freq="250ms")
    write_market(df, tmp_path / "x.csv")
    back = pd.read_csv(tmp_path / "x.csv")
    assert back["timestamp"].iloc[1] == "2020-01-01T00:00:00.250000Z"
    parsed = pd.to_datetime(back["timestamp"], utc=True, format="ISO8601")
    pd.testing.assert_series_equal(parsed, df["timestamp"], check_dtype=False)


def test_write_market_does_not_modify_frame(tmp_path: Path) -> None:
    df = make_market(10)
    before = df.copy()
    write_market(df, tmp_path / "x.csv")
    pd.testing.assert_frame_equal(df, before)


def test_write_market_rejects_naive_timestamps(tmp_path: Path) -> None:
    df = make_market(10)
    df["timestamp"] = df["timestamp"].dt.tz_localize(None)
    with pytest.raises(ParamsError, match="timestamp"):
        write_market(df, tmp_path / "x.csv")


# validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_bars": 1}, "n_bars=1"),
        ({"n_bars": True}, "n_bars=True"),
        ({"n_regimes": 7}, "n_regimes=7"),
        ({"n_regimes": 0}, "n_regimes=0"),
        ({"n_regimes": 3, "regimes": DEFAULT_REGIMES[:2]}, "n_regimes=3"),
        ({"regimes": ()}, "regimes="),
        ({"regimes": THREE, "transmat": np.eye(2)}, r"transmat has shape \(2, 2\)"),
        ({"transmat": np.ones(3)}, r"transmat has shape \(3,\)"),
        ({"transmat": [[0.5, 0.5], [1.0]]}, "transmat=.*square array"),
        ({"transmat": np.full((3, 3), 0.3)}, "transmat row sums"),
        (
            {"transmat": np.array([[1.5, -0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])},
            "transmat=.*non-negative",
        ),
        ({"n_regimes": 2, "transmat": np.eye(3)}, r"transmat has shape \(3, 3\)"),
        ({"stickiness": 1.0}, "stickiness=1.0"),
        ({"vol_clustering": 1.0}, "vol_clustering=1.0"),
        ({"vol_clustering": -0.1}, "vol_clustering=-0.1"),
        ({"n_gaps": -1}, "n_gaps=-1"),
        ({"n_gaps": 30, "max_gap_bars": 12}, "n_gaps=30"),
        ({"max_gap_bars": 0}, "max_gap_bars=0"),
        ({"substeps": 0}, "substeps=0"),
        ({"start_price": 0.0}, "start_price=0.0"),
        ({"start_price": float("nan")}, "start_price=nan"),
        ({"freq": "1H"}, "freq='1H'"),
        ({"start": "not a date"}, "start='not a date'"),
        ({"symbol": ""}, "symbol=''"),
        ({"dwell": "weibull"}, "dwell='weibull'.*'geometric', 'gamma', 'negbin'"),
        ({"dwell": None}, "dwell=None"),
        ({"mean_dwell": 50.0}, "mean_dwell=50.0 is not allowed with dwell='geometric'"),
        ({"dwell": "gamma", "mean_dwell": 0.5}, r"mean_dwell=0.5 .*>= 1"),
        ({"dwell": "gamma", "mean_dwell": float("inf")}, "mean_dwell=inf"),
        ({"dwell": "negbin", "mean_dwell": (10.0, 20.0)}, r"mean_dwell=\(10.0, 20.0\).*3 such"),
        ({"dwell": "negbin", "mean_dwell": "10"}, "mean_dwell='10'"),
        ({"dwell": "gamma", "mean_dwell": [10.0, None, 5.0]}, "mean_dwell="),
        ({"dwell_shape": 0.0}, r"dwell_shape=0.0 .*> 0"),
        ({"dwell_shape": [1.0, 2.0, -3.0]}, r"dwell_shape=\[1.0, 2.0, -3.0\]"),
        ({"dwell_shape": True}, "dwell_shape=True"),
        ({"noise_df": 2.0}, r"noise_df=2.0 .*> 2"),
        ({"noise_df": 1}, "noise_df=1 "),
        ({"noise_df": float("inf")}, "noise_df=inf"),
        ({"noise_df": True}, "noise_df=True"),
        ({"noise_df": "5"}, "noise_df='5'"),
    ],
)
def test_make_market_rejects(kwargs: dict[str, Any], match: str) -> None:
    n_bars = kwargs.pop("n_bars", 1_000)
    with pytest.raises(ParamsError, match=match) as excinfo:
        make_market(n_bars, **kwargs)
    assert "\n" not in str(excinfo.value)


def test_n_regimes_is_inferred_from_regimes_or_transmat() -> None:
    assert make_market(2_000, regimes=DEFAULT_REGIMES, random_state=1)["regime"].max() == 3
    transmat = sticky_transmat(2, stickiness=0.9)
    assert set(make_market(2_000, transmat=transmat, random_state=1)["regime"]) == {0, 1}


def test_transmat_rows_summing_to_one_within_tolerance_are_accepted() -> None:
    transmat = sticky_transmat(3, stickiness=0.9) * (1 + 1e-10)
    df = make_market(100, transmat=transmat)
    assert len(df) == 100

"""DSSMNet: an untrained net is its starting HMM; the numpy inference pass equals torch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from regimelab.families.dssm import recursions
from regimelab.families.dssm.infer import NumpyPass
from regimelab.families.dssm.net import DSSMNet
from regimelab.families.hmm.model import RegimeHMM
from regimelab.synth import make_market
from tests.families.hmm.test_model import RANGE, RETURN, VOLUME, bar_observations

COLUMNS = [RETURN, RANGE, VOLUME]


@pytest.fixture(scope="module")
def hmm_and_bars() -> tuple[RegimeHMM, np.ndarray]:
    bars = make_market(1200, n_regimes=3, vol_clustering=0.9, random_state=3)
    X = bar_observations(bars, COLUMNS)
    hmm = RegimeHMM(3, covariance_type="full", n_init=2, random_state=0).fit(
        X, np.array([len(X)]), feature_names=COLUMNS)
    return hmm, X


def net_from(hmm: RegimeHMM, *, transition: str, emission: str, seed: int | None,
             min_covar: float = 0.0) -> DSSMNet:
    """A net that starts at ``hmm``; with a seed, its output layers get random weights."""
    torch.manual_seed(0)
    net = DSSMNet(3, len(COLUMNS), hidden=8, transition=transition, emission=emission,
                  min_covar=min_covar).double()
    net.init_from_hmm(hmm.startprob_, hmm.transmat_, hmm.means_, hmm.covars_)
    if seed is not None:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for head in (net.trans_head, net.scale_head):
                if head is not None:
                    head.weight.copy_(0.3 * torch.randn(head.weight.shape, generator=gen))
                    head.bias.copy_(0.1 * torch.randn(head.bias.shape, generator=gen))
    return net


def torch_pass(net: DSSMNet, X: np.ndarray):
    x = torch.from_numpy(X)[None]
    mask = torch.ones(1, len(X), dtype=torch.bool)
    with torch.no_grad():
        result = net.forward_pass(x, mask)
    return result.step_ll[0].sum().item(), result.filtered[0].numpy()


@pytest.mark.parametrize("min_covar", [0.0, 1e-3])
@pytest.mark.parametrize("transition, emission",
                         [("static", "scale"), ("context", "static"), ("context", "scale")])
def test_an_untrained_net_is_exactly_its_starting_hmm(
        hmm_and_bars: tuple[RegimeHMM, np.ndarray], transition: str, emission: str,
        min_covar: float) -> None:
    hmm, X = hmm_and_bars
    lengths = np.array([len(X)])
    net = net_from(hmm, transition=transition, emission=emission, seed=None,
                   min_covar=min_covar)
    # With a floor the learned factor holds the HMM's covariance less the floor.
    np.testing.assert_allclose(net.covariances().detach().numpy(), hmm.covars_, rtol=1e-12,
                               atol=1e-15)
    log_lik, filtered = torch_pass(net, X)
    np.testing.assert_allclose(log_lik, hmm.score(X, lengths), rtol=1e-10, atol=0)
    np.testing.assert_allclose(filtered, hmm.filter_proba(X, lengths), rtol=0, atol=1e-9)


@pytest.mark.parametrize("min_covar", [0.0, 1e-3, 0.5])
@pytest.mark.parametrize("transition, emission",
                         [("static", "scale"), ("context", "static"), ("context", "scale"),
                          ("static", "static")])
def test_numpy_inference_equals_the_torch_pass(
        hmm_and_bars: tuple[RegimeHMM, np.ndarray], transition: str, emission: str,
        min_covar: float) -> None:
    hmm, X = hmm_and_bars
    net = net_from(hmm, transition=transition, emission=emission, seed=1, min_covar=min_covar)
    log_lik, filtered = torch_pass(net, X)
    terms = NumpyPass(net).terms(X)
    fwd = recursions.forward(terms.log_start, terms.log_trans, terms.log_emit)
    np.testing.assert_allclose(fwd.log_likelihood, log_lik, rtol=1e-10, atol=0)
    np.testing.assert_allclose(fwd.filtered, filtered, rtol=0, atol=1e-10)
    if emission == "scale":  # the random heads moved it away from the HMM
        assert abs(fwd.log_likelihood - hmm.score(X, np.array([len(X)]))) > 1.0


def test_padding_and_uncounted_bars_add_nothing(
        hmm_and_bars: tuple[RegimeHMM, np.ndarray]) -> None:
    hmm, X = hmm_and_bars
    net = net_from(hmm, transition="context", emission="scale", seed=2)
    x = torch.zeros(2, 300, X.shape[1], dtype=torch.float64)
    x[0], x[1, :200] = torch.from_numpy(X[:300]), torch.from_numpy(X[:200])
    mask = torch.ones(2, 300, dtype=torch.bool)
    mask[1, 200:] = False
    count = mask.clone()
    count[0, :100] = False  # a burn-in: bars 0..99 warm up only
    with torch.no_grad():
        total, occupancy = net.log_likelihood(x, mask, count)
        steps = net.forward_pass(x, mask).step_ll
    np.testing.assert_allclose(total.item(), (steps[0, 100:].sum() + steps[1, :200].sum()).item(),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(steps[1, :200].numpy(), steps[0, :200].numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(occupancy.sum().item(), 400.0, rtol=1e-12, atol=0)


def test_gradients_reach_every_parameter(hmm_and_bars: tuple[RegimeHMM, np.ndarray]) -> None:
    hmm, X = hmm_and_bars
    net = net_from(hmm, transition="context", emission="scale", seed=3)
    x = torch.from_numpy(X[:128])[None]
    mask = torch.ones(1, 128, dtype=torch.bool)
    loss = -net.log_likelihood(x, mask, mask)[0]
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("transition, emission", [("static", "scale"), ("context", "static")])
def test_every_covariance_the_net_uses_has_the_floor(
        hmm_and_bars: tuple[RegimeHMM, np.ndarray], transition: str, emission: str) -> None:
    """Each bar's emission is N(mu_k, L_k S_t^2 L_k^T + m I), in torch and in numpy alike.

    The learned factors are shrunk far below the floor, where a net without one would
    give densities of thousands of nats; with it no log emission exceeds the floor's
    own largest density, -D/2 log(2 pi m).
    """
    hmm, _ = hmm_and_bars
    # Bars at the regimes' means, where a collapsed covariance puts the most density.
    X = hmm.means_[np.random.default_rng(0).integers(3, size=200)]
    m = 1e-3
    d = X.shape[1]
    peak = -0.5 * d * np.log(2 * np.pi * m)
    for floor in (m, 0.0):
        net = net_from(hmm, transition=transition, emission=emission, seed=4, min_covar=floor)
        with torch.no_grad():
            net.chol_log_diag.sub_(40.0)  # standard deviations e^-40 times the HMM's
        scales: list[torch.Tensor] = []
        if net.scale_head is not None:
            net.scale_head.register_forward_hook(
                lambda mod, inp, out, into=scales: into.append(out))
        with torch.no_grad():
            result = net.forward_pass(torch.from_numpy(X)[None],
                                      torch.ones(1, len(X), dtype=torch.bool), keep_terms=True)
        log_emit = result.log_emit[0].numpy()
        numpy_emit = NumpyPass(net).terms(X).log_emit
        np.testing.assert_allclose(numpy_emit, log_emit, rtol=1e-10, atol=1e-10)
        if floor == 0.0:  # the check below can fail: without the floor it does
            assert log_emit.max() > peak + 50
            continue
        assert log_emit.max() <= peak
        chol = net.cholesky().detach().numpy()
        means = net.means.detach().numpy()
        for t in range(0, len(X), 17):
            s = (np.zeros(d) if not scales else
                 (net.max_log_scale * torch.tanh(scales[t][0] / net.max_log_scale)).numpy())
            for k in range(3):
                cov = chol[k] @ np.diag(np.exp(2 * s)) @ chol[k].T + m * np.eye(d)
                assert np.linalg.eigvalsh(cov).min() >= m * (1 - 1e-9)
                np.testing.assert_allclose(log_emit[t, k],
                                           multivariate_normal(means[k], cov).logpdf(X[t]),
                                           rtol=1e-9, atol=1e-9)

"""The HMM's inference: hmmlearn's forward-backward made safe for crash candles.

:class:`StableGaussianHMM` is the ``GaussianHMM`` that
:class:`~regimelab.families.hmm.model.RegimeHMM` fits and decodes with. It adds
what regime work needs to hmmlearn's recursions: a scaling E-step that does
not underflow on a bar far from every state, ``min_covar`` added after every
M-step, and the filtered (causal) posteriors of the forward pass alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hmmlearn import _hmmc
from hmmlearn.hmm import GaussianHMM


# hmmlearn ships no type information, so its classes are Any to mypy.
class StableGaussianHMM(GaussianHMM):  # type: ignore[misc]
    """``GaussianHMM`` whose scaling E-step subtracts each row's largest log-density.

    hmmlearn's scaling implementation exponentiates the log-densities as they
    are, and a bar far from every state (a crash candle) underflows to zero in
    all of them. Shifting each row by its maximum leaves the posteriors and the
    transition counts unchanged (the shift cancels in the normalisation) and the
    shift is added back to the log-likelihood.
    """

    # Set by hmmlearn's fit; declared so that mypy knows the override's type.
    _covars_: np.ndarray

    def _shifted_frameprob(self, X: np.ndarray) -> tuple[np.ndarray, float]:
        log_frame = self._compute_log_likelihood(X)
        shift = log_frame.max(axis=1, keepdims=True)
        return np.exp(log_frame - shift), float(shift.sum())

    def _fit_scaling(self, X: np.ndarray
                     ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
        frameprob, shift = self._shifted_frameprob(X)
        log_prob, fwd, scaling = _hmmc.forward_scaling(self.startprob_, self.transmat_, frameprob)
        bwd = _hmmc.backward_scaling(self.startprob_, self.transmat_, frameprob, scaling)
        return frameprob, log_prob + shift, self._compute_posteriors_scaling(fwd, bwd), fwd, bwd

    def _do_mstep(self, stats: dict[str, Any]) -> None:
        super()._do_mstep(stats)
        if self.covariance_type == "spherical" and self._covars_.ndim == 2:
            # hmmlearn 0.3 leaves spherical variances tiled to (K, D), and its covars_
            # then expands them to K * D matrices; keep one variance per state.
            self._covars_ = self._covars_[:, 0].copy()
        # hmmlearn uses min_covar only at initialisation, and its covariance prior adds a
        # constant to every entry (rank one): nearly collinear features then make a state's
        # covariance singular. Add min_covar to the diagonal after every M-step, as
        # scikit-learn's GaussianMixture does with reg_covar.
        if self.covariance_type in ("full", "tied"):
            d = self._covars_.shape[-1]
            self._covars_ = self._covars_ + self.min_covar * np.eye(d)
        else:
            self._covars_ = self._covars_ + self.min_covar

    def _score_scaling(self, X: np.ndarray, lengths: np.ndarray | None = None, *,
                       compute_posteriors: bool) -> tuple[float, np.ndarray]:
        log_prob = 0.0
        posteriors = [np.empty((0, self.n_components))]
        for sub_X in split_sequences(X, lengths):
            frameprob, shift = self._shifted_frameprob(sub_X)
            sub_log_prob, fwd, scaling = _hmmc.forward_scaling(
                self.startprob_, self.transmat_, frameprob)
            log_prob += sub_log_prob + shift
            if compute_posteriors:
                bwd = _hmmc.backward_scaling(self.startprob_, self.transmat_, frameprob, scaling)
                posteriors.append(self._compute_posteriors_scaling(fwd, bwd))
        return log_prob, np.concatenate(posteriors)

    def forward_filter(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """P(state_t | bars up to t) for each row, restarting at each sequence."""
        out = []
        for sub_X in split_sequences(X, lengths):
            frameprob, _ = self._shifted_frameprob(sub_X)
            _, fwd, _ = _hmmc.forward_scaling(self.startprob_, self.transmat_, frameprob)
            out.append(fwd)
        return np.concatenate(out) if out else np.empty((0, self.n_components))



    def loglik_per_bar(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """log p(x_t | x_1..t-1) of each row, restarting at each sequence: the forward
        pass's normaliser at t, with the row's largest log-density added back."""
        out = []
        for sub_X in split_sequences(X, lengths):
            log_frame = self._compute_log_likelihood(sub_X)
            shift = log_frame.max(axis=1)
            _, _, scaling = _hmmc.forward_scaling(self.startprob_, self.transmat_,
                                                  np.exp(log_frame - shift[:, None]))
            out.append(shift - np.log(scaling))  # hmmlearn's scaling is 1 / normaliser
        return np.concatenate(out) if out else np.empty(0)


def split_sequences(X: np.ndarray, lengths: np.ndarray | None) -> list[np.ndarray]:
    """``X`` cut into its gap-free sequences (the whole of it without ``lengths``)."""
    if lengths is None:
        return [X]
    ends = np.cumsum(lengths)
    return [X[end - n:end] for n, end in zip(lengths, ends)]

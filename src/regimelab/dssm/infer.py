"""The trained network's bar-by-bar pass in float64 numpy, for inference.

:meth:`DSSMNet.forward_pass` is what training differentiates; here the same
computation runs without autograd on one sequence, where a torch call per
small operation would cost about ten times more than numpy's (a 500-bar
request is then milliseconds, not a tenth of a second). A test checks that the
two agree to 1e-10. The result is each bar's log emissions and log
transitions, from which :mod:`regimelab.dssm.recursions` gives the
likelihood, the filtered and smoothed posteriors and the Viterbi path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import solve_triangular
from scipy.special import expit, log_softmax

from regimelab.dssm.net import _SQ_FLOOR, LOG_2PI, DSSMNet


@dataclass(frozen=True)
class Terms:
    """One sequence's inputs to the recursions."""

    log_start: np.ndarray  # (K,)
    log_trans: np.ndarray  # (K, K), the same every bar, or (T, K, K)
    log_emit: np.ndarray  # (T, K)


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().to(torch.float64).numpy().copy()


class NumpyPass:
    """A float64 copy of a :class:`DSSMNet`'s parameters, and its pass over one sequence."""

    def __init__(self, net: DSSMNet) -> None:
        with torch.no_grad():
            chol = _array(net.cholesky())
            self.n_states = net.n_states
            self.n_features = net.n_features
            self.max_log_scale = net.max_log_scale
            self.means = _array(net.means)
            self.chol = chol
            self.inv_chol = np.stack([solve_triangular(c, np.eye(self.n_features), lower=True)
                                      for c in chol])
            self.log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
            self.log_start = log_softmax(_array(net.start_logits))
            self.trans_logits = _array(net.trans_logits)
            self.w_ih, self.b_ih = _array(net.cell.weight_ih), _array(net.cell.bias_ih)
            self.w_hh, self.b_hh = _array(net.cell.weight_hh), _array(net.cell.bias_hh)
            self.hidden = net.cell.hidden_size
            self.scale = (None if net.scale_head is None else
                          (_array(net.scale_head.weight), _array(net.scale_head.bias)))
            self.trans = (None if net.trans_head is None else
                          (_array(net.trans_head.weight), _array(net.trans_head.bias)))

    def terms(self, X: np.ndarray) -> Terms:
        """Log emissions and log transitions of every bar of one gap-free sequence.

        Parameters
        ----------
        X : ndarray of shape (T, D)
        """
        k, d, hid = self.n_states, self.n_features, self.hidden
        white = np.einsum("kij,tkj->tki", self.inv_chol, X[:, None, :] - self.means)
        sq = white**2
        base = -0.5 * (d * LOG_2PI + sq.sum(axis=2)) - self.log_det  # (T, K): no context
        log_static = log_softmax(self.trans_logits, axis=1)
        if self.scale is None and self.trans is None:
            return Terms(self.log_start, log_static, base)  # the context changes nothing
        n = len(X)
        log_emit = np.empty((n, k))
        log_trans = np.empty((n, k, k)) if self.trans is not None else log_static
        start = np.exp(self.log_start)
        trans = np.exp(log_static)
        h = np.zeros(hid)
        alpha = np.zeros(k)
        for t in range(n):
            if self.scale is None:
                log_emit[t] = base[t]
            else:
                s = self.max_log_scale * np.tanh((self.scale[0] @ h + self.scale[1])
                                                 / self.max_log_scale)
                log_emit[t] = (-0.5 * (d * LOG_2PI + sq[t] @ np.exp(-2.0 * s))
                               - self.log_det - s.sum())
            if self.trans is not None:
                log_trans[t] = log_softmax(
                    self.trans_logits + (self.trans[0] @ h + self.trans[1]).reshape(k, k),
                    axis=1)
                trans = np.exp(log_trans[t])
            alpha = (start if t == 0 else alpha @ trans) * np.exp(log_emit[t]
                                                                  - log_emit[t].max())
            alpha /= alpha.sum()
            u = np.concatenate([alpha @ white[t], np.log(_SQ_FLOOR + alpha @ sq[t])])
            gi = self.w_ih @ u + self.b_ih
            gh = self.w_hh @ h + self.b_hh
            r = expit(gi[:hid] + gh[:hid])
            z = expit(gi[hid:2 * hid] + gh[hid:2 * hid])
            cand = np.tanh(gi[2 * hid:] + r * gh[2 * hid:])
            h = (1.0 - z) * cand + z * h
        return Terms(self.log_start, log_trans, log_emit)

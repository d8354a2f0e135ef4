"""The trained network's bar-by-bar pass in float64, compiled, for inference.

:meth:`DSSMNet.forward_pass` is what training differentiates; here the same
computation runs without autograd on one sequence. The loop over bars is
sequential (the context at t reads the filter at t - 1), and one numpy or
torch call per small operation cost 40-100 us a bar. numba compiles the loop
instead: about 4 us a bar, 2 ms for a 500-bar request (benchmarks/bench_serve.py).
The loop's sums are written out in a fixed order and compiled without
fast-math, so they do not depend on the CPU's vector units. A test
checks that it agrees with torch's pass to 1e-10. The result is each bar's log
emissions and log transitions, from which :mod:`regimelab.families.dssm.recursions`
gives the likelihood, the filtered and smoothed posteriors and the Viterbi
path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import torch
from scipy.linalg import solve_triangular
from scipy.special import log_softmax

from regimelab.families.dssm.net import _SQ_FLOOR, LOG_2PI, DSSMNet


@dataclass(frozen=True)
class Terms:
    """One sequence's inputs to the recursions."""

    log_start: np.ndarray  # (K,)
    log_trans: np.ndarray  # (K, K), the same every bar, or (T, K, K)
    log_emit: np.ndarray  # (T, K)


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().to(torch.float64).numpy().copy()


@numba.njit(cache=True, nogil=True)
def _affine(w_t: np.ndarray, x: np.ndarray, bias: np.ndarray, out: np.ndarray
            ) -> None:  # pragma: no cover (compiled)
    """``out = bias + w @ x`` from ``w_t = w.T`` (contiguous).

    Each output adds the terms in the order of ``x``, as a dot product would;
    the inner loop runs over outputs, so it vectorises without reordering a sum.
    """
    for r in range(out.shape[0]):
        out[r] = bias[r]
    for j in range(x.shape[0]):
        xj = x[j]
        for r in range(out.shape[0]):
            out[r] += w_t[j, r] * xj


@numba.njit(cache=True, nogil=True)
def _floored_log_density(chol: np.ndarray, scale2: np.ndarray, min_covar: float,
                         diff: np.ndarray, cov: np.ndarray, fac: np.ndarray, z: np.ndarray
                         ) -> float:  # pragma: no cover (compiled)
    """``log N(diff; 0, L diag(scale2) L^T + min_covar I)`` for one state and bar.

    ``chol`` (D, D) is L (lower); ``cov``, ``fac`` and ``z`` are work arrays. The
    covariance's lower triangle, its Cholesky factor and the forward solve are
    written out in a fixed order.
    """
    d = diff.shape[0]
    for a in range(d):
        for b in range(a + 1):
            acc = 0.0
            for c in range(b + 1):  # both rows of L are zero beyond their own index
                acc += chol[a, c] * chol[b, c] * scale2[c]
            cov[a, b] = acc + (min_covar if a == b else 0.0)
    log_det = 0.0
    for a in range(d):
        for b in range(a + 1):
            acc = cov[a, b]
            for c in range(b):
                acc -= fac[a, c] * fac[b, c]
            if a == b:
                fac[a, a] = math.sqrt(acc)
                log_det += math.log(fac[a, a])
            else:
                fac[a, b] = acc / fac[b, b]
    quad = 0.0
    for a in range(d):
        acc = diff[a]
        for c in range(a):
            acc -= fac[a, c] * z[c]
        z[a] = acc / fac[a, a]
        quad += z[a] * z[a]
    return -0.5 * (d * LOG_2PI + quad) - log_det


@numba.njit(cache=True, nogil=True)
def _context_loop(white: np.ndarray, sq: np.ndarray, base: np.ndarray, log_det: np.ndarray,
                  start: np.ndarray, log_static: np.ndarray, trans_logits: np.ndarray,
                  w_ih_t: np.ndarray, b_ih: np.ndarray, w_hh_t: np.ndarray, b_hh: np.ndarray,
                  scale_w_t: np.ndarray, scale_b: np.ndarray, trans_w_t: np.ndarray,
                  trans_b: np.ndarray, max_log_scale: float, chol: np.ndarray,
                  diff: np.ndarray, min_covar: float, log_emit: np.ndarray,
                  log_trans: np.ndarray) -> None:  # pragma: no cover (compiled)
    """Fill ``log_emit`` (T, K) and, with a transition head, ``log_trans`` (T, K, K).

    Weights come transposed (``w_t = w.T``); a head with no outputs
    (``scale_b`` or ``trans_b`` empty) means the net has no such head. With a
    scale head and ``min_covar > 0`` each bar's covariance
    ``L_k S_t^2 L_k^T + min_covar I`` is factorised afresh from ``chol`` (K, D, D),
    the L_k, and ``diff`` (T, K, D), the bars less each regime's mean.
    """
    n, k, d = sq.shape
    hid = w_hh_t.shape[0]
    has_scale = scale_b.shape[0] > 0
    has_trans = trans_b.shape[0] > 0
    floored = has_scale and min_covar > 0.0
    scale2 = np.zeros(d)
    cov = np.zeros((d, d))
    fac = np.zeros((d, d))
    z = np.zeros(d)
    h = np.zeros(hid)
    alpha = np.zeros(k)
    prior = np.zeros(k)
    trans = np.exp(log_static)
    s = np.zeros(scale_b.shape[0])
    inv_scale2 = np.zeros(scale_b.shape[0])
    head = np.zeros(trans_b.shape[0])
    u = np.zeros(2 * d)
    gi = np.zeros(3 * hid)
    gh = np.zeros(3 * hid)
    for t in range(n):
        if has_scale:
            _affine(scale_w_t, h, scale_b, s)
            s_sum = 0.0
            for j in range(d):
                s[j] = max_log_scale * math.tanh(s[j] / max_log_scale)
                s_sum += s[j]
                inv_scale2[j] = math.exp(-2.0 * s[j])
                scale2[j] = math.exp(2.0 * s[j])
            if floored:
                for i in range(k):
                    log_emit[t, i] = _floored_log_density(chol[i], scale2, min_covar,
                                                          diff[t, i], cov, fac, z)
            else:
                for i in range(k):
                    acc = 0.0
                    for j in range(d):
                        acc += sq[t, i, j] * inv_scale2[j]
                    log_emit[t, i] = -0.5 * (d * LOG_2PI + acc) - log_det[i] - s_sum
        else:
            for i in range(k):
                log_emit[t, i] = base[t, i]
        if has_trans:
            _affine(trans_w_t, h, trans_b, head)
            for a in range(k):
                top = -np.inf
                for b in range(k):
                    head[a * k + b] += trans_logits[a, b]
                    top = max(top, head[a * k + b])
                total = 0.0
                for b in range(k):
                    total += math.exp(head[a * k + b] - top)
                norm = top + math.log(total)
                for b in range(k):
                    log_trans[t, a, b] = head[a * k + b] - norm
                    trans[a, b] = math.exp(log_trans[t, a, b])
        # The filter at t: the prior (the start, or the last filter moved one step)
        # times the emissions shifted by their largest log value, normalised.
        if t == 0:
            for i in range(k):
                prior[i] = start[i]
        else:
            for b in range(k):
                acc = 0.0
                for a in range(k):
                    acc += alpha[a] * trans[a, b]
                prior[b] = acc
        top = log_emit[t, 0]
        for i in range(1, k):
            top = max(top, log_emit[t, i])
        total = 0.0
        for i in range(k):
            alpha[i] = prior[i] * math.exp(log_emit[t, i] - top)
            total += alpha[i]
        for i in range(k):
            alpha[i] /= total
        # The GRU reads the filter-weighted residual and the log of its mean square.
        for j in range(d):
            mixed = 0.0
            mixed_sq = 0.0
            for i in range(k):
                mixed += alpha[i] * white[t, i, j]
                mixed_sq += alpha[i] * sq[t, i, j]
            u[j] = mixed
            u[d + j] = math.log(_SQ_FLOOR + mixed_sq)
        _affine(w_ih_t, u, b_ih, gi)
        _affine(w_hh_t, h, b_hh, gh)
        for j in range(hid):
            reset = 1.0 / (1.0 + math.exp(-(gi[j] + gh[j])))
            update = 1.0 / (1.0 + math.exp(-(gi[hid + j] + gh[hid + j])))
            cand = math.tanh(gi[2 * hid + j] + reset * gh[2 * hid + j])
            h[j] = (1.0 - update) * cand + update * h[j]


def _transposed(weight: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(_array(weight).T)


_NO_HEAD: tuple[np.ndarray, np.ndarray] = (np.zeros((1, 0)), np.zeros(0))


class NumpyPass:
    """A float64 copy of a :class:`DSSMNet`'s parameters, and its pass over one sequence."""

    def __init__(self, net: DSSMNet) -> None:
        with torch.no_grad():
            self.n_states = net.n_states
            self.n_features = net.n_features
            self.max_log_scale = float(net.max_log_scale)
            self.min_covar = float(net.min_covar)
            self.means = _array(net.means)
            # chol: the L_k; base: the factor of the covariance with no context and the
            # floor, which whitens what the GRU reads (the same as chol with no floor).
            self.chol = _array(net.cholesky())
            base = _array(net.base_cholesky())
            self.covariances = _array(net.covariances())
            self.inv_chol = np.stack([solve_triangular(c, np.eye(self.n_features), lower=True)
                                      for c in base])
            self.log_det = np.log(np.diagonal(base, axis1=1, axis2=2)).sum(axis=1)
            self.log_start = log_softmax(_array(net.start_logits))
            self.trans_logits = _array(net.trans_logits)
            # The compiled loop takes each weight matrix transposed.
            self.gru = (_transposed(net.cell.weight_ih), _array(net.cell.bias_ih),
                        _transposed(net.cell.weight_hh), _array(net.cell.bias_hh))
            self.scale = (None if net.scale_head is None else
                          (_transposed(net.scale_head.weight), _array(net.scale_head.bias)))
            self.trans = (None if net.trans_head is None else
                          (_transposed(net.trans_head.weight), _array(net.trans_head.bias)))

    def terms(self, X: np.ndarray) -> Terms:
        """Log emissions and log transitions of every bar of one gap-free sequence.

        Parameters
        ----------
        X : ndarray of shape (T, D)
        """
        k, d = self.n_states, self.n_features
        # white[t, k] = L_k^-1 (x_t - mu_k), shape (T, K, D)
        diff = X[:, None, :] - self.means  # (T, K, D)
        white = np.ascontiguousarray(np.matmul(diff[..., None, :],
                                               self.inv_chol.transpose(0, 2, 1))[..., 0, :])
        sq = white**2
        base = -0.5 * (d * LOG_2PI + sq.sum(axis=2)) - self.log_det  # (T, K): no context
        log_static = log_softmax(self.trans_logits, axis=1)
        if self.scale is None and self.trans is None:
            return Terms(self.log_start, log_static, base)  # the context changes nothing
        n = len(X)
        log_emit = np.empty((n, k))
        log_trans = np.empty((n, k, k) if self.trans is not None else (0, k, k))
        _context_loop(white, sq, base, self.log_det, np.exp(self.log_start), log_static,
                      self.trans_logits, *self.gru,
                      *(self.scale or _NO_HEAD), *(self.trans or _NO_HEAD),
                      self.max_log_scale, self.chol,
                      np.ascontiguousarray(diff) if self.min_covar > 0 else np.zeros((0, k, d)),
                      self.min_covar, log_emit, log_trans)
        return Terms(self.log_start, log_trans if self.trans is not None else log_static,
                     log_emit)

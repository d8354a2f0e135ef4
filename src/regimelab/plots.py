"""matplotlib figures of a regime model, written as PNG byte-for-byte reproducibly.

Each function draws one figure from plain arrays and tables and saves it
atomically; none reads files. Figures are built as :class:`matplotlib.figure.Figure`
objects, never through pyplot: importing this module leaves a notebook's backend
alone, and no figure outlives its function. States keep one colour each in every figure
(state 0, the calmest, is the first colour), so a chart and a heatmap can be
read together.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from regimelab.io import atomic_path

# Calm to turbulent: blues and greens first, reds last (tab10 reordered, then tab20).
_PALETTE = ["#1f77b4", "#2ca02c", "#17becf", "#bcbd22", "#ff7f0e", "#9467bd", "#d62728",
            "#8c564b", "#e377c2", "#7f7f7f"] + [matplotlib.colormaps["tab20"](i) for i in range(20)]


def state_colors(n_states: int) -> list[Any]:
    """One colour per state, the same in every figure."""
    return [_PALETTE[k % len(_PALETTE)] for k in range(n_states)]


def save(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as PNG without the metadata that would change between runs."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})


def transition_heatmap(transmat: np.ndarray, *, title: str, path: str | os.PathLike[str]
                       ) -> None:
    """The transition matrix with each probability written in its cell."""
    k = len(transmat)
    fig = Figure(figsize=(1.0 + 0.75 * k, 0.8 + 0.7 * k))
    ax = fig.subplots()
    image = ax.imshow(transmat, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            value = transmat[i, j]
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if value > 0.6 else "black")
    ax.set(xticks=range(k), yticks=range(k), xlabel="to state", ylabel="from state", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    save(fig, path)


def state_labels(n_states: int, names: Sequence[str] | None = None) -> list[str]:
    """Legend entries: ``0: calm bull`` with the regimes' names, else ``state 0``."""
    if names is None:
        return [f"state {k}" for k in range(n_states)]
    return [f"{k}: {name}" for k, name in enumerate(names)]


def regime_chart(timestamps: pd.Series, close: np.ndarray, states: np.ndarray, *,
                 n_states: int, title: str, path: str | os.PathLike[str],
                 boundaries: Sequence[tuple[str, pd.Timestamp]] = (),
                 names: Sequence[str] | None = None) -> None:
    """Log close with the background shaded by state; ``boundaries`` mark the splits."""
    x = timestamps.to_numpy()
    fig = Figure(figsize=(12, 4))
    ax = fig.subplots()
    log_close = np.log(close)
    low, high = float(log_close.min()), float(log_close.max())
    pad = 0.05 * (high - low or 1.0)
    # One cell per bar, from its timestamp to the next: a gap leaves its last colour.
    edges = np.r_[x, x[-1] + (x[-1] - x[-2] if len(x) > 1 else np.timedelta64(1, "h"))]
    ax.pcolormesh(edges, [low - pad, high + pad], states[None, :].astype(float),
                  cmap=ListedColormap(state_colors(n_states)), vmin=-0.5,
                  vmax=n_states - 0.5, alpha=0.35, shading="flat", rasterized=True)
    ax.plot(x, log_close, color="black", linewidth=0.6)
    for name, when in boundaries:
        ax.axvline(when, color="black", linestyle="--", linewidth=0.8)
        ax.text(when, high + pad, f" {name}", va="top", fontsize=8)
    handles = [Rectangle((0, 0), 1, 1, color=c, alpha=0.5) for c in state_colors(n_states)]
    ax.legend(handles, state_labels(n_states, names), loc="upper left", fontsize=7,
              ncol=min(n_states, 8))
    ax.set(ylabel="log close", title=title, ylim=(low - pad, high + pad))
    fig.tight_layout()
    save(fig, path)


def posteriors(timestamps: pd.Series, filtered: np.ndarray, smoothed: np.ndarray, *,
               title: str, path: str | os.PathLike[str],
               names: Sequence[str] | None = None) -> None:
    """Filtered (causal) above smoothed (hindsight) state probabilities, stacked."""
    x = timestamps.to_numpy()
    colors = state_colors(filtered.shape[1])
    fig = Figure(figsize=(12, 5))
    axes = fig.subplots(2, 1, sharex=True)
    for ax, proba, name in ((axes[0], filtered, "filtered: bars up to t"),
                            (axes[1], smoothed, "smoothed: the whole split")):
        ax.stackplot(x, proba.T, colors=colors, linewidth=0)
        ax.set(ylim=(0, 1), ylabel="P(state)", title=name)
    axes[0].legend(state_labels(filtered.shape[1], names), loc="upper left",
                   fontsize=7, ncol=min(filtered.shape[1], 8))
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def dwell_histograms(run_states: np.ndarray, run_lengths: np.ndarray, transmat: np.ndarray, *,
                     title: str, path: str | os.PathLike[str],
                     names: Sequence[str] | None = None) -> None:
    """Each state's dwell times, with the geometric law ``(1 - p) p^(d-1)`` that the
    transition matrix implies (``p = p_kk``) scaled to the number of runs."""
    k = len(transmat)
    cols = min(k, 4)
    rows = -(-k // cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for state, ax in zip(range(k), axes.flat):
        lengths = run_lengths[run_states == state]
        top = int(np.percentile(lengths, 99)) + 1 if len(lengths) else 10
        bins = np.arange(1, max(top, 2) + 1)
        ax.hist(np.minimum(lengths, top), bins=bins, color=state_colors(k)[state], alpha=0.7,
                label=f"{len(lengths)} runs")
        p = transmat[state, state]
        d = np.arange(1, top + 1)
        ax.plot(d + 0.5, len(lengths) * (1 - p) * p ** (d - 1), color="black", linewidth=1,
                label=f"geometric, p={p:.3f}")
        ax.set(title=state_labels(k, names)[state], xlabel="bars")
        ax.legend(loc="upper right", fontsize=6)  # "best" is slow on long runs
    for ax in list(axes.flat)[k:]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def feature_heatmap(values: pd.DataFrame, *, title: str, path: str | os.PathLike[str],
                    cmap: str = "RdBu_r", centre: float | None = 0.0) -> None:
    """A states x features table (e.g. mean z-scores) with the values in the cells."""
    data = values.to_numpy(dtype=float)
    fig = Figure(figsize=(1.5 + 0.9 * data.shape[1], 1.2 + 0.5 * data.shape[0]))
    ax = fig.subplots()
    if centre is None:
        image = ax.imshow(data, cmap=cmap, aspect="auto")
    else:
        span = float(np.nanmax(np.abs(data - centre))) or 1.0
        image = ax.imshow(data, cmap=cmap, aspect="auto", vmin=centre - span,
                          vmax=centre + span)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(data.shape[1]), values.columns, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(data.shape[0]), values.index, fontsize=7)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    save(fig, path)


def importance_bars(scores: pd.Series, *, title: str, xlabel: str,
                    path: str | os.PathLike[str]) -> None:
    """Horizontal bars, the largest at the top."""
    ordered = scores.sort_values()
    fig = Figure(figsize=(7, 0.9 + 0.35 * len(ordered)))
    ax = fig.subplots()
    ax.barh(ordered.index, ordered.to_numpy(), color="#1f77b4")
    ax.set(title=title, xlabel=xlabel)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    save(fig, path)


def selection_curves(table: pd.DataFrame, *, path: str | os.PathLike[str]) -> None:
    """BIC, AIC and validation log-likelihood per bar against the number of states.

    ``table``: one row per candidate with ``n_states``, ``covariance_type``, ``bic``,
    ``aic`` and ``val_ll_per_bar``.
    """
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    for ax, key, label in zip(axes, ("bic", "aic", "val_ll_per_bar"),
                              ("BIC (lower is better)", "AIC (lower is better)",
                               "validation log-likelihood per bar")):
        for cov, part in table.groupby("covariance_type", sort=True):
            part = part.sort_values("n_states")
            ax.plot(part["n_states"], part[key], marker="o", label=cov)
        ax.set(xlabel="n_states", title=label)
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    save(fig, path)

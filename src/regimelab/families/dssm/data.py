"""Training windows over gap-free sequences, and the LightningDataModule that serves them."""

from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from regimelab.exceptions import ModelError


@dataclass(frozen=True)
class Windows:
    """Padded windows: ``x`` (N, W, D), ``mask`` (N, W) real bars, ``count`` (N, W) the bars
    whose log-likelihood counts. Every bar of every sequence is counted exactly once."""

    x: np.ndarray
    mask: np.ndarray
    count: np.ndarray

    @property
    def n_counted(self) -> int:
        return int(self.count.sum())


def window_starts(n: int, *, window: int, stride: int) -> list[int]:
    """Starts of the windows over a sequence of ``n`` bars; the last one ends at ``n``."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] + window < n:
        starts.append(n - window)
    return starts


def make_windows(X: np.ndarray, lengths: np.ndarray, *, window: int, stride: int,
                 burn_in: int) -> Windows:
    """Cut each sequence into windows of at most ``window`` bars, ``stride`` apart.

    A window that starts inside a sequence spends its first ``burn_in`` bars
    warming up the context and the filter; its log-likelihood counts from
    there (or from the end of the previous window's counted bars, whichever is
    later). A window at a sequence's start counts every bar: there is no past.
    No window crosses from one sequence into the next, so none spans a gap.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    lengths : ndarray of shape (n_sequences,)
    window, stride, burn_in : int
        ``stride <= window - burn_in``, so no bar is skipped.
    """
    xs, masks, counts = [], [], []
    offset = 0
    for n in np.asarray(lengths, dtype=np.int64).tolist():
        counted_to = 0
        for start in window_starts(n, window=window, stride=stride):
            stop = min(start + window, n)
            x = np.zeros((window, X.shape[1]), dtype=np.float64)
            x[:stop - start] = X[offset + start:offset + stop]
            mask = np.zeros(window, dtype=bool)
            mask[:stop - start] = True
            first = max(counted_to, start + burn_in if start else 0)
            count = np.zeros(window, dtype=bool)
            count[first - start:stop - start] = True
            counted_to = stop
            xs.append(x)
            masks.append(mask)
            counts.append(count)
        offset += n
    if not xs:
        raise ModelError("the DSSM got no bars to cut into windows (an empty split?)")
    return Windows(np.stack(xs), np.stack(masks), np.stack(counts))


def _dataset(w: Windows) -> TensorDataset:
    return TensorDataset(torch.from_numpy(w.x), torch.from_numpy(w.mask),
                         torch.from_numpy(w.count))


class WindowDataModule(pl.LightningDataModule):
    """Train and validation windows, held in memory; the train ones are shuffled by a
    generator seeded with ``seed``, so the batches are the same on every run."""

    def __init__(self, train: Windows, val: Windows, *, batch_size: int, seed: int) -> None:
        super().__init__()
        self.train = train
        self.val = val
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(_dataset(self.train), batch_size=self.batch_size, shuffle=True,
                          generator=generator)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(_dataset(self.val), batch_size=self.batch_size, shuffle=False)

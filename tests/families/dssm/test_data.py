"""Training windows: every bar counted once, none across a gap, burn-in at the front."""

from __future__ import annotations

import numpy as np
import pytest

from regimelab.families.dssm.data import make_windows, window_starts


@pytest.mark.parametrize("window, stride, burn_in", [(16, 12, 4), (16, 16, 0), (10, 3, 2)])
def test_every_bar_is_counted_exactly_once_and_no_window_crosses_a_gap(
        window: int, stride: int, burn_in: int) -> None:
    lengths = np.array([5, 16, 17, 40, 1])
    X = np.arange(lengths.sum(), dtype=np.float64)[:, None]  # each row holds its own index
    sequence = np.repeat(np.arange(len(lengths)), lengths)
    w = make_windows(X, lengths, window=window, stride=stride, burn_in=burn_in)

    counted = np.concatenate([w.x[i, w.count[i], 0] for i in range(len(w.x))]).astype(int)
    np.testing.assert_array_equal(np.sort(counted), np.arange(lengths.sum()))
    assert w.n_counted == lengths.sum()
    for x, mask, count in zip(w.x[..., 0], w.mask, w.count):
        rows = x[mask].astype(int)
        assert mask[:len(rows)].all(), "real bars first, padding after"
        np.testing.assert_array_equal(np.diff(rows), 1)  # contiguous bars
        assert len(set(sequence[rows])) == 1, "a window never spans two sequences"
        assert not (count & ~mask).any()
        first = rows[0]
        starts_sequence = first == 0 or sequence[first - 1] != sequence[first]
        if not starts_sequence:
            # Inside a sequence, the first burn_in bars only warm up the context.
            assert not count[:burn_in].any()


def test_window_starts_cover_the_sequence_end() -> None:
    assert window_starts(10, window=16, stride=12) == [0]
    assert window_starts(40, window=16, stride=12) == [0, 12, 24]
    assert window_starts(41, window=16, stride=12) == [0, 12, 24, 25]

"""plots: figures without pyplot, so importing regimelab never changes a user's backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from regimelab import plots


def test_importing_and_plotting_leaves_the_backend_alone(tmp_path: Path) -> None:
    """A notebook's backend (here svg, which any machine has) is the same after the
    import and after a figure is written, and pyplot is never loaded."""
    code = f"""
import sys
import matplotlib
matplotlib.use("svg")
import numpy as np
import regimelab.plots as plots
after_import = matplotlib.get_backend()
plots.transition_heatmap(np.array([[0.9, 0.1], [0.2, 0.8]]), title="t",
                         path={str(tmp_path / "t.png")!r})
print(after_import, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["svg", "svg", "False"]
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_figure_renders_the_same_bytes_twice(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, k = 300, 3
    ts = pd.Series(pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"))
    transmat = np.full((k, k), 0.05) + np.eye(k) * 0.85
    states = rng.integers(0, k, n)
    proba = rng.dirichlet(np.ones(k), n)
    close = np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    table = pd.DataFrame({"n_states": [2, 3, 2, 3], "covariance_type": ["full"] * 2 + ["diag"] * 2,
                          "bic": [1.0, 2, 3, 4], "aic": [1.0, 2, 3, 4],
                          "val_ll_per_bar": [1.0, 2, 3, 4]})

    def draw(folder: Path) -> dict[str, bytes]:
        folder.mkdir()
        plots.transition_heatmap(transmat, title="t", path=folder / "heatmap.png")
        plots.regime_chart(ts, close, states,
                           n_states=k, title="c", path=folder / "chart.png",
                           boundaries=[("val", ts[100])], names=["a", "b", "c"])
        plots.posteriors(ts, proba, proba, title="p", path=folder / "posteriors.png")
        plots.dwell_histograms(states, np.arange(n) % 20 + 1, transmat, title="d",
                               path=folder / "dwell.png")
        plots.feature_heatmap(pd.DataFrame(proba[:k], columns=list("xyz")), title="f",
                              path=folder / "features.png")
        plots.importance_bars(pd.Series([0.1, 0.5, 0.2], index=list("xyz")), title="i",
                              xlabel="gain", path=folder / "importance.png")
        plots.selection_curves(table, path=folder / "selection.png")
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    first, second = draw(tmp_path / "a"), draw(tmp_path / "b")
    assert len(first) == 7 and first == second
    assert all(data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
               for data in first.values())

"""Feature scaling fitted on the training split only, saved as plain JSON.

scikit-learn's ``StandardScaler`` and ``RobustScaler`` do the fitting; what is
kept is their centre and scale, so a model folder holds no pickle and the
scaler loads without executing code. The fit also records the pairs of
features that are nearly collinear on train, over which a full covariance
would be close to singular.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import RobustScaler, StandardScaler

from regimelab.exceptions import ScalingError

log = logging.getLogger(__name__)

COLLINEAR_THRESHOLD = 0.99


def collinear_pairs(frame: pd.DataFrame, columns: list[str], *,
                    threshold: float = COLLINEAR_THRESHOLD) -> list[tuple[str, str, float]]:
    """Pairs of columns whose Pearson correlation exceeds ``threshold`` in absolute value.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows to measure on (the training split), at least two.
    columns : list of str
        The feature columns, shape ``(n_samples, n_features)`` once selected.
    threshold : float
        In (0, 1].

    Returns
    -------
    list of (str, str, float)
        ``(a, b, correlation)`` with ``a`` before ``b`` in ``columns``, strongest
        first. A constant column correlates with nothing.
    """
    if not 0 < threshold <= 1:
        raise ScalingError(f"collinear threshold: got {threshold!r}; expected a number in (0, 1]")
    X = frame[columns].to_numpy(dtype="float64")
    if len(columns) < 2 or len(X) < 2:
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(X, rowvar=False)
    i, j = np.triu_indices(len(columns), k=1)
    r = corr[i, j]
    hit = np.flatnonzero(np.abs(r) > threshold)  # NaN (a constant column) is never above
    hit = hit[np.argsort(-np.abs(r[hit]), kind="stable")]
    return [(columns[i[h]], columns[j[h]], float(r[h])) for h in hit]


@dataclass
class Scaler:
    """Centre-and-scale transform of named feature columns.

    Parameters
    ----------
    method : {'standard', 'robust'}
        Mean and standard deviation, or median and interquartile range.
    clip : float, optional
        After scaling, clip values to ``[-clip, clip]``.
    collinear_threshold : float
        ``collinear_`` lists the pairs of features whose correlation on the
        training rows exceeds this in absolute value.
    """

    method: str = "standard"
    clip: float | None = None
    collinear_threshold: float = COLLINEAR_THRESHOLD
    columns_: list[str] = field(default_factory=list)
    center_: np.ndarray = field(default_factory=lambda: np.empty(0))
    scale_: np.ndarray = field(default_factory=lambda: np.empty(0))
    n_samples_: int = 0
    collinear_: list[tuple[str, str, float]] = field(default_factory=list)

    def fit(self, frame: pd.DataFrame, columns: list[str]) -> Scaler:
        """Fit on ``frame[columns]`` (the training split), shape ``(n_samples, n_features)``."""
        X = frame[columns].to_numpy(dtype="float64")
        if len(X) < 2:
            raise ScalingError(f"scale: the training split has {len(X)} rows; need at least 2")
        if self.method == "standard":
            sk = StandardScaler().fit(X)
            center, spread = sk.mean_, np.sqrt(sk.var_)
        elif self.method == "robust":
            sk = RobustScaler().fit(X)
            center, spread = sk.center_, _iqr(X)
        else:
            raise ScalingError(f"scale.method: {self.method!r}; expected 'standard' or 'robust'")
        # A spread that is rounding noise next to the values is a constant column.
        magnitude = np.maximum(1.0, np.abs(X).max(axis=0))
        flat = [c for c, s, m in zip(columns, spread, magnitude) if not s > 1e-12 * m]
        if flat:
            raise ScalingError(
                f"scale: feature {flat[0]!r} is constant on the training split ("
                f"{'spread' if self.method == 'robust' else 'standard deviation'} 0); remove it "
                "from features.columns"
            )
        self.columns_ = list(columns)
        self.center_ = np.asarray(center, dtype="float64")
        self.scale_ = np.asarray(sk.scale_, dtype="float64")
        self.n_samples_ = len(X)
        self.collinear_ = collinear_pairs(frame, list(columns), threshold=self.collinear_threshold)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``frame`` with the fitted columns scaled (and clipped)."""
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise ScalingError(f"scale: column {missing[0]!r} is missing from the data to scale")
        out = frame.copy()
        out[self.columns_] = self.transform_array(frame[self.columns_].to_numpy(dtype="float64"))
        return out

    def transform_array(self, X: np.ndarray) -> np.ndarray:
        """The fitted columns' values, shape ``(n_samples, n_features)``, scaled (and clipped)."""
        X = (X - self.center_) / self.scale_
        return X if self.clip is None else np.clip(X, -self.clip, self.clip)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        return {
            "method": self.method,
            "clip": self.clip,
            "columns": self.columns_,
            "center": self.center_.tolist(),
            "scale": self.scale_.tolist(),
            "n_samples": self.n_samples_,
            "collinear_threshold": self.collinear_threshold,
            "collinear": [[a, b, r] for a, b, r in self.collinear_],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        """Rebuild a fitted scaler from :meth:`to_dict`'s output."""
        try:
            scaler = cls(method=data["method"], clip=data["clip"])
            scaler.columns_ = list(data["columns"])
            scaler.center_ = np.asarray(data["center"], dtype="float64")
            scaler.scale_ = np.asarray(data["scale"], dtype="float64")
            scaler.n_samples_ = int(data["n_samples"])
            # Scalers saved before the collinearity check have neither key.
            scaler.collinear_threshold = float(data.get("collinear_threshold",
                                                        COLLINEAR_THRESHOLD))
            scaler.collinear_ = [(str(a), str(b), float(r))
                                 for a, b, r in data.get("collinear", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise ScalingError(f"scaler parameters: missing or malformed field {exc}") from None
        if not (len(scaler.columns_) == len(scaler.center_) == len(scaler.scale_)):
            raise ScalingError("scaler parameters: columns, center and scale differ in length")
        return scaler


def _iqr(X: np.ndarray) -> np.ndarray:
    """Interquartile range per column, shape ``(n_features,)``."""
    q75, q25 = np.percentile(X, [75, 25], axis=0)
    return q75 - q25


def fit_scaler(
    train: pd.DataFrame, *, columns: list[str], method: str = "standard",
    clip: float | None = None,
) -> Scaler:
    """Fit a :class:`Scaler` on the training split; warn of nearly collinear features."""
    scaler = Scaler(method=method, clip=clip).fit(train, columns)
    log.info("scale: %s scaler fitted on %d training rows, %d features", method,
             scaler.n_samples_, len(columns))
    if scaler.collinear_:
        shown = "; ".join(f"{a} ~ {b} ({r:+.4f})" for a, b, r in scaler.collinear_)
        log.warning("scale: %d pair(s) of features correlate beyond %g on train, so a full "
                    "covariance over them is close to singular: %s", len(scaler.collinear_),
                    scaler.collinear_threshold, shown)
    return scaler

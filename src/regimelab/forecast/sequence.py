"""Sequence classifiers (GRU, LSTM, Transformer) on windows of the forecast inputs.

The window of bar t is the ``window`` input rows ending at t inside its run
(split, symbol and segment: :func:`~regimelab.forecast.targets.run_ids`); a
window that would reach before the run's first row repeats that row instead.
So a window holds bars up to t only, and every input in it is itself known at
the close of its bar. The networks read the window and give class
probabilities for bar t: the recurrent ones from their last hidden state, the
Transformer (learned positions, no mask: every position is at or before t)
from its last position.

Fitting trains with Lightning (CPU, deterministic algorithms, ``num_threads``
intra-op threads, the seed fixed) on the fit's rows but its last
``VALIDATION_SHARE``, which decide early stopping; the best epoch's weights
are kept. The rows a caller passes are all the fit sees: in tuning a fold's
training rows, in the final fit the train and val splits; never test.

A model folder holds ``weights.safetensors`` (the state dict, no pickle) and
``manifest.json`` (the settings, the classes, the tuned parameters, library
versions); :func:`load_sequence` rebuilds the classifier from them.

This module imports numpy, torch and safetensors only (a core install's): the
training loop and its Lightning import live in
:mod:`regimelab.forecast.sequence_fit`, imported by ``fit``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from regimelab.exceptions import ModelError
from regimelab.forecast.apply import WEIGHTS_FILE as WEIGHTS_FILE
from regimelab.io import atomic_path, read_json, write_json

if TYPE_CHECKING:
    import optuna

#: The sequence models, by their params.yaml name.
SEQUENCE_MODELS = ("gru", "lstm", "transformer")
#: The share of a fit's rows (its latest) that decides early stopping.
VALIDATION_SHARE = 0.2
#: Rows per forward pass when predicting.
PREDICT_BATCH = 4096
#: Standardised inputs are clipped to +- this many training standard deviations.
CLIP = 10.0


@dataclass(frozen=True)
class Windows:
    """Windows of ``length`` rows over an input matrix, built lazily.

    ``base`` is the input matrix with ``length - 1`` copies of each run's first row
    put before the run; ``ends[i]`` is the position in ``base`` of window ``i``'s last
    row (bar t). Indexing by rows gives the windows of those rows (same ``base``).
    """

    base: np.ndarray
    ends: np.ndarray
    length: int

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, rows: Any) -> Windows:
        return Windows(self.base, self.ends[rows], self.length)

    @property
    def n_inputs(self) -> int:
        return int(self.base.shape[1])

    def array(self, rows: slice | None = None) -> np.ndarray:
        """The windows (of ``rows`` of them), shape ``(n, length, n_inputs)``, float32."""
        ends = self.ends if rows is None else self.ends[rows]
        index = ends[:, None] + np.arange(1 - self.length, 1)[None, :]
        return self.base[index]

    def fingerprint(self) -> bytes:
        """Bytes that only the same windows share (for a study's name)."""
        return (np.ascontiguousarray(self.base).tobytes() + self.ends.tobytes()
                + str(self.length).encode())


def make_windows(X: np.ndarray, runs: np.ndarray, length: int) -> Windows:
    """The :class:`Windows` of every row of ``X`` (shape ``(n_samples, n_inputs)``) with
    run ids ``runs`` (shape ``(n_samples,)``, equal ids contiguous)."""
    X = np.asarray(X, dtype=np.float32)
    runs = np.asarray(runs)
    if len(X) != len(runs):
        raise ModelError(f"{len(X)} input rows but {len(runs)} run ids")
    if length < 1:
        raise ModelError(f"forecast.sequence_window: {length}; expected an integer >= 1")
    starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]]) if len(X) else np.zeros(
        0, dtype=np.int64)
    pieces, ends, offset = [], [], 0
    for start, stop in zip(starts, [*starts[1:], len(X)], strict=True):
        pad = np.repeat(X[start:start + 1], length - 1, axis=0)
        pieces.extend([pad, X[start:stop]])
        offset += length - 1
        ends.append(np.arange(start, stop) + offset)
    base = np.concatenate(pieces) if pieces else np.zeros((0, X.shape[1]), dtype=np.float32)
    return Windows(np.ascontiguousarray(base),
                   np.concatenate(ends).astype(np.int64) if ends else np.zeros(0, np.int64),
                   length)


def suggest(trial: optuna.Trial | optuna.trial.FixedTrial, name: str) -> dict[str, Any]:
    """One point of sequence model ``name``'s (small) search space."""
    if name not in SEQUENCE_MODELS:
        raise ModelError(f"forecast.models: {name!r} is not a sequence model; expected one "
                         f"of {', '.join(SEQUENCE_MODELS)}")
    return {"hidden": trial.suggest_categorical("hidden", [8, 16, 32]),
            "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3)}


class SequenceNet(nn.Module):
    """A window ``(batch, window, n_inputs)`` to class logits ``(batch, n_classes)``."""

    def __init__(self, kind: str, *, n_inputs: int, n_classes: int, window: int,
                 hidden: int, dropout: float) -> None:
        super().__init__()
        self.kind = kind
        # The inputs' training mean and spread (set by the fit, saved with the weights):
        # the regime's age counts bars in the thousands, the features are scaled.
        self.register_buffer("shift", torch.zeros(n_inputs))
        self.register_buffer("scale", torch.ones(n_inputs))
        self.encoder: nn.Module
        if kind == "transformer":
            self.embed = nn.Linear(n_inputs, hidden)
            self.position = nn.Parameter(torch.zeros(window, hidden))
            layer = nn.TransformerEncoderLayer(hidden, nhead=2, dim_feedforward=2 * hidden,
                                               dropout=dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=1,
                                                 enable_nested_tensor=False)
        elif kind in ("gru", "lstm"):
            rnn = nn.GRU if kind == "gru" else nn.LSTM
            self.encoder = rnn(n_inputs, hidden, num_layers=1, batch_first=True)
        else:
            raise ModelError(f"forecast.models: {kind!r} is not a sequence model; expected "
                             f"one of {', '.join(SEQUENCE_MODELS)}")
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x - self.get_buffer("shift")) / self.get_buffer("scale")).clamp(-CLIP, CLIP)
        if self.kind == "transformer":
            out = self.encoder(self.embed(x) + self.position)
        else:
            out, _ = self.encoder(x)
        logits: torch.Tensor = self.head(self.drop(out[:, -1]))
        return logits


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SequenceClassifier:
    """A GRU, LSTM or Transformer classifier of :class:`Windows` with the scikit-learn
    calls the forecast stage makes (``fit``, ``predict_proba``, ``classes_``).

    Parameters
    ----------
    kind : str
        ``gru``, ``lstm`` or ``transformer``.
    window : int
        Rows per window (the windows given must have this length).
    hidden : int
        Hidden size (the Transformer's model width).
    lr : float
        Adam's learning rate.
    dropout : float
        Dropout before the head (and inside the Transformer layer).
    max_epochs, patience, batch_size : int
        Training length, early-stopping patience (epochs), batch size.
    num_threads : int
        torch's intra-op threads.
    random_state : int
        Seed of the weights and the batch order.
    """

    def __init__(self, kind: str, *, window: int, hidden: int = 16, lr: float = 3e-3,
                 dropout: float = 0.1, max_epochs: int = 5, patience: int = 2,
                 batch_size: int = 64, num_threads: int = 1, random_state: int = 0) -> None:
        if kind not in SEQUENCE_MODELS:
            raise ModelError(f"forecast.models: {kind!r} is not a sequence model; expected "
                             f"one of {', '.join(SEQUENCE_MODELS)}")
        self.kind = kind
        self.window = window
        self.hidden = hidden
        self.lr = lr
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments."""
        return {k: getattr(self, k) for k in (
            "kind", "window", "hidden", "lr", "dropout", "max_epochs", "patience",
            "batch_size", "num_threads", "random_state")}

    def _net(self, n_inputs: int, n_classes: int) -> SequenceNet:
        return SequenceNet(self.kind, n_inputs=n_inputs, n_classes=n_classes,
                           window=self.window, hidden=self.hidden, dropout=self.dropout)

    def fit(self, X: Windows, y: np.ndarray) -> SequenceClassifier:
        """Train on the windows ``X`` and labels ``y`` (early stopping on their latest
        :data:`VALIDATION_SHARE`)."""
        if X.length != self.window:
            raise ModelError(f"windows of {X.length} rows given to a model of {self.window}")
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        codes = np.searchsorted(self.classes_, y).astype(np.int64)
        n_val = max(1, int(round(len(X) * VALIDATION_SHARE))) if len(X) > 1 else 0
        cut = len(X) - n_val
        if cut < 1:
            raise ModelError(f"{len(X)} rows are too few to fit a {self.kind}")
        # Lightning is the pipeline extra's: a core install loads and applies the model.
        from regimelab.forecast.sequence_fit import train_net
        with _torch_threads(self.num_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            net = self._net(X.n_inputs, len(self.classes_))
            train = X.array(slice(0, cut))
            last = train[:, -1, :].astype(np.float64)
            spread = last.std(axis=0)
            with torch.no_grad():
                net.get_buffer("shift").copy_(torch.from_numpy(last.mean(axis=0)))
                net.get_buffer("scale").copy_(torch.from_numpy(np.where(spread > 0, spread, 1.0)))
            self.epochs_, self.best_epoch_ = train_net(
                net, train, codes[:cut], X.array(slice(cut, None)),
                codes[cut:], lr=self.lr, max_epochs=self.max_epochs, patience=self.patience,
                batch_size=self.batch_size, seed=self.random_state)
        self.net_ = net.eval()
        self.n_inputs_ = X.n_inputs
        return self

    def predict_proba(self, X: Windows) -> np.ndarray:
        """Class probabilities, shape ``(len(X), len(classes_))``, float64."""
        out = np.zeros((len(X), len(self.classes_)))
        with _torch_threads(self.num_threads), torch.inference_mode():
            for start in range(0, len(X), PREDICT_BATCH):
                part = torch.from_numpy(X.array(slice(start, start + PREDICT_BATCH)))
                out[start:start + len(part)] = torch.softmax(
                    self.net_(part).double(), dim=1).numpy()
        return out


def make_sequence(name: str, params: dict[str, Any], *, settings: SequenceSettings,
                  seed: int) -> SequenceClassifier:
    """An unfitted :class:`SequenceClassifier` ``name`` with tuned ``params``."""
    return SequenceClassifier(name, window=settings.window, max_epochs=settings.max_epochs,
                              patience=settings.patience, batch_size=settings.batch_size,
                              num_threads=settings.num_threads, random_state=seed, **params)


@dataclass(frozen=True)
class SequenceSettings:
    """What params fix for every sequence model (not tuned)."""

    window: int = 16
    max_epochs: int = 5
    patience: int = 2
    batch_size: int = 64
    max_train_rows: int | None = 1500
    num_threads: int = 1


def save_sequence(model: SequenceClassifier, folder: str | Path, *,
                  manifest: dict[str, Any]) -> None:
    """Write ``weights.safetensors`` and ``manifest.json`` (``manifest`` plus the settings,
    classes and library versions) to ``folder``; no pickle."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.net_.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    write_json({**manifest, "format": "sequence", "settings": model.get_params(),
                "model_classes": model.classes_.tolist(), "n_inputs": model.n_inputs_,
                "fit": {"epochs": model.epochs_, "best_epoch": model.best_epoch_},
                "torch_version": version("torch")}, folder / "manifest.json")


def load_sequence(folder: str | Path) -> tuple[SequenceClassifier, dict[str, Any]]:
    """The classifier and manifest in ``folder`` (:func:`save_sequence`'s files); the
    weights are read with safetensors, nothing is unpickled."""
    folder = Path(folder)
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: no {WEIGHTS_FILE}; expected a sequence forecaster folder")
    try:
        manifest = read_json(folder / "manifest.json")
        state = load_file(str(path))
        model = SequenceClassifier(**manifest["settings"])
        model.classes_ = np.asarray(manifest["model_classes"])
        model.n_inputs_ = int(manifest["n_inputs"])
        model.epochs_ = int(manifest["fit"]["epochs"])
        model.best_epoch_ = int(manifest["fit"]["best_epoch"])
        net = model._net(model.n_inputs_, len(model.classes_))
        net.load_state_dict(state, strict=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"{folder}: cannot load the sequence forecaster ({exc})") from None
    model.net_ = net.eval()
    return model, manifest


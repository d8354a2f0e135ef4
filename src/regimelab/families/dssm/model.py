"""``RegimeDSSM``: the deep state-space model behind the shared regime-model interface.

Fitting trains :class:`~regimelab.families.dssm.net.DSSMNet` with Lightning on windows
of the training sequences (early stopping on the validation loss, the best
checkpoint kept, gradients clipped). Inference runs the trained network once
over each whole sequence in float64 and applies the exact recursions of
:mod:`regimelab.families.dssm.recursions`, so ``score`` is the exact log-likelihood in
nats, in the same units as the HMM's, and ``filter_proba`` never looks ahead.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from scipy.special import log_softmax

from regimelab.exceptions import ModelError
from regimelab.families.dssm import recursions
from regimelab.families.dssm.infer import NumpyPass, Terms
from regimelab.families.dssm.net import DSSMNet
from regimelab.io import read_json, replace_dir, write_json
from regimelab.regimes import volatility_order

log = logging.getLogger(__name__)

WEIGHTS = "weights.safetensors"

_PARAM_NAMES = ("n_states", "hidden", "transition", "emission", "max_log_scale", "min_covar",
                "stickiness", "window",
                "stride", "burn_in", "batch_size", "max_epochs", "patience", "lr",
                "weight_decay", "gradient_clip", "min_occupancy", "accelerator", "num_threads",
                "random_state")
# How many arrays' inference terms a model keeps (train, val, test and one more).
_CACHED_ARRAYS = 4
#: The network's regime parameters (what ``init_from_hmm`` sets); the rest is the context.
REGIME_PARAMETERS = ("start_logits", "trans_logits", "means", "chol_lower", "chol_log_diag")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads: the results then do not depend on the machine's
    core count (float sums are split by thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _split(X: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.sum() != len(X) or (lengths <= 0).any():
        raise ModelError(f"lengths sum to {lengths.sum()} but X has {len(X)} rows")
    return np.split(X, np.cumsum(lengths)[:-1])


class RegimeDSSM:
    """Deep state-space model of regimes with a GRU context network.

    Parameters
    ----------
    n_states : int
        Number of regimes K.
    hidden : int
        GRU state size.
    transition : {'static', 'context'}
        Whether the context modulates the transitions (see :class:`DSSMNet`).
    emission : {'scale', 'static'}
        Whether the context scales the emissions' spread.
    max_log_scale : float
        Bound on the context's log-scale of each feature.
    min_covar : float
        Added to the diagonal of every emission covariance, the context's included,
        as :class:`RegimeHMM` adds its ``min_covar`` after every M-step (the same
        default), so the two families are regularised alike. A model saved before
        the floor existed loads with 0.
    stickiness : float
        A sticky Dirichlet prior on the chain, as :class:`RegimeHMM`'s: 1 about
        doubles an average regime's expected dwell (see :class:`DSSMModule`).
    window, stride, burn_in : int
        Training windows of ``window`` bars every ``stride`` bars; a window inside a
        sequence warms up on its first ``burn_in`` bars.
    batch_size, max_epochs, patience, lr, weight_decay, gradient_clip : training
        ``patience``: epochs without a better validation loss before stopping.
    min_occupancy : float
        A state with a smaller share of the bars is reported as collapsed.
    accelerator : str
        Lightning's accelerator for training (``'cpu'``, ``'auto'``, ``'gpu'``).
        Inference runs on the CPU in float64.
    num_threads : int
        torch's intra-op threads on the CPU.
    random_state : int
        Seeds the network's initial weights and the order of the batches.
    """

    #: ``score`` is the exact log-likelihood in nats.
    has_likelihood = True

    def __init__(self, n_states: int, *, hidden: int = 32, transition: str = "static",
                 emission: str = "scale", max_log_scale: float = 1.0,
                 min_covar: float = 1e-3, stickiness: float = 0.0, window: int = 256,
                 stride: int = 224, burn_in: int = 32, batch_size: int = 32,
                 max_epochs: int = 40, patience: int = 5, lr: float = 1e-2,
                 weight_decay: float = 0.0, gradient_clip: float = 1.0,
                 min_occupancy: float = 0.002, accelerator: str = "cpu", num_threads: int = 1,
                 random_state: int = 0) -> None:
        self.n_states = n_states
        self.hidden = hidden
        self.transition = transition
        self.emission = emission
        self.max_log_scale = max_log_scale
        self.min_covar = min_covar
        self.stickiness = stickiness
        self.window = window
        self.stride = stride
        self.burn_in = burn_in
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.lr = lr
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.min_occupancy = min_occupancy
        self.accelerator = accelerator
        self.num_threads = num_threads
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments."""
        return {k: getattr(self, k) for k in _PARAM_NAMES}

    def _new_net(self, n_features: int) -> DSSMNet:
        return DSSMNet(self.n_states, n_features, hidden=self.hidden,
                       transition=self.transition, emission=self.emission,
                       max_log_scale=self.max_log_scale, min_covar=self.min_covar)

    # -- fitting -------------------------------------------------------------------------

    def fit(self, X: np.ndarray, lengths: np.ndarray, *, X_val: np.ndarray,
            lengths_val: np.ndarray, init: Any = None, feature_names: list[str] | None = None,
            log_dir: str | Path | None = None, progress_bar: bool = False,
            warm_weights: dict[str, torch.Tensor] | None = None) -> RegimeDSSM:
        """Train on ``X`` with early stopping on ``X_val``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        lengths : ndarray of shape (n_sequences,)
            Rows per gap-free sequence; no window crosses from one into the next.
        X_val, lengths_val : ndarray
            The validation sequences, in the same layout.
        init : fitted Gaussian HMM, optional
            Anything with ``startprob_``, ``transmat_``, ``means_`` and full
            ``covars_`` of K states, such as a :class:`~regimelab.families.hmm.model.RegimeHMM`.
            The regime parameters start there and the network's output layers at
            zero, so training starts from exactly that HMM. Without one, a
            full-covariance RegimeHMM is fitted first.
        feature_names : list of str, optional
            Column names of ``X``; they pick the volatility feature that orders the states.
        log_dir : path, optional
            Where DVCLive writes the training curves (nothing is logged without one).
        progress_bar : bool
            Lightning's progress bar (for people at a terminal).
        warm_weights : dict, optional
            A previous fit's ``net_.state_dict()`` (same states, features and sizes):
            the context network (GRU and heads) starts from its weights instead of
            fresh ones; the regime parameters still start from ``init``.
        """
        X = np.asarray(X, dtype=np.float64)
        X_val = np.asarray(X_val, dtype=np.float64)
        _split(X, lengths)  # validates the lengths
        _split(X_val, lengths_val)
        self.feature_names_ = list(feature_names) if feature_names is not None else []
        if self.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ModelError(f"dssm.accelerator: {self.accelerator!r} but torch finds no CUDA "
                             "device; use 'cpu', or 'auto' to take a GPU only when there is one")
        init = self._initial_hmm(X, lengths) if init is None else init
        if init.means_.shape != (self.n_states, X.shape[1]):
            raise ModelError(f"the initial HMM has means of shape {init.means_.shape}; expected "
                             f"({self.n_states}, {X.shape[1]}): the same states and features")
        with torch_threads(self.num_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            net = self._new_net(X.shape[1]).double()
            net.init_from_hmm(init.startprob_, init.transmat_, init.means_, init.covars_)
            if warm_weights is not None:
                context = {k: v for k, v in warm_weights.items() if k not in REGIME_PARAMETERS}
                try:
                    net.load_state_dict(context, strict=False)
                except RuntimeError as exc:
                    raise ModelError(f"warm_weights do not fit this network: {exc}") from None
            self._attach(net)
            self.init_log_likelihood_ = self.score(X, lengths)
            self._train(net, X, lengths, X_val, lengths_val, log_dir, progress_bar)
            self._attach(net)
            order, rule = volatility_order(self.means_, self.covars_, self.feature_names_)
            self.permute(order)
            self.state_order_ = {"rule": "ascending volatility", **rule}
            self.log_likelihood_ = self.score(X, lengths)
            self.transmat_ = self._average_transmat(X, lengths)
        self.n_samples_ = len(X)
        return self

    def _initial_hmm(self, X: np.ndarray, lengths: np.ndarray) -> Any:
        from regimelab.families.hmm.model import RegimeHMM

        # The same floor as the DSSM's (the HMM needs one: its default without).
        return RegimeHMM(self.n_states, covariance_type="full", n_init=3,
                         min_covar=self.min_covar if self.min_covar > 0 else 1e-3,
                         random_state=self.random_state).fit(X, lengths)

    def _train(self, net: DSSMNet, X: np.ndarray, lengths: np.ndarray, X_val: np.ndarray,
               lengths_val: np.ndarray, log_dir: str | Path | None, progress_bar: bool) -> None:
        # Lightning is imported here rather than with the module: loading a trained
        # model for inference needs none of it, and importing it takes seconds.
        import lightning.pytorch as pl
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        from regimelab.families.dssm.data import WindowDataModule, make_windows
        from regimelab.families.dssm.module import DSSMModule, EpochHistory

        shape = {"window": self.window, "stride": self.stride, "burn_in": self.burn_in}
        data = WindowDataModule(make_windows(X, lengths, **shape),
                                make_windows(X_val, lengths_val, **shape),
                                batch_size=self.batch_size, seed=self.random_state)
        module = DSSMModule(net, lr=self.lr, weight_decay=self.weight_decay,
                            min_occupancy=self.min_occupancy, stickiness=self.stickiness)
        history = EpochHistory()
        with tempfile.TemporaryDirectory(prefix="regimelab-dssm-") as tmp:
            checkpoint = ModelCheckpoint(dirpath=tmp, filename="best", monitor="val/loss",
                                         mode="min", save_top_k=1)
            logger: Any = False
            if log_dir is not None:
                from dvclive.lightning import DVCLiveLogger

                # Not a DVC experiment of its own, and no dvc.yaml: the pipeline declares
                # the curves as plots of train-dssm.
                logger = DVCLiveLogger(dir=str(log_dir), save_dvc_exp=False, dvcyaml=False,
                                       report=None)
            # float64: in float32 a crash candle's emissions, hundreds of nats apart,
            # underflow together and the filter's normaliser becomes zero.
            trainer = pl.Trainer(
                max_epochs=self.max_epochs, accelerator=self.accelerator, devices=1,
                precision="64-true",
                deterministic=True, gradient_clip_val=self.gradient_clip,
                callbacks=[checkpoint, EarlyStopping(monitor="val/loss", mode="min",
                                                     patience=self.patience), history],
                logger=logger, enable_progress_bar=progress_bar, enable_model_summary=False,
                log_every_n_steps=1, default_root_dir=tmp, num_sanity_val_steps=0)
            with warnings.catch_warnings():
                # The windows are in memory: loader workers would only add start-up time.
                warnings.filterwarnings("ignore", message=".*does not have many workers.*")
                # Lightning 2.6 calls a torch API that torch 2.13 deprecates.
                warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
                trainer.fit(module, datamodule=data)
            best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        net.load_state_dict({k.removeprefix("net."): v for k, v in best["state_dict"].items()})
        net.cpu()
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise ModelError("train-dssm: the weights became NaN or infinite; try a smaller "
                             "dssm.lr or dssm.gradient_clip")
        self.history_ = history.rows
        self.epochs_ = len(history.rows)
        losses = np.array([r["val_loss"] for r in history.rows])
        if not np.isfinite(losses).any():
            raise ModelError("train-dssm: the validation loss was never finite; try a smaller "
                             "dssm.lr or dssm.gradient_clip")
        # The checkpoint holds the best finite epoch; a NaN epoch never counts as best.
        self.best_epoch_ = int(np.nanargmin(np.where(np.isfinite(losses), losses, np.nan)))
        self.best_val_loss_ = float(history.rows[self.best_epoch_]["val_loss"])
        self.collapsed_epochs_ = module.collapsed_epochs
        seconds = sum(r["seconds"] for r in history.rows)
        log.info("trained %d epochs in %.1f s (%.2f s per epoch); best epoch %d, validation "
                 "loss %.4f nats per bar", self.epochs_, seconds, seconds / max(self.epochs_, 1),
                 self.best_epoch_, self.best_val_loss_)

    # -- the network, in float64, for inference -------------------------------------------

    def _attach(self, net: DSSMNet) -> None:
        """Keep ``net`` (float64 weights) and its numpy pass for inference."""
        self.net_ = net.double()
        self._pass = NumpyPass(net)
        self._cache: dict[bytes, list[Terms]] = {}

    def _terms(self, X: np.ndarray, lengths: np.ndarray) -> list[Terms]:
        """Each sequence's terms. The pass is a loop over bars (about 40 us each), and
        a stage asks for the score, the path and both posteriors of the same bars, so
        the last few results are kept, keyed by the bytes of ``X`` and ``lengths``."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        key = hashlib.blake2b(repr(X.shape).encode() + X.tobytes() + lengths.tobytes(),
                              digest_size=16).digest()
        if key not in self._cache:
            if len(self._cache) >= _CACHED_ARRAYS:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = [self._pass.terms(seq) for seq in _split(X, lengths)]
        return self._cache[key]

    # -- the shared regime-model interface -----------------------------------------------

    def predict(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Most likely state path (Viterbi), shape ``(n_samples,)``."""
        return np.concatenate([recursions.viterbi(t.log_start, t.log_trans, t.log_emit)
                               for t in self._terms(X, lengths)])

    def predict_proba(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Smoothed posteriors P(state_t | the whole sequence), shape ``(n_samples, K)``."""
        return np.concatenate([
            recursions.smooth(recursions.forward(t.log_start, t.log_trans, t.log_emit))
            for t in self._terms(X, lengths)])

    def filter_proba(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Filtered posteriors P(state_t | bars up to t), shape ``(n_samples, K)``.

        The context at t reads only earlier bars and the forward pass only bars
        up to t, so appending bars never changes an earlier row.
        """
        return np.concatenate([recursions.forward(t.log_start, t.log_trans, t.log_emit).filtered
                               for t in self._terms(X, lengths)])

    def score(self, X: np.ndarray, lengths: np.ndarray) -> float:
        """Exact total log-likelihood of ``X`` in nats (the forward algorithm)."""
        return float(sum(recursions.forward(t.log_start, t.log_trans, t.log_emit).log_likelihood
                         for t in self._terms(X, lengths)))

    def loglik_per_bar(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Predictive log-likelihood of each bar, log p(x_t | x_1..t-1) in nats, shape
        ``(n_samples,)``, restarting at each sequence; the values sum to :meth:`score`.

        The forward pass's normaliser at t, with the row's largest log-emission that
        the pass subtracts added back.
        """
        out = [np.log(recursions.forward(t.log_start, t.log_trans, t.log_emit).scaling)
               + t.log_emit.max(axis=1) for t in self._terms(X, lengths)]
        return np.concatenate(out) if out else np.empty(0)

    def _average_transmat(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The transition matrix, or with ``transition='context'`` the average of the
        bar-by-bar matrices weighted by the smoothed probability of the state they leave."""
        if self.transition == "static":
            return np.exp(log_softmax(self._pass.trans_logits, axis=1))
        num = np.zeros((self.n_states, self.n_states))
        den = np.zeros(self.n_states)
        for t in self._terms(X, lengths):
            gamma = recursions.smooth(recursions.forward(t.log_start, t.log_trans, t.log_emit))
            num += np.einsum("ti,tij->ij", gamma[:-1], np.exp(t.log_trans[1:]))
            den += gamma[:-1].sum(axis=0)
        return num / np.maximum(den, 1e-300)[:, None]

    # -- the regime parameters, as the HMM names them ------------------------------------

    @property
    def startprob_(self) -> np.ndarray:
        return np.exp(self._pass.log_start)

    @property
    def means_(self) -> np.ndarray:
        """Each regime's emission mean with no context, shape ``(K, n_features)``."""
        return self._pass.means.copy()

    @property
    def covars_(self) -> np.ndarray:
        """Each regime's emission covariance with no context, the floor included, shape
        ``(K, D, D)``."""
        return self._pass.covariances.copy()

    def permute(self, order: np.ndarray) -> None:
        """Renumber the states: new state ``i`` is old state ``order[i]``."""
        order = np.asarray(order, dtype=np.int64)
        index = torch.as_tensor(order)
        k = self.n_states
        net = self.net_
        with torch.no_grad():
            for name in ("start_logits", "means", "chol_lower", "chol_log_diag"):
                param = getattr(net, name)
                param.copy_(param[index])
            net.trans_logits.copy_(net.trans_logits[index][:, index])
            if net.trans_head is not None:  # its outputs are the K x K logits, row-major
                weight = net.trans_head.weight.view(k, k, -1)
                net.trans_head.weight.copy_(weight[index][:, index].reshape(k * k, -1))
                bias = net.trans_head.bias.view(k, k)
                net.trans_head.bias.copy_(bias[index][:, index].reshape(-1))
        if hasattr(self, "transmat_"):
            self.transmat_ = self.transmat_[np.ix_(order, order)]
        self._attach(net)

    # -- persistence ---------------------------------------------------------------------

    def save(self, folder: str | Path, *, manifest: dict[str, Any]) -> None:
        """Write ``weights.safetensors`` (the state dict, no pickle) and ``manifest.json``.

        Both are written into a folder beside ``folder`` and swapped in together, so
        an interruption never leaves new weights next to an old manifest.
        """
        folder = Path(folder)
        staging = folder.with_name(f".{folder.name}.tmp")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()}
        save_file(state, str(staging / WEIGHTS))
        write_json({
            **manifest,
            "model": "dssm",
            "n_states": self.n_states,
            "n_features": self.net_.n_features,
            "features": self.feature_names_,
            "state_order": self.state_order_,
            "settings": self.get_params(),
            "transmat": self.transmat_,
            "fit": {"log_likelihood": self.log_likelihood_, "n_samples": self.n_samples_,
                    "epochs": self.epochs_, "best_epoch": self.best_epoch_,
                    "best_val_loss": self.best_val_loss_,
                    "init_log_likelihood": self.init_log_likelihood_},
        }, staging / "manifest.json")
        replace_dir(staging, folder)

    @classmethod
    def load(cls, folder: str | Path) -> RegimeDSSM:
        """Rebuild a fitted model from :meth:`save`'s files; nothing is unpickled."""
        folder = Path(folder)
        try:
            manifest = read_json(folder / "manifest.json")
            state = load_file(str(folder / WEIGHTS))
        except (OSError, ValueError, SafetensorError) as exc:
            raise ModelError(f"{folder}: cannot load the DSSM ({exc})") from None
        if manifest.get("model") != "dssm":
            raise ModelError(f"{folder}: manifest.json describes {manifest.get('model')!r}, "
                             "not a dssm")
        try:
            # A model saved before dssm.min_covar existed was trained without a floor.
            self = cls(**{"min_covar": 0.0, **manifest["settings"]})
            # float64 before the weights go in: a float32 net would round them on the way.
            net = self._new_net(int(manifest.get("n_features", len(manifest["features"])))
                                ).double()
            fit = manifest["fit"]
            net.load_state_dict(state, strict=True)
            self._attach(net)
            self.feature_names_ = list(manifest["features"])
            self.state_order_ = manifest["state_order"]
            self.transmat_ = np.asarray(manifest["transmat"], dtype=np.float64)
            self.log_likelihood_ = fit["log_likelihood"]
            self.n_samples_ = fit["n_samples"]
            self.epochs_ = fit["epochs"]
            self.best_epoch_ = fit["best_epoch"]
            self.best_val_loss_ = fit["best_val_loss"]
            self.init_log_likelihood_ = fit["init_log_likelihood"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{folder / 'manifest.json'}: not a DSSM manifest this version "
                             f"can read ({type(exc).__name__}: {exc})") from None
        except RuntimeError as exc:
            raise ModelError(f"{folder / WEIGHTS}: does not match manifest.json "
                             f"({str(exc).splitlines()[0]})") from None
        return self

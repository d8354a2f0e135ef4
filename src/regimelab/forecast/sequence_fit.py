"""Training of the sequence forecasters' networks with Lightning (the pipeline extra).

:meth:`~regimelab.forecast.sequence.SequenceClassifier.fit` imports this module
when it fits, so that :mod:`regimelab.forecast.sequence` (loading a saved model
and predicting) needs only torch and safetensors, which a core install has.
"""

from __future__ import annotations

import copy
import warnings

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from regimelab.exceptions import ModelError
from regimelab.forecast.sequence import PREDICT_BATCH, SequenceNet
from regimelab.stage import quiet


def train_net(net: SequenceNet, X: np.ndarray, y: np.ndarray, X_val: np.ndarray,
              y_val: np.ndarray, *, lr: float, max_epochs: int, patience: int,
              batch_size: int, seed: int) -> tuple[int, int]:
    """Fit ``net`` with Lightning; it ends with the best validation epoch's weights.
    Returns the epochs run and the best epoch."""
    from lightning.pytorch.callbacks import EarlyStopping
    from torch.utils.data import DataLoader, TensorDataset

    module = _Module(net, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
                       batch_size=batch_size, shuffle=True, generator=generator)
    val = DataLoader(TensorDataset(torch.from_numpy(X_val), torch.from_numpy(y_val)),
                     batch_size=PREDICT_BATCH, shuffle=False)
    # The Trainer logs its notes (no GPU, a tip) when it is built: inside the quiet block.
    with warnings.catch_warnings(), quiet("lightning.pytorch"):
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
        trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1,
                             deterministic=True, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0,
                             callbacks=[EarlyStopping(monitor="val_loss", mode="min",
                                                      patience=patience)])
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    if module.best_state is None:
        raise ModelError(f"the {net.kind}'s validation loss was never finite; try a smaller "
                         "learning rate")
    net.load_state_dict(module.best_state)
    return trainer.current_epoch, module.best_epoch


class _Module(pl.LightningModule):
    """Cross-entropy training of a :class:`SequenceNet`; keeps the best epoch's weights."""

    def __init__(self, net: SequenceNet, *, lr: float) -> None:
        super().__init__()
        self.net = net
        self.lr = lr
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_loss = float("inf")
        self.best_epoch = -1
        self._val: list[tuple[float, int]] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor],
                      batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss: torch.Tensor = nn.functional.cross_entropy(self.net(x), y)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor],
                        batch_idx: int) -> None:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y, reduction="sum")
        self._val.append((float(loss), len(y)))

    def on_validation_epoch_end(self) -> None:
        total = sum(v for v, _ in self._val) / max(sum(n for _, n in self._val), 1)
        self._val = []
        self.log("val_loss", total)
        if np.isfinite(total) and total < self.best_loss:
            self.best_loss = total
            self.best_epoch = int(self.current_epoch)
            self.best_state = copy.deepcopy(self.net.state_dict())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)

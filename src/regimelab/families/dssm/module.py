"""The LightningModule: the loss, the metrics and the optimiser around :class:`DSSMNet`."""

from __future__ import annotations

import logging
import time

import lightning.pytorch as pl
import torch

from regimelab.families.dssm.net import DSSMNet

log = logging.getLogger(__name__)

# Parameters of the context network; the rest are the regimes' own.
_CONTEXT = ("cell.", "trans_head.", "scale_head.")


class DSSMModule(pl.LightningModule):
    """Trains a :class:`DSSMNet` on the exact marginal log-likelihood.

    The loss is minus the log-likelihood per counted bar (nats), so train and
    validation curves read in the same units as the HMM's. Each epoch also
    logs how much filtered probability each state gets on the validation bars
    (``val/occupancy_k``) and the smallest share on the training and the
    validation bars (``train/min_occupancy``, ``val/min_occupancy``). A state
    whose share of the training bars falls below ``min_occupancy`` has
    collapsed, and the log says so.

    Parameters
    ----------
    net : DSSMNet
    lr : float
        Adam's learning rate.
    weight_decay : float
        Adam's L2 penalty, on the context network only (the regime parameters
        are not pulled towards zero).
    min_occupancy : float
        Share below which a state counts as collapsed.
    stickiness : float
        The sticky Dirichlet prior on the chain, as the HMM's ``stickiness``:
        ``stickiness * n_bars / K`` pseudo self-transitions per state, so the
        training loss adds ``-stickiness / K * sum_k log A_kk`` per bar (on the
        chain's own matrix; with ``transition: context`` the context moves
        around it). The validation loss stays the exact likelihood.
    """

    def __init__(self, net: DSSMNet, *, lr: float = 3e-3, weight_decay: float = 0.0,
                 min_occupancy: float = 0.002, stickiness: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self._occupancy: dict[str, torch.Tensor] = {}
        self.collapsed_epochs = 0

    def _step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        x, mask, count = batch
        log_lik, occupancy = self.net.log_likelihood(x, mask, count)
        n = int(count.sum())
        loss = -log_lik / n
        # batch_size = counted bars: the epoch's value is then the mean over bars.
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=n,
                 prog_bar=stage == "val")
        before = self._occupancy.get(stage)
        self._occupancy[stage] = occupancy.detach() + (0 if before is None else before)
        if stage == "train" and self.hparams["stickiness"] > 0:
            log_stay = torch.diagonal(torch.log_softmax(self.net.trans_logits, dim=-1))
            return loss - self.hparams["stickiness"] / self.net.n_states * log_stay.sum()
        return loss

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def _shares(self, stage: str) -> list[float] | None:
        total = self._occupancy.pop(stage, None)
        return None if total is None else (total / total.sum()).tolist()

    def on_train_epoch_end(self) -> None:
        share = self._shares("train")
        if share is None:
            return
        self.log("train/min_occupancy", min(share))
        low = [k for k, value in enumerate(share) if value < self.hparams["min_occupancy"]]
        if low:
            self.collapsed_epochs += 1
            log.warning("epoch %d: state(s) %s (numbered as in the starting HMM) below "
                        "dssm.min_occupancy = %g of the training bars (smallest %.4f)",
                        self.current_epoch, low,
                        self.hparams["min_occupancy"], min(share))

    def on_validation_epoch_end(self) -> None:
        share = self._shares("val")
        if share is None:
            return
        for k, value in enumerate(share):
            self.log(f"val/occupancy_{k}", value)
        self.log("val/min_occupancy", min(share))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        named = list(self.net.named_parameters())
        return torch.optim.Adam([
            {"params": [p for name, p in named if not name.startswith(_CONTEXT)],
             "weight_decay": 0.0},
            {"params": [p for name, p in named if name.startswith(_CONTEXT)],
             "weight_decay": self.hparams["weight_decay"]},
        ], lr=self.hparams["lr"])


class EpochHistory(pl.Callback):
    """Keeps each epoch's train and validation loss and its wall time (validation
    included). The times go to the log and the benchmarks, never into an output file."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if "val/loss" in metrics:
            self.rows.append({"epoch": trainer.current_epoch,
                              "train_loss": float(metrics["train/loss"]),
                              "val_loss": float(metrics["val/loss"]),
                              "val_min_occupancy": float(metrics["val/min_occupancy"]),
                              "seconds": time.perf_counter() - self._start})

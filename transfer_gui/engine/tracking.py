"""Best-epoch tracking and early stopping, one part (after fastai's TrackerCallback and
EarlyStoppingCallback): after every epoch, is it the best so far by
``train.early_stopping_metric``; if not, one epoch of patience is used up, and when none is
left (``train.early_stopping`` > 0) the run stops after this epoch. Without validation images
every epoch counts as the best (there is nothing to compare)."""

from __future__ import annotations

import math

from transfer_gui.config import TrainConfig
from transfer_gui.engine.parts import Part, Run, RunState


class BestEpoch(Part):
    def __init__(self, train_cfg: TrainConfig):
        self.metric = train_cfg.early_stopping_metric
        self.higher = self.metric == "val_acc"  # val_loss: lower is better
        self.patience = train_cfg.early_stopping
        self.epochs = train_cfg.epochs

    def before_fit(self, run: Run) -> None:
        run.state.best_score = -math.inf if self.higher else math.inf
        run.state.patience_left = self.patience

    def after_epoch(self, run: Run) -> None:
        ep, st = run.epoch, run.state
        val = ep.val
        score = val["acc"] if self.higher else val["loss"]
        has_val = val["n"] > 0
        ep.is_best = (not has_val) or (score > st.best_score if self.higher else score < st.best_score)
        if ep.is_best:
            st.best_score = score if has_val else st.best_score
            st.best_epoch, st.best_val_acc, st.best_predictions = ep.index + 1, val["acc"], val["preds"]  # 1-based
            st.patience_left = self.patience
        else:
            st.patience_left -= 1
        if self.patience and st.patience_left <= 0 and ep.index + 1 < self.epochs:
            run.stop = ("early_stopped", f"Stopped early after epoch {ep.index + 1}: {self.metric} did not "
                                         f"improve for {self.patience} epochs.")


def finished_message(epochs: int, state: RunState) -> str:
    """How a run that trained all its epochs ended."""
    if math.isnan(state.best_val_acc):
        return f"Finished {epochs} epochs (no validation images, so no accuracy was measured)."
    return (f"Finished {epochs} epochs; best validation accuracy {state.best_val_acc:.1%} "
            f"at epoch {state.best_epoch}.")

"""One training step, the same for the trainer and the LR finder.

:meth:`TrainStep.batch` moves a batch to the device (images that failed to decode are left out,
or weighted 0 under torchrun so that every rank runs the same collectives; ``channels_last``
when asked). Calling the step runs the forward pass under autocast, the loss with label
smoothing and, with ``train.class_weights = "balanced"``, class weights (each image's loss
weighted by its class's weight and the batch's loss divided by the sum of those weights, as
``nn.CrossEntropyLoss(weight=...)`` does; validation loss stays unweighted), the loss averaged over all ranks (``guard`` sees it before anything changes: the
trainer refuses a non-finite loss, the LR finder stops its sweep), then backward through the
gradient scaler, ``after_backward`` (the trainer's parts read the gradients there; see
:meth:`TrainStep.unscaled`), gradient clipping and the optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from transfer_gui.engine.ranks import SINGLE, Dist

if TYPE_CHECKING:
    from transfer_gui.engine.prepare import Prepared

Forward = Callable[[torch.Tensor], torch.Tensor]
Guard = Callable[[torch.Tensor], None]
AfterBackward = Callable[["StepOut"], None]


@dataclass
class Batch:
    x: torch.Tensor
    y: torch.Tensor
    weight: torch.Tensor | None  # per image, 0 for one that failed to decode (torchrun only)
    valid: torch.Tensor | None  # the same as a mask on the device, where there are weights
    n_valid: int


@dataclass
class StepOut:
    loss: torch.Tensor  # this process's loss, detached
    global_loss: torch.Tensor  # the mean over all processes, shape (1,)
    logits: torch.Tensor


class TrainStep:
    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device, autocast: torch.dtype | None, *,
                 label_smoothing: float = 0.0, grad_clip: float = 0.0, channels_last: bool = False,
                 dist: Dist = SINGLE, class_weights: list[float] | None = None):
        self.optimizer, self.device, self.autocast, self.dist = optimizer, device, autocast, dist
        self.label_smoothing, self.grad_clip, self.channels_last = label_smoothing, grad_clip, channels_last
        self.scaler = torch.amp.GradScaler("cuda", enabled=autocast == torch.float16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)  # unweighted: validation uses it
        self.class_weights = (torch.tensor(class_weights, dtype=torch.float32, device=device)
                              if class_weights is not None else None)
        self.train_criterion = nn.CrossEntropyLoss(weight=self.class_weights, label_smoothing=label_smoothing)
        self.params: list[torch.nn.Parameter] = []  # what gradient clipping measures
        self._unscaled = False  # this step's gradients are unscaled already

    @classmethod
    def for_run(cls, p: "Prepared", optimizer: torch.optim.Optimizer, dist: Dist = SINGLE) -> "TrainStep":
        """The step a prepared run trains with (its precision, loss and clipping settings)."""
        t = p.cfg.train
        return cls(optimizer, p.device, p.autocast, label_smoothing=p.cfg.optim.label_smoothing,
                   grad_clip=t.grad_clip, channels_last=bool(getattr(p, "channels_last", False) or t.channels_last), dist=dist,
                   class_weights=getattr(p, "class_weights", None))

    def clip(self, module: nn.Module) -> None:
        """Clip the gradients of what trains in ``module`` now (call when freezing changes)."""
        self.params = [q for q in module.parameters() if q.requires_grad]

    def unscaled(self) -> None:
        """Unscale this step's gradients when a GradScaler scales them (fp16), at most once per
        step, so that whatever reads them sees their true size; nothing to do otherwise."""
        if self.scaler.is_enabled() and not self._unscaled:
            self.scaler.unscale_(self.optimizer)
            self._unscaled = True

    def batch(self, x: torch.Tensor, y) -> Batch | None:
        """The batch on the device, or None when none of its images decoded (one process)."""
        y = torch.as_tensor(y)
        keep = y >= 0
        weight = None
        if not bool(keep.all()):
            if self.dist.active:  # every rank must run the same collectives: weight bad images 0
                y = torch.where(keep, y, torch.zeros_like(y))
                weight = keep.float()
            else:
                x, y = x[keep], y[keep]
                if len(y) == 0:
                    return None
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        valid = keep.to(self.device) if weight is not None else None
        return Batch(x, y, weight, valid, int(valid.sum()) if valid is not None else len(y))

    def loss(self, logits: torch.Tensor, b: Batch) -> torch.Tensor:
        """The training loss of a batch: the mean over its images, each weighted by its class's
        weight (class weights) and by 0 when it failed to decode (torchrun)."""
        if b.weight is None:
            return self.train_criterion(logits.float(), b.y)
        w = b.weight.to(self.device)
        per = nn.functional.cross_entropy(logits.float(), b.y, weight=self.class_weights, reduction="none",
                                          label_smoothing=self.label_smoothing)
        if self.class_weights is not None:
            w = w * self.class_weights[b.y]
            return (per * b.weight.to(self.device)).sum() / w.sum().clamp(min=1e-12)
        return (per * w).sum() / w.sum().clamp(min=1)

    def __call__(self, forward: Forward, b: Batch, guard: Guard | None = None,
                 after_backward: AfterBackward | None = None) -> StepOut:
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            logits = forward(b.x)
            loss = self.loss(logits, b)
        global_loss = self.dist.all_reduce_sum(loss.detach().float().clone().reshape(1)) / self.dist.world
        if guard is not None:
            guard(global_loss)
        self.optimizer.zero_grad(set_to_none=True)
        self._unscaled = False
        self.scaler.scale(loss).backward()
        out = StepOut(loss.detach(), global_loss, logits)
        if after_backward is not None:
            after_backward(out)
        if self.grad_clip > 0:
            self.unscaled()
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return out

"""Freeze and unfreeze layer groups. A frozen group keeps its weights bit-identical and its
BatchNorm running statistics unchanged (its norm layers stay in eval mode), unless the user
asks to train BatchNorm."""

from __future__ import annotations

from typing import Iterable

from torch import nn

from transfer_gui.engine.rules import GroupError, frozen_at_epoch, frozen_names
from transfer_gui.engine.surgery import LayerGroup

# The rules themselves (which groups a config freezes, when they thaw) are torch-free, in
# engine/rules.py; this module applies them to a model.
__all__ = ["GroupError", "apply_freeze", "frozen_at_epoch", "resolve_frozen", "set_train_mode", "trainable_count"]

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def resolve_frozen(groups: list[LayerGroup], frozen: Iterable[str] = (), train_from: str = "") -> set[str]:
    """The frozen group names of ``groups`` (:func:`transfer_gui.engine.rules.frozen_names`, strict)."""
    return frozen_names([g.name for g in groups], frozen, train_from, strict=True)


def apply_freeze(model: nn.Module, groups: list[LayerGroup], frozen: set[str]) -> None:
    params = dict(model.named_parameters())
    for g in groups:
        for p in g.params:
            params[p].requires_grad_(g.name not in frozen)


def set_train_mode(model: nn.Module, groups: list[LayerGroup], frozen: set[str], train_bn: bool = False) -> None:
    """Training mode for the groups that train, eval mode for everything else.

    Frozen groups keep their BatchNorm statistics; modules outside every group (a dropout
    before the head, the model's own functional dropout) stay in eval mode too, so that
    training on cached features and training through the whole network are the same thing.
    ``train_bn`` lets the norm layers of frozen groups update their statistics."""
    model.eval()
    for g in groups:
        if g.name in frozen and not train_bn:
            continue
        for path in g.modules:
            module = model.get_submodule(path)
            if g.name not in frozen:
                module.train()
            else:  # frozen, but the user asked for BatchNorm statistics to follow the new data
                for m in module.modules():
                    if isinstance(m, _NORM_TYPES):
                        m.train()


def trainable_count(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total

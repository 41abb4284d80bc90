"""Freeze and unfreeze layer groups. A frozen group keeps its weights bit-identical and its
BatchNorm running statistics unchanged (its norm layers stay in eval mode), unless the user
asks to train BatchNorm."""

from __future__ import annotations

from typing import Iterable, Mapping

from torch import nn

from transfer_gui.engine.surgery import LayerGroup
from transfer_gui.errors import UserError

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


class GroupError(UserError, ValueError):
    """A layer-group name in the config that the model does not have, or a freezing that cannot train."""


def check_group_names(groups: list[LayerGroup], names: Iterable[str], field: str) -> None:
    known = [g.name for g in groups]
    for name in names:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=2)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise GroupError(f"{field}: unknown layer group '{name}'.{hint} Groups: {', '.join(known)}")


def resolve_frozen(groups: list[LayerGroup], frozen: Iterable[str] = (), train_from: str = "") -> set[str]:
    """The set of frozen group names from an explicit list and/or "train from group X on"."""
    frozen = set(frozen)
    check_group_names(groups, frozen, "layers.frozen")
    if train_from:
        check_group_names(groups, [train_from], "layers.train_from")
        for g in groups:
            if g.name == train_from:
                break
            frozen.add(g.name)
    return frozen


def apply_freeze(model: nn.Module, groups: list[LayerGroup], frozen: set[str]) -> None:
    params = dict(model.named_parameters())
    for g in groups:
        for p in g.params:
            params[p].requires_grad_(g.name not in frozen)


def frozen_at_epoch(frozen: set[str], unfreeze_at: Mapping[str, int], epoch: int) -> set[str]:
    """Gradual unfreezing: groups listed in ``unfreeze_at`` thaw at their epoch (0-based)."""
    return {name for name in frozen if not (name in unfreeze_at and epoch >= unfreeze_at[name])}


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

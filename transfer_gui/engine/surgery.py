"""Model surgery: replace the classifier for new classes, and split a network into ordered,
named layer groups that can be frozen or given their own learning rate."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

# Containers whose children are the natural stages of a network (torchvision and timm names).
_EXPAND = {"features", "blocks", "stages", "layers", "trunk_output", "encoder"}
_SMALL_FRACTION = 0.001  # groups smaller than this share of the backbone merge into a neighbour


@dataclass(frozen=True)
class LayerGroup:
    name: str
    modules: tuple[str, ...]  # module paths that belong to the group
    params: tuple[str, ...]  # full parameter names
    num_params: int

    @property
    def is_head(self) -> bool:
        return self.name == "head"


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path) if path else model


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = _get(model, parent_path)
    if isinstance(parent, (nn.Sequential, nn.ModuleList)) and leaf.isdigit():
        parent[int(leaf)] = module
    else:
        setattr(parent, leaf, module)


def find_head(model: nn.Module) -> str:
    """Path of the final classification layer."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, dict) and cfg.get("classifier"):
        path = cfg["classifier"]
        try:
            if isinstance(_get(model, path), (nn.Linear, nn.Conv2d)):
                return path
        except AttributeError:
            pass
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not name.startswith(("aux", "AuxLogits")):
            last = name
    if last is None:
        # SqueezeNet-style: a 1x1 convolution produces the class scores.
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and "classifier" in name:
                last = name
    if last is None:
        raise ValueError(f"cannot find the classifier layer of {type(model).__name__}")
    return last


def num_outputs(model: nn.Module, head_path: str) -> int:
    head = _get(model, head_path)
    return head.out_features if isinstance(head, nn.Linear) else head.out_channels


def replace_head(model: nn.Module, num_classes: int, head_path: str | None = None) -> str:
    """Replace the classifier with a new, freshly initialised layer for ``num_classes``."""
    head_path = head_path or find_head(model)
    old = _get(model, head_path)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    elif isinstance(old, nn.Conv2d):
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=old.kernel_size)
    else:
        raise ValueError(f"unsupported classifier layer {type(old).__name__} at {head_path}")
    new = new.to(device=next(old.parameters()).device, dtype=next(old.parameters()).dtype)
    _set(model, head_path, new)
    if hasattr(model, "num_classes"):
        try:
            model.num_classes = num_classes
        except AttributeError:
            pass
    return head_path


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def split_groups(model: nn.Module, head_path: str) -> list[LayerGroup]:
    """Ordered layer groups from input to head; every parameter is in exactly one group.

    Top-level children are the groups, with known stage containers (``features``, ``blocks``,
    ``layers``...) opened up into their children. Parameters owned directly by a container
    (ViT's class token, position embedding) join the first group. Tiny leading groups merge
    into a ``stem``; tiny groups later on merge into the group before them. The head is the
    replaced classifier alone; other layers in the head's container form their own group.
    """
    units, loose = _units(model, head_path)
    head_top = head_path.split(".")[0]
    beside_head = [u for u in units if u.split(".")[0] == head_top and head_top != head_path]
    sizes = {path: _param_count(_get(model, path)) for path in units}
    merged = _merge_small(model, [u for u in units if u not in beside_head], sizes)
    if beside_head:
        merged.append((head_top if head_top != "head" else "pre_head", beside_head))
    named = dict(model.named_parameters())

    def group(name: str, mods: list[str], extra: list[str] | tuple = ()) -> LayerGroup:
        params = (*extra, *(p for m in mods for p, _ in _get(model, m).named_parameters(prefix=m)))
        return LayerGroup(name, tuple(mods), params, sum(named[p].numel() for p in params))

    return [*(group(name, mods, loose if i == 0 else ()) for i, (name, mods) in enumerate(merged)),
            group("head", [head_path])]


def _units(model: nn.Module, head_path: str) -> tuple[list[str], list[str]]:
    """(module paths that can be groups, in order; parameter names owned directly by containers)."""
    units: list[str] = []
    loose: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        loose.extend(prefix + pname for pname, _ in module.named_parameters(recurse=False))
        for name, child in module.named_children():
            path = prefix + name
            if path == head_path or _param_count(child) == 0:
                continue
            if head_path.startswith(path + ".") or (name in _EXPAND and len(list(child.children())) > 1):
                visit(child, path + ".")
            else:
                units.append(path)

    visit(model, "")
    return units, loose


def _merge_small(model: nn.Module, body: list[str], sizes: dict[str, int]) -> list[tuple[str, list[str]]]:
    """(group name, module paths): leading tiny or leaf modules become the ``stem``; a tiny
    module later on joins the group before it."""
    total = max(1, sum(sizes.values()))
    merged: list[tuple[str, list[str]]] = []
    in_stem = True
    for path in body:
        tiny = sizes[path] < _SMALL_FRACTION * total
        leaf = len(list(_get(model, path).children())) == 0
        if in_stem and (tiny or leaf):
            merged[-1:] = [("stem", (merged[-1][1] if merged else []) + [path])]
            continue
        in_stem = False
        if merged and tiny:
            merged[-1] = (merged[-1][0], merged[-1][1] + [path])
        else:
            merged.append((path, [path]))
    return merged


def backbone_and_head(model: nn.Module, head_path: str) -> tuple[nn.Module, nn.Module]:
    """Split into (everything up to the head, the head) so that
    ``head(backbone(x)) == model(x)``. The backbone is the model with its head swapped for
    an identity; it shares weights with ``model``."""
    import copy

    head = _get(model, head_path)
    backbone = copy.copy(model)  # shallow: shares every parameter and submodule
    backbone._modules = dict(model._modules)  # type: ignore[assignment]
    _swap_identity(backbone, head_path)
    return backbone, head


def _swap_identity(model: nn.Module, path: str) -> None:
    """Replace ``path`` by nn.Identity in ``model``, copying only the containers on the way."""
    import copy

    parts = path.split(".")
    node = model
    for part in parts[:-1]:
        child = node._modules[part]
        child_copy = copy.copy(child)
        child_copy._modules = dict(child._modules)  # type: ignore[assignment]
        node._modules[part] = child_copy
        node = child_copy
    node._modules[parts[-1]] = nn.Identity()


"""Running under torchrun: who is who, and whether this process is the one that writes."""

from __future__ import annotations

import os


def world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    return rank() == 0


def fit(cfg, on_event=None, resume: bool = False):
    raise NotImplementedError("multi-process training under torchrun is not available yet; run with one process")

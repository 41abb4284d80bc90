"""Running under torchrun: one process per device, DistributedDataParallel, rank 0 writes.

The environment torchrun sets says whether this process is one of a job (:func:`is_distributed`,
:func:`is_main_process`); :func:`fit` joins the process group and trains as one rank. What the ranks share while training (:class:`~transfer_gui.engine.ranks.Dist`, the sharded
sampler) lives in :mod:`transfer_gui.engine.ranks`, below the loop.
"""

from __future__ import annotations

import datetime
import gc
import os

import torch
import torch.distributed as tdist

from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.ranks import Dist


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


def init_from_env() -> Dist:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs)."""
    if not tdist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        tdist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Dist(tdist.get_rank(), tdist.get_world_size(), local)


def fit(cfg, on_event=None, resume: bool = False, runs_root=None):
    """``Trainer().fit`` as one rank of a torchrun job (rank 0 names the run folder for all)."""
    dist = init_from_env()
    trainer = Trainer()
    try:
        return trainer.fit(cfg, on_event, resume=resume, dist=dist, runs_root=runs_root)
    finally:
        # The run's parts hold the trainer (the test part keeps its bound _validate), so the run and
        # its DistributedDataParallel module form a cycle that only the garbage collector frees. Free
        # it now: a DDP module destroyed after its process group aborts the process ("terminate
        # called without an active exception"), which it did about once in eight torchrun runs.
        trainer.run = None
        del trainer
        gc.collect()
        if tdist.is_initialized():
            tdist.destroy_process_group()

"""A run's part that notices a data folder going away while it trains (renamed, moved, a drive
unplugged): the run stops after the epoch in progress with a message naming the folder, and
keeps that epoch's checkpoint to resume from once the folder is back.

Without it the run went on without a word: images decoded once stay in memory, and those read
from disk every epoch failed one by one and were dropped from their batches. The check is one
``os.path.isdir`` per folder per epoch. Under torchrun rank 0 decides for every rank, so that all
of them stop after the same epoch.
"""

from __future__ import annotations

import os
from pathlib import Path

from transfer_gui.engine.parts import Part, Run


class DataFolders(Part):
    """Stops the run (status "failed") after an epoch at whose end a data folder is gone."""

    def __init__(self, data_cfg) -> None:
        given = [*data_cfg.folders, *data_cfg.val_folders, *data_cfg.test_folders]
        self.folders = list(dict.fromkeys(os.path.abspath(os.fspath(f)) for f in given))

    def gone(self) -> list[str]:
        return [f for f in self.folders if not os.path.isdir(f)]

    def after_epoch(self, run: Run) -> None:
        gone = run.dist.broadcast_object(self.gone() if run.dist.main else None)
        if gone and run.stop is None:
            run.stop = ("failed", gone_message(gone, run.state.epoch, run.cfg.train.epochs, run.run_dir))


def gone_message(gone: list[str], done: int, epochs: int, run_dir: Path) -> str:
    """What the window and the command line say when data folders went away during a run."""
    names = ", ".join(gone)
    which = "The data folder" if len(gone) == 1 else "The data folders"
    verb = "is" if len(gone) == 1 else "are"
    return (f"{which} {names} {verb} gone since the run started (renamed, moved or unmounted?): training "
            f"stopped after epoch {done} of {epochs}. The checkpoint of epoch {done} is kept: put the folder "
            f"back and resume the run (transfer-gui train --resume {run_dir}), or point data.folders at its new "
            f"place and train again.")

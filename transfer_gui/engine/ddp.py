"""Under torchrun the optimizer steps through DistributedDataParallel, one part: the wrapper is
built before the first epoch and rebuilt when gradual unfreezing changes which parameters train.
BatchNorm statistics follow rank 0 (``broadcast_buffers``), so every rank validates the model
that rank 0 saves."""

from __future__ import annotations

from torch.nn.parallel import DistributedDataParallel

from transfer_gui.engine.parts import Part, Run
from transfer_gui.engine.ranks import Dist


class DdpWrap(Part):
    def __init__(self, dist: Dist):
        self.dist = dist
        self._key: frozenset[str] | None = None
        self._ddp: DistributedDataParallel | None = None

    def before_epoch(self, run: Run) -> None:
        key = frozenset(run.frozen_now)
        if self._key != key:
            p = run.prepared
            ids = [p.device.index] if p.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(p.module, device_ids=ids, broadcast_buffers=True)
            self._key = key
        run.train_module = self._ddp

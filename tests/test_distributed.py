"""torchrun on this machine: 2 CPU processes with gloo against 1 process, same global batch."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_class_folders, tiny_config
from transfer_gui import config as C
from transfer_gui.engine.ranks import SINGLE, Dist, ShardedSampler
from transfer_gui.engine.checkpoint import load_checkpoint


def test_sharded_sampler_splits_the_single_process_batches():
    n, batch, world = 26, 8, 2
    single = list(ShardedSampler(n, True, seed=5, dist=SINGLE))
    ranks = [list(ShardedSampler(n, True, 5, Dist(r, world), drop_uneven=True)) for r in range(world)]
    assert len(ranks[0]) == len(ranks[1]) == 13
    per_rank = batch // world
    for k in range(0, 13 // per_rank):
        union = sorted(ranks[0][k * per_rank:(k + 1) * per_rank] + ranks[1][k * per_rank:(k + 1) * per_rank])
        assert union == sorted(single[k * batch:(k + 1) * batch])
    val = [list(ShardedSampler(n, False, 0, Dist(r, world), drop_uneven=False)) for r in range(world)]
    assert sorted(val[0] + val[1]) == list(range(n))
    s = ShardedSampler(n, True, 5)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first and sorted(s) == sorted(first)


def _torchrun(nproc: int, cfg_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "transfer_gui", "train", str(cfg_path), "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                                "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
@pytest.mark.parametrize("cache", ["auto", "off"])
def test_two_gloo_processes_match_one(tmp_path, cache):
    data = make_class_folders(tmp_path / "data", per_class=10)
    results = {}
    for nproc in (1, 2):
        out = tmp_path / f"run{nproc}"
        # fp32: the ranks' summed gradients and one process's agree to 1e-5 only without bf16 rounding
        cfg = tiny_config(data, out, **{"train.feature_cache": cache, "train.epochs": 2, "layers.head_lr": 1e-2,
                                        "train.precision": "fp32"})
        path = tmp_path / f"cfg{nproc}.toml"
        C.save(cfg, path)
        proc = _torchrun(nproc, path)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        results[nproc] = out
    one, two = results[1], results[2]
    def names(folder: Path) -> list[str]:  # TensorBoard's event files are named after the time and the pid
        return sorted("events.out.tfevents" if p.name.startswith("events.out.tfevents") else p.name
                      for p in folder.rglob("*"))

    assert names(one) == names(two)
    a = load_checkpoint(one / "checkpoints" / "last.pt")["state_dict"]
    b = load_checkpoint(two / "checkpoints" / "last.pt")["state_dict"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
    m1 = (one / "metrics.jsonl").read_text().splitlines()
    m2 = (two / "metrics.jsonl").read_text().splitlines()
    import json

    for x, y in zip(m1, m2):
        x, y = json.loads(x), json.loads(y)
        assert x["val_acc"] == y["val_acc"]
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=1e-5)
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)

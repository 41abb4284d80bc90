"""data.Prefetched: a one-time pass's items decoded by threads ahead of the network, in order."""

from __future__ import annotations

import threading

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from transfer_gui.engine.data import ImageDataset, Prefetched
from transfer_gui.engine.preprocess import Preprocessing, eval_from_resized
from transfer_gui.engine.scan import Sample


class Recording(torch.utils.data.Dataset):
    """Items are their index; records which thread made each and blocks item ``hold`` until released."""

    def __init__(self, n: int, hold: int | None = None):
        self.n, self.hold = n, hold
        self.threads: dict[int, str] = {}
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if i == self.hold:
            assert self.release.wait(10)
        with self.lock:
            self.threads[i] = threading.current_thread().name
        return torch.tensor([i]), i % 3, i


def test_items_come_back_in_order_made_on_decode_threads():
    ds = Recording(50)
    with Prefetched(ds, threads=2, ahead=8) as pre:
        batches = list(DataLoader(pre, batch_size=7, shuffle=False))
    assert torch.cat([b[2] for b in batches]).tolist() == list(range(50))
    assert torch.cat([b[0] for b in batches]).flatten().tolist() == list(range(50))
    assert all(name.startswith("decode") for name in ds.threads.values()) and len(ds.threads) == 50


def test_later_items_are_made_while_the_caller_waits_on_an_earlier_one():
    ds = Recording(20, hold=0)
    with Prefetched(ds, threads=2, ahead=6) as pre:
        first = threading.Thread(target=lambda: pre[0])
        first.start()
        deadline = threading.Event()
        for _ in range(200):  # item 0 is held: items 1..5 are made meanwhile by the other thread
            with ds.lock:
                if {1, 2, 3, 4, 5} <= set(ds.threads):
                    break
            deadline.wait(0.05)
        with ds.lock:
            ahead = set(ds.threads)
        ds.release.set()
        first.join(10)
    assert {1, 2, 3, 4, 5} <= ahead and 0 not in ahead


def test_out_of_order_access_still_gives_the_right_item():
    ds = Recording(30)
    with Prefetched(ds, threads=2, ahead=4) as pre:
        assert pre[10][2] == 10 and pre[3][2] == 3 and pre[29][2] == 29 and len(pre) == 30


def test_decode_errors_come_back_like_the_plain_dataset(tmp_path):
    paths = []
    for i in range(6):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(p)
        paths.append(p)
    (tmp_path / "3.png").write_bytes(b"broken")
    pre_cfg = Preprocessing(input_size=16, resize_size=18)
    ds = ImageDataset([Sample(str(p), i % 2) for i, p in enumerate(paths)], eval_from_resized(pre_cfg), pre_cfg)
    plain = list(DataLoader(ds, batch_size=4))
    with Prefetched(ds, threads=2, ahead=8) as pre:
        threaded = list(DataLoader(pre, batch_size=4))
    for a, b in zip(plain, threaded):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.cat([b[1] for b in threaded]).tolist()[3] == -1  # the broken file, dropped by the caller


def test_closed_pool_refuses_more_work():
    pre = Prefetched(Recording(5), threads=1, ahead=2)
    assert pre[0][2] == 0
    pre.close()
    with pytest.raises(RuntimeError):
        pre[1]

#!/usr/bin/env python
"""Speed of transfer_gui against the plain PyTorch transfer-learning loop that tutorials teach.

    python benchmarks/bench_speed.py [--quick] [--out results.json] [--sections 1,2,3,4,5,6,7]

One command, one machine, the same images on both sides. Every measured configuration runs in
its own child process (this file with ``--child``), so peak memory is per run and one run's
caches cannot help the next. The parent prints a markdown table of ratios (plain loop = 1.0).

The reference "plain loop" (``plain_loop`` below) is written by hand the way the usual
tutorial does it: a pretrained model, ``requires_grad=False`` on what is frozen, a new last
layer, SGD(lr=0.001, momentum=0.9), CrossEntropyLoss, a DataLoader over
``torchvision.datasets.ImageFolder`` with Resize/CenterCrop/ToTensor/Normalize, and every
epoch through the whole network (``model.train()`` for training, ``model.eval()`` +
``no_grad`` for validation). The model comes from the engine's own catalog so that
architecture, weights and the initial new head are identical on both sides.

Sections (benchmarks/README.md says what each compares and the targets):
  1  head-only training end to end, EfficientNet-Lite0 (offline ImageNet weights)
  2  partial fine-tuning (ResNet-18 layer4 + head): training throughput
  3  full fine-tuning (ResNet-18, nothing frozen): throughput and share of the fp32 peak
  4  the same training driven through the window (offscreen) vs headless; GUI latency
  5  peak memory of every run above; time to the first painted window
  6  the one-time frozen pass: today's engine (torch eager fp32) vs engine/fastpath.py, features within 1e-4
  7  bf16 autocast (train.precision = auto on a bf16 CPU) vs fp32: mean validation accuracy over 3 seeds,
     head only and full fine-tuning (EfficientNet-Lite0, offline weights, 500 + 200 images at 112 px)

Every row carries the CPU capability (torch.backends.cpu.get_cpu_capability(), "+ bf16" where the
CPU has bf16 in hardware): what the engine picks, and so what it measures, depends on it.

The machine may be shared. Before each child the parent waits (up to --wait-quiet seconds) for
the CPUs to be idle, and every epoch records how long our threads sat runnable but not running
(``run_delay`` from /proc/<pid>/task/*/schedstat): a high value means the timing was disturbed.
Throughput is reported as the mean over the steady epochs and, less sensitive to disturbance,
from the median batch time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "tools")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

RESULT_TAG = "@@BENCH_RESULT "
NUM_CLASSES = 10

# Sizes of the two modes. "full" is the measured run; "quick" is a smoke test (< 3 minutes).
PRESETS = {
    "full": dict(train_per_class=100, val_per_class=50, tp_val_per_class=5, size=224, head_epochs=10,
                 partial_epochs=3, full_epochs=3, gui_epochs=3, mm_n=4096, mm_reps=5, paint_runs=3,
                 wait_quiet=120, frozen_images=1500, acc_train_per_class=50, acc_val_per_class=20, acc_size=112,
                 acc_epochs=2, acc_seeds=3),
    "quick": dict(train_per_class=20, val_per_class=10, tp_val_per_class=2, size=112, head_epochs=2,
                  partial_epochs=2, full_epochs=2, gui_epochs=2, mm_n=2048, mm_reps=3, paint_runs=1,
                  wait_quiet=0, frozen_images=32, acc_train_per_class=4, acc_val_per_class=2, acc_size=64,
                  acc_epochs=1, acc_seeds=1),
}
TARGETS = {"head_speedup": 25.0, "head_acc_points": 1.0, "partial_speedup": 5.0, "full_ratio": 2.2,
           "full_peak": 0.80, "gui_ratio": 0.95, "gui_p99_ms": 30.0, "gui_max_ms": 200.0,
           "head_rss_mb": 1536.0, "frozen_speedup": 2.5, "frozen_diff": 1e-4, "bf16_acc_points": 0.5}


# =============================================================================== measuring


def _vm_hwm_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sched_totals() -> tuple[float, float]:
    """(CPU seconds, seconds spent runnable but waiting for a CPU) summed over our threads."""
    cpu = delay = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as fh:
                    a, b, _ = fh.read().split()
                cpu += int(a)
                delay += int(b)
            except (OSError, ValueError):
                continue
    except OSError:
        pass
    return cpu / 1e9, delay / 1e9


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy (anyone's work) over ``seconds``."""
    def read() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
        idle = vals[3] + vals[4]
        return idle, sum(vals[:8])
    i0, t0 = read()
    time.sleep(seconds)
    i1, t1 = read()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(max_s: float, threshold: float = 0.15) -> tuple[float, float]:
    """Wait until the machine is idle (busy share below ``threshold``) or ``max_s`` passed.
    Returns (seconds waited, busy share of the last second)."""
    t0 = time.perf_counter()
    busy = cpu_busy(1.0)
    while busy > threshold and time.perf_counter() - t0 < max_s:
        busy = cpu_busy(2.0)
    return time.perf_counter() - t0, busy


class EpochMeter:
    """Per-epoch training-phase timing, identical on both sides: wall time from the first batch
    request to the end of the last optimizer step, per-batch times, and our threads' CPU time and
    run-queue wait over the epoch."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self._cur: dict | None = None

    def start(self) -> None:
        cpu, delay = sched_totals()
        now = time.perf_counter()
        self._cur = {"t0": now, "last": now, "cpu0": cpu, "delay0": delay, "batch_s": [], "batch_n": []}

    def batch(self, n: int) -> None:
        c = self._cur
        if c is None:
            return
        now = time.perf_counter()
        c["batch_s"].append(now - c["last"])
        c["batch_n"].append(n)
        c["last"] = now

    def end(self, **extra) -> dict | None:
        c, self._cur = self._cur, None
        if c is None:
            return None
        cpu, delay = sched_totals()
        train_s = c["last"] - c["t0"] if c["batch_s"] else time.perf_counter() - c["t0"]
        n = sum(c["batch_n"])
        rec = {"epoch": len(self.epochs) + 1, "train_s": train_s, "images": n,
               "images_per_s": n / train_s if train_s > 0 else float("nan"),
               "cpu_s": cpu - c["cpu0"], "run_delay_s": delay - c["delay0"],
               "batch_s": [round(x, 5) for x in c["batch_s"]], "batch_n": c["batch_n"], **extra}
        self.epochs.append(rec)
        return rec


def steady(epochs: list[dict]) -> float:
    """Mean images/s of the epochs after the first (all epochs if there is only one)."""
    rest = epochs[1:] or epochs
    return sum(e["images"] for e in rest) / sum(e["train_s"] for e in rest)


def steady_median(epochs: list[dict]) -> float:
    """Images/s from the median time per image of the full batches after the first epoch
    (robust to short disturbances by other processes)."""
    rest = epochs[1:] or epochs
    full = max(n for e in rest for n in e["batch_n"])
    per_image = [s / n for e in rest for s, n in zip(e["batch_s"], e["batch_n"]) if n == full]
    return 1.0 / statistics.median(per_image) if per_image else float("nan")


def disturbance(epochs: list[dict]) -> float:
    """Our threads' run-queue wait as a share of wall time over the steady epochs
    (0 = never waited for a CPU; 1 = on average one thread waiting all the time)."""
    rest = epochs[1:] or epochs
    return sum(e.get("run_delay_s", 0.0) for e in rest) / max(1e-9, sum(e["train_s"] for e in rest))


def _finish(result: dict) -> None:
    """Print the child's result as the last line of stdout, with its memory and load."""
    result["vm_hwm_mb"] = round(_vm_hwm_mb(), 1)
    # DataLoader workers (plain loop) are our children: the largest one's peak, not the sum.
    result["children_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1)
    result["load_end"] = [round(x, 2) for x in os.getloadavg()]
    if "torch" in sys.modules:
        result["torch_threads"] = sys.modules["torch"].get_num_threads()
    sys.stdout.flush()
    print(RESULT_TAG + json.dumps(result), flush=True)


def _mode_freeze(model, head_path: str, mode: str) -> None:
    """Tutorial-style freezing: requires_grad=False on everything that does not train."""
    if mode == "full":
        return
    for p in model.parameters():
        p.requires_grad = False
    for path in [head_path] + (["layer4"] if mode == "partial" else []):
        for p in model.get_submodule(path).parameters():
            p.requires_grad = True


# =============================================================================== plain loop


def plain_loop(spec: dict) -> dict:
    """The reference: the loop a transfer-learning tutorial teaches, written out by hand."""
    import torch
    from torch import nn, optim
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from transfer_gui.engine.catalog import build_model

    t_work = time.perf_counter()
    torch.manual_seed(0)
    # Same architecture and weights as the engine, and (same seed) the same new last layer.
    built = build_model(spec["model"], spec["weights"], num_classes=NUM_CLASSES)
    model = built.model
    pre = built.preprocessing.at_size(spec["size"])
    _mode_freeze(model, built.head_path, spec["mode"])
    t_model = time.perf_counter() - t_work

    tf = transforms.Compose([
        transforms.Resize(pre.resize_size, interpolation=pre.interp),
        transforms.CenterCrop(pre.input_size),
        transforms.ToTensor(),
        transforms.Normalize(pre.mean, pre.std),
    ])
    train_ds = datasets.ImageFolder(spec["train_dir"], transform=tf)
    train_loader = DataLoader(train_ds, batch_size=spec["batch_size"], shuffle=True,
                              num_workers=spec["workers"], generator=torch.Generator().manual_seed(0))
    val_loader = None
    if spec.get("val_dir"):
        val_loader = DataLoader(datasets.ImageFolder(spec["val_dir"], transform=tf),
                                batch_size=spec["batch_size"], shuffle=False, num_workers=spec["workers"])

    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9)
    meter = EpochMeter()
    setup_s = time.perf_counter() - t_work
    for _epoch in range(spec["epochs"]):
        model.train()
        if spec.get("bn_eval"):  # variant: frozen layers (BatchNorm, Dropout) in eval mode, as the engine does
            model.eval()
            for m in model.modules():
                if any(p.requires_grad for p in m.parameters(recurse=False)):
                    m.train()
        meter.start()
        seen = correct = 0
        loss_sum = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            out = model(x)
            loss = criterion(out, y)
            loss.backward()
            optimizer.step()
            seen += len(y)
            loss_sum += float(loss) * len(y)
            correct += int((out.argmax(1) == y).sum())
            meter.batch(len(y))
        extra = {"train_loss": loss_sum / max(1, seen), "train_acc": correct / max(1, seen)}
        if val_loader is not None:
            rec = meter.end(**extra)
            model.eval()
            t1 = time.perf_counter()
            v_seen = v_correct = 0
            with torch.no_grad():
                for x, y in val_loader:
                    out = model(x)
                    v_seen += len(y)
                    v_correct += int((out.argmax(1) == y).sum())
            rec["val_s"] = time.perf_counter() - t1
            rec["val_acc"] = v_correct / max(1, v_seen)
        else:
            meter.end(**extra)
    wall = time.perf_counter() - t_work
    epochs = meter.epochs
    return {"side": "plain", "wall_s": wall, "model_build_s": t_model, "setup_s": setup_s, "epochs": epochs,
            "workers": spec["workers"], "final_val_acc": epochs[-1].get("val_acc"),
            "best_val_acc": max((e.get("val_acc", float("nan")) for e in epochs), default=None)}


# =============================================================================== engine


def engine_config(spec: dict):
    from transfer_gui.config import RunConfig

    return RunConfig().replace(**{
        "data.folders": [spec["train_dir"]],
        "data.val_folders": [spec["val_dir"]] if spec.get("val_dir") else [],
        "data.image_size": spec["size"],
        "data.augment.enabled": False,
        "model.name": spec["model"],
        "model.weights": spec["weights"],
        # "" with no frozen groups = nothing frozen (the default "head" would freeze the rest)
        "layers.train_from": {"head": "head", "partial": "layer4", "full": ""}[spec["mode"]],
        "layers.frozen": [],
        "layers.head_lr": 0.001,
        "optim.name": "sgd",
        "optim.momentum": 0.9,
        "optim.weight_decay": 0.0,
        "schedule.name": "constant",
        "train.epochs": spec["epochs"],
        "train.batch_size": spec["batch_size"],
        "train.device": "cpu",
        "train.seed": 0,
        "output.dir": spec["run_dir"],
    })


class EngineClock:
    """Feeds the engine's events into an EpochMeter: an epoch's training phase runs from
    PhaseChanged("train", "Epoch k of n") to PhaseChanged("validate")."""

    def __init__(self, t_ref: float) -> None:
        self.meter = EpochMeter()
        self.t_ref = t_ref
        self.timeline: list[tuple[float, str, str]] = []
        self.train_size = 0
        self.batch_size = 0
        self.feature_cache = None
        self.precision = None
        self.finished = None

    def __call__(self, ev) -> None:
        name = type(ev).__name__
        if name == "BatchEnd":
            n = self.batch_size if ev.batch < ev.batches else self.train_size - self.batch_size * (ev.batches - 1)
            self.meter.batch(n)
            return
        now = time.perf_counter() - self.t_ref
        if name == "RunStarted":
            self.train_size = ev.train_size
            self.batch_size = -(-ev.train_size // ev.steps_per_epoch)
            self.feature_cache = ev.feature_cache
            self.precision = ev.precision
            self.timeline.append((round(now, 3), "RunStarted", f"feature_cache={ev.feature_cache}"))
        elif name == "PhaseChanged":
            if ev.phase == "train" and ev.message.startswith("Epoch"):
                self.meter.start()
            elif ev.phase == "validate":
                self.meter.end()
            if not (ev.phase in ("train", "validate") and len(self.meter.epochs) > 1):
                self.timeline.append((round(now, 3), ev.phase, ev.message[:160]))
        elif name in ("Warning", "Finished"):
            self.timeline.append((round(now, 3), name, getattr(ev, "message", "")[:160]))
            if name == "Finished":
                self.finished = ev


def engine_run(spec: dict) -> dict:
    from transfer_gui.engine.loop import Trainer

    cfg = engine_config(spec)
    t_work = time.perf_counter()
    clock = EngineClock(t_work)
    if spec.get("in_thread"):  # diagnosis: train on a second thread, as the window does, but without Qt
        import threading

        parked = []
        for _ in range(spec.get("omp_teams", 0)):  # diagnosis: other threads that ran parallel torch ops
            import torch

            gate = threading.Event()

            def other(g=gate):
                torch.ones(4096, 4096).sum()  # a parallel region: this thread gets an OpenMP team
                g.wait()

            t = threading.Thread(target=other, daemon=True)
            t.start()
            parked.append(gate)

        box = {}
        th = threading.Thread(target=lambda: box.update(r=Trainer().fit(cfg, on_event=clock)))
        th.start()
        th.join()
        result = box["r"]
    else:
        result = Trainer().fit(cfg, on_event=clock)
    wall = time.perf_counter() - t_work
    if result.status != "completed":
        raise RuntimeError(f"engine run ended {result.status}: {result.message}")
    epochs = clock.meter.epochs
    for rec, hist in zip(epochs, result.history):
        rec.update(val_acc=hist["val_acc"], engine_images_per_s=hist["images_per_s"], epoch_s=hist["seconds"])
    first_train = next((t for t, ph, msg in clock.timeline if ph == "train"), wall)
    return {"side": "engine", "wall_s": wall, "setup_s": first_train, "epochs": epochs,
            "final_val_acc": result.history[-1]["val_acc"], "best_val_acc": result.best_val_acc,
            "feature_cache": clock.feature_cache, "precision": clock.precision, "timeline": clock.timeline}


# =============================================================================== peak / FLOPs


def peak_and_flops(spec: dict) -> dict:
    """fp32 matmul rate (the brief's "machine limit"), a oneDNN convolution rate for context,
    and the FLOPs of one training image of ResNet-18 (forward + backward)."""
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from transfer_gui.engine.catalog import build_model

    def best_rate(fn, flop: float, reps: int) -> tuple[float, list[float]]:
        fn()  # warm up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flop / min(times) / 1e9, times

    n, reps = spec["mm_n"], spec["mm_reps"]
    a, b = torch.randn(n, n), torch.randn(n, n)
    mm_peak, mm_times = best_rate(lambda: torch.mm(a, b), 2.0 * n ** 3, reps)
    del a, b
    x, w = torch.randn(32, 256, 28, 28), torch.randn(256, 256, 3, 3)
    conv_peak, conv_times = best_rate(lambda: nn.functional.conv2d(x, w, padding=1),
                                      2.0 * 32 * 28 * 28 * 256 * 256 * 9, reps)
    a16, b16 = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    bf16_peak, bf16_times = best_rate(lambda: torch.mm(a16, b16), 2.0 * n ** 3, reps)
    del a16, b16
    out = {"mm_n": n, "mm_times_s": mm_times, "peak_gflops": mm_peak, "conv3x3_gflops": conv_peak,
           "conv_times_s": conv_times, "bf16_peak_gflops": bf16_peak, "bf16_times_s": bf16_times}
    size, batch = spec["size"], 2
    for mode in ("full", "partial"):
        torch.manual_seed(0)
        built = build_model("resnet18", "none", num_classes=NUM_CLASSES)
        model = built.model
        _mode_freeze(model, built.head_path, mode)
        model.train()
        xb = torch.randn(batch, 3, size, size)
        yb = torch.randint(0, NUM_CLASSES, (batch,))
        with FlopCounterMode(display=False) as fc:
            nn.functional.cross_entropy(model(xb), yb).backward()
        out[f"train_gflop_per_image_{mode}"] = fc.get_total_flops() / batch / 1e9
    return out


# =============================================================================== frozen pass (section 6)


def frozen_pass(spec: dict) -> dict:
    """The one-time frozen pass (EfficientNet-Lite0 backbone, offline weights, batch 16 as the
    engine's CPU pass, 1,500 images as section 1's 1,000 + 500): today's engine (torch eager
    fp32 under inference_mode) against the fast path (features.compute through
    engine/fastpath.py): a first run on this machine (an empty cache folder: the runtime choice
    and the export counted in), a later run (a new process finds the export and the choice in
    the cache folder, checks it on the first batch), and the choice held in the process."""
    import torch

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="bench_frozen_cache_")  # a first run: nothing cached
    from torch.utils.data import DataLoader, TensorDataset

    from transfer_gui.engine import fastpath
    from transfer_gui.engine import features as feat_mod
    from transfer_gui.engine.catalog import build_model
    from transfer_gui.engine.surgery import backbone_and_head

    built = build_model("efficientnet_lite0", "pretrained", num_classes=NUM_CLASSES)
    backbone, _ = backbone_and_head(built.model, built.head_path)
    backbone.eval()
    n, size = spec["frozen_images"], spec["size"]
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long), torch.arange(n)), batch_size=16)
    t0 = time.perf_counter()
    with torch.inference_mode():
        ref = torch.cat([backbone(b).flatten(1) for b, _, _ in loader])
    eager_s = time.perf_counter() - t0
    fastpath.MIN_IMAGES = min(fastpath.MIN_IMAGES, n)  # a real pass has >= 1,000 images; here fewer suffice
    fs = feat_mod.compute(backbone, loader, torch.device("cpu"), None)
    fastpath.clear()  # what a later process starts with: the cache folder, nothing in memory
    later = feat_mod.compute(backbone, loader, torch.device("cpu"), None)
    t1 = time.perf_counter()
    again = feat_mod.compute(backbone, loader, torch.device("cpu"), None)  # the choice is held in the process
    steady_s = time.perf_counter() - t1
    return {"images": n, "size": size, "eager_images_per_s": n / eager_s, "fast_images_per_s": n / fs.seconds,
            "fast_later_images_per_s": n / later.seconds, "later_note": later.note,
            "fast_steady_images_per_s": n / steady_s, "note": fs.note,
            "max_diff": max(fastpath.max_difference(t.features, ref) for t in (fs, later)),
            "max_diff_steady": fastpath.max_difference(again.features, ref)}


# =============================================================================== bf16 accuracy (section 7)


def accuracy_run(spec: dict) -> dict:
    """One training run for the bf16-vs-fp32 accuracy proof: validation accuracy at the end."""
    from transfer_gui.engine.loop import Trainer

    cfg = engine_config(dict(spec, size=spec["acc_size"], epochs=spec["acc_epochs"])).replace(**{
        "train.precision": spec["precision"], "train.seed": spec["seed"], "layers.head_lr": spec["lr"],
        "optim.name": "adamw"})
    events: list = []
    t0 = time.perf_counter()
    result = Trainer().fit(cfg, on_event=events.append)
    if result.status != "completed":
        raise RuntimeError(f"run ended {result.status}: {result.message}")
    started = next(e for e in events if type(e).__name__ == "RunStarted")
    return {"precision": started.precision, "final_val_acc": result.history[-1]["val_acc"],
            "best_val_acc": result.best_val_acc, "wall_s": time.perf_counter() - t0, "mode": spec["mode"],
            "seed": spec["seed"]}


# =============================================================================== GUI (section 4)


def gui_available() -> tuple[bool, str]:
    """Whether the window offers a way to start training from code (checked, not assumed)."""
    import importlib.util

    for mod in ("transfer_gui.ui.worker", "transfer_gui.ui.main_window", "transfer_gui.ui.pages.training_page"):
        try:
            if importlib.util.find_spec(mod) is None:
                return False, f"{mod} does not exist yet"
        except ImportError as exc:
            return False, f"cannot import the UI: {exc}"
    return True, ""


def gui_run(spec: dict) -> dict:
    """Section 4: the same training, started with the Training page's Start (what the button
    calls) in an offscreen main window, with a 10 ms QTimer on the GUI thread recording how
    late each tick fires while the engine trains on the window's worker thread."""
    from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["transfer-gui"])
    from transfer_gui.ui import theme
    from transfer_gui.ui.main_window import MainWindow
    from transfer_gui.ui.pages.training_page import TrainingPage
    from transfer_gui.ui.steps import readiness

    # Instrumentation only (the UI files are not changed): time the Training page's slots that
    # run on the GUI thread, wrapped on the class before the window connects them.
    slot_ms: dict[str, list[float]] = {}
    for name in ("_redraw", "_on_event"):
        original = getattr(TrainingPage, name)

        def timed(self, *a, _f=original, _n=name):
            t0 = time.perf_counter()
            try:
                return _f(self, *a)
            finally:
                slot_ms.setdefault(_n, []).append((time.perf_counter() - t0) * 1000)

        setattr(TrainingPage, name, timed)

    theme.apply_theme(app, "light")
    win = MainWindow(QSettings(os.path.join(spec["settings_dir"], "bench.ini"), QSettings.Format.IniFormat))
    win.resize(1280, 800)
    win.show()

    def pump_until(cond, timeout_s: float, signal=None) -> bool:
        """Run the event loop until ``cond()``. With ``signal`` (emitted when the condition may
        have become true) it is checked then and every 500 ms, not every 20 ms: a 50 Hz poll
        would itself take CPU from the training being measured."""
        loop = QEventLoop()
        poll = QTimer()
        poll.setInterval(20 if signal is None else 500)
        poll.timeout.connect(lambda: cond() and loop.quit())
        poll.start()
        if signal is not None:
            signal.connect(lambda *_: cond() and loop.quit())
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()
        poll.stop()
        return bool(cond())

    pump_until(lambda: False, 0.3)
    win.start_background_work()  # what run_app does 150 ms after the first paint (imports torch)
    win.project.replace_config(engine_config(spec), None)
    # Start as a user would: once the window has settled (scan done, background jobs finished).
    ready = pump_until(lambda: readiness(win.project, "Training") == "" and not win.project.scanning
                       and win.tasks.pool.activeThreadCount() == 0
                       and win.tasks.heavy_pool.activeThreadCount() == 0, 180)
    if not ready:
        return {"side": "gui", "not_measured": f"window never ready to train: {readiness(win.project, 'Training')}"}
    win.go_to(spec.get("gui_page", "Training"))  # the page a user watches while training
    if spec.get("redraw_ms"):  # diagnosis only: another redraw interval for the live plots
        win.training.timer.setInterval(int(spec["redraw_ms"]))
    pump_until(lambda: False, 0.5)

    lateness: list[float] = []
    stamped: list[tuple[float, float]] = []  # (seconds since start, seconds late) of every tick
    late: list[tuple[float, float]] = []  # (seconds since start, ms late) of ticks > 30 ms late
    interval = spec.get("probe_ms", 10) / 1000  # another probe interval: diagnosis only
    last = [None]

    def tick() -> None:
        now = time.perf_counter()
        if last[0] is not None:
            lag = max(0.0, now - last[0] - interval)
            lateness.append(lag)
            stamped.append((now - t_work, lag))
            if lag > 0.030:
                late.append((round(now - t_work, 3), round(lag * 1000, 1)))
        last[0] = now

    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.setInterval(int(interval * 1000))
    probe.timeout.connect(tick)
    gui_tid = __import__("threading").get_native_id()

    def gui_sched() -> tuple[float, float, int]:
        with open(f"/proc/self/task/{gui_tid}/schedstat", encoding="ascii") as fh:
            a, b, c = fh.read().split()
        return int(a) / 1e9, int(b) / 1e9, int(c)

    slot_ms.clear()
    loaded_at_start = {m: m in sys.modules for m in ("torch", "torchvision", "timm", "transfer_gui.engine.loop")}
    t_work = time.perf_counter()
    clock = EngineClock(t_work)
    sched0 = gui_sched()
    census: dict[str, int] = {}
    if spec.get("event_census"):  # diagnosis: which events reach which objects while training
        from PySide6.QtCore import QObject

        class Census(QObject):
            def eventFilter(self, obj, e):  # noqa: N802 - Qt's name
                key = f"{e.type().name} -> {type(obj).__name__}"
                if type(obj).__name__ == "QProgressBar":  # which bar: its parent and range
                    key += f" in {type(obj.parent()).__name__} range {obj.minimum()}..{obj.maximum()}"
                census[key] = census.get(key, 0) + 1
                return False

        census_filter = Census()
        app.installEventFilter(census_filter)
    if spec.get("probe", True):
        probe.start()
    win.training.start()  # the Start button's slot
    run = win.training.run
    if run is None or not win.training.is_running():
        return {"side": "gui", "not_measured": "Training page did not start a run"}
    run.event.connect(clock)  # queued to this (GUI) thread, like the page's own slot
    threads_in_training: list[int] = []

    def count_threads(e) -> None:  # the process's threads during the first epoch's validation
        if type(e).__name__ == "PhaseChanged" and e.phase == "validate" and not threads_in_training:
            threads_in_training.append(len(os.listdir("/proc/self/task")))

    run.event.connect(count_threads)
    pump_until(lambda: not win.training.is_running(), spec.get("gui_timeout_s", 3600), win.training.running_changed)
    wall = time.perf_counter() - t_work
    sched1 = gui_sched()
    n_during = len(lateness)
    if spec.get("event_census"):
        app.removeEventFilter(census_filter)
    # What the user sees next: the window loads the run and shows the Results step.
    shown = pump_until(lambda: win.project.record is not None and win.current_step() == "Results", 30,
                       win.project.run_changed)
    pump_until(lambda: False, 0.3)  # the Results page's first paint
    results_s = time.perf_counter() - t_work - wall
    probe.stop()
    after_ms = sorted(x * 1000 for x in lateness[n_during:])
    del lateness[n_during:]
    fin = win.training.last_finished
    if fin is None or fin.status != "completed":
        raise RuntimeError(f"window run ended {getattr(fin, 'status', '?')}: {getattr(fin, 'message', '')}")
    lat_ms = sorted(x * 1000 for x in lateness)
    # the training epochs alone: from the first epoch's start to the Finished event
    t_first = next((t for t, ph, _m in clock.timeline if ph == "train"), 0.0)
    t_fin = next((t for t, ph, _m in clock.timeline if ph == "Finished"), wall)
    train_ms = sorted(lag * 1000 for t, lag in stamped if t_first <= t < t_fin)

    def pct(q: float, values: list[float] | None = None) -> float:
        v = lat_ms if values is None else values
        return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] if v else float("nan")

    def phase_at(t: float) -> str:
        current = "start"
        for t_ev, phase, msg in clock.timeline:
            if t_ev > t:
                break
            current = f"{phase}: {msg[:40]}"
        return current

    by_phase: dict[str, list[float]] = {}
    for t, ms in late:
        by_phase.setdefault(phase_at(t).split(":")[0], []).append(ms)
    return {"side": "gui", "wall_s": wall, "epochs": clock.meter.epochs, "timeline": clock.timeline,
            "late_ticks": [(t, ms, phase_at(t)) for t, ms in sorted(late, key=lambda x: -x[1])[:25]],
            "late_by_phase": {k: {"n": len(v), "max_ms": max(v), "sum_ms": round(sum(v), 1)} for k, v in by_phase.items()},
            "slots": {k: {"n": len(v), "p99_ms": sorted(v)[int(0.99 * (len(v) - 1))], "max_ms": max(v),
                          "sum_s": sum(v) / 1000} for k, v in slot_ms.items() if v},
            "gui_thread": {"cpu_s": sched1[0] - sched0[0], "run_delay_s": sched1[1] - sched0[1],
                           "timeslices": sched1[2] - sched0[2],
                           "mean_wait_ms": 1000 * (sched1[1] - sched0[1]) / max(1, sched1[2] - sched0[2])},
            "ticks": len(lat_ms), "expected_ticks": int(wall / interval), "loaded_at_start": loaded_at_start,
            "latency_p50_ms": pct(0.50), "latency_p99_ms": pct(0.99),
            "latency_max_ms": lat_ms[-1] if lat_ms else float("nan"), "final_val_acc": fin.best_val_acc,
            "train_ticks": len(train_ms), "train_latency_p50_ms": pct(0.50, train_ms),
            "train_latency_p99_ms": pct(0.99, train_ms), "train_latency_max_ms": train_ms[-1] if train_ms else float("nan"),
            "results_shown": shown, "results_s": results_s, "after_ticks": len(after_ms),
            "after_latency_p99_ms": pct(0.99, after_ms), "after_latency_max_ms": after_ms[-1] if after_ms else float("nan"),
            "probe": bool(spec.get("probe", True)), "threads_in_training": threads_in_training[:1],
            "event_census": dict(sorted(census.items(), key=lambda kv: -kv[1])[:25]), "hard_exit": True}


# =============================================================================== first paint


def first_paint(spec: dict) -> dict:
    """Section 5: time from process spawn to the main window's first paint event (offscreen),
    starting the window through ``transfer_gui.ui.app.run_app`` as the desktop entry does.

    An event filter on the QApplication notes the first QEvent.Paint delivered to any widget of
    a QMainWindow; run_app reuses the QApplication created here (it calls ``instance()``)."""
    t_spawn = spec["t_spawn_wall"]
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication, QMainWindow

    app = QApplication.instance() or QApplication(["transfer-gui"])
    marks: dict[str, float] = {}

    class PaintProbe(QObject):
        def eventFilter(self, obj, ev):  # noqa: N802 - Qt's name
            if "paint" not in marks and ev.type() == QEvent.Type.Paint:
                window = obj.window() if hasattr(obj, "window") else None
                if isinstance(window, QMainWindow):
                    marks["paint"] = time.time()
                    marks["torch_loaded"] = "torch" in sys.modules
                    QTimer.singleShot(0, app.quit)
            return False

    probe = PaintProbe()
    app.installEventFilter(probe)
    QTimer.singleShot(20000, app.quit)  # never hang the benchmark
    from transfer_gui.ui.app import run_app

    run_app(["transfer-gui"])
    return {"side": "paint", "method": "QApplication event filter: first QEvent.Paint of a widget in the "
                                       "QMainWindow, window started by transfer_gui.ui.app.run_app",
            "first_paint_s": marks.get("paint", float("nan")) - t_spawn,
            "torch_imported_before_paint": marks.get("torch_loaded"), "hard_exit": True}


# =============================================================================== child entry


CHILD_KINDS = {"plain": plain_loop, "engine": engine_run, "peak": peak_and_flops, "gui": gui_run,
               "paint": first_paint, "frozen": frozen_pass, "accuracy": accuracy_run}


def child_main(spec: dict) -> int:
    load_start = [round(x, 2) for x in os.getloadavg()]
    prof_path = spec.get("profile")
    if prof_path:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    result = CHILD_KINDS[spec["kind"]](spec)
    if prof_path:
        prof.disable()
        prof.dump_stats(prof_path)
    result["load_start"] = load_start
    hard = result.pop("hard_exit", False)
    _finish(result)
    if hard:  # Qt children: skip teardown of windows and thread pools
        os._exit(0)
    return 0


# =============================================================================== parent


def run_child(spec: dict, log_dir: Path, label: str, env_extra: dict, quiet_s: float) -> dict:
    """Run one configuration in a fresh interpreter; returns its result plus process wall and
    the process tree's peak RSS from wait4 (the largest single process, not the sum)."""
    waited, busy = wait_quiet(quiet_s)
    spec = dict(spec, label=label, t_spawn_wall=time.time())
    out_path, err_path = log_dir / f"{label}.out", log_dir / f"{label}.err"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1", **env_extra)
    print(f"  [{time.strftime('%H:%M:%S')}] {label} (others' CPU use {busy:.0%}"
          f"{f', waited {waited:.0f} s' if waited > 1.5 else ''}) ...", end="", flush=True)
    t0 = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                                stdout=out, stderr=err, env=env, cwd=str(ROOT))
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    lines = [ln for ln in out_path.read_text().splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = err_path.read_text().strip().splitlines()
        print(f" FAILED (exit {proc.returncode}); see {err_path}")
        return {"label": label, "error": f"exit {proc.returncode}: {tail[-1] if tail else ''}"}
    res = json.loads(lines[-1][len(RESULT_TAG):])
    res.update(label=label, process_wall_s=wall, tree_max_rss_mb=round(usage.ru_maxrss / 1024.0, 1),
               busy_before=round(busy, 3), waited_s=round(waited, 1))
    extra = ""
    if res.get("epochs"):
        extra = f"; steady {steady(res['epochs']):.1f} img/s, run-queue wait {disturbance(res['epochs']):.2f}"
    print(f" {wall:.1f} s{extra}")
    return res


def make_data(tmp: Path, p: dict) -> dict[str, str]:
    from make_sample_data import CLASS_NAMES, write_fashion_mnist_folders

    dirs = {"train": tmp / "train", "val": tmp / "val", "val_small": tmp / "val_small"}
    # Native 28x28 greyscale PNGs (what write_fashion_mnist_folders writes); transforms upscale.
    # Training images from Fashion-MNIST's training split, validation images from its test split.
    write_fashion_mnist_folders(dirs["train"], CLASS_NAMES, p["train_per_class"], seed=1, split="train")
    write_fashion_mnist_folders(dirs["val"], CLASS_NAMES, p["val_per_class"], seed=2, split="test")
    write_fashion_mnist_folders(dirs["val_small"], CLASS_NAMES, p["tp_val_per_class"], seed=3, split="test")
    dirs.update(acc_train=tmp / "acc_train", acc_val=tmp / "acc_val")
    write_fashion_mnist_folders(dirs["acc_train"], CLASS_NAMES, p["acc_train_per_class"], seed=4, split="train")
    write_fashion_mnist_folders(dirs["acc_val"], CLASS_NAMES, p["acc_val_per_class"], seed=5, split="test")
    return {k: str(v) for k, v in dirs.items()}


def _cpu_bf16() -> bool:
    from transfer_gui.engine.prepare import cpu_has_bf16

    return cpu_has_bf16()


def machine_info() -> dict:
    import torch

    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_bf16": _cpu_bf16(),
            "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


# ----------------------------------------------------------------------------- the table


def _ok(flag: bool | None) -> str:
    return "" if flag is None else ("yes" if flag else "**no**")


def _good(r: dict | None) -> bool:
    return bool(r) and "error" not in r and "not_measured" not in r


def _why(r: dict | None) -> str:
    if not r:
        return "not run"
    return str(r.get("error") or r.get("not_measured") or "")[:120]


def _frozen_rows(R: dict, add) -> None:
    f = R.get("frozen")
    if not f:
        return
    if not _good(f):
        add(6, "frozen pass", "", _why(f))
        return
    sp = f["fast_images_per_s"] / f["eager_images_per_s"]
    add(6, f"one-time frozen pass, EfficientNet-Lite0 backbone, {f['images']} images at {f['size']} px, batch 16: "
           f"images/s, today's engine (torch eager fp32) vs the fast path with its choice and export included "
           f"({f['note'][:160]})", f"{f['eager_images_per_s']:.1f} (engine before)", f"{f['fast_images_per_s']:.1f}",
        f"**{sp:.2f}x**", f">= {TARGETS['frozen_speedup']}x", sp >= TARGETS["frozen_speedup"])
    if "fast_later_images_per_s" in f:
        sl = f["fast_later_images_per_s"] / f["eager_images_per_s"]
        add(6, "same, a later run of the same backbone on this machine (a new process: the export and the choice "
               "from the cache folder, checked again on the first batch)", f"{f['eager_images_per_s']:.1f}",
            f"{f['fast_later_images_per_s']:.1f}", f"**{sl:.2f}x**", f">= {TARGETS['frozen_speedup']}x",
            sl >= TARGETS["frozen_speedup"])
    add(6, "same, a second pass (the choice cached: the runtime's own speed)", f"{f['eager_images_per_s']:.1f}",
        f"{f['fast_steady_images_per_s']:.1f}", f"{f['fast_steady_images_per_s'] / f['eager_images_per_s']:.2f}x")
    add(6, "largest feature difference from torch eager fp32 (relative to the largest feature, at least 1)", "",
        f"{max(f['max_diff'], f['max_diff_steady']):.1e}", "", f"<= {TARGETS['frozen_diff']:.0e}",
        max(f["max_diff"], f["max_diff_steady"]) <= TARGETS["frozen_diff"])


def _accuracy_rows(R: dict, add, p: dict) -> None:
    for mode, what in (("head", "head only"), ("full", "full fine-tuning")):
        runs = {prec: [R[k] for k in sorted(R) if k.startswith(f"acc_{mode}_{prec}_")] for prec in ("fp32", "bf16")}
        if not runs["fp32"]:
            continue
        if not all(_good(r) for rs in runs.values() for r in rs) or not runs["bf16"]:
            add(7, f"bf16 accuracy, {what}", "", "; ".join(_why(r) for rs in runs.values() for r in rs if not _good(r)))
            continue
        if any(r["precision"] != "bf16" for r in runs["bf16"]):
            add(7, f"bf16 accuracy, {what}: not measured, this CPU has no bf16 (auto ran fp32)", "", "")
            continue
        m32 = statistics.mean(r["final_val_acc"] for r in runs["fp32"])
        m16 = statistics.mean(r["final_val_acc"] for r in runs["bf16"])
        d = (m16 - m32) * 100
        pairs = ", ".join(f"{(b['final_val_acc'] - a['final_val_acc']) * 100:+.1f}"
                          for a, b in zip(runs["fp32"], runs["bf16"]))
        add(7, f"EfficientNet-Lite0 (offline weights) {what}, {p['acc_epochs']} epochs, mean final validation "
               f"accuracy over {len(runs['fp32'])} seeds: fp32 (plain column) vs bf16 autocast (train.precision = "
               f"auto); per seed {pairs} points",
            f"{m32:.1%}", f"{m16:.1%}", f"{d:+.2f} points", f"within {TARGETS['bf16_acc_points']} points",
            abs(d) <= TARGETS["bf16_acc_points"])


def build_table(R: dict, p: dict) -> str:
    rows = ["| # | CPU | measurement | plain PyTorch loop | transfer_gui | ratio | target | met |",
            "|---|---|---|---|---|---|---|---|"]
    cpu = p.get("cpu_label", "")

    def add(sec, what, plain="", eng="", ratio="", target="", met=None):
        rows.append(f"| {sec} | {cpu} | {what} | {plain} | {eng} | {ratio} | {target} | {_ok(met)} |")

    s = p["size"]
    a, b = R.get("head_plain"), R.get("head_engine")
    if _good(a) and _good(b):
        sp = a["wall_s"] / b["wall_s"]
        add(1, f"head only, EfficientNet-Lite0, {p['head_epochs']} epochs, {p['train_per_class'] * 10} train + "
               f"{p['val_per_class'] * 10} val images at {s} px: wall time from model build to the last "
               f"validation", f"{a['wall_s']:.1f} s", f"{b['wall_s']:.1f} s", f"**{sp:.1f}x** faster",
            f">= {TARGETS['head_speedup']:.0f}x", sp >= TARGETS["head_speedup"])
        c = R.get("head_engine_later")
        if _good(c):
            sc = a["wall_s"] / c["wall_s"]
            add(1, "same, a later run on this machine (a new process; the frozen graph and the runtime choice from "
                   "the cache folder the first run filled)", f"{a['wall_s']:.1f} s", f"{c['wall_s']:.1f} s",
                f"**{sc:.1f}x** faster", f">= {TARGETS['head_speedup']:.0f}x", sc >= TARGETS["head_speedup"])
        add(1, "same, whole process (interpreter start and imports included)", f"{a['process_wall_s']:.1f} s",
            f"{b['process_wall_s']:.1f} s", f"{a['process_wall_s'] / b['process_wall_s']:.1f}x faster")
        d = (b["final_val_acc"] - a["final_val_acc"]) * 100
        add(1, "final validation accuracy", f"{a['final_val_acc']:.1%}", f"{b['final_val_acc']:.1%}",
            f"{d:+.1f} points", f"within {TARGETS['head_acc_points']:.0f} point", abs(d) <= TARGETS["head_acc_points"])
        v = R.get("head_plain_bn_eval")
        if _good(v):
            dv = (b["final_val_acc"] - v["final_val_acc"]) * 100
            add(1, "plain loop variant with the frozen layers' BatchNorm/Dropout in eval mode (as the engine): "
                   "final validation accuracy, wall time", f"{v['final_val_acc']:.1%}, {v['wall_s']:.1f} s",
                f"{b['final_val_acc']:.1%}", f"{dv:+.1f} points", "", None)
    else:
        add(1, "head only", _why(a), _why(b))

    for sec, key, what in ((2, "partial", "partial fine-tuning (ResNet-18 layer4 + head, random init)"),
                           (3, "full", "full fine-tuning (ResNet-18, nothing frozen, random init)")):
        a, b = R.get(f"{key}_plain"), R.get(f"{key}_engine")
        if not (_good(a) and _good(b)):
            add(sec, what, _why(a), _why(b))
            continue
        target = TARGETS["partial_speedup"] if key == "partial" else TARGETS["full_ratio"]
        n_ep = len(a["epochs"])
        sa, sb = steady(a["epochs"]), steady(b["epochs"])
        add(sec, f"{what}: training images/s at {s} px, steady state (mean of epochs 2..{n_ep})",
            f"{sa:.1f}", f"{sb:.1f}", f"**{sb / sa:.2f}x**", f">= {target}x", sb / sa >= target)
        ma, mb = steady_median(a["epochs"]), steady_median(b["epochs"])
        add(sec, "same, from the median batch time (less sensitive to other processes)", f"{ma:.1f}", f"{mb:.1f}",
            f"{mb / ma:.2f}x")
        fa, fb = a["epochs"][0]["images_per_s"], b["epochs"][0]["images_per_s"]
        add(sec, "same, first epoch", f"{fa:.1f}", f"{fb:.1f}", f"{fb / fa:.2f}x")
        ta = sum(e["images"] for e in a["epochs"]) / (a["setup_s"] + sum(e["train_s"] for e in a["epochs"]))
        tb = sum(e["images"] for e in b["epochs"]) / (b["setup_s"] + sum(e["train_s"] for e in b["epochs"]))
        add(sec, f"same, all {n_ep} epochs including one-time work (model build, decoding, caches; "
                 f"validation excluded): {a['setup_s']:.1f} s vs {b['setup_s']:.1f} s before the first batch",
            f"{ta:.1f}", f"{tb:.1f}", f"{tb / ta:.2f}x")
        add(sec, "run-queue wait of our threads during the steady epochs (0 = undisturbed)",
            f"{disturbance(a['epochs']):.2f}", f"{disturbance(b['epochs']):.2f}")

    pk = [R[k] for k in ("peak", "peak2") if _good(R.get(k))]
    a, b = R.get("full_plain"), R.get("full_engine")
    if pk and _good(b) and b.get("precision") == "bf16":
        best16 = max(r.get("bf16_peak_gflops", 0.0) for r in pk)
        gf = pk[0]["train_gflop_per_image_full"]
        rate_b = steady(b["epochs"]) * gf
        add(3, f"full fine-tuning in bf16: achieved GFLOP/s ({gf:.2f} GFLOP per training image) as a share of "
               f"the machine's bf16 limit (bf16 torch.mm {pk[0]['mm_n']}x{pk[0]['mm_n']}: {best16:.0f} GFLOP/s)",
            "", f"{rate_b:.0f} GFLOP/s = {rate_b / best16:.0%}", "", f">= {TARGETS['full_peak']:.0%}",
            rate_b / best16 >= TARGETS["full_peak"])
    if pk and _good(b):
        best = max(pk, key=lambda r: r["peak_gflops"])
        conv = max(r["conv3x3_gflops"] for r in pk)
        gf = best["train_gflop_per_image_full"]
        rate_b = steady(b["epochs"]) * gf
        rate_a = steady(a["epochs"]) * gf if _good(a) else float("nan")
        add(3, f"full fine-tuning: achieved GFLOP/s ({gf:.2f} GFLOP per training image, FlopCounterMode) "
               f"as a share of the fp32 matmul peak ({best['peak_gflops']:.0f} GFLOP/s, torch.mm "
               f"{best['mm_n']}x{best['mm_n']}, best of {len(pk)} measurements)",
            f"{rate_a:.0f} GFLOP/s = {rate_a / best['peak_gflops']:.0%}",
            f"{rate_b:.0f} GFLOP/s = {rate_b / best['peak_gflops']:.0%}", "",
            "" if b.get("precision") == "bf16" else f">= {TARGETS['full_peak']:.0%}",
            None if b.get("precision") == "bf16" else rate_b / best["peak_gflops"] >= TARGETS["full_peak"])
        add(3, f"same, as a share of a oneDNN 3x3 convolution's rate ({conv:.0f} GFLOP/s; for context)",
            f"{rate_a / conv:.0%}", f"{rate_b / conv:.0%}")

    g, gh = R.get("gui"), R.get("gui_headless")
    if _good(g) and _good(gh):
        heads = [r for r in (gh, R.get("gui_headless2")) if _good(r)]
        sh = statistics.mean(steady(r["epochs"]) for r in heads)
        wh = statistics.mean(r["wall_s"] for r in heads)
        n_h = f"mean of {len(heads)} headless runs" if len(heads) > 1 else "headless"
        gq = R.get("gui_noprobe")
        if _good(gq):
            sq = steady(gq["epochs"])
            add(4, f"{p['gui_epochs']}-epoch partial fine-tuning (section 2's config) through the window (offscreen, "
                   f"Start pressed on the Training page) vs headless: steady training images/s",
                f"{sh:.1f} ({n_h})", f"{sq:.1f} (window)", f"**{sq / sh:.2f}x**", f">= {TARGETS['gui_ratio']}x",
                sq / sh >= TARGETS["gui_ratio"])
            add(4, "same, whole run wall time (Start to Finished)", f"{wh:.1f} s", f"{gq['wall_s']:.1f} s (window)",
                f"{wh / gq['wall_s']:.2f}x")
        sg = steady(g["epochs"])
        add(4, "same, while the 10 ms latency probe below runs in the window (the probe's own wake-ups cost "
               "the training CPU time)", f"{sh:.1f}", f"{sg:.1f} (window + probe)", f"{sg / sh:.2f}x", "",
            None if _good(gq) else sg / sh >= TARGETS["gui_ratio"])
        add(4, f"GUI event-loop lateness while training (10 ms QTimer, {g['ticks']} ticks): p50 / p99 / max",
            "", f"{g['latency_p50_ms']:.1f} / {g['latency_p99_ms']:.1f} / {g['latency_max_ms']:.1f} ms", "",
            f"p99 < {TARGETS['gui_p99_ms']:.0f} ms, max < {TARGETS['gui_max_ms']:.0f} ms",
            g["latency_p99_ms"] < TARGETS["gui_p99_ms"] and g["latency_max_ms"] < TARGETS["gui_max_ms"])
        if "train_latency_p99_ms" in g:
            add(4, f"same, training epochs only (first epoch's start to Finished, {g['train_ticks']} ticks; "
                   f"excludes preparation and what the window does after the run)", "",
                f"{g['train_latency_p50_ms']:.1f} / {g['train_latency_p99_ms']:.1f} / {g['train_latency_max_ms']:.1f} ms")
        if g.get("after_ticks"):
            add(4, f"after the run: the window loads it and shows the Results step ({g['results_s']:.1f} s, "
                   f"{g['after_ticks']} ticks): p99 / max lateness", "",
                f"{g['after_latency_p99_ms']:.1f} / {g['after_latency_max_ms']:.1f} ms")
    else:
        why = _why(g) if g else R.get("gui_skipped", "not run")
        add(4, f"training through the window vs headless; GUI latency: TODO, not measured ({why})",
            "not measured", "not measured")

    _frozen_rows(R, add)
    _accuracy_rows(R, add, p)
    for key, sec in (("head", 1), ("partial", 2), ("full", 3)):
        a, b = R.get(f"{key}_plain"), R.get(f"{key}_engine")
        if _good(a) and _good(b):
            is_head = key == "head"
            add(5, f"peak RSS, run of section {sec} (VmHWM of the process; plain loop's DataLoader workers: "
                   f"largest one)", f"{a['vm_hwm_mb']:.0f} MB" + (f" (+ workers {a['children_max_rss_mb']:.0f} MB)" if a.get("workers") else ""),
                f"{b['vm_hwm_mb']:.0f} MB", f"{b['vm_hwm_mb'] / a['vm_hwm_mb']:.2f}x",
                f"< {TARGETS['head_rss_mb'] / 1024:.1f} GB" if is_head else "",
                b["vm_hwm_mb"] < TARGETS["head_rss_mb"] if is_head else None)
    if _good(g):
        add(5, "peak RSS, window run of section 4", f"{gh['vm_hwm_mb']:.0f} MB (headless)",
            f"{g['vm_hwm_mb']:.0f} MB (window)")
    paints = [R[k] for k in sorted(R) if k.startswith("paint") and _good(R[k])]
    if paints:
        vals = [r["first_paint_s"] for r in paints]
        torch_before = any(r.get("torch_imported_before_paint") for r in paints)
        add(5, f"time to the first painted main window (offscreen, process spawn to first paint event; "
               f"{len(vals)} launches: first / median; torch imported before paint: {'yes' if torch_before else 'no'})",
            "", f"{vals[0]:.2f} s / {statistics.median(vals):.2f} s")
    else:
        add(5, "time to first painted window", "", _why(R.get("paint0")))
    return "\n".join(rows)


def _accuracy_section(go, p: dict, dirs: dict, base: dict, tmp: Path) -> None:
    """Section 7: bf16 autocast against fp32, head only and full fine-tuning, the same seeds."""
    for mode, lr in (("head", 3e-3), ("full", 3e-4)):
        for seed in range(p["acc_seeds"]):
            for prec in ("fp32", "auto"):
                label = f"acc_{mode}_{'fp32' if prec == 'fp32' else 'bf16'}_{seed}"
                go(label, dict(base, kind="accuracy", model="efficientnet_lite0", weights="pretrained", mode=mode,
                               precision=prec, seed=seed, lr=lr, acc_size=p["acc_size"], acc_epochs=p["acc_epochs"],
                               train_dir=dirs["acc_train"], val_dir=dirs["acc_val"], run_dir=str(tmp / "runs" / label)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run (< 3 minutes)")
    ap.add_argument("--out", type=Path, help="write every measurement as JSON here")
    ap.add_argument("--sections", default="1,2,3,4,5,6,7", help="comma-separated subset, e.g. 1,3")
    ap.add_argument("--plain-workers", type=int, default=0,
                    help="DataLoader workers of the plain loop (default 0: on this 2-core machine worker "
                         "processes compete with torch's two compute threads)")
    ap.add_argument("--acc-epochs", type=int, help="epochs of section 7's runs (default: the preset's, 2 in full)")
    ap.add_argument("--no-bn-eval-variant", dest="bn_eval_variant", action="store_false",
                    help="skip the plain head-only loop variant with frozen BatchNorm in eval mode (section 1)")
    ap.add_argument("--wait-quiet", type=float, help="seconds to wait for an idle machine before each run "
                    "(default 120 full, 0 quick)")
    ap.add_argument("--profile-dir", type=Path, help="run every child under cProfile; .pstats files here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary images, logs and run folders")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(json.loads(args.child))

    mode = "quick" if args.quick else "full"
    p = dict(PRESETS[mode])
    if args.acc_epochs:
        p["acc_epochs"] = args.acc_epochs
    quiet_s = p["wait_quiet"] if args.wait_quiet is None else args.wait_quiet
    sections = {int(x) for x in args.sections.split(",") if x.strip()}
    info = machine_info()
    p["cpu_label"] = info["cpu_capability"] + (" + bf16" if info.get("cpu_bf16") else "")
    print(f"bench_speed ({mode}): {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"{info['threads']} threads; load average {os.getloadavg()[0]:.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_speed_"))
    log_dir = tmp / "logs"
    log_dir.mkdir()
    # Qt children keep their settings and default run folders inside the temporary folder.
    env_extra = {"XDG_CONFIG_HOME": str(tmp / "xdg-config"), "XDG_DATA_HOME": str(tmp / "xdg-data"),
                 "XDG_CACHE_HOME": str(tmp / "xdg-cache")}
    t_data = time.perf_counter()
    dirs = make_data(tmp, p)
    print(f"  images written in {time.perf_counter() - t_data:.1f} s under {tmp} (28x28 greyscale PNG)")
    if args.profile_dir:
        args.profile_dir.mkdir(parents=True, exist_ok=True)

    R: dict = {}
    base = {"size": p["size"], "batch_size": 32, "train_dir": dirs["train"]}

    def go(label: str, spec: dict) -> None:
        if args.profile_dir and spec["kind"] in ("plain", "engine"):
            spec = dict(spec, profile=str(args.profile_dir / f"{label}.pstats"))
        R[label] = run_child(spec, log_dir, label, env_extra, quiet_s)

    t_all = time.perf_counter()
    if 1 in sections:
        head = dict(base, model="efficientnet_lite0", weights="pretrained", mode="head", epochs=p["head_epochs"],
                    val_dir=dirs["val"])
        go("head_plain", dict(head, kind="plain", workers=args.plain_workers))
        go("head_engine", dict(head, kind="engine", run_dir=str(tmp / "runs" / "head")))
        # the same run again in a new process: the frozen graph and the runtime choice come from the cache folder
        go("head_engine_later", dict(head, kind="engine", run_dir=str(tmp / "runs" / "head_later")))
        if args.bn_eval_variant:
            go("head_plain_bn_eval", dict(head, kind="plain", workers=args.plain_workers, bn_eval=True))
    for sec, key in ((2, "partial"), (3, "full")):
        if sec in sections:
            spec = dict(base, model="resnet18", weights="none", mode=key, epochs=p[f"{key}_epochs"])
            if sec == 3:
                go("peak", dict(base, kind="peak", mm_n=p["mm_n"], mm_reps=p["mm_reps"]))
            go(f"{key}_plain", dict(spec, kind="plain", workers=args.plain_workers))
            go(f"{key}_engine", dict(spec, kind="engine", val_dir=dirs["val_small"], run_dir=str(tmp / "runs" / key)))
            if sec == 3:
                go("peak2", dict(base, kind="peak", mm_n=p["mm_n"], mm_reps=p["mm_reps"]))
    if 4 in sections:
        ok, why = gui_available()
        if ok:
            gspec = dict(base, model="resnet18", weights="none", mode="partial", epochs=p["gui_epochs"],
                         val_dir=dirs["val_small"], settings_dir=str(tmp / "qsettings"))
            # Interleaved, so that a drift of the machine's speed does not favour one side: headless,
            # window with the latency probe, window without it (its throughput is the one compared:
            # a timer firing 100 times a second is the measuring device, not part of the window),
            # headless again.
            go("gui_headless", dict(gspec, kind="engine", run_dir=str(tmp / "runs" / "gui_headless")))
            go("gui", dict(gspec, kind="gui", run_dir=str(tmp / "runs" / "gui")))
            go("gui_noprobe", dict(gspec, kind="gui", probe=False, run_dir=str(tmp / "runs" / "gui_noprobe")))
            go("gui_headless2", dict(gspec, kind="engine", run_dir=str(tmp / "runs" / "gui_headless2")))
        else:
            R["gui_skipped"] = why
            print(f"  section 4 not measured: {why}")
    if 6 in sections:
        go("frozen", dict(base, kind="frozen", frozen_images=p["frozen_images"]))
    if 7 in sections:
        _accuracy_section(go, p, dirs, base, tmp)
    if 5 in sections:
        for i in range(p["paint_runs"]):
            go(f"paint{i}", {"kind": "paint"})
    total = time.perf_counter() - t_all

    table = build_table(R, p)
    print()
    print(f"Machine: {info['cpu']} ({info['cpu_capability']}), {info['cores']} cores, {info['mem_gb']} GB; "
          f"torch {info['torch']} ({info['threads']} threads), Python {info['python']}; mode {mode}; "
          f"{total / 60:.1f} min")
    print()
    print(table)
    print()
    if args.out:
        args.out.write_text(json.dumps({"mode": mode, "preset": p, "machine": info, "targets": TARGETS,
                                        "plain_workers": args.plain_workers, "results": R, "table": table,
                                        "total_s": total}, indent=1))
        print(f"wrote {args.out}")
    if args.keep:
        print(f"kept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One wording of the engine's events for the command line and the window."""

from __future__ import annotations

import io
import math

from transfer_gui.engine import events as ev
from transfer_gui.engine.wording import describe, epoch_end, pct


def _epoch(**kw):
    base = dict(epoch=1, epochs=4, train_loss=0.4191, train_acc=0.958, val_loss=0.25, val_acc=0.9375,
                per_class_acc=[], confusion=[], seconds=0.74, lrs={}, is_best=True)
    base.update(kw)
    return ev.EpochEnd(**base)


def test_epoch_line_and_missing_validation():
    assert epoch_end(_epoch()) == ("Epoch 2/4: training loss 0.419, accuracy 95.8%; validation loss 0.250, "
                                   "accuracy 93.8% (0.7 s) (best so far)")
    text, kind = describe(_epoch(val_loss=math.nan, val_acc=math.nan, is_best=False))
    assert "no validation images" in text and "nan" not in text.lower() and kind == ""
    assert pct(float("nan")) == "n/a" and pct(0.5) == "50.0%"


def test_quiet_events_and_kinds():
    assert describe(ev.BatchEnd(0, 1, 1, 6, 0.3, {"head": 1e-3}, 100.0)) is None
    assert describe(ev.PhaseChanged("train", "Epoch 1 of 4")) is None
    assert describe(ev.PhaseChanged("prepare", "Scanning image folders")) == ("Scanning image folders", "muted")
    assert describe(ev.Warning("disk almost full"))[1] == "warn"
    assert describe(ev.Finished("failed", "boom", "/r"))[1] == "error"
    assert describe(ev.Finished("early_stopped", "done", "/r"))[1] == "ok"


def test_the_command_line_prints_the_same_sentences_as_the_window():
    from transfer_gui.cli import ConsoleProgress

    out = io.StringIO()
    progress = ConsoleProgress(stream=out)
    started = ev.RunStarted("/r", "cpu", "fp32", ["a", "b"], ["stem", "head"], ["head"], 10, 4, 2, 1, 2, True)
    for e in (started, _epoch(), ev.Warning("w"), ev.Finished("completed", "Finished.", "/r")):
        progress(e)
    lines = out.getvalue().splitlines()
    assert lines == [describe(started)[0], describe(_epoch())[0], "Warning: w"]  # the end is printed by the command

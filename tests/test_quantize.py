"""onnx-int8 exports: calibrated on the run's training images, compared with fp32 on its validation
set (figures recomputed here independently), metadata kept, the shape arithmetic kept float, a
pending file kept or discarded; latency per image; the command line's lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import trained_run
from transfer_gui.engine import measure, quantize
from transfer_gui.engine.export import ExportError, export_model
from transfer_gui.engine.formats import QUANTIZED, SUFFIXES
from transfer_gui.engine.predict import Predictor


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory.mktemp("int8"), per_class=12, **{"train.epochs": 2, "layers.head_lr": 0.01})


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8-out") / "m"
    stages = []
    report = export_model(run, "onnx-int8", out, progress=lambda stage, frac: stages.append((stage, frac)))
    return report, stages


def _accuracy(pred: Predictor, rows: list[dict]) -> np.ndarray:
    return np.array([pred.classes.index(r["top"][0][0]) for r in pred.predict_paths([r["path"] for r in rows])])


@pytest.mark.slow
def test_int8_report_matches_figures_recomputed_from_the_files(run, exported):
    from transfer_gui.engine import rundir

    report, stages = exported
    q = report.quantization
    assert report.path.endswith(SUFFIXES["onnx-int8"]) and Path(report.path).stat().st_size == report.bytes
    assert report.format == "onnx-int8" and report.parity_max_abs_diff is None
    rows = rundir.load_run(run).predictions  # the run's validation set, as the run scored it
    labels = np.array([r["true"] for r in rows])
    assert q.images == len(rows) == report.parity_images
    assert q.fp32_accuracy == pytest.approx(np.mean([r["pred"] == r["true"] for r in rows]))
    fp32 = _accuracy(Predictor.load(run), rows)
    int8 = _accuracy(Predictor.load(report.path), rows)
    assert q.int8_accuracy == pytest.approx(float((int8 == labels).mean()))
    assert q.agreement == pytest.approx(float((int8 == fp32).mean())) == report.parity_top1_agree
    assert q.int8_bytes == report.bytes and q.int8_bytes < 0.35 * q.fp32_bytes
    assert q.fp32_ms > 0 and q.int8_ms > 0 and q.threads >= 1
    assert 0 < q.calibration_images <= quantize.CALIBRATION_IMAGES
    assert q.quantized_ops.get("Conv", 0) >= 10 and q.float_ops.get("Gemm") == 1  # the head stays float
    assert [f for _s, f in stages] == sorted(f for _s, f in stages) and stages[-1] == ("done", 1.0)
    words = "\n".join(q.lines())
    assert f"{q.agreement:.1%}" in words and f"int8 {q.int8_accuracy:.1%}" in words and "Conv x" in words


@pytest.mark.slow
def test_int8_file_keeps_the_metadata_and_says_how_it_was_quantised(run, exported):
    import onnx

    report, _ = exported
    fp32, int8 = Predictor.load(run), Predictor.load(report.path)
    assert (int8.classes, int8.preprocessing, int8.temperature, int8.threshold) == \
        (fp32.classes, fp32.preprocessing, fp32.temperature, fp32.threshold)
    props = {p.key: p.value for p in onnx.load(report.path).metadata_props}
    how = json.loads(props["quantization"])
    assert how["scheme"] == "static QDQ" and how["calibration_images"] == report.quantization.calibration_images
    assert how["recipe"] == report.quantization.recipe == quantize.DEFAULT.name and how["calibration"] == "minmax"
    assert how["float_nodes"] == [] and how["float_stem"] is False
    nodes = {n.op_type for n in onnx.load(report.path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= nodes


def test_quantized_formats_are_not_parity_formats_and_the_cli_offers_them():
    from transfer_gui import cli
    from transfer_gui.engine.export import ALL_FORMATS, FORMATS

    assert cli.QUANTIZED_FORMATS == QUANTIZED and not set(QUANTIZED) & set(FORMATS)
    assert set(ALL_FORMATS) == set(FORMATS) | set(QUANTIZED)
    from transfer_gui.engine.formats import file_stem

    assert file_stem("cats.int8.onnx") == "cats" and file_stem("cats.onnx") == "cats"


def test_a_checkpoint_without_its_data_is_refused_naming_the_folder(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    data = tmp_path / "moved"
    import tomllib

    folders = tomllib.loads((copy / "config.toml").read_text())["data"]["folders"]
    shutil.move(folders[0], data)
    try:
        with pytest.raises(ExportError, match="training images") as info:
            export_model(copy, "onnx-int8", tmp_path / "m.int8.onnx")
        assert folders[0] in str(info.value)
    finally:
        shutil.move(data, folders[0])
    assert not (tmp_path / "m.int8.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_shape_arithmetic_and_the_head_stay_float():
    import onnx
    from onnx import TensorProto, helper

    c = lambda name, v: helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [], [v]))
    nodes = [
        c("two", 2), c("one", 1),
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "two"], ["h"], name="gather"),
        helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Ceil", ["hf"], ["hc"], name="ceil"),
        helper.make_node("Cast", ["hc"], ["hi"], to=TensorProto.INT64, name="back"),
        helper.make_node("Sub", ["hi", "one"], ["p"], name="sub"),
        helper.make_node("Concat", ["p", "p", "p", "p", "p", "p", "p", "p"], ["pads"], axis=0, name="concat"),
        helper.make_node("Unsqueeze", ["pads", "zero"], ["pads8"], name="unsq"),
        helper.make_node("Pad", ["x", "pads8"], ["xp"], name="pad"),
        helper.make_node("Conv", ["xp", "w"], ["y"], name="conv"),
        helper.make_node("Flatten", ["y"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "g"], ["out"], name="head"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])],
                              initializer=[helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], [0.1] * 12),
                                           helper.make_tensor("g", TensorProto.FLOAT, [1, 2], [1.0, 2.0]),
                                           helper.make_tensor("zero", TensorProto.INT64, [1], [0])])
    kept = quantize.kept_float(onnx.helper.make_model(graph))
    assert set(kept) == {"shape", "gather", "cast", "ceil", "back", "sub", "concat", "unsq", "head"}


def test_a_pending_file_is_kept_or_discarded_leaving_the_target_alone(tmp_path):
    target = tmp_path / "m.int8.onnx"
    target.write_bytes(b"previous")
    pending = quantize.pending_path(target)
    assert pending.parent == target.parent and pending.name == "m.int8.onnx" + quantize.PENDING_SUFFIX
    pending.write_bytes(b"new")
    quantize.discard(pending)
    assert target.read_bytes() == b"previous" and not pending.exists()
    pending.write_bytes(b"new")
    assert quantize.keep(pending, target) == target
    assert target.read_bytes() == b"new" and not pending.exists()
    with pytest.raises(quantize.QuantizeError, match=str(pending)):
        quantize.keep(pending, target)


def test_time_calls_is_the_median_of_the_timed_runs_after_warmup(monkeypatch):
    durations = [0.001, 0.005, 0.003, 0.004]
    readings = iter([t for i, d in enumerate(durations) for t in (float(i), i + d)])  # (start, end) per run
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(readings))
    calls = []
    ms = measure.time_calls(lambda: calls.append(1), runs=len(durations), warmup=2)
    assert len(calls) == 2 + len(durations)
    assert ms == pytest.approx(1000 * float(np.median(durations)))


def test_latency_of_a_checkpoint_and_an_onnx_export(run, tmp_path):
    onnx_file = export_model(run, "onnx", tmp_path / "m.onnx").path
    for path, backend in ((run, "pytorch"), (onnx_file, "onnxruntime")):
        lat = measure.latency(path, threads=1, runs=5, warmup=1)
        assert lat.backend == backend and lat.runs == 5 and lat.threads == 1 and lat.median_ms > 0
        assert "batch 1, median of 5" in lat.words()


@pytest.mark.slow
def test_cli_export_int8_prints_agreement_accuracy_size_and_latency(run, tmp_path, capsys):
    from transfer_gui import cli

    out = tmp_path / "cli.int8.onnx"
    assert cli.main(["export", str(run), "--format", "onnx-int8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and str(out) in text
    for words in ("top-1 agreement", "validation accuracy: fp32", "size: fp32", "latency per image", "int8 ops"):
        assert words in text, text


# ----------------------------------------------------------------------------- the verdict (issue #23)


def _figures(fp32: float, int8: float, agreement: float, images: int = 200) -> dict:
    return {"images": images, "fp32_accuracy": fp32, "int8_accuracy": int8, "agreement": agreement}


def test_int8_is_acceptable_within_one_point_and_the_agreement_floor():
    assert quantize.acceptable(_figures(0.780, 0.770, 0.95))  # -1.0 point: the limit itself
    assert not quantize.acceptable(_figures(0.780, 0.755, 0.945))  # the run: -2.5 points
    assert not quantize.acceptable(_figures(0.780, 0.765, 0.99))  # -1.5 points
    assert not quantize.acceptable(_figures(0.780, 0.780, quantize.MIN_AGREEMENT - 0.01))  # same accuracy, other answers
    assert quantize.acceptable(_figures(0.78, 0.80, quantize.MIN_AGREEMENT))  # int8 ahead is no loss
    # one image is the least a small set can show: 1 of 40 images is 2.5 points, allowed; 2 are not
    assert quantize.allowed_drop(40) == 2.5 and quantize.allowed_drop(1000) == quantize.MAX_DROP_POINTS == 1.0
    assert quantize.acceptable(_figures(0.9, 0.875, 0.975, images=40))
    assert not quantize.acceptable(_figures(0.9, 0.85, 0.95, images=40))
    # and all but one image must keep their class where the floor would ask for more than every image
    assert quantize.min_agreement(6) == pytest.approx(5 / 6) and quantize.min_agreement(200) == quantize.MIN_AGREEMENT
    assert quantize.acceptable(_figures(1.0, 1.0, 5 / 6, images=6))
    assert not quantize.acceptable(_figures(1.0, 1.0, 4 / 6, images=6))


def _report(fp32: float, int8: float, agreement: float, **more) -> quantize.QuantReport:
    return quantize.QuantReport(images=200, agreement=agreement, fp32_accuracy=fp32, int8_accuracy=int8,
                                fp32_bytes=300, int8_bytes=100, fp32_ms=2.0, int8_ms=1.0, threads=1,
                                calibration_images=200, **more)


def test_the_verdict_says_the_loss_and_not_recommended():
    bad = _report(0.78, 0.755, 0.945, recipe="minmax+8 noisiest float",
                  tried=tuple({"recipe": f"r{i}", "drop_points": 2.5, "agreement": 0.9, "good": False} for i in range(5)))
    assert not bad.good
    assert "loses 2.5 points" in bad.verdict() and "not recommended" in bad.verdict() and "5 recipe" in bad.verdict()
    assert bad.verdict() == bad.lines()[-1] and "tried: r0 -2.5" in bad.lines()[4]
    other = _report(0.78, 0.78, 0.85, recipe="minmax")
    assert not other.good and "changes the top-1 class of 15.0%" in other.verdict()
    good = _report(0.78, 0.775, 0.96, recipe="minmax")
    assert good.good and "fine to use" in good.verdict() and "not recommended" not in good.verdict()


def test_even_batches_give_histogram_calibrators_one_batch_size():
    import torch

    batches = [torch.zeros(16, 3, 4, 4)] * 12 + [torch.zeros(8, 3, 4, 4)]  # 200 images
    even = quantize.even_batches(batches)
    assert {len(b) for b in even} == {10} and sum(len(b) for b in even) == 200
    odd = quantize.even_batches([torch.zeros(16, 3, 4, 4), torch.zeros(3, 3, 4, 4)])  # 19: prime, over 16
    assert {len(b) for b in odd} == {16} and sum(len(b) for b in odd) == 16
    assert [len(b) for b in quantize.even_batches([torch.zeros(5, 3, 4, 4)])] == [5]


def test_the_noisiest_activation_is_the_one_with_an_outlier(tmp_path):
    """Two parallel Relu branches calibrated on the same images; one has a single huge value, so its
    8-bit step is coarse and its round trip noisy: it ranks first, and nodes_touching names its ends."""
    import onnx
    import torch
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["calm"], name="calm_relu"),
             helper.make_node("Mul", ["x", "spike"], ["wild_in"], name="spiky_mul"),
             helper.make_node("Relu", ["wild_in"], ["wild"], name="wild_relu"),
             helper.make_node("Add", ["calm", "wild"], ["y"], name="join")]
    spike = np.ones((1, 1, 4, 4), np.float32)
    spike[0, 0, 0, 0] = 1000.0
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 4, 4])],
                              initializer=[onnx.numpy_helper.from_array(spike, "spike")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fp32 = tmp_path / "g.onnx"
    onnx.save(model, str(fp32))
    from onnxruntime.quantization import QuantFormat, quantize_static

    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.uniform(0, 1, (8, 1, 4, 4)).astype(np.float32)) for _ in range(2)]
    quantize_static(str(fp32), str(tmp_path / "q.onnx"), quantize._Reader("x", batches, lambda f: None),
                    quant_format=QuantFormat.QDQ)
    ranked = quantize.noisiest_tensors(tmp_path / "q.onnx", batches)
    names = [name for name, _ in ranked]
    assert names[0] == "wild" and dict(ranked)["wild"] < dict(ranked)["calm"] - 5
    assert set(quantize.nodes_touching(model, ["wild"])) == {"wild_relu", "join"}


@pytest.mark.slow
def test_the_default_recipe_is_good_on_a_small_trained_model(exported):
    """Measured on this fixture with seeds 0-3: no image changed class (6 of 6 agree, drop 0), where
    one changed image would still pass; so the search stops at its first recipe."""
    q = exported[0].quantization
    assert q.good and q.recipe == quantize.LADDER[0].name and [t["recipe"] for t in q.tried] == [q.recipe]
    assert "fine to use" in q.lines()[-1]


def _refusing(monkeypatch) -> None:
    """No int8 file is good enough (a floor no file reaches), and the search is cut to three recipes,
    the second one that onnxruntime cannot apply."""
    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)
    monkeypatch.setattr(quantize, "min_agreement", lambda images: 1.01)
    monkeypatch.setattr(quantize, "LADDER", (quantize.DEFAULT, quantize.Recipe("broken", calibration="no such")))
    monkeypatch.setattr(quantize, "FLOAT_STEPS", (2,))


@pytest.mark.slow
def test_cli_refuses_an_int8_file_that_is_not_good_and_leaves_no_file(run, tmp_path, capsys, monkeypatch):
    from transfer_gui import cli

    _refusing(monkeypatch)
    out = tmp_path / "m.int8.onnx"
    out.write_bytes(b"the file from before")
    with pytest.raises(SystemExit) as info:
        cli.main(["export", str(run), "--format", "onnx-int8", "--out", str(out)])
    text = capsys.readouterr()
    assert info.value.code == 2
    assert "not recommended" in text.err and str(out) in text.err and "--accept-int8-loss" in text.err
    assert "tried: minmax" in text.out and "broken failed, minmax+2 noisiest float" in text.out  # all were tried
    assert out.read_bytes() == b"the file from before" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.mark.slow
def test_cli_writes_a_lossy_int8_file_only_when_told_and_records_its_recipe(run, tmp_path, capsys, monkeypatch):
    import onnx

    from transfer_gui import cli

    _refusing(monkeypatch)
    out = tmp_path / "m.int8.onnx"
    assert cli.main(["export", str(run), "--format", "onnx-int8", "--out", str(out), "--accept-int8-loss"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (int8 loss accepted with --accept-int8-loss)" in text and "not recommended" in text
    how = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["quantization"])
    assert how["recipe"] in ("minmax", "minmax+2 noisiest float") and f"recipe {how['recipe']}" in text
    assert (how["float_nodes"] != []) == (how["recipe"] != "minmax")
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_accept_int8_loss_is_refused_for_other_formats(run, tmp_path):
    from transfer_gui import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--accept-int8-loss"])
    assert info.value.code == 2 and not (tmp_path / "m.onnx").exists()

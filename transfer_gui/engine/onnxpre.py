"""The ``onnx-rgb`` export: the preprocessing inside the ONNX graph, so that onnxruntime and an
image library alone reproduce the app.

Input ``image``: uint8 RGB pixels ``(N, H, W, 3)`` (what ``np.asarray(pil_image.convert("RGB"))``
gives, with a batch axis), any height and width (the images of one call share a size). In the
graph, in the app's order (:func:`transfer_gui.engine.preprocess.preprocessing_spec`):

1. NHWC -> NCHW;
2. the shorter side resized to ``resize_size`` and the long side to ``int(resize_size * long /
   short)`` (integer division), then
3. the centre crop, its offsets rounded half to even like Python's ``round``: steps 2 and 3 are
   one separable resize that computes only the cropped rows and columns, bit for bit the app's
   (torchvision's antialiased resize of a uint8 tensor, Pillow's scheme with int16 weights): per
   axis the filter (triangle, Keys cubic a = -0.5 or nearest) stretched by the scale when shrinking,
   normalised per output pixel, scaled by ``2**p`` (``p`` the largest precision below 22 that keeps
   the biggest weight under 2**15) and rounded away from zero; the horizontal pass first, each
   pass ``floor((sum + 2**(p-1)) / 2**p)`` clipped to 0..255, in float64 (exact on integers);
4. ``/ 255``, ``(x - mean) / std``;
5. the network (divided by the temperature), output ``logits``, and ``probabilities`` = their
   softmax beside them.

Why not ONNX ``Resize``: onnxruntime's antialiased uint8 kernel rounds its weights at another
precision than torchvision's int16 ones, so 0.1-0.5 % of the pixels came out one or two grey
levels off the app's, enough for probability differences of 2-3e-3 on small upscaled images.

Decoding (EXIF rotation, alpha over white, grey to RGB, the JPEG draft reduction) stays outside
the graph: the deploy kit's ``predict.py`` does it with Pillow.
"""

from __future__ import annotations

import numpy as np

from transfer_gui.engine.preprocess import Preprocessing

OPSET = 18
INPUT = "image"
PIXELS = "pixels"  # the preprocessed tensor, fed to the network's "input"
TAPS = {"bilinear": 2, "bicubic": 4}  # the filter's width in input pixels at scale 1 (anything else: nearest)
_MAX_PRECISION = 22  # the weights' fixed-point bits are chosen below this (torchvision's loop bound)


def _const(name: str, values, dtype=np.int64):
    from onnx import numpy_helper
    from onnx.helper import make_node

    return make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(values, dtype=dtype), name))


def _size_nodes(n: int) -> list:
    """Shape -> ``new_h``, ``new_w``: the shorter side ``n``, the long side ``(n * long) // short``."""
    from onnx.helper import make_node as node

    return [
        _const("c_n", [n]), _const("c_two", [2]), _const("c_three", [3]), _const("c_four", [4]),
        node("Shape", ["nchw"], ["shape"]),
        node("Slice", ["shape", "c_two", "c_three"], ["h"]),
        node("Slice", ["shape", "c_three", "c_four"], ["w"]),
        node("LessOrEqual", ["h", "w"], ["h_short"]),
        node("Mul", ["c_n", "h"], ["n_h"]), node("Mul", ["c_n", "w"], ["n_w"]),
        node("Div", ["n_h", "w"], ["long_h"]), node("Div", ["n_w", "h"], ["long_w"]),
        node("Where", ["h_short", "c_n", "long_h"], ["new_h"]),
        node("Where", ["h_short", "long_w", "c_n"], ["new_w"]),
    ]


def _crop_nodes(s: int) -> list:
    """``top_h``, ``top_w``: the centre crop's offsets ``round(d / 2)`` half to even, i.e.
    ``d // 2 + (d % 2) * (d // 2 % 2)`` with ``d = new - s``."""
    from onnx.helper import make_node as node

    out = [_const("c_s", [s])]
    for side in ("h", "w"):
        out += [node("Sub", [f"new_{side}", "c_s"], [f"d_{side}"]),
                node("Div", [f"d_{side}", "c_two"], [f"k_{side}"]),
                node("Mod", [f"d_{side}", "c_two"], [f"odd_{side}"]),
                node("Mod", [f"k_{side}", "c_two"], [f"kodd_{side}"]),
                node("Mul", [f"odd_{side}", f"kodd_{side}"], [f"up_{side}"]),
                node("Add", [f"k_{side}", f"up_{side}"], [f"top_{side}"])]
    return out


def _shared_constants(filtered: bool) -> list:
    d = np.float64
    out = [_const("d_zero", 0.0, d), _const("d_one", 1.0, d), _const("d_255", 255.0, d), _const("i_zero", 0),
           _const("i_one", 1), _const("ax0", [0]), _const("ax1", [1])]
    if filtered:  # the fixed-point weights' constants
        out += [_const("d_half", 0.5, d), _const("d_limit", float(1 << 15), d),
                _const("d_doubled", [2.0 ** (p + 1) for p in range(_MAX_PRECISION)], d),
                _const("d_pow2", [2.0 ** p for p in range(_MAX_PRECISION + 1)], d)]
    return out


def _filter_nodes(x: str, out: str, interp: str) -> list:
    """``out`` = the filter at ``x`` (float64): triangle, or Keys cubic with a = -0.5."""
    from onnx.helper import make_node as node

    d = np.float64
    if interp == "bilinear":
        return [node("Abs", [x], [f"{x}_abs"]), node("Sub", ["d_one", f"{x}_abs"], [f"{x}_tri"]),
                node("Less", [f"{x}_abs", "d_one"], [f"{x}_near"]),
                node("Where", [f"{x}_near", f"{x}_tri", "d_zero"], [out])]
    a = -0.5  # ((a + 2) x - (a + 3)) x x + 1 below 1, ((a x - 5 a) x + 8 a) x - 4 a below 2
    n = f"{x}_"
    return [_const(n + "a2", a + 2, d), _const(n + "a3", a + 3, d), _const(n + "a", a, d), _const(n + "a5", 5 * a, d),
            _const(n + "a8", 8 * a, d), _const(n + "a4", 4 * a, d), _const(n + "two", 2.0, d),
            node("Abs", [x], [n + "t"]),
            node("Mul", [n + "a2", n + "t"], [n + "p1"]), node("Sub", [n + "p1", n + "a3"], [n + "p2"]),
            node("Mul", [n + "p2", n + "t"], [n + "p3"]), node("Mul", [n + "p3", n + "t"], [n + "p4"]),
            node("Add", [n + "p4", "d_one"], [n + "inner"]),
            node("Mul", [n + "a", n + "t"], [n + "q1"]), node("Sub", [n + "q1", n + "a5"], [n + "q2"]),
            node("Mul", [n + "q2", n + "t"], [n + "q3"]), node("Add", [n + "q3", n + "a8"], [n + "q4"]),
            node("Mul", [n + "q4", n + "t"], [n + "q5"]), node("Sub", [n + "q5", n + "a4"], [n + "outer"]),
            node("Less", [n + "t", "d_one"], [n + "lt1"]), node("Less", [n + "t", n + "two"], [n + "lt2"]),
            node("Where", [n + "lt2", n + "outer", "d_zero"], [n + "far"]),
            node("Where", [n + "lt1", n + "inner", n + "far"], [out])]


def _window_nodes(ax: str, interp: str) -> list:
    """``{ax}_raw`` (n_out, taps): each output pixel's filter over the input pixels ``{ax}_j`` it
    reaches, before normalising; the centre ``scale * (i + 0.5)``, the window ``[max(int(c - support
    + 0.5), 0), min(int(c + support + 0.5), n_in))``, the tap at ``(j - c + 0.5) / max(scale, 1)``."""
    from onnx.helper import make_node as node

    n = f"{ax}_"
    return [
        _const(n + "support1", TAPS[interp] * 0.5, np.float64),
        node("Cast", [n + "in"], [n + "in_d"], to=11), node("Cast", [n + "out"], [n + "out_d"], to=11),
        node("Div", [n + "in_d", n + "out_d"], [n + "scale"]),
        node("GreaterOrEqual", [n + "scale", "d_one"], [n + "shrink"]),
        node("Mul", [n + "scale", n + "support1"], [n + "support_s"]),
        node("Where", [n + "shrink", n + "support_s", n + "support1"], [n + "support"]),
        node("Div", ["d_one", n + "scale"], [n + "inv_s"]),
        node("Where", [n + "shrink", n + "inv_s", "d_one"], [n + "inv"]),
        node("Range", ["i_zero", n + "out0", "i_one"], [n + "i"]), node("Cast", [n + "i"], [n + "i_d"], to=11),
        node("Add", [n + "i_d", "d_half"], [n + "i_mid"]), node("Mul", [n + "scale", n + "i_mid"], [n + "c_row"]),
        node("Unsqueeze", [n + "c_row", "ax1"], [n + "c"]),
        node("Sub", [n + "c", n + "support"], [n + "lo1"]), node("Add", [n + "lo1", "d_half"], [n + "lo2"]),
        node("Floor", [n + "lo2"], [n + "lo3"]), node("Max", [n + "lo3", "d_zero"], [n + "lo"]),
        node("Add", [n + "c", n + "support"], [n + "hi1"]), node("Add", [n + "hi1", "d_half"], [n + "hi2"]),
        node("Floor", [n + "hi2"], [n + "hi3"]), node("Min", [n + "hi3", n + "in_d"], [n + "hi"]),
        node("Sub", [n + "hi", n + "lo"], [n + "span"]), node("ReduceMax", [n + "span"], [n + "taps_d"], keepdims=0),
        node("Cast", [n + "taps_d"], [n + "taps"], to=7),
        node("Range", ["i_zero", n + "taps", "i_one"], [n + "k"]), node("Cast", [n + "k"], [n + "k_d"], to=11),
        node("Add", [n + "lo", n + "k_d"], [n + "j"]), node("Less", [n + "j", n + "hi"], [n + "inside"]),
        node("Sub", [n + "j", n + "c"], [n + "x1"]), node("Add", [n + "x1", "d_half"], [n + "x2"]),
        node("Mul", [n + "x2", n + "inv"], [n + "x"]),
        *_filter_nodes(n + "x", n + "f", interp),
        node("Where", [n + "inside", n + "f", "d_zero"], [n + "raw"]),
    ]


def _fixed_point_nodes(ax: str) -> list:
    """``{ax}_raw`` -> ``{ax}_int`` (normalised, times ``2**p``, rounded away from zero) and
    ``{ax}_one`` = ``2**p``, ``{ax}_halfp`` = ``2**(p-1)``; ``p`` from the largest weight of the axis."""
    from onnx.helper import make_node as node

    n = f"{ax}_"
    return [
        node("ReduceSum", [n + "raw", "ax1"], [n + "total"], keepdims=1),
        node("Equal", [n + "total", "d_zero"], [n + "empty"]),
        node("Where", [n + "empty", "d_one", n + "total"], [n + "norm"]),
        node("Div", [n + "raw", n + "norm"], [n + "w"]),
        node("ReduceMax", [n + "w"], [n + "wmax"], keepdims=0),
        node("Mul", [n + "wmax", "d_doubled"], [n + "m1"]), node("Add", [n + "m1", "d_half"], [n + "m2"]),
        node("Floor", [n + "m2"], [n + "m3"]), node("Less", [n + "m3", "d_limit"], [n + "fits"]),
        node("Cast", [n + "fits"], [n + "fits_i"], to=7),
        node("ReduceSum", [n + "fits_i"], [n + "p"], keepdims=0),
        node("Gather", ["d_pow2", n + "p"], [n + "one"]),
        node("Sub", [n + "p", "i_one"], [n + "p1"]), node("Gather", ["d_pow2", n + "p1"], [n + "halfp"]),
        node("Mul", [n + "w", n + "one"], [n + "v"]),
        node("Add", [n + "v", "d_half"], [n + "vup"]), node("Floor", [n + "vup"], [n + "rup"]),
        node("Sub", [n + "v", "d_half"], [n + "vdn"]), node("Ceil", [n + "vdn"], [n + "rdn"]),
        node("Less", [n + "v", "d_zero"], [n + "neg"]),
        node("Where", [n + "neg", n + "rdn", n + "rup"], [n + "int"]),
    ]


def _spread_nodes(ax: str) -> list:
    """The crop's rows of the banded ``{ax}_int`` at columns ``{ax}_j`` -> dense ``{ax}_rows`` (s, n_in)."""
    from onnx import numpy_helper
    from onnx.helper import make_node as node

    n = f"{ax}_"
    zero = numpy_helper.from_array(np.zeros(1, np.float64), n + "zero")
    return [
        node("Add", [f"top_{ax}", "c_s"], [n + "end"]),
        node("Slice", [n + "int", f"top_{ax}", n + "end", "ax0"], [n + "band"]),
        node("Slice", [n + "j", f"top_{ax}", n + "end", "ax0"], [n + "band_j"]),
        node("Sub", [n + "in_d", "d_one"], [n + "last"]), node("Min", [n + "band_j", n + "last"], [n + "col_d"]),
        node("Cast", [n + "col_d"], [n + "col"], to=7),
        node("Concat", ["c_s", n + "in"], [n + "dense_shape"], axis=0),
        node("ConstantOfShape", [n + "dense_shape"], [n + "empty_rows"], value=zero),
        node("ScatterElements", [n + "empty_rows", n + "col", n + "band"], [n + "rows"], axis=1, reduction="add"),
    ]


def _nearest_nodes(ax: str) -> list:
    """``{ax}_rows``: one-hot rows at torch's nearest source ``min(floor(i * float32(n_in / n_out)),
    n_in - 1)`` (``i`` itself at scale 1, ``i // 2`` at exactly 2x), ``{ax}_one`` = 1, ``{ax}_halfp`` = 0."""
    from onnx.helper import make_node as node

    n = f"{ax}_"
    return [
        _const(n + "f_two", 2.0, np.float32), _const(n + "f_one", 1.0, np.float32),
        node("Cast", [n + "in"], [n + "in_f"], to=1), node("Cast", [n + "out"], [n + "out_f"], to=1),
        node("Div", [n + "in_f", n + "out_f"], [n + "scale"]),
        node("Add", [f"top_{ax}", "c_s"], [n + "end"]),
        node("Squeeze", [f"top_{ax}", "ax0"], [n + "top0"]), node("Squeeze", [n + "end", "ax0"], [n + "end0"]),
        node("Range", [n + "top0", n + "end0", "i_one"], [n + "i"]), node("Cast", [n + "i"], [n + "i_f"], to=1),
        node("Mul", [n + "i_f", n + "scale"], [n + "src_f"]), node("Floor", [n + "src_f"], [n + "src_fl"]),
        node("Div", [n + "i_f", n + "f_two"], [n + "i_half"]), node("Floor", [n + "i_half"], [n + "i_halfd"]),
        node("Equal", [n + "in_f", n + "out_f"], [n + "same"]),
        node("Mul", [n + "in_f", n + "f_two"], [n + "in_2"]), node("Equal", [n + "in_2", n + "out_f"], [n + "double"]),
        node("Where", [n + "double", n + "i_halfd", n + "src_fl"], [n + "src_a"]),
        node("Where", [n + "same", n + "i_f", n + "src_a"], [n + "src_b"]),
        node("Sub", [n + "in_f", n + "f_one"], [n + "last"]), node("Min", [n + "src_b", n + "last"], [n + "src"]),
        node("Cast", [n + "src"], [n + "src_d"], to=11), node("Unsqueeze", [n + "src_d", "ax1"], [n + "src_col"]),
        node("Range", ["i_zero", n + "in0", "i_one"], [n + "jj"]), node("Cast", [n + "jj"], [n + "j_d"], to=11),
        node("Equal", [n + "j_d", n + "src_col"], [n + "hit"]),
        node("Cast", [n + "hit"], [n + "rows"], to=11),
        node("Identity", ["d_one"], [n + "one"]), node("Identity", ["d_zero"], [n + "halfp"]),
    ]


def _axis_nodes(ax: str, interp: str) -> list:
    """The integer weights of one axis, the rows of the crop only: ``{ax}_rows`` (s, n_in)."""
    from onnx.helper import make_node as node

    n = f"{ax}_"
    if interp in TAPS:
        body = _window_nodes(ax, interp) + _fixed_point_nodes(ax) + _spread_nodes(ax)
    else:
        body = _nearest_nodes(ax)
    return [node("Identity", [ax], [n + "in"]), node("Identity", [f"new_{ax}"], [n + "out"]),
            node("Squeeze", [n + "in", "ax0"], [n + "in0"]), node("Squeeze", [n + "out", "ax0"], [n + "out0"]),
            *body]


def _round_pass(y: str, ax: str, out: str) -> list:
    """``out`` = ``clip(floor((y + 2**(p-1)) / 2**p), 0, 255)``: one pass's uint8 result, as float64."""
    from onnx.helper import make_node as node

    return [node("Add", [y, f"{ax}_halfp"], [y + "_r1"]), node("Div", [y + "_r1", f"{ax}_one"], [y + "_r2"]),
            node("Floor", [y + "_r2"], [y + "_r3"]), node("Max", [y + "_r3", "d_zero"], [y + "_r4"]),
            node("Min", [y + "_r4", "d_255"], [out])]


def resize_crop_nodes(pre: Preprocessing) -> list:
    """``nchw`` (uint8) -> ``cropped`` (float64 holding 0..255): the app's resize and centre crop."""
    from onnx.helper import make_node as node

    interp = pre.interpolation if pre.interpolation in TAPS else "nearest"
    return [*_size_nodes(pre.resize_size), *_crop_nodes(pre.input_size), *_shared_constants(interp in TAPS),
                        *_axis_nodes("w", interp), *_axis_nodes("h", interp),
            node("Cast", ["nchw"], ["nchw_d"], to=11),
            node("Transpose", ["w_rows"], ["w_cols"], perm=[1, 0]),
            node("MatMul", ["nchw_d", "w_cols"], ["wide"]), *_round_pass("wide", "w", "across"),
            node("MatMul", ["h_rows", "across"], ["tall"]), *_round_pass("tall", "h", "cropped")]


def preprocessing_graph(pre: Preprocessing):
    """An ONNX model: uint8 ``image`` (N, H, W, 3) -> float ``pixels`` (N, 3, S, S), as the app preprocesses."""
    from onnx import TensorProto, helper
    from onnx.helper import make_node as node

    nodes = [node("Transpose", [INPUT], ["nchw"], perm=[0, 3, 1, 2]), *resize_crop_nodes(pre),
             node("Cast", ["cropped"], ["as_float"], to=TensorProto.FLOAT),
             _const("c_255", [255.0], np.float32),
             _const("c_mean", np.reshape(pre.mean, (1, 3, 1, 1)), np.float32),
             _const("c_std", np.reshape(pre.std, (1, 3, 1, 1)), np.float32),
             node("Div", ["as_float", "c_255"], ["unit"]), node("Sub", ["unit", "c_mean"], ["centred"]),
             node("Div", ["centred", "c_std"], [PIXELS])]
    graph = helper.make_graph(
        nodes, "transfer_gui_preprocessing",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info(PIXELS, TensorProto.FLOAT, ["batch", 3, pre.input_size, pre.input_size])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def with_preprocessing(network, pre: Preprocessing, network_input: str = "input", logits: str = "logits"):
    """``network`` (an ONNX model at opset :data:`OPSET`, float NCHW ``network_input`` -> ``logits``)
    behind :func:`preprocessing_graph`, with ``probabilities`` = softmax(logits) as a second output."""
    from onnx import TensorProto, compose, helper

    pre_model = preprocessing_graph(pre)
    pre_model.ir_version = network.ir_version
    merged = compose.merge_models(pre_model, network, io_map=[(PIXELS, network_input)])
    merged.graph.node.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    merged.graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", None]))
    return merged
